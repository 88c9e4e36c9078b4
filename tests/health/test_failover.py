"""One cloud down: known within an interval, fail fast, the others untouched, recovery without a
restart, metrics and admin CLI. Two Azurite emulators behind two locations."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError
from prometheus_client.parser import text_string_to_metric_families

from tests.clouds.azure import Azurite
from tests.gatewayproc import REPO, Gateway, start_gateway

pytestmark = pytest.mark.azure

INTERVAL = 1.0


def deep(gw: Gateway) -> dict[str, Any]:
    try:
        with urllib.request.urlopen(f"{gw.endpoint}/_/healthcheck/deep", timeout=10) as r:
            return json.load(r)
    except urllib.error.HTTPError as err:
        return json.load(err)


def wait_state(gw: Gateway, location: str, state: str, timeout: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if deep(gw)["locations"][location]["state"] == state:
            return time.monotonic() - started
        time.sleep(0.1)
    raise AssertionError(f"{location} not {state} after {timeout}s: {deep(gw)}")


def timed(call: Callable[[], Any]) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


@pytest.fixture
def two_clouds(azurite_factory: Callable[[], Azurite], tmp_path: Any) -> Iterator[tuple[Gateway, Azurite, Azurite]]:
    import asyncio

    first, second = azurite_factory(), azurite_factory()
    locations = {}
    for name, server in (("cloud-a", first), ("cloud-b", second)):
        container = asyncio.run(server.create_container())
        locations[name] = {"type": "azure", "legacyAwsBehavior": False,
                           "details": server.details(container)}
    config = {"healthChecks": {"interval": INTERVAL, "timeout": 1}}
    with start_gateway(tmp_path / "gw", locations, config=config) as gw:
        yield gw, first, second


def test_one_cloud_down_then_back(two_clouds: tuple[Gateway, Azurite, Azurite]) -> None:
    gw, first, second = two_clouds
    s3 = gw.client()
    for bucket, location in (("bucket-a", "cloud-a"), ("bucket-b", "cloud-b")):
        s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": location})
        s3.put_object(Bucket=bucket, Key="k", Body=b"payload")
    wait_state(gw, "cloud-a", "up", 10)
    healthy = [timed(lambda: s3.get_object(Bucket="bucket-b", Key="k")["Body"].read())
               for _ in range(20)]

    first.stop()
    # Known down within one interval (plus the probe's own timeout).
    assert wait_state(gw, "cloud-a", "down", INTERVAL * 1.1 + 1 + 1.0) < INTERVAL * 1.1 + 2
    report = deep(gw)["locations"]["cloud-a"]
    assert report["type"] == "azure" and report["message"] and report["lastCheck"]

    # Requests to the dead cloud fail fast, with 503 naming it.
    for _ in range(5):
        started = time.perf_counter()
        with pytest.raises(ClientError) as exc:
            s3.get_object(Bucket="bucket-a", Key="k")
        elapsed = time.perf_counter() - started
        assert exc.value.response["Error"]["Code"] == "ServiceUnavailable"
        assert "cloud-a" in exc.value.response["Error"]["Message"]
        assert elapsed < 0.1
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket="bucket-a", Key="new", Body=b"x")
    assert exc.value.response["Error"]["Code"] == "ServiceUnavailable"
    # Metadata-only requests still work.
    assert [o["Key"] for o in s3.list_objects_v2(Bucket="bucket-a")["Contents"]] == ["k"]
    assert s3.head_object(Bucket="bucket-a", Key="k")["ContentLength"] == 7

    # The other cloud keeps its latency.
    degraded = [timed(lambda: s3.get_object(Bucket="bucket-b", Key="k")["Body"].read())
                for _ in range(20)]
    assert statistics.median(degraded) < max(3 * statistics.median(healthy), 0.05)

    # Restart the emulator (same port, same data): recovers without restarting the gateway.
    first.start()
    wait_state(gw, "cloud-a", "up", INTERVAL * 1.1 + 5)
    assert s3.get_object(Bucket="bucket-a", Key="k")["Body"].read() == b"payload"


def test_endpoints_metrics_and_cli(two_clouds: tuple[Gateway, Azurite, Azurite]) -> None:
    gw, _, _ = two_clouds
    s3 = gw.client()
    s3.create_bucket(Bucket="metered", CreateBucketConfiguration={"LocationConstraint": "cloud-b"})
    s3.put_object(Bucket="metered", Key="k", Body=b"x" * 1000)
    s3.create_multipart_upload(Bucket="metered", Key="open-upload")
    s3.get_object(Bucket="metered", Key="k")["Body"].read()
    with urllib.request.urlopen(f"{gw.endpoint}/_/healthcheck", timeout=10) as r:
        assert r.status == 200 and json.load(r)["metadata"]["state"] == "up"
    for path in ("/_/live", "/_/ready"):
        with urllib.request.urlopen(gw.endpoint + path, timeout=10) as r:
            assert r.status == 200
    with urllib.request.urlopen(f"{gw.endpoint}/_/metrics", timeout=10) as r:
        text = r.read().decode()
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(text) for s in family.samples}
    assert samples[("s3gw_requests_total", (("operation", "put_object"), ("status", "200")))] >= 1
    assert samples[("s3gw_backend_bytes_total", (("direction", "in"), ("location", "cloud-b")))] >= 1000
    assert samples[("s3gw_backend_bytes_total", (("direction", "out"), ("location", "cloud-b")))] >= 1000
    assert samples[("s3gw_location_up", (("location", "cloud-b"), ("type", "azure")))] == 1
    assert any(name == "s3gw_request_duration_seconds_bucket" for name, _ in samples)
    assert samples[("s3gw_multipart_uploads_open", ())] == 1

    env = {**gw.env, "PATH": "/usr/bin:/bin"}
    listing = subprocess.run([sys.executable, "-m", "gateway", "locations", "--endpoint",
                              gw.endpoint], cwd=REPO, capture_output=True, text=True, env=env,
                             timeout=30)
    assert listing.returncode == 0, listing.stderr
    assert "cloud-a" in listing.stdout and "cloud-b" in listing.stdout and "up" in listing.stdout
    check = subprocess.run([sys.executable, "-m", "gateway", "check", "cloud-b", "--endpoint",
                            gw.endpoint], cwd=REPO, capture_output=True, text=True, env=env,
                           timeout=30)
    assert check.returncode == 0 and "cloud-b" in check.stdout and "cloud-a" not in check.stdout


def test_access_log_is_json(two_clouds: tuple[Gateway, Azurite, Azurite]) -> None:
    gw, _, _ = two_clouds
    s3 = gw.client()
    s3.create_bucket(Bucket="logged", CreateBucketConfiguration={"LocationConstraint": "cloud-b"})
    s3.put_object(Bucket="logged", Key="k", Body=b"abc")
    time.sleep(0.2)
    # Access-log lines are pure JSON objects (gateway/s3/front.py access_entry).
    lines = [json.loads(line) for line in gw.log().splitlines() if line.startswith('{"time"')]
    put = next(entry for entry in lines if entry["operation"] == "put_object")
    assert put["bucket"] == "logged" and put["location"] == "cloud-b" and put["status"] == 200
    assert put["account"] == "Bart" and put["requestId"] and put["totalTimeMs"] >= 0
    assert "verySecretKey1" not in gw.log()
