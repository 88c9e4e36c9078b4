"""GetObjectAttributes (GET ?attributes): ETag, Checksum, ObjectParts (paged with max-parts and
part-number-marker), StorageClass, ObjectSize; by version; a delete marker answers as AWS."""

from __future__ import annotations

import base64
import hashlib
import os
import zlib
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.gatewayproc import Gateway
from tests.s3.conftest import error_code, raw_request, status
from tests.s3.test_part_number import MiB, upload_parts

ALL = ["ETag", "Checksum", "ObjectParts", "StorageClass", "ObjectSize"]


def test_single_part_object(s3: Any, bucket: str) -> None:
    data = b"attributes of a plain object"
    put = s3.put_object(Bucket=bucket, Key="plain", Body=data, ChecksumAlgorithm="CRC32",
                        StorageClass="STANDARD_IA")
    got = s3.get_object_attributes(Bucket=bucket, Key="plain", ObjectAttributes=ALL)
    assert got["ETag"] == hashlib.md5(data).hexdigest()  # unquoted, as AWS
    assert put["ETag"].strip('"') == got["ETag"]
    crc = base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()
    assert got["Checksum"]["ChecksumCRC32"] == crc
    assert got["Checksum"]["ChecksumType"] == "FULL_OBJECT"
    assert got["ObjectSize"] == len(data)
    assert got["StorageClass"] == "STANDARD_IA"
    assert "ObjectParts" not in got  # not assembled from parts
    assert got["LastModified"] is not None


def test_only_what_is_asked(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"12345")
    got = s3.get_object_attributes(Bucket=bucket, Key="k", ObjectAttributes=["ObjectSize"])
    assert got["ObjectSize"] == 5
    assert "ETag" not in got and "StorageClass" not in got and "Checksum" not in got
    got = s3.get_object_attributes(Bucket=bucket, Key="k", ObjectAttributes=["StorageClass"])
    assert got["StorageClass"] == "STANDARD"


def test_object_parts_paged(s3: Any, bucket: str) -> None:
    parts = [os.urandom(5 * MiB), os.urandom(5 * MiB), b"last part"]
    done = upload_parts(s3, bucket, "mp", parts, ChecksumAlgorithm="CRC32C")
    got = s3.get_object_attributes(Bucket=bucket, Key="mp", ObjectAttributes=ALL, MaxParts=2)
    assert got["ETag"] == done["ETag"].strip('"') and got["ETag"].endswith("-3")
    assert got["ObjectSize"] == sum(len(p) for p in parts)
    assert got["Checksum"]["ChecksumCRC32C"] == done["ChecksumCRC32C"]
    page = got["ObjectParts"]
    assert page["TotalPartsCount"] == 3 and page["MaxParts"] == 2 and page["IsTruncated"]
    assert page["PartNumberMarker"] == 0 and page["NextPartNumberMarker"] == 2
    assert [(p["PartNumber"], p["Size"]) for p in page["Parts"]] == [(1, 5 * MiB), (2, 5 * MiB)]
    assert [p["ChecksumCRC32C"] for p in page["Parts"]] == \
        [a["ChecksumCRC32C"] for a in done["answers"][:2]]
    rest = s3.get_object_attributes(Bucket=bucket, Key="mp", ObjectAttributes=["ObjectParts"],
                                    MaxParts=2, PartNumberMarker=2)["ObjectParts"]
    assert not rest["IsTruncated"] and rest["NextPartNumberMarker"] == 3
    assert [(p["PartNumber"], p["Size"]) for p in rest["Parts"]] == [(3, len(b"last part"))]


def test_versions_and_delete_marker(s3: Any, bucket: str) -> None:
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    first = s3.put_object(Bucket=bucket, Key="v", Body=b"first")
    s3.put_object(Bucket=bucket, Key="v", Body=b"second version")
    got = s3.get_object_attributes(Bucket=bucket, Key="v", VersionId=first["VersionId"],
                                   ObjectAttributes=["ObjectSize", "ETag"])
    assert got["ObjectSize"] == 5 and got["VersionId"] == first["VersionId"]
    assert got["ETag"] == hashlib.md5(b"first").hexdigest()
    marker = s3.delete_object(Bucket=bucket, Key="v")
    with pytest.raises(ClientError) as exc:
        s3.get_object_attributes(Bucket=bucket, Key="v", ObjectAttributes=["ObjectSize"])
    assert (status(exc), error_code(exc)) == (404, "NoSuchKey")
    headers = exc.value.response["ResponseMetadata"]["HTTPHeaders"]
    assert headers["x-amz-delete-marker"] == "true"
    assert headers["x-amz-version-id"] == marker["VersionId"]
    # The older versions stay readable by id.
    got = s3.get_object_attributes(Bucket=bucket, Key="v", VersionId=first["VersionId"],
                                   ObjectAttributes=["ObjectSize"])
    assert got["ObjectSize"] == 5


def test_missing_object(s3: Any, bucket: str) -> None:
    with pytest.raises(ClientError) as exc:
        s3.get_object_attributes(Bucket=bucket, Key="nope", ObjectAttributes=["ETag"])
    assert (status(exc), error_code(exc)) == (404, "NoSuchKey")


def test_bad_attribute_names(s3: Any, gateway: Gateway, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    with pytest.raises(ClientError) as exc:
        s3.get_object_attributes(Bucket=bucket, Key="k", ObjectAttributes=["ETag", "Bogus"])
    assert (status(exc), error_code(exc)) == (400, "InvalidArgument")
    answer = raw_request(gateway, "GET", f"/{bucket}/k?attributes")
    assert answer.status_code == 400 and b"<Code>InvalidRequest</Code>" in answer.content


def test_other_account_is_refused(s3_other: Any, s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="private", Body=b"x")
    with pytest.raises(ClientError) as exc:
        s3_other.get_object_attributes(Bucket=bucket, Key="private", ObjectAttributes=["ETag"])
    assert status(exc) == 403
