"""Assembling and running the gateway: settings -> accounts, metadata, locations, health -> HTTP."""

from __future__ import annotations

import asyncio
import atexit
import logging
import logging.handlers
import os
import queue
import signal
from collections.abc import Mapping

from aiohttp import web

from gateway.accounts import AccountStore, load_accounts
from gateway.config import Settings, load_settings
from gateway.connections import HANDLER_ARGS, ConnectionGuard, GuardedSite, connection_limits
from gateway.health.endpoints import HealthEndpoints
from gateway.health.metrics import Metrics
from gateway.health.monitor import HealthMonitor
from gateway.locations import Locations
from gateway.metadata.base import MetadataStore
from gateway.objects import Engine
from gateway.s3.front import Front, add_request_id
from gateway.s3.xml import MAX_XML_BODY

log = logging.getLogger("gateway")


def make_metadata(settings: Settings) -> MetadataStore:
    if settings.metadata_backend == "postgres":
        from gateway.metadata.postgres import PostgresStore

        assert settings.postgres_dsn is not None
        return PostgresStore(settings.postgres_dsn)
    from gateway.metadata.sqlite import SQLiteStore

    return SQLiteStore(settings.metadata_path, durable=settings.storage.durability == "durable")


class Gateway:
    """The services every operation uses. Built from settings; no I/O until start()."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.log = log
        self.accounts: AccountStore = load_accounts(settings.authdata_path, settings.env)
        # Translators read the durability choice from their environment (file: fsync or not).
        location_env = {**settings.env, "S3DURABILITY": settings.storage.durability}
        self.locations = Locations(settings.locations, location_env, settings.rest_endpoints,
                                   str(settings.location_path))
        self.metadata = make_metadata(settings)
        self.engine = Engine(self.metadata, self.locations, settings.storage,
                             exclusive_store=settings.metadata_backend == "sqlite")
        self.metrics = Metrics()
        for location in self.locations:
            location.metrics = self.metrics
        self.health = HealthMonitor(self.locations, settings.health, self.metrics)
        self.health_endpoints = HealthEndpoints(self)
        self.front = Front(self, list(settings.rest_endpoints))

    async def start(self) -> None:
        await self.metadata.open()
        await self.locations.open()
        down = await self.health.flight_check()
        for location in down:
            log.warning("location %s (%s) is DOWN at start-up: %s", location.name,
                        location.type_name, location.health.message)
        if down and self.settings.health.startup == "strict":
            names = ", ".join(loc.name for loc in down)
            raise StartupError(f"healthChecks.startup is strict and locations are down: {names}")
        self.health.start()
        await self.engine.start()

    async def stop(self) -> None:
        await self.engine.stop()
        await self.health.stop()
        await self.locations.close()
        await self.metadata.close()

    def app(self) -> web.Application:
        # client_max_size only bounds bodies read whole (XML), at the XML parser's own limit
        # so memory stays bounded; the front answers a bigger one as the parser would.
        # Object bodies are streamed and never meet it.
        app = web.Application(client_max_size=MAX_XML_BODY + 1, handler_args=HANDLER_ARGS)
        # [\s\S], not ".": a key may hold a newline (%0A), which "." does not match.
        app.router.add_route("*", "/{tail:[\\s\\S]*}", self.front.handle)
        app.on_response_prepare.append(add_request_id)
        return app


class StartupError(Exception):
    """The gateway cannot start; the message is the one line to show."""


async def metrics_site_handler(gateway: Gateway, request: web.Request) -> web.StreamResponse:
    response = await gateway.health_endpoints.handle(request, request.path)
    return response if response is not None else web.Response(status=404)


class DeferredQueueHandler(logging.handlers.QueueHandler):
    """Hands the record itself to the listener thread: the stock QueueHandler formats it on
    the caller's thread (the event loop) first, which is most of the cost of a log line."""

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        return record


_listeners: list[logging.handlers.QueueListener] = []


def flush_logging() -> None:
    """Write out every queued log line (before a last message of our own, or at exit)."""
    while _listeners:
        _listeners.pop().stop()


def configure_logging(level: str) -> None:
    """Log lines are formatted and written by a listener thread, so a slow stderr never
    stalls the event loop."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    log_queue: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    listener = logging.handlers.QueueListener(log_queue, handler)
    listener.start()
    _listeners.append(listener)
    atexit.register(flush_logging)
    root = logging.getLogger()
    root.setLevel(getattr(logging, level, logging.INFO))
    root.addHandler(DeferredQueueHandler(log_queue))


async def serve(env: Mapping[str, str] | None = None, stop: asyncio.Event | None = None) -> None:
    settings = load_settings(env if env is not None else os.environ)
    gateway = Gateway(settings)
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
                       reuse_address=True, guard=guard)
    await site.start()
    if settings.metrics_port:
        metrics_app = web.Application()
        metrics_app.router.add_route(
            "*", "/{tail:.*}", lambda request: metrics_site_handler(gateway, request))
        metrics_runner = web.AppRunner(metrics_app, access_log=None, handle_signals=False)
        await metrics_runner.setup()
        # Its own count: scrapes and probes still get in while the S3 port is full.
        await GuardedSite(metrics_runner, settings.listen_on, settings.metrics_port,
                          guard=ConnectionGuard(limits, "metrics port")).start()
    log.info("gateway listening on http://%s:%d (locations: %s; metadata: %s)",
             settings.listen_on, settings.port, ", ".join(loc.name for loc in gateway.locations),
             settings.metadata_backend)
    stop = stop or asyncio.Event()
    try:
        await stop.wait()
    finally:
        guard.stopping = True  # uploads in progress finish (see GuardedHandler.data_received)
        await runner.cleanup()
        await gateway.stop()


def run() -> None:
    """Entry point: serve until SIGINT/SIGTERM."""
    settings_env = dict(os.environ)
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
