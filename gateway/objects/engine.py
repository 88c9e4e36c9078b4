"""The write/replace/delete sequence every object change follows, whoever asks for it.

    intent -> bytes at a fresh key -> one metadata commit (object in, intent out, replaced
    pieces to garbage) -> the collector deletes the garbage

Handlers (gateway/s3/ops/) parse and authorize, then call this; they never delete bytes.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from gateway.errors import S3Error
from gateway.metadata.base import (
    BucketGone,
    BucketRecord,
    ConditionFailed,
    MetadataStore,
    ObjectRecord,
    PartRecord,
    UploadRecord,
)
from gateway.metadata.ledger import dropped_pieces
from gateway.objects.collector import Collector
from gateway.translators.base import ObjectMeta, Part, Stored

if TYPE_CHECKING:
    from gateway.config import StorageSettings
    from gateway.locations import Location, Locations

T = TypeVar("T")
log = logging.getLogger("gateway.engine")

# The form of the version ids this gateway hands out (uuid4 hex), and S3's "null".
VERSION_ID = re.compile(r"[0-9a-f]{32}|null")


async def shielded(work: Awaitable[T]) -> T:
    """Run a metadata commit to its end even when the request is cancelled (client gone,
    shutdown grace over): its outcome, not the cancellation, decides what cleanup is right."""
    task = asyncio.ensure_future(work)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        try:
            await task
        except Exception:
            pass  # the cancellation is what the caller sees
        raise


@dataclass
class PieceWrite:
    """Bytes being written: where, and the intent that records them until a commit."""

    location: Location
    key: str
    intent: int
    committed: bool = False


def condition_error(failed: ConditionFailed, key: str, *, raced: bool) -> S3Error:
    """The S3 answer to a conditional write whose expectation failed in the commit. `raced`:
    the request's own early check had passed, so another writer got in between (AWS: 409)."""
    if failed.reason == "missing":
        return S3Error("NoSuchKey", Key=key)
    if raced:
        return S3Error("ConditionalRequestConflict", "A conflicting operation occurred. "
                       "If using PutObject you can retry the request.", Key=key)
    return S3Error("PreconditionFailed", Condition="If-Match" if failed.reason == "mismatch"
                   else "If-None-Match")


def check_expectation(current: ObjectRecord | None, expect: str | None, key: str) -> None:
    """The early (non-atomic) check of a conditional write, before any byte is stored; the
    commit checks again atomically."""
    if expect is None:
        return
    if expect == "*":
        if current is not None:
            raise S3Error("PreconditionFailed", Condition="If-None-Match")
    elif current is None:
        raise S3Error("NoSuchKey", Key=key)
    elif current.etag != expect:
        raise S3Error("PreconditionFailed", Condition="If-Match")


def object_meta(headers: dict[str, str], user: dict[str, str], tags: dict[str, str]) -> ObjectMeta:
    """What travels to the backend with an object's bytes."""
    return ObjectMeta(
        content_type=headers.get("content-type"),
        cache_control=headers.get("cache-control"),
        content_disposition=headers.get("content-disposition"),
        content_encoding=headers.get("content-encoding"),
        content_language=headers.get("content-language"),
        expires=headers.get("expires"),
        user=user,
        tags=tags,
    )


def versioning_state(bucket: BucketRecord) -> str | None:
    """"Enabled", "Suspended", or None for a bucket that never had versioning."""
    return bucket.attrs.get("versioning")


def new_version_id(bucket: BucketRecord) -> str | None:
    """A fresh version id while versioning is enabled, else None (S3's "null" version). Every
    location keeps every write apart (unique keys), so any location can be versioned."""
    return uuid.uuid4().hex if versioning_state(bucket) == "Enabled" else None


class Engine:
    def __init__(self, metadata: MetadataStore, locations: Locations,
                 storage: StorageSettings, *, exclusive_store: bool) -> None:
        self.metadata = metadata
        self.locations = locations
        self.storage = storage
        # SQLite: this process is the only writer, so every intent at start-up is a crash's.
        self.exclusive_store = exclusive_store
        self.collector = Collector(metadata, locations, storage)

    async def start(self) -> None:
        older_than = time.time() if self.exclusive_store else time.time() - self.storage.intent_grace
        await self.metadata.reclaim_intents(older_than)
        if self.exclusive_store:
            # Likewise every claimed upload is a crashed completion's (killed between its claim
            # and its commit): give it back, so it can be completed again or aborted. With
            # PostgreSQL a live gateway may hold a claim: they stay.
            released = await self.metadata.release_claims()
            if released:
                log.warning("released %d multipart upload(s) a crashed completion held",
                            released)
        self.collector.start()

    async def stop(self) -> None:
        await self.collector.stop()

    # --- writing ------------------------------------------------------------------------
    @asynccontextmanager
    async def new_piece(self, location: Location, bucket: str, key: str
                        ) -> AsyncIterator[PieceWrite]:
        """Reserve a fresh backend key for a new piece of bucket/key. Write the bytes and
        commit inside the block; if the block fails (or ends without a commit), the intent
        becomes garbage, so the new bytes, and only they, are collected."""
        write = PieceWrite(location, location.new_key(bucket, key), 0)
        write.intent = await self.metadata.add_intent(location.name, write.key)
        try:
            yield write
        finally:
            if not write.committed:
                await shielded(self.metadata.abandon_intent(write.intent))
                self.collector.wake()

    async def commit(self, bucket: BucketRecord, record: ObjectRecord,
                     write: PieceWrite | None = None, *,
                     expect: str | None = None) -> ObjectRecord | None:
        """Make `record` its key's current version (a new version when the bucket keeps them,
        setting record.version_id), in the bucket incarnation the request checked, and only
        while `expect` holds ("*": no current object; an ETag: the current one's). Return the
        version it replaced (whose pieces are now garbage)."""
        if record.version_id is None and not record.delete_marker:
            record.version_id = new_version_id(bucket)
        try:
            replaced = await shielded(self.metadata.put_object(
                record, intent=write.intent if write else None, bucket_created=bucket.created,
                expect=expect))
        except ConditionFailed as failed:
            raise condition_error(failed, record.key, raced=True) from None
        except BucketGone:
            raise S3Error("NoSuchBucket", "The bucket was deleted while the object was written.",
                          BucketName=bucket.name) from None
        except LookupError:  # the intent outlived storage.intentGraceSeconds: bytes collected
            raise S3Error("RequestTimeout", "The upload took longer than the gateway keeps "
                          "unfinished writes (storage.intentGraceSeconds).") from None
        if write is not None:
            write.committed = True
        if replaced is not None and replaced.pieces:
            self.collector.wake()
        return replaced

    # --- deleting -----------------------------------------------------------------------
    async def delete(self, bucket: BucketRecord, key: str, version_id: str | None,
                     requester: str, *, expect: str | None = None) -> ObjectRecord | None:
        """Delete one key or one version; absent is success. Without a version id, a
        versioning bucket gets a delete marker instead. `expect`: an ETag the current object
        must have (DeleteObject If-Match), checked atomically with the delete. Returns what the
        response describes: the version removed or the marker written."""
        if version_id == "":
            raise S3Error("InvalidArgument", "Version id cannot be the empty string",
                          ArgumentName="versionId", ArgumentValue="")
        if version_id is None and versioning_state(bucket) is not None:
            marker = ObjectRecord(
                bucket=bucket.name, key=key, size=0, etag="", last_modified=time.time(),
                location=bucket.location, pieces=[], owner=requester, delete_marker=True,
                version_id=new_version_id(bucket))
            try:  # suspended: replaces the null version
                await self.commit(bucket, marker, expect=expect)
            except S3Error as err:
                if err.code == "ConditionalRequestConflict":  # no early check for deletes
                    raise S3Error("PreconditionFailed", Condition="If-Match") from None
                raise
            return marker
        if version_id is not None and not VERSION_ID.fullmatch(version_id):
            raise S3Error("NoSuchVersion", Key=key, VersionId=version_id)  # never one of ours
        existing = await self.metadata.get_object(bucket.name, key, version_id, markers=True)
        if existing is None:
            if expect is not None:
                raise S3Error("NoSuchKey", Key=key)
            return None  # a well-formed id that is gone: deleting it again succeeds
        try:
            old = await shielded(self.metadata.delete_object(
                bucket.name, key, existing.version_id or "null", expect=expect))
        except ConditionFailed as failed:
            raise condition_error(failed, key, raced=False) from None
        if old is not None and old.pieces:
            self.collector.wake()
        return old

    # --- multipart ----------------------------------------------------------------------
    async def store_part(self, upload: UploadRecord, part: PartRecord) -> PartRecord | None:
        """Record an uploaded part (the replaced one becomes garbage). When the upload was
        aborted, completed or is being completed meanwhile, the new part is dropped and the
        request answers NoSuchUpload."""
        try:
            old = await shielded(self.metadata.put_part(part))
        except LookupError:
            await self._discard(upload, part)
            raise S3Error("NoSuchUpload", UploadId=upload.upload_id) from None
        if old is not None:
            self.collector.wake()
        return old

    async def _discard(self, upload: UploadRecord, part: PartRecord) -> None:
        """Remove a part no record will ever reference (best effort: fsck finds the rest)."""
        location = self.locations[upload.location]
        try:
            await location.discard_part(upload.backend_key, upload.backend_upload_id,
                                        Part(part.number, part.stored))
        except S3Error:
            pass

    async def complete(self, upload: UploadRecord, chosen: list[PartRecord],
                       record: ObjectRecord, bucket: BucketRecord, *,
                       expect: str | None = None) -> ObjectRecord:
        """Assemble a claimed upload (claim_upload) and commit it. On failure the claim is
        released, so the client may retry or abort; on success unlisted parts are garbage."""
        location = self.locations[upload.location]
        try:
            record.pieces = await location.complete_upload(
                upload.backend_key, upload.backend_upload_id,
                [Part(p.number, p.stored) for p in chosen],
                object_meta(upload.headers, upload.user_meta, upload.tags))
            if record.version_id is None:
                record.version_id = new_version_id(bucket)
            # The chosen parts live on in the object (inside it, on clouds): never garbage.
            finished = await shielded(self.metadata.finish_upload(
                upload.upload_id, record, [p.number for p in chosen], expect=expect))
        except ConditionFailed as failed:
            # Refused for certain (not an unknown outcome): what the backend assembled anew
            # (clouds: the object at the upload's key; file/mem: nothing, the parts are the
            # pieces and stay the upload's) is referenced by nothing: garbage.
            for piece in dropped_pieces([p.to_dict() for p in record.pieces],
                                        [p.stored.to_dict() for p in chosen]):
                await shielded(self.metadata.discard_piece(Stored.from_dict(piece)))
            await shielded(self.metadata.release_upload(upload.upload_id))
            self.collector.wake()
            raise condition_error(failed, upload.key, raced=True) from None
        except BaseException:
            await shielded(self.metadata.release_upload(upload.upload_id))
            raise
        if finished is None:  # cannot happen while we hold the claim
            raise S3Error("NoSuchUpload", UploadId=upload.upload_id)
        self.collector.wake()
        return record

    async def abort(self, upload: UploadRecord) -> None:
        """Drop the upload in metadata; its backend state is garbage for the collector."""
        finished = await shielded(self.metadata.finish_upload(upload.upload_id, None))
        if finished is None:
            raise S3Error("NoSuchUpload", UploadId=upload.upload_id)
        self.collector.wake()


__all__ = ["Engine", "PieceWrite", "VERSION_ID", "check_expectation", "new_version_id",
           "object_meta", "shielded", "versioning_state"]
