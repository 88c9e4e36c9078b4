"""In-memory location: for tests and throwaway development. All mem locations share one store."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from gateway.translators.base import (
    CHUNK_SIZE,
    ByteStream,
    Health,
    NotFound,
    ObjectMeta,
    Part,
    Stored,
    Translator,
)

# Shared by every mem location, as in CloudServer. Values are immutable bytes.
_STORE: dict[str, bytes] = {}


class MemTranslator(Translator):
    type_name = "mem"
    versions_kept = True

    def __init__(self, name: str, details: Mapping[str, Any], env: Mapping[str, str]) -> None:
        super().__init__(name, details, env)

    async def _store(self, body: ByteStream) -> Stored:
        # A mem location holds objects in memory by definition; streaming applies to the others.
        data = bytearray()
        async for chunk in body:
            data += chunk
        key = uuid.uuid4().hex
        _STORE[key] = bytes(data)
        return Stored(location=self.name, key=key, size=len(data))

    async def put(self, key: str, body: ByteStream, size: int, meta: ObjectMeta) -> Stored:
        return await self._store(body)

    async def get(self, stored: Stored, offset: int = 0, length: int | None = None) -> ByteStream:
        data = _STORE.get(stored.key)
        if data is None:
            raise NotFound(stored.key)
        end = len(data) if length is None else offset + length
        view = memoryview(data)[offset:end]
        return _chunks(view)

    async def head(self, stored: Stored) -> Stored:
        data = _STORE.get(stored.key)
        if data is None:
            raise NotFound(stored.key)
        return stored

    async def delete(self, stored: Stored) -> None:
        _STORE.pop(stored.key, None)

    async def copy(self, src: Stored, key: str, meta: ObjectMeta) -> Stored | None:
        data = _STORE.get(src.key)
        if data is None:
            raise NotFound(src.key)
        new_key = uuid.uuid4().hex
        _STORE[new_key] = data  # bytes are immutable: sharing is a copy
        return Stored(location=self.name, key=new_key, size=len(data))

    async def create_upload(self, key: str, meta: ObjectMeta) -> str:
        return uuid.uuid4().hex

    async def upload_part(
        self, key: str, upload_id: str, number: int, body: ByteStream, size: int
    ) -> Stored:
        return await self._store(body)

    async def complete_upload(
        self, key: str, upload_id: str, parts: list[Part], meta: ObjectMeta
    ) -> list[Stored]:
        return [part.stored for part in parts]

    async def abort_upload(self, key: str, upload_id: str, parts: list[Part]) -> None:
        for part in parts:
            await self.delete(part.stored)

    async def check(self) -> Health:
        return Health(ok=True, message="OK")


async def _chunks(view: memoryview) -> ByteStream:
    for start in range(0, len(view), CHUNK_SIZE):
        yield bytes(view[start : start + CHUNK_SIZE])
