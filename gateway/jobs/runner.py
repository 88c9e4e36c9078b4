"""The job runner: works through the job queue in the metadata store (MetadataStore.enqueue_job
and friends), a bounded number of jobs at a time.

Each job is claimed with a lease that a heartbeat renews while it runs; a gateway that dies
stops renewing, its claims expire and another gateway (or this one, restarted) claims those
jobs again: the queue is resumable, and on PostgreSQL several gateways share it without
running one job twice (the store's claims are exclusive; finishing is fenced by the worker id).
A failed attempt is retried with exponential back-off; GiveUp (or too many attempts) marks the
job failed for good. Handlers are registered per kind by the services that enqueue (e.g.
gateway/lifecycle/); they must be idempotent, since a job whose lease expired mid-run (a
stalled process) may be run again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from gateway.metadata.base import JobRecord, MetadataStore

if TYPE_CHECKING:
    from gateway.health.metrics import Metrics

log = logging.getLogger("gateway.jobs")

Handler = Callable[[JobRecord], Awaitable[None]]
MAX_BACKOFF = 3600.0
LATENCY_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800, 3600)


@dataclass(frozen=True)
class JobSettings:
    """config.json "jobs"."""

    concurrency: int = 4  # jobs run at once by one gateway
    lease: float = 60.0  # s a claim lasts without a heartbeat (renewed every lease / 3)
    poll: float = 2.0  # s between looks at the queue when idle
    max_attempts: int = 8  # then the job is "failed" for good


class GiveUp(Exception):
    """Raised by a handler: retrying cannot help (the job is marked failed at once)."""


@dataclass
class _Kind:
    handler: Handler
    retry_forever: bool


class JobRunner:
    def __init__(self, metadata: MetadataStore, settings: JobSettings,
                 metrics: Metrics | None = None) -> None:
        self.metadata = metadata
        self.settings = settings
        self.worker = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._kinds: dict[str, _Kind] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._running: set[asyncio.Task[None]] = set()
        # This process's own tallies (the store's are in job_counts()).
        self.finished: dict[str, dict[str, int]] = {}
        self.last_error: str | None = None
        # With several worker processes (gateway/workers.py): told of each finished job, and
        # what the whole machine ran, for status() in any worker.
        self.on_finish: Callable[[], None] | None = None
        self.machine_report: Callable[[], dict[str, Any]] | None = None
        registry = metrics.registry if metrics is not None else CollectorRegistry()
        self._m_finished = Counter("s3gw_jobs_finished", "Background jobs this gateway finished, "
                                   "by kind and outcome (done, retry, failed; lost: "
                                   "its claim had expired)",
                                   ["kind", "outcome"], registry=registry)
        self._m_latency = Histogram("s3gw_job_latency_seconds", "From enqueue to done, by kind",
                                    ["kind"], buckets=LATENCY_BUCKETS, registry=registry)
        self._m_queue = Gauge("s3gw_jobs", "Jobs in the queue (all gateways) by kind and state "
                              "(pending, running, failed; done: finished in total)",
                              ["kind", "state"], registry=registry)
        self._m_active = Gauge("s3gw_jobs_active", "Jobs this gateway is running now",
                               registry=registry)

    def register(self, kind: str, handler: Handler, *, retry_forever: bool = False) -> None:
        """`retry_forever`: never give up after max_attempts (e.g. a periodic scan)."""
        self._kinds[kind] = _Kind(handler, retry_forever)

    async def enqueue(self, kind: str, job_key: str, bucket: str, data: dict[str, Any],
                      not_before: float = 0.0) -> int | None:
        job_id = await self.metadata.enqueue_job(kind, job_key, bucket, data, not_before)
        if job_id is not None and not_before <= time.time():
            self.wake()
        return job_id

    def wake(self) -> None:
        self._wake.set()

    # --- running ----------------------------------------------------------------------------
    async def start(self, *, exclusive_store: bool = False) -> None:
        """Start the loop. `exclusive_store` (SQLite: no other process uses the queue): the
        jobs a crashed run of this gateway held are due again now, not when their leases
        end."""
        if exclusive_store:
            released = await self.metadata.release_jobs()
            if released:
                log.warning("released %d job(s) a crashed run held", released)
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name="jobs")

    async def stop(self, grace: float = 5.0) -> None:
        """Stop claiming; give running jobs `grace` s, then cancel them (their claims expire
        and the jobs run again later: nothing is lost)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._running:
            _, pending = await asyncio.wait(self._running, timeout=grace)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)

    async def _loop(self) -> None:
        while True:
            try:
                claimed = await self._claim_some()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the metadata store is down: try again later
                log.warning("jobs: claiming failed: %s: %s", type(exc).__name__, exc)
                claimed = 0
            free = self.settings.concurrency - len(self._running)
            if claimed and free > 0:
                continue  # more may be due right away
            self._wake.clear()
            waiters: set[asyncio.Future[Any]] = {asyncio.ensure_future(self._wake.wait())}
            if free <= 0:
                waiters |= set(self._running)  # a slot frees up
            _, pending = await asyncio.wait(waiters, timeout=self.settings.poll,
                                            return_when=asyncio.FIRST_COMPLETED)
            for waiter in pending:
                if waiter not in self._running:
                    waiter.cancel()

    async def _claim_some(self) -> int:
        free = self.settings.concurrency - len(self._running)
        if free <= 0 or not self._kinds:
            return 0
        jobs = await self.metadata.claim_jobs(self.worker, free, self.settings.lease)
        for job in jobs:
            task = asyncio.create_task(self.run_job(job), name=f"job-{job.id}")
            self._running.add(task)
            task.add_done_callback(self._running.discard)
        self._m_active.set(len(self._running))
        return len(jobs)

    async def drain(self, timeout: float = 600.0) -> int:
        """Run due jobs in the foreground until none is left (or `timeout`); how many ran.
        For one-shot use (the CLI), without start()."""
        deadline = time.monotonic() + timeout
        ran = 0
        while time.monotonic() < deadline:
            jobs = await self.metadata.claim_jobs(self.worker, self.settings.concurrency,
                                                  self.settings.lease)
            if not jobs:
                return ran
            await asyncio.gather(*(self.run_job(job) for job in jobs))
            ran += len(jobs)
        return ran

    async def run_job(self, job: JobRecord) -> None:
        """Run one claimed job and record its outcome; never raises (but cancellation)."""
        kind = self._kinds.get(job.kind)
        if kind is None:
            work = asyncio.create_task(_no_handler(job))
        else:
            work = asyncio.create_task(kind.handler(job))
        heartbeat = asyncio.create_task(self._heartbeat(job, work))
        outcome = "done"
        try:
            await work
        except asyncio.CancelledError:
            heartbeat.cancel()
            me = asyncio.current_task()
            if me is not None and me.cancelling():
                raise  # shutdown: the claim expires; the job runs again
            outcome = "lost"  # the heartbeat stopped it: another worker holds the job now
        except Exception as exc:
            message = f"{type(exc).__name__}: {exc}"
            self.last_error = f"{job.kind} {job.job_key}: {message}"
            give_up = isinstance(exc, GiveUp) or (
                job.attempts >= self.settings.max_attempts
                and not (kind is not None and kind.retry_forever))
            retry_at = None if give_up else \
                time.time() + min(MAX_BACKOFF, 2.0 * 2 ** min(job.attempts, 12))
            outcome = "failed" if give_up else "retry"
            log.warning("job %s %s attempt %d %s: %s", job.kind, job.job_key, job.attempts,
                        "failed for good" if give_up else "failed, will retry", message)
            if not await self._finish(job, lambda: self.metadata.fail_job(
                    job.id, self.worker, message[:2000], retry_at)):
                outcome = "lost"
        else:
            if await self._finish(job, lambda: self.metadata.complete_job(job.id, self.worker)):
                self._m_latency.labels(job.kind).observe(max(0.0, time.time() - job.created))
            else:
                outcome = "lost"
        finally:
            heartbeat.cancel()
        self._m_finished.labels(job.kind, outcome).inc()
        tally = self.finished.setdefault(job.kind, {})
        tally[outcome] = tally.get(outcome, 0) + 1
        if self.on_finish is not None:
            self.on_finish()

    async def _finish(self, job: JobRecord, call: Callable[[], Awaitable[bool]]) -> bool:
        """Record the outcome; False when the claim was no longer ours ("lost": the lease
        expired while the job ran, so another worker may run it again)."""
        try:
            if await call():
                return True
            log.warning("job %s %s: the claim had expired (ran too long?)", job.kind,
                        job.job_key)
        except Exception as exc:  # the store is down: the claim expires, the job runs again
            log.warning("job %s %s: recording the outcome failed: %s", job.kind, job.job_key,
                        exc)
        return False

    async def _heartbeat(self, job: JobRecord, work: asyncio.Task[None]) -> None:
        """Renew the lease while the job runs; stop the job once the claim is another's
        (its lease ran out meanwhile), so one job never runs twice at once."""
        while True:
            await asyncio.sleep(self.settings.lease / 3)
            try:
                held = await self.metadata.extend_job(job.id, self.worker,
                                                      time.time() + self.settings.lease)
            except Exception as exc:
                log.warning("job %s %s: renewing the lease failed: %s", job.kind, job.job_key,
                            exc)
                continue
            if not held:
                log.warning("job %s %s: the claim expired and is another's: stopping it",
                            job.kind, job.job_key)
                work.cancel()
                return

    # --- reporting --------------------------------------------------------------------------
    async def status(self) -> dict[str, Any]:
        """For the deep health check and /metrics: the queue (all gateways) and this one."""
        counts = await self.metadata.job_counts()
        for kind, states in counts.items():
            for state, n in states.items():
                self._m_queue.labels(kind, state).set(n)
        here = self.machine_report() if self.machine_report is not None else self.report()
        return {**here, "concurrency": self.settings.concurrency, "queue": counts}

    def report(self) -> dict[str, Any]:
        """What this process runs and ran."""
        return {"worker": self.worker, "active": len(self._running),
                "finishedHere": self.finished, "lastError": self.last_error}


async def _no_handler(job: JobRecord) -> None:
    raise LookupError(f"no handler for job kind {job.kind!r} in this gateway")
