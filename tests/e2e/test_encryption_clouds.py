"""Encryption at rest on cloud locations (Azurite, fake-gcs-server, moto), through boto3: the
backend, read natively with the cloud's own SDK / API, holds only ciphertext; SSE-S3, SSE-KMS
and SSE-C round-trip, ranged GETs across 64 KiB chunks and part boundaries and a partNumber
GET included; a byte flipped on the backend (the object rewritten natively) gives an error and
never data; SSE-C without its key is refused. One gateway with a location per emulator loaded
(TEST_CLOUDS); the 1 GiB multipart object is tests/crypto/test_sse_clouds.py's business."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from botocore.exceptions import BotoCoreError, ClientError

from tests.gatewayproc import Gateway, start_gateway

MiB = 1024 * 1024
C = 64 * 1024
CLOUDS = [pytest.param("azure", marks=pytest.mark.azure),
          pytest.param("gcp", marks=pytest.mark.gcp),
          pytest.param("aws_s3", marks=pytest.mark.aws_s3)]
CONFIG = {"encryption": {"allowSseCOverHttp": True}}  # SSE-C over the tests' plain http


@dataclass
class Native:
    """One location's backend, seen through the cloud's own client (not the gateway's)."""

    list: Callable[[], list[str]]
    read: Callable[[str], bytes]
    write: Callable[[str, bytes], None]


def _azure(azurite: Any) -> tuple[dict[str, Any], Native]:
    container = asyncio.run(azurite.create_container())

    async def names() -> list[str]:
        async with azurite.container_client(container) as client:
            return [blob.name async for blob in client.list_blobs()]

    async def read(name: str) -> bytes:
        async with azurite.container_client(container) as client:
            return await (await client.download_blob(name)).readall()

    async def write(name: str, data: bytes) -> None:
        async with azurite.container_client(container) as client:
            await client.upload_blob(name, data, overwrite=True)

    spec = {"type": "azure", "legacyAwsBehavior": False,
            "details": azurite.details(container, bucketMatch=False)}
    return spec, Native(lambda: asyncio.run(names()), lambda n: asyncio.run(read(n)),
                        lambda n, d: asyncio.run(write(n, d)))


def _gcp(emulator: Any) -> tuple[dict[str, Any], Native]:
    bucket = emulator.create_bucket()
    base = f"{emulator.url}/storage/v1/b/{bucket}/o"

    def names() -> list[str]:
        with urllib.request.urlopen(f"{base}?fields=items(name)", timeout=10) as answer:
            return [item["name"] for item in json.load(answer).get("items", [])]

    def read(name: str) -> bytes:
        url = f"{emulator.url}/download/storage/v1/b/{bucket}/o/{urllib.parse.quote(name, '')}"
        with urllib.request.urlopen(f"{url}?alt=media", timeout=30) as answer:
            return bytes(answer.read())

    def write(name: str, data: bytes) -> None:
        query = urllib.parse.urlencode({"uploadType": "media", "name": name})
        request = urllib.request.Request(
            f"{emulator.url}/upload/storage/v1/b/{bucket}/o?{query}", data=data,
            headers={"Content-Type": "application/octet-stream"}, method="POST")
        with urllib.request.urlopen(request, timeout=30):
            pass

    spec = {"type": "gcp", "legacyAwsBehavior": False,
            "details": {"bucketName": bucket, "bucketMatch": False, "gcpEndpoint": emulator.url}}
    return spec, Native(names, read, write)


def _aws(moto: Any) -> tuple[dict[str, Any], Native]:
    bucket = moto.create_bucket(versioned=False)  # a rewrite replaces, not adds a version
    native = moto.boto()

    def names() -> list[str]:
        return [o["Key"] for o in native.list_objects_v2(Bucket=bucket).get("Contents", [])]

    spec = {"type": "aws_s3", "legacyAwsBehavior": False,
            "details": moto.details(bucket, bucketMatch=False, supportsVersioning=False)}
    return spec, Native(names,
                        lambda n: native.get_object(Bucket=bucket, Key=n)["Body"].read(),
                        lambda n, d: native.put_object(Bucket=bucket, Key=n, Body=d) and None)


def _cloud(request: pytest.FixtureRequest, cloud: str) -> tuple[dict[str, Any], Native] | None:
    try:
        if cloud == "azure":
            return _azure(request.getfixturevalue("azurite"))
        if cloud == "gcp":
            return _gcp(request.getfixturevalue("gcs_emulator"))
        return _aws(request.getfixturevalue("aws_s3_moto"))
    except pytest.FixtureLookupError:
        return None


@pytest.fixture(scope="module")
def clouds(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[tuple[Gateway, dict[str, Native]]]:
    """The gateway, and per location it has (one per emulator loaded) its native view."""
    loaded = {f"enc-{cloud}": found for cloud in ("azure", "gcp", "aws_s3")
              if (found := _cloud(request, cloud)) is not None}
    if not loaded:
        pytest.skip("no cloud emulator loaded (TEST_CLOUDS)")
    with start_gateway(tmp_path_factory.mktemp("encgw"),
                       {name: spec for name, (spec, _) in loaded.items()}, config=CONFIG) as gw:
        yield gw, {name: native for name, (_, native) in loaded.items()}


def _sse_c() -> tuple[bytes, dict[str, str]]:
    key = os.urandom(32)
    return key, {"SSECustomerAlgorithm": "AES256", "SSECustomerKey": base64.b64encode(key).decode(),
                 "SSECustomerKeyMD5": base64.b64encode(hashlib.md5(key).digest()).decode()}


def _no_plaintext(stored: bytes, data: bytes) -> None:
    """No 48-byte run of `data`, at ~60 spread offsets, appears in `stored`."""
    for start in range(0, max(1, len(data) - 48), max(1, len(data) // 60)):
        assert data[start:start + 48] not in stored, f"plaintext at {start} on the backend"


def _refused_or_broken(read: Callable[[], bytes], plaintext: bytes) -> None:
    """The read fails (an S3 error, or a body cut short), and never yields the plaintext."""
    try:
        got = read()
    except (ClientError, BotoCoreError):
        return
    assert got != plaintext and len(got) < len(plaintext), "tampered data was served"


@pytest.mark.parametrize("cloud", CLOUDS)
def test_sse_modes_on_cloud(clouds: tuple[Gateway, dict[str, Native]], cloud: str) -> None:
    gateway, natives = clouds
    location = f"enc-{cloud}"
    if location not in natives:
        pytest.skip(f"{cloud} emulator not loaded (TEST_CLOUDS)")
    native = natives[location]
    s3 = gateway.client()
    bucket = f"enc-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": location})

    single = os.urandom(3 * C + 1000)  # SSE-S3, four chunks
    s3.put_object(Bucket=bucket, Key="s3", Body=single, ServerSideEncryption="AES256")
    customer_key, sse_c = _sse_c()
    secret = os.urandom(2 * C + 5)
    s3.put_object(Bucket=bucket, Key="c", Body=secret, **sse_c)
    # SSE-KMS multipart: parts of 5 MiB, 5 MiB + 17, 1000 bytes (boundaries off the chunk grid).
    parts = [os.urandom(5 * MiB), os.urandom(5 * MiB + 17), os.urandom(1000)]
    upload = s3.create_multipart_upload(Bucket=bucket, Key="kms", ServerSideEncryption="aws:kms")
    listed = [{"PartNumber": n, "ETag": s3.upload_part(
        Bucket=bucket, Key="kms", UploadId=upload["UploadId"], PartNumber=n, Body=body)["ETag"]}
        for n, body in enumerate(parts, 1)]
    done = s3.complete_multipart_upload(Bucket=bucket, Key="kms", UploadId=upload["UploadId"],
                                        MultipartUpload={"Parts": listed})
    assert done["ServerSideEncryption"] == "aws:kms"
    assert done["SSEKMSKeyId"].startswith("arn:aws:kms:")
    data = b"".join(parts)

    # The backend, read with the cloud's own client: only ciphertext, one object per write.
    stored = {name: native.read(name) for name in native.list()}
    assert len(stored) >= 3, sorted(stored)
    for content in stored.values():
        for plain in (single, secret, data[:MiB], data[5 * MiB - 4096:5 * MiB + 4096], data[-2000:]):
            _no_plaintext(content, plain)
    assert sum(content.count(b"S3GE\x01") for content in stored.values()) >= 5  # 2 + 3 parts

    # Round trips, whole and ranged (chunk edges, part edges), and partNumber.
    got = s3.get_object(Bucket=bucket, Key="s3")
    assert got["Body"].read() == single and got["ServerSideEncryption"] == "AES256"
    for first, last in ((C - 3, C + 3), (C, 2 * C - 1), (100, 3 * C + 999), (3 * C + 999, 3 * C + 999)):
        got = s3.get_object(Bucket=bucket, Key="s3", Range=f"bytes={first}-{last}")
        assert got["Body"].read() == single[first:last + 1]
    edge = len(parts[0])
    for first, last in ((edge - 5, edge + 5), (edge - C - 7, 2 * edge + 20), (C - 1, C),
                        (len(data) - 1100, len(data) - 1)):
        got = s3.get_object(Bucket=bucket, Key="kms", Range=f"bytes={first}-{last}")
        assert got["Body"].read() == data[first:last + 1], (first, last)
    got = s3.get_object(Bucket=bucket, Key="kms", PartNumber=2)
    assert got["Body"].read() == parts[1] and got["PartsCount"] == 3
    assert got["ServerSideEncryption"] == "aws:kms"
    assert hashlib.md5(s3.get_object(Bucket=bucket, Key="kms")["Body"].read()).digest() == \
        hashlib.md5(data).digest()
    got = s3.get_object(Bucket=bucket, Key="c", Range=f"bytes={C - 10}-{C + 10}", **sse_c)
    assert got["Body"].read() == secret[C - 10:C + 11]
    assert got["SSECustomerKeyMD5"] == sse_c["SSECustomerKeyMD5"]

    # SSE-C without its key, or with another, is refused.
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=bucket, Key="c")
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    with pytest.raises(ClientError) as exc:
        s3.head_object(Bucket=bucket, Key="c", **_sse_c()[1])
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert customer_key not in b"".join(stored.values())

    # One byte flipped in each backend object (rewritten natively): errors, never data.
    for name, content in stored.items():
        flipped = bytearray(content)
        flipped[len(flipped) // 2] ^= 0x01
        native.write(name, bytes(flipped))
    _refused_or_broken(lambda: s3.get_object(Bucket=bucket, Key="s3")["Body"].read(), single)
    _refused_or_broken(lambda: s3.get_object(Bucket=bucket, Key="c", **sse_c)["Body"].read(),
                       secret)
    _refused_or_broken(lambda: s3.get_object(Bucket=bucket, Key="kms")["Body"].read(), data)
