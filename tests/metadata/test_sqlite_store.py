"""SQLite-only properties of the store: durability settings and opening files written by an
older version of the schema."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import replace
from pathlib import Path

import pytest

from gateway.metadata.sqlite import SQLiteStore
from tests.metadata.test_store_contract import OWNER, T0, part, rec

# The schema before intents, garbage and upload states (as files in the field have it).
OLD_SCHEMA = """
CREATE TABLE buckets (
    name TEXT PRIMARY KEY, owner TEXT NOT NULL, location TEXT NOT NULL,
    created REAL NOT NULL, attrs TEXT NOT NULL DEFAULT '{}');
CREATE INDEX buckets_owner ON buckets(owner, name);
CREATE TABLE objects (
    bucket TEXT NOT NULL, key TEXT NOT NULL, size INTEGER NOT NULL, etag TEXT NOT NULL,
    last_modified REAL NOT NULL, location TEXT NOT NULL, pieces TEXT NOT NULL,
    owner TEXT NOT NULL, headers TEXT NOT NULL, user_meta TEXT NOT NULL, tags TEXT NOT NULL,
    attrs TEXT NOT NULL, version_id TEXT, delete_marker INTEGER NOT NULL DEFAULT 0,
    latest INTEGER NOT NULL DEFAULT 1, seq INTEGER NOT NULL,
    PRIMARY KEY (bucket, key, seq)) WITHOUT ROWID;
CREATE INDEX objects_current ON objects(bucket, key) WHERE latest = 1 AND delete_marker = 0;
CREATE INDEX objects_version ON objects(bucket, key, version_id);
CREATE TABLE uploads (
    upload_id TEXT PRIMARY KEY, bucket TEXT NOT NULL, key TEXT NOT NULL, initiated REAL NOT NULL,
    owner TEXT NOT NULL, location TEXT NOT NULL, backend_key TEXT NOT NULL,
    backend_upload_id TEXT NOT NULL, headers TEXT NOT NULL, user_meta TEXT NOT NULL,
    tags TEXT NOT NULL, attrs TEXT NOT NULL);
CREATE INDEX uploads_key ON uploads(bucket, key, upload_id);
CREATE INDEX uploads_backend ON uploads(location, backend_key);
CREATE TABLE parts (
    upload_id TEXT NOT NULL, number INTEGER NOT NULL, size INTEGER NOT NULL, etag TEXT NOT NULL,
    last_modified REAL NOT NULL, stored TEXT NOT NULL,
    PRIMARY KEY (upload_id, number)) WITHOUT ROWID;
"""


@pytest.mark.parametrize(("durable", "level"), [(True, 2), (False, 1)])  # FULL, NORMAL
async def test_durability_sets_synchronous(tmp_path: Path, durable: bool, level: int) -> None:
    store = SQLiteStore(tmp_path, durable=durable)
    await store.open()
    try:
        assert await store._run(lambda db: db.execute("PRAGMA synchronous").fetchone()[0]) == level
    finally:
        await store.close()


async def test_default_is_durable(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path)
    await store.open()
    try:
        assert await store._run(lambda db: db.execute("PRAGMA synchronous").fetchone()[0]) == 2
    finally:
        await store.close()


async def test_opens_a_file_of_the_old_schema(tmp_path: Path) -> None:
    old = sqlite3.connect(tmp_path / "metadata.sqlite3")
    old.executescript(OLD_SCHEMA)
    old.execute("INSERT INTO buckets VALUES ('bkt', ?, 'us-east-1', ?, '{\"acl\":1}')", (OWNER, T0))
    old.execute("INSERT INTO uploads VALUES ('u1', 'bkt', 'k', ?, ?, 'us-east-1', 'bk/k', 'be-u1', "
                "'{}', '{}', '{}', '{}')", (T0, OWNER))
    old.commit()
    old.close()
    for _ in range(2):  # a second open finds everything in place
        store = SQLiteStore(tmp_path)
        await store.open()
        try:
            up = await store.get_upload("u1")
            assert up is not None and up.state == "open"  # what every old upload was
            assert (await store.list_uploads("bkt", "", None, None, None, 10)).uploads == [up]
        finally:
            await store.close()
    store = SQLiteStore(tmp_path)
    await store.open()
    try:
        p = part("u1", 1)
        await store.put_part(p)
        assert await store.claim_upload("u1") is not None
        assert await store.finish_upload("u1", rec("k")) == ([p], None)
        assert await store.count_garbage() == 1  # the part the new object does not use
        intent = await store.add_intent("us-east-1", "bk/x")
        assert [i.id for i in await store.list_intents()] == [intent]
        bucket = await store.update_bucket_attrs("bkt", {"policy": "p"})
        assert bucket is not None and bucket.attrs == {"acl": 1, "policy": "p"}
        indexes = await store._run(lambda db: {r[0] for r in db.execute(
            "SELECT name FROM sqlite_master WHERE type='index' AND tbl_name='uploads'")})
        assert "uploads_order" in indexes and not {"uploads_key", "uploads_backend"} & indexes
    finally:
        await store.close()


async def test_parts_of_the_old_schema_read_without_checksums(tmp_path: Path) -> None:
    old = sqlite3.connect(tmp_path / "metadata.sqlite3")
    old.executescript(OLD_SCHEMA)
    old.execute("INSERT INTO buckets VALUES ('bkt', ?, 'us-east-1', ?, '{}')", (OWNER, T0))
    old.execute("INSERT INTO uploads VALUES ('u1', 'bkt', 'k', ?, ?, 'us-east-1', 'bk/k', 'be-u1', "
                "'{}', '{}', '{}', '{}')", (T0, OWNER))
    stored = part("u1", 1, "old").stored.to_dict()
    old.execute("INSERT INTO parts VALUES ('u1', 1, 5242880, 'md5old', ?, ?)",
                (T0 + 1, json.dumps(stored)))
    old.commit()
    old.close()
    store = SQLiteStore(tmp_path)
    await store.open()
    try:
        [found] = await store.list_parts("u1", 0, 10)
        assert found == part("u1", 1, "old") and found.checksums == {}
        newer = replace(part("u1", 2), checksums={"CRC32C": "AAAAAA=="})
        await store.put_part(newer)
        assert (await store.list_parts("u1", 1, 10)) == [newer]
    finally:
        await store.close()
