"""POST Object: browser form uploads with SigV4 / SigV2 form signatures and policy checks."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from typing import Any
from xml.etree import ElementTree

import pytest
import requests
from botocore.exceptions import ClientError

LOCATIONS = ["file", "memloc"]


def new_bucket(s3: Any, where: str, **kwargs: Any) -> str:
    name = f"post-{uuid.uuid4().hex[:12]}"
    if where == "memloc":
        kwargs["CreateBucketConfiguration"] = {"LocationConstraint": "memloc"}
    s3.create_bucket(Bucket=name, **kwargs)
    return name


def post(gateway: Any, bucket: str, fields: dict[str, str], data: bytes,
         filename: str = "upload.bin", **kwargs: Any) -> requests.Response:
    return requests.post(f"{gateway.endpoint}/{bucket}", data=fields,
                         files={"file": (filename, data)}, timeout=30, allow_redirects=False,
                         **kwargs)


def code(response: requests.Response) -> str:
    return ElementTree.fromstring(response.content).findtext("Code") or ""


def v2_fields(conditions: list[Any], extra: dict[str, str], expires_in: int = 300,
              access: str = "accessKey1", secret: str = "verySecretKey1") -> dict[str, str]:
    expiration = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(time.time() + expires_in))
    policy = base64.b64encode(json.dumps({"expiration": expiration,
                                          "conditions": conditions}).encode()).decode()
    signature = base64.b64encode(hmac.new(secret.encode(), policy.encode(),
                                          hashlib.sha1).digest()).decode()
    return {**extra, "AWSAccessKeyId": access, "policy": policy, "signature": signature}


@pytest.mark.parametrize("where", LOCATIONS)
def test_sigv4_presigned_post(gateway: Any, s3: Any, where: str) -> None:
    bucket = new_bucket(s3, where)
    form = s3.generate_presigned_post(
        bucket, "uploads/${filename}",
        Fields={"Content-Type": "text/plain", "x-amz-meta-color": "red",
                "success_action_status": "201"},
        Conditions=[{"Content-Type": "text/plain"}, {"x-amz-meta-color": "red"},
                    {"success_action_status": "201"}, ["content-length-range", 1, 1024]],
        ExpiresIn=300)
    assert form["fields"]["x-amz-algorithm"] == "AWS4-HMAC-SHA256"
    body = b"hello from a browser form"
    response = requests.post(form["url"].replace("https://", "http://"), data=form["fields"],
                             files={"file": ("note.txt", body)}, timeout=30)
    assert response.status_code == 201, response.text
    doc = ElementTree.fromstring(response.content)
    assert doc.tag == "PostResponse"
    assert doc.findtext("Bucket") == bucket and doc.findtext("Key") == "uploads/note.txt"
    etag = f'"{hashlib.md5(body).hexdigest()}"'
    assert doc.findtext("ETag") == etag and response.headers["ETag"] == etag
    got = s3.get_object(Bucket=bucket, Key="uploads/note.txt")
    assert got["Body"].read() == body
    assert got["ContentType"] == "text/plain" and got["Metadata"] == {"color": "red"}
    tampered = {**form["fields"], "x-amz-meta-color": "blue"}
    response = post(gateway, bucket, tampered, body, filename="other.txt")
    assert response.status_code == 403 and b"Policy Condition failed" in response.content
    forged = {**form["fields"], "x-amz-signature": "0" * 64}
    response = post(gateway, bucket, forged, body, filename="other.txt")
    assert response.status_code == 403 and code(response) == "SignatureDoesNotMatch"
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 1


@pytest.mark.parametrize("where", LOCATIONS)
def test_sigv2_form_status_and_redirect(gateway: Any, s3: Any, where: str) -> None:
    bucket = new_bucket(s3, where)
    conditions: list[Any] = [{"bucket": bucket}, ["starts-with", "$key", "v2/"],
                             {"acl": "public-read"}]
    fields = v2_fields(conditions, {"key": "v2/a", "acl": "public-read"})
    plain = post(gateway, bucket, fields, b"v2 data")
    assert plain.status_code == 204 and plain.content == b""
    assert s3.get_object(Bucket=bucket, Key="v2/a")["Body"].read() == b"v2 data"
    public = requests.get(f"{gateway.endpoint}/{bucket}/v2/a", timeout=10)
    assert public.status_code == 200  # the form's acl field applied
    fields = v2_fields(conditions + [{"success_action_status": "200"}],
                       {"key": "v2/b", "acl": "public-read", "success_action_status": "200"})
    assert post(gateway, bucket, fields, b"b").status_code == 200
    redirect_to = "https://app.example.com/done?x=1"
    fields = v2_fields(conditions + [["starts-with", "$success_action_redirect", "https://"]],
                       {"key": "v2/c", "acl": "public-read",
                        "success_action_redirect": redirect_to})
    moved = post(gateway, bucket, fields, b"c")
    assert moved.status_code == 303
    location = moved.headers["Location"]
    assert location.startswith(redirect_to + "&") and f"bucket={bucket}" in location
    assert "key=v2%2Fc" in location and "etag=" in location


def test_anonymous_form_needs_public_write(gateway: Any, s3: Any) -> None:
    private = new_bucket(s3, "memloc")
    denied = post(gateway, private, {"key": "anon"}, b"x")
    assert denied.status_code == 403 and code(denied) == "AccessDenied"
    public = new_bucket(s3, "memloc", ACL="public-read-write")
    assert post(gateway, public, {"key": "anon"}, b"anonymous").status_code == 204
    assert s3.get_object(Bucket=public, Key="anon")["Body"].read() == b"anonymous"


def test_policy_violations(gateway: Any, s3: Any) -> None:
    bucket = new_bucket(s3, "file")
    base: list[Any] = [{"bucket": bucket}, ["starts-with", "$key", "ok/"],
                       ["content-length-range", 2, 10]]

    def attempt(conditions: list[Any], extra: dict[str, str], data: bytes = b"12345",
                **kwargs: Any) -> requests.Response:
        return post(gateway, bucket, v2_fields(conditions, extra, **kwargs), data)

    expired = attempt(base, {"key": "ok/1"}, expires_in=-60)
    assert expired.status_code == 403 and b"Policy expired" in expired.content
    wrong_key = attempt(base, {"key": "elsewhere/1"})
    assert wrong_key.status_code == 403 and b"Policy Condition failed" in wrong_key.content
    extra = attempt(base, {"key": "ok/1", "x-amz-meta-sneaky": "1"})
    assert extra.status_code == 403 and b"Extra input fields" in extra.content
    assert attempt(base, {"key": "ok/1", "x-ignore-me": "1"}).status_code == 204
    too_big = attempt(base, {"key": "ok/big"}, data=b"x" * 11)
    assert too_big.status_code == 400 and code(too_big) == "EntityTooLarge"
    too_small = attempt(base, {"key": "ok/small"}, data=b"x")
    assert too_small.status_code == 400 and code(too_small) == "EntityTooSmall"
    other_bucket = attempt([{"bucket": "someone-else"}] + base[1:], {"key": "ok/2"})
    assert other_bucket.status_code == 403
    bad_signature = v2_fields(base, {"key": "ok/3"}, secret="wrong")
    response = post(gateway, bucket, bad_signature, b"12345")
    assert response.status_code == 403 and code(response) == "SignatureDoesNotMatch"
    unknown = post(gateway, bucket, v2_fields(base, {"key": "ok/4"}, access="nobody"), b"123")
    assert unknown.status_code == 403 and code(unknown) == "InvalidAccessKeyId"
    not_json = {"key": "ok/5", "AWSAccessKeyId": "accessKey1", "policy": "bm90IGpzb24=",
                "signature": base64.b64encode(hmac.new(b"verySecretKey1", b"bm90IGpzb24=",
                                                       hashlib.sha1).digest()).decode()}
    response = post(gateway, bucket, not_json, b"123")
    assert response.status_code == 400 and code(response) == "InvalidPolicyDocument"
    listed = s3.list_objects_v2(Bucket=bucket)
    assert [o["Key"] for o in listed.get("Contents", [])] == ["ok/1"]  # only the good one


def test_form_errors(gateway: Any, s3: Any, s3_other: Any) -> None:
    bucket = new_bucket(s3, "memloc")
    no_file = requests.post(f"{gateway.endpoint}/{bucket}", files={"key": (None, "k")},
                            timeout=10)
    assert no_file.status_code == 400 and code(no_file) == "InvalidArgument"
    not_form = requests.post(f"{gateway.endpoint}/{bucket}", data=b"raw",
                             headers={"Content-Type": "text/plain"}, timeout=10)
    assert not_form.status_code == 412 and code(not_form) == "PreconditionFailed"
    no_key = post(gateway, bucket, v2_fields([{"bucket": bucket}], {}), b"x")
    assert no_key.status_code == 400 and code(no_key) == "InvalidArgument"
    missing_bucket = post(gateway, "no-such-bucket-post", {"key": "k"}, b"x")
    assert missing_bucket.status_code == 404 and code(missing_bucket) == "NoSuchBucket"
    # A valid signature of an account that may not write the bucket.
    other = v2_fields([{"bucket": bucket}, ["starts-with", "$key", ""]], {"key": "k"},
                      access="accessKey2", secret="verySecretKey2")
    denied = post(gateway, bucket, other, b"x")
    assert denied.status_code == 403 and code(denied) == "AccessDenied"
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0


def test_large_file_is_streamed(gateway: Any, s3: Any) -> None:
    bucket = new_bucket(s3, "file")
    form = s3.generate_presigned_post(bucket, "big.bin", ExpiresIn=300)
    body = bytes(range(256)) * (12 * 1024 * 1024 // 256 + 7)  # 12 MiB and a bit: many chunks
    response = requests.post(form["url"].replace("https://", "http://"), data=form["fields"],
                             files={"file": ("big.bin", body)}, timeout=60)
    assert response.status_code == 204, response.text
    head = s3.head_object(Bucket=bucket, Key="big.bin")
    assert head["ContentLength"] == len(body)
    assert head["ETag"] == f'"{hashlib.md5(body).hexdigest()}"'


def test_object_lock_fields(gateway: Any, s3: Any) -> None:
    """x-amz-object-lock-* form fields lock what the form writes, validated as the headers."""
    bucket = new_bucket(s3, "file", ObjectLockEnabledForBucket=True)
    until = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(time.time() + 86400))
    lock_fields = {"x-amz-object-lock-mode": "GOVERNANCE",
                   "x-amz-object-lock-retain-until-date": until,
                   "x-amz-object-lock-legal-hold": "ON"}
    form = s3.generate_presigned_post(bucket, "locked", Fields=lock_fields,
                                      Conditions=[{k: v} for k, v in lock_fields.items()],
                                      ExpiresIn=300)
    response = post(gateway, bucket, form["fields"], b"kept")
    assert response.status_code == 204, response.text
    head = s3.head_object(Bucket=bucket, Key="locked")
    assert head["ObjectLockMode"] == "GOVERNANCE" and head["ObjectLockLegalHoldStatus"] == "ON"
    assert head["ObjectLockRetainUntilDate"].timestamp() == pytest.approx(
        time.time() + 86400, abs=120)
    with pytest.raises(ClientError) as refused:  # locked: no delete of that version
        s3.delete_object(Bucket=bucket, Key="locked", VersionId=head["VersionId"])
    assert refused.value.response["Error"]["Code"] == "AccessDenied"
    bad = {"x-amz-object-lock-mode": "FOREVER", "x-amz-object-lock-retain-until-date": until}
    form = s3.generate_presigned_post(bucket, "bad", Fields=bad,
                                      Conditions=[{k: v} for k, v in bad.items()], ExpiresIn=300)
    response = post(gateway, bucket, form["fields"], b"x")
    assert response.status_code == 400 and code(response) == "InvalidArgument"
    # Lock fields on a bucket without Object Lock: refused, as the headers are.
    plain = new_bucket(s3, "file")
    form = s3.generate_presigned_post(plain, "x", Fields=lock_fields,
                                      Conditions=[{k: v} for k, v in lock_fields.items()],
                                      ExpiresIn=300)
    response = post(gateway, plain, form["fields"], b"x")
    assert response.status_code == 400 and code(response) == "InvalidRequest"
    s3.put_object_legal_hold(Bucket=bucket, Key="locked", VersionId=head["VersionId"],
                             LegalHold={"Status": "OFF"})
    s3.delete_object(Bucket=bucket, Key="locked", VersionId=head["VersionId"],
                     BypassGovernanceRetention=True)


def test_form_acl_obeys_ownership_and_public_access_block(gateway: Any, s3: Any) -> None:
    """The form's `acl` passes the same gate as x-amz-acl: a public ACL under a public access
    block, or any non-owner ACL with ACLs disabled (BucketOwnerEnforced), is refused."""
    bucket = new_bucket(s3, "file")
    s3.put_bucket_ownership_controls(Bucket=bucket, OwnershipControls={
        "Rules": [{"ObjectOwnership": "ObjectWriter"}]})
    s3.put_public_access_block(Bucket=bucket, PublicAccessBlockConfiguration={
        "BlockPublicAcls": True, "IgnorePublicAcls": False, "BlockPublicPolicy": False,
        "RestrictPublicBuckets": False})

    def posted(key: str, acl: str) -> requests.Response:
        form = s3.generate_presigned_post(bucket, key, Fields={"acl": acl},
                                          Conditions=[{"acl": acl}], ExpiresIn=300)
        return post(gateway, bucket, form["fields"], b"data")

    response = posted("public", "public-read")
    assert response.status_code == 403 and code(response) == "AccessDenied"
    response = posted("private", "private")
    assert response.status_code == 204, response.text
    s3.delete_public_access_block(Bucket=bucket)
    response = posted("public", "public-read")
    assert response.status_code == 204, response.text
    grants = s3.get_object_acl(Bucket=bucket, Key="public")["Grants"]
    assert any(g["Grantee"].get("URI", "").endswith("AllUsers") for g in grants)
    s3.put_bucket_ownership_controls(Bucket=bucket, OwnershipControls={
        "Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]})
    response = posted("disabled", "public-read")
    assert response.status_code == 400 and code(response) == "AccessControlListNotSupported"
    assert posted("owner", "bucket-owner-full-control").status_code == 204
    with pytest.raises(ClientError) as missing:
        s3.head_object(Bucket=bucket, Key="disabled")
    assert missing.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
