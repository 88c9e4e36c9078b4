"""`workers: 2`: two processes behind one port (gateway/workers.py), on a file location and
SQLite. Both serve; a write through one is never hidden by a stale cache in the other; races
across them keep every acknowledged byte; kill -9 of a worker under load loses nothing it
acknowledged (the parent starts it again, fsck is clean); SIGTERM drains; metrics count the
requests of both; health state is shared; start-up errors are still one line.

Which worker answered: the x-gateway-worker header. The kernel picks the worker of each new
connection (SO_REUSEPORT), so the tests use a fresh connection per request and loop (bounded)
until both have answered.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import BotoCoreError, ClientError
from prometheus_client.parser import text_string_to_metric_families

from tests.gatewayproc import (
    ACCESS_KEY,
    REPO,
    SECRET_KEY,
    Gateway,
    eventually,
    free_port,
    start_gateway,
    write_config,
)
from tests.races import scenarios

WORKER = "x-gateway-worker"


def workers_config(metrics_port: int, **extra: Any) -> dict[str, Any]:
    return {"workers": 2, "metricsPort": metrics_port, "healthChecks": {"interval": 0.5,
                                                                          "timeout": 1},
            "storage": {"collectInterval": 0.2}, **extra}


def flaky_location(workdir: Path) -> dict[str, Any]:
    return {"flaky": {"type": "file", "legacyAwsBehavior": False,
                      "details": {"dataPath": str(workdir / "flaky")}}}


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    workdir = tmp_path_factory.mktemp("workers")
    metrics_port = free_port()
    with start_gateway(workdir, flaky_location(workdir),
                       config=workers_config(metrics_port)) as gateway:
        gateway.extra["metrics"] = f"http://127.0.0.1:{metrics_port}"
        wait_both(gateway)
        yield gateway


def signed(gw: Gateway, method: str, path: str, body: bytes = b"",
           headers: dict[str, str] | None = None) -> requests.Response:
    """One SigV4-signed request on a connection of its own (so the kernel picks a worker)."""
    url = gw.endpoint + path
    request = AWSRequest(method=method, url=url, data=body, headers=dict(headers or {}))
    request.headers["x-amz-content-sha256"] = "UNSIGNED-PAYLOAD"
    S3SigV4Auth(Credentials(ACCESS_KEY, SECRET_KEY), "s3", "us-east-1").add_auth(request)
    return requests.request(method, url, data=body, headers={**dict(request.headers),
                                                             "Connection": "close"},
                            timeout=30)


def worker_of(response: requests.Response) -> str:
    worker = response.headers.get(WORKER)
    assert worker in ("0", "1"), f"no {WORKER} header: {dict(response.headers)}"
    return worker


def wait_both(gw: Gateway, timeout: float = 30) -> None:
    """Until both workers answer (after a start or a restart)."""
    seen: set[str] = set()
    deadline = time.monotonic() + timeout
    while seen != {"0", "1"}:
        assert time.monotonic() < deadline, f"only workers {seen} answered"
        try:
            response = requests.get(f"{gw.endpoint}/_/healthcheck", timeout=5,
                                    headers={"Connection": "close"})
        except requests.ConnectionError:
            time.sleep(0.1)
            continue
        if response.status_code == 200:
            seen.add(worker_of(response))


def worker_pids(gw: Gateway) -> list[int]:
    assert gw.process is not None
    parent = gw.process.pid
    children = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
    return [int(pid) for pid in children]


def requests_total(gw: Gateway) -> float:
    text = requests.get(f"{gw.extra['metrics']}/metrics", timeout=10).text
    total = 0.0
    for family in text_string_to_metric_families(text):
        if family.name == "s3gw_requests":
            total += sum(s.value for s in family.samples if s.name == "s3gw_requests_total")
    return total


# --- the tests ------------------------------------------------------------------------------
def test_both_workers_serve_and_a_write_in_one_is_never_hidden_in_the_other(gw: Gateway) -> None:
    """Object and bucket caches (SQLite keeps current versions and bucket rows in each
    process): overwrite, delete and bucket settings through one worker, read at once through
    whichever the kernel picks; until both directions were seen many times."""
    bucket = f"coherent-{uuid.uuid4().hex[:8]}"
    assert signed(gw, "PUT", f"/{bucket}").status_code == 200
    crossed = {("0", "1"): 0, ("1", "0"): 0}
    deadline = time.monotonic() + 60
    round_ = 0
    while min(crossed.values()) < 10:
        assert time.monotonic() < deadline, f"workers never crossed enough: {crossed}"
        round_ += 1
        # Warm both caches with the current version, then overwrite it.
        for _ in range(3):
            signed(gw, "GET", f"/{bucket}/hot")
        body = f"round {round_}".encode()
        wrote = signed(gw, "PUT", f"/{bucket}/hot", body)
        assert wrote.status_code == 200, wrote.text
        read = signed(gw, "GET", f"/{bucket}/hot")
        assert read.status_code == 200 and read.content == body, (
            f"round {round_}: worker {worker_of(read)} served {read.content!r} after worker "
            f"{worker_of(wrote)} wrote {body!r}")
        pair = (worker_of(wrote), worker_of(read))
        if pair in crossed:
            crossed[pair] += 1
    # A delete is seen at once by both.
    for _ in range(3):
        assert signed(gw, "GET", f"/{bucket}/hot").status_code == 200
    assert signed(gw, "DELETE", f"/{bucket}/hot").status_code == 204
    for _ in range(10):
        assert signed(gw, "GET", f"/{bucket}/hot").status_code == 404
    # Bucket settings: versioning turned on through one is on in every worker.
    for _ in range(3):
        signed(gw, "GET", f"/{bucket}?versioning")
    on = (b'<VersioningConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
          b"<Status>Enabled</Status></VersioningConfiguration>")
    assert signed(gw, "PUT", f"/{bucket}?versioning", on).status_code == 200
    answered = set()
    for _ in range(20):
        got = signed(gw, "GET", f"/{bucket}?versioning")
        assert b"<Status>Enabled</Status>" in got.content, got.text
        answered.add(worker_of(got))
    assert answered == {"0", "1"}
    # A deleted bucket is gone in every worker (its cached row too).
    other = f"gone-{uuid.uuid4().hex[:8]}"
    assert signed(gw, "PUT", f"/{other}").status_code == 200
    for _ in range(4):
        assert signed(gw, "HEAD", f"/{other}").status_code == 200
    assert signed(gw, "DELETE", f"/{other}").status_code == 204
    for _ in range(10):
        assert signed(gw, "HEAD", f"/{other}").status_code == 404


def test_races_across_workers_keep_every_acknowledged_byte(gw: Gateway) -> None:
    """tests/races' PUT storm and delete-during-overwrite, with two clients whose pooled
    connections land on both workers; then fsck-level checks after the collector ran."""
    s3 = gw.client(max_pool_connections=16)
    alt = gw.client(max_pool_connections=16)
    bucket = scenarios.new_bucket(s3, None)
    storm = scenarios.put_storm(s3, bucket, rounds=6, writers=6, sizes=(2_000, 70_000),
                                alt=alt)
    deletes = scenarios.delete_during_overwrite(s3, bucket, trials=8)
    scenarios.quiesce([gw.endpoint])
    for client in (s3, alt):
        scenarios.verify(client, bucket, storm.expected)
        scenarios.verify(client, bucket, deletes.expected)


def test_metrics_count_the_requests_of_every_worker(gw: Gateway) -> None:
    before = requests_total(gw)
    bucket = f"metrics-{uuid.uuid4().hex[:8]}"
    answered: list[str] = [worker_of(signed(gw, "PUT", f"/{bucket}"))]
    for _ in range(39):
        answered.append(worker_of(signed(gw, "HEAD", f"/{bucket}")))
    assert set(answered) == {"0", "1"}, answered
    # Scraped on the metrics port (not counted as S3 requests), by whichever worker.
    eventually(lambda: requests_total(gw) - before == 40, timeout=5)
    for _ in range(6):  # every worker's scrape gives the whole count
        assert requests_total(gw) - before == 40


def test_health_is_checked_once_and_shared_by_every_worker(gw: Gateway) -> None:
    """The leader checks; a location it finds down is down (and fails fast) in both."""
    s3 = gw.client()
    bucket = f"flaky-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "flaky"})
    data_path = gw.workdir / "flaky"
    data_path.rename(gw.workdir / "flaky.away")
    try:
        down: dict[str, int] = {"0": 0, "1": 0}  # answers "down" in a row, per worker

        def both_down() -> bool:
            got = requests.get(f"{gw.endpoint}/_/healthcheck/deep", timeout=5,
                               headers={"Connection": "close"})
            worker = worker_of(got)
            is_down = got.json()["locations"]["flaky"]["state"] == "down"
            down[worker] = down[worker] + 1 if is_down else 0
            return min(down.values()) >= 2

        eventually(both_down, timeout=15)
        seen = set()
        for _ in range(40):
            started = time.monotonic()
            answer = signed(gw, "PUT", f"/{bucket}/k", b"x")
            assert answer.status_code == 503, answer.text
            assert b"is not writable" in answer.content, answer.text  # the health message
            assert time.monotonic() - started < 1.0
            seen.add(worker_of(answer))
        assert seen == {"0", "1"}
    finally:
        (gw.workdir / "flaky.away").rename(data_path)
    eventually(lambda: all(signed(gw, "PUT", f"/{bucket}/k", b"x").status_code == 200
                           for _ in range(6)), timeout=10)
    # One leader runs the checks: the log says so once (no handover happened here).
    assert gw.log().count("leads: health checks") == 1


def test_a_breaker_trip_in_one_worker_is_shared_by_every_worker_at_once(tmp_path: Path) -> None:
    """Requests, not checks, find the location broken (no scheduled check in sight): the
    worker whose breaker trips shares it, and every worker fails fast and reports it down at
    once, without waiting for its next look at the shared state."""
    config = workers_config(free_port(), healthChecks={"interval": 3600, "timeout": 1})
    with start_gateway(tmp_path, flaky_location(tmp_path), config=config) as gw:
        wait_both(gw)
        s3 = gw.client()
        bucket = f"flaky-{uuid.uuid4().hex[:8]}"
        s3.create_bucket(Bucket=bucket,
                         CreateBucketConfiguration={"LocationConstraint": "flaky"})
        shutil.rmtree(tmp_path / "flaky")
        (tmp_path / "flaky").write_bytes(b"")  # a file, not a folder: every call fails
        # Each PUT on a connection of its own: at most 2 failures in each worker before one
        # of them has 3 in a row and trips; from then on every answer is the fail-fast one.
        for attempt in range(12):
            answer = signed(gw, "PUT", f"/{bucket}/k-{attempt}", b"x")
            assert answer.status_code == 503, answer.text
            if b"consecutive request failures" in answer.content:
                break
        else:
            pytest.fail("the breaker never tripped")
        assert attempt <= 5
        seen = set()
        while seen != {"0", "1"}:
            got = requests.get(f"{gw.endpoint}/_/healthcheck/deep", timeout=5,
                               headers={"Connection": "close"})
            seen.add(worker_of(got))
            flaky = got.json()["locations"]["flaky"]
            assert flaky["state"] == "down", (worker_of(got), flaky)
            assert "consecutive request failures" in flaky["message"]
            started = time.monotonic()
            answer = signed(gw, "GET", f"/{bucket}/k-0")
            assert answer.status_code in (404, 503), answer.text
            if answer.status_code == 503:
                assert time.monotonic() - started < 0.5


def test_a_console_session_works_in_every_worker(gw: Gateway) -> None:
    """The console logs in on one worker; the session is found by the other (each request
    on a fresh connection), and a logout through one ends it in both."""
    base = gw.endpoint
    http = requests.Session()
    http.headers["Connection"] = "close"
    form = http.get(f"{base}/_/console/login", timeout=10).text
    token = re.search(r'name="csrf" value="([^"]+)"', form).group(1)  # type: ignore[union-attr]
    answer = http.post(f"{base}/_/console/login", timeout=10, headers={"Origin": base},
                       data={"csrf": token, "access_key": ACCESS_KEY, "secret_key": SECRET_KEY})
    assert answer.url.endswith("/_/console/buckets"), answer.url
    csrf = re.search(r'name="csrf" content="([^"]+)"', answer.text).group(1)  # type: ignore[union-attr]
    seen = set()
    for _ in range(20):
        page = http.get(f"{base}/_/console/buckets", timeout=10, allow_redirects=False)
        assert page.status_code == 200, page.headers.get("Location")
        seen.add(worker_of(page))
    assert seen == {"0", "1"}
    http.post(f"{base}/_/console/logout", data={"csrf": csrf}, headers={"Origin": base},
              timeout=10)
    for _ in range(10):
        after = http.get(f"{base}/_/console/buckets", timeout=10, allow_redirects=False)
        assert after.status_code == 303 and "/_/console/login" in after.headers["Location"]


def test_kill_9_of_a_worker_under_load_loses_no_acknowledged_write(
        tmp_path: Path) -> None:
    """PUTs and multipart uploads through both workers; the leader worker is killed with
    SIGKILL; the other takes over its duties and the parent starts a new worker while the
    load goes on. Afterwards (and again after a restart
    of the whole gateway, whose parent releases what the dead worker held) every acknowledged
    write reads back byte-exact, and fsck finds nothing wrong."""
    metrics_port = free_port()
    config = workers_config(metrics_port)
    with start_gateway(tmp_path, config=config) as gw:
        wait_both(gw)
        s3 = gw.client(max_pool_connections=16)
        bucket = scenarios.new_bucket(s3, None, "kill")
        load = ResilientLoad(s3, bucket, "k-", put_threads=4, upload_threads=1, seconds=6,
                             sizes=(1_000, 60_000), big_part=5 * 2**20).start()
        time.sleep(1.5)
        before = worker_pids(gw)
        assert len(before) == 2
        leaders = re.findall(r"\(pid (\d+)\) leads:", gw.log())
        assert len(leaders) == 1, gw.log()
        victim = int(leaders[0])  # the leader: its duties must pass to the other worker
        assert victim in before
        os.kill(victim, signal.SIGKILL)
        eventually(lambda: len(worker_pids(gw)) == 2 and victim not in worker_pids(gw),
                   timeout=15)
        eventually(lambda: len(re.findall(r"\(pid (\d+)\) leads:", gw.log())) == 2)
        assert int(re.findall(r"\(pid (\d+)\) leads:", gw.log())[1]) != victim
        load.join(timeout=60)
        assert not load.unexpected, load.unexpected
        assert load.acked() > 20
        wait_both(gw)
        assert "was killed by signal 9: starting it again" in gw.log()
        check_acknowledged(s3, bucket, load)  # while running: nothing acknowledged lost
    # The whole gateway again: the parent's recovery releases the dead worker's claims.
    with start_gateway(tmp_path, config=config) as gw:
        wait_both(gw)
        s3 = gw.client()
        outcome = scenarios.verify_load(s3, bucket, load)
        scenarios.quiesce([gw.endpoint])
        scenarios.verify(s3, bucket, outcome.expected)
    fsck = subprocess.run([sys.executable, "-m", "gateway", "fsck"], cwd=REPO,
                          env={**os.environ, **gw.env}, capture_output=True, text=True,
                          timeout=120)
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr


class ResilientLoad(scenarios.WriteLoad):
    """WriteLoad that keeps going when a request gets no answer (its worker was killed):
    the request stays unacknowledged and the thread goes on (with new keys)."""

    def _guard(self, work: Any, number: int) -> None:
        rounds = 0
        while time.monotonic() < self.deadline:
            rounds += 1
            try:
                work(number + 100 * rounds)
                return
            except ClientError as err:
                self.unexpected.append(f"{err.operation_name}: {scenarios.status_of(err)} "
                                       f"{scenarios.code_of(err)}")
                return
            except (BotoCoreError, OSError) as exc:  # no answer: its worker was killed
                self.stopped_by.append(type(exc).__name__)


def check_acknowledged(s3: Any, bucket: str, load: scenarios.WriteLoad) -> None:
    """Every acknowledged PUT and Complete reads back (a later in-flight PUT may have
    landed instead); uploads cut off are left for after the restart."""
    for key, attempts in load.attempts.items():
        acked = [i for i, a in enumerate(attempts) if a.acked]
        if acked:
            data = scenarios.read_checked(s3, bucket, key)
            assert data in [a.data for a in attempts[acked[-1]:]], key
    for upload in load.uploads:
        if upload.complete_acked:
            got = scenarios.get(s3, bucket, upload.key)
            assert got is not None and got[0] == b"".join(upload.parts), upload.key


def test_sigterm_drains_every_worker(tmp_path: Path) -> None:
    """An upload in progress when SIGTERM comes finishes with 200; the parent exits 0 once
    both workers stopped, and the port refuses."""
    with start_gateway(tmp_path, config=workers_config(free_port())) as gw:
        wait_both(gw)
        s3 = gw.client()
        bucket = scenarios.new_bucket(s3, None, "drain")
        chunks = [b"a" * 65536] * 12
        results: list[Any] = []

        def upload() -> None:
            results.append(scenarios.streaming_put(s3, bucket, "slow", chunks, 0.15))

        thread = threading.Thread(target=upload)
        thread.start()
        time.sleep(0.5)
        assert gw.process is not None
        gw.process.send_signal(signal.SIGTERM)
        thread.join(30)
        assert gw.process.wait(30) == 0
        assert results and results[0][0] == 200, results
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", gw.port), timeout=1).close()
        log = gw.log()
        assert "stopping: 2 workers finish the requests in flight" in log
        assert "all 2 workers stopped" in log
        assert "Traceback" not in log, log


def test_port_in_use_is_one_line_and_exit_2(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = write_config(tmp_path, port, None, {"workers": 2})
        result = subprocess.run([sys.executable, "-m", "gateway"], cwd=REPO,
                                env={**os.environ, **env}, capture_output=True, text=True,
                                timeout=60)
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("gateway:")]
    assert lines == [f'gateway: cannot start: {tmp_path / "config.json"} key "port": '
                     f"127.0.0.1:{port} is already in use (another gateway or program "
                     "listens there)"], result.stderr
    assert "Traceback" not in result.stderr


def test_a_worker_that_cannot_start_stops_the_gateway_with_one_line(tmp_path: Path) -> None:
    """healthChecks.startup strict with a location down: each worker refuses; the parent
    shows the first worker's line once and exits with its status."""
    locations = {"gone": {"type": "file", "legacyAwsBehavior": False,
                          "details": {"dataPath": "/proc/no-such-place"}}}
    env = write_config(tmp_path, free_port(), locations,
                       {"workers": 2, "healthChecks": {"startup": "strict", "timeout": 1}})
    result = subprocess.run([sys.executable, "-m", "gateway"], cwd=REPO,
                            env={**os.environ, **env}, capture_output=True, text=True,
                            timeout=60)
    lines = [line for line in result.stderr.splitlines() if line.startswith("gateway:")]
    assert len(lines) == 1, result.stderr
    assert result.returncode != 0
    assert lines[0].startswith("gateway: cannot start:"), lines


@pytest.mark.parametrize(("value", "message"), [
    ("0", 'must be a number of processes, 1..256, or "auto", got 0'),
    ("many", "must be a number of processes, 1..256, or \"auto\", got 'many'"),
])
def test_bad_workers_value_is_refused(tmp_path: Path, value: str, message: str) -> None:
    env = write_config(tmp_path, free_port(), None, None)
    result = subprocess.run([sys.executable, "-m", "gateway"], cwd=REPO,
                            env={**os.environ, **env, "S3_WORKERS": value},
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("gateway: bad config: environment: S3_WORKERS: "), line
    assert line.endswith(message), line


def test_mem_location_is_refused_with_workers(tmp_path: Path) -> None:
    env = write_config(tmp_path, free_port(), None, {"workers": 2})
    (tmp_path / "locationConfig.json").write_text(
        '{"us-east-1": {"type": "mem", "legacyAwsBehavior": false, "details": {}}}')
    result = subprocess.run([sys.executable, "-m", "gateway"], cwd=REPO,
                            env={**os.environ, **env}, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 2
    line = result.stderr.strip().splitlines()[-1]
    assert 'location "us-east-1" key "type": mem keeps objects in one process' in line, line



def test_kill_9_of_the_parent_a_restart_waits_for_its_draining_workers(tmp_path: Path) -> None:
    """kill -9 of the supervising parent: its workers get SIGTERM and drain (an upload in
    flight still finishes with 200). A gateway started at once on the same SQLite store waits
    until the last of them is gone (gateway.lock, held by every fork) before its start-up
    recovery, which would otherwise take their live writes and job claims for a crash's."""
    shared = {"S3METADATAPATH": str(tmp_path / "metadata"), "S3DATAPATH": str(tmp_path / "data")}
    results: list[Any] = []
    with start_gateway(tmp_path / "first", config=workers_config(free_port()),
                       env=shared) as first:
        wait_both(first)
        old_workers = worker_pids(first)
        s3 = first.client()
        bucket = scenarios.new_bucket(s3, None, "orphans")
        chunks = [b"o" * 65536] * 16
        thread = threading.Thread(target=lambda: results.append(
            scenarios.streaming_put(s3, bucket, "slow", chunks, 0.25)))
        thread.start()
        time.sleep(0.8)
        assert first.process is not None
        first.process.kill()
        first.process.wait()
    with start_gateway(tmp_path / "second", config=workers_config(free_port()), env=shared,
                       timeout=60) as second:
        wait_both(second)
        assert not [pid for pid in old_workers if Path(f"/proc/{pid}").exists()
                    and "zombie" not in Path(f"/proc/{pid}/status").read_text()]
        assert "is in use by pid" in second.log() and "waiting up to" in second.log()
        thread.join(30)
        assert results and results[0][0] == 200, results  # acknowledged by a draining worker
        got = second.client().get_object(Bucket=bucket, Key="slow")["Body"].read()
        assert got == b"".join(chunks)
        assert "Traceback" not in second.log(), second.log()


def test_a_second_gateway_on_one_sqlite_store_is_refused_with_one_line(tmp_path: Path) -> None:
    """claim_store: while a gateway holds the store, another waits, then refuses in one line."""
    from gateway.metadata.sqlite import StoreInUse, claim_store

    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pathlib import Path; "
         "from gateway.metadata.sqlite import claim_store; claim_store(Path(sys.argv[1])); "
         "print('held', flush=True); time.sleep(60)", str(tmp_path)],
        cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(StoreInUse) as refused:
            claim_store(tmp_path, wait=0.3)
        assert str(refused.value) == (
            f"metadata store {tmp_path.resolve()} is in use by another gateway "
            f"(pid {holder.pid}); stop it first, or share metadata through PostgreSQL")
    finally:
        holder.kill()
        holder.wait()
    fd = claim_store(tmp_path, wait=0.3)  # free once its holder is gone
    os.close(fd)
