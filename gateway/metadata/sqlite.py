"""SQLite metadata: the embedded default. One connection owned by one worker thread, WAL mode;
every call runs there, so the event loop never blocks and writes never interleave: each method
is one transaction on that thread, which makes every check-then-write in it atomic.

Durability: `durable=True` (the default) commits with synchronous=FULL, so an acknowledged write
survives power loss; `durable=False` uses NORMAL (WAL: survives a crash of the process, may lose
the last commits on power loss or an OS crash).
"""

from __future__ import annotations

import asyncio
import copy
import fcntl
import json
import logging
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Collection
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

from cachetools import LRUCache

from gateway.errors import MetadataUnavailable
from gateway.metadata.base import (
    AccessKeyRow,
    AccountConflict,
    AccountRow,
    BucketGone,
    BucketRecord,
    ConditionFailed,
    GarbageRecord,
    Guard,
    IntentRecord,
    JobRecord,
    Listing,
    LocationTaken,
    MetadataStore,
    ObjectRecord,
    PartRecord,
    UploadListing,
    UploadRecord,
    VersionListing,
)
from gateway.metadata.ledger import (
    dropped_pieces,
    intent_garbage,
    merge_attrs,
    part_garbage,
    upload_garbage,
)
from gateway.metadata.listing import KeyWalk, UploadWalk, version_listing
from gateway.translators.base import Stored

T = TypeVar("T")
log = logging.getLogger("gateway.metadata.sqlite")


def _unavailable(exc: BaseException) -> MetadataUnavailable | None:
    """SQLite's "database is locked" after busy_timeout (another process held the write lock
    that long: a worker, the accounts CLI) as MetadataUnavailable, as PostgreSQL's outages
    (gateway/metadata/postgres.py Pool): 503, the client retries; the transaction was rolled
    back. None for any other error."""
    if not (isinstance(exc, sqlite3.OperationalError) and getattr(exc, "sqlite_errorcode", 0)
            & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)):
        return None
    log.warning("metadata store unavailable (requests answer 503): %s", exc)
    unavailable = MetadataUnavailable(f"SQLite: {exc}")
    unavailable.__cause__ = exc
    return unavailable

SCHEMA = """
CREATE TABLE IF NOT EXISTS buckets (
    name TEXT PRIMARY KEY, owner TEXT NOT NULL, location TEXT NOT NULL,
    created REAL NOT NULL, attrs TEXT NOT NULL DEFAULT '{}');
CREATE INDEX IF NOT EXISTS buckets_owner ON buckets(owner, name);
CREATE INDEX IF NOT EXISTS buckets_location ON buckets(location);
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
    tags TEXT NOT NULL, attrs TEXT NOT NULL, state TEXT NOT NULL DEFAULT 'open');
-- ListMultipartUploads order: seeks, never sorts.
CREATE INDEX IF NOT EXISTS uploads_order ON uploads(bucket, key, initiated, upload_id);
DROP INDEX IF EXISTS uploads_key;
DROP INDEX IF EXISTS uploads_backend;
CREATE TABLE IF NOT EXISTS parts (
    upload_id TEXT NOT NULL, number INTEGER NOT NULL, size INTEGER NOT NULL, etag TEXT NOT NULL,
    last_modified REAL NOT NULL, stored TEXT NOT NULL, checksums TEXT NOT NULL DEFAULT '{}',
    attrs TEXT NOT NULL DEFAULT '{}',
    PRIMARY KEY (upload_id, number)) WITHOUT ROWID;
-- AUTOINCREMENT: an id is never reused, so a late abandon_intent(id) or drop_garbage(id)
-- can never hit a newer row.
CREATE TABLE IF NOT EXISTS intents (
    id INTEGER PRIMARY KEY AUTOINCREMENT, location TEXT NOT NULL, key TEXT NOT NULL,
    created REAL NOT NULL);
CREATE INDEX IF NOT EXISTS intents_created ON intents(created);
-- not_before is 0 until a removal failed: new rows are due at once, whatever the clock says.
CREATE TABLE IF NOT EXISTS garbage (
    id INTEGER PRIMARY KEY AUTOINCREMENT, location TEXT NOT NULL, kind TEXT NOT NULL,
    data TEXT NOT NULL, added REAL NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
    not_before REAL NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS garbage_due ON garbage(not_before, id);
"""

# --- background jobs (gateway/jobs/): the queue's tables ------------------------------------
# One pending-or-running job per (kind, job_key); failed jobs stay for the operator until a new
# job of their key replaces them. job_totals counts finished jobs (progress for /metrics).
JOBS_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, job_key TEXT NOT NULL,
    bucket TEXT NOT NULL, data TEXT NOT NULL, state TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0, created REAL NOT NULL,
    not_before REAL NOT NULL DEFAULT 0, worker TEXT, lease_until REAL NOT NULL DEFAULT 0,
    error TEXT);
CREATE UNIQUE INDEX IF NOT EXISTS jobs_active ON jobs(kind, job_key)
    WHERE state IN ('pending', 'running');
CREATE INDEX IF NOT EXISTS jobs_due ON jobs(state, not_before, id);
CREATE TABLE IF NOT EXISTS job_totals (
    kind TEXT NOT NULL, outcome TEXT NOT NULL, count INTEGER NOT NULL,
    PRIMARY KEY (kind, outcome)) WITHOUT ROWID;
"""
SCHEMA += JOBS_SCHEMA
JOB_COLUMNS = ("id, kind, job_key, bucket, data, state, attempts, created, not_before, worker, "
               "lease_until, error")
# --- end of background jobs ------------------------------------------------------------------

# --- accounts and access keys at runtime (gateway/accounts.py) ------------------------------
# account_changes holds one counter, bumped by every change in the same transaction: gateways
# poll it and reload the rows only when it moved. Secrets are sealed (never plain text).
ACCOUNTS_SCHEMA = """
CREATE TABLE IF NOT EXISTS accounts (
    name TEXT PRIMARY KEY, email TEXT NOT NULL UNIQUE, arn TEXT NOT NULL,
    canonical_id TEXT NOT NULL UNIQUE, shortid TEXT NOT NULL UNIQUE, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS access_keys (
    access TEXT PRIMARY KEY, account TEXT NOT NULL, secret TEXT, enabled INTEGER NOT NULL,
    created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS account_changes (
    id INTEGER PRIMARY KEY CHECK (id = 1), counter INTEGER NOT NULL);
INSERT OR IGNORE INTO account_changes (id, counter) VALUES (1, 0);
"""
SCHEMA += ACCOUNTS_SCHEMA
BUMP_ACCOUNTS = "UPDATE account_changes SET counter = counter + 1 WHERE id = 1"
# --- end of accounts -------------------------------------------------------------------------

OBJECT_COLUMNS = ("bucket, key, size, etag, last_modified, location, pieces, owner, headers, "
                  "user_meta, tags, attrs, version_id, delete_marker, latest")
INSERT_OBJECT = (f"INSERT INTO objects ({OBJECT_COLUMNS}, seq) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,1,"
                 "(SELECT COALESCE(MAX(seq), 0) + 1 FROM objects WHERE bucket=? AND key=?))")
# Only current versions that are not delete markers are objects a listing shows.
CURRENT = "latest = 1 AND delete_marker = 0"
UPLOAD_COLUMNS = ("upload_id, bucket, key, initiated, owner, location, backend_key, "
                  "backend_upload_id, headers, user_meta, tags, attrs, state")
PART_COLUMNS = "upload_id, number, size, etag, last_modified, stored, checksums, attrs"
BUCKET_COLUMNS = "name, owner, location, created, attrs"
GARBAGE_COLUMNS = "id, location, kind, data, added, attempts"
# referenced_pieces reads this many rows per hop to the writer thread.
PAGE = 500


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
            _dumps(up.attrs), up.state)


def _upload_from(row: tuple[Any, ...]) -> UploadRecord:
    return UploadRecord(*row[:8], headers=json.loads(row[8]), user_meta=json.loads(row[9]),
                        tags=json.loads(row[10]), attrs=json.loads(row[11]), state=row[12])


def _part_from(row: tuple[Any, ...]) -> PartRecord:
    return PartRecord(row[0], row[1], row[2], row[3], row[4], Stored.from_dict(json.loads(row[5])),
                      _dict(row[6]), _dict(row[7]))


def _garbage_from(row: tuple[Any, ...]) -> GarbageRecord:
    return GarbageRecord(row[0], row[1], row[2], json.loads(row[3]), row[4], row[5])


def _job_from(row: tuple[Any, ...]) -> JobRecord:  # background jobs
    return JobRecord(row[0], row[1], row[2], row[3], json.loads(row[4]), row[5], row[6], row[7],
                     row[8], row[9], row[10], row[11])


class StoreInUse(Exception):
    """Another gateway holds this SQLite store; the message is one line naming it."""


def claim_store(directory: Path, wait: float = 30.0) -> int:
    """One gateway per SQLite store: an flock on `gateway.lock` beside the database, taken
    by the serving process and, with several workers, inherited by each fork, so it is held
    until the last of them is gone. Start-up recovery (stale intents, crashed runs' job
    claims) is only safe while it is held. A gateway whose previous run is still stopping
    (workers draining after their parent was killed -9) waits up to `wait` s for it; a
    second gateway on the same store then refuses. Returns the descriptor to keep open."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "gateway.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    deadline = time.monotonic() + wait
    warned = False
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            if time.monotonic() >= deadline:
                os.close(fd)
                raise StoreInUse(
                    f"metadata store {directory.resolve()} is in use by another gateway "
                    f"(pid {holder}); stop it first, or share metadata through PostgreSQL"
                ) from None
            if not warned:
                log.warning("metadata store %s is in use by pid %s (a previous run still "
                            "stopping?): waiting up to %gs", directory.resolve(), holder, wait)
                warned = True
            time.sleep(0.1)
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


class SQLiteStore(MetadataStore):
    def __init__(self, directory: Path, *, durable: bool = True, shared: bool = False) -> None:
        self.path = directory / "metadata.sqlite3"
        self.durable = durable
        # shared: other processes write the file too (workers: N, gateway/workers.py). The
        # caches below are then checked against PRAGMA data_version before each use (a few
        # microseconds: it reads the WAL index), so another worker's write is never hidden.
        self.shared = shared
        self._data_version = -1
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite")
        self._db: sqlite3.Connection | None = None
        self._reader: sqlite3.Connection | None = None
        # Current versions of recently read keys, read and invalidated on the event loop only.
        self._current: LRUCache[tuple[str, str], ObjectRecord] = LRUCache(maxsize=20_000)
        # Bucket rows by name. Every request reads its bucket; a hit saves a hop to the SQLite
        # thread. Filled and invalidated only on that thread, in order with the writes; this
        # process is the only writer of the file (several gateways share PostgreSQL instead).
        self._buckets: dict[str, tuple[Any, ...]] = {}
        # Group commit (see _write): writes waiting for the writer thread, and whether a group
        # is being committed now. Both used on the event loop only.
        self._pending: list[tuple[Callable[[sqlite3.Connection], Any], asyncio.Future[Any]]] = []
        self._committing = False
        self._group: asyncio.Future[Any] | None = None  # the group being committed

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, self._in_thread, fn)
        except sqlite3.OperationalError as exc:
            unavailable = _unavailable(exc)
            if unavailable is None:
                raise
            raise unavailable from exc

    def _in_thread(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        assert self._db is not None
        return fn(self._db)

    async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn` in one transaction on the writer thread: all of it or, when it raises,
        none of it. Group commit: writes that arrive while one commits are committed together
        next (each in its own savepoint, so one that raises changes nothing and the others
        stand), one sync of the log for all; each is answered only once that commit is done."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[T] = loop.create_future()
        self._pending.append((fn, done))
        if not self._committing:
            self._commit_pending(loop)
        return await done

    def _commit_pending(self, loop: asyncio.AbstractEventLoop) -> None:
        """Hand the writes waiting now to the writer thread as one group (on the loop only)."""
        group, self._pending = self._pending, []
        self._committing = True
        work = self._group = loop.run_in_executor(self._executor, self._in_thread,
                                                  lambda db: self._commit_group(db, group))
        work.add_done_callback(lambda finished: self._group_done(loop, group, finished))

    def _group_done(self, loop: asyncio.AbstractEventLoop, group: list[Any],
                    finished: asyncio.Future[list[tuple[bool, Any]]]) -> None:
        outcomes = ([(False, finished.exception())] * len(group) if finished.exception()
                    else finished.result())
        for (_, done), (ok, value) in zip(group, outcomes, strict=True):
            if not done.done():  # a cancelled caller: its write still happened (or not)
                if ok:
                    done.set_result(value)
                else:
                    done.set_exception(_unavailable(value) or value)
        self._committing = False
        if self._pending:
            self._commit_pending(loop)

    @classmethod
    def _commit_group(cls, db: sqlite3.Connection, group: list[Any]) -> list[tuple[bool, Any]]:
        """Commit a group of writes in one transaction: (True, result) or (False, exception)
        each. A failed COMMIT fails them all (nothing of any of them happened)."""
        if len(group) == 1:
            try:
                return [(True, cls._transaction(db, lambda: group[0][0](db)))]
            except Exception as exc:
                return [(False, exc)]
        outcomes: list[tuple[bool, Any]] = []
        db.execute("BEGIN IMMEDIATE")
        try:
            for fn, _ in group:
                db.execute("SAVEPOINT one_write")
                try:
                    outcomes.append((True, fn(db)))
                except Exception as exc:
                    db.execute("ROLLBACK TO one_write")
                    outcomes.append((False, exc))
                db.execute("RELEASE one_write")
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        return outcomes

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

    async def open(self) -> None:
        def _open() -> None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                                 cached_statements=256)
            # First: with several worker processes another may hold the lock right now.
            db.execute("PRAGMA busy_timeout=10000")
            db.execute("PRAGMA journal_mode=WAL")
            # FULL: a commit is on disk (WAL fsynced) before the write is acknowledged, so it
            # survives power loss. NORMAL (opt-in) survives a crash of the process only.
            db.execute(f"PRAGMA synchronous={'FULL' if self.durable else 'NORMAL'}")
            db.execute("PRAGMA busy_timeout=10000")
            db.executescript(SCHEMA)
            self._migrate(db)
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

    @staticmethod
    def _migrate(db: sqlite3.Connection) -> None:
        """Bring a file written by an older version up to the current schema (the new tables
        came with SCHEMA's CREATE ... IF NOT EXISTS)."""
        columns = {row[1] for row in db.execute("PRAGMA table_info(uploads)")}
        if "state" not in columns:
            db.execute("ALTER TABLE uploads ADD COLUMN state TEXT NOT NULL DEFAULT 'open'")
        columns = {row[1] for row in db.execute("PRAGMA table_info(parts)")}
        if "checksums" not in columns:  # files made before flexible checksums
            db.execute("ALTER TABLE parts ADD COLUMN checksums TEXT NOT NULL DEFAULT '{}'")
        if "attrs" not in columns:  # files made before part attrs
            db.execute("ALTER TABLE parts ADD COLUMN attrs TEXT NOT NULL DEFAULT '{}'")

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        while self._committing and self._group is not None:  # the last writes commit first
            await asyncio.wait({self._group})
        if self._db is not None:
            await self._run(lambda db: db.close())
            self._db = None
        self._executor.shutdown(wait=True)

    async def ping(self) -> None:
        await self._run(lambda db: db.execute("SELECT 1").fetchone())

    # garbage (called inside the transactions of the writes below) ---------------------------
    @staticmethod
    def _add_garbage(db: sqlite3.Connection, rows: list[tuple[str, str, dict[str, Any]]]) -> None:
        """Insert (location, kind, data) rows into the garbage ledger."""
        if rows:
            now = time.time()
            db.executemany("INSERT INTO garbage (location, kind, data, added) VALUES (?,?,?,?)",
                           [(loc, kind, _dumps(data), now) for loc, kind, data in rows])

    @classmethod
    def _drop_pieces(cls, db: sqlite3.Connection, old: ObjectRecord | None,
                     kept: list[Stored]) -> None:
        """`old` lost its record: its pieces that `kept` does not still name are garbage."""
        if old is not None and old.pieces:
            gone = dropped_pieces([p.to_dict() for p in old.pieces],
                                  [p.to_dict() for p in kept])
            cls._add_garbage(db, [(p["location"], "piece", p) for p in gone])

    # buckets ------------------------------------------------------------------------------
    async def create_bucket(self, bucket: BucketRecord, *,
                            exclusive_location: bool = False) -> BucketRecord | None:
        def _create(db: sqlite3.Connection) -> BucketRecord | None:
            existing = self._bucket(db, bucket.name)
            if existing is not None:
                return existing
            if exclusive_location:
                other = db.execute("SELECT name FROM buckets WHERE location=? LIMIT 1",
                                   (bucket.location,)).fetchone()
                if other is not None:
                    raise LocationTaken(other[0])
            db.execute(f"INSERT INTO buckets ({BUCKET_COLUMNS}) VALUES (?, ?, ?, ?, ?)",
                       (bucket.name, bucket.owner, bucket.location, bucket.created,
                        _dumps(bucket.attrs)))
            self._buckets.pop(bucket.name, None)
            return None

        return await self._write(_create)

    def _bucket(self, db: sqlite3.Connection, name: str) -> BucketRecord | None:
        row = db.execute(f"SELECT {BUCKET_COLUMNS} FROM buckets WHERE name=?",
                         (name,)).fetchone()
        if row is None:
            return None
        self._cache_bucket(row)
        return BucketRecord(*row[:4], attrs=json.loads(row[4]))

    def _cache_bucket(self, row: tuple[Any, ...]) -> None:
        if self.shared:  # filled on the event loop only, after a data_version check
            return
        if len(self._buckets) >= 10000:
            self._buckets.clear()
        self._buckets[row[0]] = row

    def _check_shared(self) -> None:
        """Several processes write the file: drop the caches when any other connection (a
        sibling worker's, or this process's writer) committed since the last look. On the
        event loop, in the same synchronous step as the read that fills a cache, so a filled
        entry is never older than the check before it."""
        assert self._reader is not None
        version = self._reader.execute("PRAGMA data_version").fetchone()[0]
        if version != self._data_version:
            self._data_version = version
            self._current.clear()
            self._buckets.clear()

    async def get_bucket(self, name: str) -> BucketRecord | None:
        if self.shared:
            self._check_shared()
        row = self._buckets.get(name)
        if row is not None:  # a fresh record each time: callers may change attrs
            return BucketRecord(*row[:4], attrs=_dict(row[4]))
        if self.shared:  # a point read on the loop, cached right after the check
            assert self._reader is not None
            row = self._reader.execute(f"SELECT {BUCKET_COLUMNS} FROM buckets WHERE name=?",
                                       (name,)).fetchone()
            if row is None:
                return None
            if len(self._buckets) >= 10000:
                self._buckets.clear()
            self._buckets[name] = row
            return BucketRecord(*row[:4], attrs=_dict(row[4]))
        return await self._run(lambda db: self._bucket(db, name))

    async def list_buckets(self, owner: str) -> list[BucketRecord]:
        def _list(db: sqlite3.Connection) -> list[BucketRecord]:
            rows = db.execute(f"SELECT {BUCKET_COLUMNS} FROM buckets "
                              "WHERE owner=? ORDER BY name", (owner,)).fetchall()
            return [BucketRecord(*r[:4], attrs=json.loads(r[4])) for r in rows]

        return await self._run(_list)

    async def update_bucket_attrs(self, name: str, changes: dict[str, Any]) -> BucketRecord | None:
        def _update(db: sqlite3.Connection) -> BucketRecord | None:
            # Read and write on the one writer thread: the merge sees every earlier update.
            # The cached row goes; the next get_bucket reads the committed one.
            self._buckets.pop(name, None)
            row = db.execute(f"SELECT {BUCKET_COLUMNS} FROM buckets WHERE name=?",
                             (name,)).fetchone()
            if row is None:
                return None
            attrs = merge_attrs(json.loads(row[4]), changes)
            db.execute("UPDATE buckets SET attrs=? WHERE name=?", (_dumps(attrs), name))
            return BucketRecord(*row[:4], attrs=attrs)

        return await self._write(_update)

    async def delete_bucket(self, name: str) -> bool:
        def _delete(db: sqlite3.Connection) -> bool:
            self._buckets.pop(name, None)
            busy = db.execute(
                "SELECT EXISTS(SELECT 1 FROM objects WHERE bucket=?) "
                "OR EXISTS(SELECT 1 FROM uploads WHERE bucket=? AND state='completing')",
                (name, name)).fetchone()[0]
            if not busy:
                # As AWS: uploads still in progress do not keep a bucket alive; they are
                # aborted with it (their backend state goes to the garbage ledger).
                uploads = db.execute("SELECT upload_id, location, backend_key, backend_upload_id "
                                     "FROM uploads WHERE bucket=?", (name,)).fetchall()
                for upload_id, location, backend_key, backend_upload_id in uploads:
                    parts = [_part_from(r) for r in db.execute(
                        f"SELECT {PART_COLUMNS} FROM parts WHERE upload_id=? ORDER BY number",
                        (upload_id,)).fetchall()]
                    db.execute("DELETE FROM parts WHERE upload_id=?", (upload_id,))
                    db.execute("DELETE FROM uploads WHERE upload_id=?", (upload_id,))
                    self._add_garbage(db, [(location, "upload", upload_garbage(
                        backend_key, backend_upload_id, parts))])
                db.execute("DELETE FROM buckets WHERE name=?", (name,))
            return not busy

        return await self._write(_delete)

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

    @classmethod
    def _insert_current(cls, db: sqlite3.Connection, obj: ObjectRecord) -> ObjectRecord | None:
        """Make `obj` the key's current version; an unversioned write replaces the null one,
        whose pieces become garbage."""
        replaced = None
        if obj.version_id is None:
            replaced = cls._object(db, obj.bucket, obj.key, "null", markers=True)
            db.execute("DELETE FROM objects WHERE bucket=? AND key=? AND version_id IS NULL",
                       (obj.bucket, obj.key))
            cls._drop_pieces(db, replaced, obj.pieces)
        db.execute("UPDATE objects SET latest=0 WHERE bucket=? AND key=? AND latest=1",
                   (obj.bucket, obj.key))
        db.execute(INSERT_OBJECT, (*_object_row(obj), obj.bucket, obj.key))
        return replaced

    async def put_object(self, obj: ObjectRecord, *, intent: int | None = None,
                         bucket_created: float | None = None,
                         expect: str | None = None) -> ObjectRecord | None:
        def _put(db: sqlite3.Connection) -> ObjectRecord | None:
            self._expect(db, obj.bucket, obj.key, expect)
            if bucket_created is not None:
                row = db.execute("SELECT created FROM buckets WHERE name=?",
                                 (obj.bucket,)).fetchone()
                if row is None or row[0] != bucket_created:
                    raise BucketGone(obj.bucket)
            if intent is not None and not db.execute("DELETE FROM intents WHERE id=?",
                                                     (intent,)).rowcount:
                # Reclaimed as garbage meanwhile (older than the grace period): its bytes
                # will be deleted, so no record may point at them.
                raise LookupError(f"intent {intent} is gone")
            return self._insert_current(db, obj)

        try:
            return await self._write(_put)
        finally:
            self._forget(obj.bucket, obj.key)

    @classmethod
    def _expect(cls, db: sqlite3.Connection, bucket: str, key: str, expect: str | None) -> None:
        """A conditional write's check, in the write's transaction (see put_object)."""
        if expect is None:
            return
        current = cls._object(db, bucket, key)
        if expect == "*":
            if current is not None:
                raise ConditionFailed("exists")
        elif current is None:
            raise ConditionFailed("missing")
        elif current.etag != expect:
            raise ConditionFailed("mismatch")

    def _forget(self, bucket: str, key: str) -> None:
        """Drop a key's cached current version, on the event loop once its write has
        finished. A read that fills the cache runs on the loop in one synchronous step, so it
        can never put back a row older than the write this removal follows."""
        self._current.pop((bucket, key), None)

    async def get_object(self, bucket: str, key: str, version_id: str | None = None, *,
                         markers: bool = False) -> ObjectRecord | None:
        if version_id is None:
            if self.shared:
                self._check_shared()
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

    async def delete_object(self, bucket: str, key: str, version_id: str | None = None, *,
                            expect: str | None = None,
                            guard: Guard | None = None) -> ObjectRecord | None:
        def _delete(db: sqlite3.Connection) -> ObjectRecord | None:
            self._expect(db, bucket, key, expect)
            old = self._object(db, bucket, key, version_id or "null", markers=True)
            if old is None:
                return None
            if guard is not None:  # Object Lock: checked in this transaction (one writer)
                guard(old)
            self._remove_version(db, old)
            return old

        try:
            return await self._write(_delete)
        finally:
            self._forget(bucket, key)

    @classmethod
    def _remove_version(cls, db: sqlite3.Connection, old: ObjectRecord) -> None:
        """Delete the stored version `old` (inside a write's transaction): the next newest
        becomes current when it was, and its pieces become garbage."""
        bucket, key = old.bucket, old.key
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
        cls._drop_pieces(db, old, [])

    # Entries of one delete_objects call per transaction: the writer thread is held ~10 ms.
    DELETE_BATCH = 250

    @staticmethod
    def _current_rows(db: sqlite3.Connection, bucket: str, keys: list[str]
                      ) -> list[tuple[Any, ...]]:
        """Each key's current version (marker included; the newest when several claim it, as
        _object reads it), as rows of OBJECT_COLUMNS and seq, in one SELECT."""
        if not keys:
            return []
        newest: dict[str, tuple[Any, ...]] = {}
        for row in db.execute(f"SELECT {OBJECT_COLUMNS}, seq FROM objects WHERE bucket=? AND "
                              f"key IN ({','.join('?' * len(keys))}) AND latest = 1",
                              (bucket, *keys)):
            had = newest.get(row[1])
            if had is None or row[-1] > had[-1]:
                newest[row[1]] = row
        return list(newest.values())

    @classmethod
    def _remove_versions(cls, db: sqlite3.Connection, olds: list[ObjectRecord]) -> None:
        """_remove_version of each of `olds` (versions of distinct keys), a statement for all
        of them at a time: the same rows deleted, the same promotions, the same garbage."""
        if not olds:
            return
        db.executemany("DELETE FROM objects WHERE bucket=? AND key=? AND version_id IS NULL",
                       [(old.bucket, old.key) for old in olds if old.version_id is None])
        db.executemany("DELETE FROM objects WHERE bucket=? AND key=? AND version_id=?",
                       [(old.bucket, old.key, old.version_id) for old in olds
                        if old.version_id is not None])
        db.executemany("UPDATE objects SET latest=1 WHERE bucket=? AND key=? AND seq="
                       "(SELECT MAX(seq) FROM objects WHERE bucket=? AND key=?)",
                       [(old.bucket, old.key, old.bucket, old.key) for old in olds if old.latest])
        # Nothing is kept: every piece of a removed version is garbage (_drop_pieces with [])
        cls._add_garbage(db, [(piece.location, "piece", piece.to_dict())
                              for old in olds for piece in old.pieces])

    async def delete_objects(self, bucket: str, versions: list[tuple[str, str | None, Guard]]
                             ) -> list[ObjectRecord | None | Exception]:
        def _delete(db: sqlite3.Connection, chunk: list[tuple[str, str | None, Guard]]
                    ) -> list[ObjectRecord | None | Exception]:
            results: list[ObjectRecord | None | Exception] = [None] * len(chunk)
            # A key's first entry, when it names no version, is read with the others in one
            # SELECT (nothing of this chunk has touched that key yet) and removed with them in
            # a few executemany; every other entry (a version id, a key again) after those,
            # one by one in request order, so each sees what the ones before it did.
            first: dict[str, int] = {}
            seen: set[str] = set()
            later: list[int] = []
            for index, (key, version_id, _) in enumerate(chunk):
                if version_id is None and key not in seen:
                    first[key] = index
                else:
                    later.append(index)
                seen.add(key)
            removed: list[ObjectRecord] = []
            for row in self._current_rows(db, bucket, list(first)):
                index = first[row[1]]
                old = _object_from(row)
                try:  # refused before anything of this entry changed
                    chunk[index][2](old)
                except Exception as refused:
                    results[index] = refused
                    continue
                removed.append(old)
                results[index] = old
            self._remove_versions(db, removed)
            for index in later:
                key, version_id, guard = chunk[index]
                old = self._object(db, bucket, key, version_id, markers=True)
                if old is not None:
                    try:
                        guard(old)
                    except Exception as refused:
                        results[index] = refused
                        continue
                    self._remove_version(db, old)
                results[index] = old
            return results

        results: list[ObjectRecord | None | Exception] = []
        for start in range(0, len(versions), self.DELETE_BATCH):
            chunk = versions[start:start + self.DELETE_BATCH]
            try:
                results += await self._write(lambda db, chunk=chunk: _delete(db, chunk))
            finally:
                for key, _, _ in chunk:
                    self._forget(bucket, key)
        return results

    async def update_object(self, bucket: str, key: str, expected_pieces: list[Stored],
                            changes: dict[str, Any], *,
                            guard: Guard | None = None) -> ObjectRecord | None:
        try:
            return await self._update_object(bucket, key, expected_pieces, changes, guard)
        finally:
            self._forget(bucket, key)

    async def _update_object(self, bucket: str, key: str, expected_pieces: list[Stored],
                             changes: dict[str, Any],
                             guard: Guard | None = None) -> ObjectRecord | None:
        def _update(db: sqlite3.Connection) -> ObjectRecord | None:
            # The single connection thread makes this read-compare-write atomic. The pieces
            # name the version: every version's bytes sit at their own backend keys.
            row = db.execute(f"SELECT {OBJECT_COLUMNS}, seq FROM objects WHERE bucket=? AND "
                             "key=? AND pieces=? AND delete_marker=0 ORDER BY seq DESC LIMIT 1",
                             (bucket, key, _pieces_json(expected_pieces))).fetchone()
            if row is None:
                return None
            current = _object_from(row)
            if guard is not None:  # Object Lock: checked in this transaction
                guard(current)
            updated = replace(current, **changes)
            # A change that re-pinned the bytes (a backend that copies to change metadata,
            # e.g. B2) leaves the old version unreferenced: garbage in this transaction.
            self._drop_pieces(db, current, updated.pieces)
            db.execute("DELETE FROM objects WHERE bucket=? AND key=? AND seq=?",
                       (bucket, key, row[-1]))
            db.execute(f"INSERT INTO objects ({OBJECT_COLUMNS}, seq) "
                       "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                       (*_object_row(updated), int(updated.latest), row[-1]))
            return updated

        return await self._write(_update)

    async def discard_piece(self, piece: Stored) -> None:
        await self._write(lambda db: self._add_garbage(db, [(piece.location, "piece",
                                                             piece.to_dict())]))

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
            f"INSERT INTO uploads ({UPLOAD_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
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
            walk: UploadWalk[tuple[Any, ...]] = UploadWalk(prefix, delimiter, limit,
                                                           key_marker or None)
            while (span := walk.query()) is not None:
                sql = f"SELECT {UPLOAD_COLUMNS} FROM uploads INDEXED BY uploads_order WHERE bucket=?"
                args: list[Any] = [bucket]
                if span.cursor is None:
                    sql += " AND key>=?"
                    args.append(span.floor)
                else:  # one lower bound on key (see list_objects), then the order's tie-breaks
                    ck, ci, cu = span.cursor
                    sql += (" AND key>=? AND (key>? OR (initiated>? OR "
                            "(initiated=? AND upload_id>?)))")
                    args += [ck, ck, ci, ci, cu]
                if span.end is not None:
                    sql += " AND key<?"
                    args.append(span.end)
                if key_marker:
                    if upload_id_marker:
                        sql += " AND (key>? OR (key=? AND upload_id>?))"
                        args += [key_marker, key_marker, upload_id_marker]
                    else:
                        sql += " AND key>?"
                        args.append(key_marker)
                sql += " ORDER BY key, initiated, upload_id LIMIT ?"
                args.append(span.limit)
                walk.feed([(row[2], row[3], row[0], row)
                           for row in db.execute(sql, args).fetchall()])
            return UploadListing([_upload_from(r) for r in walk.items], walk.prefixes,
                                 walk.truncated)

        return await self._run(_list)

    async def count_uploads(self) -> int:
        return await self._run(lambda db: db.execute("SELECT COUNT(*) FROM uploads").fetchone()[0])

    async def put_part(self, part: PartRecord) -> PartRecord | None:
        def _put(db: sqlite3.Connection) -> PartRecord | None:
            up = db.execute("SELECT location, backend_key, backend_upload_id, state FROM uploads "
                            "WHERE upload_id=?", (part.upload_id,)).fetchone()
            if up is None or up[3] != "open":
                raise LookupError(part.upload_id)
            row = db.execute(f"SELECT {PART_COLUMNS} FROM parts WHERE upload_id=? AND number=?",
                             (part.upload_id, part.number)).fetchone()
            db.execute(f"INSERT OR REPLACE INTO parts ({PART_COLUMNS}) VALUES (?,?,?,?,?,?,?,?)",
                       (part.upload_id, part.number, part.size, part.etag, part.last_modified,
                        _dumps(part.stored.to_dict()), _dumps(part.checksums),
                        _dumps(part.attrs)))
            old = _part_from(row) if row else None
            if old is not None and old.stored != part.stored:
                self._add_garbage(db, [(up[0], "part", part_garbage(up[1], up[2], old))])
            return old

        return await self._write(_put)

    async def list_parts(self, upload_id: str, after: int, limit: int) -> list[PartRecord]:
        def _list(db: sqlite3.Connection) -> list[PartRecord]:
            rows = db.execute(f"SELECT {PART_COLUMNS} FROM parts WHERE upload_id=? AND number>? "
                              "ORDER BY number LIMIT ?", (upload_id, after, limit)).fetchall()
            return [_part_from(r) for r in rows]

        return await self._run(_list)

    async def claim_upload(self, upload_id: str) -> UploadRecord | None:
        def _claim(db: sqlite3.Connection) -> UploadRecord | None:
            row = db.execute(f"UPDATE uploads SET state='completing' WHERE upload_id=? AND "
                             f"state='open' RETURNING {UPLOAD_COLUMNS}", (upload_id,)).fetchone()
            return _upload_from(row) if row else None

        return await self._write(_claim)

    async def release_upload(self, upload_id: str) -> None:
        await self._run(lambda db: db.execute(
            "UPDATE uploads SET state='open' WHERE upload_id=? AND state='completing'",
            (upload_id,)))

    async def release_claims(self) -> int:
        return await self._run(lambda db: db.execute(
            "UPDATE uploads SET state='open' WHERE state='completing'").rowcount)

    async def finish_upload(self, upload_id: str, obj: ObjectRecord | None,
                            listed: Collection[int] = (), *, expect: str | None = None
                            ) -> tuple[list[PartRecord], ObjectRecord | None] | None:
        def _finish(db: sqlite3.Connection) -> tuple[list[PartRecord], ObjectRecord | None] | None:
            up = db.execute("SELECT location, backend_key, backend_upload_id, bucket FROM uploads "
                            "WHERE upload_id=? AND state=?",
                            (upload_id, "open" if obj is None else "completing")).fetchone()
            if up is None:
                return None
            location, backend_key, backend_upload_id, bucket = up
            parts = [_part_from(r) for r in db.execute(
                f"SELECT {PART_COLUMNS} FROM parts WHERE upload_id=? ORDER BY number",
                (upload_id,))]
            db.execute("DELETE FROM parts WHERE upload_id=?", (upload_id,))
            db.execute("DELETE FROM uploads WHERE upload_id=?", (upload_id,))
            if obj is None:  # abort: the backend upload and all its parts go
                self._add_garbage(db, [(location, "upload",
                                        upload_garbage(backend_key, backend_upload_id, parts))])
                return parts, None
            # delete_bucket refuses while an upload exists, so this holds; checked all the same
            if not db.execute("SELECT 1 FROM buckets WHERE name=?", (obj.bucket,)).fetchone():
                raise BucketGone(bucket)
            used, kept = [p.to_dict() for p in obj.pieces], set(listed)
            self._add_garbage(db, [(location, "part", part_garbage(backend_key, backend_upload_id, p))
                                   for p in parts
                                   if p.number not in kept and p.stored.to_dict() not in used])
            self._expect(db, obj.bucket, obj.key, expect)
            return parts, self._insert_current(db, obj)

        try:
            return await self._write(_finish)
        finally:
            if obj is not None:
                self._forget(obj.bucket, obj.key)

    # intents and garbage ------------------------------------------------------------------
    async def add_intent(self, location: str, key: str) -> int:
        def _add(db: sqlite3.Connection) -> int:
            # Not fsynced on its own: an intent survives a crash of the process as it is (WAL),
            # and the durable commit that follows every write syncs the log up to and
            # including it. Only a power cut between the two can lose it, and then fsck finds
            # the bytes. Saves one of a durable PUT's four syncs.
            if self.durable:
                db.execute("PRAGMA synchronous=NORMAL")
            try:
                cur = db.execute("INSERT INTO intents (location, key, created) VALUES (?,?,?)",
                                 (location, key, time.time()))
            finally:
                if self.durable:
                    db.execute("PRAGMA synchronous=FULL")
            assert cur.lastrowid is not None
            return cur.lastrowid

        return await self._run(_add)

    def _abandon(self, db: sqlite3.Connection, where: str, arg: float) -> int:
        """Move the intents matching `where` to garbage; return how many."""
        rows = db.execute(f"DELETE FROM intents WHERE {where} RETURNING location, key",
                          (arg,)).fetchall()
        self._add_garbage(db, [(loc, "piece", intent_garbage(loc, key)) for loc, key in rows])
        return len(rows)

    async def abandon_intent(self, intent_id: int) -> None:
        await self._write(lambda db: self._abandon(db, "id=?", intent_id))

    async def reclaim_intents(self, older_than: float) -> int:
        return await self._write(lambda db: self._abandon(db, "created<?", older_than))

    async def list_intents(self) -> list[IntentRecord]:
        rows = await self._run(lambda db: db.execute(
            "SELECT id, location, key, created FROM intents ORDER BY id").fetchall())
        return [IntentRecord(*r) for r in rows]

    async def due_garbage(self, now: float, limit: int,
                          added_before: float | None = None) -> list[GarbageRecord]:
        # New rows (not_before 0) first, oldest first; then retries by when they are due.
        rows = await self._run(lambda db: db.execute(
            f"SELECT {GARBAGE_COLUMNS} FROM garbage WHERE not_before<=? AND added<=? "
            "ORDER BY not_before, id LIMIT ?",
            (now, now if added_before is None else added_before, limit)).fetchall())
        return [_garbage_from(r) for r in rows]

    async def drop_garbage(self, garbage_id: int) -> None:
        await self._run(lambda db: db.execute("DELETE FROM garbage WHERE id=?", (garbage_id,)))

    async def retry_garbage(self, garbage_id: int, not_before: float) -> None:
        await self._run(lambda db: db.execute(
            "UPDATE garbage SET attempts=attempts+1, not_before=? WHERE id=?",
            (not_before, garbage_id)))

    async def count_garbage(self) -> int:
        return await self._run(lambda db: db.execute("SELECT COUNT(*) FROM garbage").fetchone()[0])

    async def referenced_pieces(self) -> AsyncIterator[tuple[str, Stored]]:
        # Page by page (keyset on the primary keys), each page one short hop to the writer
        # thread, so writes interleave and memory stays bounded.
        cursor: tuple[Any, ...] = ("", "", 0)
        while True:
            rows = await self._run(lambda db, c=cursor: db.execute(
                "SELECT bucket, key, seq, version_id, pieces FROM objects "
                "WHERE (bucket, key, seq) > (?, ?, ?) AND delete_marker=0 "
                "ORDER BY bucket, key, seq LIMIT ?", (*c, PAGE)).fetchall())
            for bucket, key, _, version_id, pieces in rows:
                what = f"object {bucket}/{key} v={version_id or 'null'}"
                for p in json.loads(pieces):
                    yield what, Stored.from_dict(p)
            if len(rows) < PAGE:
                break
            cursor = rows[-1][:3]
        part_cursor: tuple[Any, ...] = ("", 0)
        while True:
            rows = await self._run(lambda db, c=part_cursor: db.execute(
                "SELECT upload_id, number, stored FROM parts WHERE (upload_id, number) > (?, ?) "
                "ORDER BY upload_id, number LIMIT ?", (*c, PAGE)).fetchall())
            for upload_id, number, stored in rows:
                yield f"part {upload_id} {number}", Stored.from_dict(json.loads(stored))
            if len(rows) < PAGE:
                break
            part_cursor = rows[-1][:2]

    # --- accounts and access keys at runtime (gateway/accounts.py) -------------------------
    # The account CLI writes while gateways run: SQLite's own locking (WAL, busy_timeout)
    # orders those writes with the gateway's; the gateway's caches hold no account rows.
    async def accounts_version(self) -> int:
        return await self._run(lambda db: db.execute(
            "SELECT counter FROM account_changes WHERE id = 1").fetchone()[0])

    async def load_accounts(self) -> tuple[int, list[AccountRow], list[AccessKeyRow]]:
        def _load(db: sqlite3.Connection) -> tuple[int, list[AccountRow], list[AccessKeyRow]]:
            db.execute("BEGIN")  # one snapshot for the three reads
            try:
                counter = db.execute("SELECT counter FROM account_changes WHERE id = 1"
                                     ).fetchone()[0]
                accounts = [AccountRow(*r) for r in db.execute(
                    "SELECT name, email, arn, canonical_id, shortid, created FROM accounts "
                    "ORDER BY created, name")]
                keys = [AccessKeyRow(r[0], r[1], r[2], bool(r[3]), r[4]) for r in db.execute(
                    "SELECT access, account, secret, enabled, created FROM access_keys "
                    "ORDER BY created, access")]
            finally:
                db.execute("COMMIT")
            return counter, accounts, keys

        return await self._run(_load)

    async def add_account(self, account: AccountRow, key: AccessKeyRow | None) -> None:
        def _add(db: sqlite3.Connection) -> None:
            try:
                db.execute("INSERT INTO accounts (name, email, arn, canonical_id, shortid, "
                           "created) VALUES (?,?,?,?,?,?)",
                           (account.name, account.email, account.arn, account.canonical_id,
                            account.shortid, account.created))
                if key is not None:
                    self._insert_key(db, key)
            except sqlite3.IntegrityError as exc:
                raise AccountConflict(str(exc)) from None
            db.execute(BUMP_ACCOUNTS)

        await self._write(_add)

    @staticmethod
    def _insert_key(db: sqlite3.Connection, key: AccessKeyRow, replace: bool = False) -> None:
        db.execute(f"INSERT {'OR REPLACE ' if replace else ''}INTO access_keys "
                   "(access, account, secret, enabled, created) VALUES (?,?,?,?,?)",
                   (key.access, key.account, key.secret, int(key.enabled), key.created))

    async def remove_account(self, name: str) -> bool:
        def _remove(db: sqlite3.Connection) -> bool:
            gone = db.execute("DELETE FROM accounts WHERE name=?", (name,)).rowcount > 0
            gone = db.execute("DELETE FROM access_keys WHERE account=?", (name,)).rowcount > 0 \
                or gone
            if gone:
                db.execute(BUMP_ACCOUNTS)
            return gone

        return await self._write(_remove)

    async def put_access_key(self, key: AccessKeyRow, *, replace: bool = False) -> None:
        def _put(db: sqlite3.Connection) -> None:
            try:
                self._insert_key(db, key, replace)
            except sqlite3.IntegrityError as exc:
                raise AccountConflict(str(exc)) from None
            db.execute(BUMP_ACCOUNTS)

        await self._write(_put)

    async def remove_access_key(self, access: str) -> bool:
        def _remove(db: sqlite3.Connection) -> bool:
            gone = db.execute("DELETE FROM access_keys WHERE access=?", (access,)).rowcount > 0
            if gone:
                db.execute(BUMP_ACCOUNTS)
            return gone

        return await self._write(_remove)
    # --- end of accounts --------------------------------------------------------------------

    # --- background jobs and relocation (gateway/jobs/, gateway/objects/relocate.py) --------
    # One writer thread: every method below is one transaction there, so a claim cannot race
    # another claim; the semantics (leases, fencing by worker) are PostgreSQL's.
    async def enqueue_job(self, kind: str, job_key: str, bucket: str, data: dict[str, Any],
                          not_before: float = 0.0) -> int | None:
        def _enqueue(db: sqlite3.Connection) -> int | None:
            if db.execute("SELECT 1 FROM jobs WHERE kind=? AND job_key=? AND state IN "
                          "('pending', 'running')", (kind, job_key)).fetchone():
                return None
            db.execute("DELETE FROM jobs WHERE kind=? AND job_key=? AND state='failed'",
                       (kind, job_key))
            cur = db.execute("INSERT INTO jobs (kind, job_key, bucket, data, created, not_before) "
                             "VALUES (?,?,?,?,?,?)",
                             (kind, job_key, bucket, _dumps(data), time.time(), not_before))
            return cur.lastrowid

        return await self._write(_enqueue)

    async def claim_jobs(self, worker: str, limit: int, lease: float,
                         now: float | None = None) -> list[JobRecord]:
        at = time.time() if now is None else now

        def _claim(db: sqlite3.Connection) -> list[JobRecord]:
            rows = db.execute(
                "UPDATE jobs SET state='running', worker=?, lease_until=?, attempts=attempts+1 "
                "WHERE id IN (SELECT id FROM jobs WHERE (state='pending' AND not_before<=?) OR "
                "(state='running' AND lease_until<?) ORDER BY not_before, id LIMIT ?) "
                f"RETURNING {JOB_COLUMNS}", (worker, at + lease, at, at, limit)).fetchall()
            return sorted((_job_from(r) for r in rows), key=lambda j: (j.not_before, j.id))

        return await self._write(_claim)

    async def extend_job(self, job_id: int, worker: str, lease_until: float) -> bool:
        return await self._write(lambda db: db.execute(
            "UPDATE jobs SET lease_until=? WHERE id=? AND worker=? AND state='running'",
            (lease_until, job_id, worker)).rowcount > 0)

    @staticmethod
    def _count_job(db: sqlite3.Connection, kind: str, outcome: str) -> None:
        db.execute("INSERT INTO job_totals (kind, outcome, count) VALUES (?,?,1) "
                   "ON CONFLICT (kind, outcome) DO UPDATE SET count=count+1", (kind, outcome))

    async def complete_job(self, job_id: int, worker: str) -> bool:
        def _complete(db: sqlite3.Connection) -> bool:
            row = db.execute("DELETE FROM jobs WHERE id=? AND worker=? AND state='running' "
                             "RETURNING kind", (job_id, worker)).fetchone()
            if row is None:
                return False
            self._count_job(db, row[0], "done")
            return True

        return await self._write(_complete)

    async def fail_job(self, job_id: int, worker: str, error: str,
                       retry_at: float | None) -> bool:
        def _fail(db: sqlite3.Connection) -> bool:
            if retry_at is None:
                row = db.execute("UPDATE jobs SET state='failed', error=?, worker=NULL WHERE id=? "
                                 "AND worker=? AND state='running' RETURNING kind",
                                 (error, job_id, worker)).fetchone()
                if row is not None:
                    self._count_job(db, row[0], "failed")
                return row is not None
            return db.execute("UPDATE jobs SET state='pending', error=?, worker=NULL, "
                              "not_before=? WHERE id=? AND worker=? AND state='running'",
                              (error, retry_at, job_id, worker)).rowcount > 0

        return await self._write(_fail)

    async def job_counts(self) -> dict[str, dict[str, int]]:
        def _counts(db: sqlite3.Connection) -> dict[str, dict[str, int]]:
            counts: dict[str, dict[str, int]] = {}
            for kind, state, n in db.execute(
                    "SELECT kind, state, COUNT(*) FROM jobs GROUP BY kind, state"):
                counts.setdefault(kind, {})[state] = n
            for kind, outcome, n in db.execute("SELECT kind, outcome, count FROM job_totals"):
                if outcome == "done":
                    counts.setdefault(kind, {})["done"] = n
            return {kind: {s: c.get(s, 0) for s in ("pending", "running", "failed", "done")}
                    for kind, c in counts.items()}

        return await self._run(_counts)

    async def release_jobs(self) -> int:
        return await self._write(lambda db: db.execute(
            "UPDATE jobs SET state='pending', worker=NULL, not_before=0 "
            "WHERE state='running'").rowcount)

    async def get_job(self, job_id: int) -> JobRecord | None:
        row = await self._run(lambda db: db.execute(
            f"SELECT {JOB_COLUMNS} FROM jobs WHERE id=?", (job_id,)).fetchone())
        return _job_from(row) if row else None

    async def relocate_version(self, bucket: str, key: str, version_id: str | None,
                               expected_pieces: list[Stored], pieces: list[Stored],
                               location: str, attrs: dict[str, Any],
                               intents: list[int], *,
                               keep_old: bool = False) -> ObjectRecord | None:
        def _relocate(db: sqlite3.Connection) -> ObjectRecord | None:
            row = db.execute(f"SELECT {OBJECT_COLUMNS}, seq FROM objects WHERE bucket=? AND "
                             "key=? AND version_id IS ? AND pieces=? AND delete_marker=0",
                             (bucket, key, version_id, _pieces_json(expected_pieces))).fetchone()
            if row is None:
                return None
            for intent in intents:  # a failure rolls the whole transaction back
                if not db.execute("DELETE FROM intents WHERE id=?", (intent,)).rowcount:
                    raise LookupError(f"intent {intent} is gone")
            current = _object_from(row)
            updated = replace(current, pieces=list(pieces), location=location,
                              attrs=merge_attrs(current.attrs, attrs))
            if not keep_old:
                self._drop_pieces(db, current, updated.pieces)
            db.execute("UPDATE objects SET location=?, pieces=?, attrs=? WHERE bucket=? AND key=? "
                       "AND seq=?", (location, _pieces_json(updated.pieces), _dumps(updated.attrs),
                                     bucket, key, row[-1]))
            return updated

        try:
            return await self._write(_relocate)
        finally:
            self._forget(bucket, key)
    # --- end of background jobs and relocation ----------------------------------------------

    # --- moving a bucket (gateway/moving/) ------------------------------------------------
    async def update_bucket(self, name: str, changes: dict[str, Any], *,
                            location: str | None = None,
                            guard: Callable[[BucketRecord], None] | None = None,
                            exclusive_location: bool = False) -> BucketRecord | None:
        def _update(db: sqlite3.Connection) -> BucketRecord | None:
            self._buckets.pop(name, None)
            row = db.execute(f"SELECT {BUCKET_COLUMNS} FROM buckets WHERE name=?",
                             (name,)).fetchone()
            if row is None:
                return None
            current = BucketRecord(*row[:4], attrs=json.loads(row[4]))
            if guard is not None:
                guard(current)
            new_location = current.location if location is None else location
            if exclusive_location and new_location != current.location:
                other = db.execute("SELECT name FROM buckets WHERE location=? AND name<>? "
                                   "LIMIT 1", (new_location, name)).fetchone()
                if other is not None:
                    raise LocationTaken(other[0])
            attrs = merge_attrs(current.attrs, changes)
            db.execute("UPDATE buckets SET attrs=?, location=? WHERE name=?",
                       (_dumps(attrs), new_location, name))
            return replace(current, location=new_location, attrs=attrs)

        try:
            return await self._write(_update)
        finally:
            self._buckets.pop(name, None)
    # --- end of moving a bucket -----------------------------------------------------------
