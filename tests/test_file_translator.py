"""The file translator directly: streaming, ranges, atomic writes, nothing outside its folder."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.translators.base import NotFound, ObjectMeta, Part, Stored
from gateway.translators.file import FileTranslator


async def chunks(data: bytes, size: int = 1000) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i:i + size]


async def collect(stream: AsyncIterator[bytes]) -> bytes:
    return b"".join([c async for c in stream])


@pytest.fixture
async def files(tmp_path: Path) -> FileTranslator:
    translator = FileTranslator("disk", {}, {"S3DATAPATH": str(tmp_path / "data")})
    await translator.open()
    return translator


async def test_put_get_range_head_delete(files: FileTranslator) -> None:
    data = bytes(range(256)) * 50
    stored = await files.put("bucket/key", chunks(data), len(data), ObjectMeta())
    assert stored.size == len(data)
    assert await collect(await files.get(stored)) == data
    assert await collect(await files.get(stored, 100, 50)) == data[100:150]
    assert (await files.head(stored)).size == len(data)
    await files.delete(stored)
    await files.delete(stored)  # idempotent
    with pytest.raises(NotFound):
        await files.get(stored)


async def test_object_names_never_become_paths(files: FileTranslator, tmp_path: Path) -> None:
    stored = await files.put("../../../../etc/evil", chunks(b"x"), 1, ObjectMeta())
    assert (files.root / stored.key).is_file()
    assert files.root in (files.root / stored.key).resolve().parents
    for forged in ("../outside", "/etc/passwd", "aa/../../x", ""):
        with pytest.raises(NotFound):
            await files.get(Stored("disk", forged, 1))


async def test_failed_body_leaves_nothing(files: FileTranslator) -> None:
    async def broken() -> AsyncIterator[bytes]:
        yield b"partial"
        raise ConnectionResetError("client went away")

    with pytest.raises(ConnectionResetError):
        await files.put("k", broken(), 100, ObjectMeta())
    assert not [p for p in files.root.rglob("*") if p.is_file()]


async def test_multipart_pieces_and_copy(files: FileTranslator) -> None:
    upload = await files.create_upload("k", ObjectMeta())
    p1 = await files.upload_part("k", upload, 1, chunks(b"a" * 10), 10)
    p2 = await files.upload_part("k", upload, 2, chunks(b"b" * 5), 5)
    pieces = await files.complete_upload("k", upload, [Part(1, p1), Part(2, p2)], ObjectMeta())
    assert pieces == [p1, p2]
    copied = await files.copy(p1, "k2", ObjectMeta())
    assert copied is not None and copied.key != p1.key
    assert hashlib.md5(await collect(await files.get(copied))).hexdigest() == hashlib.md5(b"a" * 10).hexdigest()
    await files.abort_upload("k", upload, [Part(1, p1), Part(2, p2)])
    with pytest.raises(NotFound):
        await files.head(p1)
    assert (await files.check()).ok
