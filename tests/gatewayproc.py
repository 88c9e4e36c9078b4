"""Start a real gateway for end-to-end tests: a child process (default) or a thread in this
process (for backends whose emulator lives in-process, such as b2sdk's simulator)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import requests
from botocore.config import Config

from gateway.processes import pid_alive

REPO = Path(__file__).resolve().parent.parent
ACCESS_KEY, SECRET_KEY = "accessKey1", "verySecretKey1"
ACCESS_KEY2, SECRET_KEY2 = "accessKey2", "verySecretKey2"


def eventually(check: Callable[[], bool], timeout: float = 15.0) -> None:
    """Wait for `check()` to come true (what the background collector does), bounded."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "not done in time"
        time.sleep(0.05)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Gateway:
    endpoint: str
    port: int
    workdir: Path
    env: dict[str, str]
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def client(self, access: str = ACCESS_KEY, secret: str = SECRET_KEY, **config: Any) -> Any:
        """A boto3 S3 client on this gateway, path-style, no retries (errors must show)."""
        cfg = Config(s3={"addressing_style": "path"}, retries={"total_max_attempts": 1, "mode": "standard"},
                     signature_version=config.pop("signature_version", "s3v4"), **config)
        return boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id=access,
                            aws_secret_access_key=secret, region_name="us-east-1", config=cfg)

    def garbage_pending(self) -> int:
        """What the collector still has to remove (the s3gw_garbage_pending gauge)."""
        text = requests.get(f"{self.endpoint}/_/metrics", timeout=10).text
        for line in text.splitlines():
            if line.startswith("s3gw_garbage_pending "):
                return int(float(line.split()[1]))
        raise AssertionError("no s3gw_garbage_pending in /_/metrics")

    def settle(self, timeout: float = 15.0) -> None:
        """Wait until the collector has removed every piece no record references."""
        eventually(lambda: self.garbage_pending() == 0, timeout)

    def data_files(self) -> list[Path]:
        """The files of the default file location (after settle(): only referenced bytes)."""
        return [p for p in (self.workdir / "data").rglob("*")
                if p.is_file() and not p.name.endswith(".tmp")]

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path and self.log_path.exists() else ""

    def crash(self) -> None:
        """kill -9 of the whole gateway: the process and, with workers, every worker at once
        (killing only a supervising parent lets its workers drain: a stop, not a crash)."""
        assert self.process is not None
        pid = self.process.pid
        workers: list[str] = []
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGSTOP)  # no new worker forked meanwhile
            workers = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
            for child in workers:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(child), signal.SIGKILL)
        self.process.kill()
        self.process.wait(10)
        # SIGKILL lands once a worker leaves the kernel (an fsync, say): wait until each is gone,
        # as after a real crash, before anyone judges what they left.
        deadline = time.monotonic() + 10
        while any(pid_alive(int(child)) for child in workers) and time.monotonic() < deadline:
            time.sleep(0.02)


def write_config(workdir: Path, port: int, locations: dict[str, Any] | None,
                 config: dict[str, Any] | None) -> dict[str, str]:
    """Write config.json and locationConfig.json under workdir; return the env that selects them."""
    workdir.mkdir(parents=True, exist_ok=True)
    locs = {"us-east-1": {"type": "file", "legacyAwsBehavior": True, "details": {}}}
    locs.update(locations or {})
    cfg: dict[str, Any] = {
        "port": port,
        "listenOn": "127.0.0.1",
        "restEndpoints": {"localhost": "us-east-1", "127.0.0.1": "us-east-1"},
        "healthChecks": {"interval": 2, "timeout": 2},
        "metricsPort": 0,
    }
    cfg.update(config or {})
    # S3GW_TEST_WORKERS=N runs every gateway a test starts with N worker processes (unless the
    # test sets "workers"). A mem location lives in one process's memory: with workers it
    # becomes a file location of its own (the gateway refuses mem with workers > 1).
    workers = int(os.environ.get("S3GW_TEST_WORKERS") or 1)
    if workers > 1 and "workers" not in cfg:
        cfg["workers"] = workers
    if cfg.get("workers", 1) not in (1, "1"):
        for name, spec in locs.items():
            if spec.get("type") == "mem":
                details = {k: v for k, v in spec.get("details", {}).items() if k == "bucketMatch"}
                locs[name] = {**spec, "type": "file",
                              "details": {**details, "dataPath": str(workdir / f"mem-{name}")}}
    # No read grace unless a test asks: tests watch replaced bytes go (Gateway.settle()).
    cfg["storage"] = {"readGraceSeconds": 0, **(config or {}).get("storage", {})}
    (workdir / "config.json").write_text(json.dumps(cfg, indent=2))
    (workdir / "locationConfig.json").write_text(json.dumps(locs, indent=2))
    return {
        "S3_CONFIG_FILE": str(workdir / "config.json"),
        "S3_LOCATION_FILE": str(workdir / "locationConfig.json"),
        "S3DATAPATH": str(workdir / "data"),
        "S3METADATAPATH": str(workdir / "metadata"),
    }


def stop_process(process: subprocess.Popen[bytes] | None, timeout: float = 10) -> None:
    """Terminate a child politely, kill it if it does not go within `timeout`."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def wait_for_port(port: int, timeout: float, process: subprocess.Popen[bytes] | None = None,
                  what: str = "gateway") -> None:
    """Wait until something listens on 127.0.0.1:`port`; fail early if `process` exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"{what} not listening on {port} after {timeout}s")


@contextmanager
def start_gateway(workdir: Path, locations: dict[str, Any] | None = None, *,
                  config: dict[str, Any] | None = None, env: dict[str, str] | None = None,
                  inprocess: bool = False, timeout: float = 20) -> Iterator[Gateway]:
    """Run a gateway on a free port with `locations` added to a file-backed `us-east-1`.

    `config` entries override config.json keys; `env` adds environment variables.
    """
    port = free_port()
    if inprocess and "workers" not in (config or {}):
        config = {**(config or {}), "workers": 1}  # in this process: one worker, whatever S3GW_TEST_WORKERS
    gw_env = write_config(workdir, port, locations, config)
    gw_env.update(env or {})
    if gw_env.get("S3BACKEND") == "mem" and "S3_WORKERS" not in gw_env:
        gw_env["S3_WORKERS"] = "1"  # a mem location is one process's (S3GW_TEST_WORKERS)
    gateway = Gateway(endpoint=f"http://127.0.0.1:{port}", port=port, workdir=workdir, env=gw_env)
    if inprocess:
        with _inprocess(gateway, timeout):
            yield gateway
        return
    gateway.log_path = workdir / "gateway.log"
    with open(gateway.log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "gateway"], cwd=REPO,
                                env={**os.environ, **gw_env}, stdout=log, stderr=subprocess.STDOUT)
    gateway.process = proc
    try:
        wait_for_port(port, timeout, proc)
        yield gateway
    finally:
        stop_process(proc)


@contextmanager
def _inprocess(gateway: Gateway, timeout: float) -> Iterator[None]:
    from gateway.server import serve

    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    failure: list[BaseException] = []

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(serve(env={**os.environ, **gateway.env}, stop=stop))
        except BaseException as exc:  # surfaced to the test below
            failure.append(exc)

    thread = threading.Thread(target=run, name="gateway", daemon=True)
    thread.start()
    try:
        wait_for_port(gateway.port, timeout)
        yield
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(15)
        if failure:
            raise failure[0]
