"""Fill the gateway's SQLite metadata with many keys directly through SQLiteStore (one bucket,
N object rows in one transaction), before the gateway starts: 1M PUTs would take the better
part of an hour here and measure PUT, not listing. The rows point at no data (listing never
reads it); GET of such a key would answer that its data is missing."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

from gateway.metadata.base import BucketRecord, ObjectRecord
from gateway.metadata.sqlite import SQLiteStore
from gateway.translators.base import Stored

REPO = Path(__file__).resolve().parent.parent


def owner_id() -> str:
    accounts = json.loads((REPO / "conf" / "authdata.json").read_text())["accounts"]
    return accounts[0]["canonicalID"]


def key_name(i: int) -> str:
    return f"dir{i // 10000:03d}/obj-{i:07d}"


async def _fill(directory: Path, bucket: str, count: int) -> float:
    store = SQLiteStore(directory)
    await store.open()
    owner = owner_id()
    started = time.perf_counter()
    try:
        await store.create_bucket(BucketRecord(bucket, owner, "us-east-1", time.time()))
        now = time.time()

        def record(i: int) -> ObjectRecord:
            return ObjectRecord(
                bucket=bucket, key=key_name(i), size=4096, etag="0" * 32, last_modified=now,
                location="us-east-1", pieces=[Stored("us-east-1", "00/" + "0" * 32, 4096)],
                owner=owner, headers={}, user_meta={}, tags={})

        def insert(db) -> None:
            # The store's own row writer (it follows the schema as it changes), all rows in
            # one transaction; fresh keys, so each is one insert.
            db.execute("BEGIN")
            try:
                for i in range(count):
                    store._insert_current(db, record(i))
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

        await store._run(insert)
    finally:
        await store.close()
    return time.perf_counter() - started


def fill(directory: Path, bucket: str, count: int) -> float:
    """Seconds it took."""
    return asyncio.run(_fill(directory, bucket, count))
