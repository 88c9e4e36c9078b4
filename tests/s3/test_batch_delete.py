"""DeleteObjects (POST ?delete) through boto3 and hand-made requests."""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
import zlib
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.s3.conftest import error_code, raw_request, status


def data_files(gateway: Any) -> list[Path]:
    """The file location's data once the collector is done (removal is in the background)."""
    gateway.settle()
    return gateway.data_files()


@pytest.fixture(params=["file", "memloc"])
def loc_bucket(request: pytest.FixtureRequest, s3: Any) -> str:
    name = f"batch-{uuid.uuid4().hex[:12]}"
    if request.param == "file":
        s3.create_bucket(Bucket=name)
    else:
        s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": "memloc"})
    return name


def keys_in(s3: Any, bucket: str) -> list[str]:
    return [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]


def delete_xml(keys: list[str], quiet: bool = False) -> bytes:
    objects = "".join(f"<Object><Key>{k}</Key></Object>" for k in keys)
    return (f'<Delete xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
            f"<Quiet>{str(quiet).lower()}</Quiet>{objects}</Delete>").encode()


def md5_header(body: bytes) -> dict[str, str]:
    return {"Content-MD5": base64.b64encode(hashlib.md5(body).digest()).decode()}


def test_delete_several_keys(gateway: Any, s3: Any, loc_bucket: str) -> None:
    for key in ("a", "b", "dir/c", "keep"):
        s3.put_object(Bucket=loc_bucket, Key=key, Body=key.encode() * 100)
    files_before = len(data_files(gateway))
    result = s3.delete_objects(Bucket=loc_bucket, Delete={"Objects": [
        {"Key": "a"}, {"Key": "b"}, {"Key": "dir/c"}, {"Key": "never-existed"}]})
    assert sorted(d["Key"] for d in result["Deleted"]) == ["a", "b", "dir/c", "never-existed"]
    assert "Errors" not in result
    assert keys_in(s3, loc_bucket) == ["keep"]
    on_file = s3.get_bucket_location(Bucket=loc_bucket)["LocationConstraint"] is None
    assert len(data_files(gateway)) == files_before - (3 if on_file else 0)  # data removed


def test_quiet_mode_reports_only_errors(s3: Any, loc_bucket: str) -> None:
    s3.put_object(Bucket=loc_bucket, Key="q1", Body=b"1")
    s3.put_object(Bucket=loc_bucket, Key="q2", Body=b"2")
    result = s3.delete_objects(Bucket=loc_bucket, Delete={"Quiet": True, "Objects": [
        {"Key": "q1"}, {"Key": "q2", "VersionId": "not-a-version"}]})
    assert "Deleted" not in result
    assert result["Errors"] == [{"Key": "q2", "VersionId": "not-a-version",
                                 "Code": "NoSuchVersion",
                                 "Message": "The specified version does not exist."}]
    assert keys_in(s3, loc_bucket) == ["q2"]  # a per-key error leaves that key alone


def test_null_version_id_deletes(s3: Any, loc_bucket: str) -> None:
    s3.put_object(Bucket=loc_bucket, Key="n", Body=b"n")
    result = s3.delete_objects(Bucket=loc_bucket, Delete={"Objects": [
        {"Key": "n", "VersionId": "null"}]})
    assert result["Deleted"] == [{"Key": "n", "VersionId": "null"}]
    assert keys_in(s3, loc_bucket) == []


def test_key_count_limit(s3: Any, loc_bucket: str) -> None:
    s3.put_object(Bucket=loc_bucket, Key="k0", Body=b"0")
    with pytest.raises(ClientError) as exc:
        s3.delete_objects(Bucket=loc_bucket, Delete={"Objects": [
            {"Key": f"k{i}"} for i in range(1001)]})
    assert error_code(exc) == "MalformedXML" and status(exc) == 400
    assert keys_in(s3, loc_bucket) == ["k0"]
    result = s3.delete_objects(Bucket=loc_bucket, Delete={"Quiet": True, "Objects": [
        {"Key": f"k{i}"} for i in range(1000)]})
    assert "Errors" not in result and keys_in(s3, loc_bucket) == []


def test_digest_headers(gateway: Any, s3: Any, loc_bucket: str) -> None:
    s3.put_object(Bucket=loc_bucket, Key="x", Body=b"x")
    path = f"/{loc_bucket}?delete"
    body = delete_xml(["x"])
    missing = raw_request(gateway, "POST", path, body=body)
    assert missing.status_code == 400 and b"<Code>InvalidRequest</Code>" in missing.content
    assert b"Missing required header for this request: Content-MD5" in missing.content
    wrong = raw_request(gateway, "POST", path, body=body, headers=md5_header(b"other"))
    assert wrong.status_code == 400 and b"<Code>BadDigest</Code>" in wrong.content
    bad_crc = base64.b64encode((zlib.crc32(b"other")).to_bytes(4, "big")).decode()
    wrong = raw_request(gateway, "POST", path, body=body,
                        headers={"x-amz-checksum-crc32": bad_crc})
    assert wrong.status_code == 400 and b"<Code>BadDigest</Code>" in wrong.content
    assert keys_in(s3, loc_bucket) == ["x"]  # nothing was deleted by a rejected request
    crc = base64.b64encode(zlib.crc32(body).to_bytes(4, "big")).decode()
    ok = raw_request(gateway, "POST", path, body=body, headers={"x-amz-checksum-crc32": crc})
    assert ok.status_code == 200 and b"<Deleted><Key>x</Key></Deleted>" in ok.content
    s3.put_object(Bucket=loc_bucket, Key="x", Body=b"x")
    ok = raw_request(gateway, "POST", path, body=body, headers=md5_header(body))
    assert ok.status_code == 200 and b"<DeleteResult" in ok.content
    assert keys_in(s3, loc_bucket) == []


@pytest.mark.parametrize("body", [
    b"not xml at all",
    b"<Delete></Delete>",
    b"<Delete><Object><VersionId>v</VersionId></Object></Delete>",
    b"<Remove><Object><Key>k</Key></Object></Remove>",
])
def test_malformed_bodies(gateway: Any, s3: Any, loc_bucket: str, body: bytes) -> None:
    s3.put_object(Bucket=loc_bucket, Key="k", Body=b"k")
    response = raw_request(gateway, "POST", f"/{loc_bucket}?delete", body=body,
                           headers=md5_header(body))
    assert response.status_code == 400 and b"<Code>MalformedXML</Code>" in response.content
    assert keys_in(s3, loc_bucket) == ["k"]


def test_access_and_missing_bucket(s3: Any, s3_other: Any, loc_bucket: str) -> None:
    s3.put_object(Bucket=loc_bucket, Key="mine", Body=b"m")
    # As on AWS, each key is authorized on its own: a refused key is a per-key AccessDenied.
    result = s3_other.delete_objects(Bucket=loc_bucket, Delete={"Objects": [{"Key": "mine"}]})
    assert [(e["Key"], e["Code"]) for e in result["Errors"]] == [("mine", "AccessDenied")]
    assert "Deleted" not in result
    assert keys_in(s3, loc_bucket) == ["mine"]
    with pytest.raises(ClientError) as exc:
        s3.delete_objects(Bucket=f"gone-{uuid.uuid4().hex[:8]}",
                          Delete={"Objects": [{"Key": "k"}]})
    assert error_code(exc) == "NoSuchBucket"


def test_policy_is_checked_per_key(s3: Any, s3_other: Any, loc_bucket: str) -> None:
    s3.put_bucket_policy(Bucket=loc_bucket, Policy=json.dumps({
        "Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::123456789013:root"},
            "Action": "s3:DeleteObject", "Resource": f"arn:aws:s3:::{loc_bucket}/tmp/*"}]}))
    for key in ("tmp/a", "tmp/b", "keep/c"):
        s3.put_object(Bucket=loc_bucket, Key=key, Body=b"x")
    result = s3_other.delete_objects(Bucket=loc_bucket, Delete={"Objects": [
        {"Key": "tmp/a"}, {"Key": "keep/c"}, {"Key": "tmp/b"}]})
    assert sorted(d["Key"] for d in result["Deleted"]) == ["tmp/a", "tmp/b"]
    assert [(e["Key"], e["Code"]) for e in result["Errors"]] == [("keep/c", "AccessDenied")]
    assert keys_in(s3, loc_bucket) == ["keep/c"]
