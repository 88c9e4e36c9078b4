"""Shared fixtures. Each test cloud's fixture lives in tests/clouds/<type>.py and is loaded here.

TEST_CLOUDS=aws_s3,azure (or "none") limits which cloud fixtures load; the default is all.
"""

from __future__ import annotations

import os
from pathlib import Path

_wanted = os.environ.get("TEST_CLOUDS", "all")
pytest_plugins = sorted(
    f"tests.clouds.{path.stem}"
    for path in (Path(__file__).parent / "clouds").glob("*.py")
    if path.stem != "__init__" and (_wanted == "all" or path.stem in _wanted.split(","))
)
