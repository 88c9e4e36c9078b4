"""Online migration of a bucket to another location (`python -m gateway migrate`).

    start: ONE metadata step sets bucket.location = target and attrs["migration"] (so every
           object created from then on is placed on the target) -> a "migrate.pass" job
    pass:  every second or so, walks every version of the bucket, records progress in
           attrs["migration"] and refills a window of "migrate.move" jobs (one per version
           still to move, deduplicated by the queue; a job that failed for good is queued
           again); the migration is "done" when a walk finds no version left to move
    move:  gateway/objects/relocate.py: a new piece per piece on the target under an intent,
           streamed and verified (size, MD5 / multipart ETag, full-object checksum), then one
           conditional swap that only succeeds while the version still has the pieces copied;
           the source pieces go to the garbage ledger (collected after storage.readGraceSeconds,
           so a GET already streaming them finishes), or stay with --keep-source

What moves: every version that is not on the target, except delete markers (no bytes),
versions whose `x-amz-meta-scal-location-constraint` header names the location they are on
(placed there on purpose: they stay), and versions a lifecycle transition put on their storage
class's location. Clients see nothing: reads of a version being copied are served from its old
pieces until the swap and from the new ones after; an overwrite or delete meanwhile makes the
swap fail (the copy becomes garbage, the new write is already on the target). Jobs live in the
metadata store, so a restarted gateway goes on where it stopped (and gateways sharing
PostgreSQL share the work). Cancel stops the moves (queued ones finish as no-ops), leaves moved
versions on the target and gives the bucket its previous location back.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge

from gateway.errors import S3Error
from gateway.jobs import JobRunner
from gateway.metadata.base import BucketRecord, JobRecord, LocationTaken, ObjectRecord
from gateway.objects.engine import LOCATION_META
from gateway.objects.relocate import RelocationFailed, relocate

if TYPE_CHECKING:
    from aiohttp import web

    from gateway.health.metrics import Metrics
    from gateway.objects.engine import Engine
    from gateway.objects.options import ObjectEvent

log = logging.getLogger("gateway.moving")

ATTR = "migration"  # the bucket attribute holding the migration's state and progress
PASS = "migrate.pass"
MOVE = "migrate.move"
COPYING, DONE, CANCELLED = "copying", "done", "cancelled"
PAGE = 1000
PASS_SECONDS = 0.5  # between passes that queue nothing (10x a walk's time if more)
WINDOW, MAX_WINDOW = 64, 4000  # moves queued at once (all migrations)
# relocate() keeps the source pieces only if it can (asked for in /work/notes/engine-api.md).


class _Changed(Exception):
    """A guarded bucket update found the migration changed meanwhile."""


def describe(bucket: str, m: dict[str, Any], now: float | None = None) -> dict[str, Any]:
    """A migration's status as shown by --status, /metrics and the deep health JSON: the
    stored record plus elapsed seconds, rate and ETA."""
    now = time.time() if now is None else now
    objects, nbytes = m["objects"], m["bytes"]
    elapsed = max((m.get("finished") or now) - m["started"], 1e-6)
    rate = nbytes["done"] / elapsed
    eta: float | None
    if m["state"] != COPYING:
        eta = 0.0 if m["state"] == DONE else None
    elif not m.get("scanned"):
        eta = None
    elif rate > 0:
        eta = (nbytes["total"] - nbytes["done"]) / rate
    elif objects["done"]:
        eta = (objects["total"] - objects["done"]) * elapsed / objects["done"]
    else:
        eta = None
    return {"bucket": bucket, **m, "seconds": round(elapsed, 3), "MBps": round(rate / 1e6, 3),
            "etaSeconds": None if eta is None else round(eta, 1)}


class Migrations:
    def __init__(self, engine: Engine, jobs: JobRunner, storage_classes: dict[str, str],
                 owners: Callable[[], list[str]], metrics: Metrics | None = None) -> None:
        self.engine = engine
        self.metadata = engine.metadata
        self.jobs = jobs
        self.storage_classes = storage_classes
        self.owners = owners  # canonical ids of every account (to find migrating buckets)
        self.known: dict[str, dict[str, Any]] = {}  # bucket -> its migration, as last seen
        self._seeded = False
        self._tasks: set[asyncio.Task[None]] = set()
        registry = metrics.registry if metrics is not None else CollectorRegistry()
        self._m_objects = Gauge("s3gw_migration_objects", "Object versions of a bucket "
                                "migration: done (moved, or gone meanwhile) and total",
                                ["bucket", "kind"], registry=registry)
        self._m_bytes = Gauge("s3gw_migration_bytes", "Bytes of a bucket migration: done and "
                              "total", ["bucket", "kind"], registry=registry)
        self._m_eta = Gauge("s3gw_migration_eta_seconds", "Estimated seconds a bucket "
                            "migration still needs (-1: not known yet)", ["bucket"],
                            registry=registry)
        self._m_running = Gauge("s3gw_migration_running", "1 while a bucket migration copies",
                                ["bucket"], registry=registry)
        self._m_moved = Counter("s3gw_migration_moved_bytes", "Bytes this gateway moved for "
                                "bucket migrations", ["bucket"], registry=registry)
        self._m_lost = Counter("s3gw_migration_swaps_lost", "Copies whose version was "
                               "overwritten, deleted or moved meanwhile (the copy became garbage)",
                               ["bucket"], registry=registry)
        jobs.register(PASS, self._pass_job, retry_forever=True)
        jobs.register(MOVE, self._move_job)
        engine.subscribe(self._on_event)

    def start(self) -> None:
        """Learn of the migrations a previous run left (in the background): their stragglers
        are moved, and one that lost its first pass (a crash right after starting) gets it."""
        self._background(self._seed())

    def _background(self, work: Any) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- what to move -----------------------------------------------------------------------
    def to_move(self, version: ObjectRecord, target: str) -> bool:
        if version.delete_marker:
            return False
        if version.location == target and all(p.location == target for p in version.pieces):
            return False
        if version.user_meta.get(LOCATION_META) == version.location:
            return False  # placed on its location by header, on purpose: it stays
        storage_class = version.attrs.get("storage_class")
        if storage_class and self.storage_classes.get(storage_class) == version.location:
            return False  # a lifecycle transition put it on its class's location
        return True

    # --- start, cancel, status ------------------------------------------------------------
    async def begin(self, bucket_name: str, target: str, keep_source: bool = False
                    ) -> dict[str, Any]:
        """Start migrating `bucket_name` to `target`: new objects go there from now on."""
        if target not in self.engine.locations:
            raise S3Error("InvalidArgument", f"No location named {target!r} is configured.",
                          ArgumentName="to", ArgumentValue=target)
        health = self.engine.locations[target].health
        if health.state == "down":  # new writes would fail at once
            raise S3Error("ServiceUnavailable", f"Location {target} is down ({health.message}): "
                          "not migrating to it now.")
        bucket = await self.metadata.get_bucket(bucket_name)
        if bucket is None:
            raise S3Error("NoSuchBucket", BucketName=bucket_name)
        now = time.time()
        migration = {"id": uuid.uuid4().hex[:12], "from": bucket.location, "to": target,
                     "source": "keep" if keep_source else "delete", "state": COPYING,
                     "started": now, "finished": None, "updated": now, "scanned": False,
                     "objects": {"done": 0, "total": 0}, "bytes": {"done": 0, "total": 0},
                     "error": None}

        def guard(current: BucketRecord) -> None:
            running = current.attrs.get(ATTR)
            if running and running.get("state") == COPYING:
                raise S3Error("OperationAborted", f"Bucket {bucket_name} is already being "
                              f"migrated to {running['to']} (migrate --cancel it first).")
            if current.location != bucket.location or current.created != bucket.created:
                raise S3Error("OperationAborted", "The bucket changed meanwhile: try again.")

        spec = self.engine.locations[target].spec
        try:
            updated = await self.metadata.update_bucket(
                bucket_name, {ATTR: migration}, location=target, guard=guard,
                exclusive_location=spec.bucket_match)
        except LocationTaken as exc:
            raise S3Error("InvalidArgument", f"Location {target} (bucketMatch) already holds "
                          f"bucket {exc.bucket}.", ArgumentName="to",
                          ArgumentValue=target) from None
        if updated is None:
            raise S3Error("NoSuchBucket", BucketName=bucket_name)
        self._seen(bucket_name, migration)
        await self._next_pass(bucket_name, migration, 0, 0.0)
        log.info("migration of %s started: %s -> %s (source: %s)", bucket_name,
                 migration["from"], target, migration["source"])
        return describe(bucket_name, migration)

    async def cancel(self, bucket_name: str) -> dict[str, Any]:
        """Stop a running migration: moved versions stay on the target, the rest where they
        are, and the bucket's location goes back to what it was (new objects go there)."""
        bucket = await self.metadata.get_bucket(bucket_name)
        if bucket is None:
            raise S3Error("NoSuchBucket", BucketName=bucket_name)
        m = bucket.attrs.get(ATTR)
        if not m or m.get("state") != COPYING:
            raise S3Error("InvalidRequest", f"Bucket {bucket_name} has no migration running.")
        cancelled = {**m, "state": CANCELLED, "finished": time.time(), "updated": time.time()}
        guard = self._guard(m["id"])
        source = m["from"]
        exclusive = source in self.engine.locations and \
            self.engine.locations[source].spec.bucket_match
        try:
            updated = await self.metadata.update_bucket(
                bucket_name, {ATTR: cancelled}, location=source, guard=guard,
                exclusive_location=exclusive)
        except LocationTaken as exc:  # its old bucketMatch location went to another bucket
            cancelled["error"] = f"location {source} now holds bucket {exc.bucket}: the " \
                f"bucket stays on {m['to']}"
            updated = await self.metadata.update_bucket(bucket_name, {ATTR: cancelled},
                                                        guard=guard)
        except _Changed:
            raise S3Error("InvalidRequest", f"Bucket {bucket_name} has no migration "
                          "running.") from None
        if updated is None:
            raise S3Error("NoSuchBucket", BucketName=bucket_name)
        self._seen(bucket_name, cancelled)
        log.info("migration of %s to %s cancelled", bucket_name, m["to"])
        return describe(bucket_name, cancelled)

    async def status(self, bucket_name: str | None = None) -> list[dict[str, Any]]:
        """The migration of one bucket, or every migration, as stored now (another worker or
        gateway may have started one this process has not seen)."""
        if bucket_name is None:
            await self._seed()
            stored = await self._stored()
            for gone in set(self.known) - set(stored):
                del self.known[gone]
            migrations = sorted(stored.items())
        else:
            bucket = await self.metadata.get_bucket(bucket_name)
            if bucket is None:
                raise S3Error("NoSuchBucket", BucketName=bucket_name)
            if not bucket.attrs.get(ATTR):
                raise S3Error("InvalidRequest", f"Bucket {bucket_name} was never migrated.")
            migrations = [(bucket_name, bucket.attrs[ATTR])]
        for name, m in migrations:
            self._seen(name, m)
            await self._ensure_first_pass(name, m)
        return [describe(name, m) for name, m in migrations]

    async def _ensure_first_pass(self, bucket: str, m: dict[str, Any]) -> None:
        """A gateway that died between starting a migration and queueing its first pass
        left it without one: queue it (the same job key, so never twice). Every later pass
        queues the next before it finishes, so only the first can go missing."""
        if m["state"] == COPYING and not m.get("scanned") and time.time() - m["started"] > 10:
            await self._next_pass(bucket, m, 0, 0.0)

    async def health(self) -> list[dict[str, Any]]:
        """For the deep health JSON: every migration as the store has it now. Not only what
        this process knows: another worker (or gateway) may have started or advanced one."""
        await self._seed()
        try:
            found = await self._stored()
        except Exception as exc:  # the store is down: what this process last saw
            log.warning("migrations: reading their state failed: %s", exc)
            found = dict(self.known)
        return [describe(name, m) for name, m in sorted(found.items())]

    async def _stored(self) -> dict[str, dict[str, Any]]:
        """Every bucket's migration state in the store, by bucket."""
        found: dict[str, dict[str, Any]] = {}
        for owner in self.owners():
            for bucket in await self.metadata.list_buckets(owner):
                if bucket.attrs.get(ATTR):
                    found[bucket.name] = bucket.attrs[ATTR]
        return found

    async def _seed(self) -> None:
        """Learn of migrations started before this process (once): buckets of every account."""
        if self._seeded:
            return
        self._seeded = True
        try:
            for name, m in (await self._stored()).items():
                if name not in self.known:
                    self._seen(name, m)
                    await self._ensure_first_pass(name, m)
        except Exception as exc:  # the store is down: try again on the next call
            self._seeded = False
            log.warning("migrations: looking for migrations failed: %s", exc)

    def _seen(self, bucket: str, m: dict[str, Any]) -> None:
        self.known[bucket] = m
        d = describe(bucket, m)
        for kind in ("done", "total"):
            self._m_objects.labels(bucket, kind).set(m["objects"][kind])
            self._m_bytes.labels(bucket, kind).set(m["bytes"][kind])
        self._m_eta.labels(bucket).set(-1 if d["etaSeconds"] is None else d["etaSeconds"])
        self._m_running.labels(bucket).set(1 if m["state"] == COPYING else 0)

    @staticmethod
    def _guard(migration_id: str) -> Callable[[BucketRecord], None]:
        def guard(current: BucketRecord) -> None:
            m = current.attrs.get(ATTR)
            if not m or m.get("id") != migration_id or m.get("state") != COPYING:
                raise _Changed()
        return guard

    # --- the pass: progress, and what is left to enqueue ----------------------------------
    async def _next_pass(self, bucket: str, m: dict[str, Any], number: int,
                         delay: float, window: int = 0) -> None:
        # The number in the key: a running pass can queue the next one (one per key).
        now = time.time()
        await self.jobs.enqueue(PASS, f"{bucket}#{m['id']}@{number}", bucket,
                                {"id": m["id"], "number": number, "window": window or WINDOW,
                                 "at": now}, now + delay)

    async def _pass_job(self, job: JobRecord) -> None:
        bucket = await self.metadata.get_bucket(job.bucket)
        m = bucket.attrs.get(ATTR) if bucket is not None else None
        if bucket is None or m is None or m["id"] != job.data["id"]:
            return  # the bucket went, or another migration replaced this one
        self._seen(bucket.name, m)
        if m["state"] != COPYING or job.data["number"] < m.get("pass", -1):
            return  # over, or a later pass ran already (this one is a stray duplicate)
        started = time.monotonic()
        first = not m.get("scanned")
        # A window of queued moves, refilled every pass: the shared queue never holds a
        # whole bucket (other jobs are not starved, and this pass is not queued behind
        # thousands of moves), and the window follows the rate moves are done at.
        window = job.data.get("window", WINDOW)
        room = max(0, window - await self._moves_in_flight())
        remaining, remaining_bytes, enqueued = await self._walk(bucket.name, m, room)
        walk_seconds = time.monotonic() - started
        before = m["objects"]["done"]
        m = {**m, "objects": dict(m["objects"]), "bytes": dict(m["bytes"]),
             "updated": time.time(), "scanned": True, "pass": job.data["number"]}
        for counts, left in ((m["objects"], remaining), (m["bytes"], remaining_bytes)):
            if first:
                counts["total"], counts["done"] = left, 0
            else:  # stragglers (written to the source meanwhile) add to the total
                counts["total"] = max(counts["total"], counts["done"] + left)
                counts["done"] = max(counts["done"], counts["total"] - left)
        error = self.jobs.last_error  # this gateway's last failed job, if one of these moves
        m["error"] = error if remaining and error and error.startswith(f"{MOVE} {bucket.name}/") \
            else None
        if remaining == 0:
            m["state"], m["finished"] = DONE, time.time()
        try:
            updated = await self.metadata.update_bucket(bucket.name, {ATTR: m},
                                                        guard=self._guard(m["id"]))
        except _Changed:
            return  # cancelled (or replaced) while this pass walked
        if updated is None:
            return
        self._seen(bucket.name, m)
        if m["state"] == COPYING:
            # Queued after the moves it enqueued (claims are in not_before, id order), the
            # next pass runs once they are all claimed and refills the window; with nothing
            # enqueued (the window is full, or moves are backing off) it waits a little.
            # The window holds about a second of moves, more when a walk takes long.
            elapsed = max(1e-3, time.time() - job.data.get("at", time.time()))
            rate = (m["objects"]["done"] - before) / elapsed
            window = int(min(MAX_WINDOW, max(WINDOW, rate * max(1.0, 10 * walk_seconds))))
            await self._next_pass(bucket.name, m, job.data["number"] + 1,
                                  0.0 if enqueued else max(PASS_SECONDS, 10 * walk_seconds),
                                  window)
        else:
            log.info("migration of %s to %s %s: %d versions, %d bytes in %.1fs",
                     bucket.name, m["to"], m["state"], m["objects"]["total"],
                     m["bytes"]["total"], m["finished"] - m["started"])

    async def _moves_in_flight(self) -> int:
        counts = (await self.metadata.job_counts()).get(MOVE, {})
        return counts.get("pending", 0) + counts.get("running", 0)

    async def _walk(self, bucket: str, m: dict[str, Any], room: int) -> tuple[int, int, int]:
        """(versions left to move, their bytes, moves enqueued now: at most `room`)."""
        for _ in range(3):
            try:
                return await self._walk_once(bucket, m, room)
            except LookupError:  # the page marker's version went meanwhile: walk again
                continue
        return await self._walk_once(bucket, m, room)

    async def _walk_once(self, bucket: str, m: dict[str, Any], room: int
                         ) -> tuple[int, int, int]:
        remaining = remaining_bytes = enqueued = 0
        key_marker: str | None = None
        vid_marker: str | None = None
        while True:
            page = await self.metadata.list_versions(bucket, "", None, key_marker, vid_marker,
                                                     PAGE)
            for version in page.versions:
                if not self.to_move(version, m["to"]):
                    continue
                remaining += 1
                remaining_bytes += version.size
                # The first versions left are those queued already (the queue says so:
                # None); a failed-for-good one is queued again (retried, from attempt 1).
                if enqueued < room and await self._enqueue_move(bucket, version, m):
                    enqueued += 1
            if not page.truncated or not page.versions:
                return remaining, remaining_bytes, enqueued
            key_marker, vid_marker = page.next_key, page.next_version_id

    async def _enqueue_move(self, bucket: str, version: ObjectRecord, m: dict[str, Any]
                            ) -> bool:
        vid = version.version_id or "null"
        # A version id is hex (or "null"): the key part before "?versionId=" is unambiguous.
        return await self.jobs.enqueue(
            MOVE, f"{bucket}/{version.key}?versionId={vid}", bucket,
            {"id": m["id"], "key": version.key, "version_id": vid}, time.time()) is not None

    # --- one version -------------------------------------------------------------------------
    async def _move_job(self, job: JobRecord) -> None:
        bucket = await self.metadata.get_bucket(job.bucket)
        m = bucket.attrs.get(ATTR) if bucket is not None else None
        # Decided again now: the bucket's current migration (cancelled: nothing to do).
        if bucket is None or m is None or m["state"] not in (COPYING, DONE):
            return
        record = await self.metadata.get_object(bucket.name, job.data["key"],
                                                job.data["version_id"])
        if record is None or not self.to_move(record, m["to"]):
            return  # gone, overwritten (an unversioned key), or there already
        try:
            result = await relocate(self.engine, bucket.name, record.key, record.version_id,
                                    m["to"], expected=record, keep_source=m["source"] == "keep")
        except RelocationFailed as exc:  # nothing changed: retried with back-off
            raise RuntimeError(f"moving {bucket.name}/{record.key} to {m['to']}: {exc}"
                               ) from None
        if result.record is None and result.skipped == "changed":
            self._m_lost.labels(bucket.name).inc()
        elif result.moved:
            self._m_moved.labels(bucket.name).inc(result.moved)

    # --- objects created meanwhile on the source ---------------------------------------------
    def _on_event(self, event: ObjectEvent) -> None:
        """A write placed before the switch (a PUT already streaming, a multipart upload
        created earlier) may commit on the source after the pass walked past its key, or
        after the migration is done: move it too."""
        if event.kind.startswith("ObjectCreated"):
            # Not from `known`: another worker or gateway may have begun (or ended) one since;
            # the store decides (_straggler reads the bucket; SQLite answers from its cache).
            self._background(self._straggler(event))

    async def _straggler(self, event: ObjectEvent) -> None:
        try:
            bucket = await self.metadata.get_bucket(event.bucket)
            m = bucket.attrs.get(ATTR) if bucket is not None else None
            if bucket is None or m is None or m["state"] not in (COPYING, DONE):
                return
            record = await self.metadata.get_object(bucket.name, event.key,
                                                    event.version_id or "null")
            if record is not None and self.to_move(record, m["to"]):
                await self._enqueue_move(bucket.name, record, m)
        except Exception as exc:  # a pass (while copying) finds it anyway
            log.warning("migration of %s: checking %s: %s", event.bucket, event.key, exc)

    # --- HTTP (python -m gateway migrate talks to the running gateway) -------------------
    async def http(self, request: web.Request, action: str) -> web.Response:
        from gateway.health.endpoints import json_response

        query = request.query
        try:
            if action == "start":
                source = query.get("source", "delete")
                if source not in ("delete", "keep"):
                    raise S3Error("InvalidArgument", "source is delete or keep")
                body: Any = await self.begin(query.get("bucket", ""), query.get("to", ""),
                                             keep_source=source == "keep")
            elif action == "cancel":
                body = await self.cancel(query.get("bucket", ""))
            else:
                body = {"migrations": await self.status(query.get("bucket") or None)}
        except S3Error as err:
            return json_response({"error": err.code, "message": err.message}, err.status)
        return json_response(body)


__all__ = ["ATTR", "MOVE", "PASS", "Migrations", "describe"]
