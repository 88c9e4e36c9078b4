"""The on-backend format: round trips, ranges across chunk and part boundaries, tampering."""

from __future__ import annotations

import os

import pytest

from gateway.crypto.stream import (
    HEADER_SIZE,
    TAG_SIZE,
    CiphertextError,
    SealedStream,
    Segment,
    Segments,
    StreamParams,
    ciphertext_size,
    decrypt_segments,
    decrypt_whole,
    plaintext_size,
    plan_range,
)
from tests.crypto.helpers import collect, pieces, sliced

C = 64 * 1024
KEY = os.urandom(32)


async def seal(data: bytes, chunk: int = C, key: bytes = KEY, seed: int = 1
               ) -> tuple[StreamParams, bytes]:
    params = StreamParams.new(chunk)
    stored = await collect(SealedStream(key, params).encrypt(pieces(data, seed)))
    return params, stored


async def read(params: StreamParams, stored: bytes, size: int, offset: int, length: int,
               key: bytes = KEY) -> bytes:
    plan = plan_range(params, size, offset, length)
    return await collect(SealedStream(key, params).decrypt(
        plan, sliced(stored, plan.cipher_offset, plan.cipher_length, offset)))


@pytest.mark.parametrize("size", [0, 1, C - 1, C, C + 1, 2 * C, 3 * C + 17, 5 * 1024 * 1024 + 3])
async def test_round_trip_sizes(size: int) -> None:
    data = os.urandom(size)
    params, stored = await seal(data)
    assert len(stored) == ciphertext_size(size, C)
    assert plaintext_size(len(stored), C) == size
    assert data[:64] not in stored or size < 16  # no plaintext on the backend
    assert await read(params, stored, size, 0, size) == data
    assert await collect(decrypt_whole(KEY, pieces(stored, 3))) == data


@pytest.mark.parametrize("chunk", [64 * 1024, 256 * 1024, 1024 * 1024])
async def test_round_trip_chunk_sizes(chunk: int) -> None:
    data = os.urandom(3 * chunk + 5)
    params, stored = await seal(data, chunk)
    assert StreamParams.from_header(stored[:HEADER_SIZE]) == params
    assert await read(params, stored, len(data), chunk - 3, chunk + 6) == data[chunk - 3:2 * chunk + 3]


def test_sizes_are_a_bijection() -> None:
    seen = set()
    for size in list(range(0, 3 * C + 3)) + [10**9]:
        stored = ciphertext_size(size, C)
        assert plaintext_size(stored, C) == size
        seen.add(stored)
    # A size between two valid ones (a cut stream) is refused.
    for bad in (HEADER_SIZE, HEADER_SIZE + TAG_SIZE - 1, HEADER_SIZE + C + TAG_SIZE + TAG_SIZE):
        assert bad not in seen
        with pytest.raises(CiphertextError):
            plaintext_size(bad, C)


def boundary_points(size: int) -> list[int]:
    points = {0, 1, size - 1, size}
    for k in range(1, size // C + 1):
        points.update({k * C - 1, k * C, k * C + 1})
    return sorted(p for p in points if 0 <= p <= size)


async def test_every_range_across_chunk_boundaries() -> None:
    size = 3 * C + 100
    data = os.urandom(size)
    params, stored = await seal(data)
    points = boundary_points(size)
    checked = 0
    for start in points:
        for end in points:
            if end <= start:
                continue
            assert await read(params, stored, size, start, end - start) == data[start:end], \
                (start, end)
            checked += 1
    assert checked == len(points) * (len(points) - 1) // 2 > 70


async def test_range_fetches_only_the_chunks_it_needs() -> None:
    size = 10 * C
    params, _ = await seal(b"\0" * size)
    plan = plan_range(params, size, 5 * C + 10, 100)
    assert (plan.first_chunk, plan.last_chunk, plan.with_header) == (5, 5, False)
    assert plan.cipher_length == C + TAG_SIZE
    plan = plan_range(params, size, 2 * C - 1, 2)
    assert (plan.first_chunk, plan.last_chunk) == (1, 2)
    assert plan.cipher_length == 2 * (C + TAG_SIZE)
    plan = plan_range(params, size, 0, 1)  # chunk 0: the header is checked as well
    assert (plan.cipher_offset, plan.cipher_length) == (0, HEADER_SIZE + C + TAG_SIZE)


# --- tampering ------------------------------------------------------------------------------

async def expect_refused(params: StreamParams, stored: bytes, size: int) -> None:
    """Neither the whole read nor any chunk's range read releases a byte of plaintext."""
    with pytest.raises(CiphertextError):
        await read(params, stored, size, 0, size)
    with pytest.raises(CiphertextError):
        await collect(decrypt_whole(KEY, pieces(stored)))


@pytest.mark.parametrize("where", ["header", "first-chunk", "tag", "middle", "last-byte"])
async def test_flipped_byte_is_refused(where: str) -> None:
    size = 3 * C + 7
    data = os.urandom(size)
    params, stored = await seal(data)
    position = {"header": 10, "first-chunk": HEADER_SIZE + 5,
                "tag": HEADER_SIZE + 2 * (C + TAG_SIZE) - 5, "middle": HEADER_SIZE + C + TAG_SIZE + C // 2,
                "last-byte": len(stored) - 1}[where]
    damaged = bytearray(stored)
    damaged[position] ^= 0x01
    await expect_refused(params, bytes(damaged), size)
    # The chunk that holds the flipped byte is refused even when read alone, and yields
    # nothing; an untouched chunk still reads.
    chunk = max(0, (position - HEADER_SIZE) // (C + TAG_SIZE))
    received: list[bytes] = []
    plan = plan_range(params, size, chunk * C, 1)
    with pytest.raises(CiphertextError):
        async for piece in SealedStream(KEY, params).decrypt(
                plan, sliced(bytes(damaged), plan.cipher_offset, plan.cipher_length)):
            received.append(piece)
    assert received == []
    if where not in ("header", "first-chunk"):
        assert await read(params, bytes(damaged), size, 0, 10) == data[:10]


async def test_truncated_is_refused() -> None:
    size = 3 * C
    params, stored = await seal(os.urandom(size))
    for cut in (HEADER_SIZE, HEADER_SIZE + C + TAG_SIZE, 2 * (C + TAG_SIZE) + HEADER_SIZE,
                len(stored) - 1, 5):
        short = stored[:cut]
        with pytest.raises(CiphertextError):
            await collect(decrypt_whole(KEY, pieces(short)))
        plan = plan_range(params, size, 0, size)
        with pytest.raises(CiphertextError):
            await collect(SealedStream(KEY, params).decrypt(plan, pieces(short)))


async def test_reordered_chunks_are_refused() -> None:
    size = 3 * C
    params, stored = await seal(os.urandom(size))
    step = C + TAG_SIZE
    chunks = [stored[HEADER_SIZE + i * step:HEADER_SIZE + (i + 1) * step] for i in range(3)]
    swapped = stored[:HEADER_SIZE] + chunks[1] + chunks[0] + chunks[2]
    await expect_refused(params, swapped, size)


async def test_extended_is_refused() -> None:
    size = 2 * C + 5
    data = os.urandom(size)
    params, stored = await seal(data)
    # Bytes after the final chunk, and a whole sealed chunk of the same stream re-appended.
    step = C + TAG_SIZE
    for extra in (b"x", stored[HEADER_SIZE:HEADER_SIZE + step]):
        with pytest.raises(CiphertextError):
            await collect(decrypt_whole(KEY, pieces(stored + extra)))
        plan = plan_range(params, size, 0, size)
        with pytest.raises(CiphertextError):
            await collect(SealedStream(KEY, params).decrypt(plan, pieces(stored + extra)))
    # Cutting off the final chunk and pretending the stream was shorter fails: chunk 1 was
    # not sealed as final.
    with pytest.raises(CiphertextError):
        await collect(decrypt_whole(KEY, pieces(stored[:HEADER_SIZE + 2 * step])))


async def test_wrong_key_or_other_stream_is_refused() -> None:
    data = os.urandom(C + 1)
    params, stored = await seal(data)
    with pytest.raises(CiphertextError):
        await read(params, stored, len(data), 0, len(data), key=os.urandom(32))
    # The same key, another stream: chunks of one do not open in the other.
    other_params, other = await seal(data)
    spliced = stored[:HEADER_SIZE] + other[HEADER_SIZE:]
    await expect_refused(params, spliced, len(data))


# --- segments (multipart) ---------------------------------------------------------------------

async def sealed_parts(sizes: list[int]) -> tuple[bytes, Segments, list[bytes]]:
    data = os.urandom(sum(sizes))
    segments, stored_parts, pos = [], [], 0
    for number, size in enumerate(sizes):
        params, stored = await seal(data[pos:pos + size], seed=number)
        segments.append(Segment(params, size))
        stored_parts.append(stored)
        pos += size
    return data, Segments(segments), stored_parts


async def test_ranges_across_part_boundaries() -> None:
    sizes = [C + 3, 2 * C, 1, C - 1, 2 * C + 9]
    data, layout, parts = await sealed_parts(sizes)
    joined = b"".join(parts)  # a cloud's completed upload: the parts laid end to end
    assert layout.cipher_size == len(joined)
    points = set(boundary_points(len(data)))
    for start in layout.plain_starts:
        points.update(p for p in (start - 1, start, start + 1) if 0 <= p <= len(data))
    points = sorted(points)
    fetched_parts: set[int] = set()

    async def from_parts(item):  # file/mem: the parts are the pieces
        fetched_parts.add(item.index)
        return sliced(parts[item.index], item.read.cipher_offset, item.read.cipher_length)

    async def from_joined(item):
        return sliced(joined, item.absolute_offset, item.read.cipher_length)

    for start in points:
        for end in points:
            if end <= start:
                continue
            for fetch in (from_parts, from_joined):
                got = await collect(decrypt_segments(KEY, layout, start, end - start, fetch))
                assert got == data[start:end], (start, end, fetch.__name__)
    # A range inside part 3 (index 2, one byte) and a partNumber read touch only that part.
    fetched_parts.clear()
    offset, length = layout.part_range(2)
    assert await collect(decrypt_segments(KEY, layout, offset, length, from_parts)) == \
        data[offset:offset + length]
    assert fetched_parts == {2}


async def test_parts_are_sealed_independently() -> None:
    data, layout, parts = await sealed_parts([C, C])
    swapped = Segments([layout.segments[1], layout.segments[0]])

    async def fetch(item):
        return sliced(parts[item.index], item.read.cipher_offset, item.read.cipher_length)

    with pytest.raises(CiphertextError):  # part 2's bytes under part 1's record
        await collect(decrypt_segments(KEY, swapped, 0, 2 * C, fetch))
    assert layout.segments[0].params.key_salt != layout.segments[1].params.key_salt


async def test_empty_segments_and_empty_reads() -> None:
    data, layout, parts = await sealed_parts([0, 5, 0])
    assert layout.plain_size == 5
    assert [r.index for r in layout.plan(0, 5)] == [1]
    assert layout.plan(0, 0) == []


async def test_tiny_and_odd_pieces() -> None:
    """Pieces of a few bytes, in both directions: chunks and the header straddle pieces."""
    data = os.urandom(2 * C + 300)
    params = StreamParams.new(C)
    sealed = SealedStream(KEY, params)
    stored = await collect(sealed.encrypt(pieces(data, 5, max_piece=7)))
    assert stored[:HEADER_SIZE] == params.header()
    for start, end in ((0, len(data)), (C - 2, 2 * C + 1), (3, 4)):
        plan = plan_range(params, len(data), start, end - start)
        got = await collect(sealed.decrypt(plan, pieces(
            stored[plan.cipher_offset:plan.cipher_offset + plan.cipher_length], 6, max_piece=5)))
        assert got == data[start:end]
    assert await collect(decrypt_whole(KEY, pieces(stored, 7, max_piece=3))) == data
