"""Periodic health checks of every location, off the request path.

Each location is probed on its own schedule (interval with jitter, per-check timeout); results
live on the Location (its HealthState) and in a small TTL cache of recent results for the deep
health endpoint. The location wrapper reads the state to fail fast while a location is down.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from typing import Any

from cachetools import TTLCache

from gateway.config import HealthSettings
from gateway.health.metrics import Metrics
from gateway.locations import Location, Locations

log = logging.getLogger("gateway.health")


class HealthMonitor:
    def __init__(self, locations: Locations, settings: HealthSettings,
                 metrics: Metrics | None = None) -> None:
        self.locations = locations
        self.metrics = metrics
        self.settings = settings
        self.recent: TTLCache[str, dict[str, Any]] = TTLCache(maxsize=1024,
                                                             ttl=max(settings.interval * 3, 5))
        self._tasks: list[asyncio.Task[None]] = []
        # Called after every check (workers: the leader shares the result, gateway/workers.py).
        self.on_check: Callable[[Location], None] | None = None

    async def check(self, location: Location) -> dict[str, Any]:
        was = location.health.state
        result = await location.check(self.settings.timeout)
        if result.ok and was == "down":
            log.warning("location %s is back up", location.name)
        elif not result.ok and was != "down":
            log.warning("location %s is DOWN: %s", location.name, result.message)
        if self.metrics is not None:
            value = {"up": 1, "down": 0}.get(location.health.state, -1)
            self.metrics.location_up.labels(location.name, location.type_name).set(value)
        report = self.describe(location)
        self.recent[location.name] = report
        if self.on_check is not None:
            self.on_check(location)
        return report

    async def flight_check(self) -> list[Location]:
        """Probe every location once, concurrently; return those that are down."""
        await asyncio.gather(*(self.check(loc) for loc in self.locations))
        return [loc for loc in self.locations if loc.health.state != "up"]

    def start(self) -> None:
        for location in self.locations:
            self._tasks.append(asyncio.create_task(self._loop(location),
                                                   name=f"health:{location.name}"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

    async def _loop(self, location: Location) -> None:
        interval = self.settings.interval
        # Spread the probes so every location is not checked in the same instant.
        await asyncio.sleep(random.uniform(0, interval))
        while True:
            await self.check(location)
            await asyncio.sleep(interval * random.uniform(0.9, 1.1))

    @staticmethod
    def describe(location: Location) -> dict[str, Any]:
        health = location.health
        return {
            "type": location.type_name,
            "state": health.state,
            "lastCheck": (time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(health.last_check))
                          if health.last_check else None),
            "latencyMs": round(health.latency * 1000, 1) if health.latency is not None else None,
            "message": health.message,
        }

    def deep(self) -> dict[str, Any]:
        for location in self.locations:
            if location.health.refresh is not None:  # what the other workers learnt
                location.health.refresh()
        return {loc.name: self.describe(loc) for loc in self.locations}
