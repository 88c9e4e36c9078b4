"""The job queue survives a crash: a gateway killed (SIGKILL) while it moves objects is
restarted on the same SQLite metadata, and the jobs it held run again at once (not after their
60 s leases), finishing every move."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from tests.gatewayproc import eventually, start_gateway
from tests.lifecycle.conftest import deep, new_bucket

N = 20
CONFIG = {"lifecycle": {"dayLengthSeconds": 1, "scanIntervalSeconds": 0.5},
          "jobs": {"pollSeconds": 0.2, "concurrency": 2},  # leases: the default 60 s
          "storage": {"collectInterval": 0.3}, "storageClasses": {"GLACIER": "cold"}}
LOCATIONS = {"cold": {"type": "file", "legacyAwsBehavior": False, "details": {}}}


def test_jobs_resume_after_a_crash(tmp_path: Path) -> None:
    body = b"r" * (1024 * 1024)
    with start_gateway(tmp_path, LOCATIONS, config=CONFIG) as gw:
        s3 = gw.client()
        bucket = new_bucket(s3)
        for i in range(N):
            s3.put_object(Bucket=bucket, Key=f"o{i}", Body=body)
        s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": [
            {"ID": "cold", "Status": "Enabled", "Filter": {"Prefix": ""},
             "Transitions": [{"Days": 1, "StorageClass": "GLACIER"}]}]})
        eventually(lambda: deep(gw)["jobs"]["active"] > 0, 20)
        assert gw.process is not None
        os.kill(gw.process.pid, signal.SIGKILL)
        gw.process.wait(10)
    with start_gateway(tmp_path, LOCATIONS, config=CONFIG) as gw:
        s3 = gw.client()

        def moved() -> int:
            return sum(s3.head_object(Bucket=bucket, Key=f"o{i}")["ResponseMetadata"][
                "HTTPHeaders"].get("x-amz-storage-class") == "GLACIER" for i in range(N))

        eventually(lambda: moved() == N, 20)  # well before a 60 s lease could run out
        for i in range(N):
            assert s3.get_object(Bucket=bucket, Key=f"o{i}")["Body"].read() == body
        queue = deep(gw)["jobs"]["queue"]["lifecycle.transition"]
        assert queue["running"] == 0 and queue["failed"] == 0
        gw.settle()  # the copies the crash left behind (abandoned intents) are collected
        assert "Traceback" not in gw.log()
