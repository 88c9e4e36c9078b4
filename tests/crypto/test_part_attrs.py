"""PartRecord.attrs: an encrypted part's stream header lives there (not in its checksums), both
stores keep it, a database made before the column gets it on open, and a part stored before
(its header in checksums["sse-stream"]) still reads."""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.crypto.objects import ATTR, PART_SEGMENT, part_segment
from gateway.crypto.sse import segment_to_dict
from gateway.crypto.stream import Segment, StreamParams
from gateway.metadata.base import BucketRecord, MetadataStore, PartRecord, UploadRecord
from gateway.metadata.postgres import PostgresStore
from gateway.metadata.sqlite import SQLiteStore
from gateway.translators.base import Stored


def header() -> str:
    return str(segment_to_dict(Segment(StreamParams.new(), 1000))["header"])


def new_part(upload_id: str, number: int) -> PartRecord:
    return PartRecord(upload_id=upload_id, number=number, size=1000, etag="e" * 32,
                      last_modified=1.0, stored=Stored(location="us-east-1", key=f"p{number}",
                                                       size=1064))


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def store(request: pytest.FixtureRequest, tmp_path: Path
                ) -> AsyncIterator[tuple[MetadataStore, str]]:
    """A store with the parts table as an older gateway made it (no attrs column), reopened:
    the column is added. Yields the store and its backend name."""
    if request.param == "sqlite":
        first: MetadataStore = SQLiteStore(tmp_path)
        await first.open()
        await first.close()
        with sqlite3.connect(tmp_path / "metadata.sqlite3") as db:
            db.execute("ALTER TABLE parts DROP COLUMN attrs")
        store: MetadataStore = SQLiteStore(tmp_path)
    else:
        try:
            server = request.getfixturevalue("postgres_server")
        except pytest.FixtureLookupError:
            pytest.skip("the postgres fixture is not loaded (TEST_CLOUDS leaves out postgres)")
        dsn = server.create_database(f"parts{uuid.uuid4().hex[:8]}")
        first = PostgresStore(dsn, min_size=1, max_size=2)
        await first.open()
        await first.pool.execute("ALTER TABLE parts DROP COLUMN attrs")
        await first.close()
        store = PostgresStore(dsn, min_size=1, max_size=2)
    await store.open()
    try:
        yield store, request.param
    finally:
        await store.close()


async def test_part_attrs_kept_and_old_parts_read(store: tuple[MetadataStore, str]) -> None:
    metadata, _ = store
    await metadata.create_bucket(BucketRecord(name="b", owner="o", location="us-east-1",
                                              created=1.0))
    upload = UploadRecord(upload_id=uuid.uuid4().hex, bucket="b", key="k", initiated=1.0,
                          owner="o", location="us-east-1", backend_key="b/k",
                          backend_upload_id="be")
    await metadata.create_upload(upload)
    new, old = new_part(upload.upload_id, 1), new_part(upload.upload_id, 2)
    new.attrs[ATTR] = header()
    new.checksums["CRC32"] = "AAAAAA=="
    old.checksums[PART_SEGMENT] = header()  # where parts stored before attrs kept it
    for part in (new, old):
        assert await metadata.put_part(part) is None
    listed = await metadata.list_parts(upload.upload_id, 0, 10)
    assert listed == [new, old]
    assert listed[0].checksums == {"CRC32": "AAAAAA=="}  # no header among the checksums
    for part in listed:
        assert part_segment(part).plain_size == 1000
    assert segment_to_dict(part_segment(listed[0]))["header"] == new.attrs[ATTR]
    assert segment_to_dict(part_segment(listed[1]))["header"] == old.checksums[PART_SEGMENT]
