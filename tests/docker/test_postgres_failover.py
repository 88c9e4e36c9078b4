"""PostgreSQL that survives losing its primary: a pg_auto_failover formation (monitor, primary,
synchronous standby; Debian's pg-auto-failover-cli and postgresql-NN-auto-failover), a gateway
whose DSN names both nodes with target_session_attrs=read-write, PUT/GET load, and the primary
killed outright (its keeper, postmaster and backends: SIGKILL to the whole process group, as a
lost machine). Requests in flight succeed or fail with 503 ServiceUnavailable (which every S3
SDK retries; never a 500, never a reset connection), the gateway serves again by itself within a
bounded time (measured and printed), and every acknowledged write is readable.

The formation's timeouts are shortened (pg_auto_failover's defaults take ~30-50 s to fail over).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.clouds.postgres import find_bindir
from tests.gatewayproc import free_port, start_gateway

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

# Monitor settings (milliseconds): probe each node every second, call it unhealthy after 3 s,
# promote the standby 5 s after the primary stopped answering (it cannot demote itself).
MONITOR_SETTINGS = {
    "pgautofailover.health_check_period": 1000,
    "pgautofailover.health_check_timeout": 1000,
    "pgautofailover.health_check_max_retries": 1,
    "pgautofailover.health_check_retry_delay": 500,
    "pgautofailover.node_considered_unhealthy_timeout": 3000,
    "pgautofailover.primary_demote_timeout": 5000,
}
SERVE_AGAIN_BOUND = 60.0  # seconds from the kill to the gateway acknowledging writes again


@dataclass
class Formation:
    root: Path
    bindir: Path
    run_as: dict[str, Any]
    monitor_port: int = field(default_factory=free_port)
    node_ports: dict[str, int] = field(default_factory=dict)
    keepers: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def env(self) -> dict[str, str]:
        return {"PATH": f"{self.bindir}:/usr/bin:/bin", "HOME": str(self.root),
                "XDG_CONFIG_HOME": str(self.root / "config"),
                "XDG_DATA_HOME": str(self.root / "share"),
                # Sockets in our folder, and pg_autoctl's local connections look there too.
                "PG_REGRESS_SOCK_DIR": str(self.root), "PGHOST": str(self.root),
                "LANG": "C.UTF-8"}

    @property
    def monitor_uri(self) -> str:
        return f"postgres://autoctl_node@127.0.0.1:{self.monitor_port}/pg_auto_failover?sslmode=disable"

    def dsn(self, *, first: tuple[int, ...] = ()) -> str:
        """What a gateway is given: every node (after the ports `first`), and only the primary
        will do. libpq's host=/port= list form (`postgresql://u@h1:p1,h2:p2/db` is the same)."""
        all_ports = [*first, *self.node_ports.values()]
        hosts = ",".join("127.0.0.1" for _ in all_ports)
        ports = ",".join(str(port) for port in all_ports)
        return (f"postgresql://postgres@/gateway?host={hosts}&port={ports}"
                "&target_session_attrs=read-write")

    def primary(self) -> str:
        return next(name for name, (reported, _) in self.states().items()
                    if reported in ("single", "wait_primary", "primary"))

    def autoctl(self, *args: str, timeout: float = 60) -> str:
        done = subprocess.run(["pg_autoctl", *args], env=self.env, cwd=self.root,
                              capture_output=True, text=True, timeout=timeout, **self.run_as)
        if done.returncode != 0:
            raise RuntimeError(f"pg_autoctl {args[0]} {args[1]}: {done.stderr[-2000:]}")
        return done.stdout

    def run(self, name: str, *args: str) -> None:
        """A pg_autoctl process in a process group of its own (killed whole in kill())."""
        log = open(self.root / f"{name}.log", "ab")  # noqa: SIM115 - owned by the process
        self.keepers[name] = subprocess.Popen(
            ["pg_autoctl", *args], env=self.env, cwd=self.root, stdout=log,
            stderr=subprocess.STDOUT, start_new_session=True, **self.run_as)
        log.close()

    def start_monitor(self) -> None:
        pgdata = self.root / "monitor"
        self.autoctl("create", "monitor", "--pgdata", str(pgdata), "--pgport",
                     str(self.monitor_port), "--hostname", "127.0.0.1", "--auth", "trust",
                     "--no-ssl")
        with open(pgdata / "postgresql.auto.conf", "a") as conf:
            conf.writelines(f"{name} = {value}\n" for name, value in MONITOR_SETTINGS.items())
        self.run("monitor", "run", "--pgdata", str(pgdata))

    def add_node(self, name: str) -> None:
        self.node_ports[name] = free_port()
        self.run(name, "create", "postgres", "--pgdata", str(self.root / name),
                 "--pgport", str(self.node_ports[name]), "--hostname", "127.0.0.1",
                 "--listen", "127.0.0.1", "--name", name, "--monitor", self.monitor_uri,
                 "--auth", "trust", "--no-ssl", "--dbname", "gateway", "--run")

    def states(self) -> dict[str, tuple[str, str]]:
        """name -> (reported, assigned) state, as the monitor sees them."""
        try:
            rows = json.loads(self.autoctl("show", "state", "--pgdata", str(self.root / "monitor"),
                                           "--json", timeout=10) or "[]")
        except (RuntimeError, subprocess.TimeoutExpired, json.JSONDecodeError):
            return {}
        return {row["nodename"]: (row["current_group_state"], row["assigned_group_state"])
                for row in rows}

    def sql(self, node: str, statement: str) -> None:
        import asyncpg

        async def run() -> None:
            connection = await asyncpg.connect(
                f"postgresql://postgres@127.0.0.1:{self.node_ports[node]}/gateway", timeout=5)
            try:
                await connection.execute(statement)
            finally:
                await connection.close()

        asyncio.run(run())

    def wait_for(self, wanted: dict[str, str], timeout: float,
                 checkpoint_on: str | None = None) -> None:
        deadline = time.monotonic() + timeout
        while True:
            states = self.states()
            if all(states.get(name, ("", ""))[0] == state == states[name][1]
                   for name, state in wanted.items()):
                return
            if checkpoint_on:
                # pg_autoctl's pg_basebackup asks for a spread checkpoint (minutes on an idle
                # test cluster); an immediate one requested meanwhile finishes it at once.
                with contextlib.suppress(Exception):
                    self.sql(checkpoint_on, "CHECKPOINT")
            for name, keeper in self.keepers.items():
                assert keeper.poll() is None, f"pg_autoctl {name} exited: {self.log(name)}"
                # (a keeper that exits is restarted by nobody: fail at once with its log)
            assert time.monotonic() < deadline, (
                f"formation not {wanted} after {timeout} s: {states}\n"
                + "\n".join(f"--- {name}\n{self.log(name)}" for name in self.keepers))
            time.sleep(0.3)

    def kill(self, name: str) -> None:
        """The node's machine is gone: keeper, postmaster and backends, at once."""
        os.killpg(self.keepers[name].pid, signal.SIGKILL)
        self.keepers[name].wait()

    def log(self, name: str) -> str:
        path = self.root / f"{name}.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def stop(self) -> None:
        for keeper in reversed(list(self.keepers.values())):  # nodes first, the monitor last
            if keeper.poll() is None:
                os.killpg(keeper.pid, signal.SIGTERM)
        for keeper in self.keepers.values():
            try:
                keeper.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(keeper.pid, signal.SIGKILL)
                keeper.wait()
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="module")
def formation() -> Iterator[Formation]:
    bindir = find_bindir()
    if bindir is None or shutil.which("pg_autoctl") is None \
            or not list(Path("/usr/lib/postgresql").glob("*/lib/pgautofailover.so")):
        pytest.skip("pg_auto_failover not installed: apt-get install pg-auto-failover-cli "
                    "postgresql-NN-auto-failover (scripts/install-test-deps.sh does)")
    root = Path(tempfile.mkdtemp(prefix="gateway-pgaf-"))  # not pytest's: 0700 root-owned
    run_as: dict[str, Any] = {}
    if os.geteuid() == 0:  # PostgreSQL refuses root: run everything as `postgres`
        user = pwd.getpwnam("postgres")
        os.chown(root, user.pw_uid, user.pw_gid)
        run_as = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
    cluster = Formation(root, bindir, run_as)
    try:
        cluster.start_monitor()
        cluster.add_node("node1")
        cluster.wait_for({"node1": "single"}, 60)
        cluster.add_node("node2")
        cluster.wait_for({"node1": "primary", "node2": "secondary"}, 90, checkpoint_on="node1")
        yield cluster
    finally:
        cluster.stop()


RETRY = "503 ServiceUnavailable retry-after"  # what a request failed by the failover answers


def answer(exc: ClientError) -> str:
    """The S3 answer of a failed request: status, code, whether it said when to retry."""
    response = exc.response
    retry = " retry-after" if response["ResponseMetadata"]["HTTPHeaders"].get("retry-after") \
        else ""
    return (f"{response['ResponseMetadata']['HTTPStatusCode']} "
            f"{response.get('Error', {}).get('Code', '')}{retry}")


@dataclass
class Outcome:
    started: float
    ended: float
    kind: str  # "put" or "get"
    ok: bool
    error: str = ""


def test_gateway_serves_again_after_the_primary_is_killed(
        formation: Formation, tmp_path: Path) -> None:
    config = {"metadata": {"backend": "postgres", "dsn": formation.dsn()}}
    log = tmp_path / "gw" / "gateway.log"
    with contextlib.ExitStack() as stack:
        try:
            gateway = stack.enter_context(start_gateway(tmp_path / "gw", config=config, timeout=60))
        except RuntimeError as exc:
            raise AssertionError(f"{exc}: {log.read_text()[-3000:]}") from None
        client_config = {"connect_timeout": 5, "read_timeout": 60}
        setup = gateway.client(**client_config)
        bucket = f"failover-{uuid.uuid4().hex[:8]}"
        setup.create_bucket(Bucket=bucket)

        acknowledged: dict[str, str] = {}  # key -> md5 of the bytes, for every PUT answered 200
        refused: dict[str, str] = {}  # the same for every PUT that failed
        outcomes: list[Outcome] = []
        lock = threading.Lock()
        stop = threading.Event()

        def worker(number: int) -> None:
            s3 = gateway.client(**client_config)
            mine: list[str] = []
            for i in range(100_000):
                if stop.is_set():
                    return
                key, body = f"w{number}/k{i:06d}", os.urandom(1024 + i % 3072)
                started = time.monotonic()
                try:
                    s3.put_object(Bucket=bucket, Key=key, Body=body)
                except ClientError as exc:  # an S3 error: a clean failure
                    outcome = Outcome(started, time.monotonic(), "put", False, answer(exc))
                    with lock:
                        refused[key] = hashlib.md5(body).hexdigest()
                except Exception as exc:  # a reset connection, a timeout: not clean
                    outcome = Outcome(started, time.monotonic(), "put", False,
                                      f"UNCLEAN {type(exc).__name__}")
                else:
                    outcome = Outcome(started, time.monotonic(), "put", True)
                    mine.append(key)
                    with lock:
                        acknowledged[key] = hashlib.md5(body).hexdigest()
                with lock:
                    outcomes.append(outcome)
                if mine:  # read back one of this worker's acknowledged writes
                    key = mine[i % len(mine)]
                    started = time.monotonic()
                    try:
                        got = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
                        assert hashlib.md5(got).hexdigest() == acknowledged[key], key
                        outcome = Outcome(started, time.monotonic(), "get", True)
                    except ClientError as exc:
                        outcome = Outcome(started, time.monotonic(), "get", False, answer(exc))
                    except AssertionError:
                        raise
                    except Exception as exc:
                        outcome = Outcome(started, time.monotonic(), "get", False,
                                          f"UNCLEAN {type(exc).__name__}")
                    with lock:
                        outcomes.append(outcome)

        workers = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
        for thread in workers:
            thread.start()
        try:
            time.sleep(2)  # steady load on the first primary
            killed_at = time.monotonic()
            formation.kill("node1")
            # Load continues until the gateway has acknowledged writes again for 3 s.
            deadline = killed_at + SERVE_AGAIN_BOUND + 10
            while time.monotonic() < deadline:
                time.sleep(0.5)
                with lock:
                    failures = [o for o in outcomes if not o.ok and o.ended >= killed_at]
                    last_failure = max((o.ended for o in failures), default=killed_at)
                    healthy = [o for o in outcomes if o.ok and o.kind == "put"
                               and o.started > last_failure]
                if healthy and time.monotonic() - healthy[0].ended > 3:
                    break
        finally:
            stop.set()
            for thread in workers:
                thread.join(120)

        with lock:
            after = [o for o in outcomes if o.ended >= killed_at]
            failures = [o for o in after if not o.ok]
            last_failure = max((o.ended for o in failures), default=killed_at)
            recovered = [o for o in after if o.ok and o.kind == "put" and o.started > last_failure]
        assert recovered, f"no write acknowledged after the kill; failures: {failures[-5:]}"
        serve_again = recovered[0].ended - killed_at
        errors = sorted({o.error for o in failures})
        print(f"\nfailover: {len(failures)} requests failed ({errors}), last failure "
              f"{last_failure - killed_at:.1f} s after the kill; writes acknowledged again "
              f"{serve_again:.1f} s after it; {len(acknowledged)} writes acknowledged in all")
        assert not [e for e in errors if e.startswith("UNCLEAN")], errors
        # The metadata store's outage is the client's "try again", not an internal error.
        assert set(errors) <= {RETRY}, errors
        assert serve_again < SERVE_AGAIN_BOUND
        assert formation.states().get("node2", ("", ""))[0] in ("wait_primary", "primary")

        # No acknowledged write is lost: each reads back with its bytes, through the new primary.
        reader = gateway.client(**client_config)
        for key, digest in acknowledged.items():
            got = reader.get_object(Bucket=bucket, Key=key)["Body"].read()
            assert hashlib.md5(got).hexdigest() == digest, key
        # A failed PUT left nothing, or (its commit reached the server just before the
        # connection was lost: the client cannot know, and retries) the whole object.
        in_doubt = 0
        for key, digest in refused.items():
            try:
                got = reader.get_object(Bucket=bucket, Key=key)["Body"].read()
            except ClientError as exc:
                assert exc.response["Error"]["Code"] == "NoSuchKey", (key, exc.response)
                continue
            assert hashlib.md5(got).hexdigest() == digest, key
            in_doubt += 1
        print(f"failed PUTs: {len(refused)}, of which committed all the same: {in_doubt}")


def test_a_host_that_never_answers_does_not_hide_the_primary(
        formation: Formation, tmp_path: Path) -> None:
    """A lost machine swallows packets rather than refusing: the first host of the DSN here
    accepts TCP connections and never says a word. Each host has its own connect timeout
    (gateway.metadata.postgres.CONNECT_TIMEOUT_PER_HOST), so the gateway still reaches the
    primary; with one timeout for all hosts (asyncpg's own) it would never get past the first."""
    from gateway.metadata.postgres import CONNECT_TIMEOUT_PER_HOST

    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(64)  # the kernel completes handshakes; nobody ever reads
        config = {"metadata": {"backend": "postgres",
                               "dsn": formation.dsn(first=(silent.getsockname()[1],))}}
        started = time.monotonic()
        with start_gateway(tmp_path / "gw", config=config, timeout=60) as gateway:
            ready = time.monotonic() - started
            s3 = gateway.client(connect_timeout=5, read_timeout=60)
            bucket = f"silent-{uuid.uuid4().hex[:8]}"
            s3.create_bucket(Bucket=bucket)
            s3.put_object(Bucket=bucket, Key="k", Body=b"through the primary")
            assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"through the primary"
    print(f"\nsilent first host: gateway ready in {ready:.1f} s "
          f"(per-host connect timeout {CONNECT_TIMEOUT_PER_HOST:.0f} s)")
    assert ready < 4 * CONNECT_TIMEOUT_PER_HOST + 10
