"""Several worker processes on one machine (config.json "workers": N, or S3_WORKERS).

A pre-forking parent does everything that must happen once, then forks N workers that each run
the ordinary gateway (gateway/server.py serve()) on sockets the parent bound:

- Start-up checks (config, TLS files, ports in use) in the parent, before any worker: a mistake
  is one line and exit 2, as with one process. A worker that cannot start (strict health
  check, metadata store down) reports its one line through a pipe; the parent shows the first
  and stops the others.
- Listening sockets: the parent binds, per port (S3, health/metrics, console), one socket per
  worker slot with SO_REUSEPORT, and keeps them. Why not one shared socket: every worker's
  epoll would wake for every connection and asyncio accepts a burst at once, so one busy
  worker takes most of them; with one SO_REUSEPORT socket per worker the kernel spreads
  connections evenly over the accept queues. Why bound in the parent (not by each worker):
  the port is checked once, no stranger running as the same user can slip into the group
  later, and a slot's socket outlives its worker: connections that arrive while a killed
  worker is replaced wait in its queue instead of being refused.
- Crash recovery (gateway/objects/engine.py recover_crashed) runs in the parent before the
  first fork, when no worker can hold an intent or a claim; workers then only reclaim
  intents older than storage.intentGraceSeconds, as gateways sharing PostgreSQL do, so a
  restarted worker never takes a live sibling's writes for a crashed one's.
- Supervision: a worker that dies is started again (backing off if it dies at once);
  SIGTERM/SIGINT are passed on, each worker drains (the usual graceful stop) and the parent
  exits when all are gone.

Inside the workers (WorkerRole): one leader, the worker holding an flock on a file in the
run folder (handed over within a fraction of a second when it dies), runs the health checks'
loops, the collector's periodic rounds and the job runner. Every check's result is written to
a small file per location in the run folder, which every worker follows, so /health and the
fast 503 of a down location answer the same in all of them. Metrics: prometheus_client's
multiprocess mode (values in files of the run folder, summed at scrape by whichever worker
answers). Caches: SQLite's are checked against PRAGMA data_version (gateway/metadata/sqlite.py
shared=True); PostgreSQL's store has none.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import fcntl
import json
import logging
import os
import selectors
import shutil
import signal
import socket
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway.processes import pid_alive

if TYPE_CHECKING:
    from aiohttp import web

    from gateway.config import Settings
    from gateway.locations import Location
    from gateway.server import Gateway

log = logging.getLogger("gateway.workers")

WORKER_HEADER = "x-gateway-worker"  # which worker answered (only with workers > 1)
FOLLOW_SECONDS = 0.25  # how often a worker reads the shared health files / tries to lead
STOP_GRACE = 120.0  # s the parent waits for draining workers before SIGKILL
MAX_BACKOFF = 30.0


# --- inside a worker ------------------------------------------------------------------------
def sessions_db(run_dir: Path) -> Any:
    """The console sessions' file (made by the parent before forking: switching a new file
    to WAL needs it alone)."""
    import sqlite3

    db = sqlite3.connect(run_dir / "console-sessions.sqlite3", isolation_level=None,
                         check_same_thread=False)
    db.execute("PRAGMA busy_timeout=5000")
    db.execute("PRAGMA synchronous=OFF")  # the run folder goes with the gateway
    return db


def make_sessions_db(run_dir: Path) -> None:
    # 0600 before SQLite opens it: its -wal and -shm files take the database file's mode.
    path = run_dir / "console-sessions.sqlite3"
    os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    os.chmod(path, 0o600)
    db = sessions_db(run_dir)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("CREATE TABLE IF NOT EXISTS sessions (id TEXT PRIMARY KEY, "
                   "access TEXT NOT NULL, secret BLOB NOT NULL, account TEXT NOT NULL, "
                   "csrf TEXT NOT NULL, created REAL NOT NULL, expires REAL NOT NULL)")
    finally:
        db.close()


def shared_sessions(base: type, run_dir: Path, key: bytes, idle_seconds: float) -> Any:
    """The console's Sessions (gateway/console/session.py), shared by the workers: the kernel
    sends a browser's connections to any worker, so a session made in one must be found in
    the others. Each session is also a row of a small SQLite file in the run folder, its secret
    sealed (AES-256-GCM) under a key the parent made in memory before forking, never written
    anywhere. A row is keyed by stored_id(id), a hash: the id, the cookie, is never written
    either. Flash messages stay in the worker that made them."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    from gateway.console.s3client import Credentials
    from gateway.console.session import stored_id

    aead = AESGCM(key)

    class SharedSessions(base):  # type: ignore[misc,valid-type]
        def __init__(self) -> None:
            super().__init__(idle_seconds)
            self._db = sessions_db(run_dir)
            self._shared_expiry: dict[str, float] = {}

        def create(self, credentials: Any, account: str) -> Any:
            session = super().create(credentials, account)
            nonce = os.urandom(12)
            sealed = nonce + aead.encrypt(nonce, credentials.secret.encode(),
                                          session.id.encode())
            self._db.execute("INSERT OR REPLACE INTO sessions VALUES (?,?,?,?,?,?,?)",
                             (stored_id(session.id), credentials.access_key, sealed, account,
                              session.csrf, session.created, session.expires))
            self._shared_expiry[session.id] = session.expires
            return session

        def get(self, session_id: str | None) -> Any:
            if session_id and session_id not in self._sessions:
                row = self._db.execute("SELECT access, secret, account, csrf, created, expires "
                                       "FROM sessions WHERE id=?",
                                       (stored_id(session_id),)).fetchone()
                if row is None:
                    return None
                access, sealed, account, csrf, created, expires = row
                try:
                    secret = aead.decrypt(sealed[:12], sealed[12:], session_id.encode()).decode()
                except Exception:
                    return None
                from gateway.console.session import Session

                self._sessions[session_id] = Session(
                    id=session_id, credentials=Credentials(access, secret), account=account,
                    csrf=csrf, created=created, expires=expires)
                self._shared_expiry[session_id] = expires
            elif session_id in self._sessions:
                # Another worker may have slid the expiry meanwhile, or ended the session.
                row = self._db.execute("SELECT expires FROM sessions WHERE id=?",
                                       (stored_id(session_id),)).fetchone()
                if row is None:
                    self._sessions.pop(session_id, None)
                    return None
                local = self._sessions[session_id]
                local.expires = max(local.expires, row[0])
            session = super().get(session_id)
            if session is None:
                if session_id:
                    self._db.execute("DELETE FROM sessions WHERE id=?", (stored_id(session_id),))
                return None
            if session.expires - self._shared_expiry.get(session.id, 0.0) > 30:
                self._db.execute("UPDATE sessions SET expires=? WHERE id=?",
                                 (session.expires, stored_id(session.id)))
                self._shared_expiry[session.id] = session.expires
            return session

        def end(self, session_id: str | None) -> None:
            super().end(session_id)
            if session_id:
                self._db.execute("DELETE FROM sessions WHERE id=?", (stored_id(session_id),))

    return SharedSessions()


@dataclass
class WorkerContext:
    """What the parent hands a worker it forks."""

    index: int
    count: int
    run_dir: Path
    sockets: dict[str, socket.socket]  # "s3", "metrics", "console" -> this slot's socket
    report_fd: int  # pipe to the parent: "ready" or "error CODE LINE"
    first: bool  # the first start of the whole gateway (worker 0 logs the banner)
    session_key: bytes = b""  # seals console sessions shared by the workers (memory only)

    def report(self, line: str) -> None:
        with contextlib.suppress(OSError):
            os.write(self.report_fd, (line.replace("\n", " ") + "\n").encode())


class SharedHealth:
    """Each location's last health check result, one small JSON file per location in the run
    folder: written by whichever worker checked, followed by all."""

    def __init__(self, directory: Path, locations: Any, metrics: Any) -> None:
        self.directory = directory
        self.locations = locations
        self.metrics = metrics
        self._seen: dict[str, int] = {}  # location -> mtime_ns of the file last read
        directory.mkdir(exist_ok=True)

    def _path(self, name: str) -> Path:
        return self.directory / (urllib.parse.quote(name, safe="") + ".json")

    def publish(self, location: Location) -> None:
        """Share `location`'s state: after each check (the leader), and when a worker's breaker
        trips (so every worker fails fast, and /health says down whichever worker answers)."""
        health = location.health
        if health.last_check is None and health.state != "down":
            return
        health.changed = max(health.changed, time.time())
        record = {"state": health.state, "lastCheck": health.last_check,
                  "latency": health.latency, "message": health.message,
                  "changed": health.changed}
        path = self._path(location.name)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        try:
            tmp.write_text(json.dumps(record))
            os.replace(tmp, path)  # readers see the old or the new file, never half of one
        except OSError as exc:
            log.warning("cannot share the health of %s: %s", location.name, exc)

    def share(self, location: Location) -> None:
        """Hook `location` up: its breaker's trips are published, and a worker about to fail
        fast on it reads the shared state first (a stat while it is down: no window where
        one worker still refuses a location another has seen come back)."""
        location.health.shared = lambda: self.publish(location)
        location.health.refresh = lambda: self.follow_one(location)

    def follow(self) -> None:
        """Take every newer result another worker wrote."""
        for location in self.locations:
            self.follow_one(location)

    def follow_one(self, location: Location) -> None:
        path = self._path(location.name)
        try:
            mtime = path.stat().st_mtime_ns
            if self._seen.get(location.name) == mtime:
                return
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            return
        self._seen[location.name] = mtime
        health = location.health
        if record.get("changed", 0.0) <= health.changed:
            return  # this worker's own result, or an older one
        health.state = record["state"]
        health.last_check = record["lastCheck"]
        health.latency = record["latency"]
        health.message = record["message"]
        health.changed = record["changed"]
        if health.state == "up":
            health.consecutive_failures = 0
        if self.metrics is not None:
            value = {"up": 1, "down": 0}.get(health.state, -1)
            self.metrics.location_up.labels(location.name, location.type_name).set(value)


class SharedJobReports:
    """What each worker that ran jobs (the leader, and any earlier one) finished, one small JSON
    file per process in the run folder, summed for /health by whichever worker answers: the
    machine is one gateway, whoever leads now. The lifecycle's transitioned bytes ride along."""

    def __init__(self, directory: Path, runner: Any, lifecycle: Any) -> None:
        self.directory = directory
        self.runner = runner
        self.lifecycle = lifecycle
        directory.mkdir(exist_ok=True)

    def _mine(self) -> dict[str, Any]:
        return {**self.runner.report(), "at": time.time(),
                "moved": [self.lifecycle.moved_bytes, self.lifecycle.moved_seconds]}

    def publish(self) -> None:
        """The leader, after each job: its tallies (written whole, then renamed)."""
        path = self.directory / f"{os.getpid()}.json"
        tmp = path.with_suffix(".tmp")
        try:
            tmp.write_text(json.dumps(self._mine()))
            os.replace(tmp, path)
        except OSError as exc:
            log.warning("cannot share the job tallies: %s", exc)

    def _reports(self) -> list[tuple[int, dict[str, Any]]]:
        """Every process's last report, this one's as of now."""
        reports = []
        for path in self.directory.glob("*.json"):
            with contextlib.suppress(OSError, ValueError):
                reports.append((int(path.stem), json.loads(path.read_text())))
        reports = [(pid, r) for pid, r in reports if pid != os.getpid()]
        reports.append((os.getpid(), self._mine()))
        return reports

    def moved(self) -> tuple[int, float]:
        """The lifecycle's transitioned bytes and seconds, all workers (lifecycle status)."""
        totals = [r.get("moved", [0, 0.0]) for _, r in self._reports()]
        return sum(t[0] for t in totals), sum(t[1] for t in totals)

    def machine(self) -> dict[str, Any]:
        reports = self._reports()
        finished: dict[str, dict[str, int]] = {}
        for _, report in reports:
            for kind, outcomes in report["finishedHere"].items():
                tally = finished.setdefault(kind, {})
                for outcome, n in outcomes.items():
                    tally[outcome] = tally.get(outcome, 0) + n
        live = [(pid, r) for pid, r in reports if pid == os.getpid() or pid_alive(pid)]
        newest = max(reports, key=lambda pr: pr[1]["at"] if pr[1]["lastError"] else 0)[1]
        # The leader's id: this process's when it leads, else the one that reported last.
        leader = self.runner.report() if self.runner.on_finish is not None else \
            max(live, key=lambda pr: (pr[0] != os.getpid(), pr[1]["at"]))[1]
        return {"worker": leader["worker"], "active": sum(r["active"] for _, r in live),
                "finishedHere": finished, "lastError": newest["lastError"]}



class WorkerRole:
    """A worker's part in the whole: leader or follower. Built by the gateway of a worker."""

    def __init__(self, context: WorkerContext) -> None:
        self.context = context
        self.leader = False
        self._lock_fd: int | None = None
        self._task: asyncio.Task[None] | None = None
        self.gateway: Gateway | None = None
        self.health: SharedHealth | None = None
        self.jobs: SharedJobReports | None = None

    async def start(self, gateway: Gateway) -> None:
        """After the gateway started (its engine too): lead if no one does, follow."""
        self.gateway = gateway
        self.health = SharedHealth(self.context.run_dir / "health", gateway.locations,
                                   gateway.metrics)
        gateway.health.on_check = self.health.publish
        self.jobs = SharedJobReports(self.context.run_dir / "jobs", gateway.jobs,
                                     gateway.lifecycle)
        gateway.jobs.machine_report = self.jobs.machine
        gateway.lifecycle.machine_moved = self.jobs.moved
        for location in gateway.locations:  # the start-up flight check's results
            self.health.share(location)
            self.health.publish(location)
        self._lock_fd = os.open(self.context.run_dir / "leader.lock",
                                os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        await self._try_lead()
        self._task = asyncio.create_task(self._loop(), name="worker-role")

    async def _try_lead(self) -> None:
        assert self._lock_fd is not None and self.gateway is not None
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EACCES):
                raise
            return
        self.leader = True
        gateway = self.gateway
        log.info("worker %d (pid %d) leads: health checks, collector rounds, background jobs",
                 self.context.index, os.getpid())
        gateway.health.start()
        gateway.engine.collector.lead()
        gateway.jobs.on_finish = self.jobs.publish
        # Not exclusive: the parent released a crashed run's jobs before the first fork; a
        # dead leader's jobs run again when their leases end.
        await gateway.jobs.start(exclusive_store=False)
        migrations = getattr(gateway, "migrations", None)  # gateway/moving/
        if migrations is not None:
            migrations.start()  # what a previous run (or a dead leader) left

    async def _loop(self) -> None:
        assert self.health is not None
        while True:
            await asyncio.sleep(FOLLOW_SECONDS)
            try:
                self.health.follow()
                if not self.leader:
                    await self._try_lead()
            except Exception as exc:  # one bad round must not end the follower
                log.warning("worker %d: %s: %s", self.context.index, type(exc).__name__, exc)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        # The lock goes with the process; held until the gateway's services have stopped.

    def share_console_sessions(self, console: Any) -> None:
        """Swap the console's in-memory sessions for ones every worker finds."""
        console.sessions = shared_sessions(type(console.sessions), self.context.run_dir,
                                           self.context.session_key,
                                           console.sessions.idle_seconds)

    async def tag_response(self, request: web.Request, response: web.StreamResponse) -> None:
        """on_response_prepare: which worker answered (tests, and an operator's curl -v)."""
        response.headers[WORKER_HEADER] = str(self.context.index)


def _die_with_parent() -> None:
    """Linux: SIGTERM this worker when the parent dies (kill -9 of the parent must not leave
    workers serving on their own)."""
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def worker_main(context: WorkerContext, env: dict[str, str]) -> int:
    """A forked worker: serve until SIGTERM/SIGINT; the exit status."""
    _die_with_parent()
    # Metrics of this process go to files the parent's other workers read too (the
    # environment variable was set before the fork, for prometheus_client and Metrics.render).
    from prometheus_client import values

    shared_value = values.MultiProcessValue()

    class WorkerValue(shared_value):  # type: ignore[misc,valid-type]
        """A gauge that names no multiprocess mode shows the value last set by any worker
        (not one series per pid): the gauges here are set from the shared store at scrape
        time, or by the leader alone."""

        def __init__(self, typ: str, metric_name: str, name: str, labelnames: Any,
                     labelvalues: Any, help_text: str, multiprocess_mode: str = "",
                     **kwargs: Any) -> None:
            self._latest = typ == "gauge" and multiprocess_mode in ("", "all")
            super().__init__(typ, metric_name, name, labelnames, labelvalues, help_text,
                             "mostrecent" if self._latest else multiprocess_mode, **kwargs)

        def set(self, value: float, timestamp: float | None = None) -> None:
            if self._latest and timestamp is None:
                timestamp = time.time()
            super().set(value, timestamp)

    values.ValueClass = WorkerValue
    from gateway.errors import ConfigFileError
    from gateway.server import StartupError, configure_logging, flush_logging, serve

    root = logging.getLogger()
    for handler in list(root.handlers):  # the parent's plain handler: ours has a thread
        root.removeHandler(handler)
    configure_logging((env.get("LOG_LEVEL") or "info").upper())
    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await serve(env, stop, worker=context)

    try:
        asyncio.run(main())
        return 0
    except ConfigFileError as err:
        context.report(f"error 2 bad config: {err}")
        return 2
    except StartupError as err:
        context.report(f"error {err.exit_code} cannot start: {err}")
        return err.exit_code
    except Exception:
        log.exception("worker %d failed", context.index)
        return 1
    finally:
        flush_logging()


# --- the parent -----------------------------------------------------------------------------
@dataclass
class Slot:
    index: int
    sockets: dict[str, socket.socket]
    pid: int | None = None
    report_fd: int | None = None
    started: float = 0.0
    ready: bool = False
    failures: int = 0  # quick deaths in a row (back-off)
    restart_at: float | None = None
    buffer: bytes = b""


@dataclass
class Supervisor:
    settings: Settings
    env: dict[str, str]
    count: int
    run_dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="s3gw-workers-")))
    slots: list[Slot] = field(default_factory=list)
    stopping: bool = False
    serving: bool = False  # every worker was ready once
    # Seals the console's shared sessions: made here, inherited by the forks, never stored.
    session_key: bytes = field(default_factory=lambda: os.urandom(32), repr=False)
    error: tuple[int, str] | None = None

    # --- set-up -----------------------------------------------------------------------------
    def bind(self) -> None:
        """Every listening socket, one per worker per port, before any other work."""
        from gateway.server import check_port_free, listen_failure, port_setting

        settings = self.settings
        ports = [("s3", settings.port, port_setting(settings, "port", "S3PORT"))]
        if settings.metrics_port:
            ports.append(("metrics", settings.metrics_port,
                          port_setting(settings, "metricsPort", None)))
        if settings.console.enabled and settings.console.port:
            ports.append(("console", settings.console.port,
                          port_setting(settings, "console.port", None)))
        for _, port, setting in ports:  # taken by anyone else: one line, exit 2
            check_port_free(settings, settings.listen_on, port, setting)
        from gateway.server import ListenError

        self.slots = [Slot(index, {}) for index in range(self.count)]
        for name, port, setting in ports:
            for slot in self.slots:
                try:
                    slot.sockets[name] = reuseport_socket(settings.listen_on, port)
                except OSError as exc:
                    raise ListenError(listen_failure(settings, settings.listen_on, port,
                                                     setting, exc)) from None

    def recover(self) -> None:
        """Crash recovery of the previous run, once, while no worker runs."""
        from gateway.objects.engine import recover_crashed
        from gateway.server import make_metadata

        async def run() -> None:
            store = make_metadata(self.settings)
            await store.open()
            try:
                exclusive = self.settings.metadata_backend == "sqlite"
                await recover_crashed(store, self.settings.storage, exclusive=exclusive)
                if exclusive:  # as JobRunner.start(exclusive_store=True) does with one process
                    released = await store.release_jobs()
                    if released:
                        log.warning("released %d job(s) a crashed run held", released)
            finally:
                await store.close()

        asyncio.run(run())

    # --- workers ----------------------------------------------------------------------------
    def spawn(self, slot: Slot) -> None:
        if slot.report_fd is not None:  # the previous worker's pipe
            self.selector.unregister(slot.report_fd)
            os.close(slot.report_fd)
            slot.report_fd = None
        read_fd, write_fd = os.pipe()
        first = not self.serving
        pid = os.fork()
        if pid == 0:  # the worker
            status = 1
            try:
                os.close(read_fd)
                signal.set_wakeup_fd(-1)
                for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD, signal.SIGHUP):
                    signal.signal(sig, signal.SIG_DFL)
                for other in self.slots:  # only this slot's sockets and pipe stay open
                    if other is not slot:
                        for sock in other.sockets.values():
                            sock.close()
                    if other.report_fd is not None:
                        os.close(other.report_fd)
                context = WorkerContext(slot.index, self.count, self.run_dir, slot.sockets,
                                        write_fd, first, self.session_key)
                status = worker_main(context, self.env)
            finally:
                os._exit(status)
        os.close(write_fd)
        os.set_blocking(read_fd, False)
        slot.pid, slot.report_fd, slot.started, slot.ready = pid, read_fd, time.monotonic(), False
        slot.buffer, slot.restart_at = b"", None

    def on_report(self, slot: Slot) -> bool:
        """Read what the worker reported; False when there was nothing (more) to read."""
        if slot.report_fd is None:
            return False
        try:
            data = os.read(slot.report_fd, 4096)
        except BlockingIOError:
            return False
        if not data:  # the worker closed its end (it exited)
            self.selector.unregister(slot.report_fd)
            os.close(slot.report_fd)
            slot.report_fd = None
            return False
        slot.buffer += data
        while b"\n" in slot.buffer:
            line, slot.buffer = slot.buffer.split(b"\n", 1)
            text = line.decode(errors="replace")
            if text == "ready":
                slot.ready = True
                if not self.serving and all(s.ready for s in self.slots):
                    self.serving = True
                    log.info("%d workers serving (pids %s)", self.count,
                             ", ".join(str(s.pid) for s in self.slots))
            elif text.startswith("error ") and not self.serving and self.error is None:
                code, _, message = text[6:].partition(" ")
                self.error = (int(code) if code.isdigit() else 3, message)
        return True

    def reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            slot = next((s for s in self.slots if s.pid == pid), None)
            if slot is None:
                continue
            slot.pid = None
            while self.on_report(slot):  # its last words (an error line) first
                pass
            with contextlib.suppress(Exception):
                from prometheus_client import multiprocess

                multiprocess.mark_process_dead(pid)  # its "live" gauges go
            if self.stopping:
                continue
            how = (f"was killed by signal {os.WTERMSIG(status)}" if os.WIFSIGNALED(status)
                   else f"exited with status {os.WEXITSTATUS(status)}")
            if not self.serving:  # a start-up failure: the whole gateway stops
                if self.error is None:
                    self.error = (os.WEXITSTATUS(status) or 3 if os.WIFEXITED(status) else 3,
                                  f"cannot start: worker {slot.index} {how}")
                continue
            quick = time.monotonic() - slot.started < 5.0
            slot.failures = slot.failures + 1 if quick else 0
            delay = 0.0 if not slot.failures else min(MAX_BACKOFF, 0.5 * 2 ** slot.failures)
            log.warning("worker %d (pid %d) %s: starting it again%s", slot.index, pid, how,
                        f" in {delay:g}s" if delay else "")
            slot.restart_at = time.monotonic() + delay

    def stop_all(self, sig: int = signal.SIGTERM) -> None:
        for slot in self.slots:
            if slot.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(slot.pid, sig)

    def close_sockets(self) -> None:
        for slot in self.slots:
            for sock in slot.sockets.values():
                sock.close()

    # --- the loop ---------------------------------------------------------------------------
    def run(self) -> int:
        self.selector = selectors.DefaultSelector()
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_r, False)
        os.set_blocking(wake_w, False)
        signal.set_wakeup_fd(wake_w)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD, signal.SIGHUP):
            signal.signal(sig, lambda *_: None)  # the wake-up fd carries the signal number
        self.selector.register(wake_r, selectors.EVENT_READ, None)
        deadline: float | None = None
        try:
            for slot in self.slots:
                self.spawn(slot)
                self.selector.register(slot.report_fd, selectors.EVENT_READ, slot)
            while True:
                if self.error is not None and not self.stopping:
                    self.begin_stop()
                    deadline = time.monotonic() + 10.0
                if self.stopping and all(s.pid is None for s in self.slots):
                    break
                now = time.monotonic()
                if deadline is not None and now > deadline:
                    log.warning("workers still running after %gs: killing them",
                                STOP_GRACE if self.error is None else 10.0)
                    self.stop_all(signal.SIGKILL)
                    deadline = None
                timeout = 1.0
                for slot in self.slots:
                    if slot.restart_at is not None and not self.stopping:
                        if slot.restart_at <= now:
                            self.spawn(slot)
                            self.selector.register(slot.report_fd, selectors.EVENT_READ, slot)
                        else:
                            timeout = min(timeout, slot.restart_at - now)
                for key, _ in self.selector.select(max(0.0, timeout)):
                    if key.data is None:
                        signals = os.read(wake_r, 512)
                        if {signal.SIGTERM, signal.SIGINT, signal.SIGHUP} & set(signals) \
                                and not self.stopping:
                            self.begin_stop()
                            deadline = time.monotonic() + STOP_GRACE
                    else:
                        self.on_report(key.data)
                self.reap()
        finally:
            signal.set_wakeup_fd(-1)
            self.close_sockets()
            shutil.rmtree(self.run_dir, ignore_errors=True)
        if self.error is not None:
            from gateway.server import flush_logging

            flush_logging()
            print(f"gateway: {self.error[1]}", file=sys.stderr)
            return self.error[0]
        log.info("all %d workers stopped", self.count)
        return 0

    def begin_stop(self) -> None:
        """Every worker drains (its graceful stop); no new connection is accepted."""
        self.stopping = True
        if self.error is None:
            log.info("stopping: %d workers finish the requests in flight", self.count)
        self.stop_all(signal.SIGTERM)
        # The parent's copies go now: once a worker closed its own, the port refuses.
        self.close_sockets()


def reuseport_socket(host: str, port: int) -> socket.socket:
    infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM,
                               flags=socket.AI_PASSIVE)
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(address)
        # No listen() here: each worker's server listens once it is ready, so connections
        # go only to workers that serve (a slot keeps listening while its worker restarts).
        sock.set_inheritable(True)
    except BaseException:
        sock.close()
        raise
    return sock


def supervise(env: Mapping[str, str], settings: Settings) -> int:
    """`python -m gateway` with workers > 1: the parent's whole life; its exit status."""
    from gateway.accounts import load_accounts, load_master_key
    from gateway.crypto import LocalKeyring
    from gateway.locations import Locations
    from gateway.tls import server_context

    # Every mistake a worker would find refuses now, once, with its one line: certificates,
    # accounts, each location's details. The key files a first start makes are made here,
    # before any worker can race for them.
    server_context(settings)
    load_accounts(settings.authdata_path, settings.env)
    Locations(settings.locations, {**settings.env, "S3DURABILITY": settings.storage.durability},
              settings.rest_endpoints, str(settings.location_path))
    load_master_key(settings.master_key_path)
    LocalKeyring(settings.encryption.keyring_path)
    logging.basicConfig(level=getattr(logging, settings.log_level, logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    supervisor = Supervisor(settings, dict(env), settings.workers)
    try:
        supervisor.bind()
        # Metrics: every worker's values in files here, summed at scrape (Metrics.render).
        metrics_dir = supervisor.run_dir / "metrics"
        metrics_dir.mkdir()
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
        supervisor.env["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
        make_sessions_db(supervisor.run_dir)
        if settings.metadata_backend == "sqlite":  # held by every fork, until the last goes
            from gateway.server import claim_sqlite_store

            claim_sqlite_store(settings)
        supervisor.recover()
    except BaseException:
        supervisor.close_sockets()
        shutil.rmtree(supervisor.run_dir, ignore_errors=True)
        raise
    log.info("starting %d workers (pid %d supervises)", supervisor.count, os.getpid())
    return supervisor.run()
