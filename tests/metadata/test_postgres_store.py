"""PostgreSQL-only properties of the store: what the contract cannot see from outside (locks
held across a transaction, the schema and its indexes, concurrent start-ups)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace

import asyncpg
import pytest

from gateway.metadata.base import BucketGone, BucketRecord, ObjectRecord
from gateway.metadata.postgres import LOCK_BUCKET, PostgresStore
from tests.metadata.conftest import PG_PARAMS, pg_dsn
from tests.metadata.test_store_contract import OWNER, T0, part, rec, upload

pytestmark = pytest.mark.postgres


@pytest.fixture(params=PG_PARAMS)
def dsn(request: pytest.FixtureRequest) -> str:
    return pg_dsn(request, "pgstore", request.param)


@pytest.fixture
async def stores(dsn: str) -> AsyncIterator[list[PostgresStore]]:
    """Two stores on one clean database: two gateway processes."""
    opened = [PostgresStore(dsn, min_size=1, max_size=4) for _ in range(2)]
    for store in opened:
        await store.open()
    await opened[0].pool.execute(
        "TRUNCATE buckets, objects, uploads, parts, intents, garbage")
    yield opened
    for store in opened:
        await store.close()


@asynccontextmanager
async def write_in_flight(store: PostgresStore, obj: ObjectRecord) -> AsyncIterator[None]:
    """An object write done (locks taken, rows written) but not committed until the block
    ends: what put_object and finish_upload run, held open."""
    async with store.pool.acquire() as conn, conn.transaction():
        await store._insert_current(conn, obj)
        yield


async def test_delete_bucket_waits_for_a_write_in_flight(stores: list[PostgresStore]) -> None:
    a, b = stores
    await a.create_bucket(BucketRecord("bkt", OWNER, "us-east-1", T0))
    async with write_in_flight(a, rec("k")):
        delete = asyncio.create_task(b.delete_bucket("bkt"))
        await asyncio.sleep(0.3)
        assert not delete.done()  # it waits for the uncommitted object...
    assert await asyncio.wait_for(delete, 5) is False  # ...and then sees it
    assert await b.get_bucket("bkt") is not None


async def test_locks_are_rows_not_advisory_locks(stores: list[PostgresStore]) -> None:
    """Distributed PostgreSQL-compatible engines (CockroachDB, YugabyteDB) have no advisory
    locks: a write in flight, a guarded delete and a completion hold row locks only."""
    a, b = stores
    await a.create_bucket(BucketRecord("bkt", OWNER, "us-east-1", T0))
    async with write_in_flight(a, rec("k")):
        waiting = asyncio.create_task(b.put_object(rec("k")))
        await asyncio.sleep(0.3)
        assert not waiting.done()  # the key lock holds...
        kinds = {row[0] for row in await b.pool.fetch("SELECT DISTINCT locktype FROM pg_locks")}
        assert "advisory" not in kinds, kinds
        assert "transactionid" in kinds  # ...as a wait on the holder's row lock
    await asyncio.wait_for(waiting, 5)


async def test_write_after_delete_bucket_waits_for_it(stores: list[PostgresStore]) -> None:
    a, b = stores
    await a.create_bucket(BucketRecord("bkt", OWNER, "us-east-1", T0))
    async with a.pool.acquire() as conn, conn.transaction():
        # what delete_bucket holds while it checks and deletes
        await conn.execute(LOCK_BUCKET, "bkt")
        put = asyncio.create_task(b.put_object(rec("k")))
        upload_task = asyncio.create_task(b.create_upload(upload("k2")))
        await asyncio.sleep(0.3)
        assert not put.done() and not upload_task.done()
    await asyncio.wait_for(asyncio.gather(put, upload_task), 5)


async def test_writes_to_other_keys_do_not_wait(stores: list[PostgresStore]) -> None:
    a, b = stores
    await a.create_bucket(BucketRecord("bkt", OWNER, "us-east-1", T0))
    async with write_in_flight(a, rec("k1")):
        await asyncio.wait_for(b.put_object(rec("k2")), 2)  # same bucket, other key: no wait
        await asyncio.wait_for(b.delete_object("bkt", "k2"), 2)
        same_key = asyncio.create_task(b.put_object(rec("k1")))
        await asyncio.sleep(0.3)
        assert not same_key.done()  # the same key queues
    replaced = await asyncio.wait_for(same_key, 5)
    assert replaced is not None  # it saw the committed first write and replaced it
    async with write_in_flight(a, rec("k1")):
        deleting = asyncio.create_task(b.delete_object("bkt", "k1"))
        await asyncio.sleep(0.3)
        assert not deleting.done()  # so do deletes
    assert await asyncio.wait_for(deleting, 5) is not None


@pytest.mark.parametrize("server", PG_PARAMS)
async def test_concurrent_open_creates_the_schema_once(request: pytest.FixtureRequest,
                                                       server: str) -> None:
    dsn = pg_dsn(request, f"fresh_{uuid.uuid4().hex[:8]}", server)
    stores = [PostgresStore(dsn, min_size=1, max_size=2) for _ in range(6)]
    await asyncio.gather(*(s.open() for s in stores))
    try:
        await stores[0].ping()
        tables = await stores[0].pool.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() ORDER BY 1")
        # (other features add tables of their own: the job queue's, the accounts'...)
        assert {"buckets", "garbage", "intents", "objects", "parts", "uploads", "jobs",
                "job_totals"} <= {t[0] for t in tables}
    finally:
        for store in stores:
            await store.close()
    again = PostgresStore(dsn)  # and a restart finds it in place
    await again.open()
    await again.close()


async def test_keys_are_ordered_by_bytes_whatever_the_database_collation(
        stores: list[PostgresStore]) -> None:
    a, _ = stores
    # The test database's default collation is ICU en-US when available (tests/clouds): there
    # "a" < "B", while bytes say "B" < "a". The store's order must not depend on it.
    linguistic = await a.pool.fetchval("SELECT 'a' < 'B'")
    await a.create_bucket(BucketRecord("bkt", OWNER, "us-east-1", T0))
    for key in ["a", "B", "é", "Z", "日"]:
        await a.put_object(rec(key))
    listing = await a.list_objects("bkt", "", None, None, 10)
    assert [o.key for o in listing.objects] == ["B", "Z", "a", "é", "日"]
    if not linguistic:
        pytest.skip("the server has no ICU: the database collation is byte order already")


async def test_listing_is_served_by_the_index(stores: list[PostgresStore]) -> None:
    a, _ = stores
    now = time.time()
    # every other key ends in a delete marker, which the listing index leaves out
    rows = [("bkt", f"k/{i:05d}", 1, "e", now, "l", "[]", OWNER, "{}", "{}", "{}", "{}", None,
             i % 2 == 1, True, 1) for i in range(5000)]
    await a.pool.copy_records_to_table("objects", records=rows, columns=[
        "bucket", "key", "size", "etag", "last_modified", "location", "pieces", "owner",
        "headers", "user_meta", "tags", "attrs", "version_id", "delete_marker", "latest", "seq"])
    await a.pool.execute("ANALYZE objects")
    plan = "\n".join(r[0] for r in await a.pool.fetch(
        "EXPLAIN SELECT bucket, key FROM objects WHERE bucket=$1 AND latest AND NOT "
        "delete_marker AND key>=$2 AND key<$3 ORDER BY key LIMIT $4", "bkt", "k/", "k0", 1001))
    assert "objects_current" in plan and "Sort" not in plan, plan


async def test_one_latest_version_per_key_is_enforced(stores: list[PostgresStore]) -> None:
    a, _ = stores
    await a.put_object(rec("k", "v1"))
    with pytest.raises(asyncpg.UniqueViolationError):
        await a.pool.execute("UPDATE objects SET latest=TRUE WHERE key='k'")
        await a.pool.execute(
            "INSERT INTO objects SELECT bucket, key, size, etag, last_modified, location, "
            "pieces, owner, headers, user_meta, tags, attrs, 'v2', delete_marker, TRUE, seq + 1 "
            "FROM objects WHERE key='k'")


@pytest.mark.parametrize("server", PG_PARAMS)
async def test_opens_a_database_of_the_old_schema(request: pytest.FixtureRequest,
                                                  server: str) -> None:
    """A database made by the version before intents, garbage and upload states: open()
    adds what is missing and replaces the old functions (no stale overloads left)."""
    dsn = pg_dsn(request, f"old_{uuid.uuid4().hex[:8]}", server)
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(OLD_SCHEMA)
        await conn.execute(
            "INSERT INTO buckets VALUES ('bkt', $1, 'us-east-1', $2, '{}')", OWNER, T0)
        await conn.execute(
            "INSERT INTO uploads VALUES ('u1', 'bkt', 'k', $1, $2, 'us-east-1', 'bk/k', 'be-u1', "
            "'{}', '{}', '{}', '{}')", T0, OWNER)
    finally:
        await conn.close()
    for _ in range(2):  # and a second open finds everything in place
        store = PostgresStore(dsn, min_size=1, max_size=2)
        await store.open()
        try:
            up = await store.get_upload("u1")
            assert up is not None and up.state == "open"
            functions = await store.pool.fetch(
                "SELECT proname, pronargs FROM pg_proc WHERE proname LIKE 's3gw_%' ORDER BY 1")
            assert [(f[0], f[1]) for f in functions] == [
                ("s3gw_delete_object", 6), ("s3gw_drop_pieces", 3), ("s3gw_expect", 3),
                ("s3gw_put_object", 19)]
            indexes = {r[0] for r in await store.pool.fetch(
                "SELECT indexname FROM pg_indexes WHERE tablename='uploads'")}
            assert "uploads_order" in indexes and not {"uploads_key", "uploads_backend"} & indexes
        finally:
            await store.close()
    store = PostgresStore(dsn, min_size=1, max_size=2)
    await store.open()
    try:
        p = replace(part("u1", 1), checksums={"CRC32C": "AAAAAA=="})  # the column added
        await store.put_part(p)
        assert await store.list_parts("u1", 0, 10) == [p]
        assert await store.claim_upload("u1") is not None
        assert await store.finish_upload("u1", rec("k")) == ([p], None)
        assert await store.count_garbage() == 1
        intent = await store.add_intent("us-east-1", "bk/x")
        await store.put_object(rec("k"), intent=intent, bucket_created=T0)
        assert await store.list_intents() == []
    finally:
        await store.close()


async def test_put_object_bucket_check_waits_for_a_delete_in_flight(
        stores: list[PostgresStore]) -> None:
    """A put checked against the bucket's incarnation while delete_bucket holds the bucket:
    it waits, then sees the bucket gone (the check runs after the lock, on a fresh snapshot)."""
    a, b = stores
    bucket = BucketRecord("bkt", OWNER, "us-east-1", T0)
    await a.create_bucket(bucket)
    async with a.pool.acquire() as conn, conn.transaction():
        await conn.execute(LOCK_BUCKET, "bkt")
        await conn.execute("DELETE FROM buckets WHERE name='bkt'")
        put = asyncio.create_task(b.put_object(rec("k"), bucket_created=T0))
        await asyncio.sleep(0.3)
        assert not put.done()
    with pytest.raises(BucketGone):
        await asyncio.wait_for(put, 5)
    assert await b.get_object("bkt", "k") is None


OLD_SCHEMA = """
CREATE TABLE buckets (
    name TEXT COLLATE "C" PRIMARY KEY, owner TEXT NOT NULL, location TEXT NOT NULL,
    created DOUBLE PRECISION NOT NULL, attrs TEXT NOT NULL DEFAULT '{}');
CREATE TABLE objects (
    bucket TEXT COLLATE "C" NOT NULL, key TEXT COLLATE "C" NOT NULL, size BIGINT NOT NULL,
    etag TEXT NOT NULL, last_modified DOUBLE PRECISION NOT NULL, location TEXT NOT NULL,
    pieces TEXT NOT NULL, owner TEXT NOT NULL, headers TEXT NOT NULL, user_meta TEXT NOT NULL,
    tags TEXT NOT NULL, attrs TEXT NOT NULL, version_id TEXT,
    delete_marker BOOLEAN NOT NULL DEFAULT FALSE, latest BOOLEAN NOT NULL DEFAULT TRUE,
    seq BIGINT NOT NULL, PRIMARY KEY (bucket, key, seq));
CREATE TABLE uploads (
    upload_id TEXT COLLATE "C" PRIMARY KEY, bucket TEXT COLLATE "C" NOT NULL,
    key TEXT COLLATE "C" NOT NULL, initiated DOUBLE PRECISION NOT NULL, owner TEXT NOT NULL,
    location TEXT NOT NULL, backend_key TEXT NOT NULL, backend_upload_id TEXT NOT NULL,
    headers TEXT NOT NULL, user_meta TEXT NOT NULL, tags TEXT NOT NULL, attrs TEXT NOT NULL);
CREATE INDEX uploads_key ON uploads(bucket, key COLLATE "C", upload_id);
CREATE INDEX uploads_backend ON uploads(location, backend_key);
CREATE TABLE parts (
    upload_id TEXT COLLATE "C" NOT NULL, number INTEGER NOT NULL, size BIGINT NOT NULL,
    etag TEXT NOT NULL, last_modified DOUBLE PRECISION NOT NULL, stored TEXT NOT NULL,
    PRIMARY KEY (upload_id, number));
-- the old functions' signatures (bodies do not matter here)
CREATE FUNCTION s3gw_put_object(
    TEXT, TEXT, BIGINT, TEXT, DOUBLE PRECISION, TEXT, TEXT, TEXT, TEXT, TEXT, TEXT, TEXT, TEXT,
    BOOLEAN) RETURNS SETOF objects LANGUAGE sql AS 'SELECT * FROM objects WHERE FALSE';
CREATE FUNCTION s3gw_delete_object(TEXT, TEXT, TEXT) RETURNS SETOF objects LANGUAGE sql
    AS 'SELECT * FROM objects WHERE FALSE';
-- and those of the version that took advisory locks
CREATE FUNCTION s3gw_put_object(TEXT, TEXT, BIGINT, TEXT, DOUBLE PRECISION, TEXT, TEXT, TEXT,
    TEXT, TEXT, TEXT, TEXT, TEXT, BOOLEAN, BIGINT, DOUBLE PRECISION, DOUBLE PRECISION, TEXT)
    RETURNS SETOF objects LANGUAGE sql AS 'SELECT * FROM objects WHERE FALSE';
CREATE FUNCTION s3gw_delete_object(TEXT, TEXT, TEXT, DOUBLE PRECISION, TEXT)
    RETURNS SETOF objects LANGUAGE sql AS 'SELECT * FROM objects WHERE FALSE';
"""
