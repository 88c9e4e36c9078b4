"""Bridges between the event loop and a synchronous SDK (b2sdk, python-swiftclient) whose calls
run in a translator's bounded thread pool.

- AsyncBodyReader: the async request body as the blocking, file-like `read(size)` a worker thread
  hands to the SDK. A feeder task on the loop pulls the body at most `max_chunks` chunks ahead of
  the thread (bounded memory), checks the body is exactly the declared size, and wakes a blocked
  thread when either side gives up. Use it as `async with`: on the way out the feeder is stopped,
  and the body's own error replaces whatever the SDK made of it.
- stream_from_thread: a blocking chunk iterator (usually a generator holding the SDK response)
  as an async stream, read in the pool at most `read_ahead` chunks ahead of the consumer. No
  thread is held while the consumer is slow, and the iterator is closed in the pool, never
  under a reading thread, when the consumer stops early.

Per-SDK quirks (rewinding rules, connection pooling, error mapping) stay in the translators.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Executor
from types import TracebackType
from typing import Any

from gateway.translators.base import ByteStream

# Body chunks a feeder may pull ahead of the worker thread (memory bound per upload).
BODY_CHUNKS = 4
# Download chunks read ahead of the consumer: one keeps the SDK busy while the client writes.
READ_AHEAD = 1

_END = object()  # the body ended at exactly its declared size
_ABANDONED = object()  # the loop side gave up: the worker must stop reading

# Cleanup tasks that must outlive a cancelled caller; referenced so they are not collected.
_cleanups: set[asyncio.Task[None]] = set()


class BodyFailed(Exception):
    """Raised by AsyncBodyReader.read() in the worker thread when the body failed (wrong size,
    the client's error) or the upload was abandoned. `async with` turns it back into the body's
    own error on the loop."""


class AsyncBodyReader:
    """`size` bytes of an async body as a blocking file-like object for one worker thread at a
    time (several SDK calls may read consecutive slices of it, one after the other).

    read(n) returns exactly min(n, bytes left) bytes, blocking across chunks: some SDKs take a
    short read for the end of the stream. It never returns more than the declared size; a body
    that is shorter or longer is an error (ValueError), reported by read() or finish().
    Construct it on the event loop."""

    def __init__(self, body: ByteStream, size: int, *, max_chunks: int = BODY_CHUNKS) -> None:
        self._loop = asyncio.get_running_loop()
        self._size = size
        self._items: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._slots = asyncio.Semaphore(max_chunks)
        self._buffer = memoryview(b"")
        self._aborted = False
        self._reading = False  # the feeder is inside the body's own __anext__
        self.delivered = 0  # bytes handed to the worker thread so far
        self.error: BaseException | None = None  # the body's own failure, if any
        self._feeder = self._loop.create_task(self._feed(body))

    # ---- loop side

    async def _feed(self, body: ByteStream) -> None:
        received = 0
        iterator = aiter(body)
        try:
            while True:
                # A slot before each pull, so the body is never more than max_chunks ahead.
                await self._slots.acquire()
                self._reading = True
                try:
                    chunk = await anext(iterator)
                except StopAsyncIteration:
                    break
                finally:
                    self._reading = False
                if self._aborted:
                    return  # abort() came during the read: the request is over
                received += len(chunk)
                if received > self._size:
                    raise ValueError(f"request body is longer than its declared size {self._size}")
                if chunk:
                    self._items.put(chunk)  # the slot is released when the thread takes it
                else:
                    self._slots.release()
            if received < self._size:
                raise ValueError(f"request body ended after {received} of {self._size} bytes")
        except asyncio.CancelledError:
            self._items.put(_ABANDONED)  # abort() cancelled us: unblock the thread
            raise
        except BaseException as exc:  # kept, not raised: finish() and __aexit__ report it
            if not self._aborted:
                self.error = exc
                self._items.put(exc)
            return
        self._items.put(_END)

    def abort(self) -> None:
        """Stop feeding and make the worker's current or next read() fail at once.

        A read of the body in progress is not cancelled: a CancelledError thrown into the
        body's generators would read to their owner (the location's TrackedBody) as the
        client's body failing. The feeder stops as soon as that read returns."""
        self._aborted = True
        self._items.put(_ABANDONED)
        if not self._reading:
            self._feeder.cancel()

    async def finish(self) -> None:
        """After the SDK call succeeded: wait for the body's end and raise its error (such as a
        body longer than declared), so the caller can undo what it wrote."""
        if self.delivered < self._size:  # the SDK stopped early: nothing will free the slots
            self.abort()
            raise ValueError(f"only {self.delivered} of {self._size} body bytes were sent")
        await asyncio.wait([self._feeder])
        if self.error is not None:
            raise self.error

    async def __aenter__(self) -> AsyncBodyReader:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        if exc is not None or not self._feeder.done():
            self.abort()  # the request is over: a thread still in read() must not wait on
        if not self._reading:  # else it ends by itself once the client's chunk or EOF comes
            await asyncio.wait([self._feeder])
        if exc is not None and self.error is not None and exc is not self.error:
            # SDKs wrap whatever read() raised: the client's error is the one to report.
            raise self.error from None

    # ---- worker-thread side

    def read(self, size: int | None = -1) -> bytes:
        """Exactly min(size, bytes left) bytes (all that are left for size < 0); b"" at the
        declared end. Blocks the calling worker thread, never the loop."""
        if self._aborted:  # even with bytes at hand: the request is over
            raise BodyFailed("upload abandoned")
        left = self._size - self.delivered
        wanted = left if size is None or size < 0 else min(size, left)
        pieces: list[bytes] = []
        while wanted:
            if not self._buffer:
                self._buffer = memoryview(self._take())
            piece = self._buffer[:wanted]
            self._buffer = self._buffer[len(piece):]
            pieces.append(bytes(piece))
            wanted -= len(piece)
            self.delivered += len(piece)
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)

    def readable(self) -> bool:
        return True

    def _take(self) -> bytes:
        item = self._items.get()
        if item is _ABANDONED:
            self._items.put(item)  # later reads fail the same way
            raise BodyFailed("upload abandoned")
        if isinstance(item, BaseException):
            self._items.put(item)
            raise BodyFailed(f"request body failed: {type(item).__name__}: {item}")
        if item is _END:  # cannot happen before `size` bytes: the feeder checks the count
            self._items.put(item)
            raise BodyFailed("request body ended early")
        with contextlib.suppress(RuntimeError):  # the loop is closing: nobody feeds any more
            self._loop.call_soon_threadsafe(self._slots.release)
        return item


async def stream_from_thread(executor: Executor, open_iterator: Callable[[], Iterator[bytes]],
                             *, read_ahead: int = READ_AHEAD) -> ByteStream:
    """Call `open_iterator()` and read its first chunk in `executor`, so opening errors (a
    missing object) raise here; then return the rest as an async stream.

    Chunks are read one at a time in the pool, at most `read_ahead` ahead of the consumer; a
    slow consumer holds no thread. When the consumer stops early (or the read fails) the stream
    waits for a read in flight, then closes the iterator in the pool: a generator's `with` and
    `finally` blocks release the SDK's response or connection there."""
    loop = asyncio.get_running_loop()
    opening = loop.run_in_executor(executor, _open, open_iterator)
    try:
        iterator, first = await asyncio.shield(opening)
    except asyncio.CancelledError:
        opening.add_done_callback(lambda done: _close_opened(executor, done))
        raise
    reader = _Prefetcher(loop, executor, iterator, read_ahead)
    if first is None:
        reader.exhausted = True
    else:
        reader.ready.append(first)
    return _stream(reader)


def _open(open_iterator: Callable[[], Iterator[bytes]]) -> tuple[Iterator[bytes], bytes | None]:
    iterator = open_iterator()
    return iterator, _next_chunk(iterator)


def _next_chunk(iterator: Iterator[bytes]) -> bytes | None:
    """The next non-empty chunk, None at the end."""
    for chunk in iterator:
        if chunk:
            return chunk
    return None


def _close_opened(executor: Executor, done: asyncio.Future[Any]) -> None:
    """The caller was cancelled while the iterator was being opened: close it once open."""
    if done.cancelled() or done.exception() is not None:
        return
    close = getattr(done.result()[0], "close", None)
    if close is not None:
        with contextlib.suppress(RuntimeError):  # pool shut down: the iterator is collected
            executor.submit(close)


class _Prefetcher:
    """The loop-side state of one stream: chunks read ahead, the one read in flight."""

    def __init__(self, loop: asyncio.AbstractEventLoop, executor: Executor,
                 iterator: Iterator[bytes], read_ahead: int) -> None:
        self.loop = loop
        self.executor = executor
        self.iterator = iterator
        self.read_ahead = max(read_ahead, 1)
        self.ready: deque[bytes] = deque()
        self.exhausted = False
        self.error: BaseException | None = None
        self.closing = False
        self.pending: asyncio.Future[bytes | None] | None = None
        self.waiter: asyncio.Future[None] | None = None

    def fill(self) -> None:
        """Start the next read if there is room ahead; at most one read is ever in flight."""
        if (self.pending is not None or self.exhausted or self.error is not None
                or self.closing or len(self.ready) >= self.read_ahead):
            return
        try:
            self.pending = self.loop.run_in_executor(self.executor, _next_chunk, self.iterator)
        except RuntimeError as exc:  # the pool was shut down (translator closed)
            self.error = exc
            return
        self.pending.add_done_callback(self._landed)

    def _landed(self, future: asyncio.Future[bytes | None]) -> None:
        self.pending = None
        if future.cancelled():  # a queued read dropped by the pool's shutdown
            self.error = RuntimeError("stream's thread pool was shut down")
        elif (exc := future.exception()) is not None:
            self.error = exc
        elif (chunk := future.result()) is None:
            self.exhausted = True
        else:
            self.ready.append(chunk)
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)
        self.fill()  # keep reading ahead while the consumer is busy elsewhere

    async def next(self) -> bytes | None:
        while True:
            if self.ready:
                chunk = self.ready.popleft()
                self.fill()
                return chunk
            if self.error is not None:
                raise self.error
            if self.exhausted:
                return None
            self.fill()
            self.waiter = self.loop.create_future()
            await self.waiter  # the read's future itself is never cancelled by our caller

    async def close(self) -> None:
        self.closing = True
        if self.pending is not None:  # never close the iterator under a reading thread
            await asyncio.wait([self.pending])
        if self.exhausted:
            return  # a finished generator has already run its cleanup
        close = getattr(self.iterator, "close", None)
        if close is None:
            return
        # The stream's outcome is decided already: an error while releasing it is not news.
        with contextlib.suppress(Exception):
            try:
                closing = self.loop.run_in_executor(self.executor, close)
            except RuntimeError:  # the pool was shut down: release the response here instead
                close()
                return
            await closing


async def _stream(reader: _Prefetcher) -> ByteStream:
    try:
        while (chunk := await reader.next()) is not None:
            yield chunk
    finally:
        # Read to the end, nothing is in flight and the generator cleaned up after itself;
        # otherwise clean up in a task of its own, shielded: a second cancellation must not
        # skip it.
        if reader.pending is not None or not reader.exhausted:
            cleanup = asyncio.ensure_future(reader.close())
            _cleanups.add(cleanup)
            cleanup.add_done_callback(_cleanups.discard)
            await asyncio.shield(cleanup)


__all__ = ["AsyncBodyReader", "BodyFailed", "stream_from_thread"]
