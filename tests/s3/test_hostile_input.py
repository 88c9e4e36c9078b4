"""Hostile input: bytes no client library sends (invalid UTF-8, control characters, absurd
numbers, deep nesting, oversized forms and bodies). Every one answers S3's XML error with the
right 4xx and a request id, never a 500, a traceback or a dropped connection, and changes
nothing. Requests go over raw sockets where a client library would clean the bytes up."""

from __future__ import annotations

import base64
import json
import socket
import time
import uuid
from collections.abc import Iterator
from typing import Any
from xml.etree import ElementTree

import pytest
import requests
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from tests.gatewayproc import ACCESS_KEY, SECRET_KEY, Gateway
from tests.s3.conftest import error_code, raw_request

# --- raw HTTP ------------------------------------------------------------------------------

def signed_headers(gateway: Gateway, method: str, path: str,
                   headers: dict[str, str] | None = None) -> dict[str, str]:
    """SigV4 headers for `path` (already percent-encoded), body unsigned."""
    request = AWSRequest(method=method, url=gateway.endpoint + path, headers=headers or {})
    signer = S3SigV4Auth(Credentials(ACCESS_KEY, SECRET_KEY), "s3", "us-east-1")
    signer.payload = lambda _request: "UNSIGNED-PAYLOAD"  # type: ignore[method-assign]
    signer.add_auth(request)
    return {**dict(request.headers.items()), "Host": f"127.0.0.1:{gateway.port}"}


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One HTTP response (Content-Length framed) from `sock`."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed without an answer: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, "connection closed mid-answer"
        body += chunk
    return int(lines[0].split()[1]), headers, body


def send_raw(gateway: Gateway, method: str, path: str, *, extra: bytes = b"",
             body: bytes = b"", sign: bool = True,
             headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    """A request whose path and `extra` header lines go on the wire byte for byte."""
    all_headers = (signed_headers(gateway, method, path, headers) if sign
                   else {"Host": f"127.0.0.1:{gateway.port}", **(headers or {})})
    wire = (f"{method} {path} HTTP/1.1\r\n".encode()
            + b"".join(f"{k}: {v}\r\n".encode() for k, v in all_headers.items())
            + extra + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=30) as sock:
        sock.sendall(wire)
        return read_response(sock)


def s3_error(status: int, headers: dict[str, str], body: bytes) -> str:
    """The error code of an S3 XML error answer, checked for a request id and well-formed XML."""
    assert headers.get("content-type") == "application/xml", (status, body)
    doc = ElementTree.fromstring(body)  # raises on anything a client could not parse
    rid = headers["x-amz-request-id"]
    assert doc.tag == "Error" and doc.findtext("RequestId") == rid
    assert b"Traceback" not in body
    return doc.findtext("Code") or ""


def log_since(gateway: Gateway, mark: int, wanted: str | None = None) -> str:
    """The gateway's log written after `mark` (its length before), waiting for `wanted`."""
    deadline = time.monotonic() + 5
    while True:
        text = gateway.log()[mark:]
        if wanted is None or wanted in text or time.monotonic() > deadline:
            return text
        time.sleep(0.05)


def keys(s3: Any, bucket: str) -> list[str]:
    return [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]


# --- keys ------------------------------------------------------------------------------------

def test_invalid_utf8_in_key_is_invalid_uri(gateway: Gateway, s3: Any, bucket: str) -> None:
    for path in (f"/{bucket}/k%FF", f"/{bucket}/k%FE", f"/{bucket}/k%C3"):
        status, headers, body = send_raw(gateway, "PUT", path, body=b"x")
        assert status == 400 and s3_error(status, headers, body) == "InvalidURI"
    status, headers, body = send_raw(gateway, "GET", f"/{bucket}/k%FF")
    assert status == 400 and s3_error(status, headers, body) == "InvalidURI"
    # Raw (unescaped) bytes that are not UTF-8 in the path or the query as well.
    status, headers, body = send_raw(gateway, "GET", f"/{bucket}?prefix=%FF")
    assert status == 400 and s3_error(status, headers, body) == "InvalidURI"
    assert keys(s3, bucket) == []  # nothing stored under a replaced key


def test_key_with_newline_round_trips(gateway: Gateway, s3: Any, bucket: str) -> None:
    key = "line1\nline2\r\tend"
    s3.put_object(Bucket=bucket, Key=key, Body=b"multi-line key")
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == b"multi-line key"
    assert s3.head_object(Bucket=bucket, Key=key)["ContentLength"] == 14
    assert keys(s3, bucket) == [key]
    listed = s3.list_objects_v2(Bucket=bucket, EncodingType="url")["Contents"]
    assert [o["Key"] for o in listed] == ["line1%0Aline2%0D%09end"]
    missing = raw_request(gateway, "GET", f"/{bucket}/other%0Akey")
    assert missing.status_code == 404 and b"<Code>NoSuchKey</Code>" in missing.content
    s3.delete_object(Bucket=bucket, Key=key)
    assert keys(s3, bucket) == []


# --- headers -----------------------------------------------------------------------------------

def test_non_utf8_metadata_header_is_refused(gateway: Gateway, s3: Any, bucket: str) -> None:
    status, headers, body = send_raw(gateway, "PUT", f"/{bucket}/meta", body=b"x",
                                     extra=b"x-amz-meta-color: \xff\xfered\r\n")
    assert status == 400 and s3_error(status, headers, body) == "InvalidArgument"
    assert b"<ArgumentName>x-amz-meta-color</ArgumentName>" in body
    assert keys(s3, bucket) == []
    # Valid UTF-8 beyond ASCII is kept, as before.
    # (signed: every x-amz-* header must be, see test_auth_hardening.py)
    status, _, _ = send_raw(gateway, "PUT", f"/{bucket}/meta", body=b"x",
                            headers={"x-amz-meta-color": "rouge é"})
    assert status == 200
    assert s3.head_object(Bucket=bucket, Key="meta")["ResponseMetadata"]["HTTPHeaders"][
        "x-amz-meta-color"].encode("latin-1") == "rouge é".encode()


def test_non_utf8_copy_source_is_refused(gateway: Gateway, s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="src", Body=b"source")
    status, headers, body = send_raw(gateway, "PUT", f"/{bucket}/copy",
                                     extra=f"x-amz-copy-source: /{bucket}/".encode()
                                     + b"\xff\xfe\r\n")
    assert status == 400 and s3_error(status, headers, body) == "InvalidArgument"
    assert keys(s3, bucket) == ["src"]


def test_unexpected_failure_is_xml_500_without_traceback(gateway: Gateway) -> None:
    """A date past year 9999 once crashed authentication. Whatever auth answers now, the front
    answers XML with a request id, and the log gets no traceback."""
    mark = len(gateway.log())
    status, headers, body = send_raw(
        gateway, "GET", "/", sign=False,
        extra=b"Authorization: AWS accessKey1:c2lnbmF0dXJl\r\n"
              b"Date: Fri, 31 Dec 9999 23:59:59 -2359\r\n")
    assert status in (400, 403, 500)
    code = s3_error(status, headers, body)
    assert code == "InternalError" if status == 500 else code != "InternalError"
    logged = log_since(gateway, mark, headers["x-amz-request-id"])
    assert headers["x-amz-request-id"] in logged and "Traceback" not in logged


# --- query arguments ---------------------------------------------------------------------------

def test_list_parts_arguments_are_bounded(gateway: Gateway, s3: Any, bucket: str) -> None:
    upload = s3.create_multipart_upload(Bucket=bucket, Key="mp")["UploadId"]
    base = f"/{bucket}/mp?uploadId={upload}"
    for argument in ("part-number-marker=99999999999999999999", "part-number-marker=-1",
                     "part-number-marker=1e3", "max-parts=-1", "max-parts=2147483648",
                     "max-parts=abc"):
        status, headers, body = send_raw(gateway, "GET", f"{base}&{argument}")
        assert status == 400 and s3_error(status, headers, body) == "InvalidArgument", argument
        assert f"<ArgumentName>{argument.split('=')[0]}</ArgumentName>".encode() in body
    capped = s3.list_parts(Bucket=bucket, Key="mp", UploadId=upload, MaxParts=5000,
                           PartNumberMarker=2147483647)
    assert capped["MaxParts"] == 1000 and capped.get("Parts", []) == []


def test_list_uploads_max_uploads_is_bounded(gateway: Gateway, s3: Any, bucket: str) -> None:
    for n in range(3):
        s3.create_multipart_upload(Bucket=bucket, Key=f"up{n}")
    for argument in ("max-uploads=-1", "max-uploads=99999999999", "max-uploads=x"):
        status, headers, body = send_raw(gateway, "GET", f"/{bucket}?uploads&{argument}")
        assert status == 400 and s3_error(status, headers, body) == "InvalidArgument", argument
    page = s3.list_multipart_uploads(Bucket=bucket, MaxUploads=2)
    assert len(page["Uploads"]) == 2 and page["IsTruncated"] is True
    assert s3.list_multipart_uploads(Bucket=bucket, MaxUploads=5000)["MaxUploads"] == 1000


def test_control_characters_in_response_overrides(gateway: Gateway, s3: Any,
                                                  bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="obj", Body=b"body")
    for override in ("response-content-type=text%2Fplain%0D%0AX-Injected%3A%201",
                     "response-content-disposition=a%00b", "response-cache-control=a%0Ab",
                     "response-expires=%01"):
        status, headers, body = send_raw(gateway, "GET", f"/{bucket}/obj?{override}")
        assert status == 400 and s3_error(status, headers, body) == "InvalidArgument", override
        assert "x-injected" not in headers
    fine = s3.get_object(Bucket=bucket, Key="obj", ResponseContentType="text/x-fine")
    assert fine["ContentType"] == "text/x-fine"


def test_error_echo_of_unrepresentable_characters(gateway: Gateway) -> None:
    """An error that echoes request bytes XML cannot hold still renders well-formed XML."""
    status, headers, body = send_raw(gateway, "GET", "/", sign=False,
                                     extra=b"x-amz-meta-a: \x80\x81\r\n")
    assert status == 400 and s3_error(status, headers, body) == "InvalidArgument"
    status, headers, body = send_raw(gateway, "GET", "/?response-expires=%01%02")
    assert status == 400 and s3_error(status, headers, body) == "InvalidArgument"


# --- bodies ----------------------------------------------------------------------------------

def test_deeply_nested_bucket_policy(gateway: Gateway, s3: Any, bucket: str) -> None:
    nested = "[" * 5000 + "]" * 5000  # well under AWS's 20 KB, past Python's recursion limit
    text = '{"Version": "2012-10-17", "Statement": ' + nested + "}"
    with pytest.raises(ClientError) as exc:
        s3.put_bucket_policy(Bucket=bucket, Policy=text)
    assert error_code(exc) == "MalformedPolicy"
    with pytest.raises(ClientError) as exc:
        s3.get_bucket_policy(Bucket=bucket)
    assert error_code(exc) == "NoSuchBucketPolicy"


def test_oversized_complete_multipart_body_is_xml(gateway: Gateway, s3: Any,
                                                  bucket: str) -> None:
    upload = s3.create_multipart_upload(Bucket=bucket, Key="big-complete")["UploadId"]
    for size in (int(1.5 * 1024 * 1024), 3 * 1024 * 1024):
        body = (b"<CompleteMultipartUpload>" + b" " * size + b"</CompleteMultipartUpload>")
        status, headers, answer = send_raw(gateway, "POST",
                                           f"/{bucket}/big-complete?uploadId={upload}",
                                           body=body)
        assert status == 400 and s3_error(status, headers, answer) == "MalformedXML", size
    assert [u["UploadId"] for u in s3.list_multipart_uploads(Bucket=bucket)["Uploads"]] == \
        [upload]  # the upload is still open, untouched


# --- POST Object forms -----------------------------------------------------------------------

def form_parts(fields: list[tuple[bytes, bytes]]) -> Iterator[bytes]:
    for name, value in fields:
        yield (b"--bnd\r\nContent-Disposition: form-data; name=\"" + name + b"\"\r\n\r\n"
               + value + b"\r\n")


def post_form(gateway: Gateway, bucket: str, parts: Iterator[bytes] | list[bytes],
              length: int) -> tuple[int, dict[str, str], bytes]:
    """POST a multipart form of `length` bytes, streamed from `parts`, file part last."""
    tail = (b"--bnd\r\nContent-Disposition: form-data; name=\"file\"; filename=\"f\"\r\n\r\n"
            b"data\r\n--bnd--\r\n")
    head = (f"POST /{bucket} HTTP/1.1\r\nHost: 127.0.0.1:{gateway.port}\r\n"
            "Content-Type: multipart/form-data; boundary=bnd\r\n"
            f"Content-Length: {length + len(tail)}\r\n\r\n").encode()
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=60) as sock:
        sock.sendall(head)
        try:
            for part in parts:
                sock.sendall(part)
            sock.sendall(tail)
        except OSError:
            pass  # the gateway answered and stopped reading: the answer is what counts
        return read_response(sock)


def vm_rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_post_form_field_names_are_bounded(gateway: Gateway, s3: Any) -> None:
    bucket = f"test-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket, ACL="public-read-write")  # anonymous forms welcome
    assert gateway.process is not None
    before = vm_rss_kib(gateway.process.pid)
    # One huge name, then many long names with empty values: ~48 MB of names in all.
    huge = [b"--bnd\r\nContent-Disposition: form-data; name=\"" + b"n" * 1_000_000
            + b"\"\r\n\r\nv\r\n"]
    status, headers, body = post_form(gateway, bucket, huge, len(huge[0]))
    assert status == 400 and s3_error(status, headers, body) == "MaxPostPreDataLengthExceeded"
    many = [(b"%d" % i + b"n" * 8000, b"") for i in range(6000)]
    length = sum(len(p) for p in form_parts(many))
    status, headers, body = post_form(gateway, bucket, form_parts(many), length)
    assert status == 400 and s3_error(status, headers, body) == "MaxPostPreDataLengthExceeded"
    assert b"<MaxPostPreDataLengthBytes>20480</MaxPostPreDataLengthBytes>" in body
    grown = vm_rss_kib(gateway.process.pid) - before
    assert grown < 8 * 1024, f"RSS grew by {grown} KiB"
    assert keys(s3, bucket) == []
    # An ordinary form still goes through.
    ok = requests.post(f"{gateway.endpoint}/{bucket}", data={"key": "fine"},
                       files={"file": ("f", b"fine")}, timeout=30)
    assert ok.status_code == 204 and keys(s3, bucket) == ["fine"]


def test_post_to_missing_bucket_answers_before_reading(gateway: Gateway) -> None:
    # The form is garbage: only a check made before reading it can answer NoSuchBucket.
    parts = [b"--bnd\r\nnot a header line at all\r\n\r\n"]
    status, headers, body = post_form(gateway, f"missing-{uuid.uuid4().hex[:8]}", parts,
                                      len(parts[0]))
    assert status == 404 and s3_error(status, headers, body) == "NoSuchBucket"


def test_post_header_fields_without_line_breaks(gateway: Gateway, s3: Any) -> None:
    bucket = f"test-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket, ACL="public-read-write")
    for name, value in (("x-amz-meta-note", "a\r\nX-Injected: 1"),
                        ("Content-Type", "text/plain\r\nX-Injected: 1"),
                        ("success_action_redirect", "http://example.com/\r\nX-Injected: 1")):
        response = requests.post(f"{gateway.endpoint}/{bucket}",
                                 files={"key": (None, "k"), name: (None, value),
                                        "file": ("f", b"x")}, timeout=30, allow_redirects=False)
        assert response.status_code == 400, (name, response.text)
        assert ElementTree.fromstring(response.content).findtext("Code") == "InvalidArgument"
        assert "X-Injected" not in response.headers
    assert keys(s3, bucket) == []


def test_post_deeply_nested_policy(gateway: Gateway, s3: Any) -> None:
    bucket = f"test-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket, ACL="public-read-write")
    nested = '{"expiration": "2100-01-01T00:00:00Z", "conditions": ' + "[" * 3000 + \
        "]" * 3000 + "}"
    policy = base64.b64encode(nested.encode()).decode()
    assert len(policy) < 20 * 1024
    response = requests.post(f"{gateway.endpoint}/{bucket}",
                             files={"key": (None, "k"), "policy": (None, policy),
                                    "file": ("f", b"x")}, timeout=30)
    assert response.status_code == 400, response.text
    assert ElementTree.fromstring(response.content).findtext("Code") == "InvalidPolicyDocument"
    listing = json.dumps(keys(s3, bucket))
    assert listing == "[]"
