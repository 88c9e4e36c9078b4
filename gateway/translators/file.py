"""Local-disk location. A piece stored at backend key K lives in the file `<xx>/<h>` where h is
the first 32 hex digits of SHA-256(K): no object name (`../` included) ever becomes a path, and
keys are unique per write (see base.py), so no file is ever overwritten. Writes go to a
temporary file named after this host and process, are fsynced (file, then folder) and renamed
into place before put() returns, unless the operator chose `storage.durability: relaxed`.
Temporary files of dead processes are swept at start-up. What makes durable writes cheaper
(shared folder fsyncs, writeback while a big body streams, a pool for syncs) is filesync.py.

Multipart parts are files in a folder of their upload (`mpu/<hash of upload id>/`), one per
attempt, so an abort removes every part, recorded or not; completion links them as pieces of
the object, so no byte is copied again."""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import re
import shutil
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.processes import pid_alive
from gateway.translators.base import (
    CHUNK_SIZE,
    ByteStream,
    ConfigError,
    ForeignObject,
    Health,
    NotFound,
    NotSupported,
    ObjectMeta,
    Part,
    Stored,
    Translator,
    refuse_unknown,
)
from gateway.translators.filesync import SYNC_THREADS, FolderSync, start_writeback, steps_crossed

# Reads up to this size are done on the event loop.
INLINE_READ = 64 * 1024
# Keys that are paths already: pieces of older releases (random ids) and multipart parts.
_PATH_KEY = re.compile(r"[0-9a-f]{2}/[0-9a-f]{32}|mpu/[0-9a-f]{32}/\d{5}-[0-9a-f]{16}")
_TMP_NAME = re.compile(r"\.(?P<host>[^.]+)\.(?P<pid>\d+)\.tmp$")
# Temporary files of other hosts (a shared data path) are swept only when this old.
STALE_TMP_SECONDS = 6 * 3600
# A file location names its files after a hash of each key: it holds only what the gateway
# wrote, and no file there says which key it was written for.
_NOTHING_FOREIGN = ("a file location holds only the gateway's own pieces, under hashed names: "
                    "there is nothing to import or read through")
# Bodies up to this size are gathered and written in one hop to a thread (mkdir, create, write,
# close, rename) instead of one hop per step: hops, not bytes, cost a small PUT its CPU.
SMALL_BODY = 256 * 1024
# Chunks from this size are written in a thread; smaller ones inline (the hop costs more).
THREAD_WRITE_MIN = 256 * 1024
# Chunk writes a big body may have in flight while the next chunk is received (each holds its
# chunk: memory per write is bounded by this many chunks).
WRITES_AHEAD = 2


@dataclass(frozen=True)
class FileSettings:
    root: Path  # the data path, absolute
    durable: bool  # fsync data and folder before a write returns (config.json storage.durability)

    @classmethod
    def parse(cls, name: str, details: Mapping[str, Any], env: Mapping[str, str]) -> FileSettings:
        refuse_unknown(FileTranslator.type_name, details, ("dataPath",))
        path = details.get("dataPath") or env.get("S3DATAPATH") or "./localData"
        if not isinstance(path, str):
            raise ConfigError("dataPath", "must be a string")
        # S3DURABILITY is set by the gateway from config.json storage.durability.
        return cls(root=Path(path).resolve(),
                   durable=env.get("S3DURABILITY", "durable") != "relaxed")


class FileTranslator(Translator):
    type_name = "file"
    # Everything under the data path is the gateway's: fsck may judge every file it lists.
    lists_only_own_pieces = True

    def __init__(self, name: str, details: Mapping[str, Any], env: Mapping[str, str]) -> None:
        super().__init__(name, details, env)
        self.settings = FileSettings.parse(name, details, env)
        self.root = self.settings.root
        self.durable = self.settings.durable
        self._tmp_suffix = f".{socket.gethostname().split('.')[0] or 'host'}.{os.getpid()}.tmp"
        # Writes run in threads of their own (durable ones block in fsync for milliseconds;
        # started only when needed), folder fsyncs shared between concurrent writers.
        self._pool = ThreadPoolExecutor(SYNC_THREADS, thread_name_prefix=f"file-{name}")
        self.folders: FolderSync | None = FolderSync() if self.durable else None

    async def open(self) -> None:
        def _make_dirs() -> None:
            # All 256 fan-out folders up front: no mkdir on the write path.
            for index in range(256):
                (self.root / f"{index:02x}").mkdir(parents=True, exist_ok=True)
            (self.root / "mpu").mkdir(exist_ok=True)
            self._sweep_tmp()

        await asyncio.to_thread(_make_dirs)

    async def close(self) -> None:
        await asyncio.to_thread(self._pool.shutdown)

    def _sweep_tmp(self) -> None:
        """Remove temporary files left by processes killed mid-write: those of this host whose
        process is gone, and any older than STALE_TMP_SECONDS (another host's)."""
        host = socket.gethostname().split(".")[0] or "host"
        now = time.time()
        for folder in [*self.root.glob("[0-9a-f][0-9a-f]"), *self.root.glob("mpu/*")]:
            for tmp in folder.glob("*.tmp"):
                match = _TMP_NAME.search(tmp.name)
                try:
                    stale = now - tmp.stat().st_mtime > STALE_TMP_SECONDS
                except FileNotFoundError:
                    continue
                mine_dead = (match is not None and match["host"] == host
                             and not pid_alive(int(match["pid"])))
                if stale or mine_dead or match is None:
                    tmp.unlink(missing_ok=True)

    def relative_path(self, key: str) -> str:
        """The file (relative to root) behind a backend key."""
        if _PATH_KEY.fullmatch(key):
            return key
        digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:32]
        return f"{digest[:2]}/{digest}"

    def path_of(self, key: str) -> Path:
        """The file behind a backend key, always inside root."""
        if not key:
            raise NotFound(key)
        return self.root / self.relative_path(key)

    def local_path(self, stored: Stored) -> Path:
        """The file serving `stored`, for zero-copy responses (sendfile)."""
        return self.path_of(stored.key)

    def storage_id(self) -> str:
        return f"file:{self.root}"

    def piece_id(self, stored: Stored) -> str:
        return self.relative_path(stored.key)

    async def list_pieces(self, prefix: str = "") -> AsyncIterator[Stored]:
        """Every file under root (keys as relative paths); `prefix` cannot apply to hashed
        names, so it is ignored: everything here is the gateway's."""
        folders = sorted([*self.root.glob("[0-9a-f][0-9a-f]"), *self.root.glob("mpu/*")])
        for folder in folders:
            entries = await asyncio.to_thread(_list_files, folder)
            for name, size in entries:
                yield Stored(location=self.name, key=f"{folder.relative_to(self.root)}/{name}",
                             size=size)

    def list_objects(self, prefix: str = "", start_after: str = "",
                     details: bool = True) -> AsyncIterator[ForeignObject]:
        raise NotSupported(_NOTHING_FOREIGN)

    async def describe(self, key: str) -> ForeignObject | None:
        raise NotSupported(_NOTHING_FOREIGN)

    async def _write(self, key: str, body: ByteStream) -> Stored:
        path = self.path_of(key)
        tmp = path.with_name(path.name + self._tmp_suffix)
        loop = asyncio.get_running_loop()
        pool, folders = self._pool, self.folders
        chunks = aiter(body)
        held: list[bytes] = []
        size = 0
        while size < SMALL_BODY:
            chunk = await anext(chunks, None)
            if chunk is None:  # the whole (verified) body is here: one hop writes it
                # (Not inline: creating and renaming a file is a metadata operation that can
                # take hundreds of microseconds on some filesystems; threads overlap them.)
                await loop.run_in_executor(pool, _write_small, path, tmp, b"".join(held),
                                           folders)
                return Stored(location=self.name, key=key, size=size)
            held.append(chunk)
            size += len(chunk)
        fd = await loop.run_in_executor(pool, _create, tmp)
        # Chunks are written at their offsets (pwrite), so a write in a thread overlaps the
        # receiving of the next chunk; durable, each SYNC_STEP written starts its writeback.
        writes: deque[Future[None]] = deque()
        offset = 0
        try:
            async for chunk in _prepend(held, chunks):
                if len(chunk) < THREAD_WRITE_MIN:  # cheaper inline than a hop
                    _write_at(fd, chunk, offset, False)
                else:
                    if len(writes) >= WRITES_AHEAD:
                        await asyncio.wrap_future(writes[0])
                        writes.popleft()
                    writes.append(pool.submit(_write_at, fd, chunk, offset, self.durable))
                offset += len(chunk)
            while writes:
                await asyncio.wrap_future(writes[0])
                writes.popleft()
            written, fd = fd, -1  # _finish closes it, whatever happens
            await loop.run_in_executor(pool, _finish, written, tmp, path, folders)
        except BaseException:
            if fd >= 0:
                await _discard(writes, fd, tmp)
            else:
                tmp.unlink(missing_ok=True)
            raise
        return Stored(location=self.name, key=key, size=offset)

    async def put(self, key: str, body: ByteStream, size: int, meta: ObjectMeta) -> Stored:
        return await self._write(key, body)

    async def get(self, stored: Stored, offset: int = 0, length: int | None = None) -> ByteStream:
        path = self.path_of(stored.key)
        first = CHUNK_SIZE if length is None else min(CHUNK_SIZE, length)
        wanted = (stored.size - offset) if length is None else length
        try:
            if wanted <= INLINE_READ:
                # A small read from the page cache costs less than the hop to a thread (and
                # the GIL hand-over that comes with it), as nginx reads small files inline.
                handle, chunk = _open_read(path, offset, first, length)
            else:  # open and read the first chunk in one hop
                handle, chunk = await asyncio.to_thread(_open_read, path, offset, first, length)
        except FileNotFoundError:
            raise NotFound(stored.key) from None
        return _read_file(handle, chunk, None if length is None else length - len(chunk))

    async def head(self, stored: Stored) -> Stored:
        try:
            st = await asyncio.to_thread(os.stat, self.path_of(stored.key))
        except FileNotFoundError:
            raise NotFound(stored.key) from None
        return Stored(location=self.name, key=stored.key, size=st.st_size)

    async def delete(self, stored: Stored) -> None:
        try:
            await asyncio.to_thread(os.unlink, self.path_of(stored.key))
        except (FileNotFoundError, NotFound):
            pass

    async def copy(self, src: Stored, key: str, meta: ObjectMeta) -> Stored | None:
        src_path = self.path_of(src.key)
        dst = self.path_of(key)
        folders = self.folders
        tmp = dst.with_name(dst.name + self._tmp_suffix)

        def _copy() -> None:
            try:
                shutil.copyfile(src_path, tmp)  # uses sendfile/copy_file_range on Linux
                fd = os.open(tmp, os.O_WRONLY)
                _finish(fd, tmp, dst, folders)
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise

        try:
            await asyncio.get_running_loop().run_in_executor(self._pool, _copy)
        except FileNotFoundError:
            raise NotFound(src.key) from None
        return Stored(location=self.name, key=key, size=src.size)

    def _upload_folder(self, upload_id: str) -> str:
        return f"mpu/{hashlib.sha256(upload_id.encode()).hexdigest()[:32]}"

    async def create_upload(self, key: str, meta: ObjectMeta) -> str:
        upload_id = uuid.uuid4().hex
        await asyncio.to_thread((self.root / self._upload_folder(upload_id)).mkdir,
                                exist_ok=True)
        return upload_id

    async def upload_part(
        self, key: str, upload_id: str, number: int, body: ByteStream, size: int
    ) -> Stored:
        # One file per attempt: a retried part never replaces bytes a completion may use.
        part_key = (f"{self._upload_folder(upload_id)}/{number:05d}-"
                    f"{random.getrandbits(64):016x}")
        if not (self.root / self._upload_folder(upload_id)).is_dir():
            raise NotFound(upload_id)
        return await self._write(part_key, body)

    async def discard_part(self, key: str, upload_id: str, part: Part) -> None:
        await self.delete(part.stored)

    async def complete_upload(
        self, key: str, upload_id: str, parts: list[Part], meta: ObjectMeta
    ) -> list[Stored]:
        # The listed parts become the object's pieces (no byte copied); parts stored for this
        # upload but not listed (unrecorded retries, left-out numbers) go now.
        folder = self._upload_folder(upload_id)
        listed = {part.stored.key for part in parts}

        def _drop_unlisted() -> None:
            for name, _size in _list_files(self.root / folder):
                if f"{folder}/{name}" not in listed:
                    (self.root / folder / name).unlink(missing_ok=True)

        try:
            await asyncio.to_thread(_drop_unlisted)
        except FileNotFoundError:
            raise NotFound(upload_id) from None
        return [part.stored for part in parts]

    async def abort_upload(self, key: str, upload_id: str, parts: list[Part]) -> None:
        # The whole folder: parts recorded or not (a crash between a write and its record).
        folder = self.root / self._upload_folder(upload_id)
        await asyncio.to_thread(shutil.rmtree, folder, True)

    async def check(self) -> Health:
        ok = await asyncio.to_thread(os.access, self.root, os.W_OK)
        return Health(ok=ok, message="OK" if ok else f"data path {self.root} is not writable")


def _write_small(path: Path, tmp: Path, data: bytes, folders: FolderSync | None) -> None:
    fd = _create(tmp)
    try:
        _write_all(fd, data)
    except BaseException:
        os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
    try:
        _finish(fd, tmp, path, folders)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _create(tmp: Path) -> int:
    return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)


def _finish(fd: int, tmp: Path, path: Path, folders: FolderSync | None) -> None:
    """Make a written temporary file the piece: data on disk, then the name, then the name on
    disk (an fsync of the folder begun after the rename, maybe shared with other writers), so
    an acknowledged piece survives a power cut. Durable when `folders` is given. Closes `fd`."""
    try:
        if folders is not None:
            os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    if folders is not None:
        folders.sync(str(path.parent))


def _write_at(fd: int, data: bytes, offset: int, writeback: bool) -> None:
    """Write all of `data` at `offset`; with `writeback`, start writing to disk each
    SYNC_STEP range this write completes, so the final fsync has little left to do."""
    view = memoryview(data)
    at = offset
    while view:
        written = os.pwrite(fd, view, at)
        view = view[written:]
        at += written
    if writeback:
        for start in steps_crossed(offset, len(data)):
            start_writeback(fd, start, at - start)


async def _prepend(held: list[bytes], rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    for chunk in held:
        yield chunk
    held.clear()
    async for chunk in rest:
        yield chunk


async def _discard(writes: deque[Future[None]], fd: int, tmp: Path) -> None:
    """Close and remove a temporary file given up on, once no thread writes to it any more:
    its descriptor must not be closed (and its number reused) under a pending pwrite."""
    if any(not job.done() for job in writes):
        try:
            await asyncio.wait([asyncio.wrap_future(job) for job in writes])
        except BaseException:  # cancelled again: the last write to end closes it (below)
            pass
    running = [job for job in writes if not job.cancel() and not job.done()]
    if not running:
        _drop(fd, tmp)
        return
    lock = threading.Lock()
    left = [len(running)]

    def one_done(_: Future[None]) -> None:
        with lock:
            left[0] -= 1
            last = not left[0]
        if last:
            _drop(fd, tmp)

    for job in running:
        job.add_done_callback(one_done)


def _drop(fd: int, tmp: Path) -> None:
    os.close(fd)
    tmp.unlink(missing_ok=True)


def _list_files(folder: Path) -> list[tuple[str, int]]:
    entries = []
    with os.scandir(folder) as scan:
        for entry in scan:
            if entry.name.endswith(".tmp"):
                continue
            try:
                entries.append((entry.name, entry.stat().st_size))
            except FileNotFoundError:
                continue
    return entries


def _open_read(path: Path, offset: int, first: int, length: int | None) -> tuple[Any, bytes]:
    """The open file (None once it is all read) and its first chunk from offset."""
    handle = open(path, "rb")  # closed below, or by _read_file
    try:
        if offset:
            handle.seek(offset)
        chunk = handle.read(first)
    except BaseException:
        handle.close()
        raise
    if len(chunk) < first or (length is not None and len(chunk) >= length):
        handle.close()
        return None, chunk
    return handle, chunk


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


async def _read_file(handle: Any, chunk: bytes, remaining: int | None) -> ByteStream:
    try:
        if chunk:
            yield chunk
        if handle is None:
            return
        while remaining is None or remaining > 0:
            size = CHUNK_SIZE if remaining is None else min(CHUNK_SIZE, remaining)
            chunk = await asyncio.to_thread(handle.read, size)
            if not chunk:
                break
            if remaining is not None:
                remaining -= len(chunk)
            yield chunk
    finally:
        if handle is not None:
            handle.close()
