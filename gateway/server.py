"""Assembling and running the gateway: settings -> accounts, metadata, locations, health -> HTTP."""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import gc
import logging
import logging.handlers
import os
import queue
import signal
import time
from collections.abc import Mapping
from pathlib import Path

from aiohttp import web

from gateway import accesslog
from gateway.accounts import AccountStore, load_accounts, load_master_key
from gateway.config import Settings, load_settings
from gateway.connections import HANDLER_ARGS, ConnectionGuard, GuardedSite, connection_limits
from gateway.console import Console
from gateway.crypto import Encryption, LocalKeyring
from gateway.crypto.sse import set_arn_region
from gateway.health.endpoints import HealthEndpoints
from gateway.health.metrics import Metrics
from gateway.health.monitor import HealthMonitor
from gateway.jobs import JobRunner
from gateway.lifecycle.service import Lifecycle
from gateway.locations import Locations
from gateway.metadata.base import MetadataStore
from gateway.moving import Migrations
from gateway.moving.importer import Imports
from gateway.moving.mirror_repair import MirrorRepairs
from gateway.moving.read_through import ReadThrough
from gateway.objects import Engine
from gateway.s3.front import Front, add_request_id
from gateway.s3.xml import MAX_XML_BODY
from gateway.tls import server_context
from gateway.workers import WorkerContext, WorkerRole

log = logging.getLogger("gateway")


def make_metadata(settings: Settings) -> MetadataStore:
    if settings.metadata_backend == "postgres":
        from gateway.metadata.postgres import PostgresStore

        assert settings.postgres_dsn is not None
        return PostgresStore(settings.postgres_dsn)
    from gateway.metadata.sqlite import SQLiteStore

    return SQLiteStore(settings.metadata_path, durable=settings.storage.durability == "durable",
                       shared=settings.workers > 1)  # several worker processes write the file


class Gateway:
    """The services every operation uses. Built from settings; no I/O until start()."""

    def __init__(self, settings: Settings, worker: WorkerContext | None = None) -> None:
        self.settings = settings
        self.log = log
        # workers > 1 (gateway/workers.py): this process is one of several; its role decides
        # whether it runs the health checks, the collector's rounds and the jobs.
        self.worker: WorkerRole | None = WorkerRole(worker) if worker is not None else None
        self.accounts: AccountStore = load_accounts(settings.authdata_path, settings.env)
        # Translators read the durability choice from their environment (file: fsync or not).
        location_env = {**settings.env, "S3DURABILITY": settings.storage.durability}
        self.locations = Locations(settings.locations, location_env, settings.rest_endpoints,
                                   str(settings.location_path))
        self.metadata = make_metadata(settings)
        self.store_claim: int | None = None  # SQLite: this gateway's lock on the store
        # With workers the parent did the exclusive recovery before forking them.
        self.engine = Engine(self.metadata, self.locations, settings.storage,
                             exclusive_store=settings.metadata_backend == "sqlite"
                             and self.worker is None)
        if self.worker is not None:
            self.engine.collector.periodic = False  # the leader's (WorkerRole)
        self.metrics = Metrics()
        for location in self.locations:
            location.metrics = self.metrics
        self.health = HealthMonitor(self.locations, settings.health, self.metrics)
        self.health_endpoints = HealthEndpoints(self)
        self.front = Front(self, list(settings.rest_endpoints))
        # The web console (gateway/console/), None when config.json turns it off.
        self.console: Console | None = Console(self) if settings.console.enabled else None
        if self.console is not None and self.worker is not None:
            self.worker.share_console_sessions(self.console)  # any worker finds a session
        # Background jobs (gateway/jobs/) and the lifecycle rules they run (gateway/lifecycle/).
        self.jobs = JobRunner(self.metadata, settings.jobs, self.metrics)
        self.lifecycle = Lifecycle(self.engine, self.jobs, settings.lifecycle,
                                   settings.storage_classes, self.metrics)
        # Online bucket migration (gateway/moving/): its job kinds run on the same runner.
        self.migrations = Migrations(self.engine, self.jobs, settings.storage_classes,
                                     lambda: [a.canonical_id for a in self.accounts.accounts],
                                     self.metrics)
        # Mirror locations: "mirror.repair" jobs copy pieces to members that lack them.
        self.mirror_repairs = MirrorRepairs(self.locations, self.jobs)
        # Import and read-through (gateway/moving/importer.py, read_through.py): job kinds too.
        self.imports = Imports(self.engine, self.jobs, self.accounts)
        self.read_through = ReadThrough(self.engine, self.jobs, settings.read_through)

    async def start(self) -> None:
        if self.settings.metadata_backend == "sqlite" and self.worker is None:
            self.store_claim = claim_sqlite_store(self.settings)  # workers: the parent's
        await self.metadata.open()
        # Runtime accounts (python -m gateway accounts): loaded now, then polled.
        await self.accounts.start(self.metadata, load_master_key(self.settings.master_key_path),
                                  self.settings.accounts_refresh)
        await self.locations.open()
        down = await self.health.flight_check()
        for location in down:
            log.warning("location %s (%s) is DOWN at start-up: %s", location.name,
                        location.type_name, location.health.message)
        if down and self.settings.health.startup == "strict":
            names = ", ".join(loc.name for loc in down)
            raise StartupError(f"healthChecks.startup is strict and locations are down: {names}")
        if self.worker is None:  # workers: the leader's (WorkerRole)
            self.health.start()
        # Encryption at rest (gateway/crypto/): the embedded KMS's keyring, made on first start.
        self.engine.encryption = Encryption(LocalKeyring(self.settings.encryption.keyring_path))
        set_arn_region(self.settings.region)  # KMS key ARNs name the gateway's region
        await self.engine.start()
        # After the engine: jobs act through it.
        if self.worker is None:
            await self.jobs.start(exclusive_store=self.settings.metadata_backend == "sqlite")
        else:  # lead (health checks, collector rounds, jobs) if no sibling does, follow
            await self.worker.start(self)
        if self.worker is None:  # workers: the leader's (WorkerRole)
            self.migrations.start()  # gateway/moving/: what a previous run left (background)

    async def stop(self) -> None:
        if self.worker is not None:
            await self.worker.stop()
        await self.jobs.stop()  # unfinished jobs' claims expire: they run again later
        await self.accounts.stop()
        if self.console is not None:
            await self.console.close()
        await self.engine.stop()
        await self.health.stop()
        await self.locations.close()
        await self.metadata.close()
        if self.store_claim is not None:
            os.close(self.store_claim)
            self.store_claim = None

    def app(self) -> web.Application:
        # client_max_size only bounds bodies read whole (XML), at the XML parser's own limit
        # so memory stays bounded; the front answers a bigger one as the parser would.
        # Object bodies are streamed and never meet it.
        app = web.Application(client_max_size=MAX_XML_BODY + 1, handler_args=HANDLER_ARGS)
        if self.console is not None:  # /_/console/...: no bucket name starts with "_"
            self.console.add_routes(app.router)
        # [\s\S], not ".": a key may hold a newline (%0A), which "." does not match.
        # Expect: 100-continue is answered by the front, which refuses what it can first.
        app.router.add_route("*", "/{tail:[\\s\\S]*}", self.front.handle,
                             expect_handler=self.front.expect_continue)
        app.on_response_prepare.append(add_request_id)
        if self.worker is not None:
            app.on_response_prepare.append(self.worker.tag_response)
        return app


class StartupError(Exception):
    """The gateway cannot start; the message is the one line to show."""

    exit_code = 3


def claim_sqlite_store(settings: Settings) -> int:
    """The lock that makes this gateway the SQLite store's only one (see claim_store)."""
    from gateway.metadata.sqlite import StoreInUse, claim_store

    try:
        return claim_store(settings.metadata_path)
    except StoreInUse as exc:
        raise StartupError(str(exc)) from None


# --- listeners: TLS, ports taken, the start-up banner (gateway/tls.py) ------------------------
class ListenError(StartupError):
    """A listener cannot open (port taken, address not here): exit 2, like bad config."""

    exit_code = 2


def port_setting(settings: Settings, key: str, env_name: str | None) -> str:
    """Where a listener's port (or address) was set, for the one-line error."""
    if env_name and settings.env.get(env_name):
        return f"environment variable {env_name}"
    return f'{settings.config_path or "config.json"} key "{key}"'


def check_port_free(settings: Settings, host: str, port: int, setting: str) -> None:
    """Refuse before start-up work when a listener's port is taken (the real bind below
    still reports a race)."""
    import socket

    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ListenError(f"{port_setting(settings, 'listenOn', 'LISTEN_ADDR')}: cannot "
                          f"listen on {host!r}: {exc.strerror}") from None
    for family, kind, proto, _, address in infos:
        with socket.socket(family, kind, proto) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(address)
            except OSError as exc:
                raise ListenError(listen_failure(settings, host, port, setting, exc)) from None


def listen_failure(settings: Settings, host: str, port: int, setting: str,
                   exc: OSError) -> str:
    import errno

    where = f"{host}:{port}" if ":" not in host else f"[{host}]:{port}"
    if exc.errno == errno.EADDRINUSE:
        return f"{setting}: {where} is already in use (another gateway or program listens there)"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return f"{setting}: {where}: permission denied (ports below 1024 need privileges)"
    if exc.errno == errno.EADDRNOTAVAIL:
        return (f"{port_setting(settings, 'listenOn', 'LISTEN_ADDR')}: {host} is not an "
                "address of this machine")
    return f"{setting}: cannot listen on {where}: {exc.strerror or exc}"


async def start_site(site: web.TCPSite, settings: Settings, port: int, setting: str) -> None:
    try:
        await site.start()
    except OSError as exc:
        raise ListenError(listen_failure(settings, settings.listen_on, port, setting,
                                         exc)) from None


def listener_url(scheme: str, host: str, port: int) -> str:
    return f"{scheme}://{f'[{host}]' if ':' in host else host}:{port}"


def log_banner(settings: Settings, gateway: Gateway, listeners: list[tuple[str, str]]) -> None:
    """What runs where and how to begin, once every listener is open."""
    from urllib.parse import urlsplit

    log.info("gateway ready: %s", "; ".join(f"{what} on {url}" for what, url in listeners))
    if settings.metadata_backend == "postgres":
        dsn = urlsplit(settings.postgres_dsn or "")
        # netloc, not hostname/port: a multi-host DSN (a,b:5433) has no single port.
        where = f"postgres {dsn.netloc.rpartition('@')[2]}{dsn.path}"  # no password
    else:
        where = f"sqlite {(settings.metadata_path / 'metadata.sqlite3').resolve()}"
    data = settings.env.get("S3DATAPATH") or "./localData"
    log.info("  data: file locations under %s; metadata: %s; locations: %s",
             Path(data).resolve(), where,
             ", ".join(f"{loc.name} ({loc.type_name})" for loc in gateway.locations))
    seed = ("SCALITY_ACCESS_KEY_ID" if gateway.accounts.seed_source == "env"
            else str(settings.authdata_path))
    log.info("  accounts: %d (seed: %s; more: python -m gateway accounts add NAME)",
             len(gateway.accounts.accounts), seed)
    endpoint = listeners[0][1].replace("://0.0.0.0:", "://127.0.0.1:")
    log.info("  get started: aws --endpoint-url %s s3 mb s3://my-bucket   (python -m gateway "
             "--help; README.md: every client)", endpoint.replace("://[::]:", "://[::1]:"))
# --- end of listeners ---------------------------------------------------------------------


async def metrics_site_handler(gateway: Gateway, request: web.Request) -> web.StreamResponse:
    response = await gateway.health_endpoints.handle(request, request.path)
    return response if response is not None else web.Response(status=404)


class DeferredQueueHandler(logging.handlers.QueueHandler):
    """Hands the record itself to the listener thread: the stock QueueHandler formats it on
    the caller's thread (the event loop) first, which is most of the cost of a log line."""

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        return record


class LogFormatter(logging.Formatter):
    """Text lines, except the access log's: each of those is one JSON object, the whole line
    (its time first), so `jq` and log shippers read it as it is."""

    def format(self, record: logging.LogRecord) -> str:
        if record.name != "gateway.access" or not isinstance(record.msg, str) \
                or not record.msg.startswith("{"):
            return super().format(record)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        return f'{{"time": "{stamp}.{int(record.msecs):03d}Z", {record.msg[1:]}'


class BatchedQueueListener(logging.handlers.QueueListener):
    """Writes the lines queued every INTERVAL seconds rather than each as it arrives: under
    load a request's log line then never wakes this thread (a wake-up per request costs the
    event loop a GIL hand-over, and on a busy box a context switch). A line waits at most
    INTERVAL; stop() still writes out every line queued before it."""

    INTERVAL = 0.02

    def dequeue(self, block: bool) -> logging.LogRecord:
        try:
            return self.queue.get_nowait()
        except queue.Empty:
            self._flush()  # the batch is written: out of the buffer before the pause
            time.sleep(self.INTERVAL)
            return self.queue.get(block)

    def handle(self, record: logging.LogRecord | tuple[float, str]) -> None:
        if isinstance(record, tuple):  # an access-log line (gateway/accesslog.py), formatted
            created, line = record
            for handler in self.handlers:
                stream = getattr(handler, "stream", None)
                if stream is not None:
                    with handler.lock or contextlib.nullcontext():
                        stream.write(accesslog.stamped(created, line) + "\n")
            return
        super().handle(record)

    def _flush(self) -> None:
        for handler in self.handlers:
            handler.flush()


_listeners: list[logging.handlers.QueueListener] = []


def flush_logging() -> None:
    """Write out every queued log line (before a last message of our own, or at exit)."""
    while _listeners:
        _listeners.pop().stop()


def configure_logging(level: str) -> None:
    """Log lines are formatted and written by a listener thread, so a slow stderr never
    stalls the event loop."""
    handler = logging.StreamHandler()
    handler.setFormatter(LogFormatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    log_queue: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    listener = BatchedQueueListener(log_queue, handler)
    listener.start()
    _listeners.append(listener)
    atexit.register(flush_logging)
    root = logging.getLogger()
    root.setLevel(getattr(logging, level, logging.INFO))
    root.addHandler(DeferredQueueHandler(log_queue))
    accesslog.sink = log_queue.put  # access-log lines skip the logging module (accesslog.py)
    # No line shows the caller's file, thread or process: not looking them up saves each
    # record (one per request, the access log) a stack walk and three lookups.
    logging._srcfile = None  # type: ignore[attr-defined]
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False


async def serve(env: Mapping[str, str] | None = None, stop: asyncio.Event | None = None,
                worker: WorkerContext | None = None) -> None:
    """Serve until `stop`. `worker`: one of several processes (gateway/workers.py), on the
    sockets its parent bound (and checked)."""
    settings = load_settings(env if env is not None else os.environ)
    # Bad certificates and taken ports refuse at once, before any start-up work.
    ssl_context = server_context(settings)
    scheme = "https" if ssl_context is not None else "http"
    s3_setting = port_setting(settings, "port", "S3PORT")
    metrics_setting = port_setting(settings, "metricsPort", None)
    console_setting = port_setting(settings, "console.port", None)
    sockets = worker.sockets if worker is not None else {}
    if worker is None:
        check_port_free(settings, settings.listen_on, settings.port, s3_setting)
        if settings.metrics_port:
            check_port_free(settings, settings.listen_on, settings.metrics_port, metrics_setting)
        if settings.console.enabled and settings.console.port:
            check_port_free(settings, settings.listen_on, settings.console.port, console_setting)
    listeners: list[tuple[str, str]] = []
    gateway = Gateway(settings, worker)
    try:
        await gateway.start()
    except BaseException:
        await gateway.stop()
        raise
    runner = web.AppRunner(gateway.app(), access_log=None, handle_signals=False)
    await runner.setup()
    limits = connection_limits(settings.connections)
    guard = ConnectionGuard(limits, "S3 port")
    site = GuardedSite(runner, settings.listen_on, settings.port, backlog=1024,
                       reuse_address=True, guard=guard, ssl_context=ssl_context,
                       sock=sockets.get("s3"))
    await start_site(site, settings, settings.port, s3_setting)
    listeners.append(("S3", listener_url(scheme, settings.listen_on, settings.port)))
    if settings.metrics_port:
        metrics_app = web.Application()
        metrics_app.router.add_route(
            "*", "/{tail:.*}", lambda request: metrics_site_handler(gateway, request))
        metrics_runner = web.AppRunner(metrics_app, access_log=None, handle_signals=False)
        await metrics_runner.setup()
        # Its own count: scrapes and probes still get in while the S3 port is full.
        await start_site(GuardedSite(metrics_runner, settings.listen_on, settings.metrics_port,
                                     guard=ConnectionGuard(limits, "metrics port"),
                                     ssl_context=ssl_context, sock=sockets.get("metrics")),
                         settings, settings.metrics_port, metrics_setting)
        listeners.append(("health and metrics",
                          listener_url(scheme, settings.listen_on, settings.metrics_port)))
    console_runner: web.AppRunner | None = None
    if gateway.console is not None and settings.console.port:
        # The console on a port of its own (plus the presigned part uploads it hands out).
        console_runner = web.AppRunner(
            gateway.console.app(gateway.front.handle, client_max_size=MAX_XML_BODY + 1,
                                handler_args=HANDLER_ARGS),
            access_log=None, handle_signals=False)
        await console_runner.setup()
        await start_site(GuardedSite(console_runner, settings.listen_on, settings.console.port,
                                     guard=ConnectionGuard(limits, "console port"),
                                     ssl_context=ssl_context, sock=sockets.get("console")),
                         settings, settings.console.port, console_setting)
        listeners.append(("console", listener_url(scheme, settings.listen_on,
                                                  settings.console.port) + "/_/console/"))
    elif gateway.console is not None:
        listeners.append(("console", listener_url(scheme, settings.listen_on,
                                                  settings.port) + "/_/console/"))
    if worker is None or (worker.index == 0 and worker.first):
        log_banner(settings, gateway, listeners)
    if worker is not None:
        log.info("worker %d of %d (pid %d) serving", worker.index, worker.count, os.getpid())
        worker.report("ready")
    # What start-up made (modules, settings, caches) lives as long as the process: moved out
    # of the collector's generations, a full collection no longer walks it again and again.
    gc.collect()
    gc.freeze()
    stop = stop or asyncio.Event()
    try:
        await stop.wait()
    finally:
        guard.stopping = True  # uploads in progress finish (see GuardedHandler.data_received)
        await runner.cleanup()
        if console_runner is not None:
            await console_runner.cleanup()
        await gateway.stop()


def run() -> int | None:
    """Entry point: serve until SIGINT/SIGTERM; the exit status (None: 0)."""
    settings_env = dict(os.environ)
    settings = load_settings(settings_env)
    if settings.workers > 1:  # a parent that forks the workers (gateway/workers.py)
        from gateway.workers import supervise

        return supervise(settings_env, settings)
    configure_logging((settings_env.get("LOG_LEVEL") or "info").upper())
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await serve(settings_env, stop)

    asyncio.run(main())
    return None
