"""Import what is already in a cloud (`python -m gateway import LOCATION BUCKET`): the objects
a location's container holds, written by anyone, become objects of a gateway bucket without a
byte being copied.

    start: the bucket is created on LOCATION when missing; attrs["import"] records the run
           (location, prefix, owner, cursor, counts) -> one "import.run" job
    run:   Translator.list_objects under the bucket's natural prefix (the container's root
           with bucketMatch, else `<bucket>/`), from the cursor, in key order; per object a
           record whose one piece is the backend object itself, pinned to the version listed
           (version id, generation, file id or etag: a GET never returns bytes written after
           the import, see each translator's get); the cursor and counts are saved after every
           batch (BATCH objects), so a restarted gateway resumes where the run stopped

What an imported object gets: size, ETag (the backend's MD5 when it keeps one: S3's ETag, Azure
Content-MD5, GCS md5Hash, B2 contentMd5, Swift's etag of a plain object; else the MD5 computed
by streaming the object once: mem, Azure blobs put in blocks without Content-MD5, GCS composite
objects, B2 large files, Swift large objects), content headers, user metadata (and tags where
the backend keeps them natively in the gateway's own form), last-modified; attrs["imported"]
says so. Keys the gateway wrote itself (`~<24 hex>`) are skipped. Idempotent: an object already
imported with the same pin is left alone; one changed on the backend since (new pin) is updated
in place; a key a client wrote through the gateway is never touched (the commit is conditional
on the key being absent).

Ownership: from then on the gateway owns the imported originals, like any piece it wrote. An
overwrite or delete through S3 sends the original to the garbage ledger and the collector
deletes it from the backend (after storage.readGraceSeconds). Objects changed or deleted on
the backend behind the gateway's back are reported by fsck ("changed", "missing"); a GET of one
answers an error, never other bytes.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gateway.errors import S3Error
from gateway.jobs import JobRunner
from gateway.jobs.runner import GiveUp
from gateway.locations import PIECE_TOKEN
from gateway.metadata.base import BucketRecord, JobRecord, LocationTaken, ObjectRecord
from gateway.moving.read_through import headers_of
from gateway.translators.base import ForeignObject, NotSupported, Stored, TranslatorError

if TYPE_CHECKING:
    from aiohttp import web

    from gateway.accounts import AccountStore
    from gateway.locations import Location
    from gateway.objects.engine import Engine

log = logging.getLogger("gateway.moving")

ATTR = "import"  # the bucket attribute holding the last import's state and progress
RUN = "import.run"
IMPORTED = "imported"  # ObjectRecord.attrs: this object was imported (and from which pin)
RUNNING, DONE, FAILED = "running", "done", "failed"
BATCH = 64  # objects imported at once (each: a metadata lookup and a commit)
COUNTS = ("imported", "updated", "unchanged", "kept", "vanished", "own", "hashed", "bytes")


def natural_root(location: Location, bucket: str) -> str:
    """Where a bucket's objects sit on a location: at their own keys with bucketMatch, else
    under `<bucket>/` (gateway/locations.py, Location.new_key)."""
    return "" if location.spec.bucket_match else f"{bucket}/"


def record_of(found: ForeignObject, bucket: str, key: str, location: str, owner: str,
              etag: str) -> ObjectRecord:
    """The gateway's record of a backend object: its one piece is the object itself."""
    meta = found.meta
    return ObjectRecord(
        bucket=bucket, key=key, size=found.size, etag=etag,
        last_modified=found.last_modified or time.time(), location=location,
        pieces=[found.stored], owner=owner, headers=headers_of(found), user_meta=dict(meta.user),
        tags=dict(meta.tags), attrs={IMPORTED: {"at": time.time()}})


async def etag_of(location: Location, found: ForeignObject) -> tuple[str, bool]:
    """(S3 ETag, computed): the backend's when it keeps one, else the MD5 of the bytes read
    once (streamed)."""
    if found.s3_etag:
        return found.s3_etag, False
    digest = hashlib.md5()
    async for chunk in await location.get(found.stored):
        digest.update(chunk)
    return digest.hexdigest(), True


def same_pin(pieces: list[Stored], stored: Stored) -> bool:
    """Whether an imported record still names exactly the backend object listed: same key,
    size and etag, and the same version where both know one (a listing may not)."""
    if len(pieces) != 1:
        return False
    piece = pieces[0]
    return (piece.location, piece.key, piece.size, piece.etag) == \
        (stored.location, stored.key, stored.size, stored.etag) and (
            piece.version_id is None or stored.version_id is None
            or piece.version_id == stored.version_id)


@dataclass
class Outcome:
    kind: str  # one of COUNTS but "bytes"/"hashed"
    size: int = 0
    hashed: bool = False


async def import_one(engine: Engine, location: Location, bucket: BucketRecord, key: str,
                     found: ForeignObject, owner: str) -> Outcome:
    """Import one backend object as bucket/key; idempotent (see the module doc)."""
    metadata = engine.metadata
    current = await metadata.get_object(bucket.name, key)
    if current is not None:
        if IMPORTED not in current.attrs:
            return Outcome("kept")  # a client's write through the gateway wins
        if same_pin(current.pieces, found.stored):
            return Outcome("unchanged")
    if not found.detailed:  # listed without metadata (S3, Swift): one HEAD, only when needed
        described = await location.describe(found.key)
        if described is None:
            return Outcome("vanished")  # deleted on the backend since the listing
        found = described
        if current is not None and same_pin(current.pieces, found.stored):
            return Outcome("unchanged")
    etag, hashed = await etag_of(location, found)
    record = record_of(found, bucket.name, key, location.name, owner, etag)
    if current is not None:  # changed on the backend since it was imported: update in place
        changes = {name: getattr(record, name) for name in (
            "size", "etag", "last_modified", "pieces", "headers", "user_meta", "tags")}
        changes["attrs"] = {**current.attrs, IMPORTED: record.attrs[IMPORTED]}
        updated = await metadata.update_object(bucket.name, key, current.pieces, changes)
        return Outcome("updated" if updated is not None else "kept", found.size, hashed)
    try:
        await engine.commit(bucket, record, None, expect="*")
    except S3Error as err:
        if err.code in ("PreconditionFailed", "ConditionalRequestConflict"):
            return Outcome("kept")  # a client wrote the key meanwhile
        raise
    return Outcome("imported", found.size, hashed)


class Imports:
    """Import runs, on the job runner (resumable), driven over HTTP by the CLI."""

    def __init__(self, engine: Engine, jobs: JobRunner, accounts: AccountStore) -> None:
        self.engine = engine
        self.jobs = jobs
        self.accounts = accounts
        jobs.register(RUN, self._run_job)

    # --- starting ---------------------------------------------------------------------------
    def _owner(self, name: str | None) -> str:
        if not name:
            everyone = list(self.accounts.accounts)
            if not everyone:
                raise S3Error("InvalidArgument", "no account to own the bucket: give --owner")
            return everyone[0].canonical_id
        account = (self.accounts.by_name(name) or self.accounts.by_canonical_id(name)
                   or self.accounts.by_email(name))
        if account is None:
            raise S3Error("InvalidArgument", f"no account named {name!r}")
        return account.canonical_id

    async def bucket_for(self, location: Location, bucket_name: str,
                         owner: str) -> BucketRecord:
        """The bucket, created on `location` when missing."""
        bucket = await self.engine.metadata.get_bucket(bucket_name)
        if bucket is not None:
            return bucket
        record = BucketRecord(name=bucket_name, owner=owner, location=location.name,
                              created=time.time())
        try:
            existing = await self.engine.metadata.create_bucket(
                record, exclusive_location=location.spec.bucket_match)
        except LocationTaken as taken:
            raise S3Error("InvalidLocationConstraint",
                          f"Location {location.name} stores objects under their own keys "
                          f"(bucketMatch) and already belongs to bucket {taken}.") from None
        return existing or record

    async def begin(self, location_name: str, bucket_name: str, prefix: str = "",
                    owner: str | None = None) -> dict[str, Any]:
        locations = self.engine.locations
        if location_name not in locations:
            raise S3Error("InvalidArgument", f"no location named {location_name!r}")
        location = locations[location_name]
        if not bucket_name:
            raise S3Error("InvalidArgument", "a bucket name is required")
        owner_id = self._owner(owner)
        bucket = await self.bucket_for(location, bucket_name, owner_id)
        if bucket.location != location.name and natural_root(location, bucket.name) == "":
            raise S3Error("InvalidArgument", f"bucket {bucket.name} is on {bucket.location}; a "
                          f"bucketMatch location ({location.name}) holds one bucket's objects")
        running = bucket.attrs.get(ATTR)
        if running and running.get("state") == RUNNING and (
                running["location"], running["prefix"]) == (location.name, prefix):
            self.jobs.wake()
            return running  # the same import again: it goes on
        state = {"id": uuid.uuid4().hex, "location": location.name, "prefix": prefix,
                 "owner": bucket.owner if owner is None else owner_id, "state": RUNNING,
                 "cursor": "", "started": time.time(), "finished": None, "error": None,
                 **{name: 0 for name in COUNTS}}
        await self.engine.metadata.update_bucket_attrs(bucket.name, {ATTR: state})
        await self.jobs.enqueue(RUN, f"{bucket.name}:{state['id']}", bucket.name,
                                {"id": state["id"]})
        return describe(bucket.name, state)

    async def status(self, bucket_name: str) -> dict[str, Any]:
        bucket = await self.engine.metadata.get_bucket(bucket_name)
        if bucket is None or ATTR not in bucket.attrs:
            raise S3Error("NoSuchBucket" if bucket is None else "InvalidArgument",
                          f"no import into {bucket_name}", BucketName=bucket_name)
        return describe(bucket.name, bucket.attrs[ATTR])

    # --- running ----------------------------------------------------------------------------
    async def _run_job(self, job: JobRecord) -> None:
        bucket = await self.engine.metadata.get_bucket(job.bucket)
        state = bucket.attrs.get(ATTR) if bucket is not None else None
        if bucket is None or state is None or state["id"] != job.data["id"] \
                or state["state"] != RUNNING:
            return  # replaced by a newer import, or finished: nothing to do
        try:
            await self.run(bucket, state)
        except (S3Error, TranslatorError) as exc:
            state["error"] = str(getattr(exc, "message", exc))[:500]
            if isinstance(exc, NotSupported):  # this location cannot list: it never will
                state.update(state=FAILED, finished=time.time())
                await self._save(bucket.name, state)
                raise GiveUp(state["error"]) from exc
            await self._save(bucket.name, state)
            raise  # retried with back-off, from the saved cursor

    async def run(self, bucket: BucketRecord, state: dict[str, Any],
                  progress: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
        """Import from state["cursor"] to the end; `state` is updated and saved as it goes."""
        location = self.engine.locations[state["location"]]
        root = natural_root(location, bucket.name)
        batch: list[tuple[str, ForeignObject]] = []
        limit = asyncio.Semaphore(8)

        async def one(key: str, found: ForeignObject) -> Outcome:
            async with limit:
                return await import_one(self.engine, location, bucket, key, found,
                                        state["owner"])

        async def flush() -> None:
            outcomes = await asyncio.gather(*(one(key, found) for key, found in batch))
            for outcome in outcomes:
                state[outcome.kind] += 1
                state["bytes"] += outcome.size
                state["hashed"] += int(outcome.hashed)
            state["cursor"] = batch[-1][1].key
            batch.clear()
            await self._save(bucket.name, state)  # a restart redoes one batch at most
            if progress is not None:
                progress(describe(bucket.name, state))

        async for found in location.list_objects(root + state["prefix"], state["cursor"],
                                                 details=False):
            if PIECE_TOKEN.search(found.key):
                state["own"] += 1  # the gateway's own piece (its records name it)
                state["cursor"] = found.key
                continue
            batch.append((found.key[len(root):], found))
            if len(batch) >= BATCH:
                await flush()
        if batch:
            await flush()
        state.update(state=DONE, finished=time.time(), error=None)
        await self._save(bucket.name, state)
        log.info("%s", line(describe(bucket.name, state)))
        return state

    async def _save(self, bucket: str, state: dict[str, Any]) -> None:
        """Save progress unless a newer import replaced this one meanwhile."""
        current = await self.engine.metadata.get_bucket(bucket)
        if current is not None and (current.attrs.get(ATTR) or {}).get("id") == state["id"]:
            await self.engine.metadata.update_bucket_attrs(bucket, {ATTR: dict(state)})

    # --- HTTP (python -m gateway import talks to the running gateway) --------------------
    async def http(self, request: web.Request, action: str) -> web.Response:
        from gateway.health.endpoints import json_response

        query = request.query
        try:
            if action == "start":
                body = await self.begin(query.get("location", ""), query.get("bucket", ""),
                                        query.get("prefix", ""), query.get("owner") or None)
            else:
                body = await self.status(query.get("bucket", ""))
        except S3Error as err:
            return json_response({"error": err.code, "message": err.message}, err.status)
        return json_response(body)


def describe(bucket: str, state: dict[str, Any], now: float | None = None) -> dict[str, Any]:
    """An import's status: the stored state plus elapsed seconds and objects/s."""
    now = time.time() if now is None else now
    elapsed = max((state.get("finished") or now) - state["started"], 1e-6)
    seen = sum(state[name] for name in ("imported", "updated", "unchanged", "kept"))
    return {**state, "bucket": bucket, "seconds": round(elapsed, 3),
            "objectsPerSecond": round(seen / elapsed, 1)}


def line(status: dict[str, Any]) -> str:
    """The progress line."""
    text = (f"import {status['location']}:{status['prefix'] or '*'} -> {status['bucket']} "
            f"{status['state']}: {status['imported']} imported, {status['updated']} updated, "
            f"{status['unchanged']} unchanged, {status['kept']} kept (written through the "
            f"gateway), {status['own']} gateway pieces skipped; {status['hashed']} ETags "
            f"computed; {status['bytes']} bytes; {status['objectsPerSecond']} objects/s, "
            f"{status['seconds']:.1f}s")
    if status.get("vanished"):
        text += f"; {status['vanished']} deleted on the backend while listed"
    if status.get("error"):
        text += f"; last error: {status['error']}"
    return text


def main(argv: list[str]) -> int:
    """`python -m gateway import LOCATION BUCKET [--prefix P] [--owner ACCOUNT]`: asks the
    running gateway (POST /_/import/start, loopback or healthChecks.allowFrom), then prints a
    progress line every --interval seconds until the import ends (--detach: at once)."""
    import argparse
    import json
    import sys

    from gateway.admin import ask, default_endpoint

    parser = argparse.ArgumentParser(
        prog="python -m gateway import",
        description="Make the objects already in LOCATION's container (under <BUCKET>/ unless "
        "the location has bucketMatch) objects of BUCKET, without copying bytes. Idempotent "
        "and resumable: run it again to pick up new or changed objects.")
    parser.add_argument("location")
    parser.add_argument("bucket")
    parser.add_argument("--prefix", default="", help="only keys under this prefix")
    parser.add_argument("--owner", help="account owning the bucket and the objects "
                        "(default: the bucket's owner, or the first account)")
    parser.add_argument("--status", action="store_true", help="show the last import only")
    parser.add_argument("--detach", action="store_true", help="start and return at once")
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument("--endpoint", help="gateway URL (default: from config.json)")
    parser.add_argument("--interval", type=float, default=1.0,
                        help="seconds between progress lines")
    args = parser.parse_args(argv)
    endpoint = args.endpoint or default_endpoint()
    params = {"bucket": args.bucket}
    try:
        if args.status:
            body = ask(endpoint, "import", params)
        else:
            body = ask(endpoint, "import/start",
                       {**params, "location": args.location, "prefix": args.prefix,
                        **({"owner": args.owner} if args.owner else {})}, post=True)
        while body["state"] == RUNNING and not (args.status or args.detach):
            print(json.dumps(body) if args.json else line(body), flush=True)
            time.sleep(args.interval)
            body = ask(endpoint, "import", params)
    except KeyboardInterrupt:
        print(f"(stopped watching; the import goes on: python -m gateway import "
              f"{args.location} {args.bucket} --status)", file=sys.stderr)
        return 0
    print(json.dumps(body) if args.json else line(body))
    return 0 if body["state"] in (DONE, RUNNING) else 1


__all__ = ["ATTR", "IMPORTED", "RUN", "Imports", "describe", "import_one", "line", "main",
           "natural_root", "record_of"]
