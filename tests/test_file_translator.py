"""The file translator directly: atomic and durable writes, nothing outside its folder. What every
location type does alike is in tests/translators/test_conformance.py."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
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


async def test_object_names_never_become_paths(files: FileTranslator, tmp_path: Path) -> None:
    stored = await files.put("../../../../etc/evil", chunks(b"x"), 1, ObjectMeta())
    assert stored.key == "../../../../etc/evil"  # exactly the key given...
    path = files.path_of(stored.key)  # ...stored under a hash of it, inside root
    assert path.is_file() and files.root in path.resolve().parents
    assert not (files.root / "../../../../etc/evil").exists()
    for forged in ("../outside", "/etc/passwd", "aa/../../x", ""):
        with pytest.raises(NotFound):
            await files.get(Stored("disk", forged, 1))


async def test_an_aborted_upload_takes_no_more_parts(files: FileTranslator) -> None:
    upload = await files.create_upload("k~0", ObjectMeta())
    first = await files.upload_part("k~0", upload, 1, chunks(b"a" * 10), 10)
    retried = await files.upload_part("k~0", upload, 1, chunks(b"b" * 10), 10)
    assert first.key != retried.key  # a file per attempt: a completion holding `first` keeps it
    await files.abort_upload("k~0", upload, [Part(1, retried)])
    with pytest.raises(NotFound):  # the upload is gone: no part can land in it any more
        await files.upload_part("k~0", upload, 3, chunks(b"d"), 1)


async def test_list_pieces_and_piece_id(files: FileTranslator) -> None:
    a = await files.put("b/a~1", chunks(b"aa"), 2, ObjectMeta())
    upload = await files.create_upload("b/m~2", ObjectMeta())
    part = await files.upload_part("b/m~2", upload, 1, chunks(b"ppp"), 3)
    listed = {files.piece_id(p): p.size async for p in files.list_pieces()}
    assert listed == {files.piece_id(a): 2, files.piece_id(part): 3}


async def test_writes_are_fsynced_unless_relaxed(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[int] = []
    real_fsync = os.fsync

    def counting_fsync(fd: int) -> None:
        synced.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", counting_fsync)
    for durability, expected in (("durable", 2), ("relaxed", 0)):
        translator = FileTranslator("disk", {}, {"S3DATAPATH": str(tmp_path / durability),
                                                 "S3DURABILITY": durability})
        await translator.open()
        synced.clear()
        await translator.put("small", chunks(b"x" * 10), 10, ObjectMeta())
        assert len(synced) == expected  # the file, then its folder
        synced.clear()
        big = b"y" * (3 * 1024 * 1024)
        await translator.put("big", chunks(big, 256 * 1024), len(big), ObjectMeta())
        assert len(synced) == expected


def test_start_up_sweeps_temporary_files_of_dead_writers(tmp_path: Path) -> None:
    root = tmp_path / "data"
    asyncio.run(FileTranslator("disk", {}, {"S3DATAPATH": str(root)}).open())
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    host = socket.gethostname().split(".")[0]
    leftover = root / "ab" / f"{'0' * 32}.{host}.{int(dead.stdout)}.tmp"
    leftover.write_bytes(b"half a body")
    alive = root / "ab" / f"{'1' * 32}.{host}.{os.getpid()}.tmp"
    alive.write_bytes(b"being written")
    asyncio.run(FileTranslator("disk", {}, {"S3DATAPATH": str(root)}).open())
    assert not leftover.exists()
    assert alive.exists()  # a live writer's file is left alone
