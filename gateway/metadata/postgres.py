"""PostgreSQL metadata: one database shared by several stateless gateway processes.

Same interface and same results as the SQLite store (gateway/metadata/sqlite.py), call for call;
the listing algorithms are the same code shape, only the SQL dialect differs.

Keys are compared and ordered byte-wise: `key` columns are `COLLATE "C"`, which in a UTF-8
database is code-point order, the order of S3, of SQLite's BINARY collation and of Python's str.
(PostgreSQL text cannot hold U+0000; such keys are refused by the server.)

Concurrency. SQLite serializes every write through one connection; here many connections of
many processes write at once, so each multi-statement write runs in one READ COMMITTED
transaction holding transaction-scoped advisory locks, always taken in this order:

1. the bucket lock, `(NS, hashtext(bucket))` in the two-int key space: *shared* by every write
   that adds an object or an upload (put_object, finish_upload, create_upload), *exclusive* by
   delete_bucket. So delete_bucket waits for in-flight writes, then its emptiness check (a later
   statement, hence a fresh snapshot) sees their rows; writes that start later wait for it.
   Writers of one bucket do not block each other, and the bucket row itself is never locked
   (no MultiXact churn on hot buckets, bucket attribute updates never wait).
2. the key lock, `hashtextextended(bucket || '/' || key, 0)` in the bigint key space,
   exclusive: every write of a key's versions (put, delete, update, completion) holds it, so
   "demote the latest, insert with MAX(seq) + 1" runs alone per key, and a statement run after
   taking it sees every earlier writer's commit. Different keys proceed in parallel; a hash
   collision only makes two keys wait for each other.

The two hot writes, put_object and delete_object, are server-side PL/pgSQL functions
(s3gw_put_object, s3gw_delete_object, created with the schema) taking those same locks: one
round trip, the statement's own transaction, instead of BEGIN / lock / 3 statements / COMMIT.
finish_upload calls s3gw_put_object inside its transaction (advisory locks are re-entrant).

The unique partial index `objects_latest` (one `latest` row per key) and the primary key
(bucket, key, seq) are the schema-level guards of those invariants. Lock ordering rules out
deadlocks between our own transactions; chosen over SERIALIZABLE + retry because writes never
abort and retry, and two PUTs of one key simply queue. Parts: put_part locks the upload row
(FOR NO KEY UPDATE) and finish_upload deletes it first, so a part is never added to an upload
being completed or aborted, and two writers of one part number see each other's part as the one
replaced. Listings run in one REPEATABLE READ read-only transaction: their several seeks see one
snapshot, as a SQLite listing does on its single connection.

The schema is created (IF NOT EXISTS, functions replaced) by every open(), under an advisory
lock so gateways starting together do not collide; the DSN's user needs CREATE on its schema.
Pool size: `max_size` connections per gateway process (default 20): mind max_connections.
Bucket records are not cached (SQLite caches them): another gateway may change them anytime.

JSON fields are stored as text (compact, exactly SQLite's encoding): the store never queries
inside them, and update_object's compare-and-set compares the pieces text as SQLite does.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import asyncpg

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

# Namespace of our two-int advisory locks ("S3GW"), so they stay apart from other users'.
NS = 0x53334757

OBJECT_COLUMNS = ("bucket, key, size, etag, last_modified, location, pieces, owner, headers, "
                  "user_meta, tags, attrs, version_id, delete_marker, latest")
SCHEMA = """
CREATE TABLE IF NOT EXISTS buckets (
    name TEXT COLLATE "C" PRIMARY KEY, owner TEXT NOT NULL, location TEXT NOT NULL,
    created DOUBLE PRECISION NOT NULL, attrs TEXT NOT NULL DEFAULT '{}');
CREATE INDEX IF NOT EXISTS buckets_owner ON buckets(owner, name COLLATE "C");
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
    headers TEXT NOT NULL, user_meta TEXT NOT NULL, tags TEXT NOT NULL, attrs TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS uploads_key ON uploads(bucket, key COLLATE "C", upload_id);
CREATE INDEX IF NOT EXISTS uploads_backend ON uploads(location, backend_key);
CREATE TABLE IF NOT EXISTS parts (
    upload_id TEXT COLLATE "C" NOT NULL, number INTEGER NOT NULL, size BIGINT NOT NULL,
    etag TEXT NOT NULL, last_modified DOUBLE PRECISION NOT NULL, stored TEXT NOT NULL,
    PRIMARY KEY (upload_id, number));
""" + f"""
-- The two hot writes run server-side: one round trip instead of six. Each statement of a
-- VOLATILE function takes a fresh READ COMMITTED snapshot, so once the locks are held every
-- earlier writer's commit is visible, exactly as with separate statements.
-- Make the object the key's current version; an unversioned write (version id NULL) replaces
-- the null version, which is returned.
CREATE OR REPLACE FUNCTION s3gw_put_object(
    p_bucket TEXT, p_key TEXT, p_size BIGINT, p_etag TEXT, p_last_modified DOUBLE PRECISION,
    p_location TEXT, p_pieces TEXT, p_owner TEXT, p_headers TEXT, p_user_meta TEXT,
    p_tags TEXT, p_attrs TEXT, p_version_id TEXT, p_delete_marker BOOLEAN)
RETURNS SETOF objects LANGUAGE plpgsql VOLATILE AS $fn$
BEGIN
    PERFORM pg_advisory_xact_lock_shared({NS}, hashtext(p_bucket));
    PERFORM pg_advisory_xact_lock(hashtextextended(p_bucket || '/' || p_key, 0));
    IF p_version_id IS NULL THEN
        RETURN QUERY DELETE FROM objects o WHERE o.bucket = p_bucket AND o.key = p_key
            AND o.version_id IS NULL RETURNING o.*;
    END IF;
    UPDATE objects o SET latest = FALSE WHERE o.bucket = p_bucket AND o.key = p_key AND o.latest;
    INSERT INTO objects ({OBJECT_COLUMNS}, seq) VALUES (
        p_bucket, p_key, p_size, p_etag, p_last_modified, p_location, p_pieces, p_owner,
        p_headers, p_user_meta, p_tags, p_attrs, p_version_id, p_delete_marker, TRUE,
        (SELECT COALESCE(MAX(o.seq), 0) + 1 FROM objects o
         WHERE o.bucket = p_bucket AND o.key = p_key));
END
$fn$;
-- Remove one version (NULL: the null version) and return it; when it was the current one,
-- the next newest becomes current.
CREATE OR REPLACE FUNCTION s3gw_delete_object(p_bucket TEXT, p_key TEXT, p_version_id TEXT)
RETURNS SETOF objects LANGUAGE plpgsql VOLATILE AS $fn$
DECLARE
    r objects;
    was_latest BOOLEAN := FALSE;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended(p_bucket || '/' || p_key, 0));
    IF p_version_id IS NULL THEN
        FOR r IN DELETE FROM objects o WHERE o.bucket = p_bucket AND o.key = p_key
                AND o.version_id IS NULL RETURNING o.* LOOP
            was_latest := was_latest OR r.latest;
            RETURN NEXT r;
        END LOOP;
    ELSE
        FOR r IN DELETE FROM objects o WHERE o.bucket = p_bucket AND o.key = p_key
                AND o.version_id = p_version_id RETURNING o.* LOOP
            was_latest := was_latest OR r.latest;
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

PUT_OBJECT = (f"SELECT {OBJECT_COLUMNS}, seq FROM "
              "s3gw_put_object($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14)")
DELETE_OBJECT = f"SELECT {OBJECT_COLUMNS}, seq FROM s3gw_delete_object($1, $2, $3)"
CURRENT = "latest AND NOT delete_marker"
UPLOAD_COLUMNS = ("upload_id, bucket, key, initiated, owner, location, backend_key, "
                  "backend_upload_id, headers, user_meta, tags, attrs")
PART_COLUMNS = "upload_id, number, size, etag, last_modified, stored"
# Bucket lock first, key lock second (see the module docstring). The select list is evaluated
# left to right, so one round trip takes both in that order.
LOCK_WRITE = ("SELECT pg_advisory_xact_lock_shared($1::int, hashtext($2)), "
              "pg_advisory_xact_lock(hashtextextended($2 || '/' || $3, 0))")
# (s3gw_put_object and s3gw_delete_object take the same locks, in the same order.)
LOCK_KEY = "SELECT pg_advisory_xact_lock(hashtextextended($1 || '/' || $2, 0))"
LOCK_BUCKET_SHARED = "SELECT pg_advisory_xact_lock_shared($1::int, hashtext($2))"
LOCK_BUCKET = "SELECT pg_advisory_xact_lock($1::int, hashtext($2))"


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
            _dumps(up.tags), _dumps(up.attrs))


def _upload_from(row: asyncpg.Record) -> UploadRecord:
    return UploadRecord(*row[:8], headers=json.loads(row[8]), user_meta=json.loads(row[9]),
                        tags=json.loads(row[10]), attrs=json.loads(row[11]))


def _part_from(row: asyncpg.Record) -> PartRecord:
    return PartRecord(row[0], row[1], row[2], row[3], row[4], Stored.from_dict(json.loads(row[5])))


class PostgresStore(MetadataStore):
    def __init__(self, dsn: str, *, min_size: int = 2, max_size: int = 20) -> None:
        self.dsn = dsn
        self.min_size = min_size
        self.max_size = max_size
        self._pool: asyncpg.Pool | None = None

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise RuntimeError("PostgresStore is not open")
        return self._pool

    async def open(self) -> None:
        pool = await asyncpg.create_pool(
            self.dsn, min_size=self.min_size, max_size=self.max_size,
            server_settings={"application_name": "s3-gateway"})
        try:
            async with pool.acquire() as conn, conn.transaction():
                # Gateways starting together would race on CREATE ... IF NOT EXISTS (duplicate
                # catalog rows): one creates, the others wait and find it done.
                await conn.execute("SELECT pg_advisory_xact_lock($1::int, 0)", NS)
                await conn.execute(SCHEMA)
        except BaseException:
            await pool.close()
            raise
        self._pool = pool

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    async def ping(self) -> None:
        await self.pool.fetchval("SELECT 1")

    # buckets ------------------------------------------------------------------------------
    async def create_bucket(self, bucket: BucketRecord) -> BucketRecord | None:
        async with self.pool.acquire() as conn:
            while True:
                # ON CONFLICT waits for a concurrent creator, so exactly one insert wins.
                if await conn.fetchval(
                        "INSERT INTO buckets (name, owner, location, created, attrs) "
                        "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (name) DO NOTHING RETURNING 1",
                        bucket.name, bucket.owner, bucket.location, float(bucket.created),
                        _dumps(bucket.attrs)):
                    return None
                existing = await self._bucket(conn, bucket.name)
                if existing is not None:
                    return existing
                # Deleted between the two statements: try again.

    @staticmethod
    async def _bucket(conn: asyncpg.Connection, name: str) -> BucketRecord | None:
        row = await conn.fetchrow(
            "SELECT name, owner, location, created, attrs FROM buckets WHERE name=$1", name)
        return _bucket_from(row) if row is not None else None

    async def get_bucket(self, name: str) -> BucketRecord | None:
        async with self.pool.acquire() as conn:
            return await self._bucket(conn, name)

    async def list_buckets(self, owner: str) -> list[BucketRecord]:
        rows = await self.pool.fetch("SELECT name, owner, location, created, attrs FROM buckets "
                                     "WHERE owner=$1 ORDER BY name", owner)
        return [_bucket_from(r) for r in rows]

    async def update_bucket_attrs(self, name: str, attrs: dict[str, Any]) -> None:
        await self.pool.execute("UPDATE buckets SET attrs=$1 WHERE name=$2", _dumps(attrs), name)

    async def delete_bucket(self, name: str) -> bool:
        async with self.pool.acquire() as conn, conn.transaction():
            # Exclusive bucket lock: in-flight writes into the bucket finish first and the
            # check below (a new snapshot) sees them; later writes wait for this commit.
            await conn.execute(LOCK_BUCKET, NS, name)
            busy = await conn.fetchval(
                "SELECT EXISTS(SELECT 1 FROM objects WHERE bucket=$1) "
                "OR EXISTS(SELECT 1 FROM uploads WHERE bucket=$1)", name)
            if not busy:
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
    async def _insert_current(conn: asyncpg.Connection, obj: ObjectRecord) -> ObjectRecord | None:
        """Make `obj` the key's current version; an unversioned write replaces the null one
        (s3gw_put_object: bucket lock shared, key lock, in the caller's transaction if any)."""
        rows = await conn.fetch(PUT_OBJECT, *_object_row(obj))
        return _object_from(max(rows, key=lambda r: r[-1])) if rows else None

    async def put_object(self, obj: ObjectRecord) -> ObjectRecord | None:
        async with self.pool.acquire() as conn:  # one statement: its own transaction
            return await self._insert_current(conn, obj)

    async def get_object(self, bucket: str, key: str, version_id: str | None = None, *,
                         markers: bool = False) -> ObjectRecord | None:
        async with self.pool.acquire() as conn:
            return await self._object(conn, bucket, key, version_id, markers)

    async def delete_object(self, bucket: str, key: str,
                            version_id: str | None = None) -> ObjectRecord | None:
        vid = None if not version_id or version_id == "null" else version_id
        rows = await self.pool.fetch(DELETE_OBJECT, bucket, key, vid)
        return _object_from(max(rows, key=lambda r: r[-1])) if rows else None

    async def update_object(self, bucket: str, key: str, expected_pieces: list[Stored],
                            changes: dict[str, Any]) -> ObjectRecord | None:
        async with self.pool.acquire() as conn, conn.transaction():
            # The key lock makes this read-compare-write atomic against every other writer.
            # The pieces name the version: every version's bytes sit at their own backend keys.
            await conn.execute(LOCK_KEY, bucket, key)
            row = await conn.fetchrow(
                f"SELECT {OBJECT_COLUMNS}, seq FROM objects WHERE bucket=$1 AND key=$2 AND "
                "pieces=$3 AND NOT delete_marker ORDER BY seq DESC LIMIT 1",
                bucket, key, _pieces_json(expected_pieces))
            if row is None:
                return None
            updated = replace(_object_from(row), **changes)
            await conn.execute(
                "UPDATE objects SET bucket=$1, key=$2, size=$3, etag=$4, last_modified=$5, "
                "location=$6, pieces=$7, owner=$8, headers=$9, user_meta=$10, tags=$11, "
                "attrs=$12, version_id=$13, delete_marker=$14, latest=$15 "
                "WHERE bucket=$16 AND key=$17 AND seq=$18",
                *_object_row(updated), bool(updated.latest), bucket, key, row[-1])
            return updated

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
            await conn.execute(LOCK_BUCKET_SHARED, NS, upload.bucket)
            await conn.execute(
                f"INSERT INTO uploads ({UPLOAD_COLUMNS}) "
                "VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12)", *_upload_row(upload))

    async def get_upload(self, upload_id: str) -> UploadRecord | None:
        row = await self.pool.fetchrow(
            f"SELECT {UPLOAD_COLUMNS} FROM uploads WHERE upload_id=$1", upload_id)
        return _upload_from(row) if row else None

    async def list_uploads(self, bucket: str, prefix: str, delimiter: str | None,
                           key_marker: str | None, upload_id_marker: str | None,
                           limit: int) -> UploadListing:
        sql = f"SELECT {UPLOAD_COLUMNS} FROM uploads WHERE bucket=$1 AND key>=$2"
        args: list[Any] = [bucket, prefix]
        end = prefix_end(prefix)
        if end is not None:
            args.append(end)
            sql += f" AND key<${len(args)}"
        if key_marker:
            args.append(key_marker)
            if upload_id_marker:
                args.append(upload_id_marker)
                sql += f" AND (key>${len(args) - 1} OR (key=${len(args) - 1} AND upload_id>${len(args)}))"
            else:
                sql += f" AND key>${len(args)}"
        sql += " ORDER BY key, initiated, upload_id"
        rollup: Rollup[UploadRecord] = Rollup(prefix, delimiter, limit)
        async with self.pool.acquire() as conn, conn.transaction(readonly=True):
            # A server-side cursor: with a delimiter, many uploads may roll into few prefixes.
            async for row in conn.cursor(sql, *args, prefetch=min(limit + 1, 1000)):
                upload = _upload_from(row)
                if not rollup.add(upload.key, upload):
                    break
        return UploadListing(rollup.items, rollup.prefixes, rollup.truncated)

    async def count_uploads(self) -> int:
        return int(await self.pool.fetchval("SELECT COUNT(*) FROM uploads"))

    async def has_upload_on(self, location: str, backend_key: str) -> bool:
        return bool(await self.pool.fetchval(
            "SELECT 1 FROM uploads WHERE location=$1 AND backend_key=$2 LIMIT 1",
            location, backend_key))

    async def put_part(self, part: PartRecord) -> PartRecord | None:
        async with self.pool.acquire() as conn, conn.transaction():
            # Lock the upload row: finish_upload deletes it first, so it either waits for this
            # part or has already removed the upload; writers of the upload's parts queue here.
            if not await conn.fetchval(
                    "SELECT 1 FROM uploads WHERE upload_id=$1 FOR NO KEY UPDATE", part.upload_id):
                raise LookupError(part.upload_id)
            row = await conn.fetchrow(
                f"SELECT {PART_COLUMNS} FROM parts WHERE upload_id=$1 AND number=$2",
                part.upload_id, part.number)
            await conn.execute(
                f"INSERT INTO parts ({PART_COLUMNS}) VALUES ($1,$2,$3,$4,$5,$6) "
                "ON CONFLICT (upload_id, number) DO UPDATE SET size=EXCLUDED.size, "
                "etag=EXCLUDED.etag, last_modified=EXCLUDED.last_modified, stored=EXCLUDED.stored",
                part.upload_id, part.number, part.size, part.etag, float(part.last_modified),
                _dumps(part.stored.to_dict()))
            return _part_from(row) if row else None

    async def list_parts(self, upload_id: str, after: int, limit: int) -> list[PartRecord]:
        rows = await self.pool.fetch(
            f"SELECT {PART_COLUMNS} FROM parts WHERE upload_id=$1 AND number>$2 "
            "ORDER BY number LIMIT $3", upload_id, after, limit)
        return [_part_from(r) for r in rows]

    async def finish_upload(self, upload_id: str, obj: ObjectRecord | None
                            ) -> tuple[list[PartRecord], ObjectRecord | None] | None:
        async with self.pool.acquire() as conn, conn.transaction():
            if obj is not None:  # the object write's locks first, as put_object takes them
                await conn.execute(LOCK_WRITE, NS, obj.bucket, obj.key)
            # Deleting the upload row first waits for a put_part in flight and makes any later
            # one (or a concurrent finish) find the upload gone.
            if await conn.fetchval("DELETE FROM uploads WHERE upload_id=$1 RETURNING 1",
                                   upload_id) is None:
                return None  # leaving the block commits nothing: no row was changed
            rows = await conn.fetch(f"DELETE FROM parts WHERE upload_id=$1 RETURNING {PART_COLUMNS}",
                                    upload_id)
            parts = sorted((_part_from(r) for r in rows), key=lambda p: p.number)
            old = await self._insert_current(conn, obj) if obj is not None else None
            return parts, old
