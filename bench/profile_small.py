"""Where a small request's time goes: a gateway under cProfile (or callgrind), driven by a
bounded loop of 4 KiB PUT, GET and HEAD at concurrency 1, then the top functions.

    python -m bench.profile_small                      # this checkout, relaxed writes
    python -m bench.profile_small --repo /tmp/base     # a baseline worktree, same conditions
    python -m bench.profile_small --count 3000 --top 40 --sort tottime
    python -m bench.profile_small --callgrind          # instructions instead of time

cProfile inflates the cost of Python calls, so compare shares and compare two checkouts in
the same conditions; callgrind counts instructions, independent of other load on the box."""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import pstats
import shutil
import sys
import tempfile
import time
from base64 import b64encode
from pathlib import Path

import aiohttp
from yarl import URL

from bench import procstat
from bench.servers import GATEWAY_KEYS, REPO, start_gateway
from bench.sigv4 import Signer

BUCKET = "prof"
BODY = b"x" * 4096


async def drive(port: int, count: int, pids: list[int]
                ) -> tuple[dict[str, list[float]], dict[str, float]]:
    """`count` PUTs of fresh keys, then `count` GETs and HEADs of them, then DeleteObjects of
    them 1000 a request: each one's ms, and the server's CPU ms per op of each kind (less
    sensitive to a busy box than wall time)."""
    host = f"127.0.0.1:{port}"
    signer = Signer(*GATEWAY_KEYS)
    timings: dict[str, list[float]] = {}
    cpu: dict[str, float] = {}
    async with aiohttp.ClientSession() as session:
        async def call(method: str, path: str, body: bytes | None = None, query: str = "",
                       extra: dict[str, str] | None = None) -> None:
            headers = {**signer.headers(method, host, path, query), **(extra or {})}
            url = URL(f"http://{host}{path}" + (f"?{query}" if query else ""), encoded=True)
            async with session.request(method, url, data=body, headers=headers) as resp:
                await resp.read()
                if resp.status >= 300:
                    raise RuntimeError(f"{method} {path}: {resp.status}")

        await call("PUT", f"/{BUCKET}")
        for op, method, body in (("put", "PUT", BODY), ("get", "GET", None),
                                 ("head", "HEAD", None)):
            timings[op] = spent = []
            cpu_before = procstat.cpu_seconds(pids)
            for i in range(count):
                started = time.perf_counter()
                await call(method, f"/{BUCKET}/k{i:06d}", body)
                spent.append((time.perf_counter() - started) * 1000)
            cpu[op] = (procstat.cpu_seconds(pids) - cpu_before) * 1000 / count
        # DeleteObjects (quiet) of the same keys, 1000 a request: ms per request
        timings["delete_1000"] = spent = []
        cpu_before = procstat.cpu_seconds(pids)
        for first in range(0, count, 1000):
            xml = ("<Delete><Quiet>true</Quiet>" + "".join(
                f"<Object><Key>k{i:06d}</Key></Object>" for i in range(first, min(first + 1000, count)))
                + "</Delete>").encode()
            md5 = b64encode(hashlib.md5(xml).digest()).decode()
            started = time.perf_counter()
            await call("POST", f"/{BUCKET}", xml, "delete=",
                       {"Content-MD5": md5, "Content-Type": "application/xml"})
            spent.append((time.perf_counter() - started) * 1000)
        cpu["delete_1000"] = (procstat.cpu_seconds(pids) - cpu_before) * 1000 / len(spent)
    return timings, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repo", type=Path, default=REPO, help="checkout to run")
    parser.add_argument("--count", type=int, default=2000, help="requests of each kind")
    parser.add_argument("--durability", default="relaxed", choices=("relaxed", "durable"))
    parser.add_argument("--top", type=int, default=35)
    parser.add_argument("--sort", default="cumulative", help="pstats sort key")
    parser.add_argument("--out", type=Path, help="keep the stats file here")
    parser.add_argument("--no-profile", action="store_true", help="timings only")
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="s3gw-prof-"))
    stats = args.out or base / "gateway.prof"
    try:
        server = start_gateway(base, None, None, durability=args.durability,
                               profile=None if args.no_profile else stats,
                               repo=args.repo.resolve())
        try:
            timings, cpu = asyncio.run(drive(server.port, args.count, server.pids()))
        finally:
            server.stop()
        for op, spent in timings.items():
            spent.sort()
            print(f"{op}: mean {sum(spent) / len(spent):.3f} ms, p50 {spent[len(spent) // 2]:.3f}, "
                  f"p90 {spent[len(spent) * 9 // 10]:.3f}, p99 {spent[len(spent) * 99 // 100]:.3f}, "
                  f"max {spent[-1]:.1f}, server CPU {cpu[op]:.3f} ms/op", file=sys.stderr)
        if not args.no_profile:
            pstats.Stats(str(stats)).strip_dirs().sort_stats(args.sort).print_stats(args.top)
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
