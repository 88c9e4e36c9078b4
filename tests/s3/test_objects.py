"""PutObject, GetObject, HeadObject, DeleteObject through boto3 and raw HTTP."""

from __future__ import annotations

import base64
import hashlib
import socket
import threading
import time
from email.utils import formatdate
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.s3.conftest import error_code, raw_request, status


def data_files(gateway: Any) -> list[Path]:
    """The file location's data once the collector is done (removal is in the background)."""
    gateway.settle()
    return gateway.data_files()


def test_put_get_roundtrip_with_headers_and_metadata(s3: Any, bucket: str) -> None:
    body = b"hello gateway" * 100
    put = s3.put_object(Bucket=bucket, Key="dir/obj.txt", Body=body, ContentType="text/plain",
                        CacheControl="max-age=60", ContentDisposition="attachment",
                        ContentEncoding="identity", Expires=time.time() + 3600,
                        Metadata={"color": "blue", "Mixed-Case": "v"}, Tagging="a=1&b=2")
    assert put["ETag"] == f'"{hashlib.md5(body).hexdigest()}"'
    got = s3.get_object(Bucket=bucket, Key="dir/obj.txt")
    assert got["Body"].read() == body
    assert got["ContentType"] == "text/plain"
    assert got["CacheControl"] == "max-age=60"
    assert got["ContentDisposition"] == "attachment"
    assert got["ContentEncoding"] == "identity"
    assert "Expires" in got or "ExpiresString" in got
    assert got["Metadata"] == {"color": "blue", "mixed-case": "v"}
    assert got["TagCount"] == 2
    assert got["ContentLength"] == len(body)
    head = s3.head_object(Bucket=bucket, Key="dir/obj.txt")
    assert head["ContentLength"] == len(body) and head["ETag"] == put["ETag"]


def test_default_content_type_and_empty_object(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="empty", Body=b"")
    got = s3.get_object(Bucket=bucket, Key="empty")
    assert got["Body"].read() == b""
    assert got["ContentType"] == "binary/octet-stream"
    assert got["ETag"] == '"d41d8cd98f00b204e9800998ecf8427e"'


def test_overwrite_keeps_latest_and_removes_old_data(gateway: Any, s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"first")
    before = len(data_files(gateway))
    s3.put_object(Bucket=bucket, Key="k", Body=b"second")
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"second"
    assert len(data_files(gateway)) == before  # the replaced bytes are gone
    s3.delete_object(Bucket=bucket, Key="k")
    assert len(data_files(gateway)) == before - 1


def test_delete_missing_is_204(s3: Any, bucket: str) -> None:
    response = s3.delete_object(Bucket=bucket, Key="never-there")
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 204


def test_get_missing(s3: Any, bucket: str) -> None:
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=bucket, Key="nope")
    assert error_code(exc) == "NoSuchKey" and status(exc) == 404
    with pytest.raises(ClientError) as exc:
        s3.head_object(Bucket=bucket, Key="nope")
    assert status(exc) == 404


def test_content_md5(s3: Any, bucket: str) -> None:
    body = b"checked"
    good = base64.b64encode(hashlib.md5(body).digest()).decode()
    s3.put_object(Bucket=bucket, Key="md5", Body=body, ContentMD5=good)
    wrong = base64.b64encode(hashlib.md5(b"other").digest()).decode()
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=bucket, Key="bad", Body=body, ContentMD5=wrong)
    assert error_code(exc) == "BadDigest"
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=bucket, Key="bad", Body=body, ContentMD5="not-base64!")
    assert error_code(exc) == "InvalidDigest"
    with pytest.raises(ClientError):
        s3.head_object(Bucket=bucket, Key="bad")  # nothing visible after a failed put


def test_bad_digest_leaves_no_data(gateway: Any, s3: Any, bucket: str) -> None:
    before = len(data_files(gateway))
    wrong = base64.b64encode(hashlib.md5(b"other").digest()).decode()
    with pytest.raises(ClientError):
        s3.put_object(Bucket=bucket, Key="bad", Body=b"x" * 3_000_000, ContentMD5=wrong)
    assert len(data_files(gateway)) == before


def test_limits(s3: Any, bucket: str) -> None:
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=bucket, Key="k" * 1025, Body=b"x")
    assert error_code(exc) == "KeyTooLongError"
    s3.put_object(Bucket=bucket, Key="k" * 1024, Body=b"x")
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=bucket, Key="meta", Body=b"x", Metadata={"big": "v" * 2100})
    assert error_code(exc) == "MetadataTooLarge"
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=bucket, Key="tags", Body=b"x",
                      Tagging="&".join(f"k{i}=v" for i in range(11)))
    assert error_code(exc) == "InvalidTag"


@pytest.mark.parametrize(("header", "expected", "content_range"), [
    ("bytes=0-4", b"01234", "bytes 0-4/10"),
    ("bytes=7-", b"789", "bytes 7-9/10"),
    ("bytes=-3", b"789", "bytes 7-9/10"),
    ("bytes=8-100", b"89", "bytes 8-9/10"),
    ("bytes=-20", b"0123456789", "bytes 0-9/10"),
])
def test_ranges(s3: Any, bucket: str, header: str, expected: bytes, content_range: str) -> None:
    s3.put_object(Bucket=bucket, Key="digits", Body=b"0123456789")
    got = s3.get_object(Bucket=bucket, Key="digits", Range=header)
    assert got["Body"].read() == expected
    assert got["ResponseMetadata"]["HTTPStatusCode"] == 206
    assert got["ContentRange"] == content_range


def test_unsatisfiable_and_ignored_ranges(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="digits", Body=b"0123456789")
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=bucket, Key="digits", Range="bytes=10-20")
    assert error_code(exc) == "InvalidRange" and status(exc) == 416
    got = s3.get_object(Bucket=bucket, Key="digits", Range="bytes=5-2")  # invalid: ignored
    assert got["ResponseMetadata"]["HTTPStatusCode"] == 200 and got["Body"].read() == b"0123456789"


def test_conditional_requests(s3: Any, bucket: str) -> None:
    etag = s3.put_object(Bucket=bucket, Key="c", Body=b"data")["ETag"]
    assert s3.get_object(Bucket=bucket, Key="c", IfMatch=etag)["Body"].read() == b"data"
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=bucket, Key="c", IfMatch='"0000"')
    assert status(exc) == 412
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=bucket, Key="c", IfNoneMatch=etag)
    assert status(exc) == 304
    past, future = time.time() - 86400, time.time() + 86400
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=bucket, Key="c", IfModifiedSince=future)
    assert status(exc) == 304
    assert s3.get_object(Bucket=bucket, Key="c", IfModifiedSince=past)["Body"].read() == b"data"
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=bucket, Key="c", IfUnmodifiedSince=past)
    assert status(exc) == 412
    # If-Match that holds wins over a failing If-Unmodified-Since (AWS's precedence).
    assert s3.get_object(Bucket=bucket, Key="c", IfMatch=etag,
                         IfUnmodifiedSince=past)["Body"].read() == b"data"
    with pytest.raises(ClientError) as exc:
        s3.head_object(Bucket=bucket, Key="c", IfNoneMatch=etag)
    assert status(exc) == 304


def test_response_overrides(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="o", Body=b"x", ContentType="text/plain")
    got = s3.get_object(Bucket=bucket, Key="o", ResponseContentType="image/png",
                        ResponseContentDisposition="inline; filename=x.png",
                        ResponseCacheControl="no-cache")
    assert got["ContentType"] == "image/png"
    assert got["ContentDisposition"] == "inline; filename=x.png"
    assert got["CacheControl"] == "no-cache"


def test_location_header_places_object(gateway: Any, s3: Any, bucket: str) -> None:
    before = len(data_files(gateway))
    s3.put_object(Bucket=bucket, Key="inmem", Body=b"volatile",
                  Metadata={"scal-location-constraint": "memloc"})
    assert len(data_files(gateway)) == before  # went to the mem location, not to disk
    assert s3.get_object(Bucket=bucket, Key="inmem")["Body"].read() == b"volatile"
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=bucket, Key="x", Body=b"x",
                      Metadata={"scal-location-constraint": "nowhere"})
    assert error_code(exc) == "InvalidArgument"
    assert "nowhere" in exc.value.response["Error"]["Message"]


def test_bucket_location_places_object(gateway: Any, s3: Any) -> None:
    name = f"memb-{time.time_ns()}"
    s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": "memloc"})
    before = len(data_files(gateway))
    s3.put_object(Bucket=name, Key="k", Body=b"in memory")
    assert len(data_files(gateway)) == before
    assert s3.get_object(Bucket=name, Key="k")["Body"].read() == b"in memory"


def test_keys_with_odd_characters(s3: Any, bucket: str) -> None:
    keys = ["a b/c+d", "ünï/cødé", "../../etc/passwd", "x?y=z&w", "100%", "tab\there", "/lead"]
    for key in keys:
        s3.put_object(Bucket=bucket, Key=key, Body=key.encode())
    for key in keys:
        assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == key.encode()
    listed = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]]
    assert sorted(keys, key=lambda k: k.encode()) == listed


def test_concurrent_puts_one_wins_whole(s3: Any, bucket: str) -> None:
    bodies = [bytes([65 + i]) * 2_000_000 for i in range(6)]
    threads = [threading.Thread(target=s3.put_object,
                                kwargs={"Bucket": bucket, "Key": "race", "Body": b})
               for b in bodies]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    got = s3.get_object(Bucket=bucket, Key="race")
    data = got["Body"].read()
    assert data in bodies
    assert got["ETag"] == f'"{hashlib.md5(data).hexdigest()}"'


def test_cut_off_upload_leaves_nothing(gateway: Any, s3: Any, bucket: str) -> None:
    before = len(data_files(gateway))
    with socket.create_connection(("127.0.0.1", gateway.port)) as sock:
        # Anonymous requests are refused before the body is read, so sign it.
        from botocore.auth import S3SigV4Auth
        from botocore.awsrequest import AWSRequest
        from botocore.credentials import Credentials
        request = AWSRequest(method="PUT", url=f"{gateway.endpoint}/{bucket}/cut",
                             headers={"x-amz-content-sha256": "UNSIGNED-PAYLOAD",
                                      "Content-Length": str(10_000_000)})
        S3SigV4Auth(Credentials("accessKey1", "verySecretKey1"), "s3", "us-east-1").add_auth(request)
        head = f"PUT /{bucket}/cut HTTP/1.1\r\nHost: 127.0.0.1:{gateway.port}\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in request.headers.items() if k != "Host")
        sock.sendall(head.encode() + b"\r\n" + b"z" * 3_000_000)
        time.sleep(0.3)
    time.sleep(0.5)
    with pytest.raises(ClientError):
        s3.head_object(Bucket=bucket, Key="cut")
    assert len(data_files(gateway)) == before
    assert not [p for p in (gateway.workdir / "data").rglob("*.tmp")]


def test_unsigned_payload_and_sha256_mismatch(gateway: Any, s3: Any, bucket: str) -> None:
    ok = raw_request(gateway, "PUT", f"/{bucket}/raw", body=b"payload",
                     headers={"x-amz-content-sha256": "UNSIGNED-PAYLOAD"})
    assert ok.status_code == 200
    bad = raw_request(gateway, "PUT", f"/{bucket}/raw2", body=b"payload",
                      headers={"x-amz-content-sha256": hashlib.sha256(b"other").hexdigest()})
    assert bad.status_code == 400
    assert b"XAmzContentSHA256Mismatch" in bad.content
    with pytest.raises(ClientError):
        s3.head_object(Bucket=bucket, Key="raw2")


def test_http_date_headers(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="d", Body=b"x")
    head = s3.head_object(Bucket=bucket, Key="d")
    assert abs(head["LastModified"].timestamp() - time.time()) < 60
    assert formatdate(usegmt=True)[:3] in {"Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"}
