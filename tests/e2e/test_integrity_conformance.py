"""Where the bytes matter, the same on all seven location types: flexible checksums (a wrong
one refused, nothing stored), conditional writes (If-None-Match: *, If-Match) and GET
?partNumber of a multipart object — boto3 -> one real gateway -> each backend on its emulator.

Reuses the seven-location gateway of the versioning conformance suite (its fixtures).
"""

from __future__ import annotations

import base64
import os
import zlib
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.e2e import test_versioning_conformance as seven
from tests.e2e.test_versioning_conformance import Case, MiB, error

# The seven-location gateway and a fresh bucket on each location (pytest fixtures).
conformance = seven.conformance
case = seven.case


def crc32(data: bytes) -> str:
    return base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()


def test_a_wrong_checksum_is_refused_and_stores_nothing(case: Case) -> None:
    s3, bucket, key = case.s3, case.bucket, case.key
    body = case.body("checked")
    put = s3.put_object(Bucket=bucket, Key=key, Body=body, ChecksumCRC32=crc32(body))
    assert put["ChecksumCRC32"] == crc32(body)
    got = s3.get_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
    assert got["Body"].read() == body and got["ChecksumCRC32"] == crc32(body)
    with pytest.raises(ClientError) as caught:
        s3.put_object(Bucket=bucket, Key=key, Body=b"other bytes", ChecksumCRC32=crc32(b"x"))
    assert error(caught) == (400, "BadDigest")
    assert case.get() == body  # the refused write changed nothing
    assert case.holding(body, b"other bytes") == [1, 0]  # and left no bytes behind


def test_conditional_writes(case: Case) -> None:
    s3, bucket, key = case.s3, case.bucket, case.key
    first = case.body("first")
    etag = s3.put_object(Bucket=bucket, Key=key, Body=first, IfNoneMatch="*")["ETag"]
    with pytest.raises(ClientError) as caught:
        s3.put_object(Bucket=bucket, Key=key, Body=b"second", IfNoneMatch="*")
    assert error(caught) == (412, "PreconditionFailed")
    with pytest.raises(ClientError) as caught:
        s3.put_object(Bucket=bucket, Key=key, Body=b"third", IfMatch='"0123"')
    assert error(caught) == (412, "PreconditionFailed")
    assert case.get() == first
    replaced = case.body("replaced")
    s3.put_object(Bucket=bucket, Key=key, Body=replaced, IfMatch=etag)
    assert case.get() == replaced
    assert case.holding(first, b"second", b"third", replaced) == [0, 0, 0, 1]


def test_get_by_part_number(case: Case) -> None:
    s3, bucket, key = case.s3, case.bucket, case.key
    parts_data = [os.urandom(5 * MiB), case.body("tail part")]
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    parts: list[dict[str, Any]] = [
        {"PartNumber": n, "ETag": s3.upload_part(Bucket=bucket, Key=key, UploadId=upload_id,
                                                  PartNumber=n, Body=data)["ETag"]}
        for n, data in enumerate(parts_data, 1)]
    s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id,
                                 MultipartUpload={"Parts": parts})
    for number, data in enumerate(parts_data, 1):
        got = s3.get_object(Bucket=bucket, Key=key, PartNumber=number)
        assert got["Body"].read() == data and got["PartsCount"] == 2
        assert got["ContentLength"] == len(data)
    with pytest.raises(ClientError) as caught:
        s3.get_object(Bucket=bucket, Key=key, PartNumber=3)
    assert error(caught) == (416, "InvalidPartNumber")
