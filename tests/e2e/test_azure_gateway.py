"""boto3 -> gateway -> Azurite, and what lands on Azurite read back with the Azure SDK."""

from __future__ import annotations

import asyncio
import hashlib
import random
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from gateway.translators.azure import decode_metadata
from tests.clouds.azure import Azurite
from tests.gatewayproc import Gateway, start_gateway

pytestmark = pytest.mark.azure

MiB = 1024 * 1024


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
    name = f"az-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": location})
    return name


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


def error_code(exc: pytest.ExceptionInfo[ClientError]) -> str:
    return exc.value.response["Error"]["Code"]


@pytest.mark.parametrize(("location", "bucket_match"), [("aznomatch", False), ("azmatch", True)])
def test_object_lifecycle(s3: Any, azurite: Azurite, containers: dict[str, str], location: str,
                          bucket_match: bool) -> None:
    bucket = new_bucket(s3, location)
    key = "dir/hello wörld.txt"
    payload = b"hello from boto3 to azure"
    metadata = {"color": "blue", "x-trace-id": "abc-123"}
    put = s3.put_object(Bucket=bucket, Key=key, Body=payload, ContentType="text/plain",
                        Metadata=metadata, Tagging="team=storage&stage=dev%20one")
    assert put["ETag"] == f'"{hashlib.md5(payload).hexdigest()}"'

    got = s3.get_object(Bucket=bucket, Key=key)
    assert got["Body"].read() == payload
    assert got["Metadata"] == metadata and got["ContentType"] == "text/plain"
    ranged = s3.get_object(Bucket=bucket, Key=key, Range="bytes=6-9")
    assert ranged["Body"].read() == payload[6:10]
    assert ranged["ContentRange"] == f"bytes 6-9/{len(payload)}"
    assert s3.head_object(Bucket=bucket, Key=key)["ContentLength"] == len(payload)

    blob_name = key if bucket_match else f"{bucket}/{key}"
    view = run(blob_view(azurite, containers[location], blob_name))
    assert view["exists"] and view["content"] == payload
    assert view["content_type"] == "text/plain"
    assert view["meta"].user == metadata
    assert view["tags"] == {"team": "storage", "stage": "dev one"}

    s3.delete_object(Bucket=bucket, Key=key)
    s3.delete_object(Bucket=bucket, Key=key)  # idempotent
    assert not run(blob_view(azurite, containers[location], blob_name))["exists"]
    with pytest.raises(ClientError) as caught:
        s3.get_object(Bucket=bucket, Key=key)
    assert error_code(caught) == "NoSuchKey"


def part_bytes(number: int, size: int) -> bytes:
    return random.Random(number).randbytes(size)


@pytest.mark.slow
def test_multipart_100_mib(s3: Any, azurite: Azurite, containers: dict[str, str]) -> None:
    bucket = new_bucket(s3, "aznomatch")
    key = "big/object.bin"
    part_size = 25 * MiB
    upload = s3.create_multipart_upload(Bucket=bucket, Key=key, ContentType="application/x-big",
                                        Metadata={"kind": "big-one"})
    upload_id = upload["UploadId"]
    parts = []
    whole = hashlib.md5()
    for number in range(1, 5):
        chunk = part_bytes(number, part_size)  # one part in memory at a time
        whole.update(chunk)
        etag = s3.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number,
                              Body=chunk)["ETag"]
        parts.append({"PartNumber": number, "ETag": etag})
        del chunk
    done = s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id,
                                        MultipartUpload={"Parts": parts})
    assert done["ETag"].strip('"').endswith("-4")

    body = s3.get_object(Bucket=bucket, Key=key)["Body"]
    digest, size = hashlib.md5(), 0
    for piece in body.iter_chunks(MiB):
        digest.update(piece)
        size += len(piece)
    assert (digest.hexdigest(), size) == (whole.hexdigest(), 100 * MiB)

    across = s3.get_object(Bucket=bucket, Key=key, Range=f"bytes={part_size - 10}-{part_size + 9}")
    assert across["Body"].read() == part_bytes(1, part_size)[-10:] + part_bytes(2, part_size)[:10]

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

    upload_id = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    s3.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=1, Body=b"a" * 5 * MiB)
    first = s3.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=1,
                           Body=b"b" * 5 * MiB)["ETag"]  # re-uploaded
    second = s3.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=2,
                            Body=b"tail")["ETag"]
    s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={
        "Parts": [{"PartNumber": 1, "ETag": first}, {"PartNumber": 2, "ETag": second}]})
    ranged = s3.get_object(Bucket=bucket, Key=key, Range=f"bytes={5 * MiB - 2}-{5 * MiB + 1}")
    assert ranged["Body"].read() == b"bbta"
    view = run(blob_view(azurite, containers["azmatch"], key))
    assert view["size"] == 5 * MiB + 4 and view["blocks"] == 2


def test_copy(s3: Any, azurite: Azurite, containers: dict[str, str]) -> None:
    bucket = new_bucket(s3, "aznomatch")
    s3.put_object(Bucket=bucket, Key="src", Body=b"copy me", Metadata={"a-b": "c"})
    try:
        s3.copy_object(Bucket=bucket, Key="dst", CopySource={"Bucket": bucket, "Key": "src"})
    except ClientError as exc:
        if exc.response["Error"]["Code"] == "NotImplemented":
            pytest.skip("the core gateway does not implement CopyObject yet")
        raise
    got = s3.get_object(Bucket=bucket, Key="dst")
    assert got["Body"].read() == b"copy me" and got["Metadata"] == {"a-b": "c"}
    view = run(blob_view(azurite, containers["aznomatch"], f"{bucket}/dst"))
    assert view["content"] == b"copy me" and view["meta"].user == {"a-b": "c"}


def test_emulator_stopped_gives_503(azurite_factory: Callable[[], Azurite],
                                    tmp_path: Path) -> None:
    server = azurite_factory()
    container = run(server.create_container())
    locations = {"doomed": azure_location(server, container, False)}
    with start_gateway(tmp_path / "gw", locations) as gw:
        s3 = gw.client()
        bucket = new_bucket(s3, "doomed")
        s3.put_object(Bucket=bucket, Key="k", Body=b"v")
        server.stop()
        for call in (lambda: s3.get_object(Bucket=bucket, Key="k"),
                     lambda: s3.put_object(Bucket=bucket, Key="k2", Body=b"v")):
            with pytest.raises(ClientError) as caught:
                call()
            assert error_code(caught) == "ServiceUnavailable"
            assert "doomed" in caught.value.response["Error"]["Message"]
