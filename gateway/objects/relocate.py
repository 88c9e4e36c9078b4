"""Moving one object version's bytes to another location, under the engine's invariants.

    an intent per piece at the target -> stream-copy each piece (bounded memory) -> verify
    (size, MD5 / ETag, stored checksum) -> ONE conditional metadata step: the version's pieces, location
    and storage class change only while it still has the pieces that were copied

Clients see nothing change but the storage class: a GET that read the old record keeps
streaming the old pieces (they go to the garbage ledger, and the collector waits
storage.readGraceSeconds before deleting them); a GET after the swap reads the new ones. If the
version was overwritten, deleted or moved meanwhile, the swap does nothing and the copied bytes
are garbage (their intent is abandoned); a failed copy or verification likewise changes
nothing. Used by lifecycle transitions, and general enough for moving a bucket's objects.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from gateway import checksums
from gateway.crypto.objects import is_encrypted, verify_copy
from gateway.errors import S3Error
from gateway.metadata.base import ObjectRecord
from gateway.objects.engine import PieceWrite, object_meta, shielded
from gateway.objects.multipart import part_sizes
from gateway.translators.base import Stored

if TYPE_CHECKING:
    from gateway.objects.engine import Engine

STANDARD = "STANDARD"


class RelocationFailed(Exception):
    """The copy did not verify (the bytes read or written are not the object's)."""


@dataclass
class Relocation:
    """What one move did: `record` is the version as now stored (None: it changed or went
    away meanwhile and nothing was moved); `moved` bytes copied in `seconds`."""

    record: ObjectRecord | None
    moved: int = 0
    seconds: float = 0.0
    skipped: str | None = None  # why nothing was copied, when nothing was


@dataclass
class _Digests:
    size: int = 0
    md5: Any = field(default_factory=hashlib.md5)
    piece_md5s: list[bytes] = field(default_factory=list)
    checksum: Any = None  # the stored full-object checksum's hasher, when it has one
    # A multipart object's part sizes (its ETag is the MD5 of the parts' MD5s), whether its
    # parts are pieces (file, mem) or byte ranges of one backend object (clouds).
    part_sizes: list[int] | None = None
    part_md5s: list[bytes] = field(default_factory=list)
    _part: Any = None
    _part_left: int = 0

    def add(self, chunk: bytes) -> None:
        self.size += len(chunk)
        self.md5.update(chunk)
        if self.checksum is not None:
            self.checksum.update(chunk)
        if self.part_sizes is None:
            return
        view = memoryview(chunk)
        while view:
            if self._part_left == 0:
                if len(self.part_md5s) + (self._part is not None) >= len(self.part_sizes):
                    return  # more bytes than the parts: the size check refuses it
                self._close_part()
                self._part = hashlib.md5()
                self._part_left = self.part_sizes[len(self.part_md5s)]
            taken = view[:self._part_left]
            self._part.update(taken)
            self._part_left -= len(taken)
            view = view[len(taken):]

    def _close_part(self) -> None:
        if self._part is not None:
            self.part_md5s.append(self._part.digest())
            self._part = None

    def multipart_etag(self) -> str:
        self._close_part()
        return f"{hashlib.md5(b''.join(self.part_md5s)).hexdigest()}-{len(self.part_md5s)}"


def storage_class_attrs(storage_class: str | None) -> dict[str, Any]:
    """attrs changes for a storage class: STANDARD is the absence of the attribute."""
    return {"storage_class": None if storage_class in (None, STANDARD) else storage_class}


async def _piece_source(engine: Engine, piece: Stored, digests: _Digests
                        ) -> AsyncIterator[bytes]:
    """One piece's bytes, hashed as they pass."""
    piece_md5 = hashlib.md5()
    stream = await engine.locations[piece.location].get(piece)
    async for chunk in stream:
        digests.add(chunk)
        piece_md5.update(chunk)
        yield chunk
    digests.piece_md5s.append(piece_md5.digest())


def _verify(record: ObjectRecord, digests: _Digests) -> None:
    """Raise RelocationFailed unless what streamed is the object: its size, its ETag (a plain
    MD5, or a multipart ETag whose parts were the pieces), its full-object checksum. An
    encrypted object's pieces are ciphertext (gateway/crypto/): only their sizes here; the
    copy itself is then read back and checked (_verify_encrypted)."""
    stored_size = sum(p.size for p in record.pieces)
    if digests.size != stored_size:
        raise RelocationFailed(f"read {digests.size} bytes, the pieces hold {stored_size}")
    if is_encrypted(record):
        return
    if digests.size != record.size:
        raise RelocationFailed(f"size {digests.size}, expected {record.size}")
    etag = record.etag
    if "-" not in etag:
        if digests.md5.hexdigest() != etag:
            raise RelocationFailed(f"MD5 {digests.md5.hexdigest()} is not the ETag {etag}")
    elif digests.part_sizes is not None:  # else: completed before part sizes were kept
        if (computed := digests.multipart_etag()) != etag:
            raise RelocationFailed(f"multipart ETag {computed} is not {etag}")
    checksum = record.attrs.get("checksum")
    if digests.checksum is not None and isinstance(checksum, dict):
        computed = checksums.encode(bytes(digests.checksum.digest()))
        if computed != checksum.get("value"):
            raise RelocationFailed(f"{checksum.get('algorithm')} {computed} is not "
                                   f"{checksum.get('value')}")


async def _verify_encrypted(engine: Engine, record: ObjectRecord, pieces: list[Stored],
                            digests: _Digests) -> None:
    """An encrypted object's copy, read back from the target: every AEAD chunk authenticates
    (SSE-S3/KMS) or every piece hashes as its source did (SSE-C). attrs["sse"] moves as it is:
    the ciphertext is bound to bucket/key, not to the location."""
    try:
        await verify_copy(engine.encryption, engine.locations, record, pieces,
                          digests.piece_md5s)
    except S3Error as err:  # CiphertextError, or the copy missing on the target
        raise RelocationFailed(f"the encrypted copy does not verify: {err}") from None


def _checksum_hasher(record: ObjectRecord) -> Any:
    checksum = record.attrs.get("checksum")
    if (isinstance(checksum, dict) and checksum.get("type") == checksums.FULL_OBJECT
            and checksum.get("algorithm") in checksums.ALGORITHMS
            and "-" not in str(checksum.get("value", ""))):
        return checksums.hasher(checksum["algorithm"])
    return None


async def relocate(engine: Engine, bucket: str, key: str, version_id: str | None,
                   target: str, storage_class: str | None = None, *,
                   expected: ObjectRecord | None = None,
                   keep_source: bool = False) -> Relocation:
    """Move version `version_id` (None or "null": the null version) of bucket/key to location
    `target`, and set its storage class (None: leave it; "STANDARD": remove it). `expected`:
    the record the caller decided on; the move happens only while the version is still that
    one (same pieces). Raises RelocationFailed or S3Error (a location failing) when the copy
    fails; the object is then untouched. `keep_source`: the old bytes are left where they
    are instead of becoming garbage (no record references them any more)."""
    started = time.monotonic()
    vid = None if version_id in (None, "null") else version_id
    record = await engine.metadata.get_object(bucket, key, vid or "null")
    if record is None or record.delete_marker:
        return Relocation(None, skipped="gone")
    if expected is not None and record.pieces != expected.pieces:
        return Relocation(None, skipped="changed")
    if target not in engine.locations:
        raise S3Error("InvalidStorageClass", f"No location named {target!r} is configured.")
    changes = storage_class_attrs(storage_class) if storage_class is not None else {}
    if all(piece.location == target for piece in record.pieces) and record.location == target:
        # Already there (e.g. a class mapped to the bucket's own location): only the class.
        if changes and record.attrs.get("storage_class") != changes["storage_class"]:
            # The same swap, moving nothing: attrs merged atomically, only while unchanged.
            updated = await shielded(engine.metadata.relocate_version(
                bucket, key, record.version_id, record.pieces, record.pieces, target, changes,
                []))
            return Relocation(updated, skipped=None if updated else "changed")
        return Relocation(record, skipped="in place")
    location = engine.locations[target]
    digests = _Digests(checksum=None if is_encrypted(record) else _checksum_hasher(record),
                       part_sizes=None if is_encrypted(record) else part_sizes(record))
    meta = object_meta(record.headers, record.user_meta, record.tags)
    # Piece for piece: the pieces keep their boundaries (a multipart object's parts on file
    # and mem, an encrypted object's sealed streams), so reads map onto them as before.
    async with AsyncExitStack() as writes:
        pieces: list[Stored] = []
        intents: list[PieceWrite] = []
        for piece in record.pieces:
            write = await writes.enter_async_context(engine.new_piece(location, bucket, key))
            intents.append(write)
            stored = await location.put(write.key, _piece_source(engine, piece, digests),
                                        piece.size, meta)
            if stored.size not in (piece.size, 0):
                raise RelocationFailed(f"{target} stored {stored.size} bytes of {piece.size}")
            pieces.append(stored)
        _verify(record, digests)
        if is_encrypted(record):
            await _verify_encrypted(engine, record, pieces, digests)
        try:
            updated = await shielded(engine.metadata.relocate_version(
                bucket, key, record.version_id, record.pieces, pieces, target, changes,
                [w.intent for w in intents], keep_old=keep_source))
        except LookupError:  # an intent outlived storage.intentGraceSeconds
            raise RelocationFailed("the copy took longer than storage.intentGraceSeconds"
                                   ) from None
        if updated is not None:
            for write in intents:
                write.committed = True
    engine.collector.wake()  # the old pieces, or the unused copy
    return Relocation(updated, moved=digests.size, seconds=time.monotonic() - started,
                      skipped=None if updated is not None else "changed")


__all__ = ["Relocation", "RelocationFailed", "relocate", "storage_class_attrs"]
