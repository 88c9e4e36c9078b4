"""config.json "console": validated like every other setting (one line naming the key)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from gateway.config import load_settings
from gateway.errors import ConfigFileError
from tests.gatewayproc import write_config


def settings_with(tmp_path: Path, console: Any) -> Any:
    env = write_config(tmp_path, 8000, None, {"console": console})
    return load_settings(env)


def test_defaults_and_values(tmp_path: Path) -> None:
    default = load_settings(write_config(tmp_path, 8000, None, None)).console
    assert (default.enabled, default.port, default.session_minutes) == (True, 0, 30.0)
    chosen = settings_with(tmp_path, {"enabled": False, "port": 9001, "sessionMinutes": 5})
    assert (chosen.console.enabled, chosen.console.port,
            chosen.console.session_minutes) == (False, 9001, 5.0)


@pytest.mark.parametrize(("console", "key"), [
    ({"port": 70000}, "console.port"),
    ({"port": "9001"}, "console.port"),
    ({"enabled": "yes"}, "console.enabled"),
    ({"sessionMinutes": 0}, "console.sessionMinutes"),
    ({"prot": 9001}, "console.prot"),
    ("on", "console"),
])
def test_bad_console_settings_name_the_key(tmp_path: Path, console: Any, key: str) -> None:
    with pytest.raises(ConfigFileError) as caught:
        settings_with(tmp_path, console)
    assert f'"{key}"' in str(caught.value)
    assert json.loads((tmp_path / "config.json").read_text())["console"] == console
