"""x-amz-storage-class: validated and kept on PutObject, CopyObject, CreateMultipartUpload and
POST Object; returned on GET/HEAD (omitted for STANDARD, as AWS), in the object listings (V1,
V2, versions), ListParts and ListMultipartUploads; a copy onto itself that changes only the
storage class is legal."""

from __future__ import annotations

from typing import Any

import pytest
import requests
from botocore.exceptions import ClientError

from tests.s3.conftest import error_code, status


def storage_class(s3: Any, bucket: str, key: str, **extra: Any) -> str:
    head = s3.head_object(Bucket=bucket, Key=key, **extra)
    return head.get("StorageClass", "STANDARD")


def test_put_get_head(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="ia", Body=b"x", StorageClass="STANDARD_IA")
    assert s3.head_object(Bucket=bucket, Key="ia")["StorageClass"] == "STANDARD_IA"
    assert s3.get_object(Bucket=bucket, Key="ia")["StorageClass"] == "STANDARD_IA"
    s3.put_object(Bucket=bucket, Key="std", Body=b"x", StorageClass="STANDARD")
    s3.put_object(Bucket=bucket, Key="plain", Body=b"x")
    for key in ("std", "plain"):
        head = s3.head_object(Bucket=bucket, Key=key)
        assert "StorageClass" not in head  # AWS omits the header for STANDARD
        assert "x-amz-storage-class" not in head["ResponseMetadata"]["HTTPHeaders"]
    # An overwrite without the header is STANDARD again.
    s3.put_object(Bucket=bucket, Key="ia", Body=b"y")
    assert storage_class(s3, bucket, "ia") == "STANDARD"


@pytest.mark.parametrize("value", ["GLACIER", "DEEP_ARCHIVE", "GLACIER_IR", "ONEZONE_IA",
                                   "INTELLIGENT_TIERING", "REDUCED_REDUNDANCY", "OUTPOSTS",
                                   "SNOW", "EXPRESS_ONEZONE"])
def test_every_aws_class_is_accepted(s3: Any, bucket: str, value: str) -> None:
    s3.put_object(Bucket=bucket, Key=value, Body=b"x", StorageClass=value)
    assert storage_class(s3, bucket, value) == value


@pytest.mark.parametrize("value", ["FOO", "standard", ""])
def test_unknown_class_is_refused(s3: Any, bucket: str, value: str) -> None:
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=bucket, Key="k", Body=b"x", StorageClass=value)
    assert (status(exc), error_code(exc)) == (400, "InvalidStorageClass")
    with pytest.raises(ClientError) as exc:
        s3.create_multipart_upload(Bucket=bucket, Key="k", StorageClass=value)
    assert error_code(exc) == "InvalidStorageClass"
    s3.put_object(Bucket=bucket, Key="src", Body=b"x")
    with pytest.raises(ClientError) as exc:
        s3.copy_object(Bucket=bucket, Key="k", CopySource={"Bucket": bucket, "Key": "src"},
                       StorageClass=value)
    assert error_code(exc) == "InvalidStorageClass"
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket, Prefix="k")


def test_listings(s3: Any, bucket: str) -> None:
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    s3.put_object(Bucket=bucket, Key="a", Body=b"x", StorageClass="GLACIER")
    s3.put_object(Bucket=bucket, Key="b", Body=b"x")
    expected = {"a": "GLACIER", "b": "STANDARD"}
    v2 = s3.list_objects_v2(Bucket=bucket)["Contents"]
    assert {o["Key"]: o["StorageClass"] for o in v2} == expected
    v1 = s3.list_objects(Bucket=bucket)["Contents"]
    assert {o["Key"]: o["StorageClass"] for o in v1} == expected
    versions = s3.list_object_versions(Bucket=bucket)["Versions"]
    assert {o["Key"]: o["StorageClass"] for o in versions} == expected


def test_copy(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="src", Body=b"data", StorageClass="STANDARD_IA")
    source = {"Bucket": bucket, "Key": "src"}
    s3.copy_object(Bucket=bucket, Key="to-glacier", CopySource=source, StorageClass="GLACIER")
    assert storage_class(s3, bucket, "to-glacier") == "GLACIER"
    # Without the header a copy is STANDARD, whatever the source's class (as AWS).
    s3.copy_object(Bucket=bucket, Key="plain-copy", CopySource=source)
    assert storage_class(s3, bucket, "plain-copy") == "STANDARD"
    assert s3.get_object(Bucket=bucket, Key="to-glacier")["Body"].read() == b"data"


@pytest.mark.parametrize("versioning", [False, True])
def test_copy_onto_itself_with_only_a_new_class(s3: Any, bucket: str, versioning: bool) -> None:
    if versioning:
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    s3.put_object(Bucket=bucket, Key="self", Body=b"bytes", Metadata={"color": "red"},
                  ContentType="text/plain")
    source = {"Bucket": bucket, "Key": "self"}
    with pytest.raises(ClientError) as exc:  # nothing changes: still illegal
        s3.copy_object(Bucket=bucket, Key="self", CopySource=source)
    assert error_code(exc) == "InvalidRequest"
    s3.copy_object(Bucket=bucket, Key="self", CopySource=source, StorageClass="ONEZONE_IA")
    got = s3.get_object(Bucket=bucket, Key="self")
    assert got["StorageClass"] == "ONEZONE_IA"
    assert got["Body"].read() == b"bytes"
    assert got["Metadata"] == {"color": "red"} and got["ContentType"] == "text/plain"
    versions = s3.list_object_versions(Bucket=bucket, Prefix="self").get("Versions", [])
    assert len(versions) == (2 if versioning else 1)


def test_multipart(s3: Any, bucket: str) -> None:
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="mp",
                                           StorageClass="INTELLIGENT_TIERING")["UploadId"]
    uploads = s3.list_multipart_uploads(Bucket=bucket)["Uploads"]
    assert [(u["Key"], u["StorageClass"]) for u in uploads] == [("mp", "INTELLIGENT_TIERING")]
    etag = s3.upload_part(Bucket=bucket, Key="mp", UploadId=upload_id, PartNumber=1,
                          Body=b"part")["ETag"]
    assert s3.list_parts(Bucket=bucket, Key="mp",
                         UploadId=upload_id)["StorageClass"] == "INTELLIGENT_TIERING"
    s3.complete_multipart_upload(Bucket=bucket, Key="mp", UploadId=upload_id, MultipartUpload={
        "Parts": [{"PartNumber": 1, "ETag": etag}]})
    assert storage_class(s3, bucket, "mp") == "INTELLIGENT_TIERING"
    other = s3.create_multipart_upload(Bucket=bucket, Key="std")["UploadId"]
    assert s3.list_parts(Bucket=bucket, Key="std", UploadId=other)["StorageClass"] == "STANDARD"
    s3.abort_multipart_upload(Bucket=bucket, Key="std", UploadId=other)


def test_post_object(s3: Any, bucket: str) -> None:
    form = s3.generate_presigned_post(bucket, "posted", Fields={"x-amz-storage-class": "GLACIER"},
                                      Conditions=[{"x-amz-storage-class": "GLACIER"}])
    response = requests.post(form["url"].replace("https://", "http://"), data=form["fields"],
                             files={"file": ("f", b"form bytes")}, timeout=30)
    assert response.status_code == 204, response.text
    assert storage_class(s3, bucket, "posted") == "GLACIER"
    form = s3.generate_presigned_post(bucket, "bad", Fields={"x-amz-storage-class": "NOPE"},
                                      Conditions=[{"x-amz-storage-class": "NOPE"}])
    response = requests.post(form["url"].replace("https://", "http://"), data=form["fields"],
                             files={"file": ("f", b"form bytes")}, timeout=30)
    assert response.status_code == 400 and b"InvalidStorageClass" in response.content
