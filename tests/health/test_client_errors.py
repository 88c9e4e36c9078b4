"""A backend's 4xx for what a request carries is the client's error, not the location's.

The aws_s3 translator raises Rejected when the backend refuses a request for its content (moto,
like AWS, refuses object tags with the reserved `aws:` prefix, which the gateway itself lets
through); the location wrapper answers 400 InvalidArgument and the location stays healthy: no
breaker trip, no s3gw_backend_errors. A backend that is really gone still trips the breaker
(3 consecutive failures) as before. Health checks run hourly here (the first one at a random
moment of the first hour), so requests are what move a location's state during a test.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from prometheus_client.parser import text_string_to_metric_families

from tests.clouds.aws_s3 import S3Emulator
from tests.gatewayproc import Gateway, start_gateway

pytestmark = pytest.mark.aws_s3

LOCATION = "cloud"


def deep(gw: Gateway) -> dict[str, Any]:
    try:
        with urllib.request.urlopen(f"{gw.endpoint}/_/healthcheck/deep", timeout=10) as r:
            return json.load(r)["locations"][LOCATION]
    except urllib.error.HTTPError as err:
        return json.load(err)["locations"][LOCATION]


def backend_errors(gw: Gateway) -> float:
    """s3gw_backend_errors_total of the location, every kind summed (absent = 0)."""
    with urllib.request.urlopen(f"{gw.endpoint}/_/metrics", timeout=10) as r:
        text = r.read().decode()
    return sum(sample.value for family in text_string_to_metric_families(text)
               for sample in family.samples
               if sample.name == "s3gw_backend_errors_total"
               and sample.labels.get("location") == LOCATION)


@pytest.fixture
def cloud(aws_s3_throwaway: Callable[[], S3Emulator],
          tmp_path: Path) -> Iterator[tuple[Gateway, S3Emulator, str, str]]:
    """A gateway with one aws_s3 location on a moto server of this test's own (to stop), and a
    bucket on it."""
    moto = aws_s3_throwaway()
    backend = moto.create_bucket()
    locations = {LOCATION: {"type": "aws_s3", "legacyAwsBehavior": False,
                            "details": moto.details(backend)}}
    config = {"healthChecks": {"interval": 3600, "timeout": 2},
              "storage": {"collectInterval": 0.2}}
    with start_gateway(tmp_path / "gw", locations, config=config) as gw:
        assert deep(gw)["state"] == "up"  # the flight check passed
        gw.client().create_bucket(Bucket="tenant",
                                  CreateBucketConfiguration={"LocationConstraint": LOCATION})
        yield gw, moto, backend, "tenant"


def test_backend_4xx_answers_400_and_keeps_the_location_up(
        cloud: tuple[Gateway, S3Emulator, str, str]) -> None:
    gw, moto, backend, bucket = cloud
    s3 = gw.client()
    s3.put_object(Bucket=bucket, Key="before", Body=b"fine")
    errors_before = backend_errors(gw)

    for i in range(5):  # more than the breaker's 3 consecutive failures
        with pytest.raises(ClientError) as exc:
            s3.put_object(Bucket=bucket, Key=f"refused-{i}", Body=b"x" * 100,
                          Tagging=f"aws:reserved{i}=1")
        error = exc.value.response["Error"]
        assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400, error
        assert error["Code"] == "InvalidArgument", error
        assert LOCATION in error["Message"] and "refused" in error["Message"]

    # The location is still up, and no backend error was counted (the metric is the sharper
    # witness: the collector's calls between requests also reset the breaker's streak).
    report = deep(gw)
    assert report["state"] == "up", report
    assert backend_errors(gw) == errors_before
    assert "marked down" not in gw.log()
    # Nothing of the refused writes is visible, through the gateway or on the cloud.
    listed = s3.list_objects_v2(Bucket=bucket).get("Contents", [])
    assert [o["Key"] for o in listed] == ["before"]
    gw.settle()
    native = moto.boto().list_objects_v2(Bucket=backend, Prefix=f"{bucket}/refused-")
    assert native.get("Contents", []) == []

    # A following good PUT works, and reads back.
    s3.put_object(Bucket=bucket, Key="after", Body=b"still fine", Tagging="team=storage")
    assert s3.get_object(Bucket=bucket, Key="after")["Body"].read() == b"still fine"
    assert s3.get_object(Bucket=bucket, Key="before")["Body"].read() == b"fine"
    assert deep(gw)["state"] == "up"
    assert backend_errors(gw) == errors_before


def test_a_stopped_backend_still_trips_the_breaker(
        cloud: tuple[Gateway, S3Emulator, str, str]) -> None:
    gw, moto, _backend, bucket = cloud
    s3 = gw.client()
    s3.put_object(Bucket=bucket, Key="before", Body=b"fine")
    errors_before = backend_errors(gw)

    moto.stop()
    for i in range(3):  # Location.FAILURES_TO_TRIP
        with pytest.raises(ClientError) as exc:
            s3.put_object(Bucket=bucket, Key=f"lost-{i}", Body=b"x" * 100)
        error = exc.value.response["Error"]
        assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503, error
        assert error["Code"] == "ServiceUnavailable" and LOCATION in error["Message"]

    # Down by the breaker (no scheduled check in sight), errors counted. (The collector,
    # removing what the failed PUTs may have left, fails too and may count as well.)
    report = deep(gw)
    assert report["state"] == "down", report
    assert "3 consecutive request failures" in report["message"]
    errors_down = backend_errors(gw)
    assert errors_down >= errors_before + 3
    # Now requests fail fast, without trying the backend (and without counting again).
    started = time.perf_counter()
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=bucket, Key="before")
    assert time.perf_counter() - started < 0.5
    assert exc.value.response["Error"]["Code"] == "ServiceUnavailable"
    assert backend_errors(gw) == errors_down
    # Metadata-only requests keep working.
    assert s3.head_object(Bucket=bucket, Key="before")["ContentLength"] == 4
