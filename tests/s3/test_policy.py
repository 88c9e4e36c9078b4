"""Bucket policies: Get/Put/DeleteBucketPolicy, validation, and their evaluation."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
import requests
from botocore.exceptions import ClientError

from tests.s3.conftest import error_code, status

OWNER2 = "79a59df900b949e55d96a1e698fbacedfd6e09d98eacf8f8d5218e7cd47ef2bf"
LOCATIONS = ["file", "memloc"]


def new_bucket(s3: Any, where: str = "file") -> str:
    name = f"pol-{uuid.uuid4().hex[:12]}"
    kwargs: dict[str, Any] = {}
    if where == "memloc":
        kwargs["CreateBucketConfiguration"] = {"LocationConstraint": "memloc"}
    s3.create_bucket(Bucket=name, **kwargs)
    return name


def policy(*statements: dict[str, Any]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def anon_get(gateway: Any, path: str) -> requests.Response:
    return requests.get(gateway.endpoint + path, timeout=10)


@pytest.mark.parametrize("where", LOCATIONS)
def test_put_get_delete_policy(s3: Any, where: str) -> None:
    bucket = new_bucket(s3, where)
    with pytest.raises(ClientError) as exc:
        s3.get_bucket_policy(Bucket=bucket)
    assert error_code(exc) == "NoSuchBucketPolicy" and status(exc) == 404
    text = policy({"Sid": "read", "Effect": "Allow", "Principal": "*",
                   "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{bucket}/*"})
    put = s3.put_bucket_policy(Bucket=bucket, Policy=text)
    assert put["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"]) == json.loads(text)
    deleted = s3.delete_bucket_policy(Bucket=bucket)
    assert deleted["ResponseMetadata"]["HTTPStatusCode"] == 204
    with pytest.raises(ClientError) as exc:
        s3.get_bucket_policy(Bucket=bucket)
    assert error_code(exc) == "NoSuchBucketPolicy"


@pytest.mark.parametrize("where", LOCATIONS)
def test_allow_anonymous_read_by_prefix(gateway: Any, s3: Any, where: str) -> None:
    bucket = new_bucket(s3, where)
    s3.put_object(Bucket=bucket, Key="public/a.txt", Body=b"open")
    s3.put_object(Bucket=bucket, Key="private/b.txt", Body=b"closed")
    s3.put_bucket_policy(Bucket=bucket, Policy=policy(
        {"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": ["s3:Get*"],
         "Resource": [f"arn:aws:s3:::{bucket}/public/*"]}))
    got = anon_get(gateway, f"/{bucket}/public/a.txt")
    assert got.status_code == 200 and got.content == b"open"
    assert anon_get(gateway, f"/{bucket}/private/b.txt").status_code == 403
    assert anon_get(gateway, f"/{bucket}").status_code == 403  # ListBucket not granted


def test_allow_other_account_and_explicit_deny_wins(s3: Any, s3_other: Any) -> None:
    bucket = new_bucket(s3)
    s3.put_object(Bucket=bucket, Key="doc", Body=b"d")
    s3.put_object(Bucket=bucket, Key="secret/x", Body=b"s")
    s3.put_bucket_policy(Bucket=bucket, Policy=policy(
        {"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::123456789013:root"},
         "Action": "s3:*", "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"]},
        {"Effect": "Deny", "Principal": "*", "Action": ["s3:GetObject", "s3:DeleteObject"],
         "Resource": f"arn:aws:s3:::{bucket}/secret/*"}))
    assert s3_other.get_object(Bucket=bucket, Key="doc")["Body"].read() == b"d"
    s3_other.put_object(Bucket=bucket, Key="from-other", Body=b"o")
    assert s3_other.list_objects_v2(Bucket=bucket)["KeyCount"] == 3
    for client in (s3_other, s3):  # the Deny applies to the bucket owner too
        with pytest.raises(ClientError) as exc:
            client.get_object(Bucket=bucket, Key="secret/x")
        assert error_code(exc) == "AccessDenied"
    # ...but never locks the owner out of its policy.
    s3.delete_bucket_policy(Bucket=bucket)
    assert s3.get_object(Bucket=bucket, Key="secret/x")["Body"].read() == b"s"
    with pytest.raises(ClientError) as exc:
        s3_other.get_object(Bucket=bucket, Key="doc")
    assert error_code(exc) == "AccessDenied"


def test_policy_operations_are_the_owners(s3: Any, s3_other: Any) -> None:
    bucket = new_bucket(s3)
    s3.put_bucket_policy(Bucket=bucket, Policy=policy(
        {"Effect": "Allow", "Principal": {"CanonicalUser": OWNER2}, "Action": "s3:*",
         "Resource": f"arn:aws:s3:::{bucket}"}))
    assert s3_other.list_objects_v2(Bucket=bucket)["KeyCount"] == 0  # canonical id principal
    for call in (lambda: s3_other.get_bucket_policy(Bucket=bucket),
                 lambda: s3_other.delete_bucket_policy(Bucket=bucket),
                 lambda: s3_other.put_bucket_policy(Bucket=bucket, Policy=policy(
                     {"Effect": "Deny", "Principal": "*", "Action": "s3:*",
                      "Resource": f"arn:aws:s3:::{bucket}"}))):
        with pytest.raises(ClientError) as exc:
            call()
        assert error_code(exc) == "AccessDenied"
    assert "CanonicalUser" in s3.get_bucket_policy(Bucket=bucket)["Policy"]


def test_conditions_source_ip_secure_transport_prefix(gateway: Any, s3: Any,
                                                      s3_other: Any) -> None:
    bucket = new_bucket(s3)
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    s3.put_object(Bucket=bucket, Key="home/k", Body=b"x")
    arn = f"arn:aws:s3:::{bucket}"
    s3.put_bucket_policy(Bucket=bucket, Policy=policy(
        {"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": f"{arn}/*",
         "Condition": {"IpAddress": {"aws:SourceIp": "127.0.0.0/8"}}},
        {"Effect": "Allow", "Principal": {"AWS": "123456789013"}, "Action": "s3:ListBucket",
         "Resource": arn, "Condition": {"StringLike": {"s3:prefix": "home/*"}}}))
    assert anon_get(gateway, f"/{bucket}/k").status_code == 200  # from 127.0.0.1
    assert s3_other.list_objects_v2(Bucket=bucket, Prefix="home/")["KeyCount"] == 1
    with pytest.raises(ClientError) as exc:
        s3_other.list_objects_v2(Bucket=bucket)
    assert error_code(exc) == "AccessDenied"
    s3.put_bucket_policy(Bucket=bucket, Policy=policy(
        {"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": f"{arn}/*",
         "Condition": {"NotIpAddress": {"aws:SourceIp": ["127.0.0.0/8", "::1/128"]}}}))
    assert anon_get(gateway, f"/{bucket}/k").status_code == 403
    # Plain HTTP is not secure transport: a Deny on it stops even the owner.
    s3.put_bucket_policy(Bucket=bucket, Policy=policy(
        {"Effect": "Deny", "Principal": "*", "Action": "s3:PutObject", "Resource": f"{arn}/*",
         "Condition": {"Bool": {"aws:SecureTransport": "false"}}}))
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=bucket, Key="insecure", Body=b"x")
    assert error_code(exc) == "AccessDenied"
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"x"  # not denied
    s3.put_bucket_policy(Bucket=bucket, Policy=policy(
        {"Effect": "Deny", "Principal": "*", "NotAction": "s3:Get*", "Resource": f"{arn}/*",
         "Condition": {"StringEquals": {"s3:x-amz-acl": "public-read"}}}))
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=bucket, Key="pub", Body=b"x", ACL="public-read")
    assert error_code(exc) == "AccessDenied"
    s3.put_object(Bucket=bucket, Key="pub", Body=b"x")


@pytest.mark.parametrize("document,fragment", [
    ("not json", "valid JSON"),
    ("[1, 2]", "valid JSON"),
    ('{"Statement": []}', "Statement"),
    ('{"Statement": [{"Effect": "Maybe", "Principal": "*", "Action": "s3:GetObject", '
     '"Resource": "arn:aws:s3:::BUCKET/*"}]}', "effect"),
    ('{"Statement": [{"Principal": "*", "Action": "s3:GetObject", '
     '"Resource": "arn:aws:s3:::BUCKET/*"}]}', "Effect"),
    ('{"Statement": [{"Effect": "Allow", "Action": "s3:GetObject", '
     '"Resource": "arn:aws:s3:::BUCKET/*"}]}', "Principal"),
    ('{"Statement": [{"Effect": "Allow", "Principal": "*", '
     '"Resource": "arn:aws:s3:::BUCKET/*"}]}', "Action"),
    ('{"Statement": [{"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject"}]}',
     "Resource"),
    ('{"Statement": [{"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", '
     '"Resource": "arn:aws:s3:::some-other-bucket/*"}]}', "resource"),
    ('{"Statement": [{"Effect": "Allow", "Principal": "*", "Action": "s3:FlyAway", '
     '"Resource": "arn:aws:s3:::BUCKET/*"}]}', "action"),
    ('{"Statement": [{"Effect": "Allow", "Principal": {"AWS": "nobody"}, '
     '"Action": "s3:GetObject", "Resource": "arn:aws:s3:::BUCKET/*"}]}', "principal"),
    ('{"Statement": [{"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", '
     '"Resource": "arn:aws:s3:::BUCKET/*", "Condition": {"Sometimes": {"a": "b"}}}]}',
     "Condition"),
    ('{"Statement": [{"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", '
     '"Resource": "arn:aws:s3:::BUCKET/*", '
     '"Condition": {"IpAddress": {"aws:SourceIp": "999.1.1.1"}}}]}', "IP"),
])
def test_malformed_policies(s3: Any, document: str, fragment: str) -> None:
    bucket = new_bucket(s3, "memloc")
    with pytest.raises(ClientError) as exc:
        s3.put_bucket_policy(Bucket=bucket, Policy=document.replace("BUCKET", bucket))
    assert error_code(exc) == "MalformedPolicy" and status(exc) == 400
    assert fragment.lower() in exc.value.response["Error"]["Message"].lower()
    with pytest.raises(ClientError) as exc:
        s3.get_bucket_policy(Bucket=bucket)
    assert error_code(exc) == "NoSuchBucketPolicy"  # nothing was stored


def test_policy_on_missing_bucket(s3: Any) -> None:
    with pytest.raises(ClientError) as exc:
        s3.get_bucket_policy(Bucket="no-such-bucket-pol")
    assert error_code(exc) == "NoSuchBucket"
