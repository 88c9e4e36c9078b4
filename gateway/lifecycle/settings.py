"""config.json "lifecycle" (loaded by gateway/config.py)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LifecycleSettings:
    day: float = 86400.0  # dayLengthSeconds: how long a rule's "day" is (shorter for tests, demos)
    scan_interval: float = 3600.0  # scanIntervalSeconds: between two scans of a bucket
