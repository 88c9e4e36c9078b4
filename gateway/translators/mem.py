"""In-memory location: for tests and throwaway development. All mem locations share one store.

Objects sit under exactly the key the location wrapper gives (unique per write). A body is kept
as the list of chunks it arrived in, never joined: one copy of the bytes in RAM, however big the
object. Multipart parts are objects of their own at `<key>#<upload_id>#<n>#<token>`, so an abort
finds every part of its upload (recorded or not) by prefix, and completion links them as the
object's pieces: no byte is copied.
"""

from __future__ import annotations

import bisect
import secrets
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

from gateway.translators.base import (
    CHUNK_SIZE,
    ByteStream,
    ForeignObject,
    Health,
    NotFound,
    ObjectMeta,
    Part,
    Stored,
    Translator,
    refuse_unknown,
)


@dataclass(frozen=True)
class _Blob:
    """An object's bytes: the chunks as received (immutable, so copies share them) and the
    offset each chunk starts at."""

    chunks: tuple[bytes, ...]
    starts: tuple[int, ...]
    size: int

    def slices(self, offset: int, end: int) -> list[bytes | memoryview]:
        """The pieces of [offset, end), as whole chunks or views into them: no copy."""
        pieces: list[bytes | memoryview] = []
        index = max(bisect.bisect_right(self.starts, offset) - 1, 0)
        while index < len(self.chunks) and self.starts[index] < end:
            chunk, start = self.chunks[index], self.starts[index]
            first, last = max(offset - start, 0), min(end - start, len(chunk))
            pieces.append(chunk if (first, last) == (0, len(chunk)) else
                          memoryview(chunk)[first:last])
            index += 1
        return pieces


# Shared by every mem location, as in CloudServer.
_STORE: dict[str, _Blob] = {}


def _part_prefix(key: str, upload_id: str) -> str:
    return f"{key}#{upload_id}#"


@dataclass(frozen=True)
class MemSettings:
    """A mem location has no settings of its own (bucketMatch is the placement layer's)."""

    @classmethod
    def parse(cls, name: str, details: Mapping[str, Any], env: Mapping[str, str]) -> MemSettings:
        refuse_unknown(MemTranslator.type_name, details, ())
        return cls()


class MemTranslator(Translator):
    type_name = "mem"
    shared_across_processes = False  # objects live in this process's memory

    def __init__(self, name: str, details: Mapping[str, Any], env: Mapping[str, str]) -> None:
        super().__init__(name, details, env)
        self.settings = MemSettings.parse(name, details, env)

    async def _store(self, key: str, body: ByteStream) -> Stored:
        chunks: list[bytes] = []
        starts: list[int] = []
        size = 0
        async for chunk in body:
            if not chunk:
                continue
            # bytes are kept as they are; a mutable buffer is copied once (its owner may reuse it).
            chunks.append(chunk if isinstance(chunk, bytes) else bytes(chunk))
            starts.append(size)
            size += len(chunk)
        # Stored only once the whole body is in: a failed body leaves nothing behind.
        _STORE[key] = _Blob(tuple(chunks), tuple(starts), size)
        return Stored(location=self.name, key=key, size=size)

    async def put(self, key: str, body: ByteStream, size: int, meta: ObjectMeta) -> Stored:
        return await self._store(key, body)

    async def get(self, stored: Stored, offset: int = 0, length: int | None = None) -> ByteStream:
        blob = _STORE.get(stored.key)
        if blob is None:
            raise NotFound(stored.key)
        end = blob.size if length is None else min(offset + length, blob.size)
        return _stream(blob.slices(offset, end))

    async def head(self, stored: Stored) -> Stored:
        blob = _STORE.get(stored.key)
        if blob is None:
            raise NotFound(stored.key)
        return Stored(location=self.name, key=stored.key, size=blob.size)

    async def delete(self, stored: Stored) -> None:
        _STORE.pop(stored.key, None)  # one key, one version: pinned or not is the same

    async def copy(self, src: Stored, key: str, meta: ObjectMeta) -> Stored | None:
        blob = _STORE.get(src.key)
        if blob is None:
            raise NotFound(src.key)
        _STORE[key] = blob  # immutable chunks: sharing them is a copy
        return Stored(location=self.name, key=key, size=blob.size)

    def storage_id(self) -> str:
        return "mem"  # one store shared by every mem location

    async def list_pieces(self, prefix: str = "") -> AsyncIterator[Stored]:
        for key in sorted(k for k in list(_STORE) if k.startswith(prefix)):
            blob = _STORE.get(key)
            if blob is not None:  # deleted since the snapshot of the keys
                yield Stored(location=self.name, key=key, size=blob.size)

    async def list_objects(self, prefix: str = "", start_after: str = "",
                           details: bool = True) -> AsyncIterator[ForeignObject]:
        # A mem location keeps bytes only: no metadata, no hash (the importer computes the MD5).
        for key in sorted(k for k in list(_STORE) if k.startswith(prefix) and k > start_after):
            found = await self.describe(key)
            if found is not None:  # deleted since the snapshot of the keys
                yield found

    async def describe(self, key: str) -> ForeignObject | None:
        blob = _STORE.get(key)
        if blob is None:
            return None
        return ForeignObject(key=key, size=blob.size,
                             stored=Stored(location=self.name, key=key, size=blob.size))

    async def create_upload(self, key: str, meta: ObjectMeta) -> str:
        return uuid.uuid4().hex

    async def upload_part(
        self, key: str, upload_id: str, number: int, body: ByteStream, size: int
    ) -> Stored:
        # A key per attempt: a retried part never replaces bytes a completion may be using.
        part_key = f"{_part_prefix(key, upload_id)}{number}#{secrets.token_hex(8)}"
        return await self._store(part_key, body)

    async def discard_part(self, key: str, upload_id: str, part: Part) -> None:
        _STORE.pop(part.stored.key, None)

    async def complete_upload(
        self, key: str, upload_id: str, parts: list[Part], meta: ObjectMeta
    ) -> list[Stored]:
        # The parts become the object's pieces; staged parts not listed are dropped.
        listed = {part.stored.key for part in parts}
        for staged in self._staged(key, upload_id):
            if staged not in listed:
                _STORE.pop(staged, None)
        return [part.stored for part in parts]

    async def abort_upload(self, key: str, upload_id: str, parts: list[Part]) -> None:
        for staged in self._staged(key, upload_id):
            _STORE.pop(staged, None)
        for part in parts:  # recorded parts stored elsewhere (none today) go too
            _STORE.pop(part.stored.key, None)

    def _staged(self, key: str, upload_id: str) -> list[str]:
        prefix = _part_prefix(key, upload_id)
        return [k for k in list(_STORE) if k.startswith(prefix)]

    async def check(self) -> Health:
        return Health(ok=True, message="OK")


async def _stream(pieces: list[bytes | memoryview]) -> ByteStream:
    for piece in pieces:
        if len(piece) <= CHUNK_SIZE:
            yield bytes(piece)  # a whole chunk as it is (bytes(b) is b); a view: one chunk copied
            continue
        view = memoryview(piece)
        for start in range(0, len(view), CHUNK_SIZE):
            yield bytes(view[start:start + CHUNK_SIZE])
