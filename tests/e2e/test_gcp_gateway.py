"""boto3 -> gateway -> fake-gcs-server, and what lands on GCS read back with gcloud-aio-storage.

Every write lands in an object of its own, `<natural name>~<token>` (see scenarios.native_names);
replaced and deleted bytes go with the gateway's background collector, so what must disappear
natively is waited for (`eventually`)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import aiohttp
import pytest
from gcloud.aio.storage import Storage

from tests.clouds.gcp import GcsEmulator
from tests.e2e import scenarios
from tests.e2e.scenarios import MiB, part_bytes
from tests.gatewayproc import Gateway, eventually, start_gateway

pytestmark = pytest.mark.gcp


def gcp_location(emulator: GcsEmulator, bucket: str, bucket_match: bool) -> dict[str, Any]:
    return {"type": "gcp", "legacyAwsBehavior": False,
            "details": {"bucketName": bucket, "bucketMatch": bucket_match,
                        "gcpEndpoint": emulator.url}}


# The collector removes replaced and deleted bytes in the background: run it often.
CONFIG = {"storage": {"collectInterval": 0.2}}


@pytest.fixture(scope="module")
def gcs_buckets(gcs_emulator: GcsEmulator) -> dict[str, str]:
    return {"gcpmatch": gcs_emulator.create_bucket(), "gcpnomatch": gcs_emulator.create_bucket()}


@pytest.fixture(scope="module")
def gateway(gcs_emulator: GcsEmulator, gcs_buckets: dict[str, str],
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    locations = {
        "gcpmatch": gcp_location(gcs_emulator, gcs_buckets["gcpmatch"], True),
        "gcpnomatch": gcp_location(gcs_emulator, gcs_buckets["gcpnomatch"], False),
    }
    with start_gateway(tmp_path_factory.mktemp("gcpgw"), locations, config=CONFIG) as gw:
        yield gw


@pytest.fixture(scope="module")
def s3(gateway: Gateway) -> Any:
    return gateway.client()


@pytest.fixture(scope="module")
def buckets(s3: Any) -> scenarios.Buckets:
    """New buckets, but one only on gcpmatch (bucketMatch): its tests share it."""
    return scenarios.Buckets(s3, "gcp", {"gcpmatch"})


def gcs_view(emulator: GcsEmulator, bucket: str, name: str | None = None,
             prefix: str = "") -> dict[str, Any]:
    """An object (or a listing) as the GCS SDK sees it; {"exists": False} when missing."""

    async def look() -> dict[str, Any]:
        async with aiohttp.ClientSession() as session:
            sdk = Storage(session=session, api_root=emulator.url)
            if name is None:
                listing = await sdk.list_objects(bucket, params={"prefix": prefix})
                return {"names": [item["name"] for item in listing.get("items", [])]}
            try:
                resource = await sdk.download_metadata(bucket, name)
            except aiohttp.ClientResponseError as exc:
                if exc.status == 404:
                    return {"exists": False}
                raise
            small = int(resource["size"]) <= MiB
            content = await sdk.download(bucket, name) if small else None
            return {"exists": True, "size": int(resource["size"]), "content": content,
                    "content_type": resource.get("contentType"),
                    "metadata": resource.get("metadata", {})}

    return asyncio.run(look())


def object_names(emulator: GcsEmulator, gcs_bucket: str, bucket: str, key: str,
                 bucket_match: bool) -> list[str]:
    """The GCS objects holding writes of this S3 key."""
    prefix = scenarios.backend_name(bucket, key, bucket_match) + "~"
    names = gcs_view(emulator, gcs_bucket, prefix=prefix)["names"]
    return scenarios.native_names(names, bucket, key, bucket_match)


@pytest.mark.parametrize(("location", "bucket_match"), [("gcpnomatch", False), ("gcpmatch", True)])
def test_object_lifecycle(s3: Any, buckets: scenarios.Buckets, gcs_emulator: GcsEmulator,
                          gcs_buckets: dict[str, str], location: str, bucket_match: bool) -> None:
    bucket = buckets(location)
    key = "dir/hello wörld.txt"
    payload = b"hello from boto3 to gcs"
    metadata = {"color": "blue", "x-trace-id": "abc-123"}
    # Native on GCS: `<key>~<token>` with bucketMatch, `<bucket>/<key>~<token>` without.
    gcs_bucket = gcs_buckets[location]
    first: list[str] = []

    def names() -> list[str]:
        return object_names(gcs_emulator, gcs_bucket, bucket, key, bucket_match)

    def check_native() -> None:
        [name] = names()
        first.append(name)
        view = gcs_view(gcs_emulator, gcs_bucket, name)
        assert view["exists"] and view["content"] == payload
        assert view["content_type"] == "text/plain"
        assert view["metadata"] == {**metadata, "aws-tag-team": "storage",
                                    "aws-tag-stage": "dev one"}

    def check_overwrite(second: bytes) -> None:
        # The new write is an object of its own; the replaced one goes with the collector.
        eventually(lambda: len(names()) == 1 and names()[0] != first[0])
        assert gcs_view(gcs_emulator, gcs_bucket, names()[0])["content"] == second

    def native_gone() -> bool:
        eventually(lambda: names() == [])
        return True

    scenarios.object_round_trip(
        s3, bucket, key, payload, metadata=metadata, content_type="text/plain",
        tagging="team=storage&stage=dev%20one", byte_range=(6, 9), check_native=check_native,
        check_overwrite=check_overwrite, CacheControl="max-age=5", native_gone=native_gone)


def staged_names(emulator: GcsEmulator, bucket: str) -> list[str]:
    """The temporary objects of open multipart uploads."""
    return gcs_view(emulator, bucket, prefix="s3gw-mpu/")["names"]


@pytest.mark.slow
def test_multipart_100_mib(s3: Any, buckets: scenarios.Buckets, gcs_emulator: GcsEmulator,
                           gcs_buckets: dict[str, str]) -> None:
    bucket = buckets("gcpnomatch")
    key = "big/object.bin"

    def one_staged_object_per_part(upload_id: str) -> None:
        assert len(staged_names(gcs_emulator, gcs_buckets["gcpnomatch"])) == 10

    scenarios.multipart_upload(s3, bucket, key, part_size=10 * MiB, count=10,
                               before_complete=one_staged_object_per_part,
                               ContentType="application/x-big", Metadata={"kind": "big-one"},
                               Tagging="size=big")

    [name] = object_names(gcs_emulator, gcs_buckets["gcpnomatch"], bucket, key, False)
    view = gcs_view(gcs_emulator, gcs_buckets["gcpnomatch"], name)
    assert view["size"] == 100 * MiB
    assert view["content_type"] == "application/x-big"
    assert view["metadata"] == {"kind": "big-one", "aws-tag-size": "big"}
    assert staged_names(gcs_emulator, gcs_buckets["gcpnomatch"]) == []
    s3.delete_object(Bucket=bucket, Key=key)
    eventually(lambda: not gcs_view(gcs_emulator, gcs_buckets["gcpnomatch"], name)["exists"])


def test_multipart_reupload_and_abort(s3: Any, buckets: scenarios.Buckets,
                                      gcs_emulator: GcsEmulator,
                                      gcs_buckets: dict[str, str]) -> None:
    bucket = buckets("gcpmatch")
    key = "mpu-small"
    scenarios.reupload_and_complete(s3, bucket, key, unlisted_part=True)
    [name] = object_names(gcs_emulator, gcs_buckets["gcpmatch"], bucket, key, True)
    view = gcs_view(gcs_emulator, gcs_buckets["gcpmatch"], name)
    assert view["size"] == 5 * MiB + 4
    # Both attempts at part 1 and the unlisted part 2 were objects of their own: all gone.
    eventually(lambda: staged_names(gcs_emulator, gcs_buckets["gcpmatch"]) == [])

    looks: list[int] = []

    def count() -> int:
        return len(staged_names(gcs_emulator, gcs_buckets["gcpmatch"]))

    def staged() -> int:
        # Looked at before the upload, after its part, and after the abort: the abort's
        # staged objects may be removed by the collector, in the background.
        if len(looks) == 2:
            eventually(lambda: count() == looks[0])
        looks.append(count())
        return looks[-1]

    scenarios.abort_upload(s3, bucket, "aborted", staged)


def test_copy(s3: Any, buckets: scenarios.Buckets, gcs_emulator: GcsEmulator,
              gcs_buckets: dict[str, str]) -> None:
    bucket = buckets("gcpnomatch")
    scenarios.copy_object(s3, bucket, b"copy me", {"a-b": "c"})
    [dst] = object_names(gcs_emulator, gcs_buckets["gcpnomatch"], bucket, "dst", False)
    view = gcs_view(gcs_emulator, gcs_buckets["gcpnomatch"], dst)
    assert view["content"] == b"copy me" and view["metadata"] == {"a-b": "c"}
    [src] = object_names(gcs_emulator, gcs_buckets["gcpnomatch"], bucket, "src", False)
    assert src != dst  # a copy of its own


def test_emulator_stopped_gives_503(gcs_emulator_factory: Callable[[], GcsEmulator],
                                    tmp_path: Any) -> None:
    emulator = gcs_emulator_factory()
    locations = {"gcpdown": gcp_location(emulator, emulator.create_bucket(), True)}
    with start_gateway(tmp_path / "gw", locations, config=CONFIG) as gw:
        s3 = gw.client()
        bucket = scenarios.new_bucket(s3, "gcpdown", "gcp")
        scenarios.stopped_is_503(s3, bucket, "gcpdown", emulator.stop)


def test_upload_part_copy(s3: Any, buckets: scenarios.Buckets, gcs_emulator: GcsEmulator,
                          gcs_buckets: dict[str, str]) -> None:
    bucket = buckets("gcpmatch")
    source = part_bytes(7, 5 * MiB)
    s3.put_object(Bucket=bucket, Key="part-src", Body=source)
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="assembled")["UploadId"]
    copy = {"Bucket": bucket, "Key": "part-src"}
    whole = scenarios.skip_if_not_implemented(lambda: s3.upload_part_copy(
        Bucket=bucket, Key="assembled", UploadId=upload_id, PartNumber=1,
        CopySource=copy), "UploadPartCopy")  # server-side rewrite
    ranged = s3.upload_part_copy(Bucket=bucket, Key="assembled", UploadId=upload_id,
                                 PartNumber=2, CopySource=copy,
                                 CopySourceRange="bytes=100-199")  # streamed by the gateway
    s3.complete_multipart_upload(Bucket=bucket, Key="assembled", UploadId=upload_id,
                                 MultipartUpload={"Parts": [
                                     {"PartNumber": 1, "ETag": whole["CopyPartResult"]["ETag"]},
                                     {"PartNumber": 2, "ETag": ranged["CopyPartResult"]["ETag"]}]})
    body = s3.get_object(Bucket=bucket, Key="assembled")["Body"].read()
    assert body == source + source[100:200]
    [name] = object_names(gcs_emulator, gcs_buckets["gcpmatch"], bucket, "assembled", True)
    view = gcs_view(gcs_emulator, gcs_buckets["gcpmatch"], name)
    assert view["size"] == 5 * MiB + 100
    assert staged_names(gcs_emulator, gcs_buckets["gcpmatch"]) == []
