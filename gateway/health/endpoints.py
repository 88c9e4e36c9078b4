"""Health and metrics endpoints. On the S3 port under `/_/` (no bucket can be named `_`), and on
the optional metrics port at the root, as orchestrators expect:

- `/_/healthcheck`       the gateway itself: metadata store reachable -> 200, else 503
- `/_/healthcheck/deep`  JSON: every location with type, state, last check, latency, last error;
                         `?check=NAME` probes that location now first
- `/_/live`, `/_/ready`  liveness (process answers) and readiness (metadata up, at least one
                         location up)
- `/_/metrics`           Prometheus text format
Only clients in `healthChecks.allowFrom` (always loopback) get answers; others get 403.
"""

from __future__ import annotations

import ipaddress
import json
from typing import TYPE_CHECKING, Any

from aiohttp import web

if TYPE_CHECKING:
    from gateway.server import Gateway


def json_response(body: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, text=json.dumps(body, indent=1),
                        content_type="application/json")


class HealthEndpoints:
    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.routes = {
            "healthcheck": self.shallow,
            "healthcheck/deep": self.deep,
            "live": self.live,
            "ready": self.ready,
            "metrics": self.metrics,
            "lifecycle/run": self.lifecycle_run,  # POST: python -m gateway lifecycle run
            # python -m gateway migrate (gateway/moving/): POST start and cancel, GET status
            "migrate": lambda request: self.gateway.migrations.http(request, "status"),
            "migrate/start": lambda request: self.gateway.migrations.http(request, "start"),
            "migrate/cancel": lambda request: self.gateway.migrations.http(request, "cancel"),
            # python -m gateway import / read-through (gateway/moving/importer.py, read_through.py)
            "import": lambda request: self.gateway.imports.http(request, "status"),
            "import/start": lambda request: self.gateway.imports.http(request, "start"),
            "read-through": lambda request: self.gateway.read_through.http(request, "status"),
            "read-through/set": lambda request: self.gateway.read_through.http(request, "set"),
        }
        self.post_only = {"lifecycle/run", "migrate/start", "migrate/cancel", "import/start",
                          "read-through/set"}

    def allowed(self, request: web.Request) -> bool:
        remote = request.remote
        if remote is None:
            return False
        try:
            address = ipaddress.ip_address(remote.split("%", 1)[0])
            # A dual-stack listener shows IPv4 clients as ::ffff:a.b.c.d: judge the IPv4.
            address = getattr(address, "ipv4_mapped", None) or address
        except ValueError:
            return False
        return any(address in net for net in self.gateway.settings.health.allow_from)

    async def handle(self, request: web.Request, name: str) -> web.Response | None:
        """Answer `name` (e.g. "healthcheck/deep"), or None when it is not a health path."""
        handler = self.routes.get(name.strip("/"))
        if handler is None:
            return None
        if not self.allowed(request):
            return json_response({"error": "forbidden"}, 403)
        if request.method not in (("POST",) if name.strip("/") in self.post_only
                                  else ("GET", "HEAD")):
            return json_response({"error": "method not allowed"}, 405)
        return await handler(request)

    async def _metadata_ok(self) -> str | None:
        try:
            await self.gateway.metadata.ping()
        except Exception as exc:  # the answer is the health report
            return f"{type(exc).__name__}: {exc}"
        return None

    async def shallow(self, request: web.Request) -> web.Response:
        error = await self._metadata_ok()
        if error:
            return json_response({"metadata": {"state": "down", "message": error}}, 503)
        return json_response({"metadata": {"state": "up"}})

    async def deep(self, request: web.Request) -> web.Response:
        monitor = self.gateway.health
        name = request.query.get("check")
        if name:
            if name not in self.gateway.locations:
                return json_response({"error": f"no location named {name}"}, 404)
            await monitor.check(self.gateway.locations[name])
        error = await self._metadata_ok()
        body = {"metadata": {"state": "down" if error else "up", "message": error or "OK"},
                "locations": monitor.deep()}
        if not error:  # background jobs: the queue's progress, this gateway's share
            body["jobs"] = await self.gateway.jobs.status()
            body["lifecycle"] = self.gateway.lifecycle.status()
            body["migrations"] = await self.gateway.migrations.health()  # gateway/moving/
        return json_response(body, 503 if error else 200)

    async def lifecycle_run(self, request: web.Request) -> web.Response:
        """One lifecycle pass of ?bucket= now, answered when its jobs are done."""
        from gateway.errors import S3Error

        bucket = request.query.get("bucket", "")
        try:
            return json_response(await self.gateway.lifecycle.run_now(bucket))
        except S3Error as err:
            return json_response({"error": err.code, "message": err.message}, err.status)

    async def live(self, request: web.Request) -> web.Response:
        return json_response({"live": True})

    async def ready(self, request: web.Request) -> web.Response:
        error = await self._metadata_ok()
        states = [loc.health.state for loc in self.gateway.locations]
        ready = error is None and "up" in states
        return json_response({"ready": ready, "metadata": error or "OK"}, 200 if ready else 503)

    async def metrics(self, request: web.Request) -> web.Response:
        # Counted at scrape time from metadata, so it is right with several gateway processes.
        try:
            self.gateway.metrics.open_uploads.set(await self.gateway.metadata.count_uploads())
            self.gateway.metrics.garbage_pending.set(await self.gateway.metadata.count_garbage())
            self.gateway.metrics.intents_open.set(len(await self.gateway.metadata.list_intents()))
            await self.gateway.jobs.status()  # the s3gw_jobs gauges
        except Exception as exc:  # a metrics scrape must not fail with the metadata store
            self.gateway.log.warning("counting open uploads failed: %s", exc)
        return web.Response(body=self.gateway.metrics.render(),
                            headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})
