"""config.json "lifecycle", "jobs" and "storageClasses": bad values refuse to start with one
line naming the file and the key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gateway.config import load_settings
from gateway.errors import ConfigFileError
from tests.gatewayproc import free_port, write_config
from tests.test_config import start_and_fail

COLD = {"cold": {"type": "mem", "legacyAwsBehavior": False, "details": {}}}


def settings(tmp_path: Path, config: dict[str, Any]) -> Any:
    return load_settings(write_config(tmp_path, free_port(), COLD, config))


def test_defaults_and_values(tmp_path: Path) -> None:
    default = settings(tmp_path / "d", {})
    assert default.lifecycle.day == 86400 and default.lifecycle.scan_interval == 3600
    assert default.jobs.concurrency == 4 and default.storage_classes == {}
    custom = settings(tmp_path / "c", {
        "lifecycle": {"dayLengthSeconds": 0.5, "scanIntervalSeconds": 2},
        "jobs": {"concurrency": 8, "leaseSeconds": 10, "pollSeconds": 1, "maxAttempts": 3},
        "storageClasses": {"GLACIER": "cold"}})
    assert (custom.lifecycle.day, custom.lifecycle.scan_interval) == (0.5, 2)
    assert (custom.jobs.concurrency, custom.jobs.lease, custom.jobs.max_attempts) == (8, 10, 3)
    assert custom.storage_classes == {"GLACIER": "cold"}


@pytest.mark.parametrize("config,key", [
    ({"lifecycle": {"dayLengthSeconds": 0}}, "lifecycle.dayLengthSeconds"),
    ({"lifecycle": {"scanIntervalSeconds": "1h"}}, "lifecycle.scanIntervalSeconds"),
    ({"lifecycle": {"daylength": 1}}, "lifecycle.daylength"),
    ({"jobs": {"concurrency": 1.5}}, "jobs.concurrency"),
    ({"jobs": {"leaseSeconds": -1}}, "jobs.leaseSeconds"),
    ({"storageClasses": {"GLACIER": "nowhere"}}, "storageClasses.GLACIER"),
    ({"storageClasses": {"FROZEN": "cold"}}, "storageClasses.FROZEN"),
    ({"storageClasses": ["GLACIER"]}, "storageClasses"),
])
def test_bad_values_name_the_key(tmp_path: Path, config: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigFileError) as exc:
        settings(tmp_path, config)
    assert f'"{key}"' in str(exc.value) and "config.json" in str(exc.value)


def test_refuses_to_start_with_one_line(tmp_path: Path) -> None:
    line = start_and_fail(tmp_path, COLD, {"lifecycle": {"dayLengthSeconds": -5}})
    assert "config.json" in line and '"lifecycle.dayLengthSeconds"' in line
