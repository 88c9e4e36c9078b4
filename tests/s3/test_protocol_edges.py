"""Protocol edges: Transfer-Encoding: chunked uploads, Expect: 100-continue, the signing
region, ACL grant order and bucket-owner canned ACLs, Content-Encoding kept as sent."""

from __future__ import annotations

import gzip
import http.client
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from botocore.auth import S3SigV4Auth, S3SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError
from defusedxml import ElementTree

from gateway.config import load_settings
from gateway.errors import ConfigFileError
from tests.gatewayproc import ACCESS_KEY, SECRET_KEY, Gateway, start_gateway, write_config
from tests.s3.conftest import error_code

CREDS = Credentials(ACCESS_KEY, SECRET_KEY)
OWNER1 = "79a59df900b949e55d96a1e698fbacedfd6e09d98eacf8f8d5218e7cd47ef2be"
OWNER2 = "79a59df900b949e55d96a1e698fbacedfd6e09d98eacf8f8d5218e7cd47ef2bf"
TRAILER_MODE = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"


def new_bucket(s3: Any, **kwargs: Any) -> str:
    name = f"edge-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name, **kwargs)
    return name


def sign(method: str, url: str, headers: dict[str, str], payload_hash: str,
         region: str = "us-east-1") -> dict[str, str]:
    request = AWSRequest(method=method, url=url, headers=dict(headers))
    signer = S3SigV4Auth(CREDS, "s3", region)
    signer.payload = lambda _request: payload_hash  # type: ignore[method-assign]
    signer.add_auth(request)
    return dict(request.headers.items())


def error_fields(body: bytes) -> dict[str, str]:
    root = ElementTree.fromstring(body)
    assert root.tag == "Error"
    return {child.tag: child.text or "" for child in root}


def put_chunked(gateway: Gateway, path: str, headers: dict[str, str],
                pieces: list[bytes]) -> tuple[int, bytes]:
    """A PUT sent with Transfer-Encoding: chunked and no Content-Length."""
    conn = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=10)
    try:
        conn.request("PUT", path, body=iter(pieces), headers=headers, encode_chunked=True)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


# --- Transfer-Encoding: chunked ------------------------------------------------------------------

def test_chunked_aws_chunked_upload_with_decoded_length(gateway: Gateway, s3: Any) -> None:
    bucket = new_bucket(s3)
    data = b"hello chunked world"
    path = f"/{bucket}/te"
    headers = sign("PUT", gateway.endpoint + path, {
        "Content-Encoding": "aws-chunked,gzip", "x-amz-decoded-content-length": str(len(data)),
        "Transfer-Encoding": "chunked"}, TRAILER_MODE)
    headers.pop("Content-Length", None)
    framing = [f"{9:x}\r\n".encode() + data[:9] + b"\r\n",
               f"{len(data) - 9:x}\r\n".encode() + data[9:] + b"\r\n", b"0\r\n\r\n"]
    code, body = put_chunked(gateway, path, headers, framing)
    assert code == 200, body
    got = s3.get_object(Bucket=bucket, Key="te")
    assert got["Body"].read() == data
    assert got["ContentEncoding"] == "gzip"  # the aws-chunked token is framing, not stored


def test_plain_chunked_upload_without_length_is_411(gateway: Gateway, s3: Any) -> None:
    bucket = new_bucket(s3)
    path = f"/{bucket}/plain"
    headers = sign("PUT", gateway.endpoint + path, {"Transfer-Encoding": "chunked"},
                   "UNSIGNED-PAYLOAD")
    headers.pop("Content-Length", None)
    code, body = put_chunked(gateway, path, headers, [b"some ", b"bytes"])
    assert code == 411 and error_fields(body)["Code"] == "MissingContentLength"
    with pytest.raises(ClientError):
        s3.head_object(Bucket=bucket, Key="plain")


# --- Expect: 100-continue ------------------------------------------------------------------------

def expect_continue(gateway: Gateway, path: str, headers: dict[str, str],
                    body: bytes) -> tuple[bytes, bool]:
    """Send the head of a PUT with Expect: 100-continue and wait for the server's first answer
    (without sending the body). Returns that answer, and whether the body was then sent."""
    head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=10) as sock:
        sock.sendall(f"PUT {path} HTTP/1.1\r\nHost: 127.0.0.1:{gateway.port}\r\n"
                     f"Expect: 100-continue\r\n{head}\r\n".encode())
        first = sock.recv(65536)
        if not first.startswith(b"HTTP/1.1 100 Continue"):
            # The final answer came first: the body was never asked for; the server closes.
            while not first.endswith(b"</Error>") and (more := sock.recv(65536)):
                first += more
            sock.settimeout(5)
            assert sock.recv(1) == b""  # closed: the withheld body can never be misread
            return first, False
        sock.sendall(body)
        answer = first.split(b"\r\n\r\n", 1)[1]
        while b"\r\n\r\n" not in answer:
            answer += sock.recv(65536)
        return answer, True


def test_expect_continue_answers_errors_before_the_body(gateway: Gateway, s3: Any) -> None:
    bucket = new_bucket(s3)
    body = b"0123456789"
    # Anonymous to a private bucket: refused before the body.
    answer, sent = expect_continue(gateway, f"/{bucket}/k", {"Content-Length": "10"}, body)
    assert not sent and answer.startswith(b"HTTP/1.1 403") and b"AccessDenied" in answer
    # A missing bucket.
    path = f"/no-such-{uuid.uuid4().hex[:8]}/k"
    headers = sign("PUT", gateway.endpoint + path, {"Content-Length": "10"}, "UNSIGNED-PAYLOAD")
    answer, sent = expect_continue(gateway, path, headers, body)
    assert not sent and answer.startswith(b"HTTP/1.1 404") and b"NoSuchBucket" in answer
    # Too large: 6 GiB announced, nothing sent.
    path = f"/{bucket}/big"
    headers = sign("PUT", gateway.endpoint + path, {"Content-Length": str(6 * 1024**3)},
                   "UNSIGNED-PAYLOAD")
    answer, sent = expect_continue(gateway, path, headers, body)
    assert not sent and answer.startswith(b"HTTP/1.1 400") and b"EntityTooLarge" in answer
    # A bad signature.
    path = f"/{bucket}/k"
    headers = sign("PUT", gateway.endpoint + path, {"Content-Length": "10"}, "UNSIGNED-PAYLOAD")
    headers["Authorization"] = headers["Authorization"][:-4] + "0000"
    answer, sent = expect_continue(gateway, path, headers, body)
    assert not sent and answer.startswith(b"HTTP/1.1 403") and b"SignatureDoesNotMatch" in answer
    # An acceptable one gets 100 Continue, then its answer.
    headers = sign("PUT", gateway.endpoint + path, {"Content-Length": "10"}, "UNSIGNED-PAYLOAD")
    answer, sent = expect_continue(gateway, path, headers, body)
    assert sent and answer.startswith(b"HTTP/1.1 200"), answer
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == body


def test_boto3_uploads_with_expect_continue(s3: Any) -> None:
    # botocore sends Expect: 100-continue on PutObject bodies over 1 MiB.
    bucket = new_bucket(s3)
    data = b"e" * (2 * 1024 * 1024)
    s3.put_object(Bucket=bucket, Key="big", Body=data)
    assert s3.get_object(Bucket=bucket, Key="big")["Body"].read() == data


# --- the signing region --------------------------------------------------------------------------

def test_wrong_signing_region(gateway: Gateway, s3: Any) -> None:
    url = gateway.endpoint + "/"
    response = requests.get(url, headers=sign("GET", url, {}, "UNSIGNED-PAYLOAD", "eu-west-1"),
                            timeout=10)
    fields = error_fields(response.content)
    assert response.status_code == 400
    assert fields["Code"] == "AuthorizationHeaderMalformed"
    assert fields["Region"] == "us-east-1" and "expecting 'us-east-1'" in fields["Message"]
    request = AWSRequest(method="GET", url=url)
    S3SigV4QueryAuth(CREDS, "s3", "eu-west-1", expires=60).add_auth(request)
    response = requests.get(request.url, timeout=10)
    assert response.status_code == 400
    fields = error_fields(response.content)
    assert fields["Code"] == "AuthorizationQueryParametersError"
    assert fields["Region"] == "us-east-1"


@pytest.mark.parametrize("region", ["us-east-1", "us-east-2", "memloc"])
def test_location_names_are_regions(gateway: Gateway, region: str) -> None:
    # Clients name a location by region (aws --region <location>): those signatures pass.
    url = gateway.endpoint + "/"
    response = requests.get(url, headers=sign("GET", url, {}, "UNSIGNED-PAYLOAD", region),
                            timeout=10)
    assert response.status_code == 200, response.text


def test_sdk_configured_for_another_region_follows_the_hint(gateway: Gateway, s3: Any) -> None:
    bucket = new_bucket(s3)
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    elsewhere = gateway.client(region_name="eu-west-1")  # type: ignore[call-arg]
    try:
        got = elsewhere.get_object(Bucket=bucket, Key="k")["Body"].read()
    except ClientError as exc:  # an SDK that does not retry sees AWS's answer
        assert error_code(exc) == "AuthorizationHeaderMalformed"  # type: ignore[arg-type]
    else:
        assert got == b"x"  # botocore re-signed for the region the error named


@pytest.fixture(scope="module")
def any_region(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    workdir: Path = tmp_path_factory.mktemp("anyregion")
    with start_gateway(workdir, config={"region": "*"}) as gw:
        yield gw


def test_region_star_accepts_every_region(any_region: Gateway) -> None:
    url = any_region.endpoint + "/"
    for region in ("eu-west-1", "us-east-1", "moon-1"):
        response = requests.get(url, headers=sign("GET", url, {}, "UNSIGNED-PAYLOAD", region),
                                timeout=10)
        assert response.status_code == 200, (region, response.text)


# --- ACL grant order, bucket-owner canned ACLs ---------------------------------------------------

@pytest.mark.parametrize(("canned", "expected"), [
    ("bucket-owner-full-control", [(OWNER2, "FULL_CONTROL"), (OWNER1, "FULL_CONTROL")]),
    ("bucket-owner-read", [(OWNER2, "FULL_CONTROL"), (OWNER1, "READ")]),
    ("public-read", [(OWNER2, "FULL_CONTROL"),
                     ("http://acs.amazonaws.com/groups/global/AllUsers", "READ")]),
])
def test_bucket_owner_canned_acls_name_the_bucket_owner(s3: Any, s3_other: Any, canned: str,
                                                        expected: list[tuple[str, str]]) -> None:
    bucket = new_bucket(s3, GrantWrite=f'id="{OWNER2}"', GrantFullControl=f'id="{OWNER1}"')
    s3_other.put_object(Bucket=bucket, Key="k", Body=b"x", ACL=canned)
    acl = s3.get_object_acl(Bucket=bucket, Key="k")
    assert acl["Owner"]["ID"] == OWNER2
    assert [(g["Grantee"].get("ID") or g["Grantee"].get("URI"), g["Permission"])
            for g in acl["Grants"]] == expected


def test_owner_full_control_listed_first(s3: Any) -> None:
    bucket = new_bucket(s3)
    s3.put_bucket_acl(Bucket=bucket, AccessControlPolicy={"Owner": {"ID": OWNER1}, "Grants": [
        {"Grantee": {"Type": "CanonicalUser", "ID": OWNER2}, "Permission": "READ"},
        {"Grantee": {"Type": "CanonicalUser", "ID": OWNER1}, "Permission": "FULL_CONTROL"}]})
    grants = s3.get_bucket_acl(Bucket=bucket)["Grants"]
    assert [(g["Grantee"]["ID"], g["Permission"]) for g in grants] == [
        (OWNER1, "FULL_CONTROL"), (OWNER2, "READ")]


# --- Content-Encoding ----------------------------------------------------------------------------

@pytest.mark.parametrize("encoding", ["gzip", "gzip,  br", "GZIP ;q=1", "identity"])
def test_content_encoding_returned_as_sent(s3: Any, encoding: str) -> None:
    bucket = new_bucket(s3)
    s3.put_object(Bucket=bucket, Key="k", Body=b"x", ContentEncoding=encoding)
    assert s3.head_object(Bucket=bucket, Key="k")["ContentEncoding"] == encoding


def test_gzip_body_stored_as_sent(s3: Any) -> None:
    """A Content-Encoding: gzip body is the object's bytes: never inflated on the way in."""
    bucket = new_bucket(s3)
    packed = gzip.compress(b"compressible " * 1000)
    s3.put_object(Bucket=bucket, Key="z", Body=packed, ContentEncoding="gzip")
    got = s3.get_object(Bucket=bucket, Key="z")
    assert got["ContentEncoding"] == "gzip" and got["Body"].read() == packed
    assert got["ContentLength"] == len(packed)


@pytest.mark.parametrize("value", [5, "", "   ", ["us-east-1"]])
def test_bad_region_setting_refuses_to_start(tmp_path: Path, value: Any) -> None:
    env = write_config(tmp_path, 1, None, {"region": value})
    with pytest.raises(ConfigFileError) as exc:
        load_settings(env)
    assert 'key "region"' in str(exc.value) and "config.json" in str(exc.value)
    assert load_settings({**env, "S3_REGION": "eu-west-3"}).region == "eu-west-3"
