"""SQLite metadata: the embedded default. One connection owned by one worker thread, WAL mode;
every call runs there, so the event loop never blocks and writes never interleave."""

from __future__ import annotations

import asyncio
import copy
import json
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

from cachetools import LRUCache

from gateway.metadata.base import (
    BucketRecord,
    Listing,
    MetadataStore,
    ObjectRecord,
    PartRecord,
    UploadListing,
    UploadRecord,
    VersionListing,
)
from gateway.metadata.listing import KeyWalk, Rollup, prefix_end, version_listing
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
    attrs TEXT NOT NULL, version_id TEXT, delete_marker INTEGER NOT NULL DEFAULT 0,
    latest INTEGER NOT NULL DEFAULT 1, seq INTEGER NOT NULL,
    PRIMARY KEY (bucket, key, seq)) WITHOUT ROWID;
-- Listing reads only current, visible versions, in key order.
CREATE INDEX IF NOT EXISTS objects_current ON objects(bucket, key)
    WHERE latest = 1 AND delete_marker = 0;
CREATE INDEX IF NOT EXISTS objects_version ON objects(bucket, key, version_id);
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
                  "user_meta, tags, attrs, version_id, delete_marker, latest")
INSERT_OBJECT = (f"INSERT INTO objects ({OBJECT_COLUMNS}, seq) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,1,"
                 "(SELECT COALESCE(MAX(seq), 0) + 1 FROM objects WHERE bucket=? AND key=?))")
# Only current versions that are not delete markers are objects a listing shows.
CURRENT = "latest = 1 AND delete_marker = 0"
UPLOAD_COLUMNS = ("upload_id, bucket, key, initiated, owner, location, backend_key, "
                  "backend_upload_id, headers, user_meta, tags, attrs")


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def _pieces_json(pieces: list[Stored]) -> str:
    return _dumps([p.to_dict() for p in pieces])


def _object_row(obj: ObjectRecord) -> tuple[Any, ...]:
    return (obj.bucket, obj.key, obj.size, obj.etag, obj.last_modified, obj.location,
            _pieces_json(obj.pieces), obj.owner, _dumps(obj.headers),
            _dumps(obj.user_meta), _dumps(obj.tags), _dumps(obj.attrs), obj.version_id,
            int(obj.delete_marker))


def _dict(text: str) -> dict[str, Any]:
    # Most objects have no user metadata, tags or attrs: skip the JSON decoder for "{}".
    return {} if text == "{}" else json.loads(text)


def _object_from(row: tuple[Any, ...]) -> ObjectRecord:
    return ObjectRecord(
        bucket=row[0], key=row[1], size=row[2], etag=row[3], last_modified=row[4],
        location=row[5], pieces=[Stored.from_dict(p) for p in json.loads(row[6])], owner=row[7],
        headers=_dict(row[8]), user_meta=_dict(row[9]), tags=_dict(row[10]),
        attrs=_dict(row[11]), version_id=row[12], delete_marker=bool(row[13]),
        latest=bool(row[14]))


def _upload_row(up: UploadRecord) -> tuple[Any, ...]:
    return (up.upload_id, up.bucket, up.key, up.initiated, up.owner, up.location, up.backend_key,
            up.backend_upload_id, _dumps(up.headers), _dumps(up.user_meta), _dumps(up.tags),
            _dumps(up.attrs))


def _upload_from(row: tuple[Any, ...]) -> UploadRecord:
    return UploadRecord(*row[:8], headers=json.loads(row[8]), user_meta=json.loads(row[9]),
                        tags=json.loads(row[10]), attrs=json.loads(row[11]))


def _part_from(row: tuple[Any, ...]) -> PartRecord:
    return PartRecord(row[0], row[1], row[2], row[3], row[4], Stored.from_dict(json.loads(row[5])))


class SQLiteStore(MetadataStore):
    def __init__(self, directory: Path) -> None:
        self.path = directory / "metadata.sqlite3"
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite")
        self._db: sqlite3.Connection | None = None
        self._reader: sqlite3.Connection | None = None
        # Current versions of recently read keys, read and invalidated on the event loop only.
        self._current: LRUCache[tuple[str, str], ObjectRecord] = LRUCache(maxsize=20_000)
        # Bucket rows by name. Every request reads its bucket; a hit saves a hop to the SQLite
        # thread. Filled and invalidated only on that thread, in order with the writes; this
        # process is the only writer of the file (several gateways share PostgreSQL instead).
        self._buckets: dict[str, tuple[Any, ...]] = {}

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
        # A second, read-only connection for point reads (one indexed row), run right on the
        # event loop: a few tens of microseconds, cheaper than a hop to the writer thread. WAL
        # lets it read while the writer writes, and it sees every committed write.
        reader = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                                 cached_statements=256)
        reader.execute("PRAGMA query_only=1")
        reader.execute("PRAGMA busy_timeout=10000")
        self._reader = reader

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None
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
                self._buckets.pop(bucket.name, None)
                return None
            return self._bucket(db, bucket.name)

        return await self._run(_create)

    def _bucket(self, db: sqlite3.Connection, name: str) -> BucketRecord | None:
        row = db.execute("SELECT name, owner, location, created, attrs FROM buckets WHERE name=?",
                         (name,)).fetchone()
        if row is None:
            return None
        if len(self._buckets) >= 10000:
            self._buckets.clear()
        self._buckets[name] = row
        return BucketRecord(*row[:4], attrs=json.loads(row[4]))

    async def get_bucket(self, name: str) -> BucketRecord | None:
        row = self._buckets.get(name)
        if row is not None:  # a fresh record each time: callers may change attrs
            return BucketRecord(*row[:4], attrs=_dict(row[4]))
        return await self._run(lambda db: self._bucket(db, name))

    async def list_buckets(self, owner: str) -> list[BucketRecord]:
        def _list(db: sqlite3.Connection) -> list[BucketRecord]:
            rows = db.execute("SELECT name, owner, location, created, attrs FROM buckets "
                              "WHERE owner=? ORDER BY name", (owner,)).fetchall()
            return [BucketRecord(*r[:4], attrs=json.loads(r[4])) for r in rows]

        return await self._run(_list)

    async def update_bucket_attrs(self, name: str, attrs: dict[str, Any]) -> None:
        def _update(db: sqlite3.Connection) -> None:
            self._buckets.pop(name, None)
            db.execute("UPDATE buckets SET attrs=? WHERE name=?", (_dumps(attrs), name))

        await self._run(_update)

    async def delete_bucket(self, name: str) -> bool:
        def _delete(db: sqlite3.Connection) -> bool:
            self._buckets.pop(name, None)
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
    def _object(db: sqlite3.Connection, bucket: str, key: str, version_id: str | None = None,
                markers: bool = False) -> ObjectRecord | None:
        if version_id is None:
            where, args = "latest = 1", (bucket, key)
        elif version_id == "null":
            where, args = "version_id IS NULL", (bucket, key)
        else:
            where, args = "version_id = ?", (bucket, key, version_id)
        row = db.execute(f"SELECT {OBJECT_COLUMNS} FROM objects WHERE bucket=? AND key=? "
                         f"AND {where} ORDER BY seq DESC LIMIT 1", args).fetchone()
        if row is None:
            return None
        record = _object_from(row)
        return None if record.delete_marker and not markers else record

    @staticmethod
    def _insert_current(db: sqlite3.Connection, obj: ObjectRecord) -> ObjectRecord | None:
        """Make `obj` the key's current version; an unversioned write replaces the null one."""
        replaced = None
        if obj.version_id is None:
            replaced = SQLiteStore._object(db, obj.bucket, obj.key, "null", markers=True)
            db.execute("DELETE FROM objects WHERE bucket=? AND key=? AND version_id IS NULL",
                       (obj.bucket, obj.key))
        db.execute("UPDATE objects SET latest=0 WHERE bucket=? AND key=? AND latest=1",
                   (obj.bucket, obj.key))
        db.execute(INSERT_OBJECT, (*_object_row(obj), obj.bucket, obj.key))
        return replaced

    @staticmethod
    def _transaction(db: sqlite3.Connection, fn: Callable[[], T]) -> T:
        db.execute("BEGIN IMMEDIATE")
        try:
            result = fn()
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        return result

    async def put_object(self, obj: ObjectRecord) -> ObjectRecord | None:
        try:
            return await self._run(lambda db: self._transaction(
                db, lambda: self._insert_current(db, obj)))
        finally:
            self._forget(obj.bucket, obj.key)

    def _forget(self, bucket: str, key: str) -> None:
        """Drop a key's cached current version, on the event loop once its write has
        finished. A read that fills the cache runs on the loop in one synchronous step, so it
        can never put back a row older than the write this removal follows."""
        self._current.pop((bucket, key), None)

    async def get_object(self, bucket: str, key: str, version_id: str | None = None, *,
                         markers: bool = False) -> ObjectRecord | None:
        if version_id is None:
            record = self._current.get((bucket, key))
            if record is None:
                assert self._reader is not None
                record = self._object(self._reader, bucket, key, None, markers=True)
                if record is None:
                    return None
                self._current[(bucket, key)] = record
            if record.delete_marker and not markers:
                return None
            return copy.copy(record)  # callers may set fields on what they get
        assert self._reader is not None
        return self._object(self._reader, bucket, key, version_id, markers)

    async def delete_object(self, bucket: str, key: str,
                            version_id: str | None = None) -> ObjectRecord | None:
        try:
            return await self._delete_object(bucket, key, version_id)
        finally:
            self._forget(bucket, key)

    async def _delete_object(self, bucket: str, key: str,
                             version_id: str | None) -> ObjectRecord | None:
        def _delete() -> ObjectRecord | None:
            db = self._db
            assert db is not None
            old = self._object(db, bucket, key, version_id or "null", markers=True)
            if old is None:
                return None
            if old.version_id is None:
                db.execute("DELETE FROM objects WHERE bucket=? AND key=? AND version_id IS NULL",
                           (bucket, key))
            else:
                db.execute("DELETE FROM objects WHERE bucket=? AND key=? AND version_id=?",
                           (bucket, key, old.version_id))
            if old.latest:  # the next newest version becomes current
                db.execute("UPDATE objects SET latest=1 WHERE bucket=? AND key=? AND seq="
                           "(SELECT MAX(seq) FROM objects WHERE bucket=? AND key=?)",
                           (bucket, key, bucket, key))
            return old

        return await self._run(lambda db: self._transaction(db, _delete))

    async def update_object(self, bucket: str, key: str, expected_pieces: list[Stored],
                            changes: dict[str, Any]) -> ObjectRecord | None:
        try:
            return await self._update_object(bucket, key, expected_pieces, changes)
        finally:
            self._forget(bucket, key)

    async def _update_object(self, bucket: str, key: str, expected_pieces: list[Stored],
                             changes: dict[str, Any]) -> ObjectRecord | None:
        def _update(db: sqlite3.Connection) -> ObjectRecord | None:
            # The single connection thread makes this read-compare-write atomic. The pieces
            # name the version: every version's bytes sit at their own backend keys.
            row = db.execute(f"SELECT {OBJECT_COLUMNS}, seq FROM objects WHERE bucket=? AND "
                             "key=? AND pieces=? AND delete_marker=0 ORDER BY seq DESC LIMIT 1",
                             (bucket, key, _pieces_json(expected_pieces))).fetchone()
            if row is None:
                return None
            updated = replace(_object_from(row), **changes)
            db.execute("DELETE FROM objects WHERE bucket=? AND key=? AND seq=?",
                       (bucket, key, row[-1]))
            db.execute(f"INSERT INTO objects ({OBJECT_COLUMNS}, seq) "
                       "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                       (*_object_row(updated), int(updated.latest), row[-1]))
            return updated

        return await self._run(_update)

    async def list_objects(self, bucket: str, prefix: str, delimiter: str | None,
                           after: str | None, limit: int) -> Listing:
        def _list(db: sqlite3.Connection) -> Listing:
            walk: KeyWalk[tuple[Any, ...]] = KeyWalk(prefix, delimiter, limit, after)
            while (span := walk.query()) is not None:
                # One lower bound only: with both key>=floor and key>cursor SQLite seeks to
                # the floor and filters up to the cursor, so page N of a big bucket read N pages.
                bound, low = (">", span.cursor_key) if span.cursor_key is not None \
                    else (">=", span.floor)
                sql = (f"SELECT {OBJECT_COLUMNS} FROM objects INDEXED BY objects_current "
                       f"WHERE bucket=? AND {CURRENT} AND key{bound}?")
                args: list[Any] = [bucket, low]
                if span.end is not None:
                    sql += " AND key<?"
                    args.append(span.end)
                sql += " ORDER BY key LIMIT ?"
                args.append(span.limit)
                walk.feed([(row[1], None, row) for row in db.execute(sql, args).fetchall()])
            next_marker = walk.last[0] if walk.truncated and walk.last else None
            return Listing([_object_from(row) for row in walk.items], walk.prefixes,
                           walk.truncated, next_marker)

        return await self._run(_list)

    async def list_versions(self, bucket: str, prefix: str, delimiter: str | None,
                            key_marker: str | None, version_id_marker: str | None,
                            limit: int) -> VersionListing:
        def _list(db: sqlite3.Connection) -> VersionListing:
            # Resume after key_marker's version_id_marker, or after every version of key_marker.
            marker_seq = None
            if key_marker and version_id_marker:
                vid = None if version_id_marker == "null" else version_id_marker
                row = db.execute(
                    "SELECT seq FROM objects WHERE bucket=? AND key=? AND version_id IS ?",
                    (bucket, key_marker, vid)).fetchone()
                if row is None:
                    raise LookupError(version_id_marker)
                marker_seq = row[0]
            walk: KeyWalk[tuple[Any, ...]] = KeyWalk(prefix, delimiter, limit,
                                                     key_marker or None, marker_seq)
            while (span := walk.query()) is not None:
                sql = f"SELECT {OBJECT_COLUMNS}, seq FROM objects WHERE bucket=?"
                args: list[Any] = [bucket]
                if span.cursor_key is None:
                    sql += " AND key>=?"
                    args.append(span.floor)
                elif span.cursor_seq is None:
                    sql += " AND key>?"
                    args.append(span.cursor_key)
                else:  # the cursor key's older versions, then the keys after it
                    sql += " AND key>=? AND (key>? OR seq<?)"
                    args += [span.cursor_key, span.cursor_key, span.cursor_seq]
                if span.end is not None:
                    sql += " AND key<?"
                    args.append(span.end)
                sql += " ORDER BY key, seq DESC LIMIT ?"
                args.append(span.limit)
                walk.feed([(row[1], row[-1], row) for row in db.execute(sql, args).fetchall()])
            return version_listing(walk, _object_from)

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
            rollup: Rollup[UploadRecord] = Rollup(prefix, delimiter, limit)
            for row in db.execute(sql, args):
                upload = _upload_from(row)
                if not rollup.add(upload.key, upload):
                    break
            return UploadListing(rollup.items, rollup.prefixes, rollup.truncated)

        return await self._run(_list)

    async def count_uploads(self) -> int:
        return await self._run(lambda db: db.execute("SELECT COUNT(*) FROM uploads").fetchone()[0])

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
        try:
            return await self._finish_upload(upload_id, obj)
        finally:
            if obj is not None:
                self._forget(obj.bucket, obj.key)

    async def _finish_upload(self, upload_id: str, obj: ObjectRecord | None
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
                old = self._insert_current(db, obj) if obj is not None else None
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            return parts, old

        return await self._run(_finish)
