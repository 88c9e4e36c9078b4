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
from typing import Any

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


async def test_concurrent_durable_puts_share_folder_fsyncs_in_order(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Many puts at once into the same folders (small and big bodies): when each put returns,
    its data was fsynced before its rename, and an fsync of its folder began after that rename
    and ended. Folder fsyncs are shared (fewer than puts). The calls are the real ones,
    recorded in order as they begin and end."""
    import threading

    translator = FileTranslator("disk", {}, {"S3DATAPATH": str(tmp_path / "data")})
    await translator.open()
    events: list[tuple[str, str]] = []  # (what, path), in the order they happened
    lock = threading.Lock()
    real_fsync, real_replace = os.fsync, os.replace

    def note(what: str, path: str) -> None:
        with lock:
            events.append((what, path))

    def fsync(fd: int) -> None:
        path = os.readlink(f"/proc/self/fd/{fd}")
        note("fsync-begin", path)
        real_fsync(fd)
        note("fsync-end", path)

    def replace(src: Any, dst: Any) -> None:
        real_replace(src, dst)
        note("renamed", f"{src}>{dst}")

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    # Keys whose files fall into two folders, so concurrent puts meet in each.
    keys = [k for k in (f"k{i}" for i in range(4000))
            if translator.relative_path(k)[:2] in ("0a", "0b")][:24]
    big = os.urandom(600 * 1024)

    async def put(key: str, index: int) -> tuple[str, int]:
        body = big if index % 4 == 0 else b"s" * 100
        await translator.put(key, chunks(body, 256 * 1024), len(body), ObjectMeta())
        with lock:
            return key, len(events)  # what had happened when the put returned

    returned = await asyncio.gather(*(put(k, i) for i, k in enumerate(keys)))
    for key, seen in returned:
        path = str(translator.path_of(key))
        history = events[:seen]
        renames = [i for i, (what, p) in enumerate(history)
                   if what == "renamed" and p.endswith(">" + path)]
        assert len(renames) == 1, key
        (renamed,) = renames
        tmp = history[renamed][1].split(">")[0]
        assert ("fsync-end", tmp) in history[:renamed]  # data on disk before the name
        folder = os.path.dirname(path)
        begun = [i for i, (what, p) in enumerate(history) if i > renamed
                 and what == "fsync-begin" and p == folder]
        assert begun, f"no fsync of {folder} began after {key}'s rename"
        assert ("fsync-end", folder) in history[begun[0] + 1:], key
        body = big if keys.index(key) % 4 == 0 else b"s" * 100
        assert await collect(await translator.get(Stored("disk", key, len(body)))) == body
    folder_syncs = sum(1 for what, p in events
                       if what == "fsync-begin" and p.endswith(("/0a", "/0b")))
    assert translator.folders is not None and translator.folders.fsyncs == folder_syncs
    print(f"\n{len(keys)} puts, {folder_syncs} folder fsyncs")
    assert folder_syncs <= len(keys)
    await translator.close()
