"""One gateway per test module (file location + SQLite), and boto3 clients on it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from tests.gatewayproc import ACCESS_KEY2, SECRET_KEY2, Gateway, start_gateway


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    workdir: Path = tmp_path_factory.mktemp("gateway")
    locations = {
        "us-east-2": {"type": "file", "legacyAwsBehavior": False, "details": {}},
        "memloc": {"type": "mem", "legacyAwsBehavior": False, "details": {}, "selectable": True},
    }
    with start_gateway(workdir, locations) as gw:
        yield gw


@pytest.fixture(scope="module")
def s3(gateway: Gateway) -> Any:
    return gateway.client()


@pytest.fixture(scope="module")
def s3_other(gateway: Gateway) -> Any:
    return gateway.client(ACCESS_KEY2, SECRET_KEY2)


@pytest.fixture
def bucket(s3: Any) -> str:
    name = f"test-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    return name


def error_code(exc: pytest.ExceptionInfo[Any]) -> str:
    return exc.value.response["Error"]["Code"]


def status(exc: pytest.ExceptionInfo[Any]) -> int:
    return exc.value.response["ResponseMetadata"]["HTTPStatusCode"]


def raw_request(gateway: Gateway, method: str, path: str, *, body: bytes = b"",
                headers: dict[str, str] | None = None, access: str = "accessKey1",
                secret: str = "verySecretKey1", sign: bool = True) -> requests.Response:
    """A hand-made request, SigV4-signed by botocore's signer, for cases clients never send."""
    url = gateway.endpoint + path
    all_headers = dict(headers or {})
    if sign:
        request = AWSRequest(method=method, url=url, data=body, headers=all_headers)
        payload_hash = all_headers.get("x-amz-content-sha256")
        signer = S3SigV4Auth(Credentials(access, secret), "s3", "us-east-1")
        if payload_hash is not None:  # sign the stated hash, true or not
            signer.payload = lambda _request: payload_hash  # type: ignore[method-assign]
        signer.add_auth(request)
        all_headers = dict(request.headers.items())
    return requests.request(method, url, data=body, headers=all_headers, timeout=30)
