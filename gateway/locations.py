"""Placement and the location wrapper around each translator.

Placement picks an object's location (header > bucket > endpoint > default). `Location` wraps a
translator with the rules every backend shares, written once: the backend key of every new
piece (bucketMatch prefix + a token no other write uses), fail-fast when the location is known
down, timeouts, and turning backend failures into S3 errors that name the location. Only real
backend failures count against health: a request the backend refuses (Rejected), throttling,
and local resource errors (EMFILE) do not.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import random
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from gateway.config import DEFAULT_LOCATION, LocationSpec
from gateway.errors import ConfigFileError, S3Error
from gateway.translators import translator_class
from gateway.translators.base import (
    ByteStream,
    ConfigError,
    Conflict,
    Health,
    NotFound,
    ObjectMeta,
    Part,
    Rejected,
    Stored,
    Throttled,
    Translator,
)

if TYPE_CHECKING:
    from gateway.health.metrics import Metrics

log = logging.getLogger("gateway.locations")
T = TypeVar("T")

LOCATION_HEADER = "x-amz-meta-scal-location-constraint"
# Calls that move no object body get this long before the location counts as failing.
CALL_TIMEOUT = 60.0
# The end of every backend key the gateway writes: `~` and 24 hex digits (96 random bits).
PIECE_TOKEN = re.compile(r"~[0-9a-f]{24}(?=$|/|#)")
# Errors of this machine, not of the backend: they must not mark a location down.
LOCAL_ERRNOS = {errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOSPC}


@dataclass
class HealthState:
    state: str = "unknown"  # up | down | unknown
    last_check: float | None = None
    latency: float | None = None
    message: str = ""
    consecutive_failures: int = 0


class TrackedBody:
    """A body on its way to a backend: counts its bytes, and remembers an error it raised so
    that error is reported as the client's (BadDigest, IncompleteBody, SignatureDoesNotMatch)
    and not as the backend's."""

    def __init__(self, body: ByteStream) -> None:
        self.error: BaseException | None = None
        self.size = 0
        self._body = body

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._body:
                self.size += len(chunk)
                yield chunk
        except BaseException as exc:
            self.error = exc
            raise


class Location:
    """One configured location: its translator plus the cross-cutting rules."""

    # After this many consecutive failed requests the location is marked down until a check passes.
    FAILURES_TO_TRIP = 3

    def __init__(self, spec: LocationSpec, translator: Translator) -> None:
        self.spec = spec
        self.name = spec.name
        self.type_name = spec.type
        self.translator = translator
        self.health = HealthState()
        self.metrics: Metrics | None = None
        self._histograms: dict[str, Any] = {}

    def new_key(self, bucket: str, key: str) -> str:
        """The backend key for a new piece of `bucket`/`key`: its natural name (the object key
        with bucketMatch, else `<bucket>/<key>`) plus `~<token>`, a key no other write uses.
        Why: a piece is never overwritten in place, so concurrent writes of one S3 key never
        touch each other's bytes, and a refused write can remove its own bytes without
        touching the live object (README, "How it is built")."""
        natural = key if self.spec.bucket_match else f"{bucket}/{key}"
        # Random, not secret: uniqueness is all that matters, and getrandbits is cheap.
        return f"{natural}~{random.getrandbits(96):024x}"

    def unavailable(self, detail: str) -> S3Error:
        return S3Error("ServiceUnavailable",
                       f"Location {self.name} ({self.type_name}) is unavailable: {detail}")

    def _guard(self) -> None:
        if self.health.state == "down":
            raise self.unavailable(self.health.message or "marked down by health checks")

    def record(self, operation: str, ok: bool, started: float, kind: str = "") -> None:
        if self.metrics is not None:
            histogram = self._histograms.get(operation)
            if histogram is None:  # labels() costs a few microseconds: keep the children
                histogram = self._histograms[operation] = self.metrics.backend_seconds.labels(
                    self.name, operation)
            histogram.observe(time.monotonic() - started)
            if not ok:
                self.metrics.backend_errors.labels(self.name, kind or "error").inc()
        if ok:
            self.health.consecutive_failures = 0
        else:
            self.health.consecutive_failures += 1
            if self.health.consecutive_failures >= self.FAILURES_TO_TRIP and self.health.state != "down":
                self.health.state = "down"
                self.health.message = f"{self.health.consecutive_failures} consecutive request failures"
                log.warning("location %s marked down after %d failures", self.name,
                            self.health.consecutive_failures)

    async def _call(self, operation: str, make: Callable[[], Awaitable[T]],
                    body: TrackedBody | None = None, timeout: float | None = CALL_TIMEOUT) -> T:
        self._guard()
        started = time.monotonic()
        try:
            async with asyncio.timeout(timeout):
                result = await make()
        except NotFound:
            self.record(operation, True, started)
            raise
        except Conflict as exc:
            self.record(operation, True, started)
            raise S3Error("InvalidRequest", f"Location {self.name}: {exc}") from exc
        except Rejected as exc:  # the request's own fault: the location is fine
            self.record(operation, True, started)
            if body is not None and body.error is not None:
                raise body.error from None
            raise S3Error("InvalidArgument",
                          f"Location {self.name} refused the request: {exc}") from exc
        except Throttled as exc:
            self.record(operation, True, started)
            raise S3Error("SlowDown", f"Location {self.name} asks to slow down: {exc}",
                          headers={"Retry-After": "1"}) from exc
        except S3Error:
            raise
        except TimeoutError:
            self.record(operation, False, started, "timeout")
            raise self.unavailable(f"{operation} timed out") from None
        except OSError as exc:
            if exc.errno not in LOCAL_ERRNOS:
                raise self._failed(operation, started, exc, body) from exc
            # Out of file descriptors/memory/disk here: not the backend's fault.
            log.warning("location %s: %s failed locally: %s", self.name, operation, exc)
            raise S3Error("SlowDown", "The gateway is out of a local resource; retry later.",
                          headers={"Retry-After": "1"}) from exc
        except Exception as exc:
            raise self._failed(operation, started, exc, body) from exc
        self.record(operation, True, started)
        return result

    def _failed(self, operation: str, started: float, exc: BaseException,
                body: TrackedBody | None) -> BaseException:
        """The error to raise for a failed call: the client's own body error when its body
        broke (not the backend's fault), else a 503 that counts against the location."""
        if body is not None and body.error is not None:
            return body.error
        self.record(operation, False, started, type(exc).__name__)
        log.warning("location %s: %s failed: %s: %s", self.name, operation,
                    type(exc).__name__, exc)
        return self.unavailable(f"{type(exc).__name__} during {operation}")

    async def put(self, key: str, body: ByteStream, size: int, meta: ObjectMeta) -> Stored:
        tracked = TrackedBody(body)
        try:
            return await self._call("put", lambda: self.translator.put(key, aiter(tracked), size,
                                                                       meta), tracked, timeout=None)
        finally:
            self._count("in", tracked.size)

    async def get(self, stored: Stored, offset: int = 0, length: int | None = None) -> ByteStream:
        stream = await self._call("get", lambda: self.translator.get(stored, offset, length))
        return stream if self.metrics is None else self._counted(stream)

    async def _counted(self, stream: ByteStream) -> ByteStream:
        size = 0
        try:
            async for chunk in stream:
                size += len(chunk)
                yield chunk
        finally:
            self._count("out", size)

    def _count(self, direction: str, size: int) -> None:
        if self.metrics is not None and size:
            self.metrics.backend_bytes.labels(self.name, direction).inc(size)

    async def head(self, stored: Stored) -> Stored:
        return await self._call("head", lambda: self.translator.head(stored))

    async def delete(self, stored: Stored) -> None:
        await self._call("delete", lambda: self.translator.delete(stored))

    async def copy(self, src: Stored, key: str, meta: ObjectMeta) -> Stored | None:
        return await self._call("copy", lambda: self.translator.copy(src, key, meta), timeout=None)

    async def copy_part(self, src: Stored, offset: int, length: int, key: str, upload_id: str,
                        number: int) -> Stored | None:
        return await self._call(
            "copy_part",
            lambda: self.translator.copy_part(src, offset, length, key, upload_id, number),
            timeout=None)

    async def update_meta(self, stored: Stored, meta: ObjectMeta) -> Stored:
        return await self._call("update_meta", lambda: self.translator.update_meta(stored, meta))

    async def create_upload(self, key: str, meta: ObjectMeta) -> str:
        return await self._call("create_upload", lambda: self.translator.create_upload(key, meta))

    async def upload_part(self, key: str, upload_id: str, number: int, body: ByteStream,
                          size: int) -> Stored:
        tracked = TrackedBody(body)
        try:
            return await self._call(
                "upload_part",
                lambda: self.translator.upload_part(key, upload_id, number, aiter(tracked), size),
                tracked, timeout=None)
        finally:
            self._count("in", tracked.size)

    async def complete_upload(self, key: str, upload_id: str, parts: list[Part],
                              meta: ObjectMeta) -> list[Stored]:
        # Composing thousands of parts on some clouds takes a while: no fixed timeout.
        return await self._call(
            "complete_upload",
            lambda: self.translator.complete_upload(key, upload_id, parts, meta), timeout=None)

    async def abort_upload(self, key: str, upload_id: str, parts: list[Part]) -> None:
        await self._call("abort_upload", lambda: self.translator.abort_upload(key, upload_id, parts))

    async def discard_part(self, key: str, upload_id: str, part: Part) -> None:
        await self._call("discard_part", lambda: self.translator.discard_part(key, upload_id, part))

    def list_pieces(self, prefix: str = "") -> AsyncIterator[Stored]:
        """Every piece at the location (fsck); not guarded: fsck reports a down location."""
        return self.translator.list_pieces(prefix)

    def piece_id(self, stored: Stored) -> str:
        return self.translator.piece_id(stored)

    async def check(self, timeout: float) -> Health:
        """Run the translator's probe; never raises. Updates the cached health state."""
        started = time.monotonic()
        try:
            async with asyncio.timeout(timeout):
                result = await self.translator.check()
        except TimeoutError:
            result = Health(ok=False, message=f"check timed out after {timeout:g}s")
        except Exception as exc:  # a probe failure is a health result, not an error
            result = Health(ok=False, message=f"{type(exc).__name__}: {exc}"[:300])
        self.health.last_check = time.time()
        self.health.latency = time.monotonic() - started
        self.health.message = result.message
        self.health.state = "up" if result.ok else "down"
        if result.ok:
            self.health.consecutive_failures = 0
        return result


class Locations:
    """All configured locations, built from locationConfig.json."""

    def __init__(self, specs: Mapping[str, LocationSpec], env: Mapping[str, str],
                 rest_endpoints: Mapping[str, str], location_file: str) -> None:
        self.by_name: dict[str, Location] = {}
        self.rest_endpoints = dict(rest_endpoints)
        self.location_file = location_file
        for name, spec in specs.items():
            try:
                cls = translator_class(spec.type)
                translator = cls(name, spec.details, env)
            except ConfigError as exc:
                raise ConfigFileError(location_file, f'location "{name}" key "details.{exc.key}"',
                                      exc.message) from None
            except ImportError as exc:
                raise ConfigFileError(location_file, f'location "{name}" key "type"',
                                      f"the {spec.type} translator cannot load: {exc}") from None
            self.by_name[name] = Location(spec, translator)

    def __getitem__(self, name: str) -> Location:
        return self.by_name[name]

    def __contains__(self, name: object) -> bool:
        return name in self.by_name

    def __iter__(self) -> Any:
        return iter(self.by_name.values())

    async def open(self) -> None:
        for location in self.by_name.values():
            try:
                await location.translator.open()
            except ConfigError as exc:  # some details (a credentials profile) are read here
                raise ConfigFileError(self.location_file,
                                      f'location "{location.name}" key "details.{exc.key}"',
                                      exc.message) from None

    async def close(self) -> None:
        for location in self.by_name.values():
            try:
                await location.translator.close()
            except Exception as exc:  # shutting down: report and go on
                log.warning("closing location %s: %s", location.name, exc)

    def for_new_object(self, header_location: str | None, bucket_location: str | None,
                       host: str | None) -> Location:
        """Where a new object's bytes go: header, else bucket, else endpoint, else default.
        A header may name the bucket's own location, or one the operator marked
        `"selectable": true`; a bucketMatch location only ever holds its own bucket's objects."""
        if header_location and header_location != bucket_location:
            if header_location not in self.by_name:
                raise S3Error("InvalidArgument",
                              f'Object Location Error - Your object location "{header_location}" '
                              "is not in your location config - Please update.",
                              ArgumentName=LOCATION_HEADER, ArgumentValue=header_location)
            chosen = self.by_name[header_location]
            if not chosen.spec.selectable or chosen.spec.bucket_match:
                raise S3Error("AccessDenied",
                              f'Location "{header_location}" cannot be chosen by header for this '
                              "bucket (the operator has not marked it selectable).")
            return chosen
        if bucket_location and bucket_location in self.by_name:
            return self.by_name[bucket_location]
        return self.by_name[self.endpoint_location(host)]

    def endpoint_location(self, host: str | None) -> str:
        if host:
            name = self.rest_endpoints.get(host.rsplit(":", 1)[0] if not host.endswith("]") else host)
            if name:
                return name
        return DEFAULT_LOCATION
