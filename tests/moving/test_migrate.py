"""Online bucket migration (`python -m gateway migrate`), end to end with real gateway processes.

- file -> azure -> gcp (TEST_CLOUDS=azure,gcp): a bucket of MIGRATE_OBJECTS versions (null
  versions, versions, a delete marker, a multipart object, 8 MiB objects) migrated twice while
  reader threads GET/HEAD/LIST it and a writer overwrites, deletes and adds the whole time:
  zero errors, every acknowledged byte readable afterwards (every version), nothing left on the
  source, `fsck` clean. Prints the migration's MB/s and objects/s.
- file -> file (no cloud needed): a gateway killed mid-migration resumes after a restart;
  --cancel; --status, /metrics and the deep health JSON; header-placed objects stay; a
  multipart upload created before the switch is moved when completed; --keep-source.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.gatewayproc import REPO, Gateway, eventually, start_gateway
from tests.races.scenarios import fsck

MIGRATE_OBJECTS = int(os.environ.get("MIGRATE_OBJECTS", "1000"))
MiB = 1024 * 1024
FAST = {"jobs": {"pollSeconds": 0.2, "concurrency": 8},
        "storage": {"collectInterval": 0.3, "readGraceSeconds": 2, "durability": "relaxed"}}


# --- helpers ---------------------------------------------------------------------------------
def migrate(gw: Gateway, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """`python -m gateway migrate ARGS` against `gw`, with its environment."""
    return subprocess.run([sys.executable, "-m", "gateway", "migrate", *args,
                           "--endpoint", gw.endpoint, "--interval", "0.3"],
                          env={**os.environ, **gw.env}, cwd=REPO, capture_output=True,
                          text=True, timeout=timeout)


def status(gw: Gateway, bucket: str) -> dict[str, Any]:
    answer = requests.get(f"{gw.endpoint}/_/migrate", params={"bucket": bucket}, timeout=30)
    assert answer.status_code == 200, answer.text
    return answer.json()["migrations"][0]


def placements(gw: Gateway, bucket: str) -> Counter[str]:
    """Where the bucket's object versions' bytes are: location -> versions (from the
    gateway's own SQLite metadata, read-only)."""
    uri = f"file:{gw.workdir / 'metadata' / 'metadata.sqlite3'}?mode=ro"
    with sqlite3.connect(uri, uri=True, timeout=10) as db:
        rows = db.execute("SELECT location, pieces FROM objects WHERE bucket=? AND "
                          "delete_marker=0", (bucket,)).fetchall()
    found: Counter[str] = Counter()
    for location, pieces in rows:
        where = {p["location"] for p in json.loads(pieces)} | {location}
        found[location if len(where) == 1 else "mixed:" + ",".join(sorted(where))] += 1
    return found


def pieces_of(gw: Gateway, bucket: str, key: str) -> list[str]:
    """The locations of the pieces of `key`'s versions (read-only SQLite, as placements)."""
    uri = f"file:{gw.workdir / 'metadata' / 'metadata.sqlite3'}?mode=ro"
    with sqlite3.connect(uri, uri=True, timeout=10) as db:
        rows = db.execute("SELECT pieces FROM objects WHERE bucket=? AND key=?",
                          (bucket, key)).fetchall()
    return [p["location"] for (pieces,) in rows for p in json.loads(pieces)]


def md5(body: bytes) -> str:
    return hashlib.md5(body).hexdigest()


class Workload:
    """A bucket's expected content, kept while readers and a writer use it.

    Set up: null versions under plain/ (unversioned writes), then versioning Enabled for
    two versions of each ver/ key, a delete marker, a multipart object and 8 MiB objects,
    then versioning Suspended, so the writer's PUTs and DELETEs replace null versions
    (the relocation of a null version being replaced must lose its swap, nothing else)."""

    def __init__(self, gw: Gateway, bucket: str, count: int, big: int) -> None:
        self.gw, self.bucket = gw, bucket
        self.s3 = gw.client()
        self.lock = threading.Lock()
        self.expected: dict[tuple[str, str], bytes] = {}  # (key, version id) -> body
        self.gone: set[str] = set()  # keys whose current version is a delete marker
        self.failures: list[str] = []
        self.reads = self.writes = 0
        self.stop = threading.Event()
        self.threads: list[threading.Thread] = []
        rng = random.Random(17)
        s3 = self.s3
        s3.create_bucket(Bucket=bucket)
        plain = count // 2
        versioned = max(1, (count - plain) // 2)

        def put(key: str, size: int) -> tuple[tuple[str, str], bytes]:
            body = rng.randbytes(size) if size < 4096 else os.urandom(size)
            answer = s3.put_object(Bucket=bucket, Key=key, Body=body)
            return (key, answer.get("VersionId", "null")), body

        with ThreadPoolExecutor(8) as pool:
            for ref, body in pool.map(lambda i: put(f"plain/{i:04d}", 100 + 37 * i % 3000),
                                      range(plain)):
                self.expected[ref] = body
            s3.put_bucket_versioning(Bucket=bucket,
                                     VersioningConfiguration={"Status": "Enabled"})
            for round_ in range(2):
                for ref, body in pool.map(
                        lambda i, r=round_: put(f"ver/{i:04d}", 200 + 53 * (i + r) % 2000),
                        range(versioned)):
                    self.expected[ref] = body
            for ref, body in pool.map(lambda i: put(f"big/8m-{i}", 8 * MiB), range(big)):
                self.expected[ref] = body
        s3.delete_object(Bucket=bucket, Key="ver/0000")  # a delete marker (nothing to move)
        self.gone.add("ver/0000")
        self.multipart("big/multipart")
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Suspended"})
        # The writer's keys; readers read only the others (their bytes never change).
        self.plain = plain
        self.ver_listed = min(50, versioned - 1)  # ver/0000's current is a delete marker
        self.writer_keys = [f"plain/{i:04d}" for i in range(0, plain, 5)]
        self.stable = sorted(ref for ref in self.expected
                             if ref[0] not in self.writer_keys)
        self.versions = len(self.expected)
        self.bytes = sum(len(b) for b in self.expected.values())

    def multipart(self, key: str) -> None:
        """A two-part upload (5 MiB + 2 bytes): on file two pieces, on a cloud one object."""
        s3 = self.s3
        part = os.urandom(5 * MiB)
        upload = s3.create_multipart_upload(Bucket=self.bucket, Key=key)["UploadId"]
        etags = [s3.upload_part(Bucket=self.bucket, Key=key, UploadId=upload, PartNumber=n,
                                Body=part + bytes([n]) * n)["ETag"] for n in (1, 2)]
        answer = s3.complete_multipart_upload(
            Bucket=self.bucket, Key=key, UploadId=upload,
            MultipartUpload={"Parts": [{"PartNumber": n, "ETag": e}
                                       for n, e in zip((1, 2), etags, strict=True)]})
        with self.lock:
            self.expected[(key, answer.get("VersionId", "null"))] = \
                part + b"\x01" + part + b"\x02\x02"

    # --- the load ---------------------------------------------------------------------------
    def fail(self, what: str, exc: BaseException | str) -> None:
        text = exc if isinstance(exc, str) else f"{type(exc).__name__}: {exc}"
        with self.lock:
            self.failures.append(f"{what}: {text}")

    def reader(self, n: int) -> None:
        s3 = self.gw.client()
        rng = random.Random(n)
        while not self.stop.is_set():
            key, vid = rng.choice(self.stable)
            body = self.expected[(key, vid)]
            try:
                choice = rng.random()
                if choice < 0.1:
                    page = s3.list_objects_v2(Bucket=self.bucket, Prefix="ver/", MaxKeys=50)
                    if len(page.get("Contents", [])) != self.ver_listed:
                        self.fail("list", f"{len(page.get('Contents', []))} keys")
                elif choice < 0.2:
                    head = s3.head_object(Bucket=self.bucket, Key=key, VersionId=vid)
                    if head["ContentLength"] != len(body):
                        self.fail(f"head {key}", f"length {head['ContentLength']}")
                elif choice < 0.3 and len(body) > 2000:
                    got = s3.get_object(Bucket=self.bucket, Key=key, VersionId=vid,
                                        Range="bytes=1000-1999")["Body"].read()
                    if got != body[1000:2000]:
                        self.fail(f"range {key}", "wrong bytes")
                else:
                    got = s3.get_object(Bucket=self.bucket, Key=key,
                                        VersionId=vid)["Body"].read()
                    if md5(got) != md5(body):
                        self.fail(f"get {key} {vid}", f"wrong bytes ({len(got)})")
            except Exception as exc:  # every failure counts
                self.fail(f"read {key}", exc)
            self.reads += 1

    def writer(self) -> None:
        """Overwrite, delete and re-create the writer's keys (null versions: each replaces
        the one a relocation may be copying), add new keys, and read each write back at once
        (no stale read)."""
        s3 = self.gw.client()
        rng = random.Random(99)
        n = 0
        while not self.stop.is_set():
            n += 1
            key = rng.choice(self.writer_keys) if n % 4 else f"new/{n:05d}"
            try:
                if n % 7 == 0 and key.startswith("plain/"):
                    s3.delete_object(Bucket=self.bucket, Key=key)  # a null delete marker
                    with self.lock:
                        self.expected.pop((key, "null"), None)
                        self.gone.add(key)
                    try:
                        s3.head_object(Bucket=self.bucket, Key=key)
                        self.fail(f"delete {key}", "still readable after its delete")
                    except s3.exceptions.ClientError as err:
                        if err.response["Error"]["Code"] not in ("404", "NoSuchKey"):
                            raise
                else:
                    body = f"{key} write {n} ".encode() * rng.randint(1, 300)
                    s3.put_object(Bucket=self.bucket, Key=key, Body=body)
                    with self.lock:
                        self.expected[(key, "null")] = body
                        self.gone.discard(key)
                    got = s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()
                    if got != body:
                        self.fail(f"read-after-write {key}", f"stale ({len(got)} bytes)")
            except Exception as exc:
                self.fail(f"write {key}", exc)
            self.writes += 1
            time.sleep(0.005)

    def __enter__(self) -> Workload:
        self.stop.clear()
        self.threads = [threading.Thread(target=self.reader, args=(i,), daemon=True)
                        for i in range(2)]
        self.threads.append(threading.Thread(target=self.writer, daemon=True))
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(60)

    # --- afterwards ---------------------------------------------------------------------------
    def verify(self) -> None:
        """Every version acknowledged is there with its bytes, and nothing else is."""
        s3 = self.s3

        def check(ref: tuple[str, str]) -> str | None:
            key, vid = ref
            got = s3.get_object(Bucket=self.bucket, Key=key, VersionId=vid)["Body"].read()
            return None if got == self.expected[ref] else f"{key} {vid}: wrong bytes"

        with ThreadPoolExecutor(8) as pool:
            wrong = [w for w in pool.map(check, sorted(self.expected)) if w]
        assert wrong == [], wrong[:5]
        listed: set[tuple[str, str]] = set()
        markers: set[str] = set()
        for page in s3.get_paginator("list_object_versions").paginate(Bucket=self.bucket):
            listed |= {(v["Key"], v["VersionId"]) for v in page.get("Versions", [])}
            markers |= {m["Key"] for m in page.get("DeleteMarkers", []) if m["IsLatest"]}
        assert listed == set(self.expected)
        assert markers == self.gone


def settled_clean(gw: Gateway) -> None:
    gw.settle(30)
    report = fsck(gw.env)
    assert report["exit"] == 0, report


# --- file -> azure -> gcp under load -------------------------------------------------------------
def cloud(request: pytest.FixtureRequest, name: str) -> Any:
    try:
        return request.getfixturevalue(name)
    except pytest.FixtureLookupError:
        pytest.skip(f"{name} is not loaded (TEST_CLOUDS)")


@pytest.fixture(scope="module")
def clouds(request: pytest.FixtureRequest) -> dict[str, Any]:
    azurite, gcs = cloud(request, "azurite"), cloud(request, "gcs_emulator")
    return {"azurite": azurite, "container": asyncio.run(azurite.create_container()),
            "gcs": gcs, "gcs_bucket": gcs.create_bucket()}


@pytest.fixture(scope="module")
def clouded(clouds: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[Gateway]:
    locations = {
        "azure-dst": {"type": "azure", "legacyAwsBehavior": False,
                      "details": clouds["azurite"].details(clouds["container"])},
        "gcp-dst": {"type": "gcp", "legacyAwsBehavior": False,
                    "details": {"bucketName": clouds["gcs_bucket"], "bucketMatch": False,
                                "gcpEndpoint": clouds["gcs"].url}},
    }
    with start_gateway(tmp_path_factory.mktemp("migrate-clouds"), locations, config=FAST,
                       timeout=40) as gw:
        yield gw
        assert "Traceback" not in gw.log(), gw.log()[-5000:]


def azure_blobs(clouds: dict[str, Any], prefix: str) -> list[str]:
    async def names() -> list[str]:
        async with clouds["azurite"].container_client(clouds["container"]) as client:
            return [b.name async for b in client.list_blobs(name_starts_with=prefix)]
    return asyncio.run(names())


def gcs_objects(clouds: dict[str, Any], prefix: str) -> list[str]:
    url = (f"{clouds['gcs'].url}/storage/v1/b/{clouds['gcs_bucket']}/o?prefix="
           + urllib.parse.quote(prefix))
    with urllib.request.urlopen(url, timeout=10) as response:
        return [item["name"] for item in json.load(response).get("items", [])]


def test_file_to_azure_to_gcp_while_in_use(clouded: Gateway, clouds: dict[str, Any]) -> None:
    bucket = f"mig-{uuid.uuid4().hex[:10]}"
    load = Workload(clouded, bucket, MIGRATE_OBJECTS, big=3)
    assert placements(clouded, bucket) == {"us-east-1": load.versions}
    report = []
    for source, target in (("us-east-1", "azure-dst"), ("azure-dst", "gcp-dst")):
        with load:
            time.sleep(0.3)  # the load runs before, during and after the migration
            started = time.monotonic()
            run = migrate(clouded, bucket, "--to", target)
            wall = time.monotonic() - started
            time.sleep(0.3)
        assert run.returncode == 0, run.stdout + run.stderr
        assert load.failures == [], load.failures[:10]
        assert load.reads > 50 and load.writes > 20
        last = run.stdout.strip().splitlines()[-1]
        assert f"{source} -> {target} done" in last, run.stdout
        final = status(clouded, bucket)
        assert final["state"] == "done" and final["objects"]["done"] == \
            final["objects"]["total"] >= load.versions - len(load.writer_keys)
        assert final["bytes"]["total"] >= load.bytes - 10 * MiB
        report.append(f"{source} -> {target}: {final['objects']['total']} versions, "
                      f"{final['bytes']['total'] / MiB:.1f} MiB in {final['seconds']:.1f}s "
                      f"({final['MBps']} MB/s, "
                      f"{final['objects']['total'] / final['seconds']:.0f} versions/s; "
                      f"command {wall:.1f}s), {load.reads} reads + {load.writes} writes "
                      "meanwhile, 0 failed")
        # Everything is on the target now, the source copies are collected, fsck is clean.
        assert set(placements(clouded, bucket)) == {target}
        settled_clean(clouded)
        load.verify()
        if target == "azure-dst":  # a multipart object assembled on the cloud: one piece
            load.multipart("big/mpu-on-azure")
            assert pieces_of(clouded, bucket, "big/mpu-on-azure") == ["azure-dst"]
    assert pieces_of(clouded, bucket, "big/mpu-on-azure") == ["gcp-dst"]
    assert pieces_of(clouded, bucket, "big/multipart") == ["gcp-dst", "gcp-dst"]  # file's 2
    assert azure_blobs(clouds, f"{bucket}/") == []
    assert len(gcs_objects(clouds, f"{bucket}/")) >= load.versions
    assert clouded.data_files() == []  # nothing left on the file location
    # Part boundaries survive the moves: a partNumber GET reads exactly that part.
    mpu = next(ref for ref in load.expected if ref[0] == "big/multipart")
    second = load.s3.get_object(Bucket=bucket, Key="big/multipart", VersionId=mpu[1],
                                PartNumber=2)
    assert second["Body"].read() == load.expected[mpu][5 * MiB + 1:]
    lost = sum(float(line.split()[-1]) for line in requests.get(
        f"{clouded.endpoint}/_/metrics", timeout=10).text.splitlines()
        if line.startswith(f's3gw_migration_swaps_lost_total{{bucket="{bucket}"'))
    print("\nMIGRATION: " + "; ".join(report) + f"; {lost:.0f} copies lost their swap to a "
          "concurrent overwrite/delete (garbage, nothing else changed)")


# --- file -> file: restart, cancel, status, placement rules --------------------------------------
@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    workdir = tmp_path_factory.mktemp("migrate-local")
    # One move at a time: a migration of a few hundred objects lasts long enough to cancel.
    config = {**FAST, "jobs": {"pollSeconds": 0.2, "concurrency": 1}}
    with start_gateway(workdir, local_locations(workdir), config=config) as gw:
        yield gw
        assert "Traceback" not in gw.log(), gw.log()[-5000:]


def local_locations(workdir: Path) -> dict[str, Any]:
    return {name: {"type": "file", "legacyAwsBehavior": False, "selectable": True,
                   "details": {"dataPath": str(workdir / name)}}
            for name in ("file2", "file3")}


def small_bucket(gw: Gateway, count: int, versioned: bool = False) -> tuple[str, dict[str, bytes]]:
    s3 = gw.client()
    bucket = f"mig-{uuid.uuid4().hex[:10]}"
    s3.create_bucket(Bucket=bucket)
    if versioned:
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    bodies = {f"k/{i:04d}": os.urandom(50 + i) for i in range(count)}
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda kv: s3.put_object(Bucket=bucket, Key=kv[0], Body=kv[1]),
                      bodies.items()))
    return bucket, bodies


def test_status_metrics_health_and_placement_rules(local: Gateway) -> None:
    s3 = local.client()
    bucket, bodies = small_bucket(local, 40)
    # Placed by header on file2 on purpose: stays there.
    s3.put_object(Bucket=bucket, Key="pinned", Body=b"here",
                  Metadata={"scal-location-constraint": "file2"})
    # An upload created before the switch, completed after the migration is done.
    upload = s3.create_multipart_upload(Bucket=bucket, Key="late")["UploadId"]
    etag = s3.upload_part(Bucket=bucket, Key="late", UploadId=upload, PartNumber=1,
                          Body=b"late part")["ETag"]
    none = migrate(local, "--status", bucket)
    assert none.returncode == 1 and "never migrated" in none.stderr
    run = migrate(local, bucket, "--to", "file3")
    assert run.returncode == 0, run.stderr
    assert "us-east-1 -> file3 done: 40/40 objects" in run.stdout, run.stdout
    assert placements(local, bucket) == {"file3": 40, "file2": 1}
    # New writes go to the target: a PUT, a copy, a multipart upload created now.
    s3.put_object(Bucket=bucket, Key="after", Body=b"new")
    s3.copy_object(Bucket=bucket, Key="copied", CopySource={"Bucket": bucket, "Key": "k/0001"})
    new = s3.create_multipart_upload(Bucket=bucket, Key="mpu-after")["UploadId"]
    tag = s3.upload_part(Bucket=bucket, Key="mpu-after", UploadId=new, PartNumber=1,
                         Body=b"x")["ETag"]
    s3.complete_multipart_upload(Bucket=bucket, Key="mpu-after", UploadId=new, MultipartUpload={
        "Parts": [{"PartNumber": 1, "ETag": tag}]})
    s3.complete_multipart_upload(Bucket=bucket, Key="late", UploadId=upload, MultipartUpload={
        "Parts": [{"PartNumber": 1, "ETag": etag}]})
    # The late upload was placed on the source before the switch: it is moved after all.
    eventually(lambda: placements(local, bucket) == {"file3": 44, "file2": 1}, 15)
    assert s3.get_object(Bucket=bucket, Key="late")["Body"].read() == b"late part"
    assert s3.get_bucket_location(Bucket=bucket)["LocationConstraint"] == "file3"
    # --status (text and JSON), /metrics, the deep health JSON.
    text = migrate(local, "--status", bucket)
    assert text.returncode == 0 and f"migrate {bucket}: us-east-1 -> file3 done: 40/40" \
        in text.stdout, text.stdout
    listed = json.loads(migrate(local, "--status", "--json").stdout)
    mine = next(m for m in listed if m["bucket"] == bucket)
    assert mine["state"] == "done" and mine["source"] == "delete" and mine["etaSeconds"] == 0
    assert mine["bytes"]["done"] == mine["bytes"]["total"] == sum(map(len, bodies.values()))
    metrics = requests.get(f"{local.endpoint}/_/metrics", timeout=10).text
    assert f's3gw_migration_objects{{bucket="{bucket}",kind="total"}} 40.0' in metrics
    assert f's3gw_migration_running{{bucket="{bucket}"}} 0.0' in metrics
    deep = requests.get(f"{local.endpoint}/_/healthcheck/deep", timeout=10).json()
    assert any(m["bucket"] == bucket and m["state"] == "done" for m in deep["migrations"])
    for key, body in bodies.items():
        assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == body
    # Refusals: an unknown location, an unknown bucket, a second start while copying.
    bad = migrate(local, bucket, "--to", "nowhere")
    assert bad.returncode == 1 and "nowhere" in bad.stderr
    assert migrate(local, "no-such-bucket-x", "--to", "file2").returncode == 1
    settled_clean(local)


def test_cancel_stops_and_restores_the_location(local: Gateway) -> None:
    s3 = local.client()
    bucket, bodies = small_bucket(local, 300)
    started = migrate(local, bucket, "--to", "file2", "--detach")
    assert started.returncode == 0 and "copying" in started.stdout, started.stdout
    again = requests.post(f"{local.endpoint}/_/migrate/start",
                          params={"bucket": bucket, "to": "file3"}, timeout=30)
    assert again.status_code == 409 and "already being migrated" in again.json()["message"]
    eventually(lambda: status(local, bucket)["objects"]["done"] > 0, 20)
    cancelled = requests.post(f"{local.endpoint}/_/migrate/cancel", params={"bucket": bucket},
                              timeout=30)
    assert cancelled.status_code == 200 and cancelled.json()["state"] == "cancelled"
    assert 0 < cancelled.json()["objects"]["done"] < 300
    assert s3.get_bucket_location(Bucket=bucket)["LocationConstraint"] in (None, "",
                                                                           "us-east-1")
    time.sleep(0.5)  # moves already running finish; queued ones do nothing
    frozen = placements(local, bucket)
    time.sleep(0.5)
    assert placements(local, bucket) == frozen
    assert frozen["file2"] > 0 and frozen["us-east-1"] > 0 and sum(frozen.values()) == 300
    s3.put_object(Bucket=bucket, Key="after-cancel", Body=b"back home")
    assert placements(local, bucket)["us-east-1"] == frozen.get("us-east-1", 0) + 1
    nothing = migrate(local, "--cancel", bucket)  # nothing running now
    assert nothing.returncode == 1 and "no migration running" in nothing.stderr
    for key, body in bodies.items():
        assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == body
    assert status(local, bucket)["state"] == "cancelled"
    # A new migration picks up the rest, wherever it is.
    done = migrate(local, bucket, "--to", "file3")
    assert done.returncode == 0, done.stdout + done.stderr
    assert placements(local, bucket) == {"file3": 301}
    settled_clean(local)


def test_keep_source(tmp_path: Path) -> None:
    with start_gateway(tmp_path, local_locations(tmp_path), config=FAST) as gw:
        bucket, bodies = small_bucket(gw, 5)
        run = migrate(gw, bucket, "--to", "file2", "--keep-source")
        assert run.returncode == 0 and "source copies kept" in run.stdout, run.stdout
        gw.settle()
        assert placements(gw, bucket) == {"file2": 5}
        kept = {p.read_bytes() for p in gw.data_files()}
        assert set(bodies.values()) <= kept  # the source copies are still on file
        s3 = gw.client()
        for key, body in bodies.items():
            assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == body
        # fsck sees them for what they are now: bytes nothing references.
        report = fsck(gw.env)
        source = next(loc for loc in report["locations"] if loc["name"] == "us-east-1")
        assert len(source["unreferenced"]) == 5 and not source["missing"], report


def test_restart_mid_migration_resumes(tmp_path: Path) -> None:
    config = {**FAST, "jobs": {"pollSeconds": 0.2, "concurrency": 1}}
    with start_gateway(tmp_path, local_locations(tmp_path), config=config) as gw:
        bucket, bodies = small_bucket(gw, 300, versioned=True)
        run = migrate(gw, bucket, "--to", "file2", "--detach")
        assert run.returncode == 0, run.stderr
        eventually(lambda: status(gw, bucket)["objects"]["done"] > 0, 20)
        assert gw.process is not None
        gw.process.send_signal(signal.SIGKILL)  # a crash, mid-copy
        gw.process.wait(10)
    before = placements(gw, bucket)
    assert before["us-east-1"] > 0, before  # it was stopped half-way
    with start_gateway(tmp_path, local_locations(tmp_path), config=config) as gw:
        follow = migrate(gw, "--status", bucket)
        assert "copying" in follow.stdout or "done" in follow.stdout, follow.stdout
        eventually(lambda: status(gw, bucket)["state"] == "done", 60)
        assert placements(gw, bucket) == {"file2": 300}
        final = status(gw, bucket)
        assert final["objects"] == {"done": 300, "total": 300}
        s3 = gw.client()
        for key, body in bodies.items():
            assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == body
        settled_clean(gw)


@pytest.mark.postgres
def test_two_gateways_on_postgres_share_a_migration(request: pytest.FixtureRequest,
                                                    tmp_path: Path) -> None:
    """Started on one gateway, the migration's jobs run on both; the other gateway places new
    writes on the target at once (no bucket cache), and a write made there meanwhile is read
    back right; every byte is there afterwards, fsck clean."""
    from tests.metadata.conftest import pg_dsn

    config = {**FAST, "metadata": {"backend": "postgres",
                                   "dsn": pg_dsn(request, "migrate_shared")}}
    env = {"S3DATAPATH": str(tmp_path / "shared-data")}  # both see the same file locations
    with start_gateway(tmp_path / "a", local_locations(tmp_path), config=config, env=env) as a, \
            start_gateway(tmp_path / "b", local_locations(tmp_path), config=config,
                          env=env) as b:
        bucket, bodies = small_bucket(a, 150, versioned=True)
        run = migrate(a, bucket, "--to", "file2", "--detach")
        assert run.returncode == 0, run.stderr
        other = b.client()
        for i in range(20):  # through the other gateway, while the migration runs
            body = f"from b {i}".encode()
            other.put_object(Bucket=bucket, Key=f"b/{i}", Body=body)
            bodies[f"b/{i}"] = body
            assert other.get_object(Bucket=bucket, Key=f"b/{i}")["Body"].read() == body
        eventually(lambda: status(b, bucket)["state"] == "done", 60)
        assert status(b, bucket)["objects"]["total"] == 150
        for key, body in bodies.items():
            assert other.get_object(Bucket=bucket, Key=key)["Body"].read() == body
        moves = [requests.get(f"{gw.endpoint}/_/healthcheck/deep", timeout=10).json()["jobs"]
                 ["finishedHere"].get("migrate.move", {}).get("done", 0) for gw in (a, b)]
        assert sum(moves) >= 150 and all(moves), moves  # both gateways moved some
        for gw in (a, b):
            gw.settle(30)
        assert not [p for p in (tmp_path / "shared-data").rglob("*")
                    if p.is_file() and not p.name.endswith(".tmp")]  # nothing left on file
        assert len([p for p in (tmp_path / "file2").rglob("*") if p.is_file()]) == 170
        report = fsck(a.env)
        assert report["exit"] == 0, report
        for gw in (a, b):
            assert "Traceback" not in gw.log(), gw.log()[-5000:]


def metric_value(gw: Gateway, sample: str) -> float:
    for line in requests.get(f"{gw.endpoint}/_/metrics", timeout=10).text.splitlines():
        if line.startswith(sample + " "):
            return float(line.split()[-1])
    return 0.0


def test_an_overwrite_or_delete_during_the_copy_wins(local: Gateway) -> None:
    """The version being copied is overwritten (a null version) or deleted (by version id)
    while its copy streams: the swap loses, the copy becomes garbage, the client's change
    stands, nothing else changes. Retried a few times: the client must land mid-copy."""
    s3 = local.client()
    big = os.urandom(64 * MiB)
    lost = 0
    for attempt in range(4):
        bucket = f"mig-{uuid.uuid4().hex[:10]}"
        s3.create_bucket(Bucket=bucket)
        deleting = attempt % 2 == 1
        if deleting:
            s3.put_bucket_versioning(Bucket=bucket,
                                     VersioningConfiguration={"Status": "Enabled"})
        version = s3.put_object(Bucket=bucket, Key="big", Body=big).get("VersionId", "null")
        sample = f's3gw_migration_swaps_lost_total{{bucket="{bucket}"}}'
        assert migrate(local, bucket, "--to", "file2", "--detach").returncode == 0
        eventually(lambda: metric_value(local, "s3gw_writes_in_flight") > 0, 20)  # copying
        if deleting:
            s3.delete_object(Bucket=bucket, Key="big", VersionId=version)
        else:
            s3.put_object(Bucket=bucket, Key="big", Body=b"the client's write")
        eventually(lambda b=bucket: status(local, b)["state"] == "done", 30)
        lost += int(metric_value(local, sample))
        if deleting:
            assert placements(local, bucket) == {}
            assert s3.list_object_versions(Bucket=bucket).get("Versions", []) == []
        else:
            assert placements(local, bucket) == {"file2": 1}
            assert s3.get_object(Bucket=bucket, Key="big")["Body"].read() == \
                b"the client's write"
        if lost and attempt % 2 == 1:
            break
    assert lost >= 1, "no client change ever landed during a copy"
    settled_clean(local)


# --- the store's one step: location + attrs, guarded, exclusive ----------------------------------
@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres",
                                                            marks=pytest.mark.postgres)])
def test_update_bucket_switches_location_and_attrs_in_one_guarded_step(
        backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    from gateway.metadata.base import BucketRecord, LocationTaken, MetadataStore
    from gateway.metadata.postgres import PostgresStore
    from gateway.metadata.sqlite import SQLiteStore

    if backend == "postgres":
        from tests.metadata.conftest import pg_dsn

        dsn = pg_dsn(request, "migrate_update_bucket")

    async def run() -> None:
        store: MetadataStore = SQLiteStore(tmp_path / "metadata") if backend == "sqlite" \
            else PostgresStore(dsn, min_size=1, max_size=2)
        await store.open()
        try:
            suffix = uuid.uuid4().hex[:8]
            a, b = f"a-{suffix}", f"b-{suffix}"
            await store.create_bucket(BucketRecord(a, "me", f"match-{suffix}", time.time()))
            await store.create_bucket(BucketRecord(b, "me", "us-east-1", time.time(),
                                                   attrs={"tags": {"k": "v"}}))
            # A bucketMatch location another bucket has: refused, nothing changed.
            with pytest.raises(LocationTaken):
                await store.update_bucket(b, {"migration": {"to": "x"}},
                                          location=f"match-{suffix}", exclusive_location=True)
            unchanged = await store.get_bucket(b)
            assert unchanged is not None and unchanged.location == "us-east-1"
            assert "migration" not in unchanged.attrs

            def refuse(current: BucketRecord) -> None:
                raise RuntimeError(f"no: {current.location}")

            with pytest.raises(RuntimeError, match="no: us-east-1"):
                await store.update_bucket(b, {"migration": {}}, location="file2", guard=refuse)
            assert (await store.get_bucket(b)).location == "us-east-1"  # type: ignore[union-attr]
            seen: list[str] = []
            updated = await store.update_bucket(b, {"migration": {"to": "file2"}},
                                                location="file2",
                                                guard=lambda cur: seen.append(cur.location))
            assert seen == ["us-east-1"] and updated is not None
            stored = await store.get_bucket(b)
            assert stored is not None and stored.location == "file2"
            assert stored.attrs == {"tags": {"k": "v"}, "migration": {"to": "file2"}}
            assert [x.name for x in await store.list_buckets("me") if x.location == "file2"] \
                == [b]
            assert await store.update_bucket(f"gone-{suffix}", {"x": 1}) is None
        finally:
            await store.close()

    asyncio.run(run())
