"""Gateways for the lifecycle tests: real processes (tests/gatewayproc.py) with a short
lifecycle day, so a test watches days pass in seconds."""

from __future__ import annotations

import base64
import hashlib
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from tests.gatewayproc import Gateway, eventually, start_gateway

# A "day" of one second; scans every half second; the runner looks at the queue often.
FAST = {"lifecycle": {"dayLengthSeconds": 1, "scanIntervalSeconds": 0.5},
        "jobs": {"pollSeconds": 0.2}, "storage": {"collectInterval": 0.2},
        "storageClasses": {"GLACIER": "cold", "STANDARD_IA": "cold"}}
COLD = {"cold": {"type": "mem", "legacyAwsBehavior": False, "details": {}}}


@pytest.fixture(scope="package")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """Real days (86400 s): rules never fire during a test; for configuration and headers."""
    config = {"storageClasses": {"GLACIER": "cold", "STANDARD_IA": "cold"}}
    with start_gateway(tmp_path_factory.mktemp("lc-std"), COLD, config=config) as gw:
        yield gw
        assert "Traceback" not in gw.log(), gw.log()


@pytest.fixture(scope="package")
def fast(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    with start_gateway(tmp_path_factory.mktemp("lc-fast"), COLD, config=FAST) as gw:
        yield gw
        assert "Traceback" not in gw.log(), gw.log()


@pytest.fixture
def s3(gateway: Gateway) -> Any:
    return gateway.client()


def new_bucket(s3: Any, versioned: bool = False) -> str:
    name = f"lc-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    if versioned:
        s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    return name


def md5_header(body: bytes) -> dict[str, str]:
    return {"Content-MD5": base64.b64encode(hashlib.md5(body).digest()).decode()}


def deep(gw: Gateway) -> dict[str, Any]:
    return requests.get(f"{gw.endpoint}/_/healthcheck/deep", timeout=30).json()


def metric(gw: Gateway, name: str, **labels: str) -> float:
    """The value of one sample of /_/metrics (0 when absent)."""
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    sample = f"{name}{{{want}}}" if want else name
    for line in requests.get(f"{gw.endpoint}/_/metrics", timeout=30).text.splitlines():
        if line.startswith(sample + " "):
            return float(line.split()[-1])
    return 0.0


def missing(s3: Any, bucket: str, key: str) -> bool:
    try:
        s3.head_object(Bucket=bucket, Key=key)
    except s3.exceptions.ClientError as err:
        return err.response["Error"]["Code"] in ("404", "NoSuchKey")
    return False


__all__ = ["deep", "eventually", "md5_header", "metric", "missing", "new_bucket"]
