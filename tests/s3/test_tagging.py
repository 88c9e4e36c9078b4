"""Object and bucket tagging through boto3 and hand-made requests."""

from __future__ import annotations

import base64
import hashlib
import uuid
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.s3.conftest import error_code, raw_request, status


@pytest.fixture(params=["file", "memloc"])
def loc_bucket(request: pytest.FixtureRequest, s3: Any) -> str:
    name = f"tags-{uuid.uuid4().hex[:12]}"
    if request.param == "file":
        s3.create_bucket(Bucket=name)
    else:
        s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": "memloc"})
    return name


def tag_set(tags: dict[str, str]) -> dict[str, Any]:
    return {"TagSet": [{"Key": k, "Value": v} for k, v in tags.items()]}


def as_dict(tag_list: list[dict[str, str]]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in tag_list}


def test_object_tagging_cycle(s3: Any, loc_bucket: str) -> None:
    put = s3.put_object(Bucket=loc_bucket, Key="obj", Body=b"tagged body", Tagging="first=1")
    assert as_dict(s3.get_object_tagging(Bucket=loc_bucket, Key="obj")["TagSet"]) == {"first": "1"}
    tags = {"project": "gateway", "empty": "", "unicode ключ": "значение", "k" * 128: "v" * 256}
    s3.put_object_tagging(Bucket=loc_bucket, Key="obj", Tagging=tag_set(tags))
    assert as_dict(s3.get_object_tagging(Bucket=loc_bucket, Key="obj")["TagSet"]) == tags
    got = s3.get_object(Bucket=loc_bucket, Key="obj")
    assert got["TagCount"] == 4 and got["ETag"] == put["ETag"]
    assert got["Body"].read() == b"tagged body"  # tags never touch the bytes
    deleted = s3.delete_object_tagging(Bucket=loc_bucket, Key="obj")
    assert deleted["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert s3.get_object_tagging(Bucket=loc_bucket, Key="obj")["TagSet"] == []
    assert "TagCount" not in s3.head_object(Bucket=loc_bucket, Key="obj")


def test_object_tagging_null_version(s3: Any, loc_bucket: str) -> None:
    s3.put_object(Bucket=loc_bucket, Key="v", Body=b"v")
    s3.put_object_tagging(Bucket=loc_bucket, Key="v", VersionId="null",
                          Tagging=tag_set({"a": "b"}))
    got = s3.get_object_tagging(Bucket=loc_bucket, Key="v", VersionId="null")
    assert as_dict(got["TagSet"]) == {"a": "b"}
    with pytest.raises(ClientError) as exc:
        s3.get_object_tagging(Bucket=loc_bucket, Key="v", VersionId="3sL4kqtJlcpXroDTDmJ")
    assert error_code(exc) == "NoSuchVersion" and status(exc) == 404


@pytest.mark.parametrize("tags", [
    {f"k{i}": "v" for i in range(11)},
    {"k" * 129: "v"},
    {"k": "v" * 257},
])
def test_invalid_object_tags(s3: Any, loc_bucket: str, tags: dict[str, str]) -> None:
    s3.put_object(Bucket=loc_bucket, Key="obj", Body=b"x", Tagging="keep=me")
    with pytest.raises(ClientError) as exc:
        s3.put_object_tagging(Bucket=loc_bucket, Key="obj", Tagging=tag_set(tags))
    assert error_code(exc) == "InvalidTag" and status(exc) == 400
    assert as_dict(s3.get_object_tagging(Bucket=loc_bucket, Key="obj")["TagSet"]) == {"keep": "me"}


def test_duplicate_and_malformed_tags(gateway: Any, s3: Any, loc_bucket: str) -> None:
    s3.put_object(Bucket=loc_bucket, Key="obj", Body=b"x")
    with pytest.raises(ClientError) as exc:
        s3.put_object_tagging(Bucket=loc_bucket, Key="obj", Tagging={"TagSet": [
            {"Key": "same", "Value": "1"}, {"Key": "same", "Value": "2"}]})
    assert error_code(exc) == "InvalidTag"
    for body in (b"<Tagging><TagSet><Tag><Key>k</Key></Tag></TagSet></Tagging>",
                 b"<Tagging></Tagging>", b"<Tags><TagSet/></Tags>", b"{not xml"):
        headers = {"Content-MD5": base64.b64encode(hashlib.md5(body).digest()).decode()}
        response = raw_request(gateway, "PUT", f"/{loc_bucket}/obj?tagging", body=body,
                               headers=headers)
        assert response.status_code == 400, body
        assert b"<Code>MalformedXML</Code>" in response.content, body
    body = b"<Tagging><TagSet><Tag><Key></Key><Value>v</Value></Tag></TagSet></Tagging>"
    response = raw_request(gateway, "PUT", f"/{loc_bucket}/obj?tagging", body=body)
    assert response.status_code == 400 and b"<Code>InvalidTag</Code>" in response.content
    body = b"<Tagging><TagSet/></Tagging>"
    response = raw_request(gateway, "PUT", f"/{loc_bucket}/obj?tagging", body=body,
                           headers={"Content-MD5": base64.b64encode(b"0" * 16).decode()})
    assert response.status_code == 400 and b"<Code>BadDigest</Code>" in response.content


def test_object_tagging_missing(s3: Any, s3_other: Any, loc_bucket: str) -> None:
    with pytest.raises(ClientError) as exc:
        s3.get_object_tagging(Bucket=loc_bucket, Key="absent")
    assert error_code(exc) == "NoSuchKey"
    with pytest.raises(ClientError) as exc:
        s3.put_object_tagging(Bucket=loc_bucket, Key="absent", Tagging=tag_set({"a": "b"}))
    assert error_code(exc) == "NoSuchKey"
    with pytest.raises(ClientError) as exc:
        s3.delete_object_tagging(Bucket=loc_bucket, Key="absent")
    assert error_code(exc) == "NoSuchKey"
    s3.put_object(Bucket=loc_bucket, Key="mine", Body=b"m", Tagging="a=1")
    with pytest.raises(ClientError) as exc:
        s3_other.put_object_tagging(Bucket=loc_bucket, Key="mine", Tagging=tag_set({"x": "y"}))
    assert error_code(exc) == "AccessDenied"
    assert as_dict(s3.get_object_tagging(Bucket=loc_bucket, Key="mine")["TagSet"]) == {"a": "1"}


def test_bucket_tagging_cycle(s3: Any, loc_bucket: str) -> None:
    with pytest.raises(ClientError) as exc:
        s3.get_bucket_tagging(Bucket=loc_bucket)
    assert error_code(exc) == "NoSuchTagSet" and status(exc) == 404
    tags = {f"key{i}": f"value{i}" for i in range(50)}
    put = s3.put_bucket_tagging(Bucket=loc_bucket, Tagging=tag_set(tags))
    assert put["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert as_dict(s3.get_bucket_tagging(Bucket=loc_bucket)["TagSet"]) == tags
    s3.put_bucket_tagging(Bucket=loc_bucket, Tagging=tag_set({"only": "one"}))
    assert as_dict(s3.get_bucket_tagging(Bucket=loc_bucket)["TagSet"]) == {"only": "one"}
    deleted = s3.delete_bucket_tagging(Bucket=loc_bucket)
    assert deleted["ResponseMetadata"]["HTTPStatusCode"] == 204
    with pytest.raises(ClientError) as exc:
        s3.get_bucket_tagging(Bucket=loc_bucket)
    assert error_code(exc) == "NoSuchTagSet"


@pytest.mark.parametrize("tags", [
    {f"k{i}": "v" for i in range(51)},
    {"aws:reserved": "v"},
    {"k" * 129: "v"},
    {"k": "v" * 257},
])
def test_invalid_bucket_tags(s3: Any, loc_bucket: str, tags: dict[str, str]) -> None:
    s3.put_bucket_tagging(Bucket=loc_bucket, Tagging=tag_set({"keep": "me"}))
    with pytest.raises(ClientError) as exc:
        s3.put_bucket_tagging(Bucket=loc_bucket, Tagging=tag_set(tags))
    assert error_code(exc) == "InvalidTag"
    assert as_dict(s3.get_bucket_tagging(Bucket=loc_bucket)["TagSet"]) == {"keep": "me"}


def test_bucket_tagging_access(s3: Any, s3_other: Any, loc_bucket: str) -> None:
    with pytest.raises(ClientError) as exc:
        s3_other.put_bucket_tagging(Bucket=loc_bucket, Tagging=tag_set({"a": "b"}))
    assert error_code(exc) == "AccessDenied"
    with pytest.raises(ClientError) as exc:
        s3.get_bucket_tagging(Bucket=f"gone-{uuid.uuid4().hex[:8]}")
    assert error_code(exc) == "NoSuchBucket"
