"""The HTTP connections of a listening port: what aiohttp's protocol lacks against slow, silent
or too many clients (deadlines for headers, idle keep-alive and body pauses; a connection cap),
and S3 XML for requests aiohttp cannot parse. Configured by config.json `connections`."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import resource
import socket
import time
from typing import Any

from aiohttp import web
from aiohttp.streams import StreamReader
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from gateway.config import ConnectionSettings
from gateway.errors import S3Error
from gateway.s3.front import early_error, request_id
from gateway.s3.xml import render_error

log = logging.getLogger("gateway")


# read_bufsize: big socket reads keep large uploads from pausing the socket while a chunk is
# hashed or written. max_field_size also bounds each POST form part's header line.
# auto_decompress off: a body sent with Content-Encoding: gzip (or br, deflate) is the object's
# bytes, stored and signed as sent; aiohttp would otherwise inflate it on the way in.
HANDLER_ARGS: dict[str, Any] = {"max_field_size": 16384, "read_bufsize": 2 * 1024 * 1024,
                                "auto_decompress": False}
REFUSAL_LINGER = 2.0  # s a refused connection may take to read its 503 before it is cut


def raw_error(err: S3Error) -> bytes:
    """A whole HTTP/1.1 error answer written straight to a socket that has no request object
    (a refused connection, headers that never finished)."""
    rid = request_id()
    body = render_error(err, rid)
    reason = "Service Unavailable" if err.status == 503 else "Bad Request"
    head = (f"HTTP/1.1 {err.status} {reason}\r\nContent-Type: application/xml\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n"
            f"x-amz-request-id: {rid}\r\nx-amz-id-2: {rid}\r\n\r\n")
    return head.encode() + body


class ConnectionGuard:
    """The connections of one listening socket: their count against the cap, and one sweep
    (a timer, not a task per connection) that closes those whose client went quiet."""

    def __init__(self, limits: ConnectionSettings, name: str) -> None:
        self.limits = limits
        self.name = name
        self.open: set[GuardedHandler] = set()
        self.refusing = 0  # refused connections still reading their 503
        # Set when the gateway stops: requests being served may still receive their bodies.
        self.stopping = False
        self._sweep_handle: asyncio.TimerHandle | None = None
        self._last_warning: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}
        # Often enough that a timeout fires within a quarter of itself; never busier than 20/s.
        shortest = min(limits.header_timeout, limits.idle_timeout, limits.body_timeout)
        self.interval = max(0.05, min(1.0, shortest / 4))

    def admit(self, handler: GuardedHandler) -> None:
        self.open.add(handler)
        if self._sweep_handle is None:
            self._sweep_handle = handler.loop.call_later(self.interval, self._sweep,
                                                         handler.loop)

    def _sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        now = loop.time()
        for handler in list(self.open):
            try:
                handler.check(now)
            except Exception as exc:  # one bad connection must not stop the sweep
                log.error("connection sweep: %s: %s", type(exc).__name__, exc)
        self._sweep_handle = (loop.call_later(self.interval, self._sweep, loop)
                              if self.open else None)

    def warn(self, kind: str, message: str, *args: object) -> None:
        """At most one line per kind every 10 s: a flood of slow clients must not become a
        flood of log lines."""
        now = time.monotonic()
        if now - self._last_warning.get(kind, -1e9) < 10:
            self._suppressed[kind] = self._suppressed.get(kind, 0) + 1
            return
        self._last_warning[kind] = now
        suppressed = self._suppressed.pop(kind, 0)
        more = f" ({suppressed} more like it in the last 10 s)" if suppressed else ""
        log.warning(f"{self.name}: {message}{more}", *args)


class GuardedHandler(RequestHandler):
    """aiohttp's per-connection protocol, plus what it lacks against slow or silent clients:
    a deadline for a request's headers, one for a keep-alive connection's next request, one
    for each pause in a request body, and a cap on open connections. It also answers
    requests aiohttp cannot parse with S3 XML instead of text and a logged traceback.

    It reads a few of RequestHandler's attributes (_request_in_progress, _messages,
    _current_request, _request_count): aiohttp offers no public view of a connection's state."""

    def __init__(self, manager: web.Server, *, loop: asyncio.AbstractEventLoop,
                 guard: ConnectionGuard, **kwargs: object) -> None:
        limits = guard.limits
        # aiohttp's own keep-alive timer stays as a backstop only: it counts from the same
        # moment as ours, so it must not fire before idle + header time has passed.
        super().__init__(manager, loop=loop,
                         keepalive_timeout=limits.idle_timeout + limits.header_timeout,
                         **kwargs)  # type: ignore[arg-type]
        self.loop = loop
        self.guard = guard
        self.refused = False
        now = loop.time()
        self.idle_since = now  # when the last answer was sent (or the connection opened)
        self.last_byte = now
        self.headers_since: float | None = None  # first byte of a request not yet parsed
        self.waiting_since: float | None = None  # when the handler began waiting for body
        self.stalled_since: float | None = None  # when the client stopped taking our bytes
        self.unsent = 0  # bytes buffered for it then
        self.timed_out = False
        # The body of a request answered before it was read, which aiohttp reads and drops
        # for a while (lingering): its bytes are not the start of a next request.
        self.leftover: StreamReader | None = None

    # --- connection life -----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        guard = self.guard
        if len(guard.open) >= guard.limits.max_open:
            self._refuse(transport)  # type: ignore[arg-type]
            return
        guard.admit(self)
        self.idle_since = self.last_byte = self.loop.time()
        super().connection_made(transport)

    def _refuse(self, transport: asyncio.Transport) -> None:
        self.refused = True
        guard = self.guard
        guard.refusing += 1
        guard.warn("cap", "%d connections open (connections.maxOpen): refusing more with "
                   "503 SlowDown", guard.limits.max_open)
        if guard.refusing > max(16, guard.limits.max_open // 8):
            transport.abort()  # a flood: even a polite refusal costs too much
            return
        transport.write(raw_error(S3Error("SlowDown")))
        # Closing with the client's request unread would reset the connection and could
        # destroy the answer in flight: half-close, discard what comes, cut after a while.
        if transport.can_write_eof():
            transport.write_eof()
        self.loop.call_later(REFUSAL_LINGER, transport.abort)

    def data_received(self, data: bytes) -> None:
        if self.refused:
            return
        now = self.loop.time()
        self.last_byte = now
        if self.headers_since is None and not self._request_in_progress \
                and not self._messages and not self._draining():
            self.headers_since = now
        parsed = self._request_count
        if self.guard.stopping and (self._close or self._force_close) and self._body_due():
            # Stopping: aiohttp closes every connection first and then drops whatever
            # arrives, so the body of a request already being served would never end (the
            # upload would wait out the shutdown timeout and fail). Let that body in; no
            # new request starts on this connection all the same.
            closing, forced = self._close, self._force_close
            self._close = self._force_close = False
            try:
                super().data_received(data)
            finally:
                self._close, self._force_close = closing, forced
        else:
            super().data_received(data)
        if self._request_count != parsed:  # a request's headers are complete
            self.headers_since = None

    def _body_due(self) -> bool:
        """Whether the request being served still waits for body bytes."""
        request = self._current_request
        return (self._request_in_progress and not self.timed_out and request is not None
                and not request.content.is_eof())

    def eof_received(self) -> None:
        if self.refused:
            return None  # None: the transport closes itself
        return super().eof_received()

    def connection_lost(self, exc: BaseException | None) -> None:
        if self.refused:
            self.guard.refusing -= 1
            return
        self.guard.open.discard(self)
        super().connection_lost(exc)

    async def finish_response(self, request: BaseRequest, resp: web.StreamResponse,
                              start_time: float | None) -> tuple[web.StreamResponse, bool]:
        answer = await super().finish_response(request, resp, start_time)
        self.idle_since = self.loop.time()
        self.headers_since = None
        self.waiting_since = None
        self.leftover = None if request.content.is_eof() else request.content
        if self.leftover is not None and early_error(request) is not None:
            # Refused before its body (Expect: 100-continue): the client holds the body back,
            # so nothing more can be read from this connection. Closed now, not after
            # aiohttp's 10 s of lingering for a body that never comes.
            self.force_close()
        if self.timed_out:
            # The body never finished: nothing after it can be parsed. close() (inside
            # force_close) still sends the answer already written.
            self.force_close()
        return answer

    # --- deadlines ---------------------------------------------------------------------------

    def check(self, now: float) -> None:
        """Called by the guard's sweep: close this connection if its client is too slow."""
        if self.transport is None or self.timed_out:
            return
        limits = self.guard.limits
        if self._request_in_progress:
            self._check_body(now, limits.body_timeout)
            self._check_send(now, limits.body_timeout)
        elif self._messages or self._draining():
            return  # a parsed request is about to start; or aiohttp's lingering bounds it
        elif self.headers_since is not None:
            if now - self.headers_since > limits.header_timeout:
                self.guard.warn("headers", "closing a connection from %s: request headers "
                                "not complete within %gs", self._peer(), limits.header_timeout)
                self.transport.write(raw_error(S3Error("RequestTimeout")))
                self.force_close()
        elif now - self.idle_since > limits.idle_timeout:
            self.force_close()  # an idle keep-alive connection: closed silently, as usual

    def _check_body(self, now: float, timeout: float) -> None:
        request = self._current_request
        payload = request.content if request is not None else None
        # Only while the operation waits for the client: not while it is busy with a backend
        # (then the socket is paused and silence is ours), nor once the body has all come.
        if payload is None or payload.is_eof() or getattr(payload, "_waiter", None) is None:
            self.waiting_since = None
            return
        if self.waiting_since is None:
            self.waiting_since = now
        if now - max(self.last_byte, self.waiting_since) > timeout:
            self.timed_out = True
            # The body iterator raises this; the operation stores nothing and the front
            # answers 400 RequestTimeout, as AWS does; finish_response then closes.
            payload.set_exception(S3Error(
                "RequestTimeout", f"Your socket connection to the server was not read from "
                f"or written to within the timeout period ({timeout:g}s). Idle connections "
                "will be closed."))

    def _draining(self) -> bool:
        if self.leftover is not None and self.leftover.is_eof():
            self.leftover = None
            self.idle_since = self.loop.time()  # idle from now on
        return self.leftover is not None

    def _check_send(self, now: float, timeout: float) -> None:
        """A client that stops reading an answer (a download) holds the operation on drain()
        forever: cut it once no byte has left for `timeout` s."""
        transport = self.transport
        if transport is None or not self.writing_paused:
            self.stalled_since = None
            return
        unsent = transport.get_write_buffer_size()
        if self.stalled_since is None or unsent < self.unsent:  # stalled now, or progress
            self.stalled_since, self.unsent = now, unsent
        elif now - self.stalled_since > timeout:
            self.guard.warn("send", "closing a connection from %s: it read nothing of its "
                            "answer for %gs", self._peer(), timeout)
            transport.abort()  # what is buffered will never leave: no graceful close

    def _peer(self) -> str:
        peer = self.transport.get_extra_info("peername") if self.transport else None
        return str(peer[0]) if isinstance(peer, tuple) else str(peer)

    # --- requests aiohttp cannot parse --------------------------------------------------------

    def handle_error(self, request: BaseRequest, status: int = 500,
                     exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        """S3 XML and one log line instead of aiohttp's text answer and traceback."""
        if request.writer.output_size > 0:
            raise ConnectionError("Response is sent already, cannot send another response")
        text = str(getattr(exc, "message", None) or message or exc or "").strip()
        if status >= 500:
            log.error("request failed in the HTTP layer: %s: %s", type(exc).__name__, text)
            err = S3Error("InternalError")
        else:
            log.info("unparseable request from %s: %s", request.remote, text.splitlines()[0]
                     if text else status)
            too_long = "Got more than" in text or "too long" in text.lower() or \
                status == 431
            err = (S3Error("RequestHeaderSectionTooLarge") if too_long
                   else S3Error("BadRequest", text or None, status=400))
        rid = request_id()
        response = web.Response(status=err.status, body=render_error(err, rid),
                                headers={"Content-Type": "application/xml",
                                         "x-amz-request-id": rid, "x-amz-id-2": rid})
        response.force_close()
        return response


class GuardedSite(web.TCPSite):
    """A TCPSite whose connections are GuardedHandlers."""

    def __init__(self, runner: web.BaseRunner, host: str, port: int, *,
                 guard: ConnectionGuard, sock: socket.socket | None = None,
                 **kwargs: object) -> None:
        super().__init__(runner, host, port, **kwargs)  # type: ignore[arg-type]
        self.guard = guard
        # A listening socket bound by the workers' parent (gateway/workers.py), else None.
        self.sock = sock

    async def start(self) -> None:
        await web.BaseSite.start(self)  # registers the site with its runner
        loop = asyncio.get_running_loop()
        server = self._runner.server
        assert server is not None

        def protocol() -> GuardedHandler:
            return GuardedHandler(server, loop=loop, guard=self.guard, access_log=None,
                                  **HANDLER_ARGS)

        if self.sock is not None:
            self._server = await loop.create_server(protocol, sock=self.sock,
                                                    backlog=self._backlog, ssl=self._ssl_context)
            return
        self._server = await loop.create_server(
            protocol, self._host, self._port, backlog=self._backlog,
            reuse_address=self._reuse_address, reuse_port=self._reuse_port,
            ssl=self._ssl_context)  # None: plain http; else TLS (gateway/tls.py)


def connection_limits(limits: ConnectionSettings) -> ConnectionSettings:
    """The configured cap, lowered to half the open-file limit: the rest is for the storage
    calls (files, database, backend sockets) the admitted connections need."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    ceiling = max(16, soft // 2) if soft != resource.RLIM_INFINITY else limits.max_open
    if limits.max_open <= ceiling:
        return limits
    log.warning("connections.maxOpen %d lowered to %d: the open-file limit is %d",
                limits.max_open, ceiling, soft)
    return dataclasses.replace(limits, max_open=ceiling)
