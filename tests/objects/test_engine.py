"""The object engine called directly with plain values, as a background job or admin command
calls it (no HTTP): SQLite metadata and a mem location. Each change answers a plain result and
publishes one ObjectEvent to the engine's subscribers."""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.config import LocationSpec, StorageSettings
from gateway.errors import S3Error
from gateway.locations import Locations
from gateway.metadata.base import BucketRecord
from gateway.metadata.sqlite import SQLiteStore
from gateway.objects import Engine
from gateway.objects.options import (
    CREATE,
    CREATED_COPY,
    CREATED_PUT,
    REMOVED_MARKER,
    CopyOptions,
    GetOptions,
    GetRange,
    ObjectEvent,
    PutOptions,
)

OWNER = "owner-id"


async def body(*chunks: bytes) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[Engine]:
    spec = LocationSpec(name="us-east-1", type="mem", legacy_aws_behavior=False, details={},
                        object_id="1")
    locations = Locations({"us-east-1": spec}, {}, {}, "locationConfig.json")
    await locations.open()
    metadata = SQLiteStore(tmp_path, durable=False)
    await metadata.open()
    engine = Engine(metadata, locations, StorageSettings(read_grace=0),
                    exclusive_store=True)
    await engine.start()
    yield engine
    await engine.stop()
    await metadata.close()
    await locations.close()


async def new_bucket(engine: Engine, name: str, **attrs: object) -> BucketRecord:
    bucket = BucketRecord(name=name, owner=OWNER, location="us-east-1", created=time.time(),
                          attrs=dict(attrs))
    assert await engine.metadata.create_bucket(bucket) is None
    return bucket


async def read_all(engine: Engine, bucket: BucketRecord, key: str, opts: GetOptions) -> bytes:
    read = await engine.read(bucket, key, opts)
    return b"".join([chunk async for chunk in read.chunks()])


async def test_put_read_copy_delete_with_events(engine: Engine) -> None:
    events: list[ObjectEvent] = []
    engine.subscribe(events.append)
    bucket = await new_bucket(engine, "plain", versioning="Enabled")
    result = await engine.put(bucket, "k", body(b"hello ", b"world"), 11,
                              PutOptions(owner=OWNER, storage_class="GLACIER",
                                         headers={"content-type": "text/plain"}))
    record = result.record
    assert record.etag == hashlib.md5(b"hello world").hexdigest()
    assert record.attrs["storage_class"] == "GLACIER" and record.version_id
    assert record.attrs["checksum"]["algorithm"] == "CRC64NVME"
    assert events[-1] == ObjectEvent(CREATED_PUT, "plain", "k", record.version_id,
                                     record.etag, 11, OWNER)
    assert await read_all(engine, bucket, "k", GetOptions()) == b"hello world"
    ranged = await engine.read(bucket, "k", GetOptions(range=GetRange(suffix=5)))
    assert (ranged.first, ranged.last, ranged.partial) == (6, 10, True)
    assert await read_all(engine, bucket, "k", GetOptions(range=GetRange(first=2, last=4))) \
        == b"llo"

    copied = await engine.copy(bucket, "copy", record, bucket, CopyOptions(owner="someone"))
    assert copied.record.owner == "someone" and "storage_class" not in copied.record.attrs
    assert copied.record.headers == {"content-type": "text/plain"}  # COPY keeps them
    assert events[-1].kind == CREATED_COPY
    assert await read_all(engine, bucket, "copy", GetOptions()) == b"hello world"

    marker = await engine.delete(bucket, "k", None, OWNER)
    assert marker is not None and marker.delete_marker
    assert events[-1].kind == REMOVED_MARKER and events[-1].version_id == marker.version_id
    with pytest.raises(S3Error) as exc:
        await engine.current(bucket, "k")
    assert exc.value.code == "NoSuchKey"
    # The older version stays readable by id.
    old = GetOptions(version_id=record.version_id)
    assert await read_all(engine, bucket, "k", old) == b"hello world"


async def test_refused_writes_change_nothing(engine: Engine) -> None:
    bucket = await new_bucket(engine, "refusals")
    await engine.put(bucket, "k", body(b"first"), 5, PutOptions(owner=OWNER))
    with pytest.raises(S3Error) as exc:  # If-None-Match: *
        await engine.put(bucket, "k", body(b"second"), 6, PutOptions(owner=OWNER, mode=CREATE))
    assert exc.value.code == "PreconditionFailed"
    with pytest.raises(S3Error) as exc:  # Content-MD5 of other bytes
        await engine.put(bucket, "k", body(b"third"), 5,
                         PutOptions(owner=OWNER, content_md5=hashlib.md5(b"x").digest()))
    assert exc.value.code == "BadDigest"

    def refuse(sums: dict[str, bytes]) -> None:  # a stated checksum that does not match
        assert base64.b64encode(sums["SHA256"])
        raise S3Error("BadDigest")

    with pytest.raises(S3Error):
        await engine.put(bucket, "k", body(b"fourth"), 6,
                         PutOptions(owner=OWNER, checksum_algorithm="SHA256", verify=refuse))
    with pytest.raises(S3Error) as exc:  # shorter than declared
        await engine.put(bucket, "k", body(b"fifth"), 9, PutOptions(owner=OWNER))
    assert exc.value.code == "IncompleteBody"
    assert await read_all(engine, bucket, "k", GetOptions()) == b"first"


async def test_multipart_parts_kept(engine: Engine) -> None:
    from gateway.objects.options import CompleteOptions, ListedPart, PartOptions

    bucket = await new_bucket(engine, "multi")
    upload = await engine.create_upload(bucket, "mp", PutOptions(owner=OWNER,
                                                                 storage_class="STANDARD_IA"))
    first = b"a" * (5 * 1024 * 1024)
    one = await engine.upload_part(upload, 1, body(first), len(first), PartOptions())
    two = await engine.upload_part(upload, 2, body(b"tail"), 4, PartOptions())
    done = await engine.complete_upload(
        upload, [ListedPart(1, one.etag), ListedPart(2, two.etag)], CompleteOptions())
    assert done.record.etag.endswith("-2")
    assert done.record.attrs["storage_class"] == "STANDARD_IA"
    part = await engine.read(bucket, "mp", GetOptions(part_number=2))
    assert (part.first, part.last, part.parts_count) == (len(first), len(first) + 3, 2)
    assert b"".join([c async for c in part.chunks()]) == b"tail"
    with pytest.raises(S3Error) as exc:
        await engine.read(bucket, "mp", GetOptions(part_number=3))
    assert (exc.value.code, exc.value.status) == ("InvalidPartNumber", 416)


async def test_a_decided_version_delete_spares_a_newer_write_of_that_version(
        engine: Engine) -> None:
    """A background job decides to delete the "null" version, then a client writes a new null
    version (versioning suspended) before the job acts: the job's delete, conditional on the
    record it decided on (only_if), must not remove the client's write."""
    bucket = await new_bucket(engine, "suspended", versioning="Suspended")
    decided = (await engine.put(bucket, "k", body(b"old"), 3, PutOptions(owner=OWNER))).record
    await engine.put(bucket, "k", body(b"client's"), 8, PutOptions(owner=OWNER))
    with pytest.raises(S3Error) as refused:
        await engine.delete(bucket, "k", "null", OWNER, only_if=decided)
    assert refused.value.code == "PreconditionFailed"
    assert await read_all(engine, bucket, "k", GetOptions()) == b"client's"
    # While it is still the decided record, the same delete goes through.
    current = await engine.current(bucket, "k")
    await engine.delete(bucket, "k", "null", OWNER, only_if=current)
    assert await engine.metadata.get_object(bucket.name, "k") is None
