"""boto3 -> gateway -> Azurite, and what lands on Azurite read back with the Azure SDK."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from gateway.translators.azure import decode_metadata
from tests.clouds.azure import Azurite
from tests.e2e import scenarios
from tests.e2e.scenarios import MiB
from tests.gatewayproc import Gateway, start_gateway

pytestmark = pytest.mark.azure


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def azure_location(azurite: Azurite, container: str, bucket_match: bool) -> dict[str, Any]:
    return {"type": "azure", "legacyAwsBehavior": False,
            "details": azurite.details(container, bucketMatch=bucket_match)}


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
    with start_gateway(tmp_path_factory.mktemp("azgw"), locations) as gw:
        yield gw


@pytest.fixture(scope="module")
def s3(gateway: Gateway) -> Any:
    return gateway.client()


def new_bucket(s3: Any, location: str) -> str:
    return scenarios.new_bucket(s3, location, "az")


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
def test_object_lifecycle(s3: Any, azurite: Azurite, containers: dict[str, str], location: str,
                          bucket_match: bool) -> None:
    bucket = new_bucket(s3, location)
    key = "dir/hello wörld.txt"
    payload = b"hello from boto3 to azure"
    metadata = {"color": "blue", "x-trace-id": "abc-123"}
    blob_name = scenarios.backend_name(bucket, key, bucket_match)

    def check_native() -> None:
        view = run(blob_view(azurite, containers[location], blob_name))
        assert view["exists"] and view["content"] == payload
        assert view["content_type"] == "text/plain"
        assert view["meta"].user == metadata
        assert view["tags"] == {"team": "storage", "stage": "dev one"}

    scenarios.object_round_trip(
        s3, bucket, key, payload, metadata=metadata, content_type="text/plain",
        tagging="team=storage&stage=dev%20one", byte_range=(6, 9), check_native=check_native,
        native_gone=lambda: not run(blob_view(azurite, containers[location], blob_name))["exists"])


@pytest.mark.slow
def test_multipart_100_mib(s3: Any, azurite: Azurite, containers: dict[str, str]) -> None:
    bucket = new_bucket(s3, "aznomatch")
    key = "big/object.bin"
    scenarios.multipart_upload(s3, bucket, key, part_size=25 * MiB, count=4,
                               ContentType="application/x-big", Metadata={"kind": "big-one"})

    view = run(blob_view(azurite, containers["aznomatch"], f"{bucket}/{key}"))
    assert view["size"] == 100 * MiB and view["blocks"] == 4
    assert view["content_type"] == "application/x-big"
    assert view["meta"].user == {"kind": "big-one"}


def test_multipart_reupload_abort_and_guard(s3: Any, azurite: Azurite,
                                            containers: dict[str, str]) -> None:
    bucket = new_bucket(s3, "azmatch")
    key = "mpu-small"
    s3.put_object(Bucket=bucket, Key=key, Body=b"existing")
    # A plain PUT/DELETE while an upload is open would destroy its staged blocks: refused.
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    s3.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=1, Body=b"a" * 5 * MiB)
    for call in (lambda: s3.put_object(Bucket=bucket, Key=key, Body=b"x"),
                 lambda: s3.delete_object(Bucket=bucket, Key=key)):
        with pytest.raises(ClientError) as caught:
            call()
        assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 409
    s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == b"existing"
    assert run(blob_view(azurite, containers["azmatch"], key))["content"] == b"existing"

    scenarios.reupload_and_complete(s3, bucket, key, unlisted_part=False)
    view = run(blob_view(azurite, containers["azmatch"], key))
    assert view["size"] == 5 * MiB + 4 and view["blocks"] == 2


def test_copy(s3: Any, azurite: Azurite, containers: dict[str, str]) -> None:
    bucket = new_bucket(s3, "aznomatch")
    scenarios.copy_object(s3, bucket, b"copy me", {"a-b": "c"})
    view = run(blob_view(azurite, containers["aznomatch"], f"{bucket}/dst"))
    assert view["content"] == b"copy me" and view["meta"].user == {"a-b": "c"}


def test_emulator_stopped_gives_503(azurite_factory: Callable[[], Azurite],
                                    tmp_path: Path) -> None:
    server = azurite_factory()
    container = run(server.create_container())
    locations = {"doomed": azure_location(server, container, False)}
    with start_gateway(tmp_path / "gw", locations) as gw:
        s3 = gw.client()
        scenarios.stopped_is_503(s3, new_bucket(s3, "doomed"), "doomed", server.stop)
