"""Two gateway processes on one PostgreSQL share the lifecycle job queue: every job is run by
exactly one of them (none twice, none lost), both take part, and when one is killed mid-work
its claims expire and the other finishes the work."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from typing import Any

import pytest

from tests.gatewayproc import Gateway, eventually, start_gateway
from tests.lifecycle.conftest import deep, missing, new_bucket
from tests.metadata.conftest import pg_dsn

pytestmark = pytest.mark.postgres

N = 40


@pytest.fixture(scope="module")
def pair(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
         ) -> Iterator[tuple[Gateway, Gateway]]:
    """Two gateways; the last test of this module kills the first."""
    tmp_path = tmp_path_factory.mktemp("lc-pair")
    config = {"metadata": {"backend": "postgres", "dsn": pg_dsn(request, "lifecycle_shared")},
              "lifecycle": {"dayLengthSeconds": 1, "scanIntervalSeconds": 0.3},
              "jobs": {"pollSeconds": 0.2, "concurrency": 2, "leaseSeconds": 2},
              "storage": {"collectInterval": 0.3},
              "storageClasses": {"GLACIER": "cold"}}
    locations = {"cold": {"type": "file", "legacyAwsBehavior": False, "details": {}}}
    env = {"S3DATAPATH": str(tmp_path / "shared-data")}  # both see the same file locations
    with start_gateway(tmp_path / "a", locations, config=config, env=env) as a, \
            start_gateway(tmp_path / "b", locations, config=config, env=env) as b:
        yield a, b
        for gw in (a, b):
            assert "Traceback" not in gw.log(), gw.log()


def finished(gw: Gateway) -> dict[str, dict[str, int]]:
    return deep(gw)["jobs"]["finishedHere"]


def test_two_gateways_never_run_one_job_twice(pair: tuple[Gateway, Gateway]) -> None:
    a, b = pair
    s3 = a.client()
    bucket = new_bucket(s3)
    s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": [
        {"ID": "exp", "Status": "Enabled", "Filter": {"Prefix": "exp/"},
         "Expiration": {"Days": 1}},
        {"ID": "cold", "Status": "Enabled", "Filter": {"Prefix": "cold/"},
         "Transitions": [{"Days": 1, "StorageClass": "GLACIER"}]}]})
    for i in range(N):
        s3.put_object(Bucket=bucket, Key=f"exp/{i}", Body=b"x")
        s3.put_object(Bucket=bucket, Key=f"cold/{i}", Body=b"y" * 4096)
    other = b.client()

    def all_done() -> bool:
        heads = [other.head_object(Bucket=bucket, Key=f"cold/{i}")["ResponseMetadata"]
                 for i in range(N)]
        return all(missing(other, bucket, f"exp/{i}") for i in range(N)) and all(
            h["HTTPHeaders"].get("x-amz-storage-class") == "GLACIER" for h in heads)

    eventually(all_done, 40)
    queue = deep(a)["jobs"]["queue"]
    here = [finished(a), finished(b)]
    for kind in ("lifecycle.expire", "lifecycle.transition"):
        runs = [h.get(kind, {}) for h in here]
        # Every job was completed once, by the one gateway that claimed it. (A scan may
        # enqueue a job again once the first is done, before it sees the result: that second
        # job is a job of its own, and finds nothing left to do.)
        assert sum(r.get("done", 0) for r in runs) == queue[kind]["done"] >= N, (kind, runs)
        assert all(r.get("lost", 0) == 0 for r in runs), runs
        assert queue[kind]["failed"] == 0 and queue[kind]["pending"] == 0
    assert all(sum(r.get("done", 0) for r in h.values()) > 0 for h in here), here  # both worked
    for i in range(N):
        assert other.get_object(Bucket=bucket, Key=f"cold/{i}")["Body"].read() == b"y" * 4096


def test_a_killed_gateways_claims_expire(pair: tuple[Gateway, Gateway]) -> None:
    a, b = pair
    s3 = b.client()
    bucket = new_bucket(s3)
    body = b"z" * (1024 * 1024)
    for i in range(N):
        s3.put_object(Bucket=bucket, Key=f"cold/{i}", Body=body)

    def glacier() -> int:
        return sum(s3.head_object(Bucket=bucket, Key=f"cold/{i}")["ResponseMetadata"][
            "HTTPHeaders"].get("x-amz-storage-class") == "GLACIER" for i in range(N))

    s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": [
        {"ID": "cold", "Status": "Enabled", "Filter": {"Prefix": "cold/"},
         "Transitions": [{"Days": 1, "StorageClass": "GLACIER"}]}]})
    # Kill gateway a (SIGKILL: no goodbye) while it is running transitions.
    eventually(lambda: deep(a)["jobs"]["active"] > 0 or glacier() == N, 20)
    assert a.process is not None
    os.kill(a.process.pid, signal.SIGKILL)
    a.process.wait(10)
    eventually(lambda: glacier() == N, 40)  # b alone, once a's leases (2 s) ran out
    for i in range(N):
        assert s3.get_object(Bucket=bucket, Key=f"cold/{i}")["Body"].read() == body
    queue: dict[str, Any] = deep(b)["jobs"]["queue"]["lifecycle.transition"]
    assert queue["running"] == 0 and queue["failed"] == 0 and queue["pending"] == 0
