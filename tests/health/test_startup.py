"""Start-up flight check (strict refuses, degraded starts with the location down) and the
health endpoints' address filter."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from gateway.config import load_settings
from gateway.health.endpoints import HealthEndpoints
from tests.gatewayproc import REPO, free_port, start_gateway, write_config

ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def dead_azure() -> dict[str, Any]:
    """An azure location whose endpoint nothing listens on."""
    return {"type": "azure", "legacyAwsBehavior": False, "details": {
        "azureStorageEndpoint": f"http://127.0.0.1:{free_port()}/devstoreaccount1",
        "azureContainerName": "nothing-here", "azureStorageAccountName": "devstoreaccount1",
        "azureStorageAccessKey": ACCOUNT_KEY}}


def test_strict_startup_refuses_with_one_line(tmp_path: Path) -> None:
    env = write_config(tmp_path, free_port(), {"gone": dead_azure()},
                       {"healthChecks": {"startup": "strict", "timeout": 2}})
    result = subprocess.run([sys.executable, "-m", "gateway"], cwd=REPO, capture_output=True,
                            text=True, timeout=60, env={"PATH": "/usr/bin:/bin", **env})
    assert result.returncode == 3
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("gateway: cannot start:") and "gone" in last


def test_degraded_startup_marks_the_location_down(tmp_path: Path) -> None:
    with start_gateway(tmp_path, {"gone": dead_azure()},
                       config={"healthChecks": {"startup": "degraded", "timeout": 2,
                                                "interval": 30}}) as gw:
        # Metadata is up, so the deep report is 200 even with a location down.
        with urllib.request.urlopen(f"{gw.endpoint}/_/healthcheck/deep", timeout=10) as r:
            assert r.status == 200
            report = json.load(r)
        assert report["locations"]["gone"]["state"] == "down"
        assert report["locations"]["us-east-1"]["state"] == "up"
        assert "DOWN at start-up" in gw.log()
        s3 = gw.client()
        s3.create_bucket(Bucket="still-works")
        s3.put_object(Bucket="still-works", Key="k", Body=b"on disk")  # other locations serve
        assert s3.get_object(Bucket="still-works", Key="k")["Body"].read() == b"on disk"


def test_health_endpoints_refuse_other_addresses(tmp_path: Path) -> None:
    env = write_config(tmp_path, free_port(), None,
                       {"healthChecks": {"allowFrom": ["10.1.0.0/16"]}})
    settings = load_settings(env)
    endpoints = HealthEndpoints(SimpleNamespace(settings=settings))  # type: ignore[arg-type]
    allowed = lambda remote: endpoints.allowed(SimpleNamespace(remote=remote))  # type: ignore[arg-type]  # noqa: E731
    assert allowed("127.0.0.1") and allowed("127.8.9.10") and allowed("::1")
    assert allowed("10.1.200.3")
    assert not allowed("10.2.0.1") and not allowed("192.0.2.7") and not allowed(None)
