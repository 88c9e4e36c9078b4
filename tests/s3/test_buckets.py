"""Bucket operations through boto3 against a running gateway."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.s3.conftest import error_code, raw_request, status


def new_name() -> str:
    return f"bkt-{uuid.uuid4().hex[:12]}"


def test_create_list_head_delete(s3: Any) -> None:
    name = new_name()
    s3.create_bucket(Bucket=name)
    assert name in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    assert s3.head_bucket(Bucket=name)["ResponseMetadata"]["HTTPStatusCode"] == 200
    s3.delete_bucket(Bucket=name)
    assert name not in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    with pytest.raises(ClientError) as exc:
        s3.head_bucket(Bucket=name)
    assert status(exc) == 404


@pytest.mark.parametrize("name", ["ab", "UPPER", "a" * 64, "bad_name", "-start", "192.168.1.1",
                                  "double..dot", "end-"])
def test_invalid_bucket_names(s3: Any, name: str) -> None:
    with pytest.raises(ClientError) as exc:
        s3.create_bucket(Bucket=name)
    assert error_code(exc) == "InvalidBucketName"


def test_location_constraint_and_get_location(s3: Any) -> None:
    name = new_name()
    s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": "us-east-2"})
    assert s3.get_bucket_location(Bucket=name)["LocationConstraint"] == "us-east-2"
    plain = new_name()
    s3.create_bucket(Bucket=plain)
    assert s3.get_bucket_location(Bucket=plain)["LocationConstraint"] is None  # us-east-1


def test_unknown_location_constraint(s3: Any) -> None:
    name = new_name()
    with pytest.raises(ClientError) as exc:
        s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": "mars-1"})
    assert error_code(exc) == "InvalidLocationConstraint"
    assert name not in [b["Name"] for b in s3.list_buckets()["Buckets"]]


def test_already_owned_and_already_exists(s3: Any, s3_other: Any) -> None:
    name = new_name()
    s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": "us-east-2"})
    with pytest.raises(ClientError) as exc:
        s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": "us-east-2"})
    assert error_code(exc) == "BucketAlreadyOwnedByYou"
    with pytest.raises(ClientError) as exc:
        s3_other.create_bucket(Bucket=name)
    assert error_code(exc) == "BucketAlreadyExists"
    # us-east-1 keeps AWS's legacy behaviour: creating your own bucket again succeeds.
    legacy = new_name()
    s3.create_bucket(Bucket=legacy)
    s3.create_bucket(Bucket=legacy)


def test_delete_non_empty_bucket(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    with pytest.raises(ClientError) as exc:
        s3.delete_bucket(Bucket=bucket)
    assert error_code(exc) == "BucketNotEmpty"
    s3.delete_object(Bucket=bucket, Key="k")
    s3.delete_bucket(Bucket=bucket)


def test_delete_bucket_with_only_uploads_in_progress(gateway: Any, s3: Any, bucket: str) -> None:
    """As AWS (general purpose buckets): uploads in progress do not keep a bucket; they are
    aborted with it, and their parts' bytes are collected."""
    gateway.settle()
    before = len(gateway.data_files())
    upload = s3.create_multipart_upload(Bucket=bucket, Key="m")["UploadId"]
    s3.upload_part(Bucket=bucket, Key="m", UploadId=upload, PartNumber=1, Body=b"part")
    assert len(gateway.data_files()) == before + 1
    s3.delete_bucket(Bucket=bucket)
    with pytest.raises(ClientError) as exc:
        s3.list_parts(Bucket=bucket, Key="m", UploadId=upload)
    assert error_code(exc) == "NoSuchBucket"
    gateway.settle()
    assert len(gateway.data_files()) == before


def test_other_account_sees_nothing(s3: Any, s3_other: Any, bucket: str) -> None:
    assert bucket not in [b["Name"] for b in s3_other.list_buckets()["Buckets"]]
    for call in (lambda: s3_other.list_objects_v2(Bucket=bucket),
                 lambda: s3_other.put_object(Bucket=bucket, Key="k", Body=b"x"),
                 lambda: s3_other.delete_bucket(Bucket=bucket)):
        with pytest.raises(ClientError) as exc:
            call()
        assert error_code(exc) == "AccessDenied"
    assert s3.head_bucket(Bucket=bucket)["ResponseMetadata"]["HTTPStatusCode"] == 200


def test_missing_bucket(s3: Any) -> None:
    with pytest.raises(ClientError) as exc:
        s3.list_objects(Bucket=new_name())
    assert error_code(exc) == "NoSuchBucket"


def test_malformed_create_body(gateway: Any, s3: Any) -> None:
    name = new_name()
    response = raw_request(gateway, "PUT", f"/{name}", body=b"<CreateBucketConfiguration><oops")
    assert response.status_code == 400
    assert b"<Code>MalformedXML</Code>" in response.content
    assert name not in [b["Name"] for b in s3.list_buckets()["Buckets"]]
