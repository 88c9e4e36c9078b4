"""CPU per small request as instructions, counted by valgrind's callgrind: the same count
whatever else the machine does, so a change's cost can be measured on a busy box.

    python -m bench.instructions                   # gateway vs bare: GET, HEAD, PUT of 4 KiB
    python -m bench.instructions --repo /tmp/base  # a baseline checkout, same requests

Each server runs under `valgrind --tool=callgrind --instr-atstart=no`; instrumentation is
switched on (callgrind_control) only around each phase of COUNT requests at concurrency 1
(after a warm-up of the same kind), so start-up is not counted. The figure is the server's
instructions per request (all its threads); the client is a separate, uncounted process."""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import aiohttp
from yarl import URL

from bench.servers import GATEWAY_KEYS, REPO, Server, start_bare, start_gateway
from bench.sigv4 import Signer

BODY = b"x" * 4096
BUCKET = "instr"


def callgrind(out_dir: Path, name: str) -> list[str]:
    return ["valgrind", "--tool=callgrind", "--instr-atstart=no",
            f"--callgrind-out-file={out_dir}/{name}.%p"]


def control(server: Server, *args: str) -> None:
    subprocess.run(["callgrind_control", *args, str(server.process.pid)], check=True,
                   capture_output=True, timeout=120)


def instructions(out_dir: Path, name: str) -> int:
    """Instructions of the last dump of `name` (the file callgrind_control -d wrote)."""
    dumps = sorted(out_dir.glob(f"{name}.*"), key=lambda p: p.stat().st_mtime)
    total = 0
    for line in dumps[-1].read_text(errors="replace").splitlines():
        found = re.match(r"(?:summary|totals):\s+(\d+)", line)
        if found:
            total = max(total, int(found.group(1)))
    return total


async def run_phase(server: Server, s3: bool, method: str, count: int, offset: int) -> None:
    host = f"127.0.0.1:{server.port}"
    signer = Signer(*GATEWAY_KEYS)
    async with aiohttp.ClientSession() as session:
        for i in range(offset, offset + count):
            path = f"/{BUCKET}/k{i % 100:06d}" if method != "PUT" else f"/{BUCKET}/n{i:06d}"
            headers = signer.headers(method, host, path, "") if s3 else {}
            async with session.request(method, URL(f"http://{host}{path}", encoded=True),
                                       data=BODY if method == "PUT" else None,
                                       headers=headers) as resp:
                await resp.read()
                if resp.status >= 300:
                    raise RuntimeError(f"{method} {path}: {resp.status}")


async def prepare(server: Server, s3: bool) -> None:
    host = f"127.0.0.1:{server.port}"
    signer = Signer(*GATEWAY_KEYS)
    async with aiohttp.ClientSession() as session:
        if s3:
            async with session.put(f"http://{host}/{BUCKET}",
                                   headers=signer.headers("PUT", host, f"/{BUCKET}", "")) as r:
                await r.read()
        for i in range(100):
            path = f"/{BUCKET}/k{i:06d}"
            headers = signer.headers("PUT", host, path, "") if s3 else {}
            async with session.put(URL(f"http://{host}{path}", encoded=True), data=BODY,
                                   headers=headers) as resp:
                await resp.read()


def measure(server: Server, out_dir: Path, name: str, s3: bool, count: int
            ) -> dict[str, float]:
    asyncio.run(prepare(server, s3))
    result: dict[str, float] = {}
    for method in ("GET", "HEAD", "PUT"):
        asyncio.run(run_phase(server, s3, method, 20, 1000))  # warm-up, not counted
        control(server, "-z")
        control(server, "-i", "on")
        asyncio.run(run_phase(server, s3, method, count, 2000))
        control(server, "-i", "off")
        control(server, "-d", method)
        result[method] = instructions(out_dir, name) / count
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repo", type=Path, default=REPO, help="gateway checkout to run")
    parser.add_argument("--count", type=int, default=200, help="requests of each kind")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                        help="an environment variable for the gateway (e.g. LOG_LEVEL=warning)")
    parser.add_argument("--no-bare", action="store_true", help="the gateway only")
    args = parser.parse_args()
    env = dict(item.split("=", 1) for item in args.env)
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed (apt-get install -y valgrind)")
    base = Path(tempfile.mkdtemp(prefix="s3gw-instr-"))
    figures: dict[str, dict[str, float]] = {}
    try:
        for name in ("gateway",) if args.no_bare else ("gateway", "bare"):
            launcher = callgrind(base, name)
            server = (start_gateway(base, None, None, durability="relaxed", launcher=launcher,
                                    repo=args.repo.resolve(), env=env)
                      if name == "gateway" else start_bare(base, launcher=launcher))
            try:
                figures[name] = measure(server, base, name, name == "gateway", args.count)
            finally:
                server.stop()
        print("| request | gateway instr/op | bare instr/op | gateway / bare |")
        print("| --- | ---: | ---: | ---: |")
        for method in ("GET", "HEAD", "PUT"):
            gw = figures["gateway"][method]
            bare = figures.get("bare", {}).get(method)
            print(f"| {method} 4 KiB c1 | {gw / 1e6:.3f} M | "
                  + (f"{bare / 1e6:.3f} M | {gw / bare:.2f}x |" if bare else "| |"))
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
