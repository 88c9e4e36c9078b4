"""The access log: one pure-JSON line per request with S3's access-log fields, the operation
and error code even when authentication fails, and never a secret or a signature."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from botocore.exceptions import ClientError

from tests.gatewayproc import ACCESS_KEY, SECRET_KEY, Gateway, eventually, start_gateway

FIELDS = {"time", "requestId", "clientIp", "account", "canonicalId", "accessKeyId", "userAgent",
          "method", "operation", "bucket", "key", "versionId", "location", "status", "errorCode",
          "bytesIn", "bytesOut", "totalTimeMs", "turnAroundTimeMs"}
BART_ID = "79a59df900b949e55d96a1e698fbacedfd6e09d98eacf8f8d5218e7cd47ef2be"


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    with start_gateway(tmp_path_factory.mktemp("access-log")) as gw:
        yield gw


def entries(gw: Gateway) -> list[dict[str, Any]]:
    """Every access-log line: each is a whole JSON object (nothing before or after it)."""
    return [json.loads(line) for line in gw.log().splitlines() if line.startswith("{")]


def entry_for(gw: Gateway, request_id: str) -> dict[str, Any]:
    eventually(lambda: any(e["requestId"] == request_id for e in entries(gw)), timeout=5)
    return next(e for e in entries(gw) if e["requestId"] == request_id)


def rid(err: ClientError) -> str:
    return err.response["ResponseMetadata"]["RequestId"]


def test_success_auth_failure_and_no_such_key(gateway: Gateway) -> None:
    s3 = gateway.client(user_agent_extra="access-log-test/1.0")
    s3.create_bucket(Bucket="logged-bucket")
    s3.put_bucket_versioning(Bucket="logged-bucket",
                             VersioningConfiguration={"Status": "Enabled"})
    put = s3.put_object(Bucket="logged-bucket", Key="dir/a b.txt", Body=b"x" * 1000)
    got = s3.get_object(Bucket="logged-bucket", Key="dir/a b.txt", VersionId=put["VersionId"])
    assert got["Body"].read() == b"x" * 1000

    entry = entry_for(gateway, put["ResponseMetadata"]["RequestId"])
    assert set(entry) == FIELDS
    assert entry["operation"] == "put_object" and entry["method"] == "PUT"
    assert (entry["bucket"], entry["key"], entry["status"]) == ("logged-bucket", "dir/a b.txt", 200)
    assert (entry["account"], entry["canonicalId"], entry["accessKeyId"]) == (
        "Bart", BART_ID, ACCESS_KEY)
    assert entry["clientIp"] == "127.0.0.1" and "access-log-test/1.0" in entry["userAgent"]
    assert entry["bytesIn"] == 1000 and entry["errorCode"] is None
    assert entry["location"] == "us-east-1"
    assert 0 <= entry["turnAroundTimeMs"] <= entry["totalTimeMs"]
    assert time.strptime(entry["time"][:19], "%Y-%m-%dT%H:%M:%S")

    entry = entry_for(gateway, got["ResponseMetadata"]["RequestId"])
    assert entry["operation"] == "get_object" and entry["versionId"] == put["VersionId"]
    assert entry["bytesOut"] == 1000 and entry["status"] == 200

    # A wrong secret: refused, yet logged with its operation, target, key id and error code.
    with pytest.raises(ClientError) as caught:
        gateway.client(ACCESS_KEY, "a-wrong-secret").get_object(Bucket="logged-bucket",
                                                                 Key="dir/a b.txt")
    entry = entry_for(gateway, rid(caught.value))
    assert entry["operation"] == "get_object" and entry["status"] == 403
    assert entry["errorCode"] == "SignatureDoesNotMatch"
    assert (entry["bucket"], entry["key"]) == ("logged-bucket", "dir/a b.txt")
    assert entry["accessKeyId"] == ACCESS_KEY and entry["account"] is None

    with pytest.raises(ClientError) as caught:
        gateway.client("NoSuchAccessKey", "whatever").list_buckets()
    entry = entry_for(gateway, rid(caught.value))
    assert (entry["operation"], entry["errorCode"]) == ("list_buckets", "InvalidAccessKeyId")
    assert entry["accessKeyId"] == "NoSuchAccessKey"

    with pytest.raises(ClientError) as caught:
        s3.get_object(Bucket="logged-bucket", Key="missing")
    entry = entry_for(gateway, rid(caught.value))
    assert (entry["operation"], entry["status"], entry["errorCode"]) == (
        "get_object", 404, "NoSuchKey")
    assert entry["account"] == "Bart" and entry["bytesOut"] > 0  # the XML error

    # A presigned URL with a tampered signature: the key id is logged, the signature never.
    url = s3.generate_presigned_url("get_object", Params={"Bucket": "logged-bucket",
                                                          "Key": "dir/a b.txt"})
    signature = parse_qs(urlsplit(url).query)["X-Amz-Signature"][0]
    bad = url.replace(signature, "0" * len(signature))
    answer = requests.get(bad, timeout=10)
    assert answer.status_code == 403
    entry = entry_for(gateway, answer.headers["x-amz-request-id"])
    assert entry["accessKeyId"] == ACCESS_KEY and entry["operation"] == "get_object"
    assert requests.get(url, timeout=10).content == b"x" * 1000

    text = gateway.log()
    for secret in (SECRET_KEY, "a-wrong-secret", "whatever", signature):
        assert secret not in text
    assert '"operation": "unknown"' not in text


def test_lines_are_pure_json(gateway: Gateway) -> None:
    gateway.client().list_buckets()
    lines = [line for line in Path(gateway.log_path or "").read_text().splitlines()
             if "requestId" in line]
    assert lines and all(json.loads(line)["requestId"] for line in lines)
