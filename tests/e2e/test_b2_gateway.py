"""boto3 -> gateway -> b2 translator -> b2sdk's RawSimulator.

The simulator lives in this process, so the gateway runs in-process too (a thread with its own
event loop, tests/gatewayproc.py), its b2 translators reaching the simulator through
gateway.translators.b2.RAW_API_FACTORY set by the tests/clouds/b2.py fixtures.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from gateway.translators.b2 import meta_from_file_info
from tests.clouds.b2 import B2Cloud
from tests.gatewayproc import start_gateway

pytestmark = pytest.mark.b2

MiB = 1024 * 1024


def b2_location(cloud: B2Cloud, bucket_match: bool) -> dict[str, Any]:
    return {"mycloud": {"type": "b2", "legacyAwsBehavior": False,
                        "details": cloud.details(bucketMatch=bucket_match, threads=4)}}


def create_bucket(s3: Any, name: str) -> None:
    s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": "mycloud"})


def native(cloud: B2Cloud, name: str) -> list[Any]:
    """Every B2 version of `name`, newest first, as B2's own SDK sees them."""
    return list(cloud.bucket().list_file_versions(name))


def part_data(number: int, size: int) -> bytes:
    return (f"part {number} ".encode() + bytes(range(256)) * (size // 256 + 1))[:size]


@pytest.mark.parametrize("bucket_match", [False, True])
def test_objects_through_the_gateway(tmp_path: Path, b2_cloud: B2Cloud, bucket_match: bool) -> None:
    bucket = f"e2e-b2-{str(bucket_match).lower()}"
    prefix = "" if bucket_match else f"{bucket}/"
    with start_gateway(tmp_path, b2_location(b2_cloud, bucket_match), inprocess=True) as gw:
        s3 = gw.client()
        create_bucket(s3, bucket)
        data = b"0123456789" * 100_000
        s3.put_object(Bucket=bucket, Key="dir/obj", Body=data, ContentType="text/plain",
                      Metadata={"color": "blue"}, Tagging="team=storage&env=test")
        got = s3.get_object(Bucket=bucket, Key="dir/obj")
        assert got["Body"].read() == data
        assert got["ETag"] == f'"{hashlib.md5(data).hexdigest()}"'
        assert got["Metadata"] == {"color": "blue"} and got["ContentType"] == "text/plain"
        ranged = s3.get_object(Bucket=bucket, Key="dir/obj", Range="bytes=10-29")
        assert ranged["Body"].read() == data[10:30] and ranged["ContentRange"].startswith("bytes 10-29/")
        assert s3.head_object(Bucket=bucket, Key="dir/obj")["ContentLength"] == len(data)

        # Natively on B2: one ordinary file named by the (bucketMatch-mapped) key.
        [version] = native(b2_cloud, f"{prefix}dir/obj")
        assert version.size == len(data) and version.content_type == "text/plain"
        meta = meta_from_file_info(version.content_type, version.file_info)
        assert meta.user == {"color": "blue"}
        assert meta.tags == {"team": "storage", "env": "test"}

        # Overwrite (a new B2 version of the name), then delete: the live version goes.
        s3.put_object(Bucket=bucket, Key="dir/obj", Body=b"new")
        assert s3.get_object(Bucket=bucket, Key="dir/obj")["Body"].read() == b"new"
        newest = native(b2_cloud, f"{prefix}dir/obj")[0]
        assert newest.size == 3
        s3.delete_object(Bucket=bucket, Key="dir/obj")
        with pytest.raises(ClientError) as info:
            s3.get_object(Bucket=bucket, Key="dir/obj")
        assert info.value.response["Error"]["Code"] == "NoSuchKey"
        assert newest.id_ not in [v.id_ for v in native(b2_cloud, f"{prefix}dir/obj")]


@pytest.mark.xfail(reason="core delete_pieces keeps replaced data whose (location, key) equals "
                          "the new data's, ignoring version_id, so the replaced B2 version stays",
                   strict=False)
def test_overwrite_leaves_no_old_version(tmp_path: Path, b2_cloud: B2Cloud) -> None:
    bucket = "e2e-b2-overwrite"
    with start_gateway(tmp_path, b2_location(b2_cloud, False), inprocess=True) as gw:
        s3 = gw.client()
        create_bucket(s3, bucket)
        s3.put_object(Bucket=bucket, Key="k", Body=b"first")
        s3.put_object(Bucket=bucket, Key="k", Body=b"second")
        assert [v.size for v in native(b2_cloud, f"{bucket}/k")] == [6]


def test_copy_object(tmp_path: Path, b2_cloud: B2Cloud) -> None:
    bucket = "e2e-b2-copy"
    with start_gateway(tmp_path, b2_location(b2_cloud, False), inprocess=True) as gw:
        s3 = gw.client()
        create_bucket(s3, bucket)
        data = b"copy me " * 10_000
        s3.put_object(Bucket=bucket, Key="src", Body=data, Metadata={"a": "1"})
        try:
            s3.copy_object(Bucket=bucket, Key="dst", CopySource={"Bucket": bucket, "Key": "src"},
                           Metadata={"b": "2"}, MetadataDirective="REPLACE")
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "NotImplemented":
                pytest.skip("the core gateway does not implement CopyObject yet")
            raise
        got = s3.get_object(Bucket=bucket, Key="dst")
        assert got["Body"].read() == data and got["Metadata"] == {"b": "2"}
        [copied] = native(b2_cloud, f"{bucket}/dst")  # a B2 file of its own, new metadata
        assert copied.size == len(data) and copied.file_info.get("b") == "2"
        s3.delete_object(Bucket=bucket, Key="dst")
        s3.delete_object(Bucket=bucket, Key="src")
        assert native(b2_cloud, f"{bucket}/dst") == [] and native(b2_cloud, f"{bucket}/src") == []


def test_multipart_100mib(tmp_path: Path, b2_cloud: B2Cloud) -> None:
    bucket, key = "e2e-b2-mpu", "big/object"
    part_size, count = 10 * MiB, 10
    with start_gateway(tmp_path, b2_location(b2_cloud, False), inprocess=True) as gw:
        s3 = gw.client()
        create_bucket(s3, bucket)
        upload = s3.create_multipart_upload(Bucket=bucket, Key=key, Metadata={"kind": "mpu"})
        started = time.monotonic()
        parts = []
        whole = hashlib.md5()
        for number in range(1, count + 1):
            data = part_data(number, part_size)
            whole.update(data)
            answer = s3.upload_part(Bucket=bucket, Key=key, UploadId=upload["UploadId"],
                                    PartNumber=number, Body=data)
            parts.append({"PartNumber": number, "ETag": answer["ETag"]})
        s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload["UploadId"],
                                     MultipartUpload={"Parts": parts})
        upload_seconds = time.monotonic() - started

        started = time.monotonic()
        body = s3.get_object(Bucket=bucket, Key=key)["Body"]
        digest = hashlib.md5()
        for chunk in iter(lambda: body.read(MiB), b""):
            digest.update(chunk)
        download_seconds = time.monotonic() - started
        assert digest.hexdigest() == whole.hexdigest()
        boundary = 3 * part_size
        ranged = s3.get_object(Bucket=bucket, Key=key, Range=f"bytes={boundary - 50}-{boundary + 49}")
        assert ranged["Body"].read() == part_data(3, part_size)[-50:] + part_data(4, part_size)[:50]
        print(f"100 MiB through the gateway: multipart upload {upload_seconds:.2f}s, "
              f"download {download_seconds:.2f}s")

        [version] = native(b2_cloud, f"{bucket}/{key}")  # one B2 large file, nothing unfinished
        assert version.size == part_size * count and version.file_info["kind"] == "mpu"
        assert list(b2_cloud.bucket().list_unfinished_large_files()) == []
        s3.delete_object(Bucket=bucket, Key=key)
        assert native(b2_cloud, f"{bucket}/{key}") == []


def test_abort_multipart_cleans_up(tmp_path: Path, b2_cloud: B2Cloud) -> None:
    bucket, key = "e2e-b2-abort", "gone"
    with start_gateway(tmp_path, b2_location(b2_cloud, True), inprocess=True) as gw:
        s3 = gw.client()
        create_bucket(s3, bucket)
        upload = s3.create_multipart_upload(Bucket=bucket, Key=key)
        s3.upload_part(Bucket=bucket, Key=key, UploadId=upload["UploadId"], PartNumber=1,
                       Body=b"z" * MiB)
        assert [f.file_name for f in b2_cloud.bucket().list_unfinished_large_files()] == [key]
        s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload["UploadId"])
        assert list(b2_cloud.bucket().list_unfinished_large_files()) == []
        assert native(b2_cloud, key) == []


def test_stopped_cloud_gives_503(tmp_path: Path, b2_throwaway: B2Cloud) -> None:
    with start_gateway(tmp_path, b2_location(b2_throwaway, False), inprocess=True) as gw:
        s3 = gw.client()
        create_bucket(s3, "e2e-b2-down")
        s3.put_object(Bucket="e2e-b2-down", Key="k", Body=b"before")
        with b2_throwaway.stopped():
            started = time.monotonic()
            for call in (lambda: s3.get_object(Bucket="e2e-b2-down", Key="k"),
                         lambda: s3.put_object(Bucket="e2e-b2-down", Key="k2", Body=b"x")):
                with pytest.raises(ClientError) as info:
                    call()
                error = info.value.response["Error"]
                assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
                assert error["Code"] == "ServiceUnavailable" and "mycloud" in error["Message"]
            assert time.monotonic() - started < 10
