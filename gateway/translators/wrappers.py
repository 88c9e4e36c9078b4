"""Wrappers around a translator, after Arrow object_store's PrefixStore/ThrottledStore: each one
implements the whole Translator interface, adds one cross-cutting rule and forwards every call
to the translator it wraps. `compose` stacks them, in one place (outermost first):

    Breaker -> Metered -> Timeouts -> Boundary -> the location type's translator

- Boundary: a translator raises only TranslatorErrors (base.py); anything else that escapes it
  becomes Unavailable, except a failure of the request body itself (the client cut off, a bad
  digest), which is re-raised as it is: the client's error, not the backend's. Running out of
  a local resource (EMFILE, ENOSPC...) is this machine's problem: Throttled, never counted.
- Timeouts: calls that move no body get `call_timeout`; running out is Unavailable.
- Metered: latency per call, failures by kind, bytes in and out (once metrics are attached).
- Breaker: fails fast with Unavailable while the location is down; consecutive Unavailable
  answers trip it. PermissionDenied/Unauthenticated are the location's configuration, not an
  outage: logged once (until a call succeeds again), never counted, so a key that may list but
  not write cannot flap the location between up (its health check passes) and down.

The backend key rule (bucketMatch, `~<token>`) is not a wrapper: keys reach a translator
already made by the placement layer (gateway/locations.py, Location.new_key), and metadata
keeps them as they are, so no wrapper rewrites them on the way down or up. The S3 answer for
each error is chosen above the translators too, in one table (gateway/locations.py).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from gateway.translators.base import (
    ByteStream,
    ForeignObject,
    Health,
    NotSupported,
    ObjectMeta,
    Part,
    PermissionDenied,
    Stored,
    Throttled,
    Translator,
    TranslatorError,
    Unauthenticated,
    Unavailable,
)

if TYPE_CHECKING:
    from gateway.health.metrics import Metrics

log = logging.getLogger("gateway.locations")
T = TypeVar("T")

# Calls that move no object body get this long before the location counts as failing.
CALL_TIMEOUT = 60.0
# Calls that move a body (or compose thousands of parts) take as long as their bytes take.
UNTIMED = frozenset({"put", "upload_part", "copy", "copy_part", "complete_upload"})
# Errors of this machine, not of the backend: they must not mark a location down.
LOCAL_ERRNOS = {errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOSPC}
# Errors that say the location's configuration is wrong (credentials, permissions).
CONFIG_ERRORS = (PermissionDenied, Unauthenticated)


@dataclass
class HealthState:
    state: str = "unknown"  # up | down | unknown
    last_check: float | None = None
    latency: float | None = None
    message: str = ""
    consecutive_failures: int = 0
    changed: float = 0.0  # workers only: when the state held here was shared, or taken from another
    # With several workers (gateway/workers.py): `shared` hands a trip to the others,
    # `refresh` takes what the others learnt before failing fast.
    shared: Callable[[], None] | None = None
    refresh: Callable[[], None] | None = None


class TrackedBody:
    """A body on its way to a backend: remembers an error it raised, so that error is
    reported as the client's (BadDigest, IncompleteBody...) and not as the backend's."""

    def __init__(self, body: ByteStream) -> None:
        self.error: BaseException | None = None
        self._body = aiter(body)

    def __aiter__(self) -> TrackedBody:
        return self

    async def __anext__(self) -> bytes:
        try:
            return await anext(self._body)
        except StopAsyncIteration:
            raise
        except BaseException as exc:
            self.error = exc
            raise


class CountedBody:
    """A body on its way to a backend, counting its bytes."""

    def __init__(self, body: ByteStream) -> None:
        self.size = 0
        self._body = aiter(body)

    def __aiter__(self) -> CountedBody:
        return self

    async def __anext__(self) -> bytes:
        chunk = await anext(self._body)
        self.size += len(chunk)
        return chunk


async def _close(stream: Any) -> None:
    aclose = getattr(stream, "aclose", None)
    if aclose is not None:
        await aclose()


class Wrapper(Translator):
    """Forwards every method of the Translator interface to `inner`, through four hooks a
    wrapper overrides: `_call` around each awaited call, `_body` on a body going down,
    `_stream` on a stream coming up (GET) and `_listing` on list_pieces."""

    def __init__(self, inner: Translator) -> None:  # no super().__init__: nothing to parse
        self.inner = inner
        self.name = inner.name
        self.type_name = inner.type_name
        self.lists_only_own_pieces = inner.lists_only_own_pieces
        self.composite = getattr(inner, "composite", False)

    async def _call(self, operation: str, method: Callable[..., Awaitable[T]],
                    args: tuple[Any, ...], body: ByteStream | None = None) -> T:
        """Around each awaited call: `await method(*args)`, what the wrapper adds around it."""
        return await method(*args)

    def _body(self, operation: str, body: ByteStream) -> ByteStream:
        return body

    def _stream(self, operation: str, stream: ByteStream) -> ByteStream:
        return stream

    def _listing(self, listing: AsyncIterator[Stored]) -> AsyncIterator[Stored]:
        return listing

    async def open(self) -> None:
        await self.inner.open()

    async def close(self) -> None:
        await self.inner.close()

    # The forwarding methods are plain functions that return `_call`'s coroutine: one frame
    # per wrapper instead of two (these run on every request; the caller awaits as usual).
    def put(self, key: str, body: ByteStream, size: int,
            meta: ObjectMeta) -> Coroutine[Any, Any, Stored]:
        body = self._body("put", body)
        return self._call("put", self.inner.put, (key, body, size, meta), body)

    async def get(self, stored: Stored, offset: int = 0, length: int | None = None) -> ByteStream:
        stream = await self._call("get", self.inner.get, (stored, offset, length))
        return self._stream("get", stream)

    def head(self, stored: Stored) -> Coroutine[Any, Any, Stored]:
        return self._call("head", self.inner.head, (stored,))

    def delete(self, stored: Stored) -> Coroutine[Any, Any, None]:
        return self._call("delete", self.inner.delete, (stored,))

    def copy(self, src: Stored, key: str, meta: ObjectMeta) -> Coroutine[Any, Any, Stored | None]:
        return self._call("copy", self.inner.copy, (src, key, meta))

    def list_pieces(self, prefix: str = "") -> AsyncIterator[Stored]:
        return self._listing(self.inner.list_pieces(prefix))

    def piece_id(self, stored: Stored) -> str:
        return self.inner.piece_id(stored)

    def member_pieces(self, stored: Stored) -> list[Stored]:
        return self.inner.member_pieces(stored)

    def list_objects(self, prefix: str = "", start_after: str = "",
                     details: bool = True) -> AsyncIterator[ForeignObject]:
        return self.inner.list_objects(prefix, start_after, details)

    def describe(self, key: str) -> Coroutine[Any, Any, ForeignObject | None]:
        return self._call("describe", self.inner.describe, (key,))

    def storage_id(self) -> str:
        return self.inner.storage_id()

    def copy_part(self, src: Stored, offset: int, length: int, key: str, upload_id: str,
                  number: int) -> Coroutine[Any, Any, Stored | None]:
        return self._call("copy_part", self.inner.copy_part,
                          (src, offset, length, key, upload_id, number))

    def update_meta(self, stored: Stored, meta: ObjectMeta) -> Coroutine[Any, Any, Stored]:
        return self._call("update_meta", self.inner.update_meta, (stored, meta))

    def create_upload(self, key: str, meta: ObjectMeta) -> Coroutine[Any, Any, str]:
        return self._call("create_upload", self.inner.create_upload, (key, meta))

    def upload_part(self, key: str, upload_id: str, number: int, body: ByteStream,
                    size: int) -> Coroutine[Any, Any, Stored]:
        body = self._body("upload_part", body)
        return self._call("upload_part", self.inner.upload_part,
                          (key, upload_id, number, body, size), body)

    def discard_part(self, key: str, upload_id: str, part: Part) -> Coroutine[Any, Any, None]:
        return self._call("discard_part", self.inner.discard_part, (key, upload_id, part))

    def complete_upload(self, key: str, upload_id: str, parts: list[Part],
                        meta: ObjectMeta) -> Coroutine[Any, Any, list[Stored]]:
        return self._call("complete_upload", self.inner.complete_upload,
                          (key, upload_id, parts, meta))

    def abort_upload(self, key: str, upload_id: str,
                     parts: list[Part]) -> Coroutine[Any, Any, None]:
        return self._call("abort_upload", self.inner.abort_upload, (key, upload_id, parts))

    async def check(self) -> Health:
        return await self.inner.check()


class Boundary(Wrapper):
    """Only TranslatorErrors leave: anything else a translator raises becomes Unavailable
    (a local resource error Throttled), unless the request body itself failed."""

    def _body(self, operation: str, body: ByteStream) -> ByteStream:
        return TrackedBody(body)

    async def _call(self, operation: str, method: Callable[..., Awaitable[T]],
                    args: tuple[Any, ...], body: ByteStream | None = None) -> T:
        try:
            return await method(*args)
        except Exception as exc:
            if isinstance(body, TrackedBody) and body.error is not None:
                raise body.error from None  # the client's failure wins over what it caused
            raise self.translated(operation, exc) from exc

    @staticmethod
    def translated(operation: str, exc: Exception) -> TranslatorError:
        if isinstance(exc, TranslatorError):
            return exc
        if isinstance(exc, NotImplementedError):
            return NotSupported(str(exc) or operation)
        if isinstance(exc, OSError) and exc.errno in LOCAL_ERRNOS:
            log.warning("%s failed locally: %s", operation, exc)
            return Throttled(f"the gateway is out of a local resource: {exc.strerror}")
        return Unavailable(f"{type(exc).__name__} during {operation}: {exc}"[:300],
                           kind=type(exc).__name__)

    def _stream(self, operation: str, stream: ByteStream) -> ByteStream:
        return self._guarded(operation, stream)

    async def _guarded(self, operation: str, stream: AsyncIterator[T]) -> AsyncIterator[T]:
        try:
            async for item in stream:
                yield item
        except Exception as exc:
            raise self.translated(operation, exc) from exc
        finally:
            await _close(stream)

    def list_pieces(self, prefix: str = "") -> AsyncIterator[Stored]:
        try:
            listing = self.inner.list_pieces(prefix)
        except Exception as exc:  # the base class's NotImplementedError is raised at the call
            raise self.translated("list_pieces", exc) from exc
        return self._guarded("list_pieces", listing)

    def list_objects(self, prefix: str = "", start_after: str = "",
                     details: bool = True) -> AsyncIterator[ForeignObject]:
        try:
            listing = self.inner.list_objects(prefix, start_after, details)
        except Exception as exc:  # the base class's NotImplementedError is raised at the call
            raise self.translated("list_objects", exc) from exc
        return self._guarded("list_objects", listing)

    async def check(self) -> Health:
        try:
            return await self.inner.check()
        except Exception as exc:  # a probe failure is a health result, not an error
            return Health(ok=False, message=f"{type(exc).__name__}: {exc}"[:300])


class Timeouts(Wrapper):
    """Calls that move no body fail (Unavailable) after `call_timeout` seconds."""

    def __init__(self, inner: Translator, call_timeout: float = CALL_TIMEOUT) -> None:
        super().__init__(inner)
        self.call_timeout = call_timeout

    async def _call(self, operation: str, method: Callable[..., Awaitable[T]],
                    args: tuple[Any, ...], body: ByteStream | None = None) -> T:
        if operation in UNTIMED:
            return await method(*args)
        try:
            async with asyncio.timeout(self.call_timeout):
                return await method(*args)
        except TimeoutError:
            raise Unavailable(f"{operation} timed out after {self.call_timeout:g}s",
                              kind="timeout") from None


class Metered(Wrapper):
    """Latency of every call, failed calls by kind, bytes in and out: s3gw_backend_*."""

    def __init__(self, inner: Translator) -> None:
        super().__init__(inner)
        self.metrics: Metrics | None = None  # attached by the gateway once it has them
        self._histograms: dict[str, Any] = {}

    async def _call(self, operation: str, method: Callable[..., Awaitable[T]],
                    args: tuple[Any, ...], body: ByteStream | None = None) -> T:
        metrics = self.metrics
        if metrics is None:
            return await method(*args)
        started = time.monotonic()
        try:
            return await method(*args)
        except TranslatorError as exc:
            kind = failure_kind(exc)
            if kind is not None:
                metrics.backend_errors.labels(self.name, kind).inc()
            raise
        finally:
            histogram = self._histograms.get(operation)
            if histogram is None:  # labels() costs a few microseconds: keep the children
                histogram = self._histograms[operation] = metrics.backend_seconds.labels(
                    self.name, operation)
            histogram.observe(time.monotonic() - started)
            if isinstance(body, CountedBody):
                self._count("in", body.size)

    def _body(self, operation: str, body: ByteStream) -> ByteStream:
        return body if self.metrics is None else CountedBody(body)

    def _stream(self, operation: str, stream: ByteStream) -> ByteStream:
        return stream if self.metrics is None else self._counted(stream)

    async def _counted(self, stream: ByteStream) -> ByteStream:
        size = 0
        try:
            async for chunk in stream:
                size += len(chunk)
                yield chunk
        finally:
            self._count("out", size)
            await _close(stream)

    def _count(self, direction: str, size: int) -> None:
        if self.metrics is not None and size:
            self.metrics.backend_bytes.labels(self.name, direction).inc(size)


def failure_kind(exc: TranslatorError) -> str | None:
    """The s3gw_backend_errors kind of a failed call; None when the backend answered as it
    should (not found, a precondition, the request's own fault)."""
    if isinstance(exc, Unavailable):
        return exc.kind
    if isinstance(exc, Throttled):
        return "throttled"
    if isinstance(exc, PermissionDenied):
        return "permission_denied"
    if isinstance(exc, Unauthenticated):
        return "unauthenticated"
    return None


class Breaker(Wrapper):
    """Fail fast while the location is down; trip after FAILURES_TO_TRIP consecutive
    Unavailable answers. The health monitor's checks bring it back up."""

    FAILURES_TO_TRIP = 3

    def __init__(self, inner: Translator, health: HealthState) -> None:
        super().__init__(inner)
        self.health = health
        self._config_logged = False

    async def _call(self, operation: str, method: Callable[..., Awaitable[T]],
                    args: tuple[Any, ...], body: ByteStream | None = None) -> T:
        health = self.health
        if health.state == "down":
            if health.refresh is not None:
                health.refresh()  # another worker may have seen it come back
            if health.state == "down":
                raise Unavailable(health.message or "marked down by health checks", kind="down")
        try:
            result = await method(*args)
        except Unavailable:
            if not self.composite:  # a mirror's members' own breakers count their failures
                self._failed()
            raise
        except CONFIG_ERRORS as exc:
            if not self._config_logged:
                self._config_logged = True
                log.error("location %s (%s): the backend refuses the gateway's credentials "
                          "(%s: %s); fix the location's configuration. Logged once until a "
                          "call succeeds.", self.name, self.type_name, type(exc).__name__, exc)
            raise
        except TranslatorError:
            health.consecutive_failures = 0  # the backend answered
            raise
        health.consecutive_failures = 0
        self._config_logged = False
        return result

    def _failed(self) -> None:
        health = self.health
        health.consecutive_failures += 1
        if health.consecutive_failures >= self.FAILURES_TO_TRIP and health.state != "down":
            health.state = "down"
            health.message = f"{health.consecutive_failures} consecutive request failures"
            if health.shared is not None:
                health.shared()
            log.warning("location %s marked down after %d failures", self.name,
                        health.consecutive_failures)


def compose(translator: Translator, health: HealthState,
            call_timeout: float = CALL_TIMEOUT) -> Translator:
    """The one place the wrappers are stacked around a location's translator."""
    return Breaker(Metered(Timeouts(Boundary(translator), call_timeout)), health)


def layers(store: Translator) -> Iterator[Translator]:
    """The wrappers of `store`, outermost first, then the translator itself."""
    while True:
        yield store
        if not isinstance(store, Wrapper):
            return
        store = store.inner

