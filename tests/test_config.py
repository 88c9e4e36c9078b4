"""A bad config file refuses to start with one line naming the file, the location and the key."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.gatewayproc import REPO, free_port, write_config


def start_and_fail(tmp_path: Path, locations: dict[str, Any] | None = None,
                   config: dict[str, Any] | None = None, raw_locations: str | None = None,
                   env: dict[str, str] | None = None) -> str:
    gw_env = write_config(tmp_path, free_port(), locations, config)
    if raw_locations is not None:
        (tmp_path / "locationConfig.json").write_text(raw_locations)
    result = subprocess.run([sys.executable, "-m", "gateway"], cwd=REPO, capture_output=True,
                            text=True, timeout=30, env={"PATH": "/usr/bin:/bin", **gw_env,
                                                        **(env or {})})
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_unknown_type(tmp_path: Path) -> None:
    line = start_and_fail(tmp_path, {"cloudy": {"type": "ftp", "legacyAwsBehavior": False,
                                                "details": {}}})
    assert "locationConfig.json" in line and '"cloudy"' in line and '"type"' in line


def test_invalid_json(tmp_path: Path) -> None:
    line = start_and_fail(tmp_path, raw_locations='{"us-east-1": {"type": "file",}')
    assert "locationConfig.json" in line and "line 1" in line


def test_missing_default_location(tmp_path: Path) -> None:
    gw_env = write_config(tmp_path, free_port(), None, None)
    Path(gw_env["S3_LOCATION_FILE"]).write_text(json.dumps(
        {"other": {"type": "file", "legacyAwsBehavior": False, "details": {}}}))
    result = subprocess.run([sys.executable, "-m", "gateway"], cwd=REPO, capture_output=True,
                            text=True, timeout=30, env={"PATH": "/usr/bin:/bin", **gw_env})
    assert result.returncode == 2 and "us-east-1" in result.stderr


def test_bad_details_name_the_key(tmp_path: Path) -> None:
    line = start_and_fail(tmp_path, {"disk": {"type": "file", "legacyAwsBehavior": False,
                                              "details": {"bucketMatch": "yes"}}})
    assert '"disk"' in line and "bucketMatch" in line


def test_unknown_details_key_refuses_to_start(tmp_path: Path) -> None:
    # A typo would silently change where objects land (bucketMatch off): refuse, name it.
    line = start_and_fail(tmp_path, {"disk": {"type": "file", "legacyAwsBehavior": False,
                                              "details": {"bucketmatch": True}}})
    assert "locationConfig.json" in line and '"disk"' in line
    assert '"details.bucketmatch"' in line and "did you mean bucketMatch" in line


def test_rest_endpoint_to_unknown_location(tmp_path: Path) -> None:
    line = start_and_fail(tmp_path, config={"restEndpoints": {"s3.example": "nowhere"}})
    assert "config.json" in line and "s3.example" in line and "nowhere" in line


def test_bad_authdata(tmp_path: Path) -> None:
    auth = tmp_path / "authdata.json"
    auth.write_text(json.dumps({"accounts": [{"name": "x"}]}))
    line = start_and_fail(tmp_path, env={"S3AUTH_CONFIG": str(auth)})
    assert "authdata.json" in line


@pytest.mark.parametrize("legacy", ["true", 1])
def test_legacy_flag_type(tmp_path: Path, legacy: Any) -> None:
    line = start_and_fail(tmp_path, {"x": {"type": "mem", "legacyAwsBehavior": legacy,
                                           "details": {}}})
    assert "legacyAwsBehavior" in line


@pytest.mark.parametrize(("key", "value"), [("readGraceSeconds", -1), ("collectInterval", 0),
                                            ("intentGraceSeconds", "long"),
                                            ("durability", "sometimes")])
def test_bad_storage_setting_names_the_key(tmp_path: Path, key: str, value: Any) -> None:
    line = start_and_fail(tmp_path, config={"storage": {key: value}})
    assert "config.json" in line and f"storage.{key}" in line
