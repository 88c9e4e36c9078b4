"""Encrypting and decrypting a 256 MiB stream keeps memory flat."""

from __future__ import annotations

import hashlib
import os
import tracemalloc
from collections.abc import AsyncIterator
from pathlib import Path

from gateway.crypto.stream import SealedStream, StreamParams, ciphertext_size, decrypt_whole

MiB = 1024 * 1024
SIZE = 256 * MiB


def rss_peak_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


def reset_rss_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # Linux: VmHWM := current RSS
        return True
    except OSError:
        return False


async def test_256_mib_in_bounded_memory() -> None:
    block = os.urandom(MiB)
    sent = hashlib.sha256()

    async def source() -> AsyncIterator[bytes]:
        for _ in range(SIZE // MiB):
            sent.update(block)
            yield block  # the same object each time: the source itself holds 1 MiB

    stored = 0

    async def counted(stream: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        nonlocal stored
        async for piece in stream:
            stored += len(piece)
            assert block[:4096] not in piece  # ciphertext only
            yield piece

    key = os.urandom(32)
    params = StreamParams.new()
    received = hashlib.sha256()
    total = 0
    can_reset = reset_rss_peak()
    before = rss_peak_kib()
    tracemalloc.start()
    try:
        # Encrypt and decrypt in one pipeline: what a PUT stores, read straight back.
        async for piece in decrypt_whole(key, counted(SealedStream(key, params).encrypt(
                source()))):
            received.update(piece)
            total += len(piece)
        _, traced_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    growth_mib = (rss_peak_kib() - before) / 1024
    assert total == SIZE and stored == ciphertext_size(SIZE, params.chunk_size)
    assert received.digest() == sent.digest()
    # Both sides hold a chunk or two plus a ~1 MiB batch: a few MiB, whatever the size.
    assert traced_peak < 16 * MiB, f"Python allocations peaked at {traced_peak / MiB:.1f} MiB"
    if can_reset:
        assert growth_mib < 64, f"RSS grew by {growth_mib:.1f} MiB moving 256 MiB"
