"""Byte-stream helpers for the crypto tests (real crypto, real streams: no mocks)."""

from __future__ import annotations

import random
from collections.abc import AsyncIterable, AsyncIterator


async def pieces(data: bytes, seed: int = 0, max_piece: int = 300_000) -> AsyncIterator[bytes]:
    """`data` in pieces of random sizes (1 byte up to max_piece), as a network delivers it."""
    rng = random.Random(seed)
    pos = 0
    while pos < len(data):
        step = rng.randint(1, max_piece)
        yield data[pos:pos + step]
        pos += step


async def collect(stream: AsyncIterable[bytes]) -> bytes:
    return b"".join([chunk async for chunk in stream])


def sliced(data: bytes, offset: int, length: int, seed: int = 0) -> AsyncIterator[bytes]:
    """The stored bytes [offset, offset + length), streamed as a translator's get() does."""
    return pieces(data[offset:offset + length], seed)
