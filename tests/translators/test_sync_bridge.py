"""gateway.translators.sync_bridge on its own: plain generators and thread pools, no SDK."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from gateway.translators.sync_bridge import AsyncBodyReader, BodyFailed, stream_from_thread

THREAD_PREFIX = "bridge-test"


class BodyBroke(Exception):
    pass


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    executor = ThreadPoolExecutor(2, thread_name_prefix=THREAD_PREFIX)
    yield executor
    executor.shutdown(wait=True, cancel_futures=True)


async def chunks_of(data: bytes, size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start:start + size]


async def in_thread(pool: ThreadPoolExecutor, fn: object, *args: object) -> object:
    return await asyncio.get_running_loop().run_in_executor(pool, fn, *args)  # type: ignore[arg-type]


def read_all(reader: AsyncBodyReader, size: int) -> bytes:
    pieces = []
    while piece := reader.read(size):
        pieces.append(piece)
    return b"".join(pieces)


async def drain(stream: AsyncIterator[bytes]) -> list[bytes]:
    return [chunk async for chunk in stream]


# ---- AsyncBodyReader ----------------------------------------------------------------------


async def test_reads_are_exact_across_chunks(pool: ThreadPoolExecutor) -> None:
    data = bytes(range(256)) * 40
    async with AsyncBodyReader(chunks_of(data, 1000), len(data)) as reader:
        first = await in_thread(pool, reader.read, 2500)  # spans three body chunks
        assert first == data[:2500]
        rest = await in_thread(pool, read_all, reader, 777)
        assert rest == data[2500:]
        assert await in_thread(pool, reader.read, 10) == b""  # the declared end
        await reader.finish()
    assert reader.delivered == len(data)


async def test_consecutive_slices_for_several_calls(pool: ThreadPoolExecutor) -> None:
    data = b"abcdefghij" * 100
    async with AsyncBodyReader(chunks_of(data, 64), len(data)) as reader:
        parts = [await in_thread(pool, reader.read, n) for n in (300, 300, 400)]
        await reader.finish()
    assert parts == [data[:300], data[300:600], data[600:]]


async def test_body_error_surfaces_in_the_reader(pool: ThreadPoolExecutor) -> None:
    async def broken() -> AsyncIterator[bytes]:
        yield b"x" * 100
        raise BodyBroke("client went away")

    seen: list[BaseException] = []

    def read_until_failure(reader: AsyncBodyReader) -> None:
        try:
            reader.read(1000)
        except BodyFailed as exc:
            seen.append(exc)
            raise RuntimeError("the SDK wraps what read() raised") from exc

    with pytest.raises(BodyBroke, match="client went away"):  # the body's own error, unwrapped
        async with AsyncBodyReader(broken(), 1000) as reader:
            await in_thread(pool, read_until_failure, reader)
    assert len(seen) == 1 and "BodyBroke" in str(seen[0])


@pytest.mark.parametrize(("sent", "declared", "message"),
                         [(50, 100, "ended after 50 of 100"), (150, 100, "longer")])
async def test_wrong_size_bodies(pool: ThreadPoolExecutor, sent: int, declared: int,
                                 message: str) -> None:
    with pytest.raises(ValueError, match=message):
        async with AsyncBodyReader(chunks_of(b"y" * sent, 50), declared) as reader:
            await in_thread(pool, read_all, reader, 30)
            await reader.finish()


async def test_memory_bound_never_more_than_n_chunks_ahead(pool: ThreadPoolExecutor) -> None:
    pulled = 0

    async def counted() -> AsyncIterator[bytes]:
        nonlocal pulled
        for _ in range(20):
            pulled += 1
            yield b"z" * 10

    async with AsyncBodyReader(counted(), 200, max_chunks=3) as reader:
        await asyncio.sleep(0.1)  # the worker has not read yet: the feeder must stop at 3
        assert pulled == 3
        for taken in range(1, 21):
            assert await in_thread(pool, reader.read, 10) == b"z" * 10
            await asyncio.sleep(0.01)
            assert pulled <= taken + 3
        await reader.finish()


async def test_abandoned_upload_releases_the_blocked_thread(pool: ThreadPoolExecutor) -> None:
    resume = asyncio.Event()
    thrown: list[BaseException] = []
    pulled_after = 0

    async def stalled() -> AsyncIterator[bytes]:
        nonlocal pulled_after
        yield b"a"
        try:
            await resume.wait()  # a client that stops sending
        except BaseException as exc:
            thrown.append(exc)
            raise
        pulled_after += 1
        yield b"late"
        pulled_after += 1
        yield b"never"

    outcome: list[str] = []
    released = threading.Event()

    def read_forever(reader: AsyncBodyReader) -> None:
        try:
            reader.read(100)
        except BodyFailed as exc:
            outcome.append(str(exc))
        released.set()

    async def upload() -> None:
        async with AsyncBodyReader(stalled(), 100) as reader:
            await in_thread(pool, read_forever, reader)

    task = asyncio.create_task(upload())
    await asyncio.sleep(0.1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await asyncio.to_thread(released.wait, 2)
    assert outcome == ["upload abandoned"]
    assert await in_thread(pool, lambda: "free") == "free"
    # The body read in progress was not cancelled under its owner; once it returns, the
    # feeder stops pulling.
    resume.set()
    await asyncio.sleep(0.05)
    assert thrown == [] and pulled_after == 1


async def test_sdk_failure_stops_the_feeder(pool: ThreadPoolExecutor) -> None:
    pulled = 0

    async def endless() -> AsyncIterator[bytes]:
        nonlocal pulled
        while True:
            pulled += 1
            yield b"e" * 10

    def fail(reader: AsyncBodyReader) -> None:
        reader.read(5)
        raise ConnectionError("backend refused")

    with pytest.raises(ConnectionError):
        async with AsyncBodyReader(endless(), 10**9) as reader:
            await in_thread(pool, fail, reader)
    count = pulled
    await asyncio.sleep(0.05)
    assert pulled == count  # nothing keeps pulling the body
    with pytest.raises(BodyFailed):
        reader.read(1)  # a late read in some thread fails at once instead of blocking


# ---- stream_from_thread -------------------------------------------------------------------


class Source:
    """A blocking chunk generator that records what happened to it, and where."""

    def __init__(self, count: int | None = None, delay: float = 0.0, fail_at: int | None = None,
                 open_error: BaseException | None = None) -> None:
        self.count, self.delay, self.fail_at, self.open_error = count, delay, fail_at, open_error
        self.produced = 0
        self.closed_in: str | None = None
        self.reading = False
        self.overlap = False

    def open(self) -> Iterator[bytes]:
        if self.open_error is not None:
            raise self.open_error
        try:
            while self.count is None or self.produced < self.count:
                if self.fail_at is not None and self.produced == self.fail_at:
                    raise BodyBroke("backend read failed")
                self.reading = True
                time.sleep(self.delay)
                self.reading = False
                self.produced += 1
                yield f"chunk{self.produced};".encode()
        finally:
            self.overlap = self.overlap or self.reading
            self.closed_in = threading.current_thread().name


async def test_stream_reads_everything(pool: ThreadPoolExecutor) -> None:
    source = Source(count=5)
    stream = await stream_from_thread(pool, source.open)
    assert b"".join(await drain(stream)) == b"".join(f"chunk{i};".encode() for i in range(1, 6))
    assert source.closed_in is not None and source.closed_in.startswith(THREAD_PREFIX)


async def test_opening_error_raises_from_the_call(pool: ThreadPoolExecutor) -> None:
    with pytest.raises(FileNotFoundError):
        await stream_from_thread(pool, Source(open_error=FileNotFoundError("no such object")).open)


async def test_producer_error_surfaces_after_the_good_chunks(pool: ThreadPoolExecutor) -> None:
    stream = await stream_from_thread(pool, Source(fail_at=2).open)
    got = []
    with pytest.raises(BodyBroke, match="backend read failed"):
        async for chunk in stream:
            got.append(chunk)
    assert got == [b"chunk1;", b"chunk2;"]


async def test_early_consumer_exit_releases_the_thread() -> None:
    one = ThreadPoolExecutor(1, thread_name_prefix=THREAD_PREFIX)
    try:
        source = Source(count=None, delay=0.05)  # endless: only closing stops it
        stream = await stream_from_thread(one, source.open, read_ahead=2)
        assert await anext(stream) == b"chunk1;"
        assert await anext(stream) == b"chunk2;"
        await stream.aclose()  # what `async for ... break` and a dropped response lead to
        assert source.closed_in is not None and source.closed_in.startswith(THREAD_PREFIX)
        assert not source.overlap  # never closed under a reading thread
        produced = source.produced
        # The single thread is free at once, and nothing reads on.
        started = time.monotonic()
        assert await in_thread(one, lambda: "free") == "free"
        assert time.monotonic() - started < 0.5
        await asyncio.sleep(0.2)
        assert source.produced == produced
    finally:
        one.shutdown(wait=True)


async def test_cancelled_consumer_waits_for_the_read_in_flight(pool: ThreadPoolExecutor) -> None:
    source = Source(count=None, delay=0.3)
    stream = await stream_from_thread(pool, source.open, read_ahead=1)

    async def consume() -> None:
        async for _ in stream:
            pass

    task = asyncio.create_task(consume())
    await asyncio.sleep(0.1)  # the consumer waits on the second chunk, being read
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await stream.aclose()
    assert source.closed_in is not None and not source.overlap


async def test_read_ahead_is_bounded_and_holds_no_thread(pool: ThreadPoolExecutor) -> None:
    source = Source(count=50)
    stream = await stream_from_thread(pool, source.open, read_ahead=3)
    taken = 0
    async for _ in stream:
        taken += 1
        await asyncio.sleep(0.02)  # a slow client: the pool reads ahead, then stops
        assert source.produced - taken <= 3
        assert not source.reading
    assert taken == 50


async def test_cancelled_while_opening_closes_the_iterator(pool: ThreadPoolExecutor) -> None:
    opened = threading.Event()
    closed = threading.Event()

    def slow_open() -> Iterator[bytes]:
        time.sleep(0.2)
        opened.set()
        try:
            while True:
                yield b"data"
        finally:
            closed.set()

    task = asyncio.create_task(stream_from_thread(pool, slow_open))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await asyncio.to_thread(closed.wait, 2) and opened.is_set()


async def test_event_loop_not_blocked(pool: ThreadPoolExecutor) -> None:
    """Slow blocking reads on both sides: the loop keeps ticking."""
    lags: list[float] = []
    done = asyncio.Event()

    async def ticker() -> None:
        while not done.is_set():
            before = time.monotonic()
            await asyncio.sleep(0.01)
            lags.append(time.monotonic() - before - 0.01)

    def slow_reader(reader: AsyncBodyReader) -> bytes:
        pieces = []
        while piece := reader.read(100):
            time.sleep(0.2)  # a slow network under the SDK
            pieces.append(piece)
        return b"".join(pieces)

    async def upload() -> None:
        data = b"u" * 500
        async with AsyncBodyReader(chunks_of(data, 100), len(data)) as reader:
            assert await in_thread(pool, slow_reader, reader) == data
            await reader.finish()

    async def download() -> None:
        stream = await stream_from_thread(pool, Source(count=5, delay=0.2).open)
        assert len(await drain(stream)) == 5

    tick = asyncio.create_task(ticker())
    await asyncio.gather(upload(), download())
    done.set()
    await tick
    assert len(lags) > 20 and max(lags) < 0.1  # one blocking call would stall it for 0.2 s
