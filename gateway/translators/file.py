"""Local-disk location. Bytes live under the data path in files named by random ids, so no object
name (`../` included) ever becomes a path, and replacing an object never touches the old file
until metadata points elsewhere. Multipart parts are files too; completion links them as pieces
of the object, so no byte is copied again."""

from __future__ import annotations

import asyncio
import os
import random
import re
import shutil
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from gateway.translators.base import (
    CHUNK_SIZE,
    ByteStream,
    ConfigError,
    Health,
    NotFound,
    ObjectMeta,
    Part,
    Stored,
    Translator,
)

# Reads up to this size are done on the event loop.
INLINE_READ = 64 * 1024
_KEY_PATTERN = re.compile(r"[0-9a-f]{2}/[0-9a-f]{32}")
# Bodies up to this size are gathered and written in one hop to a thread (mkdir, create, write,
# close, rename) instead of one hop per step: hops, not bytes, cost a small PUT its CPU.
SMALL_BODY = 256 * 1024


class FileTranslator(Translator):
    type_name = "file"
    versions_kept = True

    def __init__(self, name: str, details: Mapping[str, Any], env: Mapping[str, str]) -> None:
        super().__init__(name, details, env)
        path = details.get("dataPath") or env.get("S3DATAPATH") or "./localData"
        if not isinstance(path, str):
            raise ConfigError("dataPath", "must be a string")
        self.root = Path(path).resolve()

    async def open(self) -> None:
        def _make_dirs() -> None:
            # All 256 fan-out folders up front: no mkdir on the write path.
            for index in range(256):
                (self.root / f"{index:02x}").mkdir(parents=True, exist_ok=True)

        await asyncio.to_thread(_make_dirs)

    def path_of(self, key: str) -> Path:
        """The file behind a backend key. Keys are ours (hex ids), checked to stay inside root."""
        if not _KEY_PATTERN.fullmatch(key):
            raise NotFound(key)
        return self.root / key

    def local_path(self, stored: Stored) -> Path:
        """The file serving `stored`, for zero-copy responses (sendfile)."""
        return self.path_of(stored.key)

    def _new_key(self) -> str:
        # Random, not secret: the Mersenne Twister is far cheaper than a getrandom() call.
        name = f"{random.getrandbits(128):032x}"
        return f"{name[:2]}/{name}"

    async def _write(self, body: ByteStream) -> Stored:
        key = self._new_key()
        path = self.path_of(key)
        tmp = path.with_name(path.name + ".tmp")
        loop = asyncio.get_running_loop()
        chunks = aiter(body)
        held: list[bytes] = []
        size = 0
        while size < SMALL_BODY:
            chunk = await anext(chunks, None)
            if chunk is None:  # the whole (verified) body is here: one hop writes it
                # (Not inline: creating and renaming a file is a metadata operation that can
                # take hundreds of microseconds on some filesystems; threads overlap them.)
                await loop.run_in_executor(None, _write_small, path, tmp, b"".join(held))
                return Stored(location=self.name, key=key, size=size)
            held.append(chunk)
            size += len(chunk)
        fd = await loop.run_in_executor(None, lambda: os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
        try:
            for chunk in held:
                await loop.run_in_executor(None, _write_all, fd, chunk)
            held.clear()
            async for chunk in chunks:
                size += len(chunk)
                # Small chunks are cheaper to write inline than to hand to a thread.
                if len(chunk) < 256 * 1024:
                    os.write(fd, chunk)
                else:
                    await loop.run_in_executor(None, _write_all, fd, chunk)
            await loop.run_in_executor(None, os.close, fd)
            fd = -1
            await loop.run_in_executor(None, os.replace, tmp, path)
        except BaseException:
            if fd >= 0:
                os.close(fd)
            tmp.unlink(missing_ok=True)
            raise
        return Stored(location=self.name, key=key, size=size)

    async def put(self, key: str, body: ByteStream, size: int, meta: ObjectMeta) -> Stored:
        return await self._write(body)

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
        new_key = self._new_key()
        dst = self.path_of(new_key)

        def _copy() -> None:
            tmp = dst.with_name(dst.name + ".tmp")
            try:
                shutil.copyfile(src_path, tmp)  # uses sendfile/copy_file_range on Linux
                os.replace(tmp, dst)
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise

        try:
            await asyncio.to_thread(_copy)
        except FileNotFoundError:
            raise NotFound(src.key) from None
        return Stored(location=self.name, key=new_key, size=src.size)

    async def create_upload(self, key: str, meta: ObjectMeta) -> str:
        return uuid.uuid4().hex

    async def upload_part(
        self, key: str, upload_id: str, number: int, body: ByteStream, size: int
    ) -> Stored:
        return await self._write(body)

    async def complete_upload(
        self, key: str, upload_id: str, parts: list[Part], meta: ObjectMeta
    ) -> list[Stored]:
        return [part.stored for part in parts]

    async def abort_upload(self, key: str, upload_id: str, parts: list[Part]) -> None:
        for part in parts:
            await self.delete(part.stored)

    async def check(self) -> Health:
        ok = await asyncio.to_thread(os.access, self.root, os.W_OK)
        return Health(ok=ok, message="OK" if ok else f"data path {self.root} is not writable")


def _write_small(path: Path, tmp: Path, data: bytes) -> None:
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        _write_all(fd, data)
        os.close(fd)
        fd = -1
        os.replace(tmp, path)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        tmp.unlink(missing_ok=True)
        raise


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
