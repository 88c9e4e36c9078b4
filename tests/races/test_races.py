"""The trust invariants under real concurrency: the races of tests/races/scenarios.py, run
against real gateways, each followed by the collector's settling and `fsck --json`, which must
find one stored piece per referenced piece, nothing missing, nothing unreferenced; and
acknowledged bytes read again after the collector ran.

Sites (each one module-scoped gateway set, started when first used):
- file-sqlite: the file location, SQLite metadata;
- file-postgres: two gateway processes on one PostgreSQL database and one data directory
  (half of each race's requests go through the second one);
- aws_s3 (moto), azure (Azurite), gcp (fake-gcs-server), b2 (b2sdk's simulator, gateway
  in-process), swift (all-in-one): one gateway each, buckets on that cloud's location.

Each test's docstring states its trial counts (fewer on clouds); every trial is a real race of
concurrent requests, judged as it ends.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.gatewayproc import ACCESS_KEY2, SECRET_KEY2, Gateway, start_gateway
from tests.races import scenarios

# The collector removes replaced and refused bytes in the background: run it often.
CONFIG: dict[str, Any] = {"storage": {"collectInterval": 0.2}}
CLOUD_LOCATION = "racecloud"

FILE_SITES = [pytest.param("file-sqlite"),
              pytest.param("file-postgres", marks=pytest.mark.postgres)]
CLOUD_SITES = [pytest.param(kind, marks=getattr(pytest.mark, kind))
               for kind in ("aws_s3", "azure", "gcp", "b2", "swift")]


@dataclass
class Site:
    """Gateways to race on: the first serves `s3`; `alt` is the second gateway's client when
    there is one (PostgreSQL), else None; `other` is a second account."""

    name: str
    gateways: list[Gateway]
    location: str | None  # LocationConstraint of new buckets (None: the default, file)
    inprocess: bool = False
    s3: Any = None
    alt: Any = None
    other: Any = None
    log_marks: list[int] = field(default_factory=list)

    @property
    def cloud(self) -> bool:
        return self.location is not None

    def trials(self, on_file: int, on_cloud: int) -> int:
        return on_cloud if self.cloud else on_file

    def bucket(self) -> str:
        return scenarios.new_bucket(self.s3, self.location)

    def mark_logs(self) -> None:
        self.log_marks = [len(gw.log()) for gw in self.gateways]

    def settle_and_check(self, *expected: tuple[str, scenarios.Outcome]) -> dict[str, Any]:
        """Wait for the collector; the acknowledged bytes are all still there (through every
        gateway); fsck is clean and exact; no gateway logged a traceback meanwhile."""
        scenarios.quiesce([gw.endpoint for gw in self.gateways])
        for bucket, outcome in expected:
            for client in filter(None, (self.s3, self.alt)):
                scenarios.verify(client, bucket, outcome.expected)
        report = scenarios.fsck(self.gateways[0].env, inprocess=self.inprocess)
        scenarios.assert_consistent(report)
        for gw, mark in zip(self.gateways, self.log_marks, strict=False):
            new = gw.log()[mark:]
            assert "Traceback" not in new, new[-5000:]
        return report


class Sites:
    """Start each site once for the module, on first use; stop all at the module's end."""

    def __init__(self, tmp: pytest.TempPathFactory) -> None:
        self.tmp = tmp
        self.stack = ExitStack()
        self.started: dict[str, Site] = {}

    def get(self, name: str, request: pytest.FixtureRequest) -> Site:
        if name not in self.started:
            site = getattr(self, "_" + name.replace("-", "_"))(request)
            site.s3 = site.gateways[0].client(max_pool_connections=64)
            site.other = site.gateways[0].client(ACCESS_KEY2, SECRET_KEY2,
                                                 max_pool_connections=16)
            if len(site.gateways) > 1:
                site.alt = site.gateways[1].client(max_pool_connections=64)
            self.started[name] = site
        return self.started[name]

    def _gateway(self, name: str, locations: dict[str, Any] | None = None,
                 **kwargs: Any) -> Gateway:
        workdir = self.tmp.mktemp(name)
        return self.stack.enter_context(start_gateway(workdir, locations, config=CONFIG,
                                                      **kwargs))

    def _file_sqlite(self, request: pytest.FixtureRequest) -> Site:
        return Site("file-sqlite", [self._gateway("file-sqlite")], None)

    def _file_postgres(self, request: pytest.FixtureRequest) -> Site:
        from tests.metadata.conftest import pg_dsn

        dsn = pg_dsn(request, f"races_{uuid.uuid4().hex[:8]}")
        config = {**CONFIG, "metadata": {"backend": "postgres", "dsn": dsn}}
        data = self.tmp.mktemp("pg-shared-data")
        env = {"S3DATAPATH": str(data)}
        gateways = [self.stack.enter_context(start_gateway(self.tmp.mktemp(f"pg-{n}"),
                                                           config=config, env=env))
                    for n in "ab"]
        return Site("file-postgres", gateways, None)

    def _cloud(self, name: str, location: dict[str, Any], **kwargs: Any) -> Site:
        gateway = self._gateway(name, {CLOUD_LOCATION: location}, **kwargs)
        return Site(name, [gateway], CLOUD_LOCATION, inprocess=kwargs.get("inprocess", False))

    def _aws_s3(self, request: pytest.FixtureRequest) -> Site:
        moto = request.getfixturevalue("aws_s3_moto")
        return self._cloud("aws_s3", {"type": "aws_s3", "legacyAwsBehavior": False,
                                      "details": moto.details(moto.create_bucket())})

    def _azure(self, request: pytest.FixtureRequest) -> Site:
        azurite = request.getfixturevalue("azurite")
        container = asyncio.run(azurite.create_container())
        return self._cloud("azure", {"type": "azure", "legacyAwsBehavior": False,
                                     "details": azurite.details(container)})

    def _gcp(self, request: pytest.FixtureRequest) -> Site:
        emulator = request.getfixturevalue("gcs_emulator")
        return self._cloud("gcp", {"type": "gcp", "legacyAwsBehavior": False, "details": {
            "bucketName": emulator.create_bucket(), "bucketMatch": False,
            "gcpEndpoint": emulator.url}})

    def _b2(self, request: pytest.FixtureRequest) -> Site:
        from tests.clouds.b2 import b2_raw_api, new_b2_cloud

        cloud = new_b2_cloud()  # an account of its own: fsck judges everything in its bucket
        self.stack.enter_context(b2_raw_api(cloud))
        return self._cloud("b2", {"type": "b2", "legacyAwsBehavior": False,
                                  "details": cloud.details(bucketMatch=False, threads=4)},
                           inprocess=True)

    def _swift(self, request: pytest.FixtureRequest) -> Site:
        cluster = request.getfixturevalue("swift_cloud")
        container = cluster.make_container(f"races-{uuid.uuid4().hex[:10]}")
        details = cluster.details(container, bucketMatch=False)
        key = details.pop("key")  # from the environment, as an operator would
        return self._cloud("swift", {"type": "swift", "legacyAwsBehavior": False,
                                     "details": details},
                           env={f"{CLOUD_LOCATION}_SWIFT_KEY": key})


@pytest.fixture(scope="module")
def sites(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sites]:
    registry = Sites(tmp_path_factory)
    with registry.stack:
        yield registry


@pytest.fixture
def site(request: pytest.FixtureRequest, sites: Sites) -> Site:
    try:
        chosen = sites.get(request.param, request)
    except pytest.FixtureLookupError:
        pytest.skip(f"the {request.param} fixture is not loaded (TEST_CLOUDS)")
    chosen.mark_logs()
    return chosen


def report(name: str, outcome: scenarios.Outcome, started: float,
           checked: dict[str, Any] | None = None) -> None:
    fsck = "" if checked is None else "; fsck " + ", ".join(
        f"{loc['name']} {loc['listed']} stored = {loc['referenced']} referenced"
        for loc in checked["locations"])
    print(f"\n{name}: {dict(sorted(outcome.counts.items()))} in "
          f"{time.monotonic() - started:.1f}s{fsck}")


# --- the races ----------------------------------------------------------------------------------

@pytest.mark.parametrize("site", FILE_SITES + CLOUD_SITES, indirect=True)
def test_put_storm_one_key(site: Site) -> None:
    """1. 8 writers x 20 rounds (8 on clouds) on one key, 2 readers checking every read."""
    started = time.monotonic()
    bucket = site.bucket()
    sizes = (2_000, 30_000, 150_000) if site.cloud else (2_000, 70_000, 300_000)
    outcome = scenarios.put_storm(site.s3, bucket, rounds=site.trials(20, 8), writers=8,
                                  sizes=sizes, alt=site.alt)
    checked = site.settle_and_check((bucket, outcome))
    report(f"storm {site.name}", outcome, started, checked)


@pytest.mark.parametrize("site", FILE_SITES, indirect=True)
def test_delete_during_overwrite(site: Site) -> None:
    """2. 25 trials of a writer (4 PUTs) against a DELETE loop on one key."""
    started = time.monotonic()
    bucket = site.bucket()
    outcome = scenarios.delete_during_overwrite(site.s3, bucket, trials=25, alt=site.alt)
    site.settle_and_check((bucket, outcome))
    report(f"delete/overwrite {site.name}", outcome, started)


@pytest.mark.parametrize("site", FILE_SITES + CLOUD_SITES, indirect=True)
def test_complete_vs_abort(site: Site) -> None:
    """3. 30 trials (8 on clouds) of CompleteMultipartUpload racing AbortMultipartUpload."""
    started = time.monotonic()
    bucket = site.bucket()
    outcome = scenarios.complete_vs_abort(site.s3, bucket, trials=site.trials(30, 8),
                                          alt=site.alt)
    site.settle_and_check((bucket, outcome))
    report(f"complete/abort {site.name}", outcome, started)


@pytest.mark.parametrize("site", FILE_SITES, indirect=True)
def test_complete_vs_part_retry(site: Site) -> None:
    """4. 30 trials of CompleteMultipartUpload racing a retry of its listed part."""
    started = time.monotonic()
    bucket = site.bucket()
    outcome = scenarios.complete_vs_part_retry(site.s3, bucket, trials=30, alt=site.alt)
    site.settle_and_check((bucket, outcome))
    report(f"complete/part retry {site.name}", outcome, started)


@pytest.mark.parametrize("site", FILE_SITES, indirect=True)
def test_delete_bucket_vs_streaming_put(site: Site) -> None:
    """5. 20 trials of DeleteBucket (then another account's CreateBucket) racing a PUT whose
    body arrives in 4 chunks 25 ms apart."""
    started = time.monotonic()
    outcome = scenarios.delete_bucket_vs_streaming_put(site.s3, site.other, trials=20,
                                                       location=site.location, alt=site.alt)
    site.settle_and_check()
    report(f"delete bucket/streaming put {site.name}", outcome, started)


@pytest.mark.parametrize("site", FILE_SITES + CLOUD_SITES, indirect=True)
def test_refused_put_keeps_live_object(site: Site) -> None:
    """6. 21 trials (9 on clouds) of a PUT refused after its body streamed (BadDigest,
    XAmzContentSHA256Mismatch) or cut off, over a live object being read."""
    started = time.monotonic()
    bucket = site.bucket()
    outcome = scenarios.refused_put_keeps_live(site.s3, bucket, trials=site.trials(21, 9),
                                               alt=site.alt)
    assert set(outcome.counts) >= set(scenarios.REFUSALS)
    site.settle_and_check((bucket, outcome))
    report(f"refused put {site.name}", outcome, started)


@pytest.mark.parametrize("site", FILE_SITES, indirect=True)
def test_bucket_settings_lost_updates(site: Site) -> None:
    """7. 3 trials of 4 writers (policy, versioning, tagging, CORS) x 20 writes each."""
    started = time.monotonic()
    total = scenarios.Outcome()
    for _ in range(3):
        bucket = site.bucket()
        outcome = scenarios.bucket_settings_race(site.s3, bucket, writes=20, alt=site.alt)
        total.counts["writes"] = total.counts.get("writes", 0) + outcome.counts["writes"]
    site.settle_and_check()
    report(f"bucket settings {site.name}", total, started)


# A stopping gateway answers the requests it is serving (their bodies still come in) and
# takes no new ones: well within this (aiohttp's own shutdown timeout is 60 s).
STOP_WITHIN = 20.0


# --- 8. shutdown with PUTs in flight --------------------------------------------------------------

def test_sigterm_with_writes_in_flight(tmp_path: Path) -> None:
    """8. 3 rounds: concurrent PUTs and multipart uploads, SIGTERM mid-flight. The gateway
    stops cleanly (exit 0); after a restart every acknowledged write reads back byte-exact
    (this round's and the earlier rounds'), cut-off uploads can be finished; with the gateway
    stopped, fsck finds nothing missing and nothing unreferenced (a clean stop leaves nothing
    to repair), and fsck --repair then fsck agree."""
    rounds, state = 3, {}
    bucket = f"term-{uuid.uuid4().hex[:8]}"
    started = time.monotonic()
    totals = scenarios.Outcome()
    for round_ in range(rounds):
        with start_gateway(tmp_path, config=CONFIG) as gw:
            s3 = gw.client(max_pool_connections=16, connect_timeout=5, read_timeout=30)
            if round_ == 0:
                s3.create_bucket(Bucket=bucket)
            load = scenarios.WriteLoad(s3, bucket, f"r{round_}/", put_threads=4,
                                       upload_threads=2).start()
            time.sleep(0.4 + 0.3 * round_)
            assert gw.process is not None
            gw.process.send_signal(signal.SIGTERM)
            stopping = time.monotonic()
            try:  # uploads in flight finish, new requests are refused: seconds, not minutes
                code = gw.process.wait(STOP_WITHIN)
            except subprocess.TimeoutExpired:
                raise AssertionError(f"still running {STOP_WITHIN}s after SIGTERM") from None
            assert code == 0, gw.log()[-3000:]
            totals.counts["max stop ms"] = max(totals.counts.get("max stop ms", 0),
                                               int((time.monotonic() - stopping) * 1000))
            load.join()
            assert not load.unexpected, load.unexpected
            assert load.acked() > 0, "nothing was acknowledged before the stop"
            assert "Traceback" not in gw.log(), gw.log()[-5000:]
        with start_gateway(tmp_path, config=CONFIG) as gw:
            s3 = gw.client()
            scenarios.verify(s3, bucket, state)  # the earlier rounds' objects
            outcome = scenarios.verify_load(s3, bucket, load)
            state.update(outcome.expected)
            for what, n in outcome.counts.items():
                totals.counts[what] = totals.counts.get(what, 0) + n
            scenarios.quiesce([gw.endpoint])
        found = scenarios.check_after_stop(gw.env, strict=True)
        totals.counts["unreferenced before repair"] = (
            totals.counts.get("unreferenced before repair", 0) + found)
    report("sigterm", totals, started)


@pytest.mark.parametrize("site", FILE_SITES[:1], indirect=True)
def test_missing_data_still_reads_as_missing(site: Site) -> None:
    """The counterpart of the GET retry that a concurrent overwrite's collection may need
    (gateway/s3/ops/obj.py get_object): bytes gone while their record still names them are
    reported missing (404 NoSuchKey), at once, not served from elsewhere nor retried forever;
    and fsck reports them missing."""
    bucket = site.bucket()
    data_path = Path(site.gateways[0].env["S3DATAPATH"])
    before = {p for p in data_path.rglob("*") if p.is_file()}
    data = scenarios.body("missing", 100_000)
    site.s3.put_object(Bucket=bucket, Key="k", Body=data)
    [added] = {p for p in data_path.rglob("*") if p.is_file()} - before
    added.unlink()
    try:
        with pytest.raises(ClientError) as exc:
            site.s3.get_object(Bucket=bucket, Key="k")
        assert scenarios.code_of(exc.value) == "NoSuchKey"
        assert "missing from its location" in exc.value.response["Error"]["Message"]
        checked = scenarios.fsck(site.gateways[0].env)
        missing = [m for loc in checked["locations"] for m in loc["missing"]]
        assert checked["exit"] == 1 and len(missing) == 1, checked
        assert missing[0].startswith(f"object {bucket}/k v=null: "), missing
    finally:
        site.s3.delete_object(Bucket=bucket, Key="k")
    site.settle_and_check()
