"""boto3 -> gateway -> b2 translator -> b2sdk's RawSimulator.

The simulator lives in this process, so the gateway runs in-process too (a thread with its own
event loop, tests/gatewayproc.py), its b2 translators reaching the simulator through
gateway.translators.b2.RAW_API_FACTORY set by the tests/clouds/b2.py fixtures.
"""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from gateway.translators.b2 import meta_from_file_info
from tests.clouds.b2 import B2Cloud
from tests.e2e import scenarios
from tests.e2e.scenarios import MiB
from tests.gatewayproc import start_gateway

pytestmark = pytest.mark.b2


def b2_location(cloud: B2Cloud, bucket_match: bool) -> dict[str, Any]:
    return {"mycloud": {"type": "b2", "legacyAwsBehavior": False,
                        "details": cloud.details(bucketMatch=bucket_match, threads=4)}}


def create_bucket(s3: Any, name: str) -> None:
    s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": "mycloud"})


def native(cloud: B2Cloud, name: str) -> list[Any]:
    """Every B2 version of `name`, newest first, as B2's own SDK sees them."""
    return list(cloud.bucket().list_file_versions(name))


@pytest.mark.parametrize("bucket_match", [False, True])
def test_objects_through_the_gateway(tmp_path: Path, b2_cloud: B2Cloud, bucket_match: bool) -> None:
    bucket = f"e2e-b2-{str(bucket_match).lower()}"
    name = scenarios.backend_name(bucket, "dir/obj", bucket_match)
    data = b"0123456789" * 100_000
    newest: list[Any] = []

    def check_native() -> None:
        # Natively on B2: one ordinary file named by the (bucketMatch-mapped) key.
        [version] = native(b2_cloud, name)
        assert version.size == len(data) and version.content_type == "text/plain"
        meta = meta_from_file_info(version.content_type, version.file_info)
        assert meta.user == {"color": "blue"}
        assert meta.tags == {"team": "storage", "env": "test"}

    def check_overwrite(second: bytes) -> None:  # a new B2 version of the name
        newest.append(native(b2_cloud, name)[0])
        assert newest[0].size == len(second)

    def native_gone() -> bool:  # the live version went with the delete
        return newest[0].id_ not in [v.id_ for v in native(b2_cloud, name)]

    with start_gateway(tmp_path, b2_location(b2_cloud, bucket_match), inprocess=True) as gw:
        s3 = gw.client()
        create_bucket(s3, bucket)
        scenarios.object_round_trip(
            s3, bucket, "dir/obj", data, metadata={"color": "blue"}, content_type="text/plain",
            tagging="team=storage&env=test", byte_range=(10, 29), check_native=check_native,
            check_overwrite=check_overwrite, native_gone=native_gone)


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
        scenarios.copy_object(s3, bucket, data, {"a": "1"}, replace={"b": "2"})
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
        scenarios.multipart_upload(s3, bucket, key, part_size=part_size, count=count,
                                   boundary=3, margin=50, Metadata={"kind": "mpu"})

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
    with (start_gateway(tmp_path, b2_location(b2_throwaway, False), inprocess=True) as gw,
          ExitStack() as stopped):  # the simulator runs again before the gateway stops
        s3 = gw.client()
        create_bucket(s3, "e2e-b2-down")
        scenarios.stopped_is_503(s3, "e2e-b2-down", "mycloud",
                                 lambda: stopped.enter_context(b2_throwaway.stopped()), within=10)
