"""SQLite metadata: the embedded default. One connection owned by one worker thread, WAL mode;
every call runs there, so the event loop never blocks and writes never interleave."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

from gateway.metadata.base import (
    BucketRecord,
    Listing,
    MetadataStore,
    ObjectRecord,
    PartRecord,
    UploadListing,
    UploadRecord,
)
from gateway.translators.base import Stored

T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS buckets (
    name TEXT PRIMARY KEY, owner TEXT NOT NULL, location TEXT NOT NULL,
    created REAL NOT NULL, attrs TEXT NOT NULL DEFAULT '{}');
CREATE INDEX IF NOT EXISTS buckets_owner ON buckets(owner, name);
CREATE TABLE IF NOT EXISTS objects (
    bucket TEXT NOT NULL, key TEXT NOT NULL, size INTEGER NOT NULL, etag TEXT NOT NULL,
    last_modified REAL NOT NULL, location TEXT NOT NULL, pieces TEXT NOT NULL,
    owner TEXT NOT NULL, headers TEXT NOT NULL, user_meta TEXT NOT NULL, tags TEXT NOT NULL,
    attrs TEXT NOT NULL, PRIMARY KEY (bucket, key)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS uploads (
    upload_id TEXT PRIMARY KEY, bucket TEXT NOT NULL, key TEXT NOT NULL, initiated REAL NOT NULL,
    owner TEXT NOT NULL, location TEXT NOT NULL, backend_key TEXT NOT NULL,
    backend_upload_id TEXT NOT NULL, headers TEXT NOT NULL, user_meta TEXT NOT NULL,
    tags TEXT NOT NULL, attrs TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS uploads_key ON uploads(bucket, key, upload_id);
CREATE INDEX IF NOT EXISTS uploads_backend ON uploads(location, backend_key);
CREATE TABLE IF NOT EXISTS parts (
    upload_id TEXT NOT NULL, number INTEGER NOT NULL, size INTEGER NOT NULL, etag TEXT NOT NULL,
    last_modified REAL NOT NULL, stored TEXT NOT NULL,
    PRIMARY KEY (upload_id, number)) WITHOUT ROWID;
"""

OBJECT_COLUMNS = ("bucket, key, size, etag, last_modified, location, pieces, owner, headers, "
                  "user_meta, tags, attrs")
UPLOAD_COLUMNS = ("upload_id, bucket, key, initiated, owner, location, backend_key, "
                  "backend_upload_id, headers, user_meta, tags, attrs")


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def _object_row(obj: ObjectRecord) -> tuple[Any, ...]:
    return (obj.bucket, obj.key, obj.size, obj.etag, obj.last_modified, obj.location,
            _dumps([p.to_dict() for p in obj.pieces]), obj.owner, _dumps(obj.headers),
            _dumps(obj.user_meta), _dumps(obj.tags), _dumps(obj.attrs))


def _object_from(row: tuple[Any, ...]) -> ObjectRecord:
    return ObjectRecord(
        bucket=row[0], key=row[1], size=row[2], etag=row[3], last_modified=row[4],
        location=row[5], pieces=[Stored.from_dict(p) for p in json.loads(row[6])], owner=row[7],
        headers=json.loads(row[8]), user_meta=json.loads(row[9]), tags=json.loads(row[10]),
        attrs=json.loads(row[11]))


def _upload_row(up: UploadRecord) -> tuple[Any, ...]:
    return (up.upload_id, up.bucket, up.key, up.initiated, up.owner, up.location, up.backend_key,
            up.backend_upload_id, _dumps(up.headers), _dumps(up.user_meta), _dumps(up.tags),
            _dumps(up.attrs))


def _upload_from(row: tuple[Any, ...]) -> UploadRecord:
    return UploadRecord(*row[:8], headers=json.loads(row[8]), user_meta=json.loads(row[9]),
                        tags=json.loads(row[10]), attrs=json.loads(row[11]))


def _part_from(row: tuple[Any, ...]) -> PartRecord:
    return PartRecord(row[0], row[1], row[2], row[3], row[4], Stored.from_dict(json.loads(row[5])))


def prefix_end(prefix: str) -> str | None:
    """The smallest string greater than every string starting with `prefix` (None: no bound)."""
    while prefix:
        last = prefix[-1]
        if ord(last) < 0x10FFFF:
            return prefix[:-1] + chr(ord(last) + 1)
        prefix = prefix[:-1]
    return None


class SQLiteStore(MetadataStore):
    def __init__(self, directory: Path) -> None:
        self.path = directory / "metadata.sqlite3"
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite")
        self._db: sqlite3.Connection | None = None

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._in_thread, fn)

    def _in_thread(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        assert self._db is not None
        return fn(self._db)

    async def open(self) -> None:
        def _open() -> None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                                 cached_statements=256)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable across app crashes
            db.execute("PRAGMA busy_timeout=10000")
            db.executescript(SCHEMA)
            self._db = db

        await asyncio.get_running_loop().run_in_executor(self._executor, _open)

    async def close(self) -> None:
        if self._db is not None:
            await self._run(lambda db: db.close())
            self._db = None
        self._executor.shutdown(wait=True)

    async def ping(self) -> None:
        await self._run(lambda db: db.execute("SELECT 1").fetchone())

    # buckets ------------------------------------------------------------------------------
    async def create_bucket(self, bucket: BucketRecord) -> BucketRecord | None:
        def _create(db: sqlite3.Connection) -> BucketRecord | None:
            cur = db.execute(
                "INSERT OR IGNORE INTO buckets (name, owner, location, created, attrs) "
                "VALUES (?, ?, ?, ?, ?)",
                (bucket.name, bucket.owner, bucket.location, bucket.created, _dumps(bucket.attrs)))
            if cur.rowcount:
                return None
            return self._bucket(db, bucket.name)

        return await self._run(_create)

    @staticmethod
    def _bucket(db: sqlite3.Connection, name: str) -> BucketRecord | None:
        row = db.execute("SELECT name, owner, location, created, attrs FROM buckets WHERE name=?",
                         (name,)).fetchone()
        return BucketRecord(*row[:4], attrs=json.loads(row[4])) if row else None

    async def get_bucket(self, name: str) -> BucketRecord | None:
        return await self._run(lambda db: self._bucket(db, name))

    async def list_buckets(self, owner: str) -> list[BucketRecord]:
        def _list(db: sqlite3.Connection) -> list[BucketRecord]:
            rows = db.execute("SELECT name, owner, location, created, attrs FROM buckets "
                              "WHERE owner=? ORDER BY name", (owner,)).fetchall()
            return [BucketRecord(*r[:4], attrs=json.loads(r[4])) for r in rows]

        return await self._run(_list)

    async def update_bucket_attrs(self, name: str, attrs: dict[str, Any]) -> None:
        await self._run(lambda db: db.execute("UPDATE buckets SET attrs=? WHERE name=?",
                                              (_dumps(attrs), name)))

    async def delete_bucket(self, name: str) -> bool:
        def _delete(db: sqlite3.Connection) -> bool:
            db.execute("BEGIN IMMEDIATE")
            try:
                busy = db.execute(
                    "SELECT EXISTS(SELECT 1 FROM objects WHERE bucket=?) "
                    "OR EXISTS(SELECT 1 FROM uploads WHERE bucket=?)", (name, name)).fetchone()[0]
                if not busy:
                    db.execute("DELETE FROM buckets WHERE name=?", (name,))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            return not busy

        return await self._run(_delete)

    # objects ------------------------------------------------------------------------------
    @staticmethod
    def _object(db: sqlite3.Connection, bucket: str, key: str) -> ObjectRecord | None:
        row = db.execute(f"SELECT {OBJECT_COLUMNS} FROM objects WHERE bucket=? AND key=?",
                         (bucket, key)).fetchone()
        return _object_from(row) if row else None

    async def put_object(self, obj: ObjectRecord) -> ObjectRecord | None:
        def _put(db: sqlite3.Connection) -> ObjectRecord | None:
            # One thread owns the connection, so read-then-replace cannot interleave.
            old = self._object(db, obj.bucket, obj.key)
            db.execute(f"INSERT OR REPLACE INTO objects ({OBJECT_COLUMNS}) "
                       "VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", _object_row(obj))
            return old

        return await self._run(_put)

    async def get_object(self, bucket: str, key: str) -> ObjectRecord | None:
        return await self._run(lambda db: self._object(db, bucket, key))

    async def delete_object(self, bucket: str, key: str) -> ObjectRecord | None:
        def _delete(db: sqlite3.Connection) -> ObjectRecord | None:
            old = self._object(db, bucket, key)
            if old:
                db.execute("DELETE FROM objects WHERE bucket=? AND key=?", (bucket, key))
            return old

        return await self._run(_delete)

    async def update_object(self, bucket: str, key: str, expected_pieces: list[Stored],
                            changes: dict[str, Any]) -> ObjectRecord | None:
        def _update(db: sqlite3.Connection) -> ObjectRecord | None:
            # The single connection thread makes this read-compare-write atomic.
            current = self._object(db, bucket, key)
            if current is None or current.pieces != expected_pieces:
                return None
            updated = replace(current, **changes)
            db.execute(f"INSERT OR REPLACE INTO objects ({OBJECT_COLUMNS}) "
                       "VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", _object_row(updated))
            return updated

        return await self._run(_update)

    async def list_objects(self, bucket: str, prefix: str, delimiter: str | None,
                           after: str | None, limit: int) -> Listing:
        def _list(db: sqlite3.Connection) -> Listing:
            objects: list[ObjectRecord] = []
            prefixes: list[str] = []
            end = prefix_end(prefix)
            cursor = after if after is not None and after >= prefix else None
            start = prefix
            if delimiter and cursor is not None:
                cut = cursor.find(delimiter, len(prefix))
                if cut >= 0:  # the marker sits under a common prefix already returned: skip it
                    skip_to = prefix_end(cursor[: cut + len(delimiter)])
                    if skip_to is None:
                        return Listing([], [], False, None)
                    start, cursor = max(start, skip_to), None
            last: str | None = None
            while True:
                batch = limit - len(objects) - len(prefixes) + 1
                sql = f"SELECT {OBJECT_COLUMNS} FROM objects WHERE bucket=? AND key>=?"
                args: list[Any] = [bucket, start]
                if cursor is not None:
                    sql += " AND key>?"
                    args.append(cursor)
                if end is not None:
                    sql += " AND key<?"
                    args.append(end)
                sql += " ORDER BY key LIMIT ?"
                args.append(batch)
                rows = db.execute(sql, args).fetchall()
                if not rows:
                    return Listing(objects, prefixes, False, None)
                for row in rows:
                    key = row[1]
                    if len(objects) + len(prefixes) == limit:
                        return Listing(objects, prefixes, True, last)
                    if delimiter:
                        cut = key.find(delimiter, len(prefix))
                        if cut >= 0:
                            common = key[: cut + len(delimiter)]
                            prefixes.append(common)
                            last = common
                            # Seek past every key under this prefix instead of reading them.
                            skip_to = prefix_end(common)
                            if skip_to is None:
                                return Listing(objects, prefixes, False, None)
                            start, cursor = skip_to, None
                            break
                    objects.append(_object_from(row))
                    last = key
                    cursor = key
                else:
                    if len(rows) < batch:
                        return Listing(objects, prefixes, False, None)

        return await self._run(_list)

    # multipart ----------------------------------------------------------------------------
    async def create_upload(self, upload: UploadRecord) -> None:
        await self._run(lambda db: db.execute(
            f"INSERT INTO uploads ({UPLOAD_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            _upload_row(upload)))

    async def get_upload(self, upload_id: str) -> UploadRecord | None:
        def _get(db: sqlite3.Connection) -> UploadRecord | None:
            row = db.execute(f"SELECT {UPLOAD_COLUMNS} FROM uploads WHERE upload_id=?",
                             (upload_id,)).fetchone()
            return _upload_from(row) if row else None

        return await self._run(_get)

    async def list_uploads(self, bucket: str, prefix: str, delimiter: str | None,
                           key_marker: str | None, upload_id_marker: str | None,
                           limit: int) -> UploadListing:
        def _list(db: sqlite3.Connection) -> UploadListing:
            sql = f"SELECT {UPLOAD_COLUMNS} FROM uploads WHERE bucket=? AND key>=?"
            args: list[Any] = [bucket, prefix]
            end = prefix_end(prefix)
            if end is not None:
                sql += " AND key<?"
                args.append(end)
            if key_marker:
                if upload_id_marker:
                    sql += " AND (key>? OR (key=? AND upload_id>?))"
                    args += [key_marker, key_marker, upload_id_marker]
                else:
                    sql += " AND key>?"
                    args.append(key_marker)
            sql += " ORDER BY key, initiated, upload_id"
            uploads: list[UploadRecord] = []
            prefixes: list[str] = []
            for row in db.execute(sql, args):
                up = _upload_from(row)
                if delimiter:
                    cut = up.key.find(delimiter, len(prefix))
                    if cut >= 0:
                        common = up.key[: cut + len(delimiter)]
                        if not prefixes or prefixes[-1] != common:
                            if len(uploads) + len(prefixes) == limit:
                                return UploadListing(uploads, prefixes, True)
                            prefixes.append(common)
                        continue
                if len(uploads) + len(prefixes) == limit:
                    return UploadListing(uploads, prefixes, True)
                uploads.append(up)
            return UploadListing(uploads, prefixes, False)

        return await self._run(_list)

    async def has_upload_on(self, location: str, backend_key: str) -> bool:
        return await self._run(lambda db: bool(db.execute(
            "SELECT 1 FROM uploads WHERE location=? AND backend_key=? LIMIT 1",
            (location, backend_key)).fetchone()))

    async def put_part(self, part: PartRecord) -> PartRecord | None:
        def _put(db: sqlite3.Connection) -> PartRecord | None:
            if not db.execute("SELECT 1 FROM uploads WHERE upload_id=?",
                              (part.upload_id,)).fetchone():
                raise LookupError(part.upload_id)
            row = db.execute("SELECT upload_id, number, size, etag, last_modified, stored "
                             "FROM parts WHERE upload_id=? AND number=?",
                             (part.upload_id, part.number)).fetchone()
            db.execute("INSERT OR REPLACE INTO parts VALUES (?,?,?,?,?,?)",
                       (part.upload_id, part.number, part.size, part.etag, part.last_modified,
                        _dumps(part.stored.to_dict())))
            return _part_from(row) if row else None

        return await self._run(_put)

    async def list_parts(self, upload_id: str, after: int, limit: int) -> list[PartRecord]:
        def _list(db: sqlite3.Connection) -> list[PartRecord]:
            rows = db.execute("SELECT upload_id, number, size, etag, last_modified, stored "
                              "FROM parts WHERE upload_id=? AND number>? ORDER BY number LIMIT ?",
                              (upload_id, after, limit)).fetchall()
            return [_part_from(r) for r in rows]

        return await self._run(_list)

    async def finish_upload(self, upload_id: str, obj: ObjectRecord | None
                            ) -> tuple[list[PartRecord], ObjectRecord | None] | None:
        def _finish(db: sqlite3.Connection) -> tuple[list[PartRecord], ObjectRecord | None] | None:
            db.execute("BEGIN IMMEDIATE")
            try:
                if not db.execute("SELECT 1 FROM uploads WHERE upload_id=?",
                                  (upload_id,)).fetchone():
                    db.execute("ROLLBACK")
                    return None
                parts = [_part_from(r) for r in db.execute(
                    "SELECT upload_id, number, size, etag, last_modified, stored FROM parts "
                    "WHERE upload_id=? ORDER BY number", (upload_id,))]
                db.execute("DELETE FROM parts WHERE upload_id=?", (upload_id,))
                db.execute("DELETE FROM uploads WHERE upload_id=?", (upload_id,))
                old = None
                if obj is not None:
                    old = self._object(db, obj.bucket, obj.key)
                    db.execute(f"INSERT OR REPLACE INTO objects ({OBJECT_COLUMNS}) "
                               "VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", _object_row(obj))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            return parts, old

        return await self._run(_finish)
