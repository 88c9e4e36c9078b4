"""Placement and the location around each translator.

Placement picks an object's location (header > bucket > endpoint > default) and names every new
piece (`Location.new_key`: bucketMatch prefix + a token no other write uses). `Location` is a
location as the engine sees it: its translator inside the wrappers that carry the rules every
backend shares (gateway/translators/wrappers.py: fail fast while down, metering, timeouts, only
translator errors out), plus the one table that turns a translator error into the S3 error a
client gets (`S3_ANSWERS`). NotFound stays NotFound: what a missing piece means is the
engine's to decide.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
import time
from collections.abc import AsyncIterator, Awaitable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from gateway.config import DEFAULT_LOCATION, LocationSpec
from gateway.errors import ConfigFileError, S3Error
from gateway.translators import translator_class
from gateway.translators.base import (
    AlreadyExists,
    ByteStream,
    ConfigError,
    ForeignObject,
    Health,
    NotFound,
    NotSupported,
    ObjectMeta,
    Part,
    PermissionDenied,
    Precondition,
    Rejected,
    Stored,
    Throttled,
    Translator,
    TranslatorError,
    Unauthenticated,
    Unavailable,
)
from gateway.translators.wrappers import (
    CALL_TIMEOUT,
    LOCAL_ERRNOS,
    Breaker,
    HealthState,
    Metered,
    TrackedBody,
    compose,
    layers,
)

if TYPE_CHECKING:
    from gateway.health.metrics import Metrics

log = logging.getLogger("gateway.locations")
T = TypeVar("T")

LOCATION_HEADER = "x-amz-meta-scal-location-constraint"
# The end of every backend key the gateway writes: `~` and 24 hex digits (96 random bits).
PIECE_TOKEN = re.compile(r"~[0-9a-f]{24}(?=$|/|#)")

# The S3 answer to each translator error, in this one place: (code, message; {location} and
# {detail} are filled in, Retry-After sent or not). NotFound has an entry for completeness, but
# Location raises it as it is (the engine decides what a missing piece means).
# PermissionDenied/Unauthenticated: the gateway's own credentials for the location are wrong,
# a problem for the operator, not the client: 503 (the client may retry later, nothing it can
# change) naming the location and pointing at the configuration; never AccessDenied, which
# would tell the client its own credentials are wrong.
S3_ANSWERS: dict[type[TranslatorError], tuple[str, str, bool]] = {
    NotFound: ("NoSuchKey", "Location {location}: {detail} is gone", False),
    AlreadyExists: ("PreconditionFailed", "Location {location}: {detail}", False),
    Precondition: ("OperationAborted", "Location {location}: a conflicting change happened "
                                       "meanwhile ({detail}); try again", False),
    NotSupported: ("NotImplemented", "Location {location} cannot do this: {detail}", False),
    Rejected: ("InvalidArgument", "Location {location} refused the request: {detail}", False),
    PermissionDenied: ("ServiceUnavailable", "Location {location} is misconfigured: its backend "
                                             "refuses the gateway's credentials ({detail}); the "
                                             "operator must fix the location's configuration",
                       False),
    Unauthenticated: ("ServiceUnavailable", "Location {location} is misconfigured: its backend "
                                            "does not accept the gateway's credentials "
                                            "({detail}); the operator must fix the location's "
                                            "configuration", False),
    Throttled: ("SlowDown", "Location {location} asks to slow down: {detail}", True),
    Unavailable: ("ServiceUnavailable", "Location {location} is unavailable: {detail}", False),
}


def s3_error(exc: TranslatorError, location: str) -> S3Error:
    """The S3 error a client gets for `exc` from `location` ("name (type)")."""
    for kind in type(exc).__mro__:
        answer = S3_ANSWERS.get(kind)  # type: ignore[arg-type]
        if answer is not None:
            break
    else:
        answer = S3_ANSWERS[Unavailable]
    code, message, retry = answer
    headers = None
    if retry:
        retry_after = getattr(exc, "retry_after", None) or 1
        headers = {"Retry-After": str(max(1, round(retry_after)))}
    return S3Error(code, message.format(location=location, detail=str(exc) or type(exc).__name__),
                   headers=headers)


class Location:
    """One configured location: its translator inside the wrappers, as the engine uses it."""

    FAILURES_TO_TRIP = Breaker.FAILURES_TO_TRIP

    def __init__(self, spec: LocationSpec, translator: Translator) -> None:
        self.spec = spec
        self.name = spec.name
        self.type_name = spec.type
        self.translator = translator  # the bare translator (open/close, fsck's questions)
        self.health = HealthState()
        self.store = compose(translator, self.health)  # every data call goes through this
        self._metered = next(layer for layer in layers(self.store) if isinstance(layer, Metered))
        self._label = f"{self.name} ({self.type_name})"

    @property
    def metrics(self) -> Metrics | None:
        return self._metered.metrics

    @metrics.setter
    def metrics(self, metrics: Metrics | None) -> None:
        self._metered.metrics = metrics

    @property
    def lists_only_own_pieces(self) -> bool:
        return self.translator.lists_only_own_pieces

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
        return s3_error(Unavailable(detail), self._label)

    async def _s3(self, call: Awaitable[T]) -> T:
        try:
            return await call
        except NotFound:
            raise
        except TranslatorError as exc:
            raise s3_error(exc, self._label) from exc

    async def _s3_stream(self, stream: ByteStream) -> ByteStream:
        """Errors in the middle of a GET become S3 errors too (the handler cuts the
        connection on one)."""
        try:
            async for chunk in stream:
                yield chunk
        except NotFound:
            raise
        except TranslatorError as exc:
            raise s3_error(exc, self._label) from exc
        finally:
            aclose = getattr(stream, "aclose", None)
            if aclose is not None:
                await aclose()

    async def put(self, key: str, body: ByteStream, size: int, meta: ObjectMeta) -> Stored:
        return await self._s3(self.store.put(key, body, size, meta))

    async def get(self, stored: Stored, offset: int = 0, length: int | None = None) -> ByteStream:
        return self._s3_stream(await self._s3(self.store.get(stored, offset, length)))

    async def head(self, stored: Stored) -> Stored:
        return await self._s3(self.store.head(stored))

    async def delete(self, stored: Stored) -> None:
        await self._s3(self.store.delete(stored))

    async def copy(self, src: Stored, key: str, meta: ObjectMeta) -> Stored | None:
        return await self._s3(self.store.copy(src, key, meta))

    async def copy_part(self, src: Stored, offset: int, length: int, key: str, upload_id: str,
                        number: int) -> Stored | None:
        return await self._s3(self.store.copy_part(src, offset, length, key, upload_id, number))

    async def update_meta(self, stored: Stored, meta: ObjectMeta) -> Stored:
        return await self._s3(self.store.update_meta(stored, meta))

    async def create_upload(self, key: str, meta: ObjectMeta) -> str:
        return await self._s3(self.store.create_upload(key, meta))

    async def upload_part(self, key: str, upload_id: str, number: int, body: ByteStream,
                          size: int) -> Stored:
        return await self._s3(self.store.upload_part(key, upload_id, number, body, size))

    async def complete_upload(self, key: str, upload_id: str, parts: list[Part],
                              meta: ObjectMeta) -> list[Stored]:
        return await self._s3(self.store.complete_upload(key, upload_id, parts, meta))

    async def abort_upload(self, key: str, upload_id: str, parts: list[Part]) -> None:
        await self._s3(self.store.abort_upload(key, upload_id, parts))

    async def discard_part(self, key: str, upload_id: str, part: Part) -> None:
        await self._s3(self.store.discard_part(key, upload_id, part))

    def list_pieces(self, prefix: str = "") -> AsyncIterator[Stored]:
        """Every piece at the location (fsck): not failed fast, fsck reports a down location;
        errors are translator errors (Unavailable, NotSupported)."""
        return self.store.list_pieces(prefix)

    def piece_id(self, stored: Stored) -> str:
        return self.store.piece_id(stored)

    def member_pieces(self, stored: Stored) -> list[Stored]:
        """The pieces on other locations `stored` stands for (a mirror's, on its members)."""
        return self.store.member_pieces(stored)

    def list_objects(self, prefix: str = "", start_after: str = "",
                     details: bool = True) -> AsyncIterator[ForeignObject]:
        """What the location's container holds, whoever wrote it (import, read-through);
        errors are translator errors, as for list_pieces."""
        return self.store.list_objects(prefix, start_after, details)

    async def describe(self, key: str) -> ForeignObject | None:
        return await self._s3(self.store.describe(key))

    def storage_id(self) -> str:
        return self.store.storage_id()

    async def check(self, timeout: float) -> Health:
        """Run the translator's probe; never raises. Updates the cached health state."""
        started = time.monotonic()
        try:
            async with asyncio.timeout(timeout):
                result = await self.store.check()
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


# Kept importable from here (older callers and tests).
__all__ = ["CALL_TIMEOUT", "LOCAL_ERRNOS", "LOCATION_HEADER", "PIECE_TOKEN", "HealthState",
           "Location", "Locations", "TrackedBody", "s3_error"]


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
        # Once all exist: a composite location (mirror) takes its members' Locations.
        for location in self.by_name.values():
            if not location.translator.composite:
                continue
            try:
                location.translator.bind(self.by_name)  # type: ignore[attr-defined]
            except ConfigError as exc:
                raise ConfigFileError(location_file,
                                      f'location "{location.name}" key "details.{exc.key}"',
                                      exc.message) from None

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
