"""The location wrappers (gateway/translators/wrappers.py) and the Location around them.

Every wrapper must forward every method of the Translator interface: the interface is read from
the ABC itself, so a method added there and forgotten in a wrapper fails here. The inner
translator is a recorder (the backend stand-in; the wrappers are what is under test).
"""

from __future__ import annotations

import asyncio
import errno
import inspect
import logging
import typing
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from gateway.config import LocationSpec
from gateway.errors import S3Error
from gateway.health.metrics import Metrics
from gateway.locations import S3_ANSWERS, Location, s3_error
from gateway.translators import base, wrappers
from gateway.translators.base import (
    AlreadyExists,
    ByteStream,
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
from gateway.translators.mem import MemTranslator
from gateway.translators.wrappers import (
    Boundary,
    Breaker,
    HealthState,
    Metered,
    Timeouts,
    Wrapper,
    compose,
)

# The interface: every public method the ABC defines (abstract or with a default).
INTERFACE = sorted(name for name, member in inspect.getmembers(Translator, inspect.isfunction)
                   if not name.startswith("_"))
HINTS = {name: typing.get_type_hints(getattr(Translator, name), vars(base)) for name in INTERFACE}
STORED = Stored("probe", "bkt/key~0123", 3, version_id="v1", etag="e1")
BODY = b"body bytes"
# Return types that are streams (the recorder answers with an async generator).
LISTINGS = (ByteStream, AsyncIterator[Stored], AsyncIterator[ForeignObject])


def sample(hint: Any, param: str) -> Any:
    """An argument of type `hint` that the recorder can give back to compare."""
    samples: dict[Any, Any] = {
        str: f"{param}-arg", int: 7, int | None: 5, bool: False, Stored: STORED, ObjectMeta: ObjectMeta(
            content_type="text/odd", user={"Odd-Name_1": "v"}, tags={"t": "1"}),
        Part: Part(2, STORED), list[Part]: [Part(1, STORED), Part(2, STORED)],
    }
    if hint == ByteStream:
        return chunks(BODY)
    assert hint in samples, f"teach this test to make a {hint!r} (parameter {param})"
    return samples[hint]


def result_for(method: str) -> Any:
    """What the recorder answers for `method`, by its declared return type."""
    hint = HINTS[method]["return"]
    results: dict[Any, Any] = {
        Stored: Stored("probe", f"{method}-result", 1), Stored | None: Stored("probe", method, 2),
        list[Stored]: [Stored("probe", method, 4)], str: f"{method}-result", None: None,
        type(None): None, Health: Health(True, method),
        ForeignObject | None: ForeignObject(method, 6, Stored("probe", method, 6)),
    }
    if hint in LISTINGS:
        return {ByteStream: [b"out"], AsyncIterator[Stored]: [Stored("probe", method, 5)],
                AsyncIterator[ForeignObject]: [ForeignObject(method, 7,
                                                             Stored("probe", method, 7))]}[hint]
    assert hint in results, f"teach this test what {method} returns ({hint!r})"
    return results[hint]


async def chunks(data: bytes) -> AsyncIterator[bytes]:
    for start in range(0, len(data), 4):
        yield data[start:start + 4]


async def agen(items: list[Any]) -> AsyncIterator[Any]:
    for item in items:
        yield item


class Recorder:
    """Stands for a translator: records each interface call (bodies read to bytes) and answers
    with result_for(method)."""

    name = "probe"
    type_name = "mem"
    lists_only_own_pieces = True

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def __getattribute__(self, attr: str) -> Any:
        if attr not in INTERFACE:
            return object.__getattribute__(self, attr)
        signature = inspect.signature(getattr(Translator, attr))
        calls = object.__getattribute__(self, "calls")

        async def record(bound: inspect.BoundArguments) -> None:
            arguments = dict(bound.arguments)
            arguments.pop("self")
            for key, value in arguments.items():
                if hasattr(value, "__anext__"):
                    arguments[key] = b"".join([chunk async for chunk in value])
            calls.append((attr, arguments))

        def answer() -> Any:
            value = result_for(attr)
            return agen(value) if HINTS[attr]["return"] in LISTINGS else value

        if inspect.iscoroutinefunction(getattr(Translator, attr)):
            async def method(*args: Any, **kwargs: Any) -> Any:
                bound = signature.bind(self, *args, **kwargs)
                bound.apply_defaults()
                await record(bound)
                return answer()
            return method

        def sync_method(*args: Any, **kwargs: Any) -> Any:
            bound = signature.bind(self, *args, **kwargs)
            bound.apply_defaults()
            calls.append((attr, {k: v for k, v in bound.arguments.items() if k != "self"}))
            return answer()
        return sync_method


def wrapper_factories() -> dict[type[Wrapper], Callable[[Any], Translator]]:
    def metered(inner: Any) -> Translator:
        wrapper = Metered(inner)
        wrapper.metrics = Metrics()  # metering on: its body and stream paths are exercised
        return wrapper

    return {Wrapper: Wrapper, Boundary: Boundary, Timeouts: Timeouts, Metered: metered,
            Breaker: lambda inner: Breaker(inner, HealthState())}


def test_every_wrapper_class_is_covered() -> None:
    defined = {cls for cls in vars(wrappers).values()
               if isinstance(cls, type) and issubclass(cls, Wrapper)}
    assert defined == set(wrapper_factories()), "add the new wrapper to wrapper_factories()"
    assert {"put", "get", "head", "delete", "copy", "create_upload", "upload_part",
            "complete_upload", "abort_upload", "list_pieces", "check"} <= set(INTERFACE)


async def call_and_collect(target: Any, method: str, args: dict[str, Any]) -> Any:
    result = getattr(target, method)(**args)
    if inspect.isawaitable(result):
        result = await result
    if hasattr(result, "__anext__"):
        result = [item async for item in result]
    return result


def expected_arguments(method: str, args: dict[str, Any]) -> dict[str, Any]:
    expected = {key: (BODY if HINTS[method].get(key) == ByteStream else value)
                for key, value in args.items()}
    signature = inspect.signature(getattr(Translator, method))
    for name, param in signature.parameters.items():
        if name != "self" and name not in expected:
            expected[name] = param.default
    return expected


def make_args(method: str) -> dict[str, Any]:
    signature = inspect.signature(getattr(Translator, method))
    return {name: sample(HINTS[method][name], name)
            for name in signature.parameters if name != "self"}


@pytest.mark.parametrize("method", INTERFACE)
@pytest.mark.parametrize("wrapper", list(wrapper_factories()), ids=lambda cls: cls.__name__)
async def test_each_wrapper_forwards_every_method(wrapper: type[Wrapper], method: str) -> None:
    inner = Recorder()
    wrapped = wrapper_factories()[wrapper](inner)
    args = make_args(method)
    result = await call_and_collect(wrapped, method, args)
    assert inner.calls == [(method, expected_arguments(method, args))]
    assert result == result_for(method)
    assert (wrapped.name, wrapped.type_name, wrapped.lists_only_own_pieces) == \
        ("probe", "mem", True)


@pytest.mark.parametrize("method", INTERFACE)
async def test_the_composed_stack_and_location_forward_every_method(method: str) -> None:
    stack_inner = Recorder()
    result = await call_and_collect(compose(stack_inner, HealthState()), method,
                                    make_args(method))
    assert stack_inner.calls == [(method, expected_arguments(method, make_args(method)))]
    assert result == result_for(method)
    if method in ("open", "close"):
        return  # Locations opens and closes the bare translator
    inner = Recorder()
    location = Location(LocationSpec("probe", "mem", False, {}, "probe"), inner)  # type: ignore[arg-type]
    location.metrics = Metrics()
    args = make_args(method) if method != "check" else {"timeout": 5.0}
    assert await call_and_collect(location, method, args) == result_for(method)
    assert [call[0] for call in inner.calls] == [method]


# ---- what each wrapper adds ------------------------------------------------------------------

class Failing(MemTranslator):
    """A mem location whose data calls raise `error` (set by the test) before doing anything."""

    error: BaseException | None = None

    async def head(self, stored: Stored) -> Stored:
        if self.error is not None:
            raise self.error
        return await super().head(stored)

    async def put(self, key: str, body: ByteStream, size: int, meta: ObjectMeta) -> Stored:
        if self.error is not None:
            async for _ in body:
                pass
            raise self.error
        return await super().put(key, body, size, meta)


def failing_location() -> tuple[Location, Failing]:
    translator = Failing("flaky", {}, {})
    return Location(LocationSpec("flaky", "mem", False, {}, "flaky"), translator), translator


async def test_boundary_wraps_the_unexpected_and_keeps_the_clients_body_error() -> None:
    boundary = Boundary(Failing("flaky", {}, {}))
    boundary.inner.error = KeyError("surprise")  # type: ignore[attr-defined]
    with pytest.raises(Unavailable, match="KeyError during head") as caught:
        await boundary.head(STORED)
    assert caught.value.kind == "KeyError"
    boundary.inner.error = OSError(errno.EMFILE, "Too many open files")  # type: ignore[attr-defined]
    with pytest.raises(Throttled, match="local resource"):
        await boundary.head(STORED)

    async def broken_body() -> AsyncIterator[bytes]:
        yield b"abc"
        raise S3Error("IncompleteBody")

    boundary.inner.error = ConnectionResetError("backend hung up")  # type: ignore[attr-defined]
    with pytest.raises(S3Error, match="IncompleteBody"):  # the client's, not the backend's
        await boundary.put("k", broken_body(), 10, ObjectMeta())


async def test_breaker_trips_on_outages_only_and_fails_fast() -> None:
    location, translator = failing_location()
    for error in (NotFound("x"), Rejected("bad tag"), Precondition("moved"), Throttled("slow"),
                  PermissionDenied("no"), Unauthenticated("who")) * 2:
        translator.error = error
        with pytest.raises((NotFound, S3Error)):
            await location.head(STORED)
    assert location.health.state != "down" and location.health.consecutive_failures == 0
    translator.error = ConnectionRefusedError("gone")
    for _ in range(Location.FAILURES_TO_TRIP):
        with pytest.raises(S3Error) as caught:
            await location.head(STORED)
        assert caught.value.code == "ServiceUnavailable" and "flaky (mem)" in caught.value.message
    assert location.health.state == "down"
    translator.error = None  # the backend is fine again, but only a health check says so
    with pytest.raises(S3Error, match="3 consecutive request failures"):
        await location.head(STORED)
    assert (await location.check(1.0)).ok and location.health.state == "up"
    with pytest.raises(NotFound):
        await location.head(STORED)


async def test_a_config_problem_is_logged_once_and_never_trips(
        caplog: pytest.LogCaptureFixture) -> None:
    location, translator = failing_location()
    translator.error = PermissionDenied("AccessDenied: not allowed to write")
    with caplog.at_level(logging.ERROR, logger="gateway.locations"):
        for _ in range(Location.FAILURES_TO_TRIP * 2):
            with pytest.raises(S3Error) as caught:
                await location.head(STORED)
    assert caught.value.status == 503 and "misconfigured" in caught.value.message
    assert "flaky" in caught.value.message and caught.value.code == "ServiceUnavailable"
    assert location.health.state != "down"
    logged = [r for r in caplog.records if "refuses the gateway's credentials" in r.message]
    assert len(logged) == 1 and "flaky" in logged[0].message


async def test_timeouts_bound_calls_without_a_body() -> None:
    class Hung(MemTranslator):
        async def head(self, stored: Stored) -> Stored:
            await asyncio.sleep(30)
            raise AssertionError("not reached")

    timed = Timeouts(Hung("hung", {}, {}), call_timeout=0.05)
    with pytest.raises(Unavailable, match="head timed out") as caught:
        await timed.head(STORED)
    assert caught.value.kind == "timeout"


async def test_metering_counts_bytes_calls_and_outages() -> None:
    location = Location(LocationSpec("metered", "mem", False, {}, "metered"),
                        MemTranslator("metered", {}, {}))
    location.metrics = metrics = Metrics()
    stored = await location.put("metered/k~000000000000000000000001", chunks(b"x" * 100), 100,
                                ObjectMeta())
    assert b"".join([c async for c in await location.get(stored)]) == b"x" * 100
    with pytest.raises(NotFound):
        await location.head(Stored("metered", "missing", 1))

    def value(name: str, **labels: str) -> float:
        return metrics.registry.get_sample_value(name, labels) or 0.0

    assert value("s3gw_backend_bytes_total", location="metered", direction="in") == 100
    assert value("s3gw_backend_bytes_total", location="metered", direction="out") == 100
    assert value("s3gw_backend_duration_seconds_count", location="metered", call="head") == 1
    assert value("s3gw_backend_errors_total", location="metered", kind="unavailable") == 0
    await location.delete(stored)


@pytest.mark.parametrize(("error", "code", "status"), [
    (AlreadyExists("k"), "PreconditionFailed", 412),
    (Precondition("etag moved"), "OperationAborted", 409),
    (NotSupported("versions"), "NotImplemented", 501),
    (Rejected("InvalidTag"), "InvalidArgument", 400),
    (PermissionDenied("AccessDenied"), "ServiceUnavailable", 503),
    (Unauthenticated("InvalidAccessKeyId"), "ServiceUnavailable", 503),
    (Throttled("SlowDown", retry_after=7), "SlowDown", 503),
    (Unavailable("HTTP 500"), "ServiceUnavailable", 503),
    (NotFound("gone"), "NoSuchKey", 404),
])
def test_each_translator_error_has_one_s3_answer(error: TranslatorError, code: str,
                                                 status: int) -> None:
    answer = s3_error(error, "cloud-a (azure)")
    assert (answer.code, answer.status) == (code, status)
    assert "cloud-a (azure)" in answer.message
    assert (answer.headers or {}).get("Retry-After") == ("7" if code == "SlowDown" else None)


def test_the_error_set_is_closed_and_fully_mapped() -> None:
    errors = {cls for cls in vars(base).values()
              if isinstance(cls, type) and issubclass(cls, TranslatorError)
              and cls is not TranslatorError}
    assert errors == set(S3_ANSWERS)
