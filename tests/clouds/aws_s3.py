"""Emulators for aws_s3 locations: moto server (AWS S3) and s3rver (a second, independent
S3-compatible implementation from npm), each a child process on a free loopback port."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config

from tests.gatewayproc import free_port, stop_process, wait_for_port

REPO = Path(__file__).resolve().parents[2]
# moto accepts any keys; s3rver only its built-in pair.
MOTO_KEYS = ("testing", "testing")
S3RVER_KEYS = ("S3RVER", "S3RVER")


@dataclass
class S3Emulator:
    """One running S3-compatible server. `endpoint` is what a location's awsEndpoint takes."""

    kind: str
    port: int
    keys: tuple[str, str]
    process: subprocess.Popen[bytes]

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.endpoint}"

    def details(self, bucket: str, **extra: Any) -> dict[str, Any]:
        """Location details pointing at this emulator (plain http, path-style)."""
        return {"awsEndpoint": self.endpoint, "bucketName": bucket, "https": False,
                "pathStyle": True,
                "credentials": {"accessKey": self.keys[0], "secretKey": self.keys[1]}, **extra}

    def boto(self) -> Any:
        """The cloud's own SDK (boto3), to read objects back natively."""
        return boto3.client("s3", endpoint_url=self.url, region_name="us-east-1",
                            aws_access_key_id=self.keys[0], aws_secret_access_key=self.keys[1],
                            config=Config(s3={"addressing_style": "path"},
                                          retries={"total_max_attempts": 1}))

    def create_bucket(self, versioned: bool = True) -> str:
        name = f"b-{uuid.uuid4().hex[:20]}"
        client = self.boto()
        client.create_bucket(Bucket=name)
        if versioned:
            client.put_bucket_versioning(Bucket=name,
                                         VersioningConfiguration={"Status": "Enabled"})
        return name

    def stop(self) -> None:
        stop_process(self.process)


def start_moto(log_dir: Path) -> S3Emulator:
    port = free_port()
    log = open(log_dir / f"moto-{port}.log", "wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=log, stderr=subprocess.STDOUT, cwd=log_dir)
    log.close()
    emulator = S3Emulator("moto", port, MOTO_KEYS, process)
    try:
        wait_for_port(port, 20, process, what="emulator")
    except BaseException:
        emulator.stop()
        raise
    return emulator


def s3rver_binary() -> str | None:
    candidates = [os.environ.get("S3RVER_BIN"), str(REPO / "node_modules" / ".bin" / "s3rver"),
                  shutil.which("s3rver")]
    return next((c for c in candidates if c and os.access(c, os.X_OK)), None)


def start_s3rver(data_dir: Path) -> S3Emulator:
    binary = s3rver_binary()
    if binary is None:
        pytest.skip("s3rver not installed (npm install in the repo, or set S3RVER_BIN)")
    port = free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    log = open(data_dir.parent / f"s3rver-{port}.log", "wb")
    process = subprocess.Popen(
        [binary, "-d", str(data_dir), "-a", "127.0.0.1", "-p", str(port), "--no-vhost-buckets"],
        stdout=log, stderr=subprocess.STDOUT)
    log.close()
    emulator = S3Emulator("s3rver", port, S3RVER_KEYS, process)
    try:
        wait_for_port(port, 20, process, what="emulator")
    except BaseException:
        emulator.stop()
        raise
    return emulator


@pytest.fixture(scope="session")
def aws_s3_moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Emulator]:
    """A moto server shared by the session."""
    emulator = start_moto(tmp_path_factory.mktemp("moto"))
    yield emulator
    emulator.stop()


@pytest.fixture(scope="session")
def aws_s3_s3rver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Emulator]:
    """s3rver (npm), shared by the session; data in a tmp dir."""
    emulator = start_s3rver(tmp_path_factory.mktemp("s3rver") / "data")
    yield emulator
    emulator.stop()


@pytest.fixture
def aws_s3_bucket(aws_s3_moto: S3Emulator) -> str:
    """A fresh versioned bucket on the shared moto server."""
    return aws_s3_moto.create_bucket()


@pytest.fixture
def aws_s3_throwaway(tmp_path: Path) -> Iterator[Any]:
    """Factory of moto servers owned by one test (to stop mid-test); all stopped at teardown."""
    started: list[S3Emulator] = []

    def start() -> S3Emulator:
        emulator = start_moto(tmp_path)
        started.append(emulator)
        return emulator

    yield start
    for emulator in started:
        emulator.stop()
