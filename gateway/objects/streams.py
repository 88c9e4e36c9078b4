"""Byte streams the engine writes and reads: a body verified while it streams, and a byte
range read back from an object's pieces. Both hold back their last chunk until every check has
passed, so a location never receives the complete bytes of a bad write and so never commits
one."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterable, AsyncIterator, Iterable
from typing import TYPE_CHECKING, Any

from gateway import checksums  # pure functions: hashers and encodings, no HTTP
from gateway.crypto import objects as sse_objects  # encryption at rest (issue 15)
from gateway.errors import S3Error
from gateway.metadata.base import ObjectRecord
from gateway.objects.options import Verifier
from gateway.translators.base import CHUNK_SIZE, NotFound, Stored

if TYPE_CHECKING:
    from gateway.crypto.sse import CustomerKey, Encryption
    from gateway.locations import Locations

# Hash big chunks in a worker thread (hashlib drops the GIL), small ones inline.
THREAD_HASH_MIN = 256 * 1024


def md5_inline(md5: Any, data: bytes) -> None:
    """Hash a small buffer on the loop without releasing the GIL: hashlib drops it for 2 KiB
    and more, and getting it back behind busy worker threads costs more than the hashing."""
    view = memoryview(data)
    for start in range(0, len(view), 2047):
        md5.update(view[start:start + 2047])


async def coalesce(stream: AsyncIterable[bytes], size: int) -> AsyncIterator[bytes]:
    """Regroup a stream into chunks of at least `size` bytes (the last may be smaller).
    Sockets deliver ~256 KiB at a time; hashing and writing 1 MiB per thread hop costs a
    quarter of the hops, for one memory copy."""
    held: list[bytes] = []
    total = 0
    async for chunk in stream:
        if not chunk:
            continue
        if not held and len(chunk) >= size:
            yield chunk
            continue
        held.append(chunk)
        total += len(chunk)
        if total >= size:
            yield b"".join(held)
            held.clear()
            total = 0
    if held:
        yield b"".join(held)


class VerifiedBody:
    """A body of exactly `size` bytes, MD5-hashed (the ETag) and checksummed with each of
    `algorithms` as it streams. At its end it checks the length (IncompleteBody / longer:
    InvalidRequest), the expected MD5 (BadDigest) and runs `verify` with the checksums, before
    its last chunk is handed on."""

    def __init__(self, source: AsyncIterable[bytes], size: int, expected_md5: bytes | None,
                 algorithms: Iterable[str] = (), verify: Verifier | None = None) -> None:
        self.source = source
        self.size = size
        self.expected_md5 = expected_md5
        self.verify = verify
        self.md5 = hashlib.md5()
        self._hashers = {algorithm: checksums.hasher(algorithm)
                         for algorithm in dict.fromkeys(algorithms)}
        self.checksums: dict[str, bytes] = {}  # algorithm -> raw value, once the body ended

    def _update(self, chunk: bytes) -> None:
        self.md5.update(chunk)
        for h in self._hashers.values():
            h.update(chunk)

    def _update_inline(self, chunk: bytes) -> None:
        md5_inline(self.md5, chunk)
        view = memoryview(chunk)
        for h in self._hashers.values():
            for start in range(0, len(view), 2047):
                h.update(view[start:start + 2047])

    async def __aiter__(self) -> AsyncIterator[bytes]:
        seen = 0
        pending: bytes | None = None
        hashing: asyncio.Future[None] | None = None
        loop = asyncio.get_running_loop()
        async for chunk in coalesce(self.source, CHUNK_SIZE):
            seen += len(chunk)
            if seen > self.size:
                raise S3Error("InvalidRequest", "The body is longer than its declared length.")
            if hashing is not None:
                await hashing  # hash updates stay in order
                hashing = None
            if len(chunk) >= THREAD_HASH_MIN:
                # Hash this chunk in a thread while the consumer stores the previous one.
                hashing = loop.run_in_executor(None, self._update, chunk)
            else:
                self._update_inline(chunk)
            if pending is not None:
                yield pending
            pending = chunk
        if hashing is not None:
            await hashing
        if seen != self.size:
            raise S3Error("IncompleteBody")
        if self.expected_md5 is not None and self.md5.digest() != self.expected_md5:
            raise S3Error("BadDigest")
        self.checksums = {algorithm: bytes(h.digest()) for algorithm, h in self._hashers.items()}
        if self.verify is not None:
            self.verify(self.checksums)
        if pending is not None:
            yield pending

    @property
    def etag(self) -> str:
        return self.md5.hexdigest()

    def checksum(self, algorithm: str) -> str:
        """The base64 value of `algorithm` over the whole body (after the iteration)."""
        return checksums.encode(self.checksums[algorithm])


def piece_spans(pieces: list[Stored], first: int, last: int) -> list[tuple[Stored, int, int]]:
    """Map the byte range [first, last] onto the pieces: (piece, offset in piece, length)."""
    spans = []
    start = 0
    for piece in pieces:
        end = start + piece.size  # exclusive
        if end > first and start <= last:
            offset = max(first - start, 0)
            stop = min(last + 1, end) - start
            spans.append((piece, offset, stop - offset))
        start = end
        if start > last:
            break
    return spans


def missing_data(key: str, what: str = "The object's") -> S3Error:
    return S3Error("NoSuchKey", f"{what} data is missing from its location.", Key=key)


class SourceBody:
    """A byte range of a stored object, read piece by piece from its location(s), MD5-hashed
    and checksummed (`algorithms`) as it streams (the source of a streamed copy). The last
    chunk is held back until the length is confirmed and, when the whole object is read, its
    stored whole-object checksum too (if it is one of `algorithms`), so a source that comes
    up short or corrupt never completes a write at the destination."""

    def __init__(self, locations: Locations, obj: ObjectRecord, first: int, length: int,
                 algorithms: tuple[str, ...] = ()) -> None:
        self.locations = locations
        self.record = obj
        self.key = obj.key
        self.first = first
        self.length = length
        self.md5 = hashlib.md5()
        self._hashers = {algorithm: checksums.hasher(algorithm) for algorithm in algorithms}
        stored = obj.attrs.get("checksum")
        self._expected = (stored if stored and first == 0 and length == obj.size
                          and stored["type"] == checksums.FULL_OBJECT
                          and stored["algorithm"] in self._hashers else None)

    def _update(self, chunk: bytes) -> None:
        self.md5.update(chunk)
        for h in self._hashers.values():
            h.update(chunk)

    def checksum(self, algorithm: str) -> str:
        """The base64 `algorithm` checksum of the bytes copied (after the iteration)."""
        return checksums.encode(bytes(self._hashers[algorithm].digest()))

    async def _chunks(self) -> AsyncIterator[bytes]:
        """The range's bytes as stored, piece by piece."""
        last = self.first + self.length - 1
        for piece, offset, span_length in (piece_spans(self.record.pieces, self.first, last)
                                           if self.length else []):
            if piece.location not in self.locations:
                raise missing_data(self.key, "The copy source's")
            try:
                async for chunk in await self.locations[piece.location].get(
                        piece, offset, span_length):
                    yield chunk
            except NotFound:
                raise missing_data(self.key, "The copy source's") from None

    async def __aiter__(self) -> AsyncIterator[bytes]:
        seen = 0
        pending: bytes | None = None
        async for chunk in self._chunks():
            if not chunk:
                continue
            seen += len(chunk)
            if len(chunk) >= THREAD_HASH_MIN:
                await asyncio.to_thread(self._update, chunk)
            else:
                self._update(chunk)
            if pending is not None:
                yield pending
            pending = chunk
        if seen != self.length:
            raise S3Error("InternalError", f"The copy source gave {seen} of {self.length} bytes.")
        if self._expected and self.checksum(self._expected["algorithm"]) != self._expected["value"]:
            raise S3Error("InternalError", "The copy source's data does not match its stored "
                          f"{self._expected['algorithm']} checksum.")
        if pending is not None:
            yield pending

    @property
    def etag(self) -> str:
        return self.md5.hexdigest()


class DecryptedSourceBody(SourceBody):
    """SourceBody of an encrypted record: its plaintext, every chunk authenticated before it
    is passed on (only the chunks the range needs are fetched)."""

    def __init__(self, encryption: Encryption | None, locations: Locations, obj: ObjectRecord,
                 first: int, length: int, algorithms: tuple[str, ...],
                 customer: CustomerKey | None) -> None:
        super().__init__(locations, obj, first, length, algorithms)
        self.encryption = encryption
        self.customer = customer

    async def _chunks(self) -> AsyncIterator[bytes]:
        async for chunk in await sse_objects.open_plaintext(
                self.encryption, self.locations, self.record, self.first,
                self.first + self.length - 1, self.customer):
            yield chunk


def copy_source(locations: Locations, encryption: Encryption | None, obj: ObjectRecord,
                first: int, length: int, algorithms: tuple[str, ...],
                customer: CustomerKey | None = None) -> SourceBody:
    """The plaintext of a copy's source range, whether the source is encrypted or not."""
    if sse_objects.is_encrypted(obj):
        return DecryptedSourceBody(encryption, locations, obj, first, length, algorithms,
                                   customer)
    return SourceBody(locations, obj, first, length, algorithms)
