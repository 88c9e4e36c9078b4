"""Read-through (lazy) migration: a bucket names a source (a location and a prefix of its
container, e.g. the bucket being left behind); what the bucket lacks is answered from there.

    GET/HEAD miss   the key has no record (and no tombstone): the source object is described,
                    streamed into the bucket's own location through the engine (a new piece +
                    one commit, conditional on the key still being absent: a client's write
                    meanwhile wins) and then read as any object. Copy-on-first-read: the first
                    reader waits for the copy; every later read is a plain hit.
    LIST            ListObjects (V1/V2) pages merge the bucket's records and the source's keys
                    (minus keys the bucket has a record or tombstone for), in key order, with
                    prefixes rolled up at the delimiter, without duplicates.
    DELETE          on an unversioned bucket the delete leaves a tombstone (a delete marker as
                    the null version) so the source's copy never reappears; a versioned bucket
                    gets its delete marker anyway.
    drain           an optional background job ("readthrough.drain") walks the source from a
                    cursor kept in the bucket's attrs and copies every key still missing.

Settings: config.json "readThrough": {"<bucket>": {"source": "<location>", "prefix": ""}}, and
at runtime `python -m gateway read-through BUCKET --source LOCATION [--prefix P] [--drain]` /
`--off` (bucket attrs["readThrough"], which wins over the file). Hooks: one line each in
gateway/s3/ops/obj.py (read_object: fill; remove_object: deleted) and gateway/s3/ops/bucket.py
(list_objects); buckets without a source cost one dict lookup.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gateway.errors import ConfigFileError, S3Error
from gateway.jobs import JobRunner
from gateway.locations import PIECE_TOKEN
from gateway.metadata.base import (
    BucketGone,
    BucketRecord,
    ConditionFailed,
    JobRecord,
    Listing,
    ObjectRecord,
)
from gateway.objects.options import CREATE, PutOptions
from gateway.translators.base import ForeignObject, TranslatorError

if TYPE_CHECKING:
    from aiohttp import web

    from gateway.locations import Location
    from gateway.objects.engine import Engine

log = logging.getLogger("gateway.moving")

ATTR = "readThrough"  # bucket attrs: {"source", "prefix"} or {"off": true}, and "drain"
DRAIN = "readthrough.drain"
DRAIN_BATCH = 16  # objects the drain copies at once
TOMBSTONE = "readThroughTombstone"  # attrs of the delete marker an unversioned delete leaves
HEADER_FIELDS = (("content-type", "content_type"), ("cache-control", "cache_control"),
                 ("content-disposition", "content_disposition"),
                 ("content-encoding", "content_encoding"),
                 ("content-language", "content_language"), ("expires", "expires"))


@dataclass(frozen=True)
class Source:
    location: str
    prefix: str = ""  # the source keys are prefix + the bucket's keys


def parse_config(raw: Any, file: str, locations: Mapping[str, Any]) -> dict[str, Source]:
    """config.json "readThrough" -> bucket -> Source; bad values refuse to start."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigFileError(file, 'key "readThrough"', "must be an object: bucket -> "
                              '{"source": LOCATION, "prefix": ""}')
    sources = {}
    for bucket, entry in raw.items():
        where = f'key "readThrough.{bucket}'
        if not isinstance(entry, dict):
            raise ConfigFileError(file, where + '"', 'must be {"source": LOCATION, "prefix": ""}')
        unknown = set(entry) - {"source", "prefix"}
        if unknown:
            raise ConfigFileError(file, f'{where}.{sorted(unknown)[0]}"',
                                  "is not a read-through setting (source, prefix)")
        source, prefix = entry.get("source"), entry.get("prefix", "")
        if not isinstance(source, str) or source not in locations:
            raise ConfigFileError(file, where + '.source"',
                                  f"must name a location of locationConfig.json, got {source!r}")
        if not isinstance(prefix, str):
            raise ConfigFileError(file, where + '.prefix"', "must be a string")
        sources[bucket] = Source(source, prefix)
    return sources


def headers_of(found: ForeignObject) -> dict[str, str]:
    return {header: value for header, attr in HEADER_FIELDS
            if (value := getattr(found.meta, attr))}


class ReadThrough:
    def __init__(self, engine: Engine, jobs: JobRunner,
                 configured: Mapping[str, Source] | None = None) -> None:
        self.engine = engine
        self.jobs = jobs
        self.configured = dict(configured or {})
        self._filling: dict[tuple[str, str], asyncio.Future[None]] = {}
        self.misses = 0  # copies made on a read (this process)
        jobs.register(DRAIN, self._drain_job)
        engine.source_hook = self  # every read and delete through the engine asks us first

    def source_of(self, bucket: BucketRecord) -> Source | None:
        """The bucket's source: its attrs (the admin command) win over config.json."""
        own = bucket.attrs.get(ATTR)
        if own is not None:
            if own.get("off") or not own.get("source"):
                return None
            return Source(own["source"], own.get("prefix", ""))
        return self.configured.get(bucket.name)

    def _location(self, source: Source) -> Location:
        return self.engine.locations[source.location]

    # --- the hooks ------------------------------------------------------------------------
    async def fill(self, bucket: BucketRecord, key: str, version_id: str | None) -> None:
        """Before a GET/HEAD: copy the source's object in when the bucket has none (no record,
        no tombstone). One copy or delete of a key at a time in this process: concurrent
        misses wait for one copy, and a delete's tombstone never loses to a copy."""
        source = self.source_of(bucket)
        if source is None or version_id is not None:
            return
        try:
            await self.copy_missing(bucket, source, key)
        except (S3Error, TranslatorError) as exc:  # the read answers what the bucket has
            log.warning("read-through %s/%s from %s: %s", bucket.name, key, source.location,
                        getattr(exc, "message", exc))

    async def copy_missing(self, bucket: BucketRecord, source: Source, key: str,
                           found: ForeignObject | None = None) -> bool:
        """Copy the source's object in unless the bucket has a record or tombstone for the key
        (or a copy of it is under way: then wait for that one); True when copied."""
        name = (bucket.name, key)
        waiting = self._filling.get(name)
        if waiting is not None:
            await asyncio.shield(waiting)
            return False
        future = self._hold(name)
        try:
            if await self.engine.metadata.get_object(bucket.name, key,
                                                     markers=True) is not None:
                return False
            return await self.copy_in(bucket, source, key, found)
        finally:
            self._release(name, future)

    def _hold(self, name: tuple[str, str]) -> asyncio.Future[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._filling[name] = future
        return future

    def _release(self, name: tuple[str, str], future: asyncio.Future[None]) -> None:
        if self._filling.get(name) is future:
            del self._filling[name]
        future.set_result(None)

    async def deleted(self, bucket: BucketRecord, key: str, version_id: str | None) -> None:
        """After a delete: an unversioned bucket with a source keeps a tombstone, so the
        source's copy does not reappear (a versioned one has its delete marker)."""
        if version_id is not None or self.source_of(bucket) is None \
                or bucket.attrs.get("versioning") is not None:
            return
        name = (bucket.name, key)
        while (copying := self._filling.get(name)) is not None:
            # A copy-on-read of this key raced the delete: wait for it, and it goes too.
            await asyncio.shield(copying)
            await self.engine.delete_unhooked(bucket, key, None, bucket.owner)
        future = self._hold(name)  # no copy of the key starts until the tombstone is in
        try:
            # Whatever is current now was committed after the engine's delete, within this
            # DELETE: a copy another worker process made (its own lock is in its memory) or
            # a concurrent client write. The DELETE, answered after it, goes after it.
            expect = "*"
            for _ in range(3):
                if await self._tombstone(bucket, key, expect):
                    break
                current = await self.engine.metadata.get_object(bucket.name, key,
                                                                 markers=True)
                if current is not None and current.delete_marker:
                    break
                expect = "*" if current is None else current.etag
        finally:
            self._release(name, future)

    async def _tombstone(self, bucket: BucketRecord, key: str, expect: str) -> bool:
        """Leave the unversioned bucket's tombstone for key while `expect` holds; True when
        it is in (or the bucket is gone)."""
        marker = ObjectRecord(bucket=bucket.name, key=key, size=0, etag="",
                              last_modified=time.time(), location=bucket.location, pieces=[],
                              owner=bucket.owner, delete_marker=True, attrs={TOMBSTONE: True})
        try:
            await self.engine.metadata.put_object(marker, bucket_created=bucket.created,
                                                  expect=expect)
        except ConditionFailed:
            return False
        except BucketGone:
            pass
        return True

    async def list_objects(self, bucket: BucketRecord, prefix: str, delimiter: str | None,
                           after: str | None, limit: int) -> Listing:
        """ListObjects' page: the bucket's records, merged with the source's keys when the
        bucket has a source."""
        listing = await self.engine.metadata.list_objects(bucket.name, prefix, delimiter, after,
                                                          limit)
        source = self.source_of(bucket)
        if source is None or limit <= 0:
            return listing
        return await self._merged(bucket, source, listing, prefix, delimiter, after, limit)

    # --- copying in -------------------------------------------------------------------------
    async def copy_in(self, bucket: BucketRecord, source: Source, key: str,
                      found: ForeignObject | None = None) -> bool:
        """Copy one source object into the bucket (its own location) unless the key exists
        meanwhile; True when copied."""
        if PIECE_TOKEN.search(key):
            return False
        location = self._location(source)
        if found is None:
            found = await location.describe(source.prefix + key)
            if found is None:
                return False
        body = await location.get(found.stored)
        opts = PutOptions(owner=bucket.owner, mode=CREATE, headers=headers_of(found),
                          user_meta=dict(found.meta.user), tags=dict(found.meta.tags))
        try:
            result = await self.engine.put(bucket, key, body, found.size, opts)
        except S3Error as err:
            if err.code in ("PreconditionFailed", "ConditionalRequestConflict"):
                return False  # a client's write (or another copy) got there first
            raise
        finally:
            aclose = getattr(body, "aclose", None)
            if aclose is not None:
                await aclose()
        if await self._landed_on_a_delete(bucket, key, result.record, result.replaced):
            return False
        self.misses += 1
        return True

    async def _landed_on_a_delete(self, bucket: BucketRecord, key: str, copy: ObjectRecord,
                                  replaced: ObjectRecord | None) -> bool:
        """Undo a copy committed over a delete: CREATE counts a delete marker as absent, and
        another worker process may have deleted the key (tombstone or marker) after this one
        saw it missing. True when the copy was undone (the delete stands)."""
        if bucket.attrs.get("versioning") is None:
            if replaced is None or not replaced.delete_marker:
                return False
            await self._tombstone(bucket, key, copy.etag)  # unless a client wrote meanwhile
            return True
        page = await self.engine.metadata.list_versions(bucket.name, key, None, None, None, 3)
        if not any(v.key == key and v.version_id != copy.version_id for v in page.versions):
            return False
        # The key has history (a marker: a current object would have refused the copy):
        # remove exactly the copy's version, the marker is current again.
        await self.engine.delete_unhooked(bucket, key, copy.version_id, bucket.owner)
        return True

    # --- listing ----------------------------------------------------------------------------
    async def _source_entries(self, bucket: BucketRecord, source: Source, prefix: str,
                              delimiter: str | None, after: str | None, limit: int
                              ) -> tuple[list[tuple[str, ObjectRecord | None]], bool]:
        """Up to limit + 1 source entries (key, synthesized record) or (common prefix, None)
        past `after` that the bucket has no record or tombstone for; and whether the source
        has more."""
        location = self._location(source)
        root = source.prefix
        entries: list[tuple[str, ObjectRecord | None]] = []
        seen_prefixes: set[str] = set()
        start = root + after if after else ""
        listing: AsyncIterator[ForeignObject] = location.list_objects(root + prefix, start,
                                                                      details=False)
        async for found in listing:
            key = found.key[len(root):]
            if PIECE_TOKEN.search(key):
                continue
            if delimiter:
                rest = key[len(prefix):]
                cut = rest.find(delimiter)
                if cut >= 0:
                    common = prefix + rest[:cut + len(delimiter)]
                    if (after is not None and common <= after) or common in seen_prefixes:
                        continue
                    seen_prefixes.add(common)
                    entries.append((common, None))
                    if len(entries) > limit:
                        return entries, True
                    continue
            if await self.engine.metadata.get_object(bucket.name, key, markers=True) is not None:
                continue  # the bucket's own record (listed by it) or a tombstone
            entries.append((key, ObjectRecord(
                bucket=bucket.name, key=key, size=found.size,
                etag=found.s3_etag or (found.stored.etag or "").strip('"'),
                last_modified=found.last_modified or 0.0, location=source.location,
                pieces=[], owner=bucket.owner)))
            if len(entries) > limit:
                return entries, True
        return entries, False

    async def _merged(self, bucket: BucketRecord, source: Source, listing: Listing,
                      prefix: str, delimiter: str | None, after: str | None,
                      limit: int) -> Listing:
        extra, more = await self._source_entries(bucket, source, prefix, delimiter, after,
                                                 limit)
        merged: dict[str, ObjectRecord | None] = {}
        for record in listing.objects:
            merged[record.key] = record
        for common in listing.prefixes:
            merged[common] = None
        for name, record in extra:
            merged.setdefault(name, record)  # a common prefix of both is one entry
        names = sorted(merged)
        # Each side is complete only up to its last entry when it has more.
        bounds = []
        if listing.truncated:
            ends = [listing.objects[-1].key] if listing.objects else []
            ends += listing.prefixes[-1:]
            if ends:
                bounds.append(max(ends))
        if more and extra:
            bounds.append(extra[-1][0])
        if bounds:
            names = [name for name in names if name <= min(bounds)]
        truncated = bool(bounds) or len(names) > limit
        names = names[:limit]
        objects = [record for name in names if (record := merged[name]) is not None]
        prefixes = [name for name in names if merged[name] is None]
        return Listing(objects=objects, prefixes=prefixes,
                       truncated=truncated, next_marker=names[-1] if truncated and names
                       else None)

    # --- settings and draining ------------------------------------------------------------
    async def configure(self, bucket_name: str, source: str | None, prefix: str = "", *,
                        off: bool = False, drain: bool = False) -> dict[str, Any]:
        metadata = self.engine.metadata
        bucket = await metadata.get_bucket(bucket_name)
        if bucket is None:
            raise S3Error("NoSuchBucket", BucketName=bucket_name)
        current = dict(bucket.attrs.get(ATTR) or {})
        if off:
            current = {"off": True, "drain": current.get("drain")}
        elif source is not None:
            if source not in self.engine.locations:
                raise S3Error("InvalidArgument", f"no location named {source!r}")
            if source == bucket.location:
                raise S3Error("InvalidArgument", "the source must be another location than "
                              "the bucket's own")
            current = {"source": source, "prefix": prefix, "drain": current.get("drain")}
        bucket = await metadata.update_bucket_attrs(bucket_name, {ATTR: current}) or bucket
        if drain:
            if self.source_of(bucket) is None:
                raise S3Error("InvalidArgument", f"bucket {bucket_name} has no read-through "
                              "source to drain")
            state = {"state": "running", "cursor": "", "copied": 0, "present": 0,
                     "started": time.time(), "finished": None}
            current["drain"] = state
            await metadata.update_bucket_attrs(bucket_name, {ATTR: current})
            await self.jobs.enqueue(DRAIN, bucket_name, bucket_name, {})
        return await self.status(bucket_name)

    async def status(self, bucket_name: str) -> dict[str, Any]:
        bucket = await self.engine.metadata.get_bucket(bucket_name)
        if bucket is None:
            raise S3Error("NoSuchBucket", BucketName=bucket_name)
        source = self.source_of(bucket)
        return {"bucket": bucket_name, "source": source.location if source else None,
                "prefix": source.prefix if source else None,
                "drain": (bucket.attrs.get(ATTR) or {}).get("drain")}

    async def _drain_job(self, job: JobRecord) -> None:
        """Copy every source key the bucket still lacks, saving the cursor as it goes."""
        metadata = self.engine.metadata
        bucket = await metadata.get_bucket(job.bucket)
        if bucket is None:
            return
        source = self.source_of(bucket)
        attrs = dict(bucket.attrs.get(ATTR) or {})
        state = attrs.get("drain")
        if source is None or not state or state.get("state") != "running":
            return
        location = self._location(source)
        saved = time.monotonic()
        batch: list[ForeignObject] = []

        async def copy_batch() -> None:
            nonlocal saved
            copied = await asyncio.gather(*(
                self.copy_missing(bucket, source, found.key[len(source.prefix):], found)
                for found in batch))
            state["copied"] += sum(copied)
            state["present"] += len(copied) - sum(copied)
            state["cursor"] = batch[-1].key
            batch.clear()
            if time.monotonic() - saved > 1.0:
                attrs["drain"] = state
                await metadata.update_bucket_attrs(bucket.name, {ATTR: attrs})
                saved = time.monotonic()

        async for found in location.list_objects(source.prefix, state["cursor"]):
            batch.append(found)
            if len(batch) >= DRAIN_BATCH:
                await copy_batch()
        if batch:
            await copy_batch()
        state.update(state="done", finished=time.time())
        attrs["drain"] = state
        await metadata.update_bucket_attrs(bucket.name, {ATTR: attrs})
        log.info("read-through drain of %s from %s done: %d copied, %d present", bucket.name,
                 source.location, state["copied"], state["present"])

    # --- HTTP (python -m gateway read-through) --------------------------------------------
    async def http(self, request: web.Request, action: str) -> web.Response:
        from gateway.health.endpoints import json_response

        query = request.query
        try:
            if action == "set":
                body = await self.configure(
                    query.get("bucket", ""), query.get("source") or None,
                    query.get("prefix", ""), off=query.get("off") == "1",
                    drain=query.get("drain") == "1")
            else:
                body = await self.status(query.get("bucket", ""))
        except S3Error as err:
            return json_response({"error": err.code, "message": err.message}, err.status)
        return json_response(body)


def main(argv: list[str]) -> int:
    """`python -m gateway read-through BUCKET --source LOCATION [--prefix P] [--drain] | --off
    | --status`: asks the running gateway (POST /_/read-through)."""
    import argparse
    import json

    from gateway.admin import ask, default_endpoint

    parser = argparse.ArgumentParser(
        prog="python -m gateway read-through",
        description="Serve what BUCKET lacks from a source location (copy on first read), "
        "merge its listings, optionally copy the rest in the background (--drain).")
    parser.add_argument("bucket")
    parser.add_argument("--source", metavar="LOCATION", help="the location to read through to")
    parser.add_argument("--prefix", default="", help="the source keys are PREFIX + key")
    parser.add_argument("--drain", action="store_true",
                        help="also copy every missing object now, in the background")
    parser.add_argument("--off", action="store_true", help="stop reading through")
    parser.add_argument("--status", action="store_true", help="show the settings and drain")
    parser.add_argument("--endpoint", help="gateway URL (default: from config.json)")
    args = parser.parse_args(argv)
    if args.off and (args.source or args.drain):
        parser.error("--off goes alone")
    endpoint = args.endpoint or default_endpoint()
    params = {"bucket": args.bucket}
    if not args.status:
        params.update(prefix=args.prefix, off="1" if args.off else "0",
                      drain="1" if args.drain else "0")
        if args.source:
            params["source"] = args.source
    body = ask(endpoint, "read-through" if args.status else "read-through/set", params,
               post=not args.status)
    print(json.dumps(body))
    return 0


__all__ = ["ATTR", "DRAIN", "ReadThrough", "Source", "main", "parse_config"]
