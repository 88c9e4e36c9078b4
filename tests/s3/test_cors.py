"""CORS: Put/Get/DeleteBucketCors, preflight OPTIONS, headers on actual requests."""

from __future__ import annotations

import base64
import hashlib
import uuid
from typing import Any

import pytest
import requests
from botocore.exceptions import ClientError

from tests.s3.conftest import error_code, raw_request, status

LOCATIONS = ["file", "memloc"]
RULES = [
    {"ID": "app", "AllowedOrigins": ["https://app.example.com"],
     "AllowedMethods": ["GET", "PUT"], "AllowedHeaders": ["content-type", "x-amz-*"],
     "ExposeHeaders": ["ETag"], "MaxAgeSeconds": 600},
    {"AllowedOrigins": ["*"], "AllowedMethods": ["GET"]},
]


def new_bucket(s3: Any, where: str) -> str:
    name = f"cors-{uuid.uuid4().hex[:12]}"
    kwargs: dict[str, Any] = {}
    if where == "memloc":
        kwargs["CreateBucketConfiguration"] = {"LocationConstraint": "memloc"}
    s3.create_bucket(Bucket=name, **kwargs)
    return name


def options(gateway: Any, path: str, headers: dict[str, str]) -> requests.Response:
    return requests.options(gateway.endpoint + path, headers=headers, timeout=10)


@pytest.mark.parametrize("where", LOCATIONS)
def test_put_get_delete_cors(s3: Any, where: str) -> None:
    bucket = new_bucket(s3, where)
    with pytest.raises(ClientError) as exc:
        s3.get_bucket_cors(Bucket=bucket)
    assert error_code(exc) == "NoSuchCORSConfiguration" and status(exc) == 404
    s3.put_bucket_cors(Bucket=bucket, CORSConfiguration={"CORSRules": RULES})
    got = s3.get_bucket_cors(Bucket=bucket)["CORSRules"]
    assert got[0] == RULES[0]
    assert got[1] == {"AllowedOrigins": ["*"], "AllowedMethods": ["GET"]}
    assert s3.delete_bucket_cors(Bucket=bucket)["ResponseMetadata"]["HTTPStatusCode"] == 204
    with pytest.raises(ClientError) as exc:
        s3.get_bucket_cors(Bucket=bucket)
    assert error_code(exc) == "NoSuchCORSConfiguration"


@pytest.mark.parametrize("where", LOCATIONS)
def test_preflight(gateway: Any, s3: Any, where: str) -> None:
    bucket = new_bucket(s3, where)
    path = f"/{bucket}/some/key"
    no_config = options(gateway, path, {"Origin": "https://app.example.com",
                                        "Access-Control-Request-Method": "GET"})
    assert no_config.status_code == 403 and b"CORS is not enabled" in no_config.content
    s3.put_bucket_cors(Bucket=bucket, CORSConfiguration={"CORSRules": RULES})
    ok = options(gateway, path, {"Origin": "https://app.example.com",
                                 "Access-Control-Request-Method": "PUT",
                                 "Access-Control-Request-Headers": "Content-Type, X-Amz-Date"})
    assert ok.status_code == 200
    assert ok.headers["Access-Control-Allow-Origin"] == "https://app.example.com"
    assert ok.headers["Access-Control-Allow-Methods"] == "GET, PUT"
    assert ok.headers["Access-Control-Allow-Headers"] == "content-type, x-amz-date"
    assert ok.headers["Access-Control-Max-Age"] == "600"
    assert ok.headers["Access-Control-Expose-Headers"] == "ETag"
    assert ok.headers["Access-Control-Allow-Credentials"] == "true"
    anywhere = options(gateway, f"/{bucket}", {"Origin": "https://other.example.org",
                                               "Access-Control-Request-Method": "GET"})
    assert anywhere.status_code == 200
    assert anywhere.headers["Access-Control-Allow-Origin"] == "*"
    for headers in ({"Origin": "https://other.example.org",  # method not allowed there
                     "Access-Control-Request-Method": "PUT"},
                    {"Origin": "https://app.example.com",  # header not allowed
                     "Access-Control-Request-Method": "PUT",
                     "Access-Control-Request-Headers": "x-custom"}):
        denied = options(gateway, path, headers)
        assert denied.status_code == 403
        assert b"<Code>AccessForbidden</Code>" in denied.content
        assert b"This CORS request is not allowed" in denied.content
        assert "Access-Control-Allow-Origin" not in denied.headers
    no_origin = options(gateway, path, {"Access-Control-Request-Method": "GET"})
    assert no_origin.status_code == 400 and b"BadRequest" in no_origin.content
    bad_method = options(gateway, path, {"Origin": "https://app.example.com",
                                         "Access-Control-Request-Method": "PATCH"})
    assert bad_method.status_code == 400
    missing = options(gateway, "/no-such-bucket-cors/k", {
        "Origin": "https://app.example.com", "Access-Control-Request-Method": "GET"})
    assert missing.status_code == 403


def test_headers_on_actual_requests(gateway: Any, s3: Any) -> None:
    bucket = new_bucket(s3, "file")
    s3.put_object(Bucket=bucket, Key="k", Body=b"x", ACL="public-read")
    s3.put_bucket_cors(Bucket=bucket, CORSConfiguration={"CORSRules": RULES[:1]})
    url = f"{gateway.endpoint}/{bucket}/k"
    got = requests.get(url, headers={"Origin": "https://app.example.com"}, timeout=10)
    assert got.status_code == 200 and got.content == b"x"
    assert got.headers["Access-Control-Allow-Origin"] == "https://app.example.com"
    assert got.headers["Access-Control-Expose-Headers"] == "ETag"
    assert "Origin" in got.headers["Vary"]
    other = requests.get(url, headers={"Origin": "https://evil.example.net"}, timeout=10)
    assert other.status_code == 200 and "Access-Control-Allow-Origin" not in other.headers
    head = requests.head(url, headers={"Origin": "https://app.example.com"}, timeout=10)
    assert "Access-Control-Allow-Origin" not in head.headers  # HEAD is not an allowed method
    # Error answers carry them too, so the browser shows the page the error.
    missing = requests.get(f"{gateway.endpoint}/{bucket}/private",
                           headers={"Origin": "https://app.example.com"}, timeout=10)
    assert missing.status_code == 403
    assert missing.headers["Access-Control-Allow-Origin"] == "https://app.example.com"


def test_cors_errors(gateway: Any, s3: Any, s3_other: Any) -> None:
    bucket = new_bucket(s3, "memloc")
    with pytest.raises(ClientError) as exc:
        s3.put_bucket_cors(Bucket=bucket, CORSConfiguration={"CORSRules": [
            {"AllowedOrigins": ["*"], "AllowedMethods": ["PATCH"]}]})
    assert error_code(exc) == "InvalidRequest"
    assert "PATCH" in exc.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as exc:
        s3.put_bucket_cors(Bucket=bucket, CORSConfiguration={"CORSRules": [
            {"AllowedOrigins": ["https://*.*.example.com"], "AllowedMethods": ["GET"]}]})
    assert error_code(exc) == "InvalidRequest"
    with pytest.raises(ClientError) as exc:
        s3.put_bucket_cors(Bucket=bucket, CORSConfiguration={"CORSRules": []})
    assert error_code(exc) == "MalformedXML"
    for body in (b"<CORSConfiguration><CORSRule><AllowedMethod>GET</AllowedMethod>"
                 b"</CORSRule></CORSConfiguration>",  # no AllowedOrigin
                 b"<CORSConfiguration><CORSRule>",  # not XML
                 b"<CORSConfiguration><CORSRule><AllowedMethod>GET</AllowedMethod>"
                 b"<AllowedOrigin>*</AllowedOrigin><Surprise/></CORSRule></CORSConfiguration>"):
        headers = {"Content-MD5": base64.b64encode(hashlib.md5(body).digest()).decode()}
        bad = raw_request(gateway, "PUT", f"/{bucket}?cors", body=body, headers=headers)
        assert bad.status_code == 400 and b"MalformedXML" in bad.content
    good = (b"<CORSConfiguration><CORSRule><AllowedMethod>GET</AllowedMethod>"
            b"<AllowedOrigin>*</AllowedOrigin></CORSRule></CORSConfiguration>")
    no_md5 = raw_request(gateway, "PUT", f"/{bucket}?cors", body=good)
    assert no_md5.status_code == 400 and b"Content-MD5" in no_md5.content
    with pytest.raises(ClientError) as exc:
        s3_other.put_bucket_cors(Bucket=bucket, CORSConfiguration={"CORSRules": RULES})
    assert error_code(exc) == "AccessDenied"
    with pytest.raises(ClientError) as exc:
        s3.get_bucket_cors(Bucket=bucket)
    assert error_code(exc) == "NoSuchCORSConfiguration"  # nothing was stored
