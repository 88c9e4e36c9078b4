"""Attacks on authentication, over HTTP against a real gateway: unsigned headers added to a
signed or presigned request, unsigned Host, bodies substituted after signing, oversized
aws-chunked trailers, IPv4-mapped client addresses, absurd dates and expiries."""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import json
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests
from botocore.auth import HmacV1Auth, S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError
from botocore.httpchecksum import AwsChunkedWrapper, Crc32Checksum
from defusedxml import ElementTree

from tests.gatewayproc import (
    ACCESS_KEY,
    REPO,
    SECRET_KEY,
    Gateway,
    free_port,
    stop_process,
    wait_for_port,
    write_config,
)
from tests.s3.conftest import error_code

CREDS = Credentials(ACCESS_KEY, SECRET_KEY)
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
TRAILER_MODE = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"


def error_of(response: requests.Response) -> dict[str, str]:
    """The S3 XML error's elements; fails unless it is one (with a request id)."""
    assert response.headers.get("Content-Type", "").startswith("application/xml"), response.text
    root = ElementTree.fromstring(response.content)
    assert root.tag == "Error", response.text
    fields = {child.tag: child.text or "" for child in root}
    assert fields.get("RequestId") and fields["RequestId"] == response.headers["x-amz-request-id"]
    return fields


def signed_headers(method: str, url: str, *, body: bytes = b"",
                   headers: dict[str, str] | None = None,
                   payload_hash: str | None = None) -> dict[str, str]:
    """Headers of a request SigV4-signed by botocore (every header given is signed);
    `payload_hash` signs that x-amz-content-sha256 whatever the body."""
    request = AWSRequest(method=method, url=url, data=body, headers=dict(headers or {}))
    signer = S3SigV4Auth(CREDS, "s3", "us-east-1")
    if payload_hash is not None:
        signer.payload = lambda _request: payload_hash  # type: ignore[method-assign]
    signer.add_auth(request)
    return dict(request.headers.items())


def anonymous_get(gateway: Gateway, path: str) -> int:
    return requests.get(gateway.endpoint + path, timeout=10).status_code


def new_bucket(s3: Any, prefix: str = "hard") -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    return name


# --- 1. unsigned x-amz-* headers and an unsigned Host ------------------------------------------

def test_presigned_put_cannot_add_copy_source_and_public_acl(gateway: Gateway, s3: Any,
                                                             bucket: str) -> None:
    # The holder of a presigned PUT for "upload" tries to turn it into a public copy of a
    # private object.
    s3.put_object(Bucket=bucket, Key="private", Body=b"secret")
    url = s3.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": "upload"},
                                    ExpiresIn=300)
    response = requests.put(url, headers={"x-amz-copy-source": f"/{bucket}/private",
                                          "x-amz-acl": "public-read"}, timeout=10)
    assert response.status_code == 403
    fields = error_of(response)
    assert fields["Code"] == "AccessDenied"
    assert fields["Message"] == "There were headers present in the request which were not signed"
    assert fields["HeadersNotSigned"] == "x-amz-acl, x-amz-copy-source"
    with pytest.raises(ClientError) as exc:
        s3.head_object(Bucket=bucket, Key="upload")
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    assert anonymous_get(gateway, f"/{bucket}/upload") == 403
    assert anonymous_get(gateway, f"/{bucket}/private") == 403
    # The URL itself still does what it was made for.
    assert requests.put(url, data=b"mine", timeout=10).status_code == 200
    assert s3.get_object(Bucket=bucket, Key="upload")["Body"].read() == b"mine"


def test_replayed_signed_put_cannot_add_public_acl(gateway: Gateway, s3: Any,
                                                   bucket: str) -> None:
    url = f"{gateway.endpoint}/{bucket}/doc"
    headers = signed_headers("PUT", url, body=b"private data")
    assert requests.put(url, data=b"private data", headers=headers, timeout=10).status_code == 200
    replay = requests.put(url, data=b"private data",
                          headers={**headers, "x-amz-acl": "public-read"}, timeout=10)
    assert replay.status_code == 403
    assert error_of(replay)["HeadersNotSigned"] == "x-amz-acl"
    assert anonymous_get(gateway, f"/{bucket}/doc") == 403
    grants = s3.get_object_acl(Bucket=bucket, Key="doc")["Grants"]
    assert [g["Permission"] for g in grants] == ["FULL_CONTROL"]


def test_request_signed_without_host_is_refused(gateway: Gateway, s3: Any) -> None:
    # Signed (validly) for bucket A's virtual host without signing Host, then replayed on B.
    first, second = new_bucket(s3, "hosta"), new_bucket(s3, "hostb")
    now = datetime.now(UTC)
    stamp = now.strftime("%Y%m%dT%H%M%SZ")
    scope = f"{stamp[:8]}/us-east-1/s3/aws4_request"
    body = b"planted"
    payload = hashlib.sha256(body).hexdigest()
    canonical = "\n".join(["PUT", "/planted", "", f"x-amz-content-sha256:{payload}\n"
                           f"x-amz-date:{stamp}\n", "x-amz-content-sha256;x-amz-date", payload])
    key = ("AWS4" + SECRET_KEY).encode()
    for part in (stamp[:8], "us-east-1", "s3", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    string_to_sign = "\n".join(["AWS4-HMAC-SHA256", stamp, scope,
                                hashlib.sha256(canonical.encode()).hexdigest()])
    signature = hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()
    headers = {"x-amz-date": stamp, "x-amz-content-sha256": payload,
               "Authorization": f"AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/{scope}, "
                                f"SignedHeaders=x-amz-content-sha256;x-amz-date, "
                                f"Signature={signature}"}
    for target in (first, second):
        response = requests.put(f"{gateway.endpoint}/planted", data=body, timeout=10,
                                headers={**headers, "Host": f"{target}.localhost:{gateway.port}"})
        assert response.status_code == 403
        fields = error_of(response)
        assert (fields["Code"], fields["HeadersNotSigned"]) == ("AccessDenied", "host")
    for target in (first, second):
        assert s3.list_objects_v2(Bucket=target)["KeyCount"] == 0


def test_sigv2_signs_every_amz_header(gateway: Gateway, s3: Any, bucket: str) -> None:
    url = f"{gateway.endpoint}/{bucket}/v2doc"
    request = AWSRequest(method="PUT", url=url, data=b"v2", headers={"Content-Type": "text/plain"})
    HmacV1Auth(CREDS).add_auth(request)
    headers = dict(request.headers.items())
    replay = requests.put(url, data=b"v2", headers={**headers, "x-amz-acl": "public-read"},
                          timeout=10)
    assert replay.status_code == 403 and error_of(replay)["Code"] == "SignatureDoesNotMatch"
    with pytest.raises(ClientError):
        s3.head_object(Bucket=bucket, Key="v2doc")
    assert requests.put(url, data=b"v2", headers=headers, timeout=10).status_code == 200


def test_clients_that_sign_their_headers_still_work(gateway: Gateway, s3: Any,
                                                    bucket: str) -> None:
    # boto3 signs every x-amz-* header it sends: ACLs, metadata, tagging, copies all pass.
    s3.put_object(Bucket=bucket, Key="a", Body=b"1", ACL="public-read", Metadata={"m": "v"},
                  Tagging="t=1")
    s3.copy_object(Bucket=bucket, Key="b", CopySource={"Bucket": bucket, "Key": "a"},
                   MetadataDirective="REPLACE", Metadata={"n": "w"})
    assert s3.head_object(Bucket=bucket, Key="b")["Metadata"] == {"n": "w"}
    assert anonymous_get(gateway, f"/{bucket}/a") == 200
    url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "a"})
    # Headers a client or proxy adds that are not x-amz-* need no signature.
    response = requests.get(url, timeout=10, headers={"X-Amzn-Trace-Id": "Root=1-x",
                                                      "X-Forwarded-For": "1.2.3.4"})
    assert response.status_code == 200 and response.content == b"1"


# --- 2. aws-chunked trailers are bounded --------------------------------------------------------

def trailer_request(gateway: Gateway, bucket: str, key: str,
                    extra_trailers: bytes) -> requests.Response:
    data = b"trailer upload " * 100
    framed = AwsChunkedWrapper(io.BytesIO(data), checksum_cls=Crc32Checksum,
                               checksum_name="x-amz-checksum-crc32", chunk_size=65536).read()
    body = framed[:-2] + extra_trailers + b"\r\n"
    url = f"{gateway.endpoint}/{bucket}/{key}"
    headers = signed_headers("PUT", url, payload_hash=TRAILER_MODE, headers={
        "Content-Encoding": "aws-chunked", "x-amz-trailer": "x-amz-checksum-crc32",
        "x-amz-decoded-content-length": str(len(data))})
    return requests.put(url, data=body, headers=headers, timeout=30)


def test_oversized_trailers_are_refused(gateway: Gateway, s3: Any, bucket: str) -> None:
    extra = b"".join(f"x-amz-meta-t{n}: {'v' * 1000}\r\n".encode() for n in range(256))
    response = trailer_request(gateway, bucket, "big-trailers", extra)
    assert response.status_code == 400
    fields = error_of(response)
    assert fields["Code"] == "MalformedTrailerError"
    with pytest.raises(ClientError):
        s3.head_object(Bucket=bucket, Key="big-trailers")
    # A normal trailer upload on the same gateway still works.
    assert trailer_request(gateway, bucket, "fine", b"").status_code == 200
    assert s3.head_object(Bucket=bucket, Key="fine")["ContentLength"] == 1500


# --- 3. small bodies are checked against the signed payload hash -----------------------------

def substituted(gateway: Gateway, method: str, path: str, signed_body: bytes, sent_body: bytes,
                headers: dict[str, str] | None = None) -> requests.Response:
    url = gateway.endpoint + path
    all_headers = signed_headers(method, url, body=signed_body, headers=headers,
                                 payload_hash=hashlib.sha256(signed_body).hexdigest())
    return requests.request(method, url, data=sent_body, headers=all_headers, timeout=10)


def assert_sha_mismatch(response: requests.Response) -> None:
    assert response.status_code == 400, response.text
    assert error_of(response)["Code"] == "XAmzContentSHA256Mismatch"


def location_config(location: str) -> bytes:
    return (b'<CreateBucketConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
            b"<LocationConstraint>" + location.encode() + b"</LocationConstraint>"
            b"</CreateBucketConfiguration>")


@pytest.mark.parametrize(("signed_body", "sent_body"), [
    pytest.param(location_config("us-east-2"), location_config("memloc"), id="other-location"),
    pytest.param(b"", location_config("memloc"), id="empty-signed"),
])
def test_create_bucket_body_substituted(gateway: Gateway, s3: Any, signed_body: bytes,
                                        sent_body: bytes) -> None:
    name = f"subst-{uuid.uuid4().hex[:12]}"
    assert_sha_mismatch(substituted(gateway, "PUT", f"/{name}", signed_body, sent_body))
    with pytest.raises(ClientError) as exc:
        s3.head_bucket(Bucket=name)
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    # The honest request creates it where it asked.
    response = substituted(gateway, "PUT", f"/{name}", signed_body, signed_body)
    assert response.status_code == 200, response.text


def versioning(status: str) -> bytes:
    return (b'<VersioningConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
            b"<Status>" + status.encode() + b"</Status></VersioningConfiguration>")


def test_put_versioning_body_substituted(gateway: Gateway, s3: Any, bucket: str) -> None:
    response = substituted(gateway, "PUT", f"/{bucket}?versioning", versioning("Suspended"),
                           versioning("Enabled"))
    assert_sha_mismatch(response)
    assert "Status" not in s3.get_bucket_versioning(Bucket=bucket)
    assert substituted(gateway, "PUT", f"/{bucket}?versioning", versioning("Enabled"),
                       versioning("Enabled")).status_code == 200
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"


def _md5(body: bytes) -> str:
    return base64.b64encode(hashlib.md5(body).digest()).decode()


def test_other_small_bodies_substituted(gateway: Gateway, s3: Any, bucket: str) -> None:
    # Every XML/JSON body goes through the same check; the state stays as it was.
    s3.put_object(Bucket=bucket, Key="keep", Body=b"k")
    tagging = (b"<Tagging><TagSet><Tag><Key>a</Key><Value>%s</Value></Tag></TagSet></Tagging>")
    cors = (b"<CORSConfiguration><CORSRule><AllowedOrigin>%s</AllowedOrigin>"
            b"<AllowedMethod>GET</AllowedMethod></CORSRule></CORSConfiguration>")
    grant_policy = json.dumps({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
        "Resource": f"arn:aws:s3:::{bucket}/*"}]}).encode()
    deny_policy = grant_policy.replace(b'"Allow"', b'"Deny"')
    acl_body = ('<AccessControlPolicy><Owner><ID>{owner}</ID></Owner><AccessControlList>'
                '<Grant><Grantee xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
                'xsi:type="Group"><URI>http://acs.amazonaws.com/groups/global/AllUsers</URI>'
                '</Grantee><Permission>{perm}</Permission></Grant></AccessControlList>'
                '</AccessControlPolicy>')
    owner = s3.get_bucket_acl(Bucket=bucket)["Owner"]["ID"]
    delete = b"<Delete><Object><Key>%s</Key></Object></Delete>"
    cases = [
        ("PUT", f"/{bucket}?tagging", tagging % b"one", tagging % b"two"),
        ("PUT", f"/{bucket}/keep?tagging", tagging % b"one", tagging % b"two"),
        ("PUT", f"/{bucket}?cors", cors % b"https://a.example", cors % b"*"),
        ("PUT", f"/{bucket}?policy", deny_policy, grant_policy),
        ("PUT", f"/{bucket}?acl", acl_body.format(owner=owner, perm="WRITE_ACP").encode(),
         acl_body.format(owner=owner, perm="READ").encode()),
        ("PUT", f"/{bucket}?accelerate",
         b"<AccelerateConfiguration><Status>Suspended</Status></AccelerateConfiguration>",
         b"<AccelerateConfiguration><Status>Enabled</Status></AccelerateConfiguration>"),
        ("POST", f"/{bucket}?delete", delete % b"other", delete % b"keep"),
    ]
    for method, path, signed_body, sent_body in cases:
        # A Content-MD5 of the sent body, so only the payload hash can catch the swap.
        response = substituted(gateway, method, path, signed_body, sent_body,
                               headers={"Content-MD5": _md5(sent_body)})
        assert_sha_mismatch(response)
    with pytest.raises(ClientError) as exc:
        s3.get_bucket_tagging(Bucket=bucket)
    assert error_code(exc) == "NoSuchTagSet"
    assert s3.get_object_tagging(Bucket=bucket, Key="keep")["TagSet"] == []
    with pytest.raises(ClientError) as exc:
        s3.get_bucket_cors(Bucket=bucket)
    assert error_code(exc) == "NoSuchCORSConfiguration"
    with pytest.raises(ClientError) as exc:
        s3.get_bucket_policy(Bucket=bucket)
    assert error_code(exc) == "NoSuchBucketPolicy"
    assert [g["Permission"] for g in s3.get_bucket_acl(Bucket=bucket)["Grants"]] == ["FULL_CONTROL"]
    assert s3.get_object(Bucket=bucket, Key="keep")["Body"].read() == b"k"
    assert anonymous_get(gateway, f"/{bucket}/keep") == 403


# --- 4. IPv4 clients of a dual-stack listener ---------------------------------------------------

DUAL_STACK_SERVER = """
import asyncio, os, socket, sys
from aiohttp import web
from gateway.config import load_settings
from gateway.server import Gateway

async def main() -> None:
    sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)  # IPv4 too, as ::ffff:a.b.c.d
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("::", int(sys.argv[1])))
    gateway = Gateway(load_settings(os.environ))
    await gateway.start()
    runner = web.AppRunner(gateway.app(), access_log=None)
    await runner.setup()
    await web.SockSite(runner, sock).start()
    await asyncio.Event().wait()

asyncio.run(main())
"""


@pytest.fixture(scope="module")
def dual_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """The gateway app served on one dual-stack socket: IPv4 clients arrive IPv4-mapped."""
    workdir: Path = tmp_path_factory.mktemp("dualstack")
    port = free_port()
    env = write_config(workdir, port, None, None)
    log_path = workdir / "gateway.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-c", DUAL_STACK_SERVER, str(port)], cwd=REPO,
                                env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for_port(port, 20, proc)
        yield Gateway(endpoint=f"http://127.0.0.1:{port}", port=port, workdir=workdir, env=env,
                      process=proc, log_path=log_path)
    finally:
        stop_process(proc)


def test_source_ip_deny_applies_to_ipv4_mapped_clients(dual_stack: Gateway) -> None:
    s3 = dual_stack.client()
    bucket = new_bucket(s3, "srcip")
    s3.put_object(Bucket=bucket, Key="k", Body=b"v")
    # Denying another network changes nothing...
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps({"Version": "2012-10-17", "Statement": [{
        "Effect": "Deny", "Principal": "*", "Action": "s3:GetObject",
        "Resource": f"arn:aws:s3:::{bucket}/*",
        "Condition": {"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}}}]}))
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"v"
    # ...denying 127.0.0.0/8 denies this IPv4 client, though the socket says ::ffff:127.0.0.1.
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps({"Version": "2012-10-17", "Statement": [{
        "Effect": "Deny", "Principal": "*", "Action": "s3:GetObject",
        "Resource": f"arn:aws:s3:::{bucket}/*",
        "Condition": {"IpAddress": {"aws:SourceIp": ["127.0.0.0/8"]}}}]}))
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=bucket, Key="k")
    assert error_code(exc) == "AccessDenied"
    # And NotIpAddress: a Deny for everyone outside 127.0.0.0/8 lets this client in.
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps({"Version": "2012-10-17", "Statement": [{
        "Effect": "Deny", "Principal": "*", "Action": "s3:GetObject",
        "Resource": f"arn:aws:s3:::{bucket}/*",
        "Condition": {"NotIpAddress": {"aws:SourceIp": "127.0.0.0/8"}}}]}))
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"v"


# --- 5. absurd dates and expiries: AWS's errors, never a 500 ------------------------------------

ABSURD_DATE = "Fri, 31 Dec 9999 23:59:59 -2359"


def test_sigv2_absurd_date(gateway: Gateway) -> None:
    request = AWSRequest(method="GET", url=gateway.endpoint + "/")
    HmacV1Auth(CREDS).add_auth(request)
    headers = {**dict(request.headers.items()), "Date": ABSURD_DATE}
    response = requests.get(gateway.endpoint + "/", headers=headers, timeout=10)
    assert response.status_code == 403
    fields = error_of(response)
    assert fields["Code"] == "RequestTimeTooSkewed" and fields["RequestTime"] == ABSURD_DATE


@pytest.mark.parametrize("date", [ABSURD_DATE, "Mon, 01 Jan 100000000000000000000 00:00:00 GMT",
                                  "Sat, 01 Jan 0000 00:00:00 GMT"])
def test_sigv4_absurd_date_header(gateway: Gateway, date: str) -> None:
    headers = signed_headers("GET", gateway.endpoint + "/")
    del headers["X-Amz-Date"]
    headers["Date"] = date
    response = requests.get(gateway.endpoint + "/", headers=headers, timeout=10)
    # ("0000" reads as 2000, as RFC 2822 two-digit years do: then the scope's date differs.)
    assert (response.status_code, error_of(response)["Code"]) in (
        (403, "RequestTimeTooSkewed"), (403, "AccessDenied"), (400, "AuthorizationHeaderMalformed"))


@pytest.mark.parametrize("stamp", ["99991231T235959Z", "00010101T000000Z", "00000101T000000Z"])
def test_sigv4_absurd_x_amz_date(gateway: Gateway, stamp: str) -> None:
    headers = signed_headers("GET", gateway.endpoint + "/")
    headers["X-Amz-Date"] = stamp
    headers["Authorization"] = headers["Authorization"].replace(
        f"/{datetime.now(UTC):%Y%m%d}/", f"/{stamp[:8]}/")
    response = requests.get(gateway.endpoint + "/", headers=headers, timeout=10)
    assert response.status_code == 403
    assert error_of(response)["Code"] in ("RequestTimeTooSkewed", "AccessDenied")


@pytest.mark.parametrize(("expires", "status", "code"), [
    ("0", 403, "AccessDenied"),
    ("604801", 400, "AuthorizationQueryParametersError"),
    pytest.param("9" * 5000, 400, "AuthorizationQueryParametersError", id="5000-digits"),
    ("-1", 400, "AuthorizationQueryParametersError"),
    ("%C2%B2", 400, "AuthorizationQueryParametersError"),
])
def test_presigned_expires_out_of_range(gateway: Gateway, s3: Any, bucket: str, expires: str,
                                        status: int, code: str) -> None:
    url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "x"},
                                    ExpiresIn=60)
    assert "X-Amz-Expires=60" in url
    response = requests.get(url.replace("X-Amz-Expires=60", f"X-Amz-Expires={expires}"),
                            timeout=10)
    assert response.status_code == status
    assert error_of(response)["Code"] == code


@pytest.mark.parametrize(("expires", "status", "code"), [
    pytest.param("9" * 5000, 403, "AccessDenied", id="5000-digits"),
    ("99999999999999999999", 403, "AccessDenied"),
    ("1", 403, "AccessDenied"),
    ("%C2%B2", 400, "MissingSecurityHeader"),
])
def test_sigv2_query_expires_out_of_range(gateway: Gateway, bucket: str, expires: str,
                                          status: int, code: str) -> None:
    v2 = gateway.client(signature_version="s3")
    url = v2.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "x"})
    assert "Expires=" in url and "Signature=" in url
    response = requests.get(re.sub(r"Expires=\d+", f"Expires={expires}", url), timeout=10)
    assert response.status_code == status
    assert error_of(response)["Code"] == code



def test_complete_multipart_body_substituted(gateway: Gateway, s3: Any, bucket: str) -> None:
    """A CompleteMultipartUpload whose part list was swapped after signing completes nothing."""
    upload = s3.create_multipart_upload(Bucket=bucket, Key="mp")["UploadId"]
    etags = [s3.upload_part(Bucket=bucket, Key="mp", UploadId=upload, PartNumber=n,
                            Body=bytes([n]) * (5 * 1024 * 1024 if n == 1 else 10))["ETag"]
             for n in (1, 2)]

    def part_list(*numbers: int) -> bytes:
        parts = "".join(f"<Part><PartNumber>{n}</PartNumber><ETag>{etags[n - 1]}</ETag></Part>"
                        for n in numbers)
        return f"<CompleteMultipartUpload>{parts}</CompleteMultipartUpload>".encode()

    path = f"/{bucket}/mp?uploadId={upload}"
    assert_sha_mismatch(substituted(gateway, "POST", path, part_list(1, 2), part_list(1)))
    assert [p["PartNumber"] for p in s3.list_parts(Bucket=bucket, Key="mp",
                                                   UploadId=upload)["Parts"]] == [1, 2]
    with pytest.raises(ClientError):
        s3.head_object(Bucket=bucket, Key="mp")
    response = substituted(gateway, "POST", path, part_list(1, 2), part_list(1, 2))
    assert response.status_code == 200, response.text
    assert s3.head_object(Bucket=bucket, Key="mp")["ContentLength"] == 5 * 1024 * 1024 + 10
