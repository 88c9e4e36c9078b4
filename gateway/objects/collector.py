"""The collector: the only code that deletes stored bytes.

It works through the garbage ledger (rows written by the metadata transactions that dropped the
last reference to a piece, a part or an upload) and removes each from its location. A failure
(location down, timeout) keeps the row for a later attempt with back-off; rows are idempotent,
so two gateways on one PostgreSQL working the same row do no harm. Periodically it also turns
intents older than storage.intentGraceSeconds (writes of a crashed gateway) into garbage.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from gateway.errors import S3Error
from gateway.metadata.base import GarbageRecord, MetadataStore
from gateway.translators.base import NotFound, Part, Stored

if TYPE_CHECKING:
    from gateway.config import StorageSettings
    from gateway.locations import Locations

log = logging.getLogger("gateway.collector")

BATCH = 100
MAX_BACKOFF = 3600.0


class Collector:
    def __init__(self, metadata: MetadataStore, locations: Locations,
                 storage: StorageSettings) -> None:
        self.metadata = metadata
        self.locations = locations
        self.storage = storage
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.collected = 0  # rows removed since start (metrics, tests)
        # Whether this process runs the periodic rounds (and reclaims old intents). With
        # several workers only the leader does (gateway/workers.py); the others collect only
        # when woken by their own writes.
        self.periodic = True

    def wake(self) -> None:
        """New garbage: collect now instead of at the next interval. With a read grace the
        new rows cannot be due yet, so the periodic round takes them."""
        if not self.storage.read_grace:
            self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="collector")

    def lead(self) -> None:
        """This worker became the leader: run the periodic rounds from now on."""
        self.periodic = True
        self._wake.set()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    async def _loop(self) -> None:
        last_reclaim = 0.0
        while True:
            try:
                # asyncio.timeout, not wait_for: on Python 3.11 wait_for swallows a cancel
                # that lands as the wake-up completes, and stop() then waits forever.
                async with asyncio.timeout(self.storage.collect_interval
                                           if self.periodic else None):
                    await self._wake.wait()
            except TimeoutError:
                pass
            self._wake.clear()
            try:
                now = time.time()
                if self.periodic and now - last_reclaim >= self.storage.collect_interval:
                    last_reclaim = now
                    await self.metadata.reclaim_intents(now - self.storage.intent_grace)
                await self.run()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the metadata store is down: try again next round
                log.warning("collector: %s: %s", type(exc).__name__, exc)

    async def run(self, read_grace: float | None = None) -> int:
        """Work through every due row; return how many were removed. Rows younger than the
        read grace (storage.readGraceSeconds unless given) wait: a GET that read the record
        just before the change may still be opening those pieces."""
        grace = self.storage.read_grace if read_grace is None else read_grace
        removed = 0
        while True:
            now = time.time()
            rows = await self.metadata.due_garbage(now, BATCH, added_before=now - grace)
            if not rows:
                return removed
            done = await asyncio.gather(*(self.collect(row) for row in rows))
            removed += sum(done)
            if not any(done):  # everything left is failing: wait for its retry time
                return removed

    async def collect(self, row: GarbageRecord) -> bool:
        """Remove what one row names; True when done (the row is dropped)."""
        if row.location not in self.locations:
            # The location left the config: keep the row (its bytes may come back with it).
            await self.metadata.retry_garbage(row.id, time.time() + MAX_BACKOFF)
            return False
        location = self.locations[row.location]
        data = row.data
        try:
            if row.kind == "piece":
                await location.delete(Stored.from_dict(data))
            elif row.kind == "part":
                part = Part(int(data["number"]), Stored.from_dict(data["stored"]))
                await location.discard_part(data["backend_key"], data["backend_upload_id"], part)
            elif row.kind == "upload":
                parts = [Part(int(p["number"]), Stored.from_dict(p["stored"]))
                         for p in data.get("parts", [])]
                await location.abort_upload(data["backend_key"], data["backend_upload_id"], parts)
            else:
                raise ValueError(f"unknown garbage kind {row.kind!r}")
        except NotFound:
            pass  # already gone: that is what we wanted
        except (S3Error, ValueError) as exc:
            delay = min(MAX_BACKOFF, 5.0 * 2 ** min(row.attempts, 10))
            message = exc.message if isinstance(exc, S3Error) else str(exc)
            log.warning("collector: %s %s at %s not removed (attempt %d, next in %.0fs): %s",
                        row.kind, data.get("key") or data.get("backend_key"), row.location,
                        row.attempts + 1, delay, message)
            await self.metadata.retry_garbage(row.id, time.time() + delay)
            return False
        await self.metadata.drop_garbage(row.id)
        self.collected += 1
        return True
