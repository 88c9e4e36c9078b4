"""Lifecycle rules executed end to end, with a one-second day (lifecycle.dayLengthSeconds):
expiration of current versions (a delete marker in a versioning bucket), of noncurrent ones
(NoncurrentDays, NewerNoncurrentVersions), of expired delete markers, abort of stale multipart
uploads, filters, progress in /metrics and the deep health JSON, and the one-pass CLI."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from typing import Any

from tests.gatewayproc import REPO, Gateway, eventually, start_gateway
from tests.lifecycle.conftest import COLD, deep, metric, missing, new_bucket

WAIT = 20.0  # a day is 1 s and scans run every 0.5 s: everything due happens within a few s


def lifecycle(s3: Any, bucket: str, *rules: dict[str, Any]) -> None:
    s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={
        "Rules": [{"Status": "Enabled", **r} for r in rules]})


def versions_of(s3: Any, bucket: str) -> list[tuple[str, str, bool]]:
    """(key, version id, is a delete marker), newest first per key."""
    listing = s3.list_object_versions(Bucket=bucket)
    entries = [(v["Key"], v["VersionId"], False, v["LastModified"])
               for v in listing.get("Versions", [])]
    entries += [(m["Key"], m["VersionId"], True, m["LastModified"])
                for m in listing.get("DeleteMarkers", [])]
    entries.sort(key=lambda e: (e[0], -e[3].timestamp()))
    return [e[:3] for e in entries]


def test_current_versions_expire_and_progress_is_reported(fast: Gateway) -> None:
    s3 = fast.client()
    bucket = new_bucket(s3)
    lifecycle(s3, bucket, {"ID": "tmp", "Filter": {"Prefix": "tmp/"}, "Expiration": {"Days": 1}},
              {"ID": "tagged", "Filter": {"And": {"Prefix": "t/", "Tags": [
                  {"Key": "ttl", "Value": "short"}]}}, "Expiration": {"Days": 1}},
              {"ID": "big", "Filter": {"ObjectSizeGreaterThan": 100},
               "Expiration": {"Days": 1}})
    s3.put_object(Bucket=bucket, Key="tmp/a", Body=b"a")
    s3.put_object(Bucket=bucket, Key="t/tagged", Body=b"b", Tagging="ttl=short")
    s3.put_object(Bucket=bucket, Key="t/untagged", Body=b"c", Tagging="ttl=long")
    s3.put_object(Bucket=bucket, Key="keep/big", Body=b"x" * 200)
    s3.put_object(Bucket=bucket, Key="keep/small", Body=b"x" * 50)
    started = time.time()
    eventually(lambda: all(missing(s3, bucket, k) for k in ("tmp/a", "t/tagged", "keep/big")),
               WAIT)
    assert time.time() - started >= 0.5  # not before its day had passed
    time.sleep(1.5)  # three more scans: what no rule selects stays
    for key in ("t/untagged", "keep/small"):
        assert s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    assert metric(fast, "s3gw_jobs_finished_total", kind="lifecycle.expire", outcome="done") >= 3
    assert metric(fast, "s3gw_job_latency_seconds_count", kind="lifecycle.expire") >= 3
    assert metric(fast, "s3gw_jobs", kind="lifecycle.scan", state="pending") >= 1  # next scan
    health = deep(fast)
    assert health["jobs"]["queue"]["lifecycle.expire"]["done"] >= 3
    assert health["jobs"]["queue"]["lifecycle.expire"]["failed"] == 0
    assert health["lifecycle"]["dayLengthSeconds"] == 1.0


def test_versioning_buckets_get_markers_and_lose_old_versions(fast: Gateway) -> None:
    s3 = fast.client()
    # Current expiration in a versioning bucket writes a delete marker; the bytes stay.
    marked = new_bucket(s3, versioned=True)
    lifecycle(s3, marked, {"ID": "cur", "Filter": {"Prefix": ""}, "Expiration": {"Days": 1}})
    v1 = s3.put_object(Bucket=marked, Key="k", Body=b"one")["VersionId"]
    # Noncurrent versions go NoncurrentDays after they became noncurrent, but the newest
    # NewerNoncurrentVersions of them stay.
    pruned = new_bucket(s3, versioned=True)
    lifecycle(s3, pruned, {"ID": "old", "Filter": {"Prefix": ""},
                           "NoncurrentVersionExpiration": {"NoncurrentDays": 1,
                                                           "NewerNoncurrentVersions": 1}})
    ids = [s3.put_object(Bucket=pruned, Key="k", Body=f"v{i}".encode())["VersionId"]
           for i in range(4)]
    # A delete marker left alone (its versions expired) is removed too.
    cleaned = new_bucket(s3, versioned=True)
    lifecycle(s3, cleaned, {"ID": "nc", "Filter": {"Prefix": ""},
                            "NoncurrentVersionExpiration": {"NoncurrentDays": 1}},
              {"ID": "dm", "Filter": {"Prefix": ""},
               "Expiration": {"ExpiredObjectDeleteMarker": True}})
    s3.put_object(Bucket=cleaned, Key="gone", Body=b"x")
    s3.delete_object(Bucket=cleaned, Key="gone")
    s3.put_object(Bucket=cleaned, Key="live", Body=b"y")

    eventually(lambda: [e[2] for e in versions_of(s3, marked)] == [True, False], WAIT)
    assert versions_of(s3, marked)[1][1] == v1
    assert s3.get_object(Bucket=marked, Key="k", VersionId=v1)["Body"].read() == b"one"
    eventually(lambda: [e[1] for e in versions_of(s3, pruned)] == [ids[3], ids[2]], WAIT)
    eventually(lambda: [e[0] for e in versions_of(s3, cleaned)] == ["live"], WAIT)
    time.sleep(1.5)  # later scans change nothing more
    assert len(versions_of(s3, marked)) == 2  # one marker: expiring a marker is not repeated
    assert [e[1] for e in versions_of(s3, pruned)] == [ids[3], ids[2]]
    assert s3.get_object(Bucket=pruned, Key="k")["Body"].read() == b"v3"
    fast.settle()  # the removed versions' bytes are collected
    assert deep(fast)["jobs"]["queue"]["lifecycle.delete-version"]["failed"] == 0


def test_stale_multipart_uploads_are_aborted(fast: Gateway) -> None:
    s3 = fast.client()
    bucket = new_bucket(s3)
    lifecycle(s3, bucket, {"ID": "mpu", "Filter": {"Prefix": "mpu/"},
                           "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1}})
    stale = s3.create_multipart_upload(Bucket=bucket, Key="mpu/a")["UploadId"]
    s3.upload_part(Bucket=bucket, Key="mpu/a", UploadId=stale, PartNumber=1, Body=b"p" * 1000)
    kept = s3.create_multipart_upload(Bucket=bucket, Key="other/b")["UploadId"]

    def open_uploads() -> list[str]:
        return [u["UploadId"] for u in s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])]

    eventually(lambda: open_uploads() == [kept], WAIT)
    fast.settle()  # the aborted upload's part is collected
    s3.abort_multipart_upload(Bucket=bucket, Key="other/b", UploadId=kept)


def test_cli_runs_one_pass_now(tmp_path: Any) -> None:
    # Scans every 10^6 s: only the PUT's first scan and the CLI's pass ever run.
    config = {"lifecycle": {"dayLengthSeconds": 1, "scanIntervalSeconds": 1_000_000},
              "jobs": {"pollSeconds": 0.2}}
    with start_gateway(tmp_path / "gw", COLD, config=config) as gw:
        s3 = gw.client()
        bucket = new_bucket(s3)
        lifecycle(s3, bucket, {"ID": "all", "Filter": {"Prefix": ""},
                               "Expiration": {"Days": 1}})
        for i in range(3):
            s3.put_object(Bucket=bucket, Key=f"k{i}", Body=b"x")
        time.sleep(2.2)  # due now, but no scan is coming
        assert not missing(s3, bucket, "k0")
        env = {**os.environ, **gw.env}
        done = subprocess.run([sys.executable, "-m", "gateway", "lifecycle", "run", bucket,
                               "--endpoint", gw.endpoint], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert f"lifecycle {bucket}: scanned 3 versions" in done.stdout
        assert "expire 3" in done.stdout
        assert all(missing(s3, bucket, f"k{i}") for i in range(3))  # done when it returns
        bad = subprocess.run([sys.executable, "-m", "gateway", "lifecycle", "run",
                              new_bucket(s3), "--endpoint", gw.endpoint], cwd=REPO, env=env,
                             capture_output=True, text=True, timeout=60)
        assert bad.returncode == 1 and "NoSuchLifecycleConfiguration" in bad.stderr
        assert "Traceback" not in gw.log()


def test_object_lock_keeps_protected_versions(fast: Gateway) -> None:
    s3 = fast.client()
    bucket = new_bucket(s3) + "-lock"
    s3.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    held = s3.put_object(Bucket=bucket, Key="k", Body=b"held",
                         ObjectLockLegalHoldStatus="ON")["VersionId"]
    free = s3.put_object(Bucket=bucket, Key="free", Body=b"old")["VersionId"]
    for key in ("k", "free"):
        s3.put_object(Bucket=bucket, Key=key, Body=b"newer")
    lifecycle(s3, bucket, {"ID": "nc", "Filter": {"Prefix": ""},
                           "NoncurrentVersionExpiration": {"NoncurrentDays": 1}})
    eventually(lambda: free not in [e[1] for e in versions_of(s3, bucket)], WAIT)
    time.sleep(1.5)  # more scans: the held version stays, and no job fails over it
    assert held in [e[1] for e in versions_of(s3, bucket)]
    assert s3.get_object(Bucket=bucket, Key="k", VersionId=held)["Body"].read() == b"held"
    assert deep(fast)["jobs"]["queue"]["lifecycle.delete-version"]["failed"] == 0
    s3.put_object_legal_hold(Bucket=bucket, Key="k", VersionId=held,
                             LegalHold={"Status": "OFF"})
    eventually(lambda: held not in [e[1] for e in versions_of(s3, bucket)], WAIT)
