"""boto3 -> gateway -> Azurite, and what lands on Azurite read back with the Azure SDK.

Every write lands in a blob of its own, `<natural name>~<token>` (see scenarios.native_names);
replaced and deleted bytes go with the gateway's background collector, so what must disappear
natively is waited for (`eventually`)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.translators.azure import decode_metadata
from tests.clouds.azure import Azurite
from tests.e2e import scenarios
from tests.e2e.scenarios import MiB
from tests.gatewayproc import Gateway, eventually, start_gateway

pytestmark = pytest.mark.azure


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def azure_location(azurite: Azurite, container: str, bucket_match: bool) -> dict[str, Any]:
    return {"type": "azure", "legacyAwsBehavior": False,
            "details": azurite.details(container, bucketMatch=bucket_match)}


# The collector removes replaced and deleted bytes in the background: run it often.
CONFIG = {"storage": {"collectInterval": 0.2}}


def blob_names(azurite: Azurite, container: str, bucket: str, key: str, bucket_match: bool,
               uncommitted: bool = False) -> list[str]:
    """The blobs holding writes of this S3 key; with `uncommitted`, also names holding only
    staged blocks (an open or aborted upload)."""

    async def names() -> list[str]:
        prefix = scenarios.backend_name(bucket, key, bucket_match) + "~"
        include = ["uncommittedblobs"] if uncommitted else None
        async with azurite.container_client(container) as client:
            return [blob.name async for blob in client.list_blobs(name_starts_with=prefix,
                                                                   include=include)]

    return scenarios.native_names(run(names()), bucket, key, bucket_match)


@pytest.fixture(scope="module")
def containers(azurite: Azurite) -> dict[str, str]:
    return {"azmatch": run(azurite.create_container()), "aznomatch": run(azurite.create_container())}


@pytest.fixture(scope="module")
def gateway(azurite: Azurite, containers: dict[str, str],
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    locations = {
        "azmatch": azure_location(azurite, containers["azmatch"], True),
        "aznomatch": azure_location(azurite, containers["aznomatch"], False),
    }
    with start_gateway(tmp_path_factory.mktemp("azgw"), locations, config=CONFIG) as gw:
        yield gw


@pytest.fixture(scope="module")
def s3(gateway: Gateway) -> Any:
    return gateway.client()


@pytest.fixture(scope="module")
def buckets(s3: Any) -> scenarios.Buckets:
    """New buckets, but one only on azmatch (bucketMatch): its tests share it."""
    return scenarios.Buckets(s3, "az", {"azmatch"})


async def blob_view(azurite: Azurite, container: str, name: str) -> dict[str, Any]:
    """A blob as the Azure SDK sees it (None when it does not exist)."""
    async with azurite.container_client(container) as client:
        blob = client.get_blob_client(name)
        try:
            props = await blob.get_blob_properties()
        except Exception as exc:  # ResourceNotFoundError
            return {"exists": False, "error": type(exc).__name__}
        tags = await blob.get_blob_tags()
        committed, _ = await blob.get_block_list("committed")
        content = await (await blob.download_blob()).readall() if props.size <= MiB else None
        return {"exists": True, "size": props.size, "content": content,
                "content_type": props.content_settings.content_type,
                "meta": decode_metadata(props.metadata, tags), "tags": tags,
                "blocks": len(committed)}


@pytest.mark.parametrize(("location", "bucket_match"), [("aznomatch", False), ("azmatch", True)])
def test_object_lifecycle(s3: Any, buckets: scenarios.Buckets, azurite: Azurite,
                          containers: dict[str, str], location: str, bucket_match: bool) -> None:
    bucket = buckets(location)
    key = "dir/hello wörld.txt"
    payload = b"hello from boto3 to azure"
    metadata = {"color": "blue", "x-trace-id": "abc-123"}
    container = containers[location]

    def check_native() -> None:
        [name] = blob_names(azurite, container, bucket, key, bucket_match)
        view = run(blob_view(azurite, container, name))
        assert view["exists"] and view["content"] == payload
        assert view["content_type"] == "text/plain"
        assert view["meta"].user == metadata
        assert view["tags"] == {"team": "storage", "stage": "dev one"}

    def native_gone() -> bool:
        eventually(lambda: blob_names(azurite, container, bucket, key, bucket_match,
                                      uncommitted=True) == [])
        return True

    scenarios.object_round_trip(
        s3, bucket, key, payload, metadata=metadata, content_type="text/plain",
        tagging="team=storage&stage=dev%20one", byte_range=(6, 9), check_native=check_native,
        native_gone=native_gone)


@pytest.mark.slow
def test_multipart_100_mib(s3: Any, buckets: scenarios.Buckets, azurite: Azurite,
                           containers: dict[str, str]) -> None:
    bucket = buckets("aznomatch")
    key = "big/object.bin"
    scenarios.multipart_upload(s3, bucket, key, part_size=25 * MiB, count=4,
                               ContentType="application/x-big", Metadata={"kind": "big-one"})

    [name] = blob_names(azurite, containers["aznomatch"], bucket, key, False)
    view = run(blob_view(azurite, containers["aznomatch"], name))
    assert view["size"] == 100 * MiB and view["blocks"] == 4
    assert view["content_type"] == "application/x-big"
    assert view["meta"].user == {"kind": "big-one"}


def test_multipart_reupload_abort_and_puts_alongside(
        s3: Any, buckets: scenarios.Buckets, azurite: Azurite, containers: dict[str, str]) -> None:
    """An open upload stages its blocks at a blob name of its own: plain PUTs and DELETEs of
    the key go on beside it (no 409 any more) and never touch them."""
    container = containers["azmatch"]
    bucket = buckets("azmatch")
    key = "mpu-small"
    s3.put_object(Bucket=bucket, Key=key, Body=b"existing")
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    s3.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=1, Body=b"a" * 5 * MiB)
    s3.delete_object(Bucket=bucket, Key=key)
    s3.put_object(Bucket=bucket, Key=key, Body=b"x")
    # The upload's staged blocks survived both: it completes with them.
    tail = s3.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=2,
                          Body=b"tail")["ETag"]
    first = s3.list_parts(Bucket=bucket, Key=key, UploadId=upload_id)["Parts"][0]["ETag"]
    s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={
        "Parts": [{"PartNumber": 1, "ETag": first}, {"PartNumber": 2, "ETag": tail}]})
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == b"a" * 5 * MiB + b"tail"
    eventually(lambda: len(blob_names(azurite, container, bucket, key, True,
                                      uncommitted=True)) == 1)

    # An aborted upload leaves neither blocks nor a blob, and the object stays.
    s3.put_object(Bucket=bucket, Key=key, Body=b"kept")
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    s3.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=1, Body=b"b" * MiB)
    eventually(lambda: len(blob_names(azurite, container, bucket, key, True,
                                      uncommitted=True)) == 2)  # "kept" and the staged name
    s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
    eventually(lambda: len(blob_names(azurite, container, bucket, key, True,
                                      uncommitted=True)) == 1)
    [name] = blob_names(azurite, container, bucket, key, True)
    assert run(blob_view(azurite, container, name))["content"] == b"kept"
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == b"kept"

    scenarios.reupload_and_complete(s3, bucket, key, unlisted_part=False)
    eventually(lambda: len(blob_names(azurite, container, bucket, key, True,
                                      uncommitted=True)) == 1)
    [name] = blob_names(azurite, container, bucket, key, True)
    view = run(blob_view(azurite, container, name))
    assert view["size"] == 5 * MiB + 4 and view["blocks"] == 2


def test_copy(s3: Any, buckets: scenarios.Buckets, azurite: Azurite,
              containers: dict[str, str]) -> None:
    bucket = buckets("aznomatch")
    scenarios.copy_object(s3, bucket, b"copy me", {"a-b": "c"})
    [dst] = blob_names(azurite, containers["aznomatch"], bucket, "dst", False)
    view = run(blob_view(azurite, containers["aznomatch"], dst))
    assert view["content"] == b"copy me" and view["meta"].user == {"a-b": "c"}
    [src] = blob_names(azurite, containers["aznomatch"], bucket, "src", False)
    assert src != dst  # a copy of its own


def test_two_uploads_of_one_key_both_complete(s3: Any, gateway: Gateway,
                                               buckets: scenarios.Buckets, azurite: Azurite,
                                               containers: dict[str, str]) -> None:
    """Each upload stages its blocks at a blob of its own (no MPUinProgress any more): both
    complete, the last completion wins, and the first one's blob goes with the collector."""
    bucket = buckets("aznomatch")
    key = "twice"
    ids = [s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"] for _ in range(2)]
    etags = [s3.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=1,
                            Body=body)["ETag"]
             for upload_id, body in zip(ids, (b"first", b"second"), strict=True)]
    for upload_id, etag in zip(ids, etags, strict=True):
        s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id,
                                     MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]})
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == b"second"
    gateway.settle()
    [name] = blob_names(azurite, containers["aznomatch"], bucket, key, False, uncommitted=True)
    assert run(blob_view(azurite, containers["aznomatch"], name))["content"] == b"second"


def test_emulator_stopped_gives_503(azurite_factory: Callable[[], Azurite],
                                    tmp_path: Path) -> None:
    server = azurite_factory()
    container = run(server.create_container())
    locations = {"doomed": azure_location(server, container, False)}
    with start_gateway(tmp_path / "gw", locations, config=CONFIG) as gw:
        s3 = gw.client()
        bucket = scenarios.new_bucket(s3, "doomed", "az")
        scenarios.stopped_is_503(s3, bucket, "doomed", server.stop)
