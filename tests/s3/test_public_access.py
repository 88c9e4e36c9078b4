"""Block Public Access (Put/Get/DeletePublicAccessBlock and its four settings enforced) and
GetBucketPolicyStatus, with AWS's meaning of "public" for ACLs and policies."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
import requests
from botocore.exceptions import ClientError

from tests.gatewayproc import Gateway
from tests.s3.conftest import error_code, status

OWNER2 = "79a59df900b949e55d96a1e698fbacedfd6e09d98eacf8f8d5218e7cd47ef2bf"
ALL_USERS = "http://acs.amazonaws.com/groups/global/AllUsers"
ALL_OFF = {"BlockPublicAcls": False, "IgnorePublicAcls": False, "BlockPublicPolicy": False,
           "RestrictPublicBuckets": False}


def new_bucket(s3: Any, **kwargs: Any) -> str:
    name = f"pab-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name, **kwargs)
    return name


def block(s3: Any, bucket: str, **settings: bool) -> None:
    s3.put_public_access_block(Bucket=bucket,
                               PublicAccessBlockConfiguration={**ALL_OFF, **settings})


def policy(bucket: str, principal: Any = "*", action: str = "s3:GetObject",
           condition: dict[str, Any] | None = None) -> str:
    statement: dict[str, Any] = {"Effect": "Allow", "Principal": principal, "Action": action,
                                 "Resource": f"arn:aws:s3:::{bucket}/*"}
    if condition:
        statement["Condition"] = condition
    return json.dumps({"Version": "2012-10-17", "Statement": [statement]})


def anon_get(gateway: Gateway, bucket: str, key: str) -> int:
    return requests.get(f"{gateway.endpoint}/{bucket}/{key}", timeout=10).status_code


def denied(call: Any, code: str = "AccessDenied", http: int = 403) -> None:
    with pytest.raises(ClientError) as exc:
        call()
    assert (error_code(exc), status(exc)) == (code, http)


def test_put_get_delete_public_access_block(s3: Any, s3_other: Any) -> None:
    bucket = new_bucket(s3)
    denied(lambda: s3.get_public_access_block(Bucket=bucket),
           "NoSuchPublicAccessBlockConfiguration", 404)
    # Missing settings are off.
    s3.put_public_access_block(Bucket=bucket, PublicAccessBlockConfiguration={
        "BlockPublicAcls": True, "RestrictPublicBuckets": True})
    got = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
    assert got == {**ALL_OFF, "BlockPublicAcls": True, "RestrictPublicBuckets": True}
    # Only the owner (no policy grants it) may read or change it.
    denied(lambda: s3_other.get_public_access_block(Bucket=bucket))
    denied(lambda: s3_other.delete_public_access_block(Bucket=bucket))
    assert s3.delete_public_access_block(Bucket=bucket)[
        "ResponseMetadata"]["HTTPStatusCode"] == 204
    denied(lambda: s3.get_public_access_block(Bucket=bucket),
           "NoSuchPublicAccessBlockConfiguration", 404)


def test_block_public_acls_refuses_public_acls_everywhere(s3: Any) -> None:
    bucket = new_bucket(s3)
    s3.put_object(Bucket=bucket, Key="src", Body=b"s")
    block(s3, bucket, BlockPublicAcls=True)
    denied(lambda: s3.put_object(Bucket=bucket, Key="k", Body=b"x", ACL="public-read"))
    denied(lambda: s3.put_object(Bucket=bucket, Key="k", Body=b"x",
                                 GrantRead=f'uri="{ALL_USERS}"'))
    denied(lambda: s3.put_object(Bucket=bucket, Key="k", Body=b"x", ACL="authenticated-read"))
    denied(lambda: s3.create_multipart_upload(Bucket=bucket, Key="k", ACL="public-read-write"))
    denied(lambda: s3.copy_object(Bucket=bucket, Key="k", ACL="public-read",
                                  CopySource={"Bucket": bucket, "Key": "src"}))
    denied(lambda: s3.put_bucket_acl(Bucket=bucket, ACL="public-read"))
    denied(lambda: s3.put_object_acl(Bucket=bucket, Key="src", AccessControlPolicy={
        "Owner": {"ID": s3.get_bucket_acl(Bucket=bucket)["Owner"]["ID"]},
        "Grants": [{"Grantee": {"Type": "Group", "URI": ALL_USERS}, "Permission": "READ"}]}))
    with pytest.raises(ClientError):
        s3.head_object(Bucket=bucket, Key="k")  # nothing was stored
    # Private ACLs and grants to accounts are not public.
    s3.put_object(Bucket=bucket, Key="k", Body=b"x", ACL="private")
    s3.put_object(Bucket=bucket, Key="k2", Body=b"x", GrantRead=f'id="{OWNER2}"')
    s3.put_bucket_acl(Bucket=bucket, ACL="private")


def test_ignore_public_acls(gateway: Gateway, s3: Any, s3_other: Any) -> None:
    bucket = new_bucket(s3, ACL="public-read-write")
    s3.put_object(Bucket=bucket, Key="open", Body=b"o", ACL="public-read")
    s3.put_object(Bucket=bucket, Key="auth", Body=b"a", ACL="authenticated-read")
    s3.put_object(Bucket=bucket, Key="granted", Body=b"g", GrantRead=f'id="{OWNER2}"')
    assert anon_get(gateway, bucket, "open") == 200
    assert s3_other.get_object(Bucket=bucket, Key="auth")["Body"].read() == b"a"
    block(s3, bucket, IgnorePublicAcls=True)
    assert anon_get(gateway, bucket, "open") == 403
    denied(lambda: s3_other.get_object(Bucket=bucket, Key="auth"))
    put = requests.put(f"{gateway.endpoint}/{bucket}/from-anon", data=b"x", timeout=10)
    assert put.status_code == 403  # the bucket's public WRITE counts for nothing either
    # Grants to an account are not public: still honoured; the ACLs themselves are kept.
    assert s3_other.get_object(Bucket=bucket, Key="granted")["Body"].read() == b"g"
    grants = s3.get_object_acl(Bucket=bucket, Key="open")["Grants"]
    assert any(g["Grantee"].get("URI") == ALL_USERS for g in grants)
    s3.delete_public_access_block(Bucket=bucket)
    assert anon_get(gateway, bucket, "open") == 200


@pytest.mark.parametrize(("principal", "condition", "public"), [
    ("*", None, True),
    ({"AWS": "*"}, None, True),
    ({"AWS": "123456789013"}, None, False),
    ({"AWS": "arn:aws:iam::123456789013:root"}, None, False),
    ({"CanonicalUser": OWNER2}, None, False),
    ("*", {"IpAddress": {"aws:SourceIp": "10.1.0.0/16"}}, False),
    ("*", {"IpAddress": {"aws:SourceIp": "0.0.0.0/0"}}, True),
    ("*", {"StringEquals": {"aws:PrincipalAccount": "123456789013"}}, False),
    ("*", {"StringLike": {"aws:PrincipalAccount": "1234*"}}, True),
    ("*", {"StringEqualsIfExists": {"aws:SourceAccount": "123456789013"}}, True),
    ("*", {"StringEquals": {"aws:UserAgent": "my-app"}}, True),  # not a source of identity
    ("*", {"Bool": {"aws:SecureTransport": "true"}}, True),
])
def test_policy_status_and_block_public_policy(s3: Any, principal: Any,
                                               condition: dict[str, Any] | None,
                                               public: bool) -> None:
    bucket = new_bucket(s3)
    text = policy(bucket, principal, condition=condition)
    denied(lambda: s3.get_bucket_policy_status(Bucket=bucket), "NoSuchBucketPolicy", 404)
    s3.put_bucket_policy(Bucket=bucket, Policy=text)
    assert s3.get_bucket_policy_status(Bucket=bucket)["PolicyStatus"]["IsPublic"] is public
    s3.delete_bucket_policy(Bucket=bucket)
    block(s3, bucket, BlockPublicPolicy=True)
    if public:
        denied(lambda: s3.put_bucket_policy(Bucket=bucket, Policy=text))
        denied(lambda: s3.get_bucket_policy(Bucket=bucket), "NoSuchBucketPolicy", 404)
    else:
        s3.put_bucket_policy(Bucket=bucket, Policy=text)


def test_deny_statements_are_never_public(s3: Any) -> None:
    bucket = new_bucket(s3)
    block(s3, bucket, BlockPublicPolicy=True)
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps({"Statement": [
        {"Effect": "Deny", "Principal": "*", "Action": "s3:DeleteObject",
         "Resource": f"arn:aws:s3:::{bucket}/*"}]}))
    assert s3.get_bucket_policy_status(Bucket=bucket)["PolicyStatus"]["IsPublic"] is False


def test_restrict_public_buckets(gateway: Gateway, s3: Any, s3_other: Any) -> None:
    bucket = new_bucket(s3)
    s3.put_object(Bucket=bucket, Key="k", Body=b"data")
    s3.put_bucket_policy(Bucket=bucket, Policy=policy(bucket))  # public, set before the block
    assert anon_get(gateway, bucket, "k") == 200
    assert s3_other.get_object(Bucket=bucket, Key="k")["Body"].read() == b"data"
    block(s3, bucket, RestrictPublicBuckets=True)
    assert anon_get(gateway, bucket, "k") == 403
    denied(lambda: s3_other.get_object(Bucket=bucket, Key="k"))  # cross-account: blocked too
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"data"
    # A non-public policy naming the other account keeps working.
    s3.put_bucket_policy(Bucket=bucket, Policy=policy(bucket, {"AWS": "123456789013"}))
    assert s3_other.get_object(Bucket=bucket, Key="k")["Body"].read() == b"data"
    assert anon_get(gateway, bucket, "k") == 403
