"""The front door: request ids, XML errors, routing styles, authentication failures."""

from __future__ import annotations

import time
from typing import Any

import pytest
import requests
from botocore.exceptions import ClientError

from tests.s3.conftest import error_code, raw_request


def test_request_id_and_error_xml(gateway: Any, bucket: str) -> None:
    response = raw_request(gateway, "GET", f"/{bucket}/missing-key")
    assert response.status_code == 404
    rid = response.headers["x-amz-request-id"]
    assert rid and f"<RequestId>{rid}</RequestId>".encode() in response.content
    assert b"<Code>NoSuchKey</Code>" in response.content
    assert f"<Resource>/{bucket}/missing-key</Resource>".encode() in response.content
    ok = raw_request(gateway, "GET", "/")
    assert ok.status_code == 200 and ok.headers["x-amz-request-id"] != rid


def test_anonymous_is_denied(gateway: Any, bucket: str) -> None:
    for method, path in (("GET", "/"), ("GET", f"/{bucket}"), ("PUT", f"/{bucket}/k")):
        response = raw_request(gateway, method, path, sign=False)
        assert response.status_code == 403
        assert b"<Code>AccessDenied</Code>" in response.content


def test_wrong_secret_and_unknown_key(gateway: Any) -> None:
    bad = raw_request(gateway, "GET", "/", secret="wrong")
    assert bad.status_code == 403 and b"SignatureDoesNotMatch" in bad.content
    unknown = raw_request(gateway, "GET", "/", access="nobody", secret="x")
    assert unknown.status_code == 403 and b"InvalidAccessKeyId" in unknown.content


def test_clock_skew(gateway: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import datetime

    import botocore.auth
    from botocore.auth import S3SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    # The client's clock is an hour behind.
    skewed = datetime.datetime.now(datetime.UTC).replace(tzinfo=None) - datetime.timedelta(hours=1)
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: skewed)
    request = AWSRequest(method="GET", url=gateway.endpoint + "/")
    S3SigV4Auth(Credentials("accessKey1", "verySecretKey1"), "s3", "us-east-1").add_auth(request)
    response = requests.get(gateway.endpoint + "/", headers=dict(request.headers.items()), timeout=10)
    assert response.status_code == 403 and b"RequestTimeTooSkewed" in response.content


def test_not_implemented_is_501_xml(gateway: Any, bucket: str) -> None:
    response = raw_request(gateway, "GET", f"/{bucket}?analytics")
    assert response.status_code == 501
    assert b"<Code>NotImplemented</Code>" in response.content


def test_presigned_get_and_expiry(gateway: Any, s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="shared", Body=b"presigned body")
    url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "shared"},
                                    ExpiresIn=60)
    assert requests.get(url, timeout=10).content == b"presigned body"
    short = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "shared"},
                                      ExpiresIn=1)
    time.sleep(2.1)
    expired = requests.get(short, timeout=10)
    assert expired.status_code == 403 and b"AccessDenied" in expired.content
    tampered = url.replace("shared", "sharee")
    assert requests.get(tampered, timeout=10).status_code == 403


def test_sigv2_client(gateway: Any, bucket: str) -> None:
    v2 = gateway.client(signature_version="s3")
    v2.put_object(Bucket=bucket, Key="v2 key+with/odd", Body=b"signed with v2")
    assert v2.get_object(Bucket=bucket, Key="v2 key+with/odd")["Body"].read() == b"signed with v2"
    url = v2.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "v2 key+with/odd"})
    assert requests.get(url, timeout=10).content == b"signed with v2"


def test_virtual_hosted_style(gateway: Any, s3: Any, bucket: str) -> None:
    import boto3
    from botocore.config import Config

    s3.put_object(Bucket=bucket, Key="vh", Body=b"virtual")
    vh = boto3.client("s3", endpoint_url=f"http://localhost:{gateway.port}",
                      aws_access_key_id="accessKey1", aws_secret_access_key="verySecretKey1",
                      region_name="us-east-1",
                      config=Config(s3={"addressing_style": "virtual"}))
    response = requests.get(f"http://127.0.0.1:{gateway.port}/vh",
                            headers={"Host": f"{bucket}.localhost:{gateway.port}"}, timeout=10)
    assert response.status_code == 403  # unsigned: proves the bucket came from the Host header
    assert b"AccessDenied" in response.content
    request_url = vh.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "vh"})
    assert request_url.startswith(f"http://{bucket}.localhost:{gateway.port}/vh")
    path = request_url.split(f":{gateway.port}", 1)[1]
    signed = requests.get(f"http://127.0.0.1:{gateway.port}{path}",
                          headers={"Host": f"{bucket}.localhost:{gateway.port}"}, timeout=10)
    assert signed.status_code == 200 and signed.content == b"virtual"


def test_second_account_presign_denied(gateway: Any, s3_other: Any, bucket: str) -> None:
    url = s3_other.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "x"})
    response = requests.get(url, timeout=10)
    assert response.status_code == 403 and b"AccessDenied" in response.content


def test_method_not_allowed_on_service(gateway: Any) -> None:
    response = raw_request(gateway, "DELETE", "/")
    assert response.status_code in (405, 501)
    assert b"<Error>" in response.content


def test_boto3_error_code_roundtrip(s3: Any) -> None:
    with pytest.raises(ClientError) as exc:
        s3.get_bucket_location(Bucket="no-such-bucket-here")
    assert error_code(exc) == "NoSuchBucket"
