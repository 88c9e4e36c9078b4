"""Object Ownership: Put/Get/DeleteBucketOwnershipControls, x-amz-object-ownership on
CreateBucket; BucketOwnerEnforced disables ACLs, BucketOwnerPreferred and ObjectWriter."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
import requests
from botocore.exceptions import ClientError

from tests.gatewayproc import Gateway
from tests.s3.conftest import error_code, raw_request, status

OWNER1 = "79a59df900b949e55d96a1e698fbacedfd6e09d98eacf8f8d5218e7cd47ef2be"
OWNER2 = "79a59df900b949e55d96a1e698fbacedfd6e09d98eacf8f8d5218e7cd47ef2bf"
ALL_USERS = "http://acs.amazonaws.com/groups/global/AllUsers"


def new_bucket(s3: Any, **kwargs: Any) -> str:
    name = f"own-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name, **kwargs)
    return name


def fails(call: Any, code: str, http: int) -> None:
    with pytest.raises(ClientError) as exc:
        call()
    assert (error_code(exc), status(exc)) == (code, http)


def mode_of(s3: Any, bucket: str) -> str:
    rules = s3.get_bucket_ownership_controls(Bucket=bucket)["OwnershipControls"]["Rules"]
    assert len(rules) == 1
    return rules[0]["ObjectOwnership"]


def allow_other_account_to_write(s3: Any, bucket: str) -> None:
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps({"Statement": [{
        "Effect": "Allow", "Principal": {"AWS": "123456789013"}, "Action": "s3:PutObject",
        "Resource": f"arn:aws:s3:::{bucket}/*"}]}))


def test_put_get_delete_ownership_controls(s3: Any, s3_other: Any) -> None:
    bucket = new_bucket(s3)
    # The default (ObjectWriter, see README) is not a stored setting: AWS's "not found".
    fails(lambda: s3.get_bucket_ownership_controls(Bucket=bucket),
          "OwnershipControlsNotFoundError", 404)
    for mode in ("BucketOwnerPreferred", "ObjectWriter", "BucketOwnerEnforced"):
        s3.put_bucket_ownership_controls(Bucket=bucket, OwnershipControls={
            "Rules": [{"ObjectOwnership": mode}]})
        assert mode_of(s3, bucket) == mode
    fails(lambda: s3_other.get_bucket_ownership_controls(Bucket=bucket), "AccessDenied", 403)
    fails(lambda: s3_other.delete_bucket_ownership_controls(Bucket=bucket), "AccessDenied", 403)
    assert s3.delete_bucket_ownership_controls(Bucket=bucket)[
        "ResponseMetadata"]["HTTPStatusCode"] == 204
    fails(lambda: s3.get_bucket_ownership_controls(Bucket=bucket),
          "OwnershipControlsNotFoundError", 404)


@pytest.mark.parametrize("body", [
    b"<OwnershipControls><Rule><ObjectOwnership>Nobody</ObjectOwnership></Rule>"
    b"</OwnershipControls>",
    b"<OwnershipControls></OwnershipControls>",
    b"<OwnershipControls><Rule><ObjectOwnership>ObjectWriter</ObjectOwnership></Rule>"
    b"<Rule><ObjectOwnership>ObjectWriter</ObjectOwnership></Rule></OwnershipControls>",
])
def test_malformed_ownership_controls(gateway: Gateway, s3: Any, body: bytes) -> None:
    bucket = new_bucket(s3)
    response = raw_request(gateway, "PUT", f"/{bucket}?ownershipControls", body=body)
    assert response.status_code == 400 and b"<Code>MalformedXML</Code>" in response.content


def test_create_bucket_with_object_ownership(gateway: Gateway, s3: Any) -> None:
    for mode in ("BucketOwnerEnforced", "BucketOwnerPreferred", "ObjectWriter"):
        assert mode_of(s3, new_bucket(s3, ObjectOwnership=mode)) == mode
    name = f"own-{uuid.uuid4().hex[:12]}"
    response = raw_request(gateway, "PUT", f"/{name}",
                           headers={"x-amz-object-ownership": "Everyone"})
    assert response.status_code == 400 and b"<Code>InvalidArgument</Code>" in response.content
    # Enforced with an ACL that grants others: refused, and no bucket is made.
    fails(lambda: s3.create_bucket(Bucket=name, ObjectOwnership="BucketOwnerEnforced",
                                   ACL="public-read"),
          "InvalidBucketAclWithObjectOwnership", 400)
    fails(lambda: s3.head_bucket(Bucket=name), "404", 404)
    assert mode_of(s3, new_bucket(s3, ObjectOwnership="BucketOwnerEnforced",
                                  ACL="private")) == "BucketOwnerEnforced"


def test_bucket_owner_enforced_disables_acls(gateway: Gateway, s3: Any, s3_other: Any) -> None:
    bucket = new_bucket(s3, ObjectOwnership="BucketOwnerEnforced")
    for acl in ("public-read", "private", "bucket-owner-read", "authenticated-read"):
        fails(lambda acl=acl: s3.put_object(Bucket=bucket, Key="k", Body=b"x", ACL=acl),
              "AccessControlListNotSupported", 400)
    fails(lambda: s3.put_object(Bucket=bucket, Key="k", Body=b"x", GrantRead=f'id="{OWNER2}"'),
          "AccessControlListNotSupported", 400)
    fails(lambda: s3.create_multipart_upload(Bucket=bucket, Key="k", ACL="public-read"),
          "AccessControlListNotSupported", 400)
    s3.put_object(Bucket=bucket, Key="k", Body=b"x", ACL="bucket-owner-full-control")
    s3.put_object(Bucket=bucket, Key="plain", Body=b"y")
    fails(lambda: s3.put_bucket_acl(Bucket=bucket, ACL="public-read"),
          "AccessControlListNotSupported", 400)
    fails(lambda: s3.put_object_acl(Bucket=bucket, Key="k", ACL="public-read"),
          "AccessControlListNotSupported", 400)
    # Reads still answer: the bucket owner's full control.
    for acl in (s3.get_bucket_acl(Bucket=bucket), s3.get_object_acl(Bucket=bucket, Key="k")):
        assert acl["Owner"]["ID"] == OWNER1
        assert [(g["Grantee"]["ID"], g["Permission"]) for g in acl["Grants"]] == [
            (OWNER1, "FULL_CONTROL")]


def test_bucket_owner_enforced_owns_other_writers_objects(s3: Any, s3_other: Any) -> None:
    bucket = new_bucket(s3, ObjectOwnership="BucketOwnerEnforced")
    allow_other_account_to_write(s3, bucket)
    s3_other.put_object(Bucket=bucket, Key="theirs", Body=b"from 2")
    assert s3.get_object_acl(Bucket=bucket, Key="theirs")["Owner"]["ID"] == OWNER1
    assert s3.get_object(Bucket=bucket, Key="theirs")["Body"].read() == b"from 2"
    # The writer owns nothing, so it may not read back what the policy does not grant.
    fails(lambda: s3_other.get_object(Bucket=bucket, Key="theirs"), "AccessDenied", 403)
    listing = s3.list_objects(Bucket=bucket)["Contents"]
    assert [(o["Key"], o["Owner"]["ID"]) for o in listing] == [("theirs", OWNER1)]
    versions = s3.list_object_versions(Bucket=bucket)["Versions"]
    assert [(v["Key"], v["Owner"]["ID"]) for v in versions] == [("theirs", OWNER1)]


def test_switching_to_enforced(gateway: Gateway, s3: Any, s3_other: Any) -> None:
    bucket = new_bucket(s3, ACL="public-read")
    controls = {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]}
    fails(lambda: s3.put_bucket_ownership_controls(Bucket=bucket, OwnershipControls=controls),
          "InvalidBucketAclWithObjectOwnership", 400)
    s3.put_bucket_acl(Bucket=bucket, ACL="private")
    s3.put_object(Bucket=bucket, Key="open", Body=b"o", ACL="public-read")
    allow_other_account_to_write(s3, bucket)
    s3_other.put_object(Bucket=bucket, Key="theirs", Body=b"t")  # ObjectWriter: theirs
    assert s3.get_object_acl(Bucket=bucket, Key="theirs")["Owner"]["ID"] == OWNER2
    assert requests.get(f"{gateway.endpoint}/{bucket}/open", timeout=10).status_code == 200
    s3.put_bucket_ownership_controls(Bucket=bucket, OwnershipControls=controls)
    # The bucket owner now owns what others wrote before...
    assert s3.get_object_acl(Bucket=bucket, Key="theirs")["Owner"]["ID"] == OWNER1
    owners = {o["Key"]: o["Owner"]["ID"] for o in s3.list_objects(Bucket=bucket)["Contents"]}
    assert owners == {"open": OWNER1, "theirs": OWNER1}
    # ...and existing ACLs stop granting anything...
    assert requests.get(f"{gateway.endpoint}/{bucket}/open", timeout=10).status_code == 403
    # ...and grant again once ACLs are back on (they were kept, as AWS keeps them).
    s3.put_bucket_ownership_controls(Bucket=bucket, OwnershipControls={
        "Rules": [{"ObjectOwnership": "ObjectWriter"}]})
    assert requests.get(f"{gateway.endpoint}/{bucket}/open", timeout=10).status_code == 200


@pytest.mark.parametrize(("mode", "acl", "owner"), [
    ("BucketOwnerPreferred", "bucket-owner-full-control", OWNER1),
    ("BucketOwnerPreferred", None, OWNER2),
    ("ObjectWriter", "bucket-owner-full-control", OWNER2),
    ("ObjectWriter", None, OWNER2),
])
def test_preferred_and_object_writer(s3: Any, s3_other: Any, mode: str, acl: str | None,
                                     owner: str) -> None:
    bucket = new_bucket(s3, ObjectOwnership=mode, GrantWrite=f'id="{OWNER2}"')
    extra = {"ACL": acl} if acl else {}
    s3_other.put_object(Bucket=bucket, Key="obj", Body=b"z", **extra)
    assert s3.get_object_acl(Bucket=bucket, Key="obj")["Owner"]["ID"] == owner
