"""The on-backend format of encrypted data: a chunked AES-256-GCM stream (format version 1).

One *stream* is what one write stores (a PutObject's bytes, or one part of a multipart upload):

    header (32 bytes) | chunk 0 | chunk 1 | ... | chunk n-1 (the final chunk)

header, 32 bytes, also bound into every chunk's AAD:
    magic    4  b"S3GE"
    version  1  1
    log2(C)  1  the chunk size C = 2**log2(C), 16..20 (64 KiB..1 MiB)
    flags    2  0 (reserved; a reader refuses anything else)
    prefix   8  random per stream: the first 8 bytes of every chunk's nonce
    salt    16  random per stream: salt of the stream key's derivation

chunk i: AES-256-GCM(stream key, nonce, plaintext[i*C : (i+1)*C], aad) = ciphertext || 16-byte tag
    stream key = HKDF-SHA256(ikm = the object's data key, salt = header.salt,
                             info = b"s3gw-sse v1 stream key"), 32 bytes
    nonce      = prefix || uint32_be(i)
    aad        = header || uint64_be(i) || final (1 byte: 1 on the last chunk, else 0)

Every chunk but the last holds exactly C plaintext bytes; the last holds 1..C, or 0 only when the
whole stream is empty (an empty stream is its header and one empty final chunk, so cutting it
back to the header is detected too). Hence:
    ciphertext size = 32 + P + 16 * max(1, ceil(P / C))
which is a bijection onto the valid sizes, so the plaintext size can be read back from a
stored size (plaintext_size()).

What it detects: a flipped bit anywhere (header included: it is in every AAD), chunks swapped
or moved (the index is in the nonce and the AAD), a stream cut at a chunk boundary (the chunk
now last does not carry the final flag) or anywhere else (a short chunk fails its tag), chunks
appended after the final one, a chunk of another stream or another object (other salt, other
key). Each chunk is authenticated before a byte of its plaintext is released: a reader gets
CiphertextError and never unauthenticated plaintext.

Random access: chunk i of a stream starts at 32 + i * (C + 16), so a plaintext range needs only
the chunks it touches (plan_range); a ranged read that starts in chunk 0 also fetches and checks
the header. A multipart object is a list of such streams laid end to end, each sealed on its
own (Segments), so a range across part boundaries or a partNumber GET reads only its parts.

Keys: a stream's data key is random per object (wrapped by a KMS key or a customer's key, see
gateway/crypto/keys.py); every stream of an object (its parts) gets its own key through its own
random salt, so parts are sealed independently and a re-uploaded part never reuses a nonce.

Chunk size (bench: python -m bench --only encryption; measured on the 2-core test machine,
256 MiB in 1 MiB pieces): AES-GCM itself runs at 7-12 GB/s there (AES-NI), so the cost is
Python's per-chunk work. 64 KiB chunks cost 0.024 % in tags and ~1.5x the per-chunk calls of
256 KiB; a 4 KiB ranged GET reads one or two chunks (64-128 KiB) instead of up to 2 MiB with
1 MiB chunks. DEFAULT_CHUNK_SIZE is 64 KiB; the size is recorded per stream (header and
metadata), so it can change without touching stored data.
"""

from __future__ import annotations

import os
import struct
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from gateway.errors import S3Error

MAGIC = b"S3GE"
FORMAT_VERSION = 1
HEADER_SIZE = 32
TAG_SIZE = 16
PREFIX_SIZE = 8
SALT_SIZE = 16
KEY_SIZE = 32
MIN_CHUNK_SIZE = 64 * 1024
MAX_CHUNK_SIZE = 1024 * 1024
DEFAULT_CHUNK_SIZE = 64 * 1024
# A stream may hold at most this many chunks (the nonce's 32-bit counter): 256 TiB at 64 KiB.
MAX_CHUNKS = 2 ** 32
_HKDF_INFO = b"s3gw-sse v1 stream key"
_HEADER = struct.Struct(">4sBBH8s16s")
# Output is handed on in pieces of about this size (the translators' own CHUNK_SIZE).
_OUTPUT_BATCH = 1024 * 1024


class CiphertextError(S3Error):
    """Stored ciphertext failed authentication: tampered, truncated, reordered, extended, or
    read with the wrong key. No plaintext of the failing chunk is ever released."""

    def __init__(self, detail: str) -> None:
        super().__init__("InternalError", "The object's stored data failed its integrity "
                         "check and cannot be served.")
        self.detail = detail

    def __str__(self) -> str:
        return f"CiphertextError: {self.detail}"


def _check_chunk_size(chunk_size: int) -> int:
    log2 = chunk_size.bit_length() - 1
    if chunk_size != 1 << log2 or not MIN_CHUNK_SIZE <= chunk_size <= MAX_CHUNK_SIZE:
        raise ValueError(f"chunk size must be a power of two from {MIN_CHUNK_SIZE} to "
                         f"{MAX_CHUNK_SIZE}, got {chunk_size}")
    return log2


@dataclass(frozen=True)
class StreamParams:
    """What a stream's header says: format version, chunk size, nonce prefix, key salt."""

    chunk_size: int
    nonce_prefix: bytes
    key_salt: bytes
    version: int = FORMAT_VERSION

    @classmethod
    def new(cls, chunk_size: int = DEFAULT_CHUNK_SIZE) -> StreamParams:
        """Fresh random parameters for a new stream."""
        _check_chunk_size(chunk_size)
        return cls(chunk_size, os.urandom(PREFIX_SIZE), os.urandom(SALT_SIZE))

    def header(self) -> bytes:
        return _HEADER.pack(MAGIC, self.version, _check_chunk_size(self.chunk_size), 0,
                            self.nonce_prefix, self.key_salt)

    @classmethod
    def from_header(cls, header: bytes) -> StreamParams:
        """Parse a stored header; CiphertextError when it is not one this code wrote."""
        if len(header) != HEADER_SIZE:
            raise CiphertextError(f"header of {len(header)} bytes, expected {HEADER_SIZE}")
        magic, version, log2, flags, prefix, salt = _HEADER.unpack(header)
        if magic != MAGIC or version != FORMAT_VERSION or flags != 0 \
                or not 16 <= log2 <= 20:
            raise CiphertextError("not an encrypted stream of a known format version")
        return cls(1 << log2, prefix, salt, version)


def ciphertext_size(plain_size: int, chunk_size: int) -> int:
    """The stored size of a stream of `plain_size` plaintext bytes."""
    if plain_size < 0:
        raise ValueError("negative size")
    chunks = max(1, -(-plain_size // chunk_size))
    return HEADER_SIZE + plain_size + TAG_SIZE * chunks


def plaintext_size(cipher_size: int, chunk_size: int) -> int:
    """The inverse of ciphertext_size(); CiphertextError for a size no stream can have
    (the stored object was cut or extended)."""
    body = cipher_size - HEADER_SIZE
    full, rest = divmod(body, chunk_size + TAG_SIZE)
    if body < TAG_SIZE:
        raise CiphertextError(f"stored size {cipher_size} is shorter than an empty stream")
    if rest == 0:
        return full * chunk_size
    if rest < TAG_SIZE or (rest == TAG_SIZE and full > 0):
        raise CiphertextError(f"stored size {cipher_size} is no stream's size")
    return full * chunk_size + rest - TAG_SIZE


def _chunk_count(plain_size: int, chunk_size: int) -> int:
    return max(1, -(-plain_size // chunk_size))


def stream_key(data_key: bytes, params: StreamParams) -> bytes:
    """The AES-256 key of one stream: the data key expanded with the stream's own salt."""
    if len(data_key) != KEY_SIZE:
        raise ValueError("a data key is 32 bytes")
    return HKDF(algorithm=hashes.SHA256(), length=KEY_SIZE, salt=params.key_salt,
                info=_HKDF_INFO).derive(data_key)


@dataclass(frozen=True)
class RangeRead:
    """Which stored bytes of one stream a plaintext range needs, and what to keep of them."""

    cipher_offset: int  # first stored byte to fetch (0 when the header is fetched too)
    cipher_length: int  # stored bytes to fetch, exactly
    first_chunk: int
    last_chunk: int
    skip: int  # plaintext bytes to drop from the first chunk
    length: int  # plaintext bytes to yield
    with_header: bool
    final_chunk: int  # index of the stream's final chunk
    final_size: int  # plaintext bytes in the final chunk


def plan_range(params: StreamParams, plain_size: int, offset: int, length: int) -> RangeRead:
    """The stored bytes to fetch for plaintext [offset, offset + length) of a stream of
    `plain_size` bytes (length 0 is a whole-chunk read of nothing: only for empty streams)."""
    if offset < 0 or length < 0 or offset + length > plain_size:
        raise ValueError(f"range {offset}+{length} outside a stream of {plain_size} bytes")
    size = params.chunk_size
    final_chunk = _chunk_count(plain_size, size) - 1
    final_size = plain_size - final_chunk * size
    first = min(offset // size, final_chunk)
    last = first if length == 0 else (offset + length - 1) // size
    start = HEADER_SIZE + first * (size + TAG_SIZE)
    end = HEADER_SIZE + last * (size + TAG_SIZE) + TAG_SIZE + (
        final_size if last == final_chunk else size)
    with_header = first == 0
    if with_header:
        start = 0
    return RangeRead(start, end - start, first, last, offset - first * size, length,
                     with_header, final_chunk, final_size)


class SealedStream:
    """One stream's cipher: encrypts a plaintext stream, or decrypts chunks of a stored one."""

    def __init__(self, data_key: bytes, params: StreamParams) -> None:
        self.params = params
        self._header = params.header()
        self._aead = AESGCM(stream_key(data_key, params))
        self._prefix = params.nonce_prefix

    def _nonce(self, index: int) -> bytes:
        if index >= MAX_CHUNKS:
            raise ValueError("stream too long for its nonce counter")
        return self._prefix + index.to_bytes(4, "big")

    def _aad(self, index: int, final: bool) -> bytes:
        return self._header + index.to_bytes(8, "big") + (b"\x01" if final else b"\x00")

    def seal_chunk(self, index: int, plain: bytes | memoryview, final: bool) -> bytes:
        return self._aead.encrypt(self._nonce(index), plain, self._aad(index, final))

    def open_chunk(self, index: int, sealed: bytes | memoryview, final: bool) -> bytes:
        try:
            return self._aead.decrypt(self._nonce(index), sealed, self._aad(index, final))
        except InvalidTag:
            raise CiphertextError(f"chunk {index} failed authentication") from None

    async def encrypt(self, source: AsyncIterable[bytes]) -> AsyncIterator[bytes]:
        """The stored form of `source`: header, then sealed chunks, in bounded memory (the
        last full chunk is held back until the next byte shows it is not the final one, plus
        one partial chunk). Pieces of about 1 MiB are yielded. If `source` raises, so does
        this, before the final chunk: a cut or refused upload never stores a whole stream."""
        size = self.params.chunk_size
        held: memoryview | None = None  # a full chunk not sealed yet: it may be the final one
        index = 0
        partial = bytearray()  # less than a chunk, carried over to the next piece
        out: list[bytes] = [self._header]
        pending = len(self._header)
        async for piece in source:
            if not piece:
                continue
            # Chunks are sealed straight from the piece (no copy), so the piece must not
            # change later: copy buffers that a reader may reuse.
            view = memoryview(piece if isinstance(piece, bytes) else bytes(piece))
            pos = 0
            if partial:
                pos = min(size - len(partial), len(view))
                partial += view[:pos]
                if len(partial) < size:
                    continue
                view_full = memoryview(bytes(partial))
                partial.clear()
                if held is not None:
                    out.append(self.seal_chunk(index, held, False))
                    index += 1
                    pending += size + TAG_SIZE
                held = view_full
            while len(view) - pos >= size:
                if held is not None:
                    out.append(self.seal_chunk(index, held, False))
                    index += 1
                    pending += size + TAG_SIZE
                held = view[pos:pos + size]
                pos += size
            if pos < len(view):
                if held is not None:  # more bytes follow it: not the final chunk
                    out.append(self.seal_chunk(index, held, False))
                    index += 1
                    pending += size + TAG_SIZE
                    held = None
                partial += view[pos:]
            if pending >= _OUTPUT_BATCH:
                yield out[0] if len(out) == 1 else b"".join(out)
                out, pending = [], 0
        last = held if held is not None else bytes(partial)
        out.append(self.seal_chunk(index, last, True))
        yield out[0] if len(out) == 1 else b"".join(out)

    async def decrypt(self, read: RangeRead, source: AsyncIterable[bytes]) -> AsyncIterator[bytes]:
        """The plaintext of `read` from its stored bytes (`source` yields exactly the bytes
        read.cipher_offset .. + read.cipher_length). Each chunk is authenticated before any of
        its bytes is yielded; missing or extra stored bytes raise CiphertextError."""
        size = self.params.chunk_size
        buf = bytearray()
        need_header = read.with_header
        index = read.first_chunk
        skip = read.skip
        left = read.length
        out: list[bytes] = []
        pending = 0

        def chunk_len(i: int) -> int:
            return TAG_SIZE + (read.final_size if i == read.final_chunk else size)

        async for piece in source:
            if not piece:
                continue
            if index > read.last_chunk:
                raise CiphertextError("stored data goes on past the range's last chunk")
            if need_header:
                buf += piece
                if len(buf) < HEADER_SIZE:
                    continue
                if bytes(buf[:HEADER_SIZE]) != self._header:
                    raise CiphertextError("stream header does not match its record")
                piece = bytes(buf[HEADER_SIZE:])
                buf.clear()
                need_header = False
            start = 0
            with memoryview(piece) as view:
                if buf:  # complete the chunk carried over from the previous piece
                    start = min(chunk_len(index) - len(buf), len(piece))
                    buf += view[:start]
                    if len(buf) == chunk_len(index):
                        plain = self.open_chunk(index, buf, index == read.final_chunk)
                        buf.clear()
                        index += 1
                        plain, skip, left = _keep(plain, skip, left)
                        if plain:
                            out.append(plain)
                            pending += len(plain)
                # Then whole chunks straight from the piece (no copy).
                while index <= read.last_chunk and len(piece) - start >= chunk_len(index):
                    end = start + chunk_len(index)
                    plain = self.open_chunk(index, view[start:end],
                                            index == read.final_chunk)
                    start = end
                    index += 1
                    plain, skip, left = _keep(plain, skip, left)
                    if plain:
                        out.append(plain)
                        pending += len(plain)
                if start < len(piece):
                    if index > read.last_chunk:
                        raise CiphertextError("stored data goes on past the range's last chunk")
                    buf += view[start:]
            if pending >= _OUTPUT_BATCH:
                yield out[0] if len(out) == 1 else b"".join(out)
                out, pending = [], 0
        if need_header or index <= read.last_chunk or buf:
            raise CiphertextError("stored data ends before the range's last chunk")
        if out:
            yield out[0] if len(out) == 1 else b"".join(out)


def _keep(plain: bytes, skip: int, left: int) -> tuple[bytes, int, int]:
    """What of a decrypted chunk a range keeps: (kept bytes, skip left, length left)."""
    if skip or len(plain) > left:
        plain = plain[skip:skip + left]
    return plain, 0, left - len(plain)


async def decrypt_whole(data_key: bytes, source: AsyncIterable[bytes]) -> AsyncIterator[bytes]:
    """Decrypt a complete stored stream without knowing its size or parameters (fsck, tools):
    the header comes from the data; the last chunk must carry the final flag and nothing may
    follow it. One chunk is held back until the next shows it is not the last."""
    buf = bytearray()
    sealed: SealedStream | None = None
    index = 0
    step = 0
    async for piece in source:
        buf += piece
        if sealed is None:
            if len(buf) < HEADER_SIZE:
                continue
            sealed = SealedStream(data_key, StreamParams.from_header(bytes(buf[:HEADER_SIZE])))
            step = sealed.params.chunk_size + TAG_SIZE
            del buf[:HEADER_SIZE]
        out = []
        start = 0
        with memoryview(buf) as view:
            while len(buf) - start > step:  # more follows: this chunk is not the final one
                out.append(sealed.open_chunk(index, view[start:start + step], False))
                start += step
                index += 1
        del buf[:start]
        if out:
            yield b"".join(out)
    if sealed is None:
        raise CiphertextError("stored data ends inside the stream header")
    if len(buf) < TAG_SIZE or (len(buf) == TAG_SIZE and index > 0):
        raise CiphertextError("stored data ends without its final chunk")
    last = sealed.open_chunk(index, bytes(buf), True)
    if last:
        yield last


# --- multipart: streams laid end to end --------------------------------------------------

@dataclass(frozen=True)
class Segment:
    """One independently sealed stream of an object (a part), as its record keeps it."""

    params: StreamParams
    plain_size: int

    @property
    def cipher_size(self) -> int:
        return ciphertext_size(self.plain_size, self.params.chunk_size)


@dataclass(frozen=True)
class SegmentRead:
    """The stored bytes one segment contributes to a plaintext range."""

    index: int  # which segment (0-based: part number - 1 for a multipart object)
    segment_start: int  # where the segment's stored bytes start in the concatenation
    read: RangeRead  # offsets relative to the segment's own stored bytes

    @property
    def absolute_offset(self) -> int:
        """Offset of the bytes to fetch when the segments are stored as one backend object
        (a completed multipart upload on a cloud)."""
        return self.segment_start + self.read.cipher_offset


class Segments:
    """An object made of streams laid end to end (multipart: one per part, in part order;
    a single PUT: one). Maps plaintext ranges to per-segment stored ranges."""

    def __init__(self, segments: Sequence[Segment]) -> None:
        if not segments:
            raise ValueError("an object has at least one segment")
        self.segments = list(segments)
        self.plain_starts: list[int] = []
        self.cipher_starts: list[int] = []
        plain = cipher = 0
        for segment in self.segments:
            self.plain_starts.append(plain)
            self.cipher_starts.append(cipher)
            plain += segment.plain_size
            cipher += segment.cipher_size
        self.plain_size = plain
        self.cipher_size = cipher

    def plan(self, offset: int, length: int) -> list[SegmentRead]:
        """Per-segment stored ranges for plaintext [offset, offset + length), in order, only
        segments that hold some of it (an empty range reads nothing)."""
        if offset < 0 or length < 0 or offset + length > self.plain_size:
            raise ValueError(f"range {offset}+{length} outside {self.plain_size} bytes")
        reads = []
        end = offset + length
        for index, segment in enumerate(self.segments):
            start = self.plain_starts[index]
            stop = start + segment.plain_size
            if stop <= offset or segment.plain_size == 0:
                continue
            if start >= end:
                break
            first = max(offset, start) - start
            reads.append(SegmentRead(index, self.cipher_starts[index], plan_range(
                segment.params, segment.plain_size, first, min(end, stop) - start - first)))
        return reads

    def part_range(self, index: int) -> tuple[int, int]:
        """Plaintext (offset, length) of segment `index` (partNumber GET: part index + 1)."""
        return self.plain_starts[index], self.segments[index].plain_size


Fetch = Callable[[SegmentRead], Awaitable[AsyncIterable[bytes]]]


async def decrypt_segments(data_key: bytes, segments: Segments, offset: int, length: int,
                           fetch: Fetch) -> AsyncIterator[bytes]:
    """The plaintext of [offset, offset + length) of a segmented object. `fetch(read)` opens
    the stored bytes of one segment's read (read.read.cipher_offset/cipher_length within
    the segment, or read.absolute_offset when the segments are one backend object); segments
    are opened one after the other, when the previous one is done."""
    for item in segments.plan(offset, length):
        sealed = SealedStream(data_key, segments.segments[item.index].params)
        async for plain in sealed.decrypt(item.read, await fetch(item)):
            yield plain


__all__ = ["DEFAULT_CHUNK_SIZE", "FORMAT_VERSION", "HEADER_SIZE", "TAG_SIZE", "CiphertextError",
           "RangeRead", "SealedStream", "Segment", "SegmentRead", "Segments", "StreamParams",
           "ciphertext_size", "decrypt_segments", "decrypt_whole", "plaintext_size",
           "plan_range", "stream_key"]
