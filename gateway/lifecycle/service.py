"""Lifecycle, executed: a periodic scan per bucket enqueues jobs, and the job handlers act
through the object engine (delete, abort) and gateway/objects/relocate.py (transitions).

The scan of a bucket is itself a job ("lifecycle.scan", rescheduled every
lifecycle.scanIntervalSeconds while the bucket has rules), so the schedule lives in the metadata
store: it survives restarts and gateways sharing PostgreSQL share it. A scan walks the bucket's
versions and uploads once and enqueues one job per action due (deduplicated per object version
by the queue). Each action job decides again when it runs, on the key's versions as they are
then (the object may have been overwritten, deleted or the rules changed since the scan), and
every change it makes is conditional on what it decided on: nothing acts on stale state.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from prometheus_client import Counter

from gateway.errors import S3Error
from gateway.jobs import GiveUp, JobRunner
from gateway.lifecycle.rules import Action, Rule, abort_due, expiration_header, key_actions
from gateway.lifecycle.settings import LifecycleSettings
from gateway.metadata.base import BucketRecord, JobRecord, ObjectRecord
from gateway.objects.lock import is_protected
from gateway.objects.relocate import RelocationFailed, relocate

if TYPE_CHECKING:
    from gateway.health.metrics import Metrics
    from gateway.objects.engine import Engine

log = logging.getLogger("gateway.lifecycle")

SCAN = "lifecycle.scan"
EXPIRE = "lifecycle.expire"
DELETE_VERSION = "lifecycle.delete-version"
TRANSITION = "lifecycle.transition"
ABORT = "lifecycle.abort"
KINDS = (SCAN, EXPIRE, DELETE_VERSION, TRANSITION, ABORT)
ACTION_KINDS = {"expire": EXPIRE, "delete-version": DELETE_VERSION, "transition": TRANSITION}
PAGE = 1000


@dataclass
class ScanReport:
    bucket: str
    enqueued: dict[str, int] = field(default_factory=dict)
    versions: int = 0
    uploads: int = 0

    def add(self, kind: str) -> None:
        self.enqueued[kind] = self.enqueued.get(kind, 0) + 1


def rules_of(bucket: BucketRecord) -> list[Rule]:
    return list(bucket.attrs.get("lifecycle") or [])


def allowed(actions: list[Action], versions: list[ObjectRecord]) -> list[Action]:
    """Object Lock: a version under retention or legal hold is never removed (a current one
    still gets a delete marker, and any version may move to another location)."""
    protected = {v.version_id for v in versions if not v.delete_marker and is_protected(v)}
    return [a for a in actions if a.kind != "delete-version" or a.version_id not in protected]


class Lifecycle:
    def __init__(self, engine: Engine, jobs: JobRunner, settings: LifecycleSettings,
                 storage_classes: dict[str, str], metrics: Metrics | None = None) -> None:
        self.engine = engine
        self.metadata = engine.metadata
        self.jobs = jobs
        self.settings = settings
        self.storage_classes = storage_classes
        registry = metrics.registry if metrics is not None else None
        kwargs: dict[str, Any] = {"registry": registry} if registry is not None else {}
        self._m_moved = Counter("s3gw_transition_bytes", "Bytes moved between locations by "
                                "lifecycle transitions", ["storage_class"], **kwargs)
        self.moved_bytes = 0
        self.moved_seconds = 0.0
        # With several workers (gateway/workers.py): what every worker moved, for status().
        self.machine_moved: Callable[[], tuple[int, float]] | None = None
        jobs.register(SCAN, self._scan_job, retry_forever=True)
        jobs.register(EXPIRE, self._action_job)
        jobs.register(DELETE_VERSION, self._action_job)
        jobs.register(TRANSITION, self._action_job)
        jobs.register(ABORT, self._abort_job)

    # --- what clients see -------------------------------------------------------------------
    def object_headers(self, bucket: BucketRecord, obj: ObjectRecord) -> dict[str, str]:
        """x-amz-expiration, for PUT/GET/HEAD responses of a current version a rule expires
        (x-amz-storage-class is the object handlers' own)."""
        headers: dict[str, str] = {}
        rules = bucket.attrs.get("lifecycle")
        if rules and obj.latest and not obj.delete_marker:
            value = expiration_header(rules, obj, self.settings.day)
            if value:
                headers["x-amz-expiration"] = value
        return headers

    # --- scheduling -------------------------------------------------------------------------
    async def schedule(self, bucket: str, at: float | None = None) -> None:
        """Make sure a scan of `bucket` is queued for `at` (default: now). The job key names
        the scan interval it falls in, so a bucket has one scan queued per interval."""
        when = time.time() if at is None else at
        slot = math.floor(when / self.settings.scan_interval)
        await self.jobs.enqueue(SCAN, f"{bucket}@{slot}", bucket, {"bucket": bucket}, when)

    async def _scan_job(self, job: JobRecord) -> None:
        report = await self.scan(job.data["bucket"])
        if report is not None:  # the bucket still has rules: scan again later
            await self.schedule(job.data["bucket"], time.time() + self.settings.scan_interval)

    async def run_now(self, bucket: str, timeout: float = 600.0) -> dict[str, Any]:
        """One pass now (python -m gateway lifecycle run): scan, run every due job here, and
        wait for those other workers (this gateway's loop, other gateways) are running. Jobs
        backing off after a failure are not waited for: they are not due."""
        started = time.monotonic()
        report = await self.scan(bucket)
        if report is None:
            raise S3Error("NoSuchLifecycleConfiguration", BucketName=bucket)
        deadline = started + timeout
        while time.monotonic() < deadline:
            await self.jobs.drain(timeout=max(0.0, deadline - time.monotonic()))
            counts = await self.metadata.job_counts()
            running = sum(counts.get(kind, {}).get("running", 0)
                          for kind in KINDS if kind != SCAN)
            if not running:
                break
            await asyncio.sleep(0.1)
        return {"bucket": bucket, "enqueued": report.enqueued, "versions": report.versions,
                "uploads": report.uploads, "seconds": round(time.monotonic() - started, 3),
                "jobs": await self.metadata.job_counts()}

    # --- the scan ---------------------------------------------------------------------------
    async def scan(self, bucket_name: str) -> ScanReport | None:
        """Walk the bucket once and enqueue every action due; None when it has no rules."""
        bucket = await self.metadata.get_bucket(bucket_name)
        if bucket is None:
            return None
        rules = rules_of(bucket)
        if not rules:
            return None
        report = ScanReport(bucket_name)
        now = time.time()
        enabled = [r for r in rules if r["status"] == "Enabled"]
        if any(key for key in ("expiration", "noncurrent_expiration", "transitions",
                               "noncurrent_transitions") for r in enabled if key in r):
            await self._scan_versions(bucket_name, enabled, now, report)
        if any("abort_days" in r for r in enabled):
            await self._scan_uploads(bucket_name, enabled, now, report)
        self.jobs.wake()
        log.info("lifecycle scan of %s: %d versions, %d uploads, enqueued %s", bucket_name,
                 report.versions, report.uploads, report.enqueued or "nothing")
        return report

    async def _scan_versions(self, bucket: str, rules: list[Rule], now: float,
                             report: ScanReport) -> None:
        key_marker: str | None = None
        vid_marker: str | None = None
        group: list[ObjectRecord] = []
        while True:
            page = await self.metadata.list_versions(bucket, "", None, key_marker, vid_marker,
                                                     PAGE)
            for version in page.versions:
                report.versions += 1
                if group and version.key != group[0].key:
                    await self._enqueue_actions(bucket, rules, group, now, report)
                    group = []
                group.append(version)
            if not page.truncated or not page.versions:
                break
            key_marker, vid_marker = page.next_key, page.next_version_id
        if group:
            await self._enqueue_actions(bucket, rules, group, now, report)

    async def _enqueue_actions(self, bucket: str, rules: list[Rule], versions: list[ObjectRecord],
                               now: float, report: ScanReport) -> None:
        for action in allowed(key_actions(rules, versions, now, self.settings.day), versions):
            kind = ACTION_KINDS[action.kind]
            data = {"key": action.key, "version_id": action.version_id, "etag": action.etag,
                    "class": action.storage_class}
            # One pending job per object version and kind; "expire" is per key (it acts on
            # whatever version is current). A version id is hex (or "null"), so the key part
            # before "?versionId=" is unambiguous.
            job_key = f"{bucket}/{action.key}" if kind == EXPIRE else \
                f"{bucket}/{action.key}?versionId={action.version_id or 'null'}"
            if await self.jobs.enqueue(kind, job_key, bucket, data) is not None:
                report.add(kind)

    async def _scan_uploads(self, bucket: str, rules: list[Rule], now: float,
                            report: ScanReport) -> None:
        key_marker: str | None = None
        upload_marker: str | None = None
        while True:
            page = await self.metadata.list_uploads(bucket, "", None, key_marker, upload_marker,
                                                    PAGE)
            for upload in page.uploads:
                report.uploads += 1
                if abort_due(rules, upload.key, upload.initiated, self.settings.day, now):
                    if await self.jobs.enqueue(ABORT, f"{bucket}#{upload.upload_id}", bucket,
                                               {"upload_id": upload.upload_id}) is not None:
                        report.add(ABORT)
            if not page.truncated or not page.uploads:
                break
            key_marker, upload_marker = page.uploads[-1].key, page.uploads[-1].upload_id

    # --- the actions --------------------------------------------------------------------------
    async def _key_versions(self, bucket: str, key: str) -> list[ObjectRecord]:
        """Every version of exactly `key`, newest first."""
        versions: list[ObjectRecord] = []
        key_marker: str | None = None
        vid_marker: str | None = None
        while True:
            page = await self.metadata.list_versions(bucket, key, None, key_marker, vid_marker,
                                                     PAGE)
            for version in page.versions:
                if version.key != key:
                    return versions
                versions.append(version)
            if not page.truncated or not page.versions:
                return versions
            key_marker, vid_marker = page.next_key, page.next_version_id

    async def _action_job(self, job: JobRecord) -> None:
        bucket = await self.metadata.get_bucket(job.bucket)
        if bucket is None:
            return  # the bucket went, and its objects with it
        key = job.data["key"]
        versions = await self._key_versions(bucket.name, key)
        wanted = {EXPIRE: "expire", DELETE_VERSION: "delete-version",
                  TRANSITION: "transition"}[job.kind]
        # Decide again, now: only an action the rules still ask for on this same version.
        now_actions = [a for a in allowed(key_actions(rules_of(bucket), versions, time.time(),
                                                      self.settings.day), versions)
                       if a.kind == wanted and a.version_id == job.data["version_id"]
                       and a.etag == job.data["etag"]]
        if not now_actions:
            return
        action = now_actions[0]
        if action.kind == "expire":
            await self._expire(bucket, action)
        elif action.kind == "delete-version":
            decided = next(v for v in versions if v.version_id == action.version_id)
            try:  # only while it is still the version decided on (not a client's new "null")
                await self.engine.delete(bucket, key, action.version_id or "null", bucket.owner,
                                         only_if=decided)
            except S3Error as err:
                if err.code not in ("AccessDenied", "PreconditionFailed"):
                    raise
                # Object Lock protected it, or a client replaced it, meanwhile: nothing to do.
        else:
            version = next(v for v in versions if v.version_id == action.version_id)
            await self._transition(bucket, version, action)

    async def _expire(self, bucket: BucketRecord, action: Action) -> None:
        try:
            # Conditional on the ETag decided on: an overwrite meanwhile is not expired.
            await self.engine.delete(bucket, action.key, None, bucket.owner, expect=action.etag)
        except S3Error as err:
            if err.code not in ("PreconditionFailed", "NoSuchKey"):
                raise

    async def _transition(self, bucket: BucketRecord, version: ObjectRecord,
                          action: Action) -> None:
        assert action.storage_class is not None
        target = self.storage_classes.get(action.storage_class)
        if target is None:
            raise GiveUp(f"storage class {action.storage_class} is not mapped to a location "
                         "(storageClasses in config.json)")
        try:
            result = await relocate(self.engine, bucket.name, version.key, version.version_id,
                                    target, action.storage_class, expected=version)
        except RelocationFailed as exc:
            raise RuntimeError(f"transition of {bucket.name}/{version.key} to {target}: "
                               f"{exc}") from None
        if result.moved:
            self._m_moved.labels(action.storage_class).inc(result.moved)
            self.moved_bytes += result.moved
            self.moved_seconds += result.seconds
            log.info("lifecycle: moved %s/%s v=%s (%d bytes) to %s (%s) in %.3fs",
                     bucket.name, version.key, version.version_id or "null", result.moved,
                     target, action.storage_class, result.seconds)

    async def _abort_job(self, job: JobRecord) -> None:
        bucket = await self.metadata.get_bucket(job.bucket)
        upload = await self.metadata.get_upload(job.data["upload_id"])
        if bucket is None or upload is None or upload.state != "open":
            return  # gone, or being completed
        if not abort_due(rules_of(bucket), upload.key, upload.initiated, self.settings.day,
                         time.time()):
            return
        try:
            await self.engine.abort(upload)
        except S3Error as err:
            if err.code != "NoSuchUpload":  # completed or aborted meanwhile
                raise

    def status(self) -> dict[str, Any]:
        moved, seconds = (self.machine_moved() if self.machine_moved is not None
                          else (self.moved_bytes, self.moved_seconds))
        rate = moved / seconds if seconds else 0.0
        return {"dayLengthSeconds": self.settings.day,
                "scanIntervalSeconds": self.settings.scan_interval,
                "storageClasses": self.storage_classes,
                "transitionedBytes": moved,
                "transitionMBps": round(rate / 1e6, 3)}
