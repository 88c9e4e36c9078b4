"""GET/HEAD ?partNumber=N: the bytes of one part of a multipart object (206, Content-Range,
x-amz-mp-parts-count), its checksum with x-amz-checksum-mode: ENABLED, InvalidPartNumber (416)
out of range; part 1 of a single-part object is the whole object."""

from __future__ import annotations

import base64
import hashlib
import os
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.gatewayproc import Gateway
from tests.s3.conftest import error_code, raw_request, status

MiB = 1024 * 1024


def upload_parts(s3: Any, bucket: str, key: str, parts: list[bytes], **create: Any) -> dict:
    """A completed multipart upload of `parts`; each part's UploadPart answer is returned
    under "answers"."""
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key=key, **create)["UploadId"]
    algorithm = create.get("ChecksumAlgorithm")
    extra = {"ChecksumAlgorithm": algorithm} if algorithm else {}
    answers = [s3.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=n,
                              Body=data, **extra) for n, data in enumerate(parts, 1)]
    listed = []
    for n, answer in enumerate(answers, 1):
        entry = {"PartNumber": n, "ETag": answer["ETag"]}
        if algorithm:
            entry[f"Checksum{algorithm}"] = answer[f"Checksum{algorithm}"]
        listed.append(entry)
    done = s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id,
                                        MultipartUpload={"Parts": listed})
    return {**done, "answers": answers}


@pytest.fixture(scope="module")
def multipart(s3: Any) -> dict[str, Any]:
    bucket = f"parts-{os.urandom(4).hex()}"
    s3.create_bucket(Bucket=bucket)
    parts = [os.urandom(5 * MiB), os.urandom(5 * MiB + 7), os.urandom(1000)]
    done = upload_parts(s3, bucket, "mp", parts, ChecksumAlgorithm="SHA256")
    return {"bucket": bucket, "key": "mp", "parts": parts, "done": done}


def test_get_each_part(s3: Any, multipart: dict[str, Any]) -> None:
    parts = multipart["parts"]
    total = sum(len(p) for p in parts)
    first = 0
    for number, data in enumerate(parts, 1):
        got = s3.get_object(Bucket=multipart["bucket"], Key=multipart["key"], PartNumber=number)
        assert got["ResponseMetadata"]["HTTPStatusCode"] == 206
        assert got["Body"].read() == data
        assert got["ContentLength"] == len(data)
        assert got["ContentRange"] == f"bytes {first}-{first + len(data) - 1}/{total}"
        assert got["PartsCount"] == 3
        assert got["ETag"] == multipart["done"]["ETag"]  # the object's, not the part's
        first += len(data)


def test_head_part_and_its_checksum(s3: Any, multipart: dict[str, Any]) -> None:
    for number, answer in enumerate(multipart["done"]["answers"], 1):
        head = s3.head_object(Bucket=multipart["bucket"], Key=multipart["key"],
                              PartNumber=number, ChecksumMode="ENABLED")
        assert head["ResponseMetadata"]["HTTPStatusCode"] == 206
        assert head["ContentLength"] == len(multipart["parts"][number - 1])
        assert head["PartsCount"] == 3
        assert head["ChecksumSHA256"] == answer["ChecksumSHA256"]
        expected = base64.b64encode(hashlib.sha256(multipart["parts"][number - 1]).digest())
        assert head["ChecksumSHA256"] == expected.decode()
    whole = s3.head_object(Bucket=multipart["bucket"], Key=multipart["key"],
                           ChecksumMode="ENABLED")
    assert whole["ChecksumSHA256"].endswith("-3")  # without partNumber: the object's
    assert "PartsCount" not in whole


def test_part_out_of_range(s3: Any, multipart: dict[str, Any]) -> None:
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=multipart["bucket"], Key=multipart["key"], PartNumber=4)
    assert (status(exc), error_code(exc)) == (416, "InvalidPartNumber")
    with pytest.raises(ClientError) as exc:
        s3.head_object(Bucket=multipart["bucket"], Key=multipart["key"], PartNumber=4)
    assert status(exc) == 416


def test_part_with_range_is_refused(s3: Any, multipart: dict[str, Any]) -> None:
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=multipart["bucket"], Key=multipart["key"], PartNumber=1,
                      Range="bytes=0-9")
    assert (status(exc), error_code(exc)) == (400, "InvalidRequest")


@pytest.mark.parametrize("value", ["0", "10001", "abc"])
def test_bad_part_number(gateway: Gateway, multipart: dict[str, Any], value: str) -> None:
    answer = raw_request(gateway, "GET",
                         f"/{multipart['bucket']}/{multipart['key']}?partNumber={value}")
    assert answer.status_code == 400 and b"<Code>InvalidArgument</Code>" in answer.content


def test_single_part_object(s3: Any, bucket: str) -> None:
    data = os.urandom(3000)
    s3.put_object(Bucket=bucket, Key="one", Body=data)
    got = s3.get_object(Bucket=bucket, Key="one", PartNumber=1)
    assert got["Body"].read() == data
    assert got["ResponseMetadata"]["HTTPStatusCode"] == 200 and "PartsCount" not in got
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=bucket, Key="one", PartNumber=2)
    assert (status(exc), error_code(exc)) == (416, "InvalidPartNumber")


def test_part_of_a_version(s3: Any, bucket: str) -> None:
    """partNumber applies to the version named: an older multipart version keeps its parts."""
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    parts = [os.urandom(5 * MiB), b"tail"]
    old = upload_parts(s3, bucket, "v", parts)
    s3.put_object(Bucket=bucket, Key="v", Body=b"new")
    got = s3.get_object(Bucket=bucket, Key="v", VersionId=old["VersionId"], PartNumber=2)
    assert got["Body"].read() == b"tail" and got["PartsCount"] == 2
    assert s3.get_object(Bucket=bucket, Key="v", PartNumber=1)["Body"].read() == b"new"
