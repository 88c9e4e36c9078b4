"""The mem translator, called directly (it has no emulator: its store is this process's RAM).
What every location type does alike is in test_conformance.py; here, what only mem does."""

from __future__ import annotations

import gc
import tracemalloc
import uuid
from collections.abc import AsyncIterator

import pytest

from gateway.translators.base import ConfigError, ObjectMeta
from gateway.translators.mem import MemTranslator

MiB = 1024 * 1024


@pytest.fixture
def mem() -> MemTranslator:
    return MemTranslator("memloc", {}, {})


@pytest.fixture
def prefix() -> str:
    return f"t-{uuid.uuid4().hex[:8]}/"  # the store is shared by every test: keys of our own


async def test_a_big_put_holds_one_copy(mem: MemTranslator, prefix: str) -> None:
    size = 48 * MiB

    async def body() -> AsyncIterator[bytes]:
        for _ in range(size // MiB):
            yield bytes(MiB)  # a fresh 1 MiB chunk each time, as from the network

    gc.collect()
    tracemalloc.start()
    try:
        stored = await mem.put(f"{prefix}big", body(), size, ObjectMeta())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # The chunks themselves are kept: joining them (or a bytearray plus bytes()) would peak at
    # twice the size.
    assert peak < size * 1.2, f"peak {peak / MiB:.0f} MiB for a {size // MiB} MiB body"
    assert stored.size == size
    total = 0
    async for chunk in await mem.get(stored):
        assert len(chunk) <= MiB
        total += len(chunk)
    assert total == size
    await mem.delete(stored)


def test_details_are_refused_by_name() -> None:
    with pytest.raises(ConfigError) as caught:
        MemTranslator("memloc", {"bucketMatch": True, "dataPath": "/x"}, {})
    assert caught.value.key == "dataPath"
