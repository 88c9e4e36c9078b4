"""Azurite (Azure Blob Storage emulator) for the azure tests: a free loopback port, data in a
temporary folder, started and stopped here. Loaded as a pytest plugin by tests/conftest.py."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.gatewayproc import free_port, stop_process, wait_for_port

REPO = Path(__file__).resolve().parents[2]
ACCOUNT_NAME = "devstoreaccount1"
ACCOUNT_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)


def azurite_binary() -> str | None:
    local = REPO / "node_modules" / ".bin" / "azurite-blob"
    return str(local) if local.exists() else shutil.which("azurite-blob")


@dataclass
class Azurite:
    """One running Azurite blob service."""

    port: int
    data_dir: Path
    process: subprocess.Popen[bytes] | None = None
    log_path: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log_path = self.data_dir / "azurite.log"

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}/{ACCOUNT_NAME}"

    def details(self, container: str, **extra: Any) -> dict[str, Any]:
        """locationConfig `details` for a shared-key location on this Azurite."""
        return {
            "azureStorageEndpoint": self.endpoint,
            "azureContainerName": container,
            "azureStorageAccountName": ACCOUNT_NAME,
            "azureStorageAccessKey": ACCOUNT_KEY,
            "bucketMatch": False,
            **extra,
        }

    def container_client(self, container: str) -> Any:
        """An SDK client (the cloud's own view) on one container; use with `async with`."""
        from azure.storage.blob.aio import ContainerClient

        return ContainerClient(self.endpoint, container, retry_total=0,
                               credential={"account_name": ACCOUNT_NAME, "account_key": ACCOUNT_KEY})

    async def create_container(self, name: str | None = None) -> str:
        name = name or f"c{uuid.uuid4().hex[:20]}"
        async with self.container_client(name) as client:
            await client.create_container()
        return name

    def start(self, timeout: float = 20) -> None:
        binary = azurite_binary()
        if binary is None:
            pytest.skip("azurite-blob not installed (npm install azurite@3.35.0)")
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [binary, "--blobHost", "127.0.0.1", "--blobPort", str(self.port),
                 "--location", str(self.data_dir), "--disableTelemetry", "--skipApiVersionCheck"],
                stdout=log, stderr=subprocess.STDOUT,
            )
        try:
            wait_for_port(self.port, timeout, self.process, what="azurite")
        except RuntimeError:  # it exited: its log says why
            raise RuntimeError(f"azurite exited: {self.log_path.read_text()[-2000:]}") from None
        except TimeoutError:
            self.stop()
            raise

    def stop(self) -> None:
        stop_process(self.process)


def start_azurite(data_dir: Path) -> Azurite:
    azurite = Azurite(port=free_port(), data_dir=data_dir)
    azurite.start()
    return azurite


@pytest.fixture(scope="session")
def azurite() -> Iterator[Azurite]:
    """The shared Azurite of the test session."""
    with tempfile.TemporaryDirectory(prefix="azurite-") as data_dir:
        server = start_azurite(Path(data_dir))
        try:
            yield server
        finally:
            server.stop()


@pytest.fixture
def azurite_factory(tmp_path: Path) -> Iterator[Callable[[], Azurite]]:
    """Start throwaway Azurites (e.g. to stop one mid-test); all stopped at teardown."""
    started: list[Azurite] = []

    def start() -> Azurite:
        data_dir = tmp_path / f"azurite-{len(started)}"
        data_dir.mkdir()
        server = start_azurite(data_dir)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
async def azure_container(azurite: Azurite) -> AsyncIterator[str]:
    """A fresh container on the session Azurite."""
    yield await azurite.create_container()
