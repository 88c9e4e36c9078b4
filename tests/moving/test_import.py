"""`python -m gateway import`, end to end: objects created natively in a cloud (boto3 on moto,
the Azure SDK on Azurite), with content types and user metadata, become objects of a gateway
bucket without a byte copied; listed and read through boto3 with their metadata and ETags.
Re-import is a no-op; an object overwritten on the backend behind the gateway's back is
reported by fsck and never served as the old bytes (nor as the new ones until re-imported);
the gateway's own pieces are skipped. Prints import objects/s.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests
from botocore.exceptions import ClientError

from gateway.locations import PIECE_TOKEN
from gateway.moving.importer import BATCH
from tests.gatewayproc import REPO, Gateway, eventually, start_gateway
from tests.races.scenarios import fsck

IMPORT_OBJECTS = int(os.environ.get("IMPORT_OBJECTS", "1000"))
OWN_PIECE = f"made-by-a-gateway~{'ab' * 12}"  # a key the gateway itself would have written


def body_of(i: int) -> bytes:
    return f"object {i} ".encode() * (1 + i % 7)


def content_type_of(i: int) -> str:
    return ("text/plain", "application/json", "image/png")[i % 3]


def run_import(gw: Gateway, *args: str) -> dict[str, Any]:
    """`python -m gateway import ARGS --json`: the final status line (JSON)."""
    result = subprocess.run([sys.executable, "-m", "gateway", "import", *args, "--json",
                             "--endpoint", gw.endpoint, "--interval", "0.3"],
                            env={**os.environ, **gw.env}, cwd=REPO, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def check_listing_and_reads(gw: Gateway, bucket: str, expected: dict[str, bytes]) -> None:
    s3 = gw.client()
    listed: dict[str, str] = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, MaxKeys=400):
        for entry in page.get("Contents", []):
            listed[entry["Key"]] = entry["ETag"].strip('"')
    assert set(listed) == set(expected)
    wrong = [k for k, etag in listed.items() if etag != hashlib.md5(expected[k]).hexdigest()]
    assert not wrong, wrong[:5]
    for key in sorted(expected)[::max(1, len(expected) // 40)]:  # 40 reads, with metadata
        i = int(key.rsplit("-", 1)[1])
        answer = s3.get_object(Bucket=bucket, Key=key)
        assert answer["Body"].read() == expected[key]
        assert answer["ContentType"] == content_type_of(i)
        assert answer["Metadata"] == {"index": str(i), "origin": "native"}
        assert answer["ETag"].strip('"') == hashlib.md5(expected[key]).hexdigest()


# --- moto -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def moto_source(aws_s3_moto: Any) -> tuple[str, dict[str, bytes]]:
    """An unversioned moto bucket holding IMPORT_OBJECTS objects put with boto3 (and a key
    that looks like a gateway piece)."""
    bucket = aws_s3_moto.create_bucket(versioned=False)
    client = aws_s3_moto.boto()
    expected = {f"docs/item-{i:04d}": body_of(i) for i in range(IMPORT_OBJECTS)}

    def put(item: tuple[str, bytes]) -> None:
        key, data = item
        i = int(key.rsplit("-", 1)[1])
        client.put_object(Bucket=bucket, Key=key, Body=data, ContentType=content_type_of(i),
                          Metadata={"index": str(i), "origin": "native"})

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(put, expected.items()))
    client.put_object(Bucket=bucket, Key=OWN_PIECE, Body=b"not an object of anyone's")
    return bucket, expected


@pytest.fixture(scope="module")
def moto_gateway(tmp_path_factory: pytest.TempPathFactory, aws_s3_moto: Any,
                 moto_source: tuple[str, dict[str, bytes]]) -> Iterator[Gateway]:
    locations = {"old-s3": {"type": "aws_s3", "legacyAwsBehavior": False,
                            "details": aws_s3_moto.details(moto_source[0], bucketMatch=True,
                                                          supportsVersioning=False)}}
    with start_gateway(tmp_path_factory.mktemp("import-moto"), locations,
                       config={"jobs": {"pollSeconds": 0.2}}) as gw:
        yield gw


@pytest.mark.aws_s3
def test_import_from_moto_is_complete_idempotent_and_never_serves_changed_bytes(
        moto_gateway: Gateway, aws_s3_moto: Any,
        moto_source: tuple[str, dict[str, bytes]]) -> None:
    gw, (source_bucket, expected) = moto_gateway, moto_source
    first = run_import(gw, "old-s3", "imported")
    assert (first["state"], first["imported"], first["own"]) == ("done", IMPORT_OBJECTS, 1)
    assert first["hashed"] == 0  # S3 keeps the MD5 (ETag) of every non-multipart object
    print(f"\nimport from moto: {first['objectsPerSecond']} objects/s "
          f"({IMPORT_OBJECTS} objects in {first['seconds']:.2f}s)")
    check_listing_and_reads(gw, "imported", expected)

    again = run_import(gw, "old-s3", "imported")
    assert (again["imported"], again["updated"], again["unchanged"]) == (0, 0, IMPORT_OBJECTS)

    # Behind the gateway's back: one object overwritten, one deleted on the backend.
    native = aws_s3_moto.boto()
    changed, deleted = "docs/item-0003", "docs/item-0004"
    rewritten = b"rewritten natively, same size!" + b"!" * (len(expected[changed]) - 30)
    assert len(rewritten) == len(expected[changed])  # only the etag tells the change
    native.put_object(Bucket=source_bucket, Key=changed, Body=rewritten,
                      ContentType="text/csv", Metadata={"index": "3", "origin": "native"})
    native.delete_object(Bucket=source_bucket, Key=deleted)
    s3 = gw.client()
    for key in (changed, deleted):
        with pytest.raises(ClientError) as caught:  # neither the old bytes nor the new
            s3.get_object(Bucket="imported", Key=key)["Body"].read()
        assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] in (404, 500, 503)
    report = fsck(gw.env, "--location", "old-s3")
    old = next(r for r in report["locations"] if "old-s3" in r["name"])
    assert any(changed in line for line in old["changed"]), json.dumps(old)[:3000]
    assert any(deleted in line for line in old["missing"]), old
    assert report["exit"] == 1

    # Re-import picks the change and a new object up; a client's write is never touched.
    s3.put_object(Bucket="imported", Key="docs/item-0005", Body=b"overwrites an imported one")
    native.put_object(Bucket=source_bucket, Key="docs/new-1", Body=b"native new 1")
    s3.put_object(Bucket="imported", Key="docs/new-1", Body=b"a client's write")
    native.put_object(Bucket=source_bucket, Key="docs/new-2", Body=b"native new 2")
    third = run_import(gw, "old-s3", "imported")
    assert (third["imported"], third["updated"], third["kept"]) == (1, 1, 1)
    answer = s3.get_object(Bucket="imported", Key=changed)
    assert answer["Body"].read() == rewritten and answer["ContentType"] == "text/csv"
    assert s3.get_object(Bucket="imported", Key="docs/new-1")["Body"].read() == \
        b"a client's write"
    assert s3.get_object(Bucket="imported", Key="docs/new-2")["Body"].read() == b"native new 2"
    # The gateway owns what it imported: the overwritten original is collected on the backend.
    gw.settle()
    with pytest.raises(ClientError):
        native.head_object(Bucket=source_bucket, Key="docs/item-0005")


# --- Azurite --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def azure_source(azurite: Any) -> tuple[str, dict[str, bytes]]:
    """A container holding IMPORT_OBJECTS blobs under `legacy/` (the bucket's folder of a
    location without bucketMatch), put with the Azure SDK; one committed from blocks (no
    Content-MD5: the importer hashes it)."""
    from azure.storage.blob import BlobBlock, ContentSettings

    container = f"c{uuid.uuid4().hex[:20]}"
    expected = {f"docs/item-{i:04d}": body_of(i) for i in range(IMPORT_OBJECTS)}

    async def fill() -> None:
        async with azurite.container_client(container) as client:
            await client.create_container()
            limit = asyncio.Semaphore(32)

            async def put(key: str, data: bytes) -> None:
                i = int(key.rsplit("-", 1)[1])
                settings = ContentSettings(content_type=content_type_of(i))
                meta = {"index": str(i), "origin": "native"}
                async with limit:
                    blob = client.get_blob_client(f"legacy/{key}")
                    if i == 7:  # staged blocks, committed: no MD5 kept by Azure
                        await blob.stage_block("YmxvY2sx", data)
                        await blob.commit_block_list([BlobBlock("YmxvY2sx")],
                                                     content_settings=settings, metadata=meta)
                        return
                    await blob.upload_blob(data, content_settings=settings, metadata=meta)

            await asyncio.gather(*(put(k, v) for k, v in expected.items()))

    asyncio.run(fill())
    return container, expected


@pytest.mark.azure
def test_import_from_azurite(tmp_path_factory: pytest.TempPathFactory, azurite: Any,
                             azure_source: tuple[str, dict[str, bytes]]) -> None:
    container, expected = azure_source
    locations = {"old-azure": {"type": "azure", "legacyAwsBehavior": False,
                               "details": azurite.details(container)}}
    with start_gateway(tmp_path_factory.mktemp("import-azure"), locations,
                       config={"jobs": {"pollSeconds": 0.2}}) as gw:
        first = run_import(gw, "old-azure", "legacy")
        assert (first["state"], first["imported"]) == ("done", IMPORT_OBJECTS)
        assert first["hashed"] >= 1  # the blob committed from blocks
        print(f"\nimport from Azurite: {first['objectsPerSecond']} objects/s "
              f"({IMPORT_OBJECTS} objects in {first['seconds']:.2f}s, {first['hashed']} ETags "
              "computed)")
        check_listing_and_reads(gw, "legacy", expected)
        again = run_import(gw, "old-azure", "legacy", "--prefix", "docs/item-00")
        assert (again["imported"], again["unchanged"]) == (0, min(100, IMPORT_OBJECTS))


def test_import_refuses_what_cannot_be_imported(tmp_path: Path) -> None:
    with start_gateway(tmp_path) as gw:
        result = subprocess.run([sys.executable, "-m", "gateway", "import", "nowhere", "b",
                                 "--endpoint", gw.endpoint], env={**os.environ, **gw.env},
                                cwd=REPO, capture_output=True, text=True, timeout=60)
        assert result.returncode == 1 and "no location named 'nowhere'" in result.stderr
        # A file location names its files after hashes: nothing foreign to import there.
        result = subprocess.run([sys.executable, "-m", "gateway", "import", "us-east-1", "b",
                                 "--endpoint", gw.endpoint, "--interval", "0.2"],
                                env={**os.environ, **gw.env}, cwd=REPO, capture_output=True,
                                text=True, timeout=60)
        assert "nothing to import" in result.stdout + result.stderr


@pytest.mark.aws_s3
def test_import_resumes_after_the_gateway_is_killed(
        tmp_path: Path, aws_s3_moto: Any, moto_source: tuple[str, dict[str, bytes]]) -> None:
    bucket = moto_source[0]
    native = {key for page in aws_s3_moto.boto().get_paginator("list_objects_v2")
              .paginate(Bucket=bucket) for entry in page.get("Contents", [])
              if not PIECE_TOKEN.search(key := entry["Key"])}  # not the gateway's own pieces
    locations = {"old-s3": {"type": "aws_s3", "legacyAwsBehavior": False,
                            "details": aws_s3_moto.details(bucket, bucketMatch=True,
                                                           supportsVersioning=False)}}
    config = {"jobs": {"pollSeconds": 0.2}}

    def progress(gw: Gateway) -> dict[str, Any]:
        answer = requests.get(f"{gw.endpoint}/_/import", params={"bucket": "resumed"},
                              timeout=10)
        assert answer.status_code == 200, answer.text
        return answer.json()

    with start_gateway(tmp_path, locations, config=config) as gw:
        assert run_import(gw, "old-s3", "resumed", "--detach")["state"] == "running"
        eventually(lambda: progress(gw)["imported"] >= 4 * BATCH, timeout=60)  # pages saved
        gw.crash()  # SIGKILL mid-import: no chance to finish its page or its job
    with start_gateway(tmp_path, locations, config=config) as gw:
        before = progress(gw)
        assert before["state"] == "running" and before["cursor"]  # it stopped half-way
        eventually(lambda: progress(gw)["state"] == "done", timeout=120)
        final = progress(gw)
        # Resumed from the saved cursor: every object once; what the killed run committed
        # after its last save is found unchanged, never imported twice.
        assert final["imported"] + final["unchanged"] == len(native), (before, final)
        # Only the batch in flight when it was killed is seen again (unchanged), not the
        # pages saved before it.
        assert before["imported"] >= 4 * BATCH and final["unchanged"] <= BATCH, (before, final)
        keys = {entry["Key"] for page in gw.client().get_paginator("list_objects_v2")
                .paginate(Bucket="resumed") for entry in page.get("Contents", [])}
        assert keys == native, (keys ^ native, before, final)
