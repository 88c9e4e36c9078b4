"""PostgreSQL metadata: one database shared by several stateless gateway processes.

Same interface and same results as the SQLite store (gateway/metadata/sqlite.py), call for call;
the listing algorithms are the same code shape, only the SQL dialect differs.

Keys are compared and ordered byte-wise: `key` columns are `COLLATE "C"`, which in a UTF-8
database is code-point order, the order of S3, of SQLite's BINARY collation and of Python's str.
(PostgreSQL text cannot hold U+0000; such keys are refused by the server.)

Concurrency. SQLite serializes every write through one connection; here many connections of
many processes write at once, so each multi-statement write runs in one READ COMMITTED
transaction holding row locks, always taken in this order (row locks, not advisory locks: the
schema stays portable to distributed PostgreSQL-compatible engines, see the README):

1. the bucket lock, the bucket's own row in `buckets`: `FOR KEY SHARE` by every write that adds
   an object or an upload (put_object, finish_upload, create_upload), `FOR UPDATE` by
   delete_bucket. So delete_bucket waits for in-flight writes, then its emptiness check (a later
   statement, hence a fresh snapshot) sees their rows; writes that start later wait for it and
   then find the row gone, and put_object's `bucket_created` check (after the lock) sees a
   delete that committed before. Writers of one bucket do not block each other, nor attribute
   updates (`FOR NO KEY UPDATE`).
2. the key lock, row `key_slot(bucket, key)` (0..KEY_SLOTS-1, a CRC-32 computed by the
   gateway) of the lock table `s3gw_locks`, `FOR UPDATE`: every write of a key's versions (put,
   delete, update, completion) holds it, so "demote the latest, insert with MAX(seq) + 1" runs
   alone per key, and a statement run after taking it sees every earlier writer's commit.
   Different keys proceed in parallel; two keys of one slot only wait for each other (no
   transaction holds two key locks, so a shared slot cannot deadlock).

create_bucket (and a bucket's change of location) alone takes a third one, row
BUCKET_CREATION of `s3gw_locks`, and no other: creates queue, so the exclusive-location check
and the insert are one step. Row locks: update_bucket_attrs locks its bucket row (FOR NO KEY
UPDATE) for its read-merge-write, so attribute updates queue per bucket and never undo each
other. put_part locks its upload row (FOR NO KEY UPDATE) and checks the state; claim_upload,
release_upload and finish_upload change or delete that row, so a part is either refused or
committed before the claim (and then seen by the completion), and exactly one of a claim and an
abort wins.

The two hot writes, put_object and delete_object, are server-side PL/pgSQL functions
(s3gw_put_object, s3gw_delete_object, created with the schema) taking those same locks: one
round trip, the statement's own transaction, instead of BEGIN / lock / statements / COMMIT. They
also do the garbage bookkeeping (s3gw_drop_pieces: the replaced or deleted version's pieces
into the garbage ledger), the bucket check and the intent removal, in that same statement.
finish_upload calls s3gw_put_object inside its transaction (a transaction's row locks are
re-entrant).
Refusals come back as our own SQLSTATEs (BUCKET_GONE, INTENT_GONE) and are raised as
BucketGone / LookupError.

The unique partial index `objects_latest` (one `latest` row per key) and the primary key
(bucket, key, seq) are the schema-level guards of those invariants. Lock ordering rules out
deadlocks between our own transactions; chosen over SERIALIZABLE + retry because writes never
abort and retry, and two PUTs of one key simply queue. Listings run in one REPEATABLE READ
read-only transaction: their several seeks see one snapshot, as a SQLite listing does on its
single connection.

The schema is created (IF NOT EXISTS, functions replaced, columns added to databases made by an
older version) by every open(), holding row SCHEMA_LOCK of `s3gw_locks` so gateways starting
together do not collide (the lock table itself first, retried if two create it at once); the
DSN's user needs CREATE on its schema.
Pool size: `max_size` connections per gateway process (default 20): mind max_connections.
Bucket records are not cached (SQLite caches them): another gateway may change them anytime.

JSON fields are stored as text (compact, exactly SQLite's encoding): the store never queries
inside them (but for the pieces in s3gw_drop_pieces), and update_object's compare-and-set
compares the pieces text as SQLite does.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import zlib
from collections.abc import AsyncIterator, Callable, Collection
from dataclasses import replace
from types import TracebackType
from typing import Any, NoReturn

import asyncpg

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

# Rows of the lock table s3gw_locks: the key slots 0..KEY_SLOTS-1, and two of their own.
KEY_SLOTS = 65536
BUCKET_CREATION = -1
SCHEMA_LOCK = -2
LOCKS_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS s3gw_locks (id INTEGER PRIMARY KEY);
INSERT INTO s3gw_locks (id) SELECT g FROM generate_series({SCHEMA_LOCK}, {KEY_SLOTS - 1}) AS g
    WHERE NOT EXISTS (SELECT 1 FROM s3gw_locks WHERE id = {KEY_SLOTS - 1})
    ON CONFLICT (id) DO NOTHING;
"""
# SQLSTATEs our functions raise (class "S3" is no PostgreSQL class).
BUCKET_GONE = "S3G01"
INTENT_GONE = "S3G02"
CONDITION_EXISTS = "S3G03"
CONDITION_MISSING = "S3G04"
CONDITION_MISMATCH = "S3G05"
_CONDITIONS = {CONDITION_EXISTS: "exists", CONDITION_MISSING: "missing",
               CONDITION_MISMATCH: "mismatch"}

OBJECT_COLUMNS = ("bucket, key, size, etag, last_modified, location, pieces, owner, headers, "
                  "user_meta, tags, attrs, version_id, delete_marker, latest")
SCHEMA = """
CREATE TABLE IF NOT EXISTS buckets (
    name TEXT COLLATE "C" PRIMARY KEY, owner TEXT NOT NULL, location TEXT NOT NULL,
    created DOUBLE PRECISION NOT NULL, attrs TEXT NOT NULL DEFAULT '{}');
CREATE INDEX IF NOT EXISTS buckets_owner ON buckets(owner, name COLLATE "C");
CREATE INDEX IF NOT EXISTS buckets_location ON buckets(location);
CREATE TABLE IF NOT EXISTS objects (
    bucket TEXT COLLATE "C" NOT NULL, key TEXT COLLATE "C" NOT NULL, size BIGINT NOT NULL,
    etag TEXT NOT NULL, last_modified DOUBLE PRECISION NOT NULL, location TEXT NOT NULL,
    pieces TEXT NOT NULL, owner TEXT NOT NULL, headers TEXT NOT NULL, user_meta TEXT NOT NULL,
    tags TEXT NOT NULL, attrs TEXT NOT NULL, version_id TEXT,
    delete_marker BOOLEAN NOT NULL DEFAULT FALSE, latest BOOLEAN NOT NULL DEFAULT TRUE,
    seq BIGINT NOT NULL,
    PRIMARY KEY (bucket, key, seq));
-- Listing reads only current, visible versions, in byte order.
CREATE INDEX IF NOT EXISTS objects_current ON objects(bucket, key COLLATE "C")
    WHERE latest AND NOT delete_marker;
-- Exactly one current version per key, whatever happens above.
CREATE UNIQUE INDEX IF NOT EXISTS objects_latest ON objects(bucket, key COLLATE "C")
    WHERE latest;
CREATE INDEX IF NOT EXISTS objects_version ON objects(bucket, key COLLATE "C", version_id);
CREATE TABLE IF NOT EXISTS uploads (
    upload_id TEXT COLLATE "C" PRIMARY KEY, bucket TEXT COLLATE "C" NOT NULL,
    key TEXT COLLATE "C" NOT NULL, initiated DOUBLE PRECISION NOT NULL, owner TEXT NOT NULL,
    location TEXT NOT NULL, backend_key TEXT NOT NULL, backend_upload_id TEXT NOT NULL,
    headers TEXT NOT NULL, user_meta TEXT NOT NULL, tags TEXT NOT NULL, attrs TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'open');
-- Databases made before upload states. Checked first: ALTER TABLE locks the table exclusively
-- even when there is nothing to add, and every gateway start runs this.
DO $$ BEGIN
    IF NOT EXISTS (SELECT 1 FROM information_schema.columns WHERE table_schema = current_schema()
                   AND table_name = 'uploads' AND column_name = 'state') THEN
        ALTER TABLE uploads ADD COLUMN state TEXT NOT NULL DEFAULT 'open';
    END IF;
END $$;
-- ListMultipartUploads order: seeks, never sorts.
CREATE INDEX IF NOT EXISTS uploads_order ON uploads(bucket, key COLLATE "C", initiated,
                                                    upload_id);
DROP INDEX IF EXISTS uploads_key;
DROP INDEX IF EXISTS uploads_backend;
CREATE TABLE IF NOT EXISTS parts (
    upload_id TEXT COLLATE "C" NOT NULL, number INTEGER NOT NULL, size BIGINT NOT NULL,
    etag TEXT NOT NULL, last_modified DOUBLE PRECISION NOT NULL, stored TEXT NOT NULL,
    checksums TEXT NOT NULL DEFAULT '{}', attrs TEXT NOT NULL DEFAULT '{}',
    PRIMARY KEY (upload_id, number));
-- Databases made before flexible checksums (checked first, as for uploads.state).
DO $$ BEGIN
    IF NOT EXISTS (SELECT 1 FROM information_schema.columns WHERE table_schema = current_schema()
                   AND table_name = 'parts' AND column_name = 'checksums') THEN
        ALTER TABLE parts ADD COLUMN checksums TEXT NOT NULL DEFAULT '{}';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM information_schema.columns WHERE table_schema = current_schema()
                   AND table_name = 'parts' AND column_name = 'attrs') THEN
        ALTER TABLE parts ADD COLUMN attrs TEXT NOT NULL DEFAULT '{}';  -- before part attrs
    END IF;
END $$;
-- Identity ids are never reused: a late abandon_intent(id) or drop_garbage(id) cannot hit a
-- newer row.
CREATE TABLE IF NOT EXISTS intents (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, location TEXT NOT NULL,
    key TEXT NOT NULL, created DOUBLE PRECISION NOT NULL);
CREATE INDEX IF NOT EXISTS intents_created ON intents(created);
-- not_before is 0 until a removal failed: new rows are due at once, whatever the clocks say.
CREATE TABLE IF NOT EXISTS garbage (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, location TEXT NOT NULL,
    kind TEXT NOT NULL, data TEXT NOT NULL, added DOUBLE PRECISION NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0, not_before DOUBLE PRECISION NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS garbage_due ON garbage(not_before, id);
-- The functions of the previous schema (other signatures: CREATE OR REPLACE would add
-- overloads next to them).
DROP FUNCTION IF EXISTS s3gw_put_object(TEXT, TEXT, BIGINT, TEXT, DOUBLE PRECISION, TEXT, TEXT,
    TEXT, TEXT, TEXT, TEXT, TEXT, TEXT, BOOLEAN);
DROP FUNCTION IF EXISTS s3gw_delete_object(TEXT, TEXT, TEXT);
DROP FUNCTION IF EXISTS s3gw_put_object(TEXT, TEXT, BIGINT, TEXT, DOUBLE PRECISION, TEXT, TEXT,
    TEXT, TEXT, TEXT, TEXT, TEXT, TEXT, BOOLEAN, BIGINT, DOUBLE PRECISION, DOUBLE PRECISION);
DROP FUNCTION IF EXISTS s3gw_delete_object(TEXT, TEXT, TEXT, DOUBLE PRECISION);
DROP FUNCTION IF EXISTS s3gw_put_object(TEXT, TEXT, BIGINT, TEXT, DOUBLE PRECISION, TEXT, TEXT,
    TEXT, TEXT, TEXT, TEXT, TEXT, TEXT, BOOLEAN, BIGINT, DOUBLE PRECISION, DOUBLE PRECISION, TEXT);
DROP FUNCTION IF EXISTS s3gw_delete_object(TEXT, TEXT, TEXT, DOUBLE PRECISION, TEXT);
""" + f"""
-- Pieces (JSON arrays of Stored dicts, as text) of `p_old` that lost their record go to the
-- garbage ledger, but for those `p_kept` may still name (same location and key, and the same
-- version or either without one: ledger.same_bytes). json, not jsonb: each piece's text is
-- kept as it was written.
CREATE OR REPLACE FUNCTION s3gw_drop_pieces(p_old TEXT, p_kept TEXT, p_now DOUBLE PRECISION)
RETURNS VOID LANGUAGE sql VOLATILE AS $fn$
    INSERT INTO garbage (location, kind, data, added)
    SELECT o.piece ->> 'location', 'piece', o.piece::text, p_now
    FROM json_array_elements(p_old::json) WITH ORDINALITY AS o(piece, n)
    WHERE NOT EXISTS (
        SELECT 1 FROM json_array_elements(p_kept::json) AS k(piece)
        WHERE k.piece ->> 'location' = o.piece ->> 'location'
          AND k.piece ->> 'key' = o.piece ->> 'key'
          AND (k.piece ->> 'version_id' IS NULL OR o.piece ->> 'version_id' IS NULL
               OR k.piece ->> 'version_id' = o.piece ->> 'version_id'))
    ORDER BY o.n
$fn$;
-- The two hot writes run server-side: one round trip instead of many. Each statement of a
-- VOLATILE function takes a fresh READ COMMITTED snapshot, so once the locks are held every
-- earlier writer's commit is visible, exactly as with separate statements.
-- Make the object the key's current version; an unversioned write (version id NULL) replaces
-- the null version, which is returned and whose pieces become garbage. With p_bucket_created,
-- the bucket must still be that incarnation; with p_intent, that intent is taken (it must
-- still exist: a reclaimed intent's bytes are garbage already).
CREATE OR REPLACE FUNCTION s3gw_put_object(
    p_bucket TEXT, p_key TEXT, p_size BIGINT, p_etag TEXT, p_last_modified DOUBLE PRECISION,
    p_location TEXT, p_pieces TEXT, p_owner TEXT, p_headers TEXT, p_user_meta TEXT,
    p_tags TEXT, p_attrs TEXT, p_version_id TEXT, p_delete_marker BOOLEAN,
    p_intent BIGINT, p_bucket_created DOUBLE PRECISION, p_now DOUBLE PRECISION,
    p_expect TEXT, p_slot INTEGER)
RETURNS SETOF objects LANGUAGE plpgsql VOLATILE AS $fn$
DECLARE
    r objects;
BEGIN
    PERFORM 1 FROM buckets b WHERE b.name = p_bucket FOR KEY SHARE;
    PERFORM 1 FROM s3gw_locks l WHERE l.id = p_slot FOR UPDATE;
    PERFORM s3gw_expect(p_bucket, p_key, p_expect);
    IF p_bucket_created IS NOT NULL AND NOT EXISTS (
            SELECT 1 FROM buckets b WHERE b.name = p_bucket AND b.created = p_bucket_created) THEN
        RAISE EXCEPTION 'bucket % is gone', p_bucket USING ERRCODE = '{BUCKET_GONE}';
    END IF;
    IF p_intent IS NOT NULL THEN
        DELETE FROM intents i WHERE i.id = p_intent;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'intent % is gone', p_intent USING ERRCODE = '{INTENT_GONE}';
        END IF;
    END IF;
    IF p_version_id IS NULL THEN
        FOR r IN DELETE FROM objects o WHERE o.bucket = p_bucket AND o.key = p_key
                AND o.version_id IS NULL RETURNING o.* LOOP
            PERFORM s3gw_drop_pieces(r.pieces, p_pieces, p_now);
            RETURN NEXT r;
        END LOOP;
    END IF;
    UPDATE objects o SET latest = FALSE WHERE o.bucket = p_bucket AND o.key = p_key AND o.latest;
    INSERT INTO objects ({OBJECT_COLUMNS}, seq) VALUES (
        p_bucket, p_key, p_size, p_etag, p_last_modified, p_location, p_pieces, p_owner,
        p_headers, p_user_meta, p_tags, p_attrs, p_version_id, p_delete_marker, TRUE,
        (SELECT COALESCE(MAX(o.seq), 0) + 1 FROM objects o
         WHERE o.bucket = p_bucket AND o.key = p_key));
END
$fn$;
-- A conditional write's check, under the key lock: p_expect NULL: none; '*': the key has no
-- current object (If-None-Match: *); else that ETag must be the current object's (If-Match).
CREATE OR REPLACE FUNCTION s3gw_expect(p_bucket TEXT, p_key TEXT, p_expect TEXT)
RETURNS VOID LANGUAGE plpgsql VOLATILE AS $fn$
DECLARE
    current_etag TEXT;
BEGIN
    IF p_expect IS NULL THEN
        RETURN;
    END IF;
    SELECT o.etag INTO current_etag FROM objects o WHERE o.bucket = p_bucket AND o.key = p_key
        AND o.latest AND NOT o.delete_marker;
    IF p_expect = '*' AND current_etag IS NOT NULL THEN
        RAISE EXCEPTION 'exists' USING ERRCODE = '{CONDITION_EXISTS}';
    ELSIF p_expect <> '*' AND current_etag IS NULL THEN
        RAISE EXCEPTION 'missing' USING ERRCODE = '{CONDITION_MISSING}';
    ELSIF p_expect <> '*' AND current_etag <> p_expect THEN
        RAISE EXCEPTION 'mismatch' USING ERRCODE = '{CONDITION_MISMATCH}';
    END IF;
END
$fn$;
-- Remove one version (NULL: the null version) and return it; when it was the current one,
-- the next newest becomes current. Its pieces become garbage.
CREATE OR REPLACE FUNCTION s3gw_delete_object(p_bucket TEXT, p_key TEXT, p_version_id TEXT,
                                              p_now DOUBLE PRECISION, p_expect TEXT,
                                              p_slot INTEGER)
RETURNS SETOF objects LANGUAGE plpgsql VOLATILE AS $fn$
DECLARE
    r objects;
    was_latest BOOLEAN := FALSE;
BEGIN
    PERFORM 1 FROM s3gw_locks l WHERE l.id = p_slot FOR UPDATE;
    PERFORM s3gw_expect(p_bucket, p_key, p_expect);
    IF p_version_id IS NULL THEN
        FOR r IN DELETE FROM objects o WHERE o.bucket = p_bucket AND o.key = p_key
                AND o.version_id IS NULL RETURNING o.* LOOP
            was_latest := was_latest OR r.latest;
            PERFORM s3gw_drop_pieces(r.pieces, '[]', p_now);
            RETURN NEXT r;
        END LOOP;
    ELSE
        FOR r IN DELETE FROM objects o WHERE o.bucket = p_bucket AND o.key = p_key
                AND o.version_id = p_version_id RETURNING o.* LOOP
            was_latest := was_latest OR r.latest;
            PERFORM s3gw_drop_pieces(r.pieces, '[]', p_now);
            RETURN NEXT r;
        END LOOP;
    END IF;
    IF was_latest THEN
        UPDATE objects o SET latest = TRUE WHERE o.bucket = p_bucket AND o.key = p_key
            AND o.seq = (SELECT MAX(m.seq) FROM objects m
                         WHERE m.bucket = p_bucket AND m.key = p_key);
    END IF;
END
$fn$;
"""

# --- background jobs (gateway/jobs/): the queue's tables ------------------------------------
# One pending-or-running job per (kind, job_key) (the partial unique index); claims take rows
# with FOR UPDATE SKIP LOCKED, so gateways claiming at once never get the same job, and a claim
# whose lease ran out (its gateway died) is due again. job_totals counts finished jobs.
JOBS_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, kind TEXT NOT NULL,
    job_key TEXT NOT NULL, bucket TEXT NOT NULL, data TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending', attempts INTEGER NOT NULL DEFAULT 0,
    created DOUBLE PRECISION NOT NULL, not_before DOUBLE PRECISION NOT NULL DEFAULT 0,
    worker TEXT, lease_until DOUBLE PRECISION NOT NULL DEFAULT 0, error TEXT);
CREATE UNIQUE INDEX IF NOT EXISTS jobs_active ON jobs(kind, job_key)
    WHERE state IN ('pending', 'running');
CREATE INDEX IF NOT EXISTS jobs_due ON jobs(state, not_before, id);
CREATE TABLE IF NOT EXISTS job_totals (
    kind TEXT NOT NULL, outcome TEXT NOT NULL, count BIGINT NOT NULL,
    PRIMARY KEY (kind, outcome));
"""
SCHEMA += JOBS_SCHEMA
JOB_COLUMNS = ("id, kind, job_key, bucket, data, state, attempts, created, not_before, worker, "
               "lease_until, error")
COUNT_JOB = ("INSERT INTO job_totals (kind, outcome, count) VALUES ($1, $2, 1) "
             "ON CONFLICT (kind, outcome) DO UPDATE SET count = job_totals.count + 1")
# --- end of background jobs ------------------------------------------------------------------

# --- accounts and access keys at runtime (gateway/accounts.py) ------------------------------
# account_changes holds one counter, bumped by every change in the same transaction: gateways
# poll it and reload the rows only when it moved. Secrets are sealed (never plain text).
ACCOUNTS_SCHEMA = """
CREATE TABLE IF NOT EXISTS accounts (
    name TEXT PRIMARY KEY, email TEXT NOT NULL UNIQUE, arn TEXT NOT NULL,
    canonical_id TEXT NOT NULL UNIQUE, shortid TEXT NOT NULL UNIQUE,
    created DOUBLE PRECISION NOT NULL);
CREATE TABLE IF NOT EXISTS access_keys (
    access TEXT PRIMARY KEY, account TEXT NOT NULL, secret TEXT, enabled BOOLEAN NOT NULL,
    created DOUBLE PRECISION NOT NULL);
CREATE TABLE IF NOT EXISTS account_changes (
    id INTEGER PRIMARY KEY CHECK (id = 1), counter BIGINT NOT NULL);
INSERT INTO account_changes (id, counter) VALUES (1, 0) ON CONFLICT (id) DO NOTHING;
"""
SCHEMA += ACCOUNTS_SCHEMA
BUMP_ACCOUNTS = "UPDATE account_changes SET counter = counter + 1 WHERE id = 1"
INSERT_KEY = ("INSERT INTO access_keys (access, account, secret, enabled, created) "
              "VALUES ($1, $2, $3, $4, $5)")
# --- end of accounts -------------------------------------------------------------------------

PUT_OBJECT = (f"SELECT {OBJECT_COLUMNS}, seq FROM s3gw_put_object("
              "$1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,$18,$19)")
DELETE_OBJECT = f"SELECT {OBJECT_COLUMNS}, seq FROM s3gw_delete_object($1, $2, $3, $4, $5, $6)"
CURRENT = "latest AND NOT delete_marker"
UPLOAD_COLUMNS = ("upload_id, bucket, key, initiated, owner, location, backend_key, "
                  "backend_upload_id, headers, user_meta, tags, attrs, state")
PART_COLUMNS = "upload_id, number, size, etag, last_modified, stored, checksums, attrs"
BUCKET_COLUMNS = "name, owner, location, created, attrs"
GARBAGE_COLUMNS = "id, location, kind, data, added, attempts"
INSERT_GARBAGE = "INSERT INTO garbage (location, kind, data, added) VALUES ($1, $2, $3, $4)"
# Bucket lock first, key lock second (see the module docstring). The select list is evaluated
# left to right, so one round trip takes both in that order. (s3gw_put_object and
# s3gw_delete_object take the same locks, in the same order.)
LOCK_WRITE = ("SELECT (SELECT count(*) FROM (SELECT 1 FROM buckets WHERE name=$1 "
              "FOR KEY SHARE) b), "
              "(SELECT count(*) FROM (SELECT 1 FROM s3gw_locks WHERE id=$2 FOR UPDATE) k)")
LOCK_KEY = "SELECT 1 FROM s3gw_locks WHERE id=$1 FOR UPDATE"
LOCK_BUCKET_SHARED = "SELECT 1 FROM buckets WHERE name=$1 FOR KEY SHARE"
LOCK_BUCKET = "SELECT 1 FROM buckets WHERE name=$1 FOR UPDATE"
LOCK_BUCKET_CREATION = f"SELECT 1 FROM s3gw_locks WHERE id={BUCKET_CREATION} FOR UPDATE"


async def _create_locks_table(conn: asyncpg.Connection) -> None:
    """The lock table, before anything can be locked: two gateways creating it at once make
    one of them fail on a duplicate catalog row; that one tries again and finds it made."""
    for attempt in range(20):
        try:
            async with conn.transaction():
                await conn.execute(LOCKS_SCHEMA)
            return
        except (asyncpg.UniqueViolationError, asyncpg.DuplicateTableError,
                asyncpg.DuplicateObjectError):
            if attempt == 19:
                raise
            await asyncio.sleep(0.05 * (attempt + 1))


def key_slot(bucket: str, key: str) -> int:
    """The key lock's row: the same in every gateway (not Python's salted hash())."""
    return zlib.crc32(f"{bucket}/{key}".encode("utf-8", "surrogatepass")) % KEY_SLOTS
# referenced_pieces reads this many rows per round trip.
PAGE = 500


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def _pieces_json(pieces: list[Stored]) -> str:
    return _dumps([p.to_dict() for p in pieces])


def _dict(text: str) -> dict[str, Any]:
    return {} if text == "{}" else json.loads(text)


def _object_row(obj: ObjectRecord) -> tuple[Any, ...]:
    return (obj.bucket, obj.key, obj.size, obj.etag, float(obj.last_modified), obj.location,
            _pieces_json(obj.pieces), obj.owner, _dumps(obj.headers),
            _dumps(obj.user_meta), _dumps(obj.tags), _dumps(obj.attrs), obj.version_id,
            bool(obj.delete_marker))


def _object_from(row: asyncpg.Record) -> ObjectRecord:
    return ObjectRecord(
        bucket=row[0], key=row[1], size=row[2], etag=row[3], last_modified=row[4],
        location=row[5], pieces=[Stored.from_dict(p) for p in json.loads(row[6])], owner=row[7],
        headers=_dict(row[8]), user_meta=_dict(row[9]), tags=_dict(row[10]),
        attrs=_dict(row[11]), version_id=row[12], delete_marker=row[13], latest=row[14])


def _bucket_from(row: asyncpg.Record) -> BucketRecord:
    return BucketRecord(row[0], row[1], row[2], row[3], attrs=_dict(row[4]))


def _upload_row(up: UploadRecord) -> tuple[Any, ...]:
    return (up.upload_id, up.bucket, up.key, float(up.initiated), up.owner, up.location,
            up.backend_key, up.backend_upload_id, _dumps(up.headers), _dumps(up.user_meta),
            _dumps(up.tags), _dumps(up.attrs), up.state)


def _upload_from(row: asyncpg.Record) -> UploadRecord:
    return UploadRecord(*row[:8], headers=json.loads(row[8]), user_meta=json.loads(row[9]),
                        tags=json.loads(row[10]), attrs=json.loads(row[11]), state=row[12])


def _part_from(row: asyncpg.Record) -> PartRecord:
    return PartRecord(row[0], row[1], row[2], row[3], row[4], Stored.from_dict(json.loads(row[5])),
                      _dict(row[6]), _dict(row[7]))


def _garbage_from(row: asyncpg.Record) -> GarbageRecord:
    return GarbageRecord(row[0], row[1], row[2], json.loads(row[3]), row[4], row[5])


def _job_from(row: asyncpg.Record) -> JobRecord:  # background jobs
    return JobRecord(row[0], row[1], row[2], row[3], json.loads(row[4]), row[5], row[6], row[7],
                     row[8], row[9], row[10], row[11])


def _refused(error: asyncpg.PostgresError, bucket: str, intent: int | None) -> NoReturn:
    """Raise what our functions' SQLSTATEs mean, or the error itself."""
    state = getattr(error, "sqlstate", None)
    if state == BUCKET_GONE:
        raise BucketGone(bucket) from None
    if state == INTENT_GONE:
        raise LookupError(f"intent {intent} is gone") from None
    if state in _CONDITIONS:
        raise ConditionFailed(_CONDITIONS[state]) from None
    raise error


async def _add_garbage(conn: asyncpg.Connection,
                       rows: list[tuple[str, str, dict[str, Any]]]) -> None:
    """Insert (location, kind, data) rows into the garbage ledger, in the caller's
    transaction."""
    if rows:
        now = time.time()
        await conn.executemany(INSERT_GARBAGE,
                               [(loc, kind, _dumps(data), now) for loc, kind, data in rows])


# Connections. A DSN naming every node with target_session_attrs=read-write
# (postgresql://u@h1:p1,h2:p2/db?target_session_attrs=read-write, or libpq's ?host=h1,h2&port=..)
# finds the primary again after a failover: the pool replaces broken connections as it hands
# them out. asyncpg spends one timeout on all the hosts, though, so a host that swallows packets
# (a lost machine: typically the old primary, first in the list) would use it all and the new
# primary would never be tried. As libpq's connect_timeout, each host gets its own.
CONNECT_TIMEOUT_PER_HOST = 5.0


def dsn_hosts(dsn: str) -> list[tuple[str, int | None]]:
    """The (host, port) pairs a DSN names, in order (port None: the default)."""
    from urllib.parse import parse_qs, unquote, urlsplit

    parts = urlsplit(dsn)
    hostspec = parts.netloc.rpartition("@")[2]
    pairs: list[tuple[str, str]] = []
    if hostspec:
        for item in hostspec.split(","):
            if ":" in item and not item.endswith("]"):
                host, _, port = item.rpartition(":")
            else:
                host, port = item, ""
            pairs.append((unquote(host).strip("[]"), port))
    else:
        query = parse_qs(parts.query)
        hosts = query.get("host", [""])[0].split(",")
        ports = query.get("port", [""])[0].split(",")
        if len(ports) == 1:  # libpq: one port for every host
            ports = ports * len(hosts)
        if len(ports) != len(hosts):
            return []  # asyncpg says what is wrong
        pairs = [(host, port) for host, port in zip(hosts, ports, strict=True) if host]
    return [(host, int(port) if port else None) for host, port in pairs]


async def connect_each_host(dsn: str, **kwargs: Any) -> asyncpg.Connection:
    """asyncpg.connect, with a timeout of its own for each host of a multi-host DSN."""
    hosts = dsn_hosts(dsn)
    if len(hosts) < 2:
        return await asyncpg.connect(dsn, **kwargs)
    error: BaseException | None = None
    for host, port in hosts:
        try:
            return await asyncpg.connect(dsn, host=host, port=port,
                                         timeout=CONNECT_TIMEOUT_PER_HOST, **kwargs)
        except (OSError, TimeoutError, asyncpg.TargetServerAttributeNotMatched,
                asyncpg.CannotConnectNowError) as exc:  # down, stuck, a standby, starting
            error = exc
    assert error is not None
    raise error


# A server that cannot answer now: down or unreachable (OSError, a connect timeout, a connection
# lost: class 08), shutting down or starting (57P01-03), a standby (25006, or no host would do),
# out of connections (53300), a connection the client side found broken (InternalClientError:
# "cannot switch to state N; another operation (2) is in progress" when a dying backend's FATAL
# arrived while the connection sat in the pool), or a transaction the server rolled back to be
# tried again (class 40: a serialization failure, as engines that run SERIALIZABLE answer a
# conflict; a deadlock). Not the request's fault, and its transaction did not commit.
UNAVAILABLE: tuple[type[BaseException], ...] = (
    OSError, TimeoutError, asyncpg.PostgresConnectionError, asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError, asyncpg.CannotConnectNowError,
    asyncpg.ReadOnlySQLTransactionError, asyncpg.TooManyConnectionsError,
    asyncpg.InternalClientError,  # (with TargetServerAttributeNotMatched: no host would do)
    asyncpg.TransactionRollbackError)
# Errors after which a connection is not used again: the pool connects anew, and
# target_session_attrs finds the primary.
DROP_CONNECTION = (asyncpg.ReadOnlySQLTransactionError, asyncpg.InternalClientError)
OUTAGE_LOG_EVERY = 5.0  # s: one log line per this while requests keep failing
log = logging.getLogger("gateway.metadata.postgres")
_outage_logged = 0.0


class _OneLine(logging.Filter):
    """asyncpg's pool logs each failed reconnect (every 1, 2, 4... 60 s during an outage) with a
    traceback: one line is enough, the outage is not a bug."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            record.msg = f"{record.getMessage()}: {type(exc).__name__}: {' '.join(str(exc).split())}"
            record.args, record.exc_info, record.exc_text = (), None, None
        return True


logging.getLogger("asyncpg.pool").addFilter(_OneLine())


def _unavailable(exc: BaseException, closed: bool) -> MetadataUnavailable | None:
    """`exc` as MetadataUnavailable when it means the server cannot answer now, else None.
    `closed`: whether the connection `exc` came from is closed (or there was none)."""
    global _outage_logged
    if not isinstance(exc, UNAVAILABLE) and not (
            # "connection is closed": lost between two statements; "pool is closing"
            isinstance(exc, asyncpg.InterfaceError) and closed):
        return None
    detail = f"{type(exc).__name__}: {' '.join(str(exc).split())}"[:300]
    now = time.monotonic()
    if now - _outage_logged >= OUTAGE_LOG_EVERY:
        _outage_logged = now
        log.warning("metadata store unavailable (requests answer 503): %s", detail)
    return MetadataUnavailable(detail)


class Pool:
    """The store's connections: asyncpg's pool, where a server that cannot answer now comes
    out as MetadataUnavailable (503 ServiceUnavailable, which clients retry) instead of
    asyncpg's error (a 500). The one place those errors are mapped: every call of the store
    goes through here. A connection to a standby (read-only) or in a broken state is closed on
    the way (DROP_CONNECTION), so the pool connects again."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.raw = pool

    def acquire(self) -> Acquired:
        return Acquired(self.raw)

    async def fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        async with Acquired(self.raw) as conn:
            return await conn.fetch(query, *args)

    async def fetchrow(self, query: str, *args: Any) -> asyncpg.Record | None:
        async with Acquired(self.raw) as conn:
            return await conn.fetchrow(query, *args)

    async def fetchval(self, query: str, *args: Any) -> Any:
        async with Acquired(self.raw) as conn:
            return await conn.fetchval(query, *args)

    async def execute(self, query: str, *args: Any) -> str:
        async with Acquired(self.raw) as conn:
            return await conn.execute(query, *args)

    def __getattr__(self, name: str) -> Any:  # the rest of asyncpg's Pool, for tests and tools
        return getattr(self.raw, name)


class Acquired:
    """`async with pool.acquire() as conn:` with the errors mapped (see Pool)."""

    __slots__ = ("pool", "conn")

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self.conn: asyncpg.Connection | None = None

    async def __aenter__(self) -> asyncpg.Connection:
        try:
            self.conn = await self.pool.acquire()
        except Exception as exc:  # connecting anew: refused, timed out, only standbys...
            unavailable = _unavailable(exc, True)
            if unavailable is None:
                raise
            raise unavailable from exc
        return self.conn

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        conn, self.conn = self.conn, None
        assert conn is not None
        unavailable = None
        if exc is not None:
            # (A connection closed while checked out is detached from its proxy by the pool:
            # every call of it then raises InterfaceError.)
            try:
                closed = conn.is_closed()
            except asyncpg.InterfaceError:
                closed = True
            unavailable = _unavailable(exc, closed)
            if isinstance(exc, DROP_CONNECTION) and not closed:
                conn.terminate()  # a standby, a broken protocol state: the pool connects anew
        try:
            await self.pool.release(conn)
        except Exception as release_error:
            # Resetting the connection for its next user failed: the server dropped or broke
            # it after the body was done (seen in a failover: a put committed, then the reset
            # met a terminating session). asyncpg's pool has closed it and connects anew when
            # needed; what the body did stands, and its own error, if any, is the answer.
            log.info("a metadata connection was dropped on release: %s: %s",
                     type(release_error).__name__, " ".join(str(release_error).split())[:200])
        if unavailable is not None:
            raise unavailable from exc


class PostgresStore(MetadataStore):
    def __init__(self, dsn: str, *, min_size: int = 2, max_size: int = 20) -> None:
        self.dsn = dsn
        self.min_size = min_size
        self.max_size = max_size
        self._pool: Pool | None = None

    @property
    def pool(self) -> Pool:
        if self._pool is None:
            raise RuntimeError("PostgresStore is not open")
        return self._pool

    async def open(self) -> None:
        pool = await asyncpg.create_pool(
            self.dsn, min_size=self.min_size, max_size=self.max_size, connect=connect_each_host,
            server_settings={"application_name": "s3-gateway"})
        try:
            async with pool.acquire() as conn:
                await _create_locks_table(conn)
                async with conn.transaction():
                    # Gateways starting together would race on CREATE ... IF NOT EXISTS
                    # (duplicate catalog rows): one creates, the others wait and find it done.
                    await conn.execute(f"SELECT 1 FROM s3gw_locks WHERE id={SCHEMA_LOCK} "
                                       "FOR UPDATE")
                    await conn.execute(SCHEMA)
        except BaseException:
            await pool.close()
            raise
        self._pool = Pool(pool)  # (a server unreachable at start refuses the start instead)

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.raw.close()
            self._pool = None

    async def ping(self) -> None:
        await self.pool.fetchval("SELECT 1")

    # buckets ------------------------------------------------------------------------------
    async def create_bucket(self, bucket: BucketRecord, *,
                            exclusive_location: bool = False) -> BucketRecord | None:
        async with self.pool.acquire() as conn:
            while True:
                async with conn.transaction():
                    # Every create of this location queues here, so the check below and the
                    # insert are one step against any concurrent create.
                    await conn.execute(LOCK_BUCKET_CREATION)
                    existing = await self._bucket(conn, bucket.name)
                    if existing is not None:
                        return existing
                    if exclusive_location:
                        other = await conn.fetchval(
                            "SELECT name FROM buckets WHERE location=$1 LIMIT 1", bucket.location)
                        if other is not None:
                            raise LocationTaken(other)
                    # ON CONFLICT waits for a concurrent creator (of another location), so
                    # exactly one insert wins.
                    if await conn.fetchval(
                            f"INSERT INTO buckets ({BUCKET_COLUMNS}) VALUES ($1, $2, $3, $4, $5) "
                            "ON CONFLICT (name) DO NOTHING RETURNING 1",
                            bucket.name, bucket.owner, bucket.location, float(bucket.created),
                            _dumps(bucket.attrs)):
                        return None
                    existing = await self._bucket(conn, bucket.name)  # a fresh snapshot
                    if existing is not None:
                        return existing
                # Created and deleted again between the two statements: try again.

    @staticmethod
    async def _bucket(conn: asyncpg.Connection, name: str) -> BucketRecord | None:
        row = await conn.fetchrow(f"SELECT {BUCKET_COLUMNS} FROM buckets WHERE name=$1", name)
        return _bucket_from(row) if row is not None else None

    async def get_bucket(self, name: str) -> BucketRecord | None:
        async with self.pool.acquire() as conn:
            return await self._bucket(conn, name)

    async def list_buckets(self, owner: str) -> list[BucketRecord]:
        rows = await self.pool.fetch(f"SELECT {BUCKET_COLUMNS} FROM buckets "
                                     "WHERE owner=$1 ORDER BY name", owner)
        return [_bucket_from(r) for r in rows]

    async def update_bucket_attrs(self, name: str, changes: dict[str, Any]) -> BucketRecord | None:
        async with self.pool.acquire() as conn, conn.transaction():
            # The row lock queues concurrent updates of this bucket: each merges into what the
            # one before it committed.
            row = await conn.fetchrow(
                f"SELECT {BUCKET_COLUMNS} FROM buckets WHERE name=$1 FOR NO KEY UPDATE", name)
            if row is None:
                return None
            attrs = merge_attrs(_dict(row[4]), changes)
            await conn.execute("UPDATE buckets SET attrs=$1 WHERE name=$2", _dumps(attrs), name)
            return BucketRecord(row[0], row[1], row[2], row[3], attrs=attrs)

    async def delete_bucket(self, name: str) -> bool:
        async with self.pool.acquire() as conn, conn.transaction():
            # Exclusive bucket lock: in-flight writes into the bucket finish first and the
            # check below (a new snapshot) sees them; later writes wait for this commit.
            await conn.execute(LOCK_BUCKET, name)
            busy = await conn.fetchval(
                "SELECT EXISTS(SELECT 1 FROM objects WHERE bucket=$1) "
                "OR EXISTS(SELECT 1 FROM uploads WHERE bucket=$1 AND state='completing')", name)
            if not busy:
                # As AWS: uploads still in progress do not keep a bucket alive; they are
                # aborted with it (their backend state goes to the garbage ledger).
                uploads = await conn.fetch(
                    "DELETE FROM uploads WHERE bucket=$1 RETURNING upload_id, location, "
                    "backend_key, backend_upload_id", name)
                for upload_id, location, backend_key, backend_upload_id in uploads:
                    rows = await conn.fetch(
                        f"DELETE FROM parts WHERE upload_id=$1 RETURNING {PART_COLUMNS}",
                        upload_id)
                    parts = sorted((_part_from(r) for r in rows), key=lambda p: p.number)
                    await _add_garbage(conn, [(location, "upload", upload_garbage(
                        backend_key, backend_upload_id, parts))])
                await conn.execute("DELETE FROM buckets WHERE name=$1", name)
            return not busy

    # objects ------------------------------------------------------------------------------
    @staticmethod
    async def _object(conn: asyncpg.Connection, bucket: str, key: str,
                      version_id: str | None = None, markers: bool = False
                      ) -> ObjectRecord | None:
        if version_id is None:
            where, args = "latest", (bucket, key)
        elif version_id == "null":
            where, args = "version_id IS NULL", (bucket, key)
        else:
            where, args = "version_id = $3", (bucket, key, version_id)
        row = await conn.fetchrow(f"SELECT {OBJECT_COLUMNS} FROM objects WHERE bucket=$1 AND "
                                  f"key=$2 AND {where} ORDER BY seq DESC LIMIT 1", *args)
        if row is None:
            return None
        record = _object_from(row)
        return None if record.delete_marker and not markers else record

    @staticmethod
    async def _insert_current(conn: asyncpg.Connection, obj: ObjectRecord,
                              intent: int | None = None,
                              bucket_created: float | None = None,
                              expect: str | None = None) -> ObjectRecord | None:
        """Make `obj` the key's current version; an unversioned write replaces the null one
        (s3gw_put_object: bucket lock shared, key lock, in the caller's transaction if any)."""
        try:
            rows = await conn.fetch(
                PUT_OBJECT, *_object_row(obj), intent,
                None if bucket_created is None else float(bucket_created), time.time(), expect,
                key_slot(obj.bucket, obj.key))
        except asyncpg.PostgresError as e:
            _refused(e, obj.bucket, intent)
        return _object_from(max(rows, key=lambda r: r[-1])) if rows else None

    async def put_object(self, obj: ObjectRecord, *, intent: int | None = None,
                         bucket_created: float | None = None,
                         expect: str | None = None) -> ObjectRecord | None:
        async with self.pool.acquire() as conn:  # one statement: its own transaction
            return await self._insert_current(conn, obj, intent, bucket_created, expect)

    async def get_object(self, bucket: str, key: str, version_id: str | None = None, *,
                         markers: bool = False) -> ObjectRecord | None:
        async with self.pool.acquire() as conn:
            return await self._object(conn, bucket, key, version_id, markers)

    async def delete_object(self, bucket: str, key: str, version_id: str | None = None, *,
                            expect: str | None = None,
                            guard: Guard | None = None) -> ObjectRecord | None:
        vid = None if not version_id or version_id == "null" else version_id
        if guard is not None:  # Object Lock: the version is checked under the same locks
            return await self._guarded_delete(bucket, key, vid, expect, guard)
        try:
            rows = await self.pool.fetch(DELETE_OBJECT, bucket, key, vid, time.time(), expect,
                                         key_slot(bucket, key))
        except asyncpg.PostgresError as e:
            _refused(e, bucket, None)
        return _object_from(max(rows, key=lambda r: r[-1])) if rows else None

    async def _guarded_delete(self, bucket: str, key: str, vid: str | None,
                              expect: str | None, guard: Guard) -> ObjectRecord | None:
        """delete_object with a guard: one transaction takes the write locks (bucket shared,
        then key, as s3gw_delete_object does; they are re-entrant), reads the version, lets
        the guard refuse, then deletes, so no update can change the version in between."""
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(LOCK_WRITE, bucket, key_slot(bucket, key))
            stored = await self._object(conn, bucket, key, vid or "null", markers=True)
            if stored is not None:
                guard(stored)
            try:
                rows = await conn.fetch(DELETE_OBJECT, bucket, key, vid, time.time(), expect,
                                         key_slot(bucket, key))
            except asyncpg.PostgresError as e:
                _refused(e, bucket, None)
        return _object_from(max(rows, key=lambda r: r[-1])) if rows else None

    async def update_object(self, bucket: str, key: str, expected_pieces: list[Stored],
                            changes: dict[str, Any], *,
                            guard: Guard | None = None) -> ObjectRecord | None:
        async with self.pool.acquire() as conn, conn.transaction():
            # The key lock makes this read-compare-write atomic against every other writer.
            # The pieces name the version: every version's bytes sit at their own backend keys.
            await conn.execute(LOCK_KEY, key_slot(bucket, key))
            row = await conn.fetchrow(
                f"SELECT {OBJECT_COLUMNS}, seq FROM objects WHERE bucket=$1 AND key=$2 AND "
                "pieces=$3 AND NOT delete_marker ORDER BY seq DESC LIMIT 1",
                bucket, key, _pieces_json(expected_pieces))
            if row is None:
                return None
            current = _object_from(row)
            if guard is not None:  # Object Lock: checked under the key lock
                guard(current)
            updated = replace(current, **changes)
            # A change that re-pinned the bytes (a backend that copies to change metadata,
            # e.g. B2) leaves the old version unreferenced: garbage in this transaction.
            gone = dropped_pieces([p.to_dict() for p in current.pieces],
                                  [p.to_dict() for p in updated.pieces])
            await _add_garbage(conn, [(p["location"], "piece", p) for p in gone])
            await conn.execute(
                "UPDATE objects SET bucket=$1, key=$2, size=$3, etag=$4, last_modified=$5, "
                "location=$6, pieces=$7, owner=$8, headers=$9, user_meta=$10, tags=$11, "
                "attrs=$12, version_id=$13, delete_marker=$14, latest=$15 "
                "WHERE bucket=$16 AND key=$17 AND seq=$18",
                *_object_row(updated), bool(updated.latest), bucket, key, row[-1])
            return updated

    async def discard_piece(self, piece: Stored) -> None:
        async with self.pool.acquire() as conn:
            await _add_garbage(conn, [(piece.location, "piece", piece.to_dict())])

    async def list_objects(self, bucket: str, prefix: str, delimiter: str | None,
                           after: str | None, limit: int) -> Listing:
        async with self.pool.acquire() as conn, conn.transaction(
                isolation="repeatable_read", readonly=True):
            return await self._list_objects(conn, bucket, prefix, delimiter, after, limit)

    @staticmethod
    async def _list_objects(conn: asyncpg.Connection, bucket: str, prefix: str,
                            delimiter: str | None, after: str | None, limit: int) -> Listing:
        walk: KeyWalk[asyncpg.Record] = KeyWalk(prefix, delimiter, limit, after)
        while (span := walk.query()) is not None:
            bound, low = (">", span.cursor_key) if span.cursor_key is not None \
                else (">=", span.floor)
            sql = f"SELECT {OBJECT_COLUMNS} FROM objects WHERE bucket=$1 AND {CURRENT} AND key{bound}$2"
            args: list[Any] = [bucket, low]
            if span.end is not None:
                args.append(span.end)
                sql += f" AND key<${len(args)}"
            args.append(span.limit)
            sql += f" ORDER BY key LIMIT ${len(args)}"
            walk.feed([(row[1], None, row) for row in await conn.fetch(sql, *args)])
        next_marker = walk.last[0] if walk.truncated and walk.last else None
        return Listing([_object_from(row) for row in walk.items], walk.prefixes, walk.truncated,
                       next_marker)

    async def list_versions(self, bucket: str, prefix: str, delimiter: str | None,
                            key_marker: str | None, version_id_marker: str | None,
                            limit: int) -> VersionListing:
        async with self.pool.acquire() as conn, conn.transaction(
                isolation="repeatable_read", readonly=True):
            return await self._list_versions(conn, bucket, prefix, delimiter, key_marker,
                                             version_id_marker, limit)

    @staticmethod
    async def _list_versions(conn: asyncpg.Connection, bucket: str, prefix: str,
                             delimiter: str | None, key_marker: str | None,
                             version_id_marker: str | None, limit: int) -> VersionListing:
        # Resume after key_marker's version_id_marker, or after every version of key_marker.
        marker_seq = None
        if key_marker and version_id_marker:
            if version_id_marker == "null":
                marker_seq = await conn.fetchval(
                    "SELECT seq FROM objects WHERE bucket=$1 AND key=$2 AND version_id IS NULL "
                    "ORDER BY seq LIMIT 1", bucket, key_marker)
            else:
                marker_seq = await conn.fetchval(
                    "SELECT seq FROM objects WHERE bucket=$1 AND key=$2 AND version_id=$3 "
                    "ORDER BY seq LIMIT 1", bucket, key_marker, version_id_marker)
            if marker_seq is None:
                raise LookupError(version_id_marker)
        walk: KeyWalk[asyncpg.Record] = KeyWalk(prefix, delimiter, limit, key_marker or None,
                                                marker_seq)
        while (span := walk.query()) is not None:
            sql = f"SELECT {OBJECT_COLUMNS}, seq FROM objects WHERE bucket=$1"
            args: list[Any] = [bucket]
            if span.cursor_key is None:
                args.append(span.floor)
                sql += f" AND key>=${len(args)}"
            elif span.cursor_seq is None:
                args.append(span.cursor_key)
                sql += f" AND key>${len(args)}"
            else:  # the cursor key's older versions, then the keys after it
                args += [span.cursor_key, span.cursor_seq]
                sql += f" AND key>=${len(args) - 1} AND (key>${len(args) - 1} OR seq<${len(args)})"
            if span.end is not None:
                args.append(span.end)
                sql += f" AND key<${len(args)}"
            args.append(span.limit)
            sql += f" ORDER BY key, seq DESC LIMIT ${len(args)}"
            walk.feed([(row[1], row[-1], row) for row in await conn.fetch(sql, *args)])
        return version_listing(walk, _object_from)

    # multipart ----------------------------------------------------------------------------
    async def create_upload(self, upload: UploadRecord) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            # Shared bucket lock: delete_bucket must see this upload or run before it.
            await conn.execute(LOCK_BUCKET_SHARED, upload.bucket)
            await conn.execute(
                f"INSERT INTO uploads ({UPLOAD_COLUMNS}) "
                "VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13)", *_upload_row(upload))

    async def get_upload(self, upload_id: str) -> UploadRecord | None:
        row = await self.pool.fetchrow(
            f"SELECT {UPLOAD_COLUMNS} FROM uploads WHERE upload_id=$1", upload_id)
        return _upload_from(row) if row else None

    async def list_uploads(self, bucket: str, prefix: str, delimiter: str | None,
                           key_marker: str | None, upload_id_marker: str | None,
                           limit: int) -> UploadListing:
        walk: UploadWalk[asyncpg.Record] = UploadWalk(prefix, delimiter, limit,
                                                      key_marker or None)
        async with self.pool.acquire() as conn, conn.transaction(
                isolation="repeatable_read", readonly=True):
            while (span := walk.query()) is not None:
                sql = f"SELECT {UPLOAD_COLUMNS} FROM uploads WHERE bucket=$1"
                args: list[Any] = [bucket]
                if span.cursor is None:
                    args.append(span.floor)
                    sql += f" AND key>=${len(args)}"
                else:  # one lower bound on key, then the order's tie-breaks
                    args += list(span.cursor)
                    k, i, u = len(args) - 2, len(args) - 1, len(args)
                    sql += (f" AND key>=${k} AND (key>${k} OR initiated>${i} OR "
                            f"(initiated=${i} AND upload_id>${u}))")
                if span.end is not None:
                    args.append(span.end)
                    sql += f" AND key<${len(args)}"
                if key_marker:
                    args.append(key_marker)
                    if upload_id_marker:
                        args.append(upload_id_marker)
                        sql += (f" AND (key>${len(args) - 1} OR (key=${len(args) - 1} AND "
                                f"upload_id>${len(args)}))")
                    else:
                        sql += f" AND key>${len(args)}"
                args.append(span.limit)
                sql += f" ORDER BY key, initiated, upload_id LIMIT ${len(args)}"
                walk.feed([(row[2], row[3], row[0], row) for row in await conn.fetch(sql, *args)])
        return UploadListing([_upload_from(r) for r in walk.items], walk.prefixes,
                             walk.truncated)

    async def count_uploads(self) -> int:
        return int(await self.pool.fetchval("SELECT COUNT(*) FROM uploads"))

    async def put_part(self, part: PartRecord) -> PartRecord | None:
        async with self.pool.acquire() as conn, conn.transaction():
            # Lock the upload row: claim_upload and finish_upload change or delete it, so they
            # either wait for this part or have already moved the upload out of "open"; writers
            # of the upload's parts queue here.
            up = await conn.fetchrow(
                "SELECT state, location, backend_key, backend_upload_id FROM uploads "
                "WHERE upload_id=$1 FOR NO KEY UPDATE", part.upload_id)
            if up is None or up[0] != "open":
                raise LookupError(part.upload_id)
            # One statement: `old` reads the snapshot from before the upsert.
            row = await conn.fetchrow(
                f"WITH old AS (SELECT {PART_COLUMNS} FROM parts WHERE upload_id=$1 AND "
                f"number=$2), new AS (INSERT INTO parts ({PART_COLUMNS}) "
                "VALUES ($1,$2,$3,$4,$5,$6,$7,$8) ON CONFLICT (upload_id, number) DO UPDATE SET "
                "size=EXCLUDED.size, etag=EXCLUDED.etag, last_modified=EXCLUDED.last_modified, "
                "stored=EXCLUDED.stored, checksums=EXCLUDED.checksums, attrs=EXCLUDED.attrs) "
                f"SELECT {PART_COLUMNS} FROM old",
                part.upload_id, part.number, part.size, part.etag, float(part.last_modified),
                _dumps(part.stored.to_dict()), _dumps(part.checksums), _dumps(part.attrs))
            old = _part_from(row) if row else None
            if old is not None and old.stored != part.stored:
                await _add_garbage(conn, [(up[1], "part", part_garbage(up[2], up[3], old))])
            return old

    async def list_parts(self, upload_id: str, after: int, limit: int) -> list[PartRecord]:
        rows = await self.pool.fetch(
            f"SELECT {PART_COLUMNS} FROM parts WHERE upload_id=$1 AND number>$2 "
            "ORDER BY number LIMIT $3", upload_id, after, limit)
        return [_part_from(r) for r in rows]

    async def claim_upload(self, upload_id: str) -> UploadRecord | None:
        # The UPDATE waits for a put_part holding the row, then re-checks the state.
        row = await self.pool.fetchrow(
            f"UPDATE uploads SET state='completing' WHERE upload_id=$1 AND state='open' "
            f"RETURNING {UPLOAD_COLUMNS}", upload_id)
        return _upload_from(row) if row else None

    async def release_upload(self, upload_id: str) -> None:
        await self.pool.execute(
            "UPDATE uploads SET state='open' WHERE upload_id=$1 AND state='completing'",
            upload_id)

    async def release_claims(self) -> int:
        status = await self.pool.execute(
            "UPDATE uploads SET state='open' WHERE state='completing'")
        return int(status.split()[-1])

    async def finish_upload(self, upload_id: str, obj: ObjectRecord | None,
                            listed: Collection[int] = (), *, expect: str | None = None
                            ) -> tuple[list[PartRecord], ObjectRecord | None] | None:
        async with self.pool.acquire() as conn, conn.transaction():
            if obj is not None:  # the object write's locks first, as put_object takes them
                await conn.execute(LOCK_WRITE, obj.bucket, key_slot(obj.bucket, obj.key))
            # Deleting the upload row first waits for a put_part or claim in flight and makes
            # any later one (or a concurrent finish) find the upload gone.
            up = await conn.fetchrow(
                "DELETE FROM uploads u WHERE u.upload_id=$1 AND u.state=$2 RETURNING u.location, "
                "u.backend_key, u.backend_upload_id, "
                "EXISTS(SELECT 1 FROM buckets b WHERE b.name=$3)",
                upload_id, "open" if obj is None else "completing",
                obj.bucket if obj is not None else "")
            if up is None:
                return None  # leaving the block commits nothing: no row was changed
            location, backend_key, backend_upload_id, bucket_exists = up
            rows = await conn.fetch(
                f"DELETE FROM parts WHERE upload_id=$1 RETURNING {PART_COLUMNS}", upload_id)
            parts = sorted((_part_from(r) for r in rows), key=lambda p: p.number)
            if obj is None:  # abort: the backend upload and all its parts go
                await _add_garbage(conn, [(location, "upload",
                                           upload_garbage(backend_key, backend_upload_id, parts))])
                return parts, None
            # delete_bucket refuses while an upload exists, so this holds; checked all the same
            if not bucket_exists:
                raise BucketGone(obj.bucket)
            used, kept = [p.to_dict() for p in obj.pieces], set(listed)
            await _add_garbage(conn, [
                (location, "part", part_garbage(backend_key, backend_upload_id, p))
                for p in parts if p.number not in kept and p.stored.to_dict() not in used])
            return parts, await self._insert_current(conn, obj, expect=expect)

    # intents and garbage ------------------------------------------------------------------
    async def add_intent(self, location: str, key: str) -> int:
        return int(await self.pool.fetchval(
            "INSERT INTO intents (location, key, created) VALUES ($1, $2, $3) RETURNING id",
            location, key, time.time()))

    async def _abandon(self, where: str, arg: float) -> int:
        """Move the intents matching `where` to garbage in one transaction; how many."""
        async with self.pool.acquire() as conn, conn.transaction():
            # A put_object taking the same intent holds its row: one of the two wins.
            rows = await conn.fetch(f"DELETE FROM intents WHERE {where} RETURNING location, key",
                                    arg)
            await _add_garbage(conn, [(r[0], "piece", intent_garbage(r[0], r[1])) for r in rows])
            return len(rows)

    async def abandon_intent(self, intent_id: int) -> None:
        await self._abandon("id=$1", intent_id)

    async def reclaim_intents(self, older_than: float) -> int:
        return await self._abandon("created<$1", float(older_than))

    async def list_intents(self) -> list[IntentRecord]:
        rows = await self.pool.fetch("SELECT id, location, key, created FROM intents ORDER BY id")
        return [IntentRecord(*r) for r in rows]

    async def due_garbage(self, now: float, limit: int,
                          added_before: float | None = None) -> list[GarbageRecord]:
        # New rows (not_before 0) first, oldest first; then retries by when they are due.
        rows = await self.pool.fetch(
            f"SELECT {GARBAGE_COLUMNS} FROM garbage WHERE not_before<=$1 AND added<=$2 "
            "ORDER BY not_before, id LIMIT $3",
            float(now), float(now if added_before is None else added_before), limit)
        return [_garbage_from(r) for r in rows]

    async def drop_garbage(self, garbage_id: int) -> None:
        await self.pool.execute("DELETE FROM garbage WHERE id=$1", garbage_id)

    async def retry_garbage(self, garbage_id: int, not_before: float) -> None:
        await self.pool.execute(
            "UPDATE garbage SET attempts=attempts+1, not_before=$2 WHERE id=$1",
            garbage_id, float(not_before))

    async def count_garbage(self) -> int:
        return int(await self.pool.fetchval("SELECT COUNT(*) FROM garbage"))

    async def referenced_pieces(self) -> AsyncIterator[tuple[str, Stored]]:
        # Keyset pages on the primary keys: bounded memory, no long transaction.
        cursor: tuple[Any, ...] = ("", "", 0)
        while True:
            rows = await self.pool.fetch(
                "SELECT bucket, key, seq, version_id, pieces FROM objects "
                "WHERE (bucket, key, seq) > ($1, $2, $3) AND NOT delete_marker "
                "ORDER BY bucket, key, seq LIMIT $4", *cursor, PAGE)
            for bucket, key, _, version_id, pieces in rows:
                what = f"object {bucket}/{key} v={version_id or 'null'}"
                for p in json.loads(pieces):
                    yield what, Stored.from_dict(p)
            if len(rows) < PAGE:
                break
            cursor = tuple(rows[-1][:3])
        part_cursor: tuple[Any, ...] = ("", 0)
        while True:
            rows = await self.pool.fetch(
                "SELECT upload_id, number, stored FROM parts WHERE (upload_id, number) > ($1, $2) "
                "ORDER BY upload_id, number LIMIT $3", *part_cursor, PAGE)
            for upload_id, number, stored in rows:
                yield f"part {upload_id} {number}", Stored.from_dict(json.loads(stored))
            if len(rows) < PAGE:
                break
            part_cursor = tuple(rows[-1][:2])

    # --- accounts and access keys at runtime (gateway/accounts.py) -------------------------
    async def accounts_version(self) -> int:
        return int(await self.pool.fetchval("SELECT counter FROM account_changes WHERE id = 1"))

    async def load_accounts(self) -> tuple[int, list[AccountRow], list[AccessKeyRow]]:
        async with self.pool.acquire() as conn, conn.transaction(isolation="repeatable_read",
                                                                 readonly=True):
            counter = await conn.fetchval("SELECT counter FROM account_changes WHERE id = 1")
            accounts = [AccountRow(*r) for r in await conn.fetch(
                "SELECT name, email, arn, canonical_id, shortid, created FROM accounts "
                "ORDER BY created, name")]
            keys = [AccessKeyRow(*r) for r in await conn.fetch(
                "SELECT access, account, secret, enabled, created FROM access_keys "
                "ORDER BY created, access")]
        return int(counter), accounts, keys

    async def add_account(self, account: AccountRow, key: AccessKeyRow | None) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            try:
                await conn.execute(
                    "INSERT INTO accounts (name, email, arn, canonical_id, shortid, created) "
                    "VALUES ($1, $2, $3, $4, $5, $6)", account.name, account.email, account.arn,
                    account.canonical_id, account.shortid, float(account.created))
                if key is not None:
                    await conn.execute(INSERT_KEY, key.access, key.account, key.secret,
                                       key.enabled, float(key.created))
            except asyncpg.UniqueViolationError as exc:
                raise AccountConflict(str(exc)) from None
            await conn.execute(BUMP_ACCOUNTS)

    async def remove_account(self, name: str) -> bool:
        async with self.pool.acquire() as conn, conn.transaction():
            accounts = await conn.execute("DELETE FROM accounts WHERE name=$1", name)
            keys = await conn.execute("DELETE FROM access_keys WHERE account=$1", name)
            gone = accounts != "DELETE 0" or keys != "DELETE 0"
            if gone:
                await conn.execute(BUMP_ACCOUNTS)
            return gone

    async def put_access_key(self, key: AccessKeyRow, *, replace: bool = False) -> None:
        sql = INSERT_KEY
        if replace:
            sql += (" ON CONFLICT (access) DO UPDATE SET account=EXCLUDED.account, "
                    "secret=EXCLUDED.secret, enabled=EXCLUDED.enabled, created=EXCLUDED.created")
        async with self.pool.acquire() as conn, conn.transaction():
            try:
                await conn.execute(sql, key.access, key.account, key.secret, key.enabled,
                                   float(key.created))
            except asyncpg.UniqueViolationError as exc:
                raise AccountConflict(str(exc)) from None
            await conn.execute(BUMP_ACCOUNTS)

    async def remove_access_key(self, access: str) -> bool:
        async with self.pool.acquire() as conn, conn.transaction():
            gone = await conn.execute("DELETE FROM access_keys WHERE access=$1", access)
            if gone != "DELETE 0":
                await conn.execute(BUMP_ACCOUNTS)
            return gone != "DELETE 0"
    # --- end of accounts --------------------------------------------------------------------

    # --- background jobs and relocation (gateway/jobs/, gateway/objects/relocate.py) --------
    async def enqueue_job(self, kind: str, job_key: str, bucket: str, data: dict[str, Any],
                          not_before: float = 0.0) -> int | None:
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("DELETE FROM jobs WHERE kind=$1 AND job_key=$2 AND state='failed'",
                               kind, job_key)
            # The partial unique index decides between concurrent enqueuers: one row wins.
            job_id = await conn.fetchval(
                "INSERT INTO jobs (kind, job_key, bucket, data, created, not_before) "
                "VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (kind, job_key) "
                "WHERE state IN ('pending', 'running') DO NOTHING RETURNING id",
                kind, job_key, bucket, _dumps(data), time.time(), float(not_before))
            return None if job_id is None else int(job_id)

    async def claim_jobs(self, worker: str, limit: int, lease: float,
                         now: float | None = None) -> list[JobRecord]:
        at = time.time() if now is None else now
        # SKIP LOCKED: rows another claim holds are passed over, not waited for; a row that
        # claim committed meanwhile is re-checked against the WHERE (running, fresh lease: no
        # longer due) before this UPDATE may take it.
        rows = await self.pool.fetch(
            "UPDATE jobs j SET state='running', worker=$1, lease_until=$2, "
            "attempts=j.attempts+1 FROM (SELECT id FROM jobs WHERE (state='pending' AND "
            "not_before<=$3) OR (state='running' AND lease_until<$3) ORDER BY not_before, id "
            "LIMIT $4 FOR UPDATE SKIP LOCKED) due WHERE j.id=due.id RETURNING "
            + ", ".join(f"j.{c.strip()}" for c in JOB_COLUMNS.split(",")),
            worker, float(at + lease), float(at), limit)
        return sorted((_job_from(r) for r in rows), key=lambda j: (j.not_before, j.id))

    async def extend_job(self, job_id: int, worker: str, lease_until: float) -> bool:
        status = await self.pool.execute(
            "UPDATE jobs SET lease_until=$1 WHERE id=$2 AND worker=$3 AND state='running'",
            float(lease_until), job_id, worker)
        return status.split()[-1] != "0"

    async def complete_job(self, job_id: int, worker: str) -> bool:
        async with self.pool.acquire() as conn, conn.transaction():
            kind = await conn.fetchval("DELETE FROM jobs WHERE id=$1 AND worker=$2 AND "
                                       "state='running' RETURNING kind", job_id, worker)
            if kind is None:
                return False
            await conn.execute(COUNT_JOB, kind, "done")
            return True

    async def fail_job(self, job_id: int, worker: str, error: str,
                       retry_at: float | None) -> bool:
        async with self.pool.acquire() as conn, conn.transaction():
            if retry_at is None:
                kind = await conn.fetchval(
                    "UPDATE jobs SET state='failed', error=$1, worker=NULL WHERE id=$2 AND "
                    "worker=$3 AND state='running' RETURNING kind", error, job_id, worker)
                if kind is not None:
                    await conn.execute(COUNT_JOB, kind, "failed")
                return kind is not None
            status = await conn.execute(
                "UPDATE jobs SET state='pending', error=$1, worker=NULL, not_before=$2 "
                "WHERE id=$3 AND worker=$4 AND state='running'",
                error, float(retry_at), job_id, worker)
            return status.split()[-1] != "0"

    async def job_counts(self) -> dict[str, dict[str, int]]:
        counts: dict[str, dict[str, int]] = {}
        async with self.pool.acquire() as conn:
            for kind, state, n in await conn.fetch(
                    "SELECT kind, state, COUNT(*) FROM jobs GROUP BY kind, state"):
                counts.setdefault(kind, {})[state] = int(n)
            for kind, n in await conn.fetch(
                    "SELECT kind, count FROM job_totals WHERE outcome='done'"):
                counts.setdefault(kind, {})["done"] = int(n)
        return {kind: {s: c.get(s, 0) for s in ("pending", "running", "failed", "done")}
                for kind, c in counts.items()}

    async def release_jobs(self) -> int:
        status = await self.pool.execute(
            "UPDATE jobs SET state='pending', worker=NULL, not_before=0 WHERE state='running'")
        return int(status.split()[-1])

    async def get_job(self, job_id: int) -> JobRecord | None:
        row = await self.pool.fetchrow(f"SELECT {JOB_COLUMNS} FROM jobs WHERE id=$1", job_id)
        return _job_from(row) if row else None

    async def relocate_version(self, bucket: str, key: str, version_id: str | None,
                               expected_pieces: list[Stored], pieces: list[Stored],
                               location: str, attrs: dict[str, Any],
                               intents: list[int], *,
                               keep_old: bool = False) -> ObjectRecord | None:
        async with self.pool.acquire() as conn, conn.transaction():
            # The key lock: no put, delete or update of this key runs between the check and
            # the swap.
            await conn.execute(LOCK_KEY, key_slot(bucket, key))
            row = await conn.fetchrow(
                f"SELECT {OBJECT_COLUMNS}, seq FROM objects WHERE bucket=$1 AND key=$2 AND "
                "version_id IS NOT DISTINCT FROM $3 AND pieces=$4 AND NOT delete_marker",
                bucket, key, version_id, _pieces_json(expected_pieces))
            if row is None:
                return None
            taken = await conn.fetch("DELETE FROM intents WHERE id = ANY($1::bigint[]) "
                                     "RETURNING id", intents)
            if len(taken) != len(set(intents)):  # raising rolls the transaction back
                raise LookupError(f"intents {sorted(set(intents) - {r[0] for r in taken})} "
                                  "are gone")
            current = _object_from(row)
            updated = replace(current, pieces=list(pieces), location=location,
                              attrs=merge_attrs(current.attrs, attrs))
            gone = dropped_pieces([p.to_dict() for p in current.pieces],
                                  [p.to_dict() for p in updated.pieces])
            if not keep_old:
                await _add_garbage(conn, [(p["location"], "piece", p) for p in gone])
            await conn.execute(
                "UPDATE objects SET location=$1, pieces=$2, attrs=$3 WHERE bucket=$4 AND key=$5 "
                "AND seq=$6", location, _pieces_json(updated.pieces), _dumps(updated.attrs),
                bucket, key, row[-1])
            return updated
    # --- end of background jobs and relocation ----------------------------------------------

    # --- moving a bucket (gateway/moving/) ------------------------------------------------
    async def update_bucket(self, name: str, changes: dict[str, Any], *,
                            location: str | None = None,
                            guard: Callable[[BucketRecord], None] | None = None,
                            exclusive_location: bool = False) -> BucketRecord | None:
        async with self.pool.acquire() as conn, conn.transaction():
            if location is not None and exclusive_location:
                # As create_bucket: the location lock makes check and change one step.
                await conn.execute(LOCK_BUCKET_CREATION)
            row = await conn.fetchrow(
                f"SELECT {BUCKET_COLUMNS} FROM buckets WHERE name=$1 FOR NO KEY UPDATE", name)
            if row is None:
                return None
            current = _bucket_from(row)
            if guard is not None:
                guard(current)
            new_location = current.location if location is None else location
            if exclusive_location and new_location != current.location:
                other = await conn.fetchval(
                    "SELECT name FROM buckets WHERE location=$1 AND name<>$2 LIMIT 1",
                    new_location, name)
                if other is not None:
                    raise LocationTaken(other)
            attrs = merge_attrs(current.attrs, changes)
            await conn.execute("UPDATE buckets SET attrs=$1, location=$2 WHERE name=$3",
                               _dumps(attrs), new_location, name)
            return BucketRecord(current.name, current.owner, new_location, current.created,
                                attrs=attrs)
    # --- end of moving a bucket -----------------------------------------------------------
