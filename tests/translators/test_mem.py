"""The mem translator, called directly (it has no emulator: its store is this process's RAM)."""

from __future__ import annotations

import gc
import tracemalloc
import uuid
from collections.abc import AsyncIterator

import pytest

from gateway.translators.base import NotFound, ObjectMeta, Part, Stored
from gateway.translators.mem import MemTranslator

MiB = 1024 * 1024


async def body_of(data: bytes, chunk: int = 64 * 1024) -> AsyncIterator[bytes]:
    for start in range(0, len(data), chunk):
        yield data[start:start + chunk]


async def read_all(stream: AsyncIterator[bytes]) -> bytes:
    return b"".join([chunk async for chunk in stream])


@pytest.fixture
def mem() -> MemTranslator:
    return MemTranslator("memloc", {}, {})


@pytest.fixture
def prefix() -> str:
    return f"t-{uuid.uuid4().hex[:8]}/"  # the store is shared by every test: keys of our own


async def pieces(mem: MemTranslator, prefix: str) -> list[str]:
    return [p.key async for p in mem.list_pieces(prefix)]


async def test_put_get_head_delete_at_exactly_the_key(mem: MemTranslator, prefix: str) -> None:
    data = bytes(range(256)) * 1000  # 256000 bytes, 64 KiB chunks: ranges cross chunks
    key = f"{prefix}bkt/obj~{'a' * 24}"
    stored = await mem.put(key, body_of(data), len(data), ObjectMeta())
    assert stored == Stored("memloc", key, len(data))
    assert await read_all(await mem.get(stored)) == data
    for offset, length in ((0, 1), (65535, 2), (100, 65536 * 2 + 7), (len(data) - 3, None),
                           (5, 0), (70000, None)):
        end = None if length is None else offset + length
        assert await read_all(await mem.get(stored, offset, length)) == data[offset:end]
    assert (await mem.head(stored)).size == len(data)
    assert await pieces(mem, prefix) == [key]

    await mem.delete(Stored("memloc", key, 0))  # no pin: the key goes
    await mem.delete(stored)  # already gone is success
    with pytest.raises(NotFound):
        await mem.get(stored)
    with pytest.raises(NotFound):
        await mem.head(stored)
    assert await pieces(mem, prefix) == []


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


async def test_copy_and_list_pieces(mem: MemTranslator, prefix: str) -> None:
    src = await mem.put(f"{prefix}a/src~1", body_of(b"source"), 6, ObjectMeta())
    dst = await mem.copy(src, f"{prefix}b/dst~2", ObjectMeta())
    assert dst == Stored("memloc", f"{prefix}b/dst~2", 6)
    upload = await mem.create_upload(f"{prefix}c/mpu~3", ObjectMeta())
    part = await mem.upload_part(f"{prefix}c/mpu~3", upload, 1, body_of(b"part"), 4)
    assert part.key.startswith(f"{prefix}c/mpu~3#{upload}#1#")
    assert await pieces(mem, prefix) == sorted([src.key, dst.key, part.key])
    assert await pieces(mem, f"{prefix}b/") == [dst.key]
    await mem.delete(src)  # the copy is independent of its source
    assert await read_all(await mem.get(dst)) == b"source"
    with pytest.raises(NotFound):
        await mem.copy(src, f"{prefix}x", ObjectMeta())
    await mem.abort_upload(f"{prefix}c/mpu~3", upload, [])
    await mem.delete(dst)
    assert await pieces(mem, prefix) == []


async def test_retried_part_complete_and_discard(mem: MemTranslator, prefix: str) -> None:
    key = f"{prefix}mpu~1"
    upload = await mem.create_upload(key, ObjectMeta())
    first = await mem.upload_part(key, upload, 1, body_of(b"a" * 10), 10)
    retried = await mem.upload_part(key, upload, 1, body_of(b"b" * 10), 10)
    assert retried.key != first.key  # a new part: the first attempt's bytes are untouched
    assert await read_all(await mem.get(first)) == b"a" * 10
    unlisted = await mem.upload_part(key, upload, 2, body_of(b"u"), 1)
    last = await mem.upload_part(key, upload, 3, body_of(b"tail"), 4)
    # The caller discards the replaced attempt; completion drops the unlisted part itself.
    await mem.discard_part(key, upload, Part(1, first))
    await mem.discard_part(key, upload, Part(1, first))  # idempotent
    done = await mem.complete_upload(key, upload, [Part(1, retried), Part(3, last)],
                                     ObjectMeta())
    assert done == [retried, last]  # the parts are the object's pieces: no byte copied
    assert b"".join([await read_all(await mem.get(p)) for p in done]) == b"b" * 10 + b"tail"
    assert await pieces(mem, prefix) == sorted([retried.key, last.key])
    with pytest.raises(NotFound):
        await mem.head(unlisted)
    for piece in done:
        await mem.delete(piece)


async def test_abort_removes_unrecorded_parts(mem: MemTranslator, prefix: str) -> None:
    key = f"{prefix}aborted~1"
    upload = await mem.create_upload(key, ObjectMeta())
    other = await mem.create_upload(key, ObjectMeta())
    recorded = await mem.upload_part(key, upload, 1, body_of(b"r"), 1)
    await mem.upload_part(key, upload, 2, body_of(b"never recorded"), 14)
    await mem.upload_part(key, upload, 2, body_of(b"a retry, never recorded either"), 30)
    src = await mem.put(f"{prefix}src", body_of(b"0123456789"), 10, ObjectMeta())
    kept = await mem.upload_part(key, other, 1, body_of(b"other upload"), 12)
    await mem.abort_upload(key, upload, [Part(1, recorded)])
    await mem.abort_upload(key, upload, [Part(1, recorded)])  # idempotent
    assert await pieces(mem, prefix) == sorted([src.key, kept.key])  # another upload is untouched
    await mem.abort_upload(key, other, [])
    await mem.delete(src)
    assert await pieces(mem, prefix) == []
