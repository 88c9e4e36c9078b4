"""Start-up: the flight check (strict refuses, degraded starts with the location down), the
health endpoints' address filter, one-line refusals (ports, certificates), the banner, --help,
--version and `make start`."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from gateway.config import load_settings
from gateway.health.endpoints import HealthEndpoints
from tests.gatewayproc import REPO, eventually, free_port, start_gateway, write_config

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
        # The log is written by a listener thread (batched every 20 ms): wait for the line.
        eventually(lambda: "DOWN at start-up" in gw.log(), 5)
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


# --- start-up errors: one line naming the setting (and file), exit 2 ------------------------

def run_gateway(env: dict[str, str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=timeout,
                          env={"PATH": "/usr/bin:/bin", "HOME": "/nonexistent", **env})


def refused(result: subprocess.CompletedProcess[str]) -> str:
    """The one line a refused start-up prints (exit 2), with no traceback before it."""
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    return result.stderr.strip().splitlines()[-1]


def test_port_in_use_names_the_setting(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = write_config(tmp_path, port, None, None)
        line = refused(run_gateway(env))
        assert line.startswith("gateway: cannot start:")
        assert f'{tmp_path / "config.json"} key "port"' in line
        assert f"127.0.0.1:{port} is already in use" in line
        # The same for the metrics port, and for S3PORT when the environment sets it.
        env = write_config(tmp_path, free_port(), None, {"metricsPort": port})
        assert 'key "metricsPort"' in refused(run_gateway(env))
        line = refused(run_gateway({**env, "S3PORT": str(port)}))
        assert "environment variable S3PORT" in line and "already in use" in line


@pytest.mark.parametrize(("config", "env", "named"), [
    ({"port": 70000}, {}, 'key "port": must be a TCP port number, 1..65535, got 70000'),
    ({"port": "8000x"}, {}, 'key "port": must be a TCP port number'),
    ({"metricsPort": -1}, {}, 'key "metricsPort": must be a TCP port number, 0 (off)'),
    ({}, {"S3PORT": "eighty"}, "environment: S3PORT: must be a TCP port number"),
], ids=["port-too-big", "port-not-a-number", "metrics-negative", "env-not-a-number"])
def test_bad_port_value_names_the_setting(tmp_path: Path, config: dict[str, Any],
                                          env: dict[str, str], named: str) -> None:
    files = write_config(tmp_path, 8000, None, config)
    line = refused(run_gateway({**files, **env}))
    assert line.startswith("gateway: bad config:") and named in line


def test_certificate_missing_or_unusable_names_setting_and_file(tmp_path: Path) -> None:
    key, cert = tmp_path / "server.key", tmp_path / "server.crt"
    env = write_config(tmp_path, free_port(), None,
                       {"certFilePaths": {"key": str(key), "cert": str(cert)}})
    line = refused(run_gateway(env))
    assert 'key "certFilePaths.key"' in line and str(key) in line and "No such file" in line
    key.write_text("-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n")
    line = refused(run_gateway(env))
    assert 'key "certFilePaths.cert"' in line and str(cert) in line
    cert.write_text("not a certificate\n")
    line = refused(run_gateway(env))
    assert "certFilePaths.cert" in line and str(cert) in line and "cannot use it for TLS" in line
    unreadable = tmp_path / "env.crt"
    line = refused(run_gateway({**env, "S3_TLS_CERT_FILE": str(unreadable)}))
    assert "S3_TLS_CERT_FILE" in line and str(unreadable) in line


def test_banner_names_listeners_paths_and_how_to_start(tmp_path: Path) -> None:
    metrics = free_port()
    with start_gateway(tmp_path, config={"metricsPort": metrics}) as gw:
        eventually(lambda: "get started:" in gw.log())
        log = gw.log()
    assert f"S3 on http://127.0.0.1:{gw.port}; health and metrics on http://127.0.0.1:{metrics}" in log
    assert f"file locations under {tmp_path / 'data'}" in log
    assert f"sqlite {tmp_path / 'metadata' / 'metadata.sqlite3'}" in log
    assert f"aws --endpoint-url http://127.0.0.1:{gw.port} s3 mb" in log
    assert "python -m gateway accounts add" in log


def environment_names_in_code() -> set[str]:
    """Every environment variable name the gateway's code reads (NAME_ for per-location ones)."""
    names: set[str] = set()
    patterns = [r'env(?:iron)?\.get\(\s*f?"([^"]+)"', r'env(?:iron)?\[\s*f?"([^"]+)"\]',
                r'(?:ENV_[A-Z_]+|[A-Z_]+_ENV\b)\s*=\s*"([A-Z0-9_]+)"',
                r'"(S3_TLS_[A-Z_]+)"', r'env,\s*"([A-Z][A-Z0-9_]+)"', r'f"\{name\}_([A-Z_]+)"']
    assert patterns[-1].startswith("f")
    for path in (REPO / "gateway").rglob("*.py"):
        text = path.read_text()
        for pattern in patterns:
            for found in re.findall(pattern, text):
                if pattern.startswith("f"):  # f"{name}_SWIFT_KEY"
                    found = f"NAME_{found}"
                names.add(re.sub(r"^\{\w+\}_", "NAME_", found))
        # azure: setting("azureStorageEndpoint", "STORAGE_ENDPOINT") -> NAME_AZURE_...
        names |= {f"NAME_AZURE_{suffix}" for suffix in re.findall(
            r'(?:setting|required)\("\w+", "([A-Z_]+)"\)', text)}
    return {n for n in names if re.fullmatch(r"[A-Z0-9_]+", n)}


def test_help_lists_commands_files_and_every_environment_variable() -> None:
    result = run_gateway({}, "--help")
    assert result.returncode == 0, result.stderr
    text = result.stdout
    from gateway.__main__ import COMMANDS

    assert {"serve", "locations", "check", "fsck", "accounts"} <= set(COMMANDS)
    for command in COMMANDS:
        assert re.search(rf"^\s+{command}\b", text, re.M), command
    for file in ("config.json", "locationConfig.json", "authdata.json", "master.key"):
        assert file in text
    names = environment_names_in_code()
    assert {"S3PORT", "S3_TLS_CERT_FILE", "SCALITY_ACCESS_KEY_ID", "NAME_SWIFT_KEY",
            "NAME_AZURE_SAS_TOKEN", "S3_MASTER_KEY_FILE"} <= names
    missing = sorted(n for n in names if n not in text)
    assert not missing, f"--help does not mention {missing}"
    assert "accounts" in run_gateway({}, "accounts", "--help").stdout


def test_version_comes_from_the_package_metadata() -> None:
    from importlib.metadata import version

    result = run_gateway({}, "--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"s3-multicloud-gateway {version('s3-multicloud-gateway')}"


def test_make_start_installs_only_when_pyproject_changed(tmp_path: Path) -> None:
    make = shutil.which("make")
    if make is None:
        pytest.skip("make is not installed")
    shutil.copy(REPO / "Makefile", tmp_path / "Makefile")
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")

    def planned() -> str:  # what `make start` would run, without running it
        return subprocess.run([make, "-n", "start"], cwd=tmp_path, capture_output=True,
                              text=True, check=True).stdout

    assert "pip install" in planned()  # never installed here
    stamp = tmp_path / ".make" / "installed-python3"
    stamp.parent.mkdir()
    stamp.touch()
    assert "pip install" not in planned() and "-m gateway" in planned()
    future = time.time() + 5
    os.utime(tmp_path / "pyproject.toml", (future, future))
    assert "pip install" in planned()
