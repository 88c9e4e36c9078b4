"""CopyObject and UploadPartCopy through boto3, on the file and mem locations and across them."""

from __future__ import annotations

import hashlib
import json
import os
import time
import uuid
from email.utils import formatdate
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.s3.conftest import error_code, raw_request, status

MIB = 1024 * 1024


def data_files(gateway: Any) -> list[Path]:
    """The file location's data once the collector is done (removal is in the background)."""
    gateway.settle()
    return gateway.data_files()


def new_bucket(s3: Any, location: str) -> str:
    name = f"copy-{uuid.uuid4().hex[:12]}"
    if location == "file":
        s3.create_bucket(Bucket=name)  # us-east-1: a file location
    else:
        s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": location})
    return name


@pytest.fixture(params=["file", "memloc"])
def where(request: pytest.FixtureRequest) -> str:
    return request.param


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def test_copy_keeps_bytes_metadata_and_tags(s3: Any, where: str) -> None:
    bucket = new_bucket(s3, where)
    body = os.urandom(300_000)
    s3.put_object(Bucket=bucket, Key="src", Body=body, ContentType="text/x-src",
                  CacheControl="max-age=5", Metadata={"color": "red"}, Tagging="a=1&b=2")
    result = s3.copy_object(Bucket=bucket, Key="dst", CopySource={"Bucket": bucket, "Key": "src"},
                            ContentType="ignored/with-copy", Metadata={"ignored": "yes"})
    copied = result["CopyObjectResult"]
    assert copied["ETag"] == f'"{md5(body)}"'
    assert abs(copied["LastModified"].timestamp() - time.time()) < 60
    got = s3.get_object(Bucket=bucket, Key="dst")
    assert got["Body"].read() == body
    assert got["ContentType"] == "text/x-src" and got["CacheControl"] == "max-age=5"
    assert got["Metadata"] == {"color": "red"}
    assert got["TagCount"] == 2
    # The copy is independent of its source.
    s3.delete_object(Bucket=bucket, Key="src")
    assert s3.get_object(Bucket=bucket, Key="dst")["Body"].read() == body


def test_copy_replace_directives(s3: Any, where: str) -> None:
    bucket = new_bucket(s3, where)
    s3.put_object(Bucket=bucket, Key="src", Body=b"data", ContentType="text/plain",
                  Metadata={"old": "1"}, Tagging="t=1")
    s3.copy_object(Bucket=bucket, Key="dst", CopySource=f"{bucket}/src",
                   MetadataDirective="REPLACE", ContentType="application/json",
                   Metadata={"new": "2"}, TaggingDirective="REPLACE", Tagging="x=9&y=8&z=7")
    head = s3.head_object(Bucket=bucket, Key="dst")
    assert head["ContentType"] == "application/json"
    assert head["Metadata"] == {"new": "2"}
    tags = s3.get_object_tagging(Bucket=bucket, Key="dst")["TagSet"]
    assert {t["Key"]: t["Value"] for t in tags} == {"x": "9", "y": "8", "z": "7"}
    # Tagging REPLACE without a header clears the tags; metadata COPY keeps the source's.
    s3.copy_object(Bucket=bucket, Key="dst2", CopySource=f"{bucket}/src", TaggingDirective="REPLACE")
    assert s3.get_object_tagging(Bucket=bucket, Key="dst2")["TagSet"] == []
    assert s3.head_object(Bucket=bucket, Key="dst2")["Metadata"] == {"old": "1"}


@pytest.mark.parametrize("source_loc,dest_loc", [("file", "memloc"), ("memloc", "file")])
def test_copy_across_locations_streams(gateway: Any, s3: Any, source_loc: str,
                                       dest_loc: str) -> None:
    src_bucket, dst_bucket = new_bucket(s3, source_loc), new_bucket(s3, dest_loc)
    body = os.urandom(3 * MIB + 123)
    s3.put_object(Bucket=src_bucket, Key="big", Body=body)
    before = len(data_files(gateway))
    result = s3.copy_object(Bucket=dst_bucket, Key="copied/big",
                            CopySource={"Bucket": src_bucket, "Key": "big"})
    assert result["CopyObjectResult"]["ETag"] == f'"{md5(body)}"'
    assert s3.get_object(Bucket=dst_bucket, Key="copied/big")["Body"].read() == body
    # The bytes landed on the destination's location: one new file only when it is `file`.
    assert len(data_files(gateway)) == before + (1 if dest_loc == "file" else 0)


def test_copy_of_multipart_source_gets_fresh_md5(s3: Any, where: str) -> None:
    bucket = new_bucket(s3, where)
    part1, part2 = os.urandom(5 * MIB), os.urandom(1000)
    upload = s3.create_multipart_upload(Bucket=bucket, Key="mp")["UploadId"]
    etags = [s3.upload_part(Bucket=bucket, Key="mp", UploadId=upload, PartNumber=n,
                            Body=data)["ETag"] for n, data in ((1, part1), (2, part2))]
    s3.complete_multipart_upload(Bucket=bucket, Key="mp", UploadId=upload, MultipartUpload={
        "Parts": [{"PartNumber": n + 1, "ETag": e} for n, e in enumerate(etags)]})
    assert s3.head_object(Bucket=bucket, Key="mp")["ETag"].endswith('-2"')
    result = s3.copy_object(Bucket=bucket, Key="flat", CopySource=f"{bucket}/mp")
    assert result["CopyObjectResult"]["ETag"] == f'"{md5(part1 + part2)}"'
    head = s3.head_object(Bucket=bucket, Key="flat")
    assert head["ContentLength"] == len(part1) + len(part2) and "PartsCount" not in head
    assert s3.get_object(Bucket=bucket, Key="flat")["Body"].read() == part1 + part2


def test_copy_onto_itself(gateway: Any, s3: Any, where: str) -> None:
    bucket = new_bucket(s3, where)
    put = s3.put_object(Bucket=bucket, Key="self", Body=b"same bytes", Metadata={"v": "1"})
    with pytest.raises(ClientError) as exc:
        s3.copy_object(Bucket=bucket, Key="self", CopySource=f"{bucket}/self")
    assert error_code(exc) == "InvalidRequest" and status(exc) == 400
    assert "copy an object to itself" in exc.value.response["Error"]["Message"]
    before = len(data_files(gateway))
    s3.copy_object(Bucket=bucket, Key="self", CopySource=f"{bucket}/self",
                   MetadataDirective="REPLACE", Metadata={"v": "2"}, ContentType="text/new")
    head = s3.head_object(Bucket=bucket, Key="self")
    assert head["Metadata"] == {"v": "2"} and head["ContentType"] == "text/new"
    assert head["ETag"] == put["ETag"]
    assert s3.get_object(Bucket=bucket, Key="self")["Body"].read() == b"same bytes"
    assert len(data_files(gateway)) == before  # metadata only: no byte copied, nothing left


def test_copy_source_version_id(s3: Any, where: str) -> None:
    bucket = new_bucket(s3, where)
    s3.put_object(Bucket=bucket, Key="v", Body=b"versioned?")
    s3.copy_object(Bucket=bucket, Key="v2", CopySource={"Bucket": bucket, "Key": "v",
                                                         "VersionId": "null"})
    assert s3.get_object(Bucket=bucket, Key="v2")["Body"].read() == b"versioned?"
    with pytest.raises(ClientError) as exc:
        s3.copy_object(Bucket=bucket, Key="v3", CopySource={"Bucket": bucket, "Key": "v",
                                                             "VersionId": "3HL4kqtJlcpXroDTDmJ"})
    assert error_code(exc) == "NoSuchVersion" and status(exc) == 404


def test_copy_conditions(s3: Any, where: str) -> None:
    bucket = new_bucket(s3, where)
    etag = s3.put_object(Bucket=bucket, Key="c", Body=b"conditional")["ETag"]
    src = f"{bucket}/c"
    past = formatdate(time.time() - 3600, usegmt=True)
    future = formatdate(time.time() + 3600, usegmt=True)
    failing: list[dict[str, str]] = [
        {"CopySourceIfMatch": '"0123456789abcdef0123456789abcdef"'},
        {"CopySourceIfNoneMatch": etag},
        {"CopySourceIfUnmodifiedSince": past},
        {"CopySourceIfModifiedSince": future},
        {"CopySourceIfNoneMatch": etag, "CopySourceIfModifiedSince": past},
    ]
    for conditions in failing:
        with pytest.raises(ClientError) as exc:
            s3.copy_object(Bucket=bucket, Key="out", CopySource=src, **conditions)
        assert error_code(exc) == "PreconditionFailed" and status(exc) == 412, conditions
    with pytest.raises(ClientError):
        s3.head_object(Bucket=bucket, Key="out")  # nothing was written
    passing: list[dict[str, str]] = [
        {"CopySourceIfMatch": etag},
        {"CopySourceIfMatch": etag, "CopySourceIfUnmodifiedSince": past},  # if-match wins
        {"CopySourceIfNoneMatch": '"ffffffffffffffffffffffffffffffff"'},
        {"CopySourceIfModifiedSince": past, "CopySourceIfUnmodifiedSince": future},
    ]
    for conditions in passing:
        s3.copy_object(Bucket=bucket, Key="out", CopySource=src, **conditions)
    assert s3.get_object(Bucket=bucket, Key="out")["Body"].read() == b"conditional"


def test_copy_errors(gateway: Any, s3: Any, s3_other: Any) -> None:
    bucket = new_bucket(s3, "file")
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    with pytest.raises(ClientError) as exc:
        s3.copy_object(Bucket=bucket, Key="d", CopySource=f"{bucket}/missing")
    assert error_code(exc) == "NoSuchKey"
    with pytest.raises(ClientError) as exc:
        s3.copy_object(Bucket=bucket, Key="d", CopySource="no-such-bucket-copy/k")
    assert error_code(exc) == "NoSuchBucket"
    with pytest.raises(ClientError) as exc:
        s3.copy_object(Bucket=bucket, Key="d", CopySource=f"{bucket}/k",
                       MetadataDirective="MERGE")
    assert error_code(exc) == "InvalidArgument"
    with pytest.raises(ClientError) as exc:
        s3.copy_object(Bucket=bucket, Key="d", CopySource=f"{bucket}/k",
                       TaggingDirective="KEEP")
    assert error_code(exc) == "InvalidArgument"
    # Another account can neither read the source nor write the destination.
    theirs = f"other-{uuid.uuid4().hex[:12]}"
    s3_other.create_bucket(Bucket=theirs)
    s3_other.put_object(Bucket=theirs, Key="secret", Body=b"s")
    with pytest.raises(ClientError) as exc:
        s3.copy_object(Bucket=bucket, Key="d", CopySource=f"{theirs}/secret")
    assert error_code(exc) == "AccessDenied"
    with pytest.raises(ClientError) as exc:
        s3_other.copy_object(Bucket=theirs, Key="d", CopySource=f"{bucket}/k")
    assert error_code(exc) == "AccessDenied"
    response = raw_request(gateway, "PUT", f"/{bucket}/d",
                           headers={"x-amz-copy-source": "bucket-without-key"})
    assert response.status_code == 400 and b"<Code>InvalidArgument</Code>" in response.content
    with pytest.raises(ClientError):
        s3.head_object(Bucket=bucket, Key="d")


def test_copy_location_header_with_replace(gateway: Any, s3: Any) -> None:
    bucket = new_bucket(s3, "file")
    s3.put_object(Bucket=bucket, Key="k", Body=b"to memory")
    before = len(data_files(gateway))
    s3.copy_object(Bucket=bucket, Key="in-mem", CopySource=f"{bucket}/k",
                   MetadataDirective="REPLACE",
                   Metadata={"scal-location-constraint": "memloc"})
    assert len(data_files(gateway)) == before  # stored on memloc, not on disk
    assert s3.get_object(Bucket=bucket, Key="in-mem")["Body"].read() == b"to memory"
    with pytest.raises(ClientError) as exc:
        s3.copy_object(Bucket=bucket, Key="nowhere", CopySource=f"{bucket}/k",
                       MetadataDirective="REPLACE",
                       Metadata={"scal-location-constraint": "no-such-location"})
    assert error_code(exc) == "InvalidArgument"


def test_copy_keys_with_special_characters(s3: Any, where: str) -> None:
    bucket = new_bucket(s3, where)
    key = "dir/ünïcode key+plus?&=%.txt"
    s3.put_object(Bucket=bucket, Key=key, Body=b"special")
    s3.copy_object(Bucket=bucket, Key="out", CopySource={"Bucket": bucket, "Key": key})
    assert s3.get_object(Bucket=bucket, Key="out")["Body"].read() == b"special"


def test_empty_object_copy(s3: Any, where: str) -> None:
    bucket = new_bucket(s3, where)
    s3.put_object(Bucket=bucket, Key="empty", Body=b"")
    result = s3.copy_object(Bucket=bucket, Key="empty2", CopySource=f"{bucket}/empty")
    assert result["CopyObjectResult"]["ETag"] == '"d41d8cd98f00b204e9800998ecf8427e"'
    assert s3.get_object(Bucket=bucket, Key="empty2")["Body"].read() == b""


@pytest.mark.parametrize("source_loc", ["file", "memloc"])
def test_upload_part_copy(s3: Any, where: str, source_loc: str) -> None:
    src_bucket, bucket = new_bucket(s3, source_loc), new_bucket(s3, where)
    source = os.urandom(6 * MIB + 10)
    s3.put_object(Bucket=src_bucket, Key="source", Body=source)
    upload = s3.create_multipart_upload(Bucket=bucket, Key="assembled")["UploadId"]
    first = s3.upload_part_copy(Bucket=bucket, Key="assembled", UploadId=upload, PartNumber=1,
                                CopySource={"Bucket": src_bucket, "Key": "source"},
                                CopySourceRange=f"bytes=0-{5 * MIB - 1}")
    assert first["CopyPartResult"]["ETag"] == f'"{md5(source[:5 * MIB])}"'
    second = s3.upload_part_copy(Bucket=bucket, Key="assembled", UploadId=upload, PartNumber=2,
                                 CopySource=f"{src_bucket}/source",
                                 CopySourceRange=f"bytes={5 * MIB}-{len(source) - 1}")
    assert second["CopyPartResult"]["ETag"] == f'"{md5(source[5 * MIB:])}"'
    parts = s3.list_parts(Bucket=bucket, Key="assembled", UploadId=upload)["Parts"]
    assert [p["Size"] for p in parts] == [5 * MIB, MIB + 10]
    s3.complete_multipart_upload(Bucket=bucket, Key="assembled", UploadId=upload,
                                 MultipartUpload={"Parts": [
                                     {"PartNumber": 1, "ETag": first["CopyPartResult"]["ETag"]},
                                     {"PartNumber": 2, "ETag": second["CopyPartResult"]["ETag"]}]})
    assert s3.get_object(Bucket=bucket, Key="assembled")["Body"].read() == source


def test_upload_part_copy_whole_object_and_errors(s3: Any, where: str) -> None:
    bucket = new_bucket(s3, where)
    s3.put_object(Bucket=bucket, Key="small", Body=b"0123456789")
    upload = s3.create_multipart_upload(Bucket=bucket, Key="dst")["UploadId"]
    whole = s3.upload_part_copy(Bucket=bucket, Key="dst", UploadId=upload, PartNumber=1,
                                CopySource=f"{bucket}/small")
    assert whole["CopyPartResult"]["ETag"] == f'"{md5(b"0123456789")}"'
    bad_ranges = ["bytes=0-10", "bytes=5-2", "0-3", "bytes=-3", "bytes=3-", "bytes=0-1,3-4"]
    for value in bad_ranges:
        with pytest.raises(ClientError) as exc:
            s3.upload_part_copy(Bucket=bucket, Key="dst", UploadId=upload, PartNumber=2,
                                CopySource=f"{bucket}/small", CopySourceRange=value)
        assert error_code(exc) == "InvalidArgument", value
    with pytest.raises(ClientError) as exc:
        s3.upload_part_copy(Bucket=bucket, Key="dst", UploadId="nope", PartNumber=2,
                            CopySource=f"{bucket}/small")
    assert error_code(exc) == "NoSuchUpload"
    with pytest.raises(ClientError) as exc:
        s3.upload_part_copy(Bucket=bucket, Key="dst", UploadId=upload, PartNumber=2,
                            CopySource=f"{bucket}/absent")
    assert error_code(exc) == "NoSuchKey"
    with pytest.raises(ClientError) as exc:
        s3.upload_part_copy(Bucket=bucket, Key="dst", UploadId=upload, PartNumber=2,
                            CopySource=f"{bucket}/small", CopySourceIfMatch='"nope"')
    assert error_code(exc) == "PreconditionFailed"
    with pytest.raises(ClientError) as exc:
        s3.upload_part_copy(Bucket=bucket, Key="dst", UploadId=upload, PartNumber=10001,
                            CopySource=f"{bucket}/small")
    assert error_code(exc) == "InvalidArgument"
    parts = s3.list_parts(Bucket=bucket, Key="dst", UploadId=upload).get("Parts", [])
    assert [p["PartNumber"] for p in parts] == [1]  # no failed copy left a part
    s3.abort_multipart_upload(Bucket=bucket, Key="dst", UploadId=upload)


def test_copy_source_read_is_authorized_as_get_object(s3: Any, s3_other: Any) -> None:
    theirs = f"other-{uuid.uuid4().hex[:12]}"
    s3_other.create_bucket(Bucket=theirs)
    s3_other.put_object(Bucket=theirs, Key="public/doc", Body=b"shared")
    s3_other.put_object(Bucket=theirs, Key="private/doc", Body=b"secret")
    s3_other.put_bucket_policy(Bucket=theirs, Policy=json.dumps({
        "Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::123456789012:root"},
            "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{theirs}/public/*"}]}))
    mine = new_bucket(s3, "file")
    s3.copy_object(Bucket=mine, Key="got", CopySource=f"{theirs}/public/doc")
    assert s3.get_object(Bucket=mine, Key="got")["Body"].read() == b"shared"
    with pytest.raises(ClientError) as exc:
        s3.copy_object(Bucket=mine, Key="nope", CopySource=f"{theirs}/private/doc")
    assert error_code(exc) == "AccessDenied"
    # Reading the source is not writing it: the policy gives no PutObject on their bucket.
    with pytest.raises(ClientError) as exc:
        s3.copy_object(Bucket=theirs, Key="public/new", CopySource=f"{mine}/got")
    assert error_code(exc) == "AccessDenied"


def test_copy_acl_comes_from_the_request_not_the_source(gateway: Any, s3: Any) -> None:
    bucket = new_bucket(s3, "file")
    s3.put_object(Bucket=bucket, Key="public", Body=b"p", ACL="public-read")
    s3.copy_object(Bucket=bucket, Key="copy-private", CopySource=f"{bucket}/public")
    s3.copy_object(Bucket=bucket, Key="copy-public", CopySource=f"{bucket}/public",
                   ACL="public-read")
    anonymous = raw_request(gateway, "GET", f"/{bucket}/copy-public", sign=False)
    assert anonymous.status_code == 200 and anonymous.content == b"p"
    anonymous = raw_request(gateway, "GET", f"/{bucket}/copy-private", sign=False)
    assert anonymous.status_code == 403
    grants = s3.get_object_acl(Bucket=bucket, Key="copy-private")["Grants"]
    assert [g["Permission"] for g in grants] == ["FULL_CONTROL"]
