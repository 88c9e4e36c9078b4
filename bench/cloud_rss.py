"""python -m bench.cloud_rss [--size-mib N]: peak gateway memory while 1 GiB moves through each
cloud location (PUT, then GET), against its emulator. The emulators come from the test fixtures'
helpers (tests/clouds/); the gateway is a child process, so its VmHWM is its own.

b2 is left out: its simulator lives inside the gateway process and keeps every byte in memory,
so the gateway's peak would measure the simulator.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from bench.procstat import peak_rss_mib, tree
from tests.gatewayproc import start_gateway

MiB = 1024 * 1024


@contextlib.contextmanager
def moto(base: Path) -> Iterator[dict[str, Any]]:
    from tests.clouds.aws_s3 import start_moto

    emulator = start_moto(base)
    try:
        yield {"type": "aws_s3", "legacyAwsBehavior": False,
               "details": emulator.details(emulator.create_bucket())}
    finally:
        emulator.stop()


@contextlib.contextmanager
def azurite(base: Path) -> Iterator[dict[str, Any]]:
    from tests.clouds.azure import start_azurite

    (base / "azurite").mkdir()
    emulator = start_azurite(base / "azurite")
    try:
        container = asyncio.run(emulator.create_container())
        yield {"type": "azure", "legacyAwsBehavior": False, "details": emulator.details(container)}
    finally:
        emulator.stop()


@contextlib.contextmanager
def fake_gcs(base: Path) -> Iterator[dict[str, Any]]:
    from tests.clouds.gcp import GcsEmulator

    emulator = GcsEmulator(base / "gcs").start()
    try:
        yield {"type": "gcp", "legacyAwsBehavior": False,
               "details": {"bucketName": emulator.create_bucket(), "gcpEndpoint": emulator.url}}
    finally:
        emulator.stop()


@contextlib.contextmanager
def swift(base: Path) -> Iterator[dict[str, Any]]:
    from tests.clouds.swift import start_swift

    (base / "swift").mkdir()
    with start_swift(base / "swift") as cluster:
        container = "rss"
        cluster.connection().put_container(container)
        details = cluster.details(container)
        yield {"type": "swift", "legacyAwsBehavior": False, "details": details}


CLOUDS: dict[str, Callable[[Path], contextlib.AbstractContextManager[dict[str, Any]]]] = {
    "aws_s3 (moto)": moto, "azure (Azurite)": azurite, "gcp (fake-gcs-server)": fake_gcs,
    "swift (all-in-one)": swift}


def make_file(path: Path, size: int) -> str:
    md5 = hashlib.md5()
    block = os.urandom(MiB)
    with open(path, "wb") as out:
        for _ in range(size // MiB):
            out.write(block)
            md5.update(block)
    return md5.hexdigest()


def measure(name: str, location: dict[str, Any], source: Path, digest: str, base: Path,
            env: dict[str, str]) -> dict[str, Any]:
    # A patient health check: a busy emulator writing 1 GiB must not be taken for a dead one.
    config = {"healthChecks": {"interval": 30, "timeout": 15}}
    with start_gateway(base / "gw", {"cloud": location}, config=config, env=env) as gw:
        s3 = gw.client()
        s3.create_bucket(Bucket="rss", CreateBucketConfiguration={"LocationConstraint": "cloud"})
        assert gw.process is not None
        pids = tree(gw.process.pid)
        idle = peak_rss_mib(pids)
        started = time.monotonic()
        with open(source, "rb") as body:  # one plain PUT, streamed from the file
            s3.put_object(Bucket="rss", Key="big", Body=body)
        put_s = time.monotonic() - started
        after_put = peak_rss_mib(pids)
        started = time.monotonic()
        md5 = hashlib.md5()
        for chunk in s3.get_object(Bucket="rss", Key="big")["Body"].iter_chunks(MiB):
            md5.update(chunk)
        get_s = time.monotonic() - started
        assert md5.hexdigest() == digest, "the bytes came back different"
        size_mib = source.stat().st_size / MiB
        return {"location": name, "size_mib": size_mib, "idle_rss_mib": idle,
                "peak_rss_after_put_mib": after_put, "peak_rss_mib": peak_rss_mib(pids),
                "put_mb_s": round(size_mib / put_s, 1), "get_mb_s": round(size_mib / get_s, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.cloud_rss")
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--only", help="comma-separated location types, e.g. gcp,azure")
    args = parser.parse_args()
    env = {"LOG_LEVEL": "warning"}
    rows = []
    with tempfile.TemporaryDirectory(prefix="s3gw-cloud-rss-") as tmp:
        base = Path(tmp)
        source = base / "source.bin"
        digest = make_file(source, args.size_mib * MiB)
        for name, cloud in CLOUDS.items():
            if args.only and name.split()[0] not in args.only.split(","):
                continue
            work = base / name.split()[0]
            work.mkdir()
            try:
                with cloud(work) as location:
                    row = measure(name, location, source, digest, work, env)
            except Exception as exc:  # an emulator that cannot run here is a note
                row = {"location": name, "skipped": f"{type(exc).__name__}: {exc}"[:200]}
            print(json.dumps(row), flush=True)
            rows.append(row)
    print("\n| location | object | gateway idle RSS | peak RSS | PUT MB/s | GET MB/s |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for row in rows:
        if "skipped" in row:
            print(f"| {row['location']} | skipped: {row['skipped']} | | | | |")
        else:
            print(f"| {row['location']} | {row['size_mib']:.0f} MiB | {row['idle_rss_mib']:.0f} MiB "
                  f"| {row['peak_rss_mib']:.0f} MiB | {row['put_mb_s']} | {row['get_mb_s']} |")


if __name__ == "__main__":
    main()
