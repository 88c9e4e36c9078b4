"""Multipart upload: the whole cycle, S3's limits and errors, and no byte copied at completion."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.s3.conftest import error_code, status

MIB = 1024 * 1024


def s3_etag(parts: list[bytes]) -> str:
    digest = hashlib.md5(b"".join(hashlib.md5(p).digest() for p in parts)).hexdigest()
    return f'"{digest}-{len(parts)}"'


def upload(s3: Any, bucket: str, key: str, parts: list[bytes], **extra: Any) -> dict[str, Any]:
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key=key, **extra)["UploadId"]
    done = []
    for number, data in enumerate(parts, start=1):
        etag = s3.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number,
                              Body=data)["ETag"]
        assert etag == f'"{hashlib.md5(data).hexdigest()}"'
        done.append({"PartNumber": number, "ETag": etag})
    return s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id,
                                        MultipartUpload={"Parts": done})


def test_full_cycle_etag_ranges_and_metadata(gateway: Any, s3: Any, bucket: str) -> None:
    parts = [b"a" * (5 * MIB), b"b" * (5 * MIB), b"tail"]
    result = upload(s3, bucket, "mpu", parts, ContentType="text/x-test", Metadata={"m": "1"})
    assert result["ETag"] == s3_etag(parts)
    got = s3.get_object(Bucket=bucket, Key="mpu")
    assert got["Body"].read() == b"".join(parts)
    assert got["ETag"] == s3_etag(parts)
    assert got["ContentType"] == "text/x-test" and got["Metadata"] == {"m": "1"}
    # A range across the boundary of parts 1 and 2, and one inside the last part.
    across = s3.get_object(Bucket=bucket, Key="mpu", Range=f"bytes={5 * MIB - 3}-{5 * MIB + 2}")
    assert across["Body"].read() == b"aaabbb"
    tail = s3.get_object(Bucket=bucket, Key="mpu", Range="bytes=-4")
    assert tail["Body"].read() == b"tail"
    assert not s3.list_multipart_uploads(Bucket=bucket).get("Uploads")


def test_completion_copies_no_bytes(gateway: Any, s3: Any, bucket: str) -> None:
    data_dir = gateway.workdir / "data"
    parts = [b"x" * (5 * MIB), b"y" * 100]
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="nocopy")["UploadId"]
    etags = [s3.upload_part(Bucket=bucket, Key="nocopy", UploadId=upload_id, PartNumber=n,
                            Body=d)["ETag"] for n, d in enumerate(parts, 1)]
    gateway.settle()  # earlier tests' garbage gone: only this test's files may change
    files_before = {p: p.stat().st_ino for p in data_dir.rglob("*") if p.is_file()}
    s3.complete_multipart_upload(
        Bucket=bucket, Key="nocopy", UploadId=upload_id,
        MultipartUpload={"Parts": [{"PartNumber": n, "ETag": e} for n, e in enumerate(etags, 1)]})
    files_after = {p: p.stat().st_ino for p in data_dir.rglob("*") if p.is_file()}
    assert files_after == files_before  # the part files became the object, untouched


def test_reupload_part_and_unlisted_parts_removed(gateway: Any, s3: Any, bucket: str) -> None:
    def count() -> int:  # replaced bytes are removed by the background collector: wait for it
        gateway.settle()
        return len(gateway.data_files())

    before = count()
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="re")["UploadId"]
    s3.upload_part(Bucket=bucket, Key="re", UploadId=upload_id, PartNumber=1, Body=b"old" * 10)
    etag = s3.upload_part(Bucket=bucket, Key="re", UploadId=upload_id, PartNumber=1,
                          Body=b"new")["ETag"]
    s3.upload_part(Bucket=bucket, Key="re", UploadId=upload_id, PartNumber=2, Body=b"unlisted")
    assert count() == before + 2  # the replaced part 1 is gone already
    s3.complete_multipart_upload(Bucket=bucket, Key="re", UploadId=upload_id,
                                 MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]})
    assert s3.get_object(Bucket=bucket, Key="re")["Body"].read() == b"new"
    assert count() == before + 1


def test_list_parts_and_uploads(s3: Any, bucket: str) -> None:
    ids = [s3.create_multipart_upload(Bucket=bucket, Key=k)["UploadId"]
           for k in ("dir/one", "dir/two", "three")]
    for n in range(1, 4):
        s3.upload_part(Bucket=bucket, Key="three", UploadId=ids[2], PartNumber=n, Body=b"p" * n)
    parts = s3.list_parts(Bucket=bucket, Key="three", UploadId=ids[2], MaxParts=2)
    assert [p["PartNumber"] for p in parts["Parts"]] == [1, 2] and parts["IsTruncated"]
    more = s3.list_parts(Bucket=bucket, Key="three", UploadId=ids[2],
                         PartNumberMarker=parts["NextPartNumberMarker"])
    assert [p["Size"] for p in more["Parts"]] == [3]
    listing = s3.list_multipart_uploads(Bucket=bucket)
    assert sorted(u["Key"] for u in listing["Uploads"]) == ["dir/one", "dir/two", "three"]
    grouped = s3.list_multipart_uploads(Bucket=bucket, Delimiter="/")
    assert [p["Prefix"] for p in grouped["CommonPrefixes"]] == ["dir/"]
    assert [u["Key"] for u in grouped["Uploads"]] == ["three"]
    for key, upload_id in zip(("dir/one", "dir/two", "three"), ids, strict=True):
        s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
    assert not s3.list_multipart_uploads(Bucket=bucket).get("Uploads")


def test_abort_removes_parts(gateway: Any, s3: Any, bucket: str) -> None:
    gateway.settle()  # the collector removes an aborted upload's parts: count once it is done
    before = len(gateway.data_files())
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="ab")["UploadId"]
    s3.upload_part(Bucket=bucket, Key="ab", UploadId=upload_id, PartNumber=1, Body=b"z" * 1000)
    assert len(gateway.data_files()) == before + 1
    s3.abort_multipart_upload(Bucket=bucket, Key="ab", UploadId=upload_id)
    gateway.settle()
    assert len(gateway.data_files()) == before
    with pytest.raises(ClientError) as exc:
        s3.list_parts(Bucket=bucket, Key="ab", UploadId=upload_id)
    assert error_code(exc) == "NoSuchUpload"
    with pytest.raises(ClientError) as exc:
        s3.abort_multipart_upload(Bucket=bucket, Key="ab", UploadId=upload_id)
    assert error_code(exc) == "NoSuchUpload" and status(exc) == 404


def test_errors(s3: Any, bucket: str) -> None:
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="err")["UploadId"]
    small = s3.upload_part(Bucket=bucket, Key="err", UploadId=upload_id, PartNumber=1,
                           Body=b"small")["ETag"]
    last = s3.upload_part(Bucket=bucket, Key="err", UploadId=upload_id, PartNumber=2,
                          Body=b"last")["ETag"]
    cases = [
        ([{"PartNumber": 1, "ETag": small}, {"PartNumber": 2, "ETag": last}], "EntityTooSmall"),
        ([{"PartNumber": 2, "ETag": last}, {"PartNumber": 1, "ETag": small}], "InvalidPartOrder"),
        ([{"PartNumber": 1, "ETag": '"00000000000000000000000000000000"'}], "InvalidPart"),
        ([{"PartNumber": 7, "ETag": small}], "InvalidPart"),
    ]
    for parts, code in cases:
        with pytest.raises(ClientError) as exc:
            s3.complete_multipart_upload(Bucket=bucket, Key="err", UploadId=upload_id,
                                         MultipartUpload={"Parts": parts})
        assert error_code(exc) == code
    for number in (0, 10001):
        with pytest.raises(ClientError) as exc:
            s3.upload_part(Bucket=bucket, Key="err", UploadId=upload_id, PartNumber=number,
                           Body=b"x")
        assert error_code(exc) == "InvalidArgument"
    with pytest.raises(ClientError) as exc:
        s3.upload_part(Bucket=bucket, Key="err", UploadId="nope", PartNumber=1, Body=b"x")
    assert error_code(exc) == "NoSuchUpload"
    with pytest.raises(ClientError) as exc:
        s3.upload_part(Bucket=bucket, Key="other-key", UploadId=upload_id, PartNumber=1, Body=b"x")
    assert error_code(exc) == "NoSuchUpload"
    # The failed completions changed nothing: a valid one still works.
    s3.complete_multipart_upload(Bucket=bucket, Key="err", UploadId=upload_id,
                                 MultipartUpload={"Parts": [{"PartNumber": 2, "ETag": last}]})
    assert s3.get_object(Bucket=bucket, Key="err")["Body"].read() == b"last"


def test_malformed_complete_body(gateway: Any, s3: Any, bucket: str) -> None:
    from tests.s3.conftest import raw_request

    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="mx")["UploadId"]
    response = raw_request(gateway, "POST", f"/{bucket}/mx?uploadId={upload_id}",
                           body=b"<CompleteMultipartUpload><Part>")
    assert response.status_code == 400 and b"MalformedXML" in response.content
    hostile = (b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e "boom">]>'
               b"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber>"
               b"<ETag>&e;</ETag></Part></CompleteMultipartUpload>")
    response = raw_request(gateway, "POST", f"/{bucket}/mx?uploadId={upload_id}", body=hostile)
    assert response.status_code == 400 and b"MalformedXML" in response.content


def test_missing_piece_mid_stream_cuts_the_connection(gateway: Any, s3: Any, bucket: str) -> None:
    import requests

    data_dir = gateway.workdir / "data"
    before = {p for p in data_dir.rglob("*") if p.is_file()}
    parts = [b"a" * (5 * MIB), b"b" * (5 * MIB)]
    upload(s3, bucket, "broken", parts)
    second_part = max((p for p in data_dir.rglob("*") if p.is_file() and p not in before),
                      key=lambda p: p.stat().st_mtime_ns)
    second_part.unlink()  # the bytes vanish behind the gateway's back
    url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "broken"})
    try:
        body: bytes | None = requests.get(url, timeout=30).content
    except requests.exceptions.RequestException:
        body = None  # the client saw the cut
    # Never a complete-looking body: either the read fails or it comes up short.
    assert body is None or len(body) < 10 * MIB
