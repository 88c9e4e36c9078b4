"""Bucket policy condition keys AWS evaluates for S3 requests, and the operators they need."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
import requests
from botocore.exceptions import ClientError

from tests.gatewayproc import Gateway

OWNER1 = "79a59df900b949e55d96a1e698fbacedfd6e09d98eacf8f8d5218e7cd47ef2be"
OTHER = {"AWS": "123456789013"}  # accessKey2's account


def new_bucket(s3: Any) -> str:
    name = f"cond-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    return name


def set_policy(s3: Any, bucket: str, *statements: dict[str, Any]) -> None:
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps({"Version": "2012-10-17",
                                                           "Statement": list(statements)}))


def statement(bucket: str, action: str, condition: dict[str, Any], *, effect: str = "Allow",
              principal: Any = OTHER, objects: bool = True) -> dict[str, Any]:
    return {"Effect": effect, "Principal": principal, "Action": action,
            "Resource": f"arn:aws:s3:::{bucket}" + ("/*" if objects else ""),
            "Condition": condition}


def code_of(call: Any) -> str:
    try:
        call()
    except ClientError as exc:
        return str(exc.response["Error"]["Code"])
    return "ok"


def test_existing_object_tag(s3: Any, s3_other: Any) -> None:
    bucket = new_bucket(s3)
    s3.put_object(Bucket=bucket, Key="open", Body=b"o", Tagging="Classification=public")
    s3.put_object(Bucket=bucket, Key="lower", Body=b"l", Tagging="classification=public")
    s3.put_object(Bucket=bucket, Key="closed", Body=b"c", Tagging="Classification=secret")
    s3.put_object(Bucket=bucket, Key="untagged", Body=b"u")
    set_policy(s3, bucket, statement(bucket, "s3:GetObject", {
        "StringEquals": {"s3:ExistingObjectTag/Classification": "public"}}))
    assert s3_other.get_object(Bucket=bucket, Key="open")["Body"].read() == b"o"
    for key in ("lower", "closed", "untagged"):  # tag keys are case-sensitive
        assert code_of(lambda key=key: s3_other.get_object(Bucket=bucket, Key=key)) == \
            "AccessDenied", key
    # Retagging changes the decision for that version.
    s3.put_object_tagging(Bucket=bucket, Key="closed", Tagging={
        "TagSet": [{"Key": "Classification", "Value": "public"}]})
    assert s3_other.get_object(Bucket=bucket, Key="closed")["Body"].read() == b"c"


def test_request_object_tag_and_tag_keys(s3: Any, s3_other: Any) -> None:
    bucket = new_bucket(s3)
    set_policy(s3, bucket, statement(bucket, "s3:PutObject", {
        "StringEquals": {"s3:RequestObjectTag/team": "blue"},
        "ForAllValues:StringEquals": {"s3:RequestObjectTagKeys": ["team", "env"]},
        "ForAnyValue:StringLike": {"s3:RequestObjectTagKeys": ["te*"]}}))

    def put(tagging: str | None) -> str:
        extra = {"Tagging": tagging} if tagging is not None else {}
        return code_of(lambda: s3_other.put_object(Bucket=bucket, Key="k", Body=b"x", **extra))

    assert put("team=blue") == "ok"
    assert put("team=blue&env=prod") == "ok"
    assert put("team=red") == "AccessDenied"
    assert put("team=blue&owner=me") == "AccessDenied"  # a key outside the allowed set
    assert put(None) == "AccessDenied"
    assert put("env=prod") == "AccessDenied"


def test_for_all_values_holds_without_values_and_null(s3: Any, s3_other: Any) -> None:
    bucket = new_bucket(s3)
    set_policy(s3, bucket, statement(bucket, "s3:PutObject", {
        "ForAllValues:StringEquals": {"s3:RequestObjectTagKeys": ["team"]}}))
    assert code_of(lambda: s3_other.put_object(Bucket=bucket, Key="k", Body=b"x")) == "ok"
    set_policy(s3, bucket, statement(bucket, "s3:PutObject", {
        "ForAllValues:StringEquals": {"s3:RequestObjectTagKeys": ["team"]},
        "Null": {"s3:RequestObjectTagKeys": "false"}}))
    assert code_of(lambda: s3_other.put_object(Bucket=bucket, Key="k", Body=b"x")) == \
        "AccessDenied"
    assert code_of(lambda: s3_other.put_object(Bucket=bucket, Key="k", Body=b"x",
                                               Tagging="team=a")) == "ok"


def test_server_side_encryption_required(s3: Any) -> None:
    bucket = new_bucket(s3)
    set_policy(s3, bucket, statement(bucket, "s3:PutObject", {
        "Null": {"s3:x-amz-server-side-encryption": "true"}}, effect="Deny", principal="*"))
    assert code_of(lambda: s3.put_object(Bucket=bucket, Key="k", Body=b"x")) == "AccessDenied"
    assert code_of(lambda: s3.put_object(Bucket=bucket, Key="k", Body=b"x",
                                         ServerSideEncryption="AES256")) != "AccessDenied"


def test_list_keys_prefix_max_keys_delimiter(s3: Any, s3_other: Any) -> None:
    bucket = new_bucket(s3)
    set_policy(s3, bucket, statement(bucket, "s3:ListBucket", {
        "StringEquals": {"s3:prefix": "home/", "s3:delimiter": "/"},
        "NumericLessThanEquals": {"s3:max-keys": "10"}}, objects=False))
    assert code_of(lambda: s3_other.list_objects(Bucket=bucket, Prefix="home/", Delimiter="/",
                                                 MaxKeys=10)) == "ok"
    for kwargs in ({"Prefix": "home/", "Delimiter": "/", "MaxKeys": 11},
                   {"Prefix": "etc/", "Delimiter": "/", "MaxKeys": 5},
                   {"Prefix": "home/", "MaxKeys": 5},
                   {"Prefix": "home/", "Delimiter": "/"}):
        assert code_of(lambda kwargs=kwargs: s3_other.list_objects(Bucket=bucket, **kwargs)) \
            == "AccessDenied", kwargs


def test_acl_and_grant_headers(s3: Any, s3_other: Any) -> None:
    bucket = new_bucket(s3)
    set_policy(s3, bucket,
               statement(bucket, "s3:PutObject", {
                   "StringEquals": {"s3:x-amz-acl": "bucket-owner-full-control"}}),
               statement(bucket, "s3:PutObject", {
                   "StringEquals": {"s3:x-amz-grant-full-control": f'id="{OWNER1}"'}}))
    assert code_of(lambda: s3_other.put_object(Bucket=bucket, Key="a", Body=b"x",
                                               ACL="bucket-owner-full-control")) == "ok"
    assert code_of(lambda: s3_other.put_object(Bucket=bucket, Key="b", Body=b"x",
                                               GrantFullControl=f'id="{OWNER1}"')) == "ok"
    assert code_of(lambda: s3_other.put_object(Bucket=bucket, Key="c", Body=b"x",
                                               ACL="private")) == "AccessDenied"
    assert code_of(lambda: s3_other.put_object(Bucket=bucket, Key="d", Body=b"x")) == \
        "AccessDenied"


def test_signature_version(gateway: Gateway, s3: Any) -> None:
    bucket = new_bucket(s3)
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    set_policy(s3, bucket, statement(bucket, "s3:GetObject", {
        "StringNotEquals": {"s3:signatureversion": "AWS4-HMAC-SHA256"}},
        effect="Deny", principal="*"))
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"x"
    v2 = gateway.client(signature_version="s3")
    assert code_of(lambda: v2.get_object(Bucket=bucket, Key="k")) == "AccessDenied"


def test_secure_transport_referer_user_agent(gateway: Gateway, s3: Any, s3_other: Any) -> None:
    bucket = new_bucket(s3)
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    set_policy(
        s3, bucket,
        statement(bucket, "s3:GetObject", {"StringLike": {"aws:Referer": "https://site.example/*"}},
                  principal="*"),
        statement(bucket, "s3:GetObject", {"StringLike": {"aws:UserAgent": "*BadBot*"}},
                  effect="Deny", principal="*"),
        statement(bucket, "s3:PutObject", {"Bool": {"aws:SecureTransport": "false"}},
                  effect="Deny"))
    url = f"{gateway.endpoint}/{bucket}/k"
    assert requests.get(url, headers={"Referer": "https://site.example/page"},
                        timeout=10).status_code == 200
    assert requests.get(url, headers={"Referer": "https://elsewhere.example/"},
                        timeout=10).status_code == 403
    assert requests.get(url, timeout=10).status_code == 403
    assert requests.get(url, headers={"Referer": "https://site.example/page",
                                      "User-Agent": "BadBot/1.0"}, timeout=10).status_code == 403
    # Plain http: the other account's writes are denied (SecureTransport false).
    s3.put_bucket_acl(Bucket=bucket, GrantWrite='id="79a59df900b949e55d96a1e698fbacedfd6e09d9'
                      '8eacf8f8d5218e7cd47ef2bf"')
    assert code_of(lambda: s3_other.put_object(Bucket=bucket, Key="w", Body=b"x")) == \
        "AccessDenied"


@pytest.mark.parametrize(("operator", "values", "allowed"), [
    ("StringEqualsIgnoreCase", "HOME/", True),
    ("StringNotEquals", "home/", False),
    ("StringNotEqualsIgnoreCase", "HOME/", False),
    ("StringLike", "ho?e/*", True),
    ("StringNotLike", "h*", False),
    ("StringEqualsIfExists", "other/", False),
])
def test_string_operators(s3: Any, s3_other: Any, operator: str, values: str,
                          allowed: bool) -> None:
    bucket = new_bucket(s3)
    set_policy(s3, bucket, statement(bucket, "s3:ListBucket", {operator: {"s3:prefix": values}},
                                     objects=False))
    got = code_of(lambda: s3_other.list_objects_v2(Bucket=bucket, Prefix="home/"))
    assert got == ("ok" if allowed else "AccessDenied")


@pytest.mark.parametrize(("operator", "limit", "allowed"), [
    ("NumericEquals", "7", True), ("NumericNotEquals", "7", False),
    ("NumericLessThan", "7", False), ("NumericGreaterThan", "6", True),
    ("NumericGreaterThanEquals", "8", False),
])
def test_numeric_operators(s3: Any, s3_other: Any, operator: str, limit: str,
                           allowed: bool) -> None:
    bucket = new_bucket(s3)
    set_policy(s3, bucket, statement(bucket, "s3:ListBucket", {operator: {"s3:max-keys": limit}},
                                     objects=False))
    got = code_of(lambda: s3_other.list_objects_v2(Bucket=bucket, MaxKeys=7))
    assert got == ("ok" if allowed else "AccessDenied")
