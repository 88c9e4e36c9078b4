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
from tests.gatewayproc import eventually, start_gateway

pytestmark = pytest.mark.b2


def b2_location(cloud: B2Cloud, bucket_match: bool) -> dict[str, Any]:
    return {"mycloud": {"type": "b2", "legacyAwsBehavior": False,
                        "details": cloud.details(bucketMatch=bucket_match, threads=4)}}


# The collector removes replaced and deleted bytes in the background: run it often.
CONFIG = {"storage": {"collectInterval": 0.2}}


def create_bucket(s3: Any, name: str) -> None:
    s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": "mycloud"})


def native(cloud: B2Cloud, bucket: str, key: str, bucket_match: bool = False) -> list[Any]:
    """Every B2 version (files, hide markers, unfinished large files) at the names that hold
    writes of this S3 key (`<natural name>~<token>`), as B2's own API lists them."""
    prefix = scenarios.backend_name(bucket, key, bucket_match) + "~"
    api = cloud.api()
    bucket_id = api.get_bucket_by_name(cloud.bucket_name).id_
    page = api.session.list_file_versions(bucket_id, start_file_name=prefix, max_file_count=1000,
                                          prefix=prefix)
    assert page["nextFileName"] is None  # a test writes far fewer
    names = set(scenarios.native_names([f["fileName"] for f in page["files"]], bucket, key,
                                       bucket_match))
    return [f for f in page["files"] if f["fileName"] in names]


@pytest.mark.parametrize("bucket_match", [False, True])
def test_objects_through_the_gateway(tmp_path: Path, b2_cloud: B2Cloud, bucket_match: bool) -> None:
    bucket = f"e2e-b2-{str(bucket_match).lower()}"
    data = b"0123456789" * 100_000
    first: list[str] = []

    def check_native() -> None:
        # Natively on B2: one ordinary file at a name of its own, <natural name>~<token>.
        [version] = native(b2_cloud, bucket, "dir/obj", bucket_match)
        assert version["action"] == "upload" and version["contentLength"] == len(data)
        assert version["contentType"] == "text/plain"
        meta = meta_from_file_info(version["contentType"], version["fileInfo"])
        assert meta.user == {"color": "blue"}
        assert meta.tags == {"team": "storage", "env": "test"}
        first.append(version["fileName"])

    def check_overwrite(second: bytes) -> None:
        # The new write is a file of its own; the replaced one goes with the collector.
        eventually(lambda: [(v["fileName"] != first[0], v["contentLength"])
                            for v in native(b2_cloud, bucket, "dir/obj", bucket_match)]
                   == [(True, len(second))])

    def native_gone() -> bool:
        eventually(lambda: native(b2_cloud, bucket, "dir/obj", bucket_match) == [])
        return True

    with start_gateway(tmp_path, b2_location(b2_cloud, bucket_match), config=CONFIG,
                       inprocess=True) as gw:
        s3 = gw.client()
        create_bucket(s3, bucket)
        scenarios.object_round_trip(
            s3, bucket, "dir/obj", data, metadata={"color": "blue"}, content_type="text/plain",
            tagging="team=storage&env=test", byte_range=(10, 29), check_native=check_native,
            check_overwrite=check_overwrite, native_gone=native_gone)


def test_overwrite_leaves_no_old_version(tmp_path: Path, b2_cloud: B2Cloud) -> None:
    bucket = "e2e-b2-overwrite"
    with start_gateway(tmp_path, b2_location(b2_cloud, False), config=CONFIG,
                       inprocess=True) as gw:
        s3 = gw.client()
        create_bucket(s3, bucket)
        s3.put_object(Bucket=bucket, Key="k", Body=b"first")
        s3.put_object(Bucket=bucket, Key="k", Body=b"second")
        eventually(lambda: [v["contentLength"] for v in native(b2_cloud, bucket, "k")] == [6])
        assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"second"


def test_copy_object(tmp_path: Path, b2_cloud: B2Cloud) -> None:
    bucket = "e2e-b2-copy"
    with start_gateway(tmp_path, b2_location(b2_cloud, False), config=CONFIG,
                       inprocess=True) as gw:
        s3 = gw.client()
        create_bucket(s3, bucket)
        data = b"copy me " * 10_000
        scenarios.copy_object(s3, bucket, data, {"a": "1"}, replace={"b": "2"})
        [copied] = native(b2_cloud, bucket, "dst")  # a B2 file of its own, new metadata
        [source] = native(b2_cloud, bucket, "src")
        assert copied["fileName"] != source["fileName"] and copied["fileId"] != source["fileId"]
        assert copied["contentLength"] == len(data) and copied["fileInfo"].get("b") == "2"
        s3.delete_object(Bucket=bucket, Key="dst")
        s3.delete_object(Bucket=bucket, Key="src")
        eventually(lambda: native(b2_cloud, bucket, "dst") == []
                   and native(b2_cloud, bucket, "src") == [])


def test_multipart_100mib(tmp_path: Path, b2_cloud: B2Cloud) -> None:
    bucket, key = "e2e-b2-mpu", "big/object"
    part_size, count = 10 * MiB, 10
    with start_gateway(tmp_path, b2_location(b2_cloud, False), config=CONFIG,
                       inprocess=True) as gw:
        s3 = gw.client()
        create_bucket(s3, bucket)
        scenarios.multipart_upload(s3, bucket, key, part_size=part_size, count=count,
                                   boundary=3, margin=50, Metadata={"kind": "mpu"})

        # One finished B2 large file, nothing unfinished left at its name.
        [version] = native(b2_cloud, bucket, key)
        assert version["action"] == "upload" and version["contentLength"] == part_size * count
        assert version["fileInfo"]["kind"] == "mpu"
        s3.delete_object(Bucket=bucket, Key=key)
        eventually(lambda: native(b2_cloud, bucket, key) == [])


def test_abort_multipart_cleans_up(tmp_path: Path, b2_cloud: B2Cloud) -> None:
    bucket, key = "e2e-b2-abort", "gone"
    with start_gateway(tmp_path, b2_location(b2_cloud, True), config=CONFIG,
                       inprocess=True) as gw:
        s3 = gw.client()
        create_bucket(s3, bucket)
        upload = s3.create_multipart_upload(Bucket=bucket, Key=key)
        s3.upload_part(Bucket=bucket, Key=key, UploadId=upload["UploadId"], PartNumber=1,
                       Body=b"z" * MiB)
        [staged] = native(b2_cloud, bucket, key, True)  # an unfinished large file at gone~<token>
        assert staged["action"] == "start"
        s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload["UploadId"])
        eventually(lambda: native(b2_cloud, bucket, key, True) == [])  # cancelled, parts and all


def test_stopped_cloud_gives_503(tmp_path: Path, b2_throwaway: B2Cloud) -> None:
    with (start_gateway(tmp_path, b2_location(b2_throwaway, False), inprocess=True) as gw,
          ExitStack() as stopped):  # the simulator runs again before the gateway stops
        s3 = gw.client()
        create_bucket(s3, "e2e-b2-down")
        scenarios.stopped_is_503(s3, "e2e-b2-down", "mycloud",
                                 lambda: stopped.enter_context(b2_throwaway.stopped()), within=10)
