"""Shared fixtures. Each test cloud's fixture lives in tests/clouds/<type>.py and is loaded here."""

from __future__ import annotations

from pathlib import Path

pytest_plugins = sorted(
    f"tests.clouds.{path.stem}"
    for path in (Path(__file__).parent / "clouds").glob("*.py")
    if path.stem != "__init__"
)
