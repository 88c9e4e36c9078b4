"""Encryption on a cloud location (aws_s3 on moto): the backend, read with the cloud's own SDK,
holds only ciphertext, including a multipart object assembled by the cloud (its parts' streams
end to end in one backend object), and ranges across its parts decrypt."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from tests.clouds.aws_s3 import S3Emulator
from tests.e2e import scenarios
from tests.gatewayproc import Gateway, start_gateway

pytestmark = pytest.mark.aws_s3

MiB = 1024 * 1024


@pytest.fixture(scope="module")
def cloud(aws_s3_moto: S3Emulator, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[tuple[Gateway, str]]:
    backend = aws_s3_moto.create_bucket()
    locations = {"awsenc": {"type": "aws_s3", "legacyAwsBehavior": False,
                            "details": aws_s3_moto.details(backend)}}
    with start_gateway(tmp_path_factory.mktemp("sse-cloud"), locations) as gateway:
        yield gateway, backend


def backend_objects(native: Any, backend: str) -> dict[str, bytes]:
    listed = native.list_objects_v2(Bucket=backend).get("Contents", [])
    return {o["Key"]: native.get_object(Bucket=backend, Key=o["Key"])["Body"].read()
            for o in listed}


def test_backend_holds_ciphertext_single_and_multipart(
        cloud: tuple[Gateway, str], aws_s3_moto: S3Emulator) -> None:
    gateway, backend = cloud
    s3 = gateway.client()
    bucket = scenarios.new_bucket(s3, "awsenc", "enc")
    small = os.urandom(100_000)
    s3.put_object(Bucket=bucket, Key="small", Body=small, ServerSideEncryption="AES256")
    parts = [os.urandom(5 * MiB), os.urandom(5 * MiB + 17), os.urandom(1000)]
    upload = s3.create_multipart_upload(Bucket=bucket, Key="big", ServerSideEncryption="aws:kms")
    listed = []
    for number, body in enumerate(parts, 1):
        etag = s3.upload_part(Bucket=bucket, Key="big", UploadId=upload["UploadId"],
                              PartNumber=number, Body=body)["ETag"]
        listed.append({"PartNumber": number, "ETag": etag})
    s3.complete_multipart_upload(Bucket=bucket, Key="big", UploadId=upload["UploadId"],
                                 MultipartUpload={"Parts": listed})
    data = b"".join(parts)
    stored = backend_objects(aws_s3_moto.boto(), backend)
    assert len(stored) == 2
    for content in stored.values():
        assert content[:4] == b"S3GE"
        for probe in (small[5000:5064], data[MiB:MiB + 64], data[-64:]):
            assert probe not in content
    # The multipart object is one backend object: three streams, each with its own header.
    assert sum(content.count(b"S3GE\x01") for content in stored.values()) >= 4
    assert s3.get_object(Bucket=bucket, Key="small")["Body"].read() == small
    edge = len(parts[0])
    for first, last in ((edge - 5, edge + 5), (edge - 100_000, len(data) - 1), (0, 10)):
        got = s3.get_object(Bucket=bucket, Key="big", Range=f"bytes={first}-{last}")
        assert got["Body"].read() == data[first:last + 1]
    got = s3.get_object(Bucket=bucket, Key="big", PartNumber=2)
    assert got["Body"].read() == parts[1] and got["ServerSideEncryption"] == "aws:kms"
