"""x-amz-expected-bucket-owner and x-amz-source-expected-bucket-owner on every operation:
403 AccessDenied when the bucket's owner is another account."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.gatewayproc import Gateway
from tests.s3.conftest import error_code, raw_request, status

OWNER1_ID = "123456789012"  # accessKey1's account (conf/authdata.json)
OWNER1_CANONICAL = "79a59df900b949e55d96a1e698fbacedfd6e09d98eacf8f8d5218e7cd47ef2be"
OTHER_ID = "123456789013"


@pytest.fixture(scope="module")
def owned(s3: Any) -> str:
    name = f"exp-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    s3.put_object(Bucket=name, Key="k", Body=b"data")
    return name


def operations(s3: Any, bucket: str) -> dict[str, Callable[[str], Any]]:
    """One call per kind of operation, each taking the ExpectedBucketOwner to send."""
    key = f"o-{uuid.uuid4().hex[:8]}"
    return {
        "HeadBucket": lambda e: s3.head_bucket(Bucket=bucket, ExpectedBucketOwner=e),
        "ListObjectsV2": lambda e: s3.list_objects_v2(Bucket=bucket, ExpectedBucketOwner=e),
        "ListObjectVersions": lambda e: s3.list_object_versions(Bucket=bucket,
                                                                ExpectedBucketOwner=e),
        "GetBucketLocation": lambda e: s3.get_bucket_location(Bucket=bucket,
                                                              ExpectedBucketOwner=e),
        "GetBucketAcl": lambda e: s3.get_bucket_acl(Bucket=bucket, ExpectedBucketOwner=e),
        "GetBucketVersioning": lambda e: s3.get_bucket_versioning(Bucket=bucket,
                                                                  ExpectedBucketOwner=e),
        "PutBucketPolicy": lambda e: s3.put_bucket_policy(
            Bucket=bucket, ExpectedBucketOwner=e, Policy=json.dumps({"Statement": [{
                "Effect": "Deny", "Principal": {"AWS": OTHER_ID}, "Action": "s3:GetObject",
                "Resource": f"arn:aws:s3:::{bucket}/*"}]})),
        "PutObject": lambda e: s3.put_object(Bucket=bucket, Key=key, Body=b"x",
                                             ExpectedBucketOwner=e),
        "GetObject": lambda e: s3.get_object(Bucket=bucket, Key="k", ExpectedBucketOwner=e),
        "HeadObject": lambda e: s3.head_object(Bucket=bucket, Key="k", ExpectedBucketOwner=e),
        "GetObjectAcl": lambda e: s3.get_object_acl(Bucket=bucket, Key="k",
                                                    ExpectedBucketOwner=e),
        "GetObjectTagging": lambda e: s3.get_object_tagging(Bucket=bucket, Key="k",
                                                            ExpectedBucketOwner=e),
        "CreateMultipartUpload": lambda e: s3.create_multipart_upload(
            Bucket=bucket, Key=key, ExpectedBucketOwner=e),
        "ListMultipartUploads": lambda e: s3.list_multipart_uploads(Bucket=bucket,
                                                                    ExpectedBucketOwner=e),
        "GetBucketOwnershipControls": lambda e: s3.get_bucket_ownership_controls(
            Bucket=bucket, ExpectedBucketOwner=e),
        "DeleteObject": lambda e: s3.delete_object(Bucket=bucket, Key=key,
                                                   ExpectedBucketOwner=e),
    }


def outcome(call: Callable[[str], Any], expected: str) -> str:
    try:
        call(expected)
    except ClientError as exc:
        return str(exc.response["Error"]["Code"])
    return "ok"


def test_every_operation_checks_the_expected_owner(s3: Any, owned: str) -> None:
    for name, call in operations(s3, owned).items():
        wrong = outcome(call, OTHER_ID)
        assert wrong in ("AccessDenied", "403"), (name, wrong)
        right = outcome(call, OWNER1_ID)
        assert right != "AccessDenied" and right != "403", (name, right)


def test_canonical_id_and_status(gateway: Gateway, owned: str) -> None:
    ok = raw_request(gateway, "GET", f"/{owned}/k",
                     headers={"x-amz-expected-bucket-owner": OWNER1_CANONICAL})
    assert ok.status_code == 200 and ok.content == b"data"
    refused = raw_request(gateway, "GET", f"/{owned}/k",
                          headers={"x-amz-expected-bucket-owner": OTHER_ID})
    assert refused.status_code == 403 and b"<Code>AccessDenied</Code>" in refused.content
    # Nothing was written by a refused PUT.
    put = raw_request(gateway, "PUT", f"/{owned}/refused", body=b"no",
                      headers={"x-amz-expected-bucket-owner": OTHER_ID})
    assert put.status_code == 403
    assert raw_request(gateway, "HEAD", f"/{owned}/refused").status_code == 404


def test_copy_checks_source_and_destination_owners(s3: Any, s3_other: Any,
                                                   owned: str) -> None:
    theirs = f"exp-{uuid.uuid4().hex[:12]}"
    s3_other.create_bucket(Bucket=theirs)
    s3_other.put_bucket_policy(Bucket=theirs, Policy=json.dumps({"Statement": [{
        "Effect": "Allow", "Principal": {"AWS": OWNER1_ID}, "Action": "s3:PutObject",
        "Resource": f"arn:aws:s3:::{theirs}/*"}]}))
    source = {"Bucket": owned, "Key": "k"}
    # Into the other account's bucket: each header names the owner of its own bucket.
    s3.copy_object(Bucket=theirs, Key="c", CopySource=source, ExpectedBucketOwner=OTHER_ID,
                   ExpectedSourceBucketOwner=OWNER1_ID)
    for dest_owner, source_owner in ((OWNER1_ID, OWNER1_ID), (OTHER_ID, OTHER_ID)):
        with pytest.raises(ClientError) as exc:
            s3.copy_object(Bucket=theirs, Key="c", CopySource=source,
                           ExpectedBucketOwner=dest_owner,
                           ExpectedSourceBucketOwner=source_owner)
        assert (error_code(exc), status(exc)) == ("AccessDenied", 403)
    upload = s3.create_multipart_upload(Bucket=owned, Key="mp")
    with pytest.raises(ClientError) as exc:
        s3.upload_part_copy(Bucket=owned, Key="mp", UploadId=upload["UploadId"], PartNumber=1,
                            CopySource=source, ExpectedSourceBucketOwner=OTHER_ID)
    assert error_code(exc) == "AccessDenied"
    part = s3.upload_part_copy(Bucket=owned, Key="mp", UploadId=upload["UploadId"],
                               PartNumber=1, CopySource=source,
                               ExpectedSourceBucketOwner=OWNER1_ID)
    assert part["CopyPartResult"]["ETag"]
