"""The object engine: every object-level storage rule, whoever asks (S3 handlers, background
jobs, admin commands). It takes plain values (records, keys, byte streams, option objects from
gateway/objects/options.py) and returns plain results with an ObjectEvent; it knows no HTTP.

Every change follows one sequence:

    intent -> bytes at a fresh key -> one metadata commit (object in, intent out, replaced
    pieces to garbage) -> the collector deletes the garbage

Handlers (gateway/s3/ops/) parse and authorize, then call this; they never delete bytes.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import time
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from gateway import checksums  # pure functions: hashers and encodings, no HTTP
from gateway.crypto import objects as sse_objects  # encryption at rest (issue 15)
from gateway.errors import S3Error
from gateway.locations import LOCATION_HEADER
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
from gateway.objects import lock as object_lock  # Object Lock rules (issue 15)
from gateway.objects import multipart as mp
from gateway.objects.collector import Collector
from gateway.objects.options import (
    ACL_PUT,
    COPY,
    CREATED_COMPLETE,
    CREATED_COPY,
    CREATED_PUT,
    MAX_PART_SIZE,
    MAX_PUT_SIZE,
    REMOVED_DELETE,
    REMOVED_MARKER,
    REPLACE,
    STANDARD,
    TAGGING_DELETE,
    TAGGING_PUT,
    CompleteOptions,
    Conditions,
    CopyOptions,
    GetOptions,
    ListedPart,
    ObjectEvent,
    PartOptions,
    PutOptions,
    WriteResult,
    storage_class_of,
)
from gateway.objects.streams import VerifiedBody, copy_source, missing_data, piece_spans
from gateway.translators.base import NotFound, ObjectMeta, Part, Stored

if TYPE_CHECKING:
    from gateway.config import StorageSettings
    from gateway.crypto.sse import Encryption
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


# A GET reads the key's record, then opens its bytes. An overwrite or delete committing in
# between hands the old bytes to the collector, which may remove them first: the record is then
# read again (the newer state was in force during this request) up to this many times in all.
READ_ATTEMPTS = 3
# Tries of a read / update-backend / compare-and-set cycle (tags, ACL) before giving up.
UPDATE_ATTEMPTS = 3
_PLAIN_MD5 = re.compile(r"^[0-9a-f]{32}$")
# The location header is also ordinary user metadata, stored under this name.
LOCATION_META = LOCATION_HEADER[len("x-amz-meta-"):]
SELF_COPY_MESSAGE = (
    "This copy request is illegal because it is trying to copy an object to itself without "
    "changing the object's metadata, storage class, website redirect location or encryption "
    "attributes.")

# How the engine finds the version a request acts on: the caller's lookup (an S3 handler's
# authorizes the requester on exactly that version), called again when a read must retry.
Resolver = Callable[[], Awaitable[ObjectRecord]]
Listener = Callable[[ObjectEvent], None]


class SourceHook(Protocol):
    """A bucket's other source of objects (read-through, gateway/moving/read_through.py): the
    engine asks it before every read and tells it after every delete, so a client's GET and a
    background job's read behave alike."""

    async def fill(self, bucket: BucketRecord, key: str, version_id: str | None) -> None:
        """Before a read: bring the object in when the bucket lacks it."""

    async def deleted(self, bucket: BucketRecord, key: str, version_id: str | None) -> None:
        """After a delete: keep the source's copy from reappearing."""


def _http_time(epoch: float) -> str:
    return time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(epoch))


def check_conditions(conditions: Conditions | None, obj: ObjectRecord, *,
                     all_412: bool = False) -> None:
    """If-Match / If-Unmodified-Since -> PreconditionFailed, If-None-Match / If-Modified-Since
    -> NotModified (GET, HEAD), or PreconditionFailed for all (`all_412`: a copy's source)."""
    failed = conditions.failed(obj) if conditions is not None else None
    if failed is None:
        return
    header, status = failed
    if status == "412" or all_412:
        raise S3Error("PreconditionFailed", Condition=header)
    raise S3Error("NotModified", headers={"ETag": f'"{obj.etag}"',
                                          "Last-Modified": _http_time(obj.last_modified)})


def single_checksum(algorithm: str, value: str) -> dict[str, str]:
    """ObjectRecord.attrs["checksum"] of an object stored in one write."""
    return {"algorithm": algorithm, "value": value, "type": checksums.FULL_OBJECT}


def new_attrs(opts: PutOptions, checksum: dict[str, str] | None = None) -> dict[str, Any]:
    """The attrs a new version starts with: its checksum, ACL, storage class."""
    attrs: dict[str, Any] = {}
    if checksum:
        attrs["checksum"] = checksum
    if opts.acl:
        attrs["acl"] = opts.acl
    if opts.storage_class and opts.storage_class != STANDARD:
        attrs["storage_class"] = opts.storage_class
    return attrs


def too_large_copy(size: int, limit: int) -> S3Error:
    return S3Error("InvalidRequest", "The specified copy source is larger than the maximum "
                   f"allowable size for a copy source: {limit}", ProposedSize=str(size))


@dataclass
class ObjectRead:
    """What a GET or HEAD answers: the version, the bytes chosen (first..last, inclusive),
    whether that is part of the object (206), the checksum that applies to them, and their
    stream (opened before the answer starts, so a missing backend object is a clean error)."""

    record: ObjectRecord
    first: int
    last: int
    partial: bool
    checksum: dict[str, str] | None
    parts_count: int | None
    spans: list[tuple[Stored, int, int]] = field(default_factory=list)
    locations: Any = None
    data: bytes | None = None  # the whole body, when small enough (GetOptions.small)
    _opened: AsyncIterator[bytes] | None = None
    # Encrypted records (gateway/crypto/objects.py): opens the plaintext of first..last.
    opener: Callable[[], Awaitable[AsyncIterator[bytes]]] | None = None

    @property
    def length(self) -> int:
        return self.last - self.first + 1 if self.record.size else 0

    @property
    def content_range(self) -> str:
        return f"bytes {self.first}-{self.last}/{self.record.size}"

    async def _open(self, small: int) -> None:
        if self.opener is not None:  # encrypted: decrypts only the chunks first..last need
            stream = await self.opener()
            if self.length <= small:
                self.data = b"".join([chunk async for chunk in stream])
            else:
                self._opened = stream
            return
        if not self.spans:
            self.data = b""
            return
        piece, offset, span_len = self.spans[0]
        stream = await self.locations[piece.location].get(piece, offset, span_len)
        if len(self.spans) == 1 and self.length <= small:
            self.data = b"".join([chunk async for chunk in stream])
        else:
            self._opened = stream

    async def chunks(self) -> AsyncIterator[bytes]:
        """The bytes, piece after piece. A piece that cannot be read mid-way raises S3Error
        (the caller can only cut the answer short)."""
        if self.data is not None:
            yield self.data
            return
        try:
            if self.opener is not None and self._opened is not None:  # encrypted
                async for chunk in self._opened:
                    yield chunk
                return
            for index, (piece, offset, span_len) in enumerate(self.spans):
                stream = self._opened if index == 0 and self._opened is not None else \
                    await self.locations[piece.location].get(piece, offset, span_len)
                async for chunk in stream:
                    yield chunk
        except (NotFound, OSError) as exc:
            raise S3Error("InternalError", f"The object's data could not be read: {exc}") from exc


async def recover_crashed(metadata: MetadataStore, storage: StorageSettings, *,
                          exclusive: bool) -> None:
    """Start-up crash recovery. `exclusive`: no other process uses the store now (SQLite with
    one gateway, or the workers' parent before it forks them), so every intent is a crashed
    write's; otherwise only intents older than the grace are (a live gateway or a sibling
    worker may hold the others)."""
    older_than = time.time() if exclusive else time.time() - storage.intent_grace
    await metadata.reclaim_intents(older_than)
    if exclusive:
        # Likewise every claimed upload is a crashed completion's (killed between its claim
        # and its commit): give it back, so it can be completed again or aborted. With
        # PostgreSQL (or sibling workers) a live gateway may hold a claim: they stay.
        released = await metadata.release_claims()
        if released:
            log.warning("released %d multipart upload(s) a crashed completion held", released)



def _delete_guard(bypass_governance: bool, only_if: ObjectRecord | None
                  ) -> Callable[[ObjectRecord], None]:
    """Checked inside the delete's transaction: Object Lock, and (only_if) that the version
    is still the record the caller decided on."""
    lock_guard = object_lock.delete_guard(bypass_governance)

    def guard(old: ObjectRecord) -> None:
        if only_if is not None and (old.pieces, old.etag, old.last_modified) != (
                only_if.pieces, only_if.etag, only_if.last_modified):
            raise ConditionFailed("mismatch")
        lock_guard(old)
    return guard


class Engine:
    def __init__(self, metadata: MetadataStore, locations: Locations,
                 storage: StorageSettings, *, exclusive_store: bool) -> None:
        self.metadata = metadata
        self.locations = locations
        self.storage = storage
        # SQLite: this process is the only writer, so every intent at start-up is a crash's.
        self.exclusive_store = exclusive_store
        self.collector = Collector(metadata, locations, storage)
        self.listeners: list[Listener] = []
        # Encryption at rest (gateway/crypto/), set up by the gateway at start-up.
        self.encryption: Encryption | None = None
        # Read-through (gateway/moving/read_through.py sets it): asked before reads, told of deletes.
        self.source_hook: SourceHook | None = None

    async def start(self) -> None:
        await recover_crashed(self.metadata, self.storage, exclusive=self.exclusive_store)
        self.collector.start()

    async def stop(self) -> None:
        await self.collector.stop()

    # --- events ---------------------------------------------------------------------------
    def subscribe(self, listener: Listener) -> None:
        """Call `listener` with every ObjectEvent, after the change has committed (the one
        place notifications and replication will hook in). It must not block."""
        self.listeners.append(listener)

    def emit(self, event: ObjectEvent) -> ObjectEvent:
        for listener in self.listeners:
            try:
                listener(event)
            except Exception:  # a listener's failure never undoes a committed change
                log.exception("object event listener failed on %s", event.kind)
        return event

    def _event(self, kind: str, record: ObjectRecord, requester: str | None) -> ObjectEvent:
        return self.emit(ObjectEvent(kind=kind, bucket=record.bucket, key=record.key,
                                     version_id=record.version_id, etag=record.etag,
                                     size=record.size, requester=requester))

    # --- placement and lookups ------------------------------------------------------------
    def place(self, bucket: BucketRecord, requested: str | None = None,
              host: str | None = None) -> Location:
        """Where a new object's bytes go: a requested location, else the bucket's, else the
        endpoint's (`host`), else the default."""
        return self.locations.for_new_object(requested, bucket.location, host)

    async def current(self, bucket: BucketRecord, key: str,
                      version_id: str | None = None) -> ObjectRecord:
        """A version by plain lookup (no requester to authorize: background jobs)."""
        obj = await self.metadata.get_object(bucket.name, key, version_id)
        if obj is None:
            if version_id is not None:
                raise S3Error("NoSuchVersion", Key=key, VersionId=version_id)
            raise S3Error("NoSuchKey", Key=key)
        return obj

    async def check_expectation(self, bucket: BucketRecord, key: str,
                                expect: str | None) -> None:
        """A conditional write's early check, so a doomed upload is refused before its body
        is read (the commit checks again, atomically)."""
        if expect is not None:
            check_expectation(await self.metadata.get_object(bucket.name, key), expect, key)

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

    async def put(self, bucket: BucketRecord, key: str, body: AsyncIterable[bytes], size: int,
                  opts: PutOptions, *, kind: str = CREATED_PUT) -> WriteResult:
        """Store `body` (exactly `size` bytes) as the new current version of bucket/key:
        verified while it streams (opts.content_md5, opts.verify), checksummed with
        opts.checksum_algorithm (default CRC64NVME), committed only while opts.mode holds."""
        if size > MAX_PUT_SIZE:
            raise S3Error("EntityTooLarge", ProposedSize=str(size),
                          MaxSizeAllowed=str(MAX_PUT_SIZE))
        location = self.place(bucket, opts.location, opts.host)
        expect = opts.expectation()
        await self.check_expectation(bucket, key, expect)
        lock = object_lock.new_lock(bucket, opts.lock)  # before any byte is stored
        algorithm = opts.checksum_algorithm or checksums.DEFAULT_ALGORITHM
        verified = VerifiedBody(body, size, opts.content_md5, (algorithm,), opts.verify)
        stream, stored_size, sealed = aiter(verified), size, None
        # The encryption asked for, else the bucket's default (gateway/crypto/).
        encryption = sse_objects.write_encryption(bucket, opts.encryption)
        if encryption:  # the location receives only ciphertext
            sealed = await sse_objects.seal_body(self.encryption, encryption, bucket.name,
                                                 key, stream, size)
            stream, stored_size = sealed.stream, sealed.size
        async with self.new_piece(location, bucket.name, key) as write:
            stored = await location.put(write.key, stream, stored_size,
                                        object_meta(opts.headers, opts.user_meta, opts.tags))
            record = ObjectRecord(
                bucket=bucket.name, key=key, size=size, etag=verified.etag,
                last_modified=time.time(), location=location.name, pieces=[stored],
                owner=opts.owner, headers=dict(opts.headers), user_meta=dict(opts.user_meta),
                tags=dict(opts.tags),
                attrs=new_attrs(opts, single_checksum(algorithm, verified.checksum(algorithm))))
            if sealed is not None:
                record.attrs[sse_objects.ATTR] = sealed.attrs()
            if lock:
                record.attrs[object_lock.ATTR] = lock
            replaced = await self.commit(bucket, record, write, expect=expect)
        return WriteResult(record, replaced, self._event(kind, record,
                                                         opts.requester or opts.owner))

    # --- reading ----------------------------------------------------------------------------
    async def read(self, bucket: BucketRecord, key: str, opts: GetOptions,
                   resolve: Resolver | None = None, *, body: bool = True) -> ObjectRead:
        """The version to answer (found by `resolve`, by default the plain lookup of
        opts.version_id), its conditions checked, the bytes asked for (opts.range or
        opts.part_number) mapped onto its pieces and, with `body`, their stream opened."""
        if opts.range is not None and opts.part_number is not None:
            raise S3Error("InvalidRequest", "Cannot specify both Range header and partNumber "
                          "query parameter.")
        if self.source_hook is not None:
            await self.source_hook.fill(bucket, key, opts.version_id)
        gone: list[Stored] | None = None  # pieces of a record whose bytes could not be opened
        for _ in range(READ_ATTEMPTS):
            obj = await (resolve() if resolve is not None
                         else self.current(bucket, key, opts.version_id))
            if obj.pieces == gone:
                raise missing_data(obj.key)  # still referenced, yet not stored
            check_conditions(opts.conditions, obj)
            read = self._plan(obj, opts)
            if not body:
                return read
            try:
                await read._open(opts.small)
            except (NotFound, OSError):
                gone = obj.pieces
                continue
            return read
        raise missing_data(key)  # replaced again under every attempt

    def _plan(self, obj: ObjectRecord, opts: GetOptions) -> ObjectRead:
        count = mp.parts_count(obj)
        first, last, partial = 0, obj.size - 1, False
        checksum = obj.attrs.get("checksum")
        if opts.part_number is not None:
            first, last = mp.part_range(obj, opts.part_number)
            if count is not None:  # a part of a multipart object; part 1 of others is all
                partial = True
                checksum = mp.part_checksum(obj, opts.part_number)
        elif opts.range is not None:
            first, last = opts.range.resolve(obj.size)
            partial = True
            checksum = None  # a range has none
        sse_objects.check_read_key(obj, opts.encryption)  # SSE-C: refused before anything
        if sse_objects.is_encrypted(obj):  # plaintext offsets are not the pieces' offsets
            read = ObjectRead(obj, first, last, partial, checksum, count, [], self.locations)
            customer = sse_objects.customer_of(opts.encryption)
            read.opener = lambda: sse_objects.open_plaintext(self.encryption, self.locations,
                                                             obj, first, last, customer)
            return read
        spans = piece_spans(obj.pieces, first, last) if obj.size and last >= first else []
        return ObjectRead(obj, first, last, partial, checksum, count, spans, self.locations)

    # --- copying ----------------------------------------------------------------------------
    async def copy(self, bucket: BucketRecord, key: str, source: ObjectRecord,
                   source_bucket: BucketRecord, opts: CopyOptions) -> WriteResult:
        """Copy `source` (the version the caller resolved and authorized) to bucket/key as a
        new object of opts.owner: server-side within one location for a one-piece source,
        else streamed and hashed. Onto itself it must change something (metadata with REPLACE,
        or the storage class); then, unversioned, only the metadata changes."""
        check_conditions(opts.source_conditions, source, all_412=True)
        # The destination's encryption (gateway/crypto/): asked for, else kept when the source
        # has one. An encrypted copy streams: decrypted, sealed anew under a fresh data key.
        encryption = sse_objects.copy_encryption(
            source, sse_objects.write_encryption(bucket, opts.encryption))
        sse_objects.check_read_key(source, opts.encryption, "source")  # its SSE-C key
        same_object = source_bucket.name == bucket.name and source.key == key
        # A noncurrent version copied onto its key is S3's documented restore: always legal.
        if same_object and source.latest and opts.metadata_directive != REPLACE \
                and opts.storage_class is None \
                and not opts.encryption:  # a self-copy may change only the encryption (rotation)
            raise S3Error("InvalidRequest", SELF_COPY_MESSAGE)
        if source.size > MAX_PUT_SIZE:
            raise too_large_copy(source.size, MAX_PUT_SIZE)
        if opts.metadata_directive == REPLACE:
            headers, user = dict(opts.headers), dict(opts.user_meta)
            requested_location = opts.location
        else:  # COPY: the request's content and user metadata are ignored, as AWS does
            headers, user = dict(source.headers), dict(source.user_meta)
            requested_location = None
        tags = dict(source.tags) if opts.tagging_directive == COPY else dict(opts.tags)
        location = self.place(bucket, requested_location, opts.host)
        if requested_location is None and LOCATION_META in user:
            user[LOCATION_META] = location.name  # COPY: the destination's location replaces it
        meta = object_meta(headers, user, tags)
        now = time.time()
        requester = opts.requester or opts.owner
        # The copy's checksum: the one asked for, else the source's algorithm. The source's
        # value carries over when it is a whole-object one of that algorithm; any other must be
        # computed, from the bytes, so they must stream.
        algorithm = opts.checksum_algorithm
        if algorithm is None and source.attrs.get("checksum"):
            algorithm = source.attrs["checksum"]["algorithm"]
        checksum = reusable_checksum(source, algorithm)
        must_read = algorithm is not None and checksum is None
        # The copy is a new object: the requester's, with the ACL asked for (not the
        # source's), and the storage class asked for (else STANDARD), as AWS does.
        attrs = new_attrs(opts, checksum)
        # Object Lock: what the request asks for or the bucket's default, never the source's.
        lock = object_lock.new_lock(bucket, opts.lock)
        if lock:
            attrs[object_lock.ATTR] = lock
        # A one-piece object with a plain MD5 ETag can be copied without reading it: its ETag
        # is already the MD5 of its bytes. A multipart source gets a fresh MD5 (as AWS).
        one_piece = (len(source.pieces) == 1 and source.pieces[0].location == location.name
                     and bool(_PLAIN_MD5.match(source.etag)) and not must_read
                     and encryption is None)

        if same_object and one_piece and versioning_state(bucket) != "Enabled":
            # Onto itself in place: only the gateway's metadata changes (it is the reference);
            # the stored piece stays untouched, as every piece does once written.
            changes = {"headers": headers, "user_meta": user, "tags": tags,
                       "last_modified": now, "owner": opts.owner, "attrs": attrs}
            updated = await self.metadata.update_object(bucket.name, key, source.pieces,
                                                         changes)
            if updated is None:
                raise S3Error("OperationAborted", "The object changed while it was being "
                              "copied. Please try again.")
            return WriteResult(updated, None, self._event(CREATED_COPY, updated, requester),
                               in_place=True)

        async with self.new_piece(location, bucket.name, key) as write:
            stored: Stored | None = None
            etag = source.etag
            if one_piece:
                try:
                    stored = await location.copy(source.pieces[0], write.key, meta)
                except NotFound:
                    raise missing_data(source.key, "The copy source's") from None
            if stored is None:  # another location, several pieces, no server-side copy
                computed = algorithm or checksums.DEFAULT_ALGORITHM
                streamed = copy_source(self.locations, self.encryption, source, 0, source.size,
                                       (computed,),
                                       sse_objects.customer_of(opts.encryption, "source"))
                body, stored_size, sealed = aiter(streamed), source.size, None
                if encryption:
                    sealed = await sse_objects.seal_body(self.encryption, encryption,
                                                         bucket.name, key, body, source.size)
                    body, stored_size = sealed.stream, sealed.size
                stored = await location.put(write.key, body, stored_size, meta)
                etag = streamed.etag
                attrs["checksum"] = single_checksum(computed, streamed.checksum(computed))
                if sealed is not None:
                    attrs[sse_objects.ATTR] = sealed.attrs()
            record = ObjectRecord(
                bucket=bucket.name, key=key, size=source.size, etag=etag, last_modified=now,
                location=location.name, pieces=[stored], owner=opts.owner, headers=headers,
                user_meta=user, tags=tags, attrs=attrs)
            replaced = await self.commit(bucket, record, write)
        return WriteResult(record, replaced, self._event(CREATED_COPY, record, requester))

    # --- changing a version in place ---------------------------------------------------------
    async def update_tags(self, bucket: BucketRecord, obj: ObjectRecord, tags: dict[str, str],
                          resolve: Resolver, *, requester: str | None = None) -> ObjectRecord:
        """Set the tags of version `obj` (found again by `resolve` when it changed meanwhile).
        Backend first (it may hand back a changed piece, e.g. a new etag: the old piece is
        then garbage), then metadata by compare-and-set, so a concurrent overwrite is never
        clobbered with the old pieces."""
        current: ObjectRecord | None = obj
        for _ in range(UPDATE_ATTEMPTS):
            if current is None:
                current = await resolve()
            pieces = current.pieces
            if len(pieces) == 1 and pieces[0].location in self.locations:
                location = self.locations[pieces[0].location]
                meta = object_meta(current.headers, current.user_meta, tags)
                try:
                    pieces = [await location.update_meta(pieces[0], meta)]
                except NotFound:
                    raise missing_data(current.key) from None
            updated = await self.metadata.update_object(
                bucket.name, current.key, current.pieces, {"tags": tags, "pieces": pieces})
            if updated is not None:
                if pieces != current.pieces:
                    self.collector.wake()  # the re-pinned old version is garbage
                self._event(TAGGING_PUT if tags else TAGGING_DELETE, updated, requester)
                return updated
            # Lost the race: a backend copy made for it (a new version, not the same bytes
            # re-tagged in place) is garbage.
            for piece in dropped_pieces([p.to_dict() for p in pieces],
                                        [p.to_dict() for p in current.pieces]):
                await self.metadata.discard_piece(Stored.from_dict(piece))
                self.collector.wake()
            current = None
        raise S3Error("OperationAborted", "The object kept changing while its tags were set. "
                      "Please try again.")

    async def update_acl(self, bucket: BucketRecord, obj: ObjectRecord,
                         grants_for: Callable[[ObjectRecord], list[dict[str, str]]],
                         resolve: Resolver, *, requester: str | None = None) -> ObjectRecord:
        """Set the ACL of version `obj` to grants_for(version) (built for that version's
        owner), by compare-and-set; a version changed meanwhile is found again by `resolve`."""
        current = obj
        for _ in range(5):
            grants = grants_for(current)
            try:
                updated = await self.metadata.update_object(
                    bucket.name, current.key, current.pieces,
                    {"attrs": {**current.attrs, "acl": grants}},
                    guard=_same_attrs(current))  # never drops an Object Lock set meanwhile
            except _AttrsChanged:
                updated = None
            if updated is not None:
                self._event(ACL_PUT, updated, requester)
                return updated
            current = await resolve()
        raise S3Error("InternalError", "The object kept changing; try again.")

    async def update_lock(self, bucket: BucketRecord, obj: ObjectRecord,
                          change: Callable[[ObjectRecord], dict[str, Any]],
                          resolve: Resolver) -> ObjectRecord:
        """Put{ObjectRetention,ObjectLegalHold}: set version `obj`'s attrs to change(version)
        (gateway/objects/lock.py's with_retention / with_legal_hold, which refuse what Object
        Lock forbids), by compare-and-set on its pieces and on the attrs the change was made
        from, so two changes (or a change and a delete) never interleave."""
        current = obj
        for _ in range(UPDATE_ATTEMPTS * 2):
            attrs = change(current)
            try:
                updated = await self.metadata.update_object(
                    bucket.name, current.key, current.pieces, {"attrs": attrs},
                    guard=_same_attrs(current))
            except _AttrsChanged:
                updated = None
            if updated is not None:
                return updated
            current = await resolve()
        raise S3Error("OperationAborted", "The object's lock kept changing. Please try again.")

    # --- deleting -----------------------------------------------------------------------
    async def delete(self, bucket: BucketRecord, key: str, version_id: str | None,
                     requester: str, *, expect: str | None = None,
                     bypass_governance: bool = False,
                     only_if: ObjectRecord | None = None) -> ObjectRecord | None:
        """See delete_unhooked; then the source hook (read-through) hears of it."""
        removed = await self.delete_unhooked(bucket, key, version_id, requester, expect=expect,
                                             bypass_governance=bypass_governance,
                                             only_if=only_if)
        if self.source_hook is not None:
            await self.source_hook.deleted(bucket, key, version_id)
        return removed

    async def delete_unhooked(self, bucket: BucketRecord, key: str, version_id: str | None,
                              requester: str, *, expect: str | None = None,
                              bypass_governance: bool = False,
                              only_if: ObjectRecord | None = None) -> ObjectRecord | None:
        """Delete one key or one version; absent is success. Without a version id, a
        versioning bucket gets a delete marker instead. `expect`: an ETag the current object
        must have (DeleteObject If-Match), checked atomically with the delete. Returns what the
        response describes: the version removed or the marker written. A version Object Lock
        protects is refused (AccessDenied); `bypass_governance`: the requester asked to and
        may bypass a GOVERNANCE retention (s3:BypassGovernanceRetention). `only_if`: delete
        the version only while it is still that record (a background job's
        decision: a client's write of the same version id meanwhile, e.g. a new "null"
        version, is never its to delete)."""
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
            self._event(REMOVED_MARKER, marker, requester)
            return marker
        if version_id is not None and not VERSION_ID.fullmatch(version_id):
            raise S3Error("NoSuchVersion", Key=key, VersionId=version_id)  # never one of ours
        existing = await self.metadata.get_object(bucket.name, key, version_id, markers=True)
        if existing is None:
            if expect is not None:
                raise S3Error("NoSuchKey", Key=key)
            return None  # a well-formed id that is gone: deleting it again succeeds
        try:
            # Object Lock: a protected version is refused inside the delete's transaction, so
            # a retention or legal hold set meanwhile is always seen (gateway/objects/lock.py).
            old = await shielded(self.metadata.delete_object(
                bucket.name, key, existing.version_id or "null", expect=expect,
                guard=_delete_guard(bypass_governance, only_if)))
        except ConditionFailed as failed:
            raise condition_error(failed, key, raced=False) from None
        if old is not None:
            if old.pieces:
                self.collector.wake()
            self._event(REMOVED_DELETE, old, requester)
        return old

    async def delete_many(self, bucket: BucketRecord, entries: list[tuple[str, str | None, bool]],
                          requester: str) -> list[ObjectRecord | S3Error | None]:
        """See _delete_many; then the source hook (read-through) hears of each delete done (its
        refusal is that entry's result)."""
        results = await self._delete_many(bucket, entries, requester)
        if self.source_hook is not None:
            for index, ((key, version_id, _), outcome) in enumerate(
                    zip(entries, results, strict=True)):
                if not isinstance(outcome, S3Error):
                    try:
                        await self.source_hook.deleted(bucket, key, version_id)
                    except S3Error as err:
                        results[index] = err
        return results

    async def _delete_many(self, bucket: BucketRecord,
                           entries: list[tuple[str, str | None, bool]],
                           requester: str) -> list[ObjectRecord | S3Error | None]:
        """DeleteObjects: each (key, version id, bypass_governance) exactly as delete() would,
        one result per entry in order (what delete() returns, or the S3Error it raises).
        Delete markers are written one by one; every other entry goes to the metadata store
        in one call (few transactions and syncs instead of one per key)."""
        results: list[ObjectRecord | S3Error | None] = [None] * len(entries)
        batch: list[tuple[str, str | None, Callable[[ObjectRecord], None]]] = []
        where: list[int] = []
        markers = versioning_state(bucket) is not None
        # A guard depends on the bypass only: two for the whole batch, not one per key.
        guards = {False: object_lock.delete_guard(False), True: object_lock.delete_guard(True)}
        for index, (key, version_id, bypass) in enumerate(entries):
            if version_id is None and markers or version_id == "":
                try:
                    results[index] = await self.delete_unhooked(bucket, key, version_id, requester,
                                                        bypass_governance=bypass)
                except S3Error as err:
                    results[index] = err
            elif version_id is not None and not VERSION_ID.fullmatch(version_id):
                results[index] = S3Error("NoSuchVersion", Key=key, VersionId=version_id)
            else:
                batch.append((key, version_id, guards[bool(bypass)]))
                where.append(index)
        if not batch:
            return results
        removed = await shielded(self.metadata.delete_objects(bucket.name, batch))
        wake = False
        for index, old in zip(where, removed, strict=True):
            if isinstance(old, S3Error):
                results[index] = old
            elif isinstance(old, Exception):  # a guard raises S3Error only
                raise old
            elif old is not None:
                wake = wake or bool(old.pieces)
                self._event(REMOVED_DELETE, old, requester)
                results[index] = old
        if wake:
            self.collector.wake()
        return results

    # --- multipart ----------------------------------------------------------------------
    async def create_upload(self, bucket: BucketRecord, key: str,
                            opts: PutOptions) -> UploadRecord:
        """Start a multipart upload of bucket/key at the placed location, under a backend
        key of its own (two uploads of one S3 key never share staged parts)."""
        location = self.place(bucket, opts.location, opts.host)
        attrs = new_attrs(opts)
        if opts.upload_checksum:
            attrs["checksum"] = opts.upload_checksum
        lock = object_lock.upload_lock(bucket, opts.lock)  # kept by the completed object
        if lock:
            attrs[object_lock.ATTR] = lock
        encryption = sse_objects.write_encryption(bucket, opts.encryption)  # or the default
        if encryption:  # gateway/crypto/: one data key; every part sealed under it
            attrs[sse_objects.ATTR] = await sse_objects.new_upload_sealing(
                self.encryption, encryption, bucket.name, key)
        backend_key = location.new_key(bucket.name, key)
        backend_upload_id = await location.create_upload(
            backend_key, object_meta(opts.headers, opts.user_meta, opts.tags))
        upload = UploadRecord(
            upload_id=uuid.uuid4().hex, bucket=bucket.name, key=key, initiated=time.time(),
            owner=opts.owner, location=location.name, backend_key=backend_key,
            backend_upload_id=backend_upload_id, headers=dict(opts.headers),
            user_meta=dict(opts.user_meta), tags=dict(opts.tags), attrs=attrs)
        await self.metadata.create_upload(upload)
        return upload

    async def get_upload(self, upload_id: str) -> UploadRecord | None:
        return await self.metadata.get_upload(upload_id)

    async def upload_part(self, upload: UploadRecord, number: int, body: AsyncIterable[bytes],
                          size: int, opts: PartOptions) -> PartRecord:
        """Store part `number` of `upload`, verified while it streams, with the checksum(s)
        the upload keeps (multipart.part_algorithms)."""
        if size > MAX_PART_SIZE:
            raise S3Error("EntityTooLarge", ProposedSize=str(size),
                          MaxSizeAllowed=str(MAX_PART_SIZE))
        algorithms = mp.part_algorithms(upload, opts.checksum_algorithm)
        if opts.checksum_algorithm is not None:
            algorithms = (*algorithms, opts.checksum_algorithm)
        location = self.locations[upload.location]
        verified = VerifiedBody(body, size, opts.content_md5, algorithms, opts.verify)
        stream, stored_size, sealed = aiter(verified), size, None
        sse_objects.refuse_unencrypted_part_options(upload, opts.encryption)
        if sse_objects.is_encrypted(upload):  # a stream of its own (gateway/crypto/)
            sealed = await sse_objects.seal_part(self.encryption, upload, opts.encryption,
                                                 stream, size)
            stream, stored_size = sealed.stream, sealed.size
        stored = await location.upload_part(upload.backend_key, upload.backend_upload_id,
                                            number, stream, stored_size)
        part = PartRecord(upload_id=upload.upload_id, number=number, size=size,
                          etag=verified.etag, last_modified=time.time(), stored=stored,
                          checksums={a: checksums.encode(v)
                                     for a, v in verified.checksums.items()})
        if sealed is not None:
            sse_objects.keep_part_segment(part, sealed)
        await self.store_part(upload, part)
        return part

    async def copy_part(self, upload: UploadRecord, number: int, source: ObjectRecord,
                        first: int, length: int, *,
                        conditions: Conditions | None = None,
                        encryption: dict[str, str] | None = None) -> PartRecord:
        """Part `number` of `upload` from bytes first..first+length-1 of `source`: copied by
        the location when it can, else streamed and hashed. `encryption`: SSE-C keys (the
        part's, the source's as "source..."), sse_objects.put_encryption's dict."""
        check_conditions(conditions, source, all_412=True)
        # gateway/crypto/: an encrypted source is decrypted, an encrypted upload's part sealed.
        sse_objects.check_read_key(source, encryption, "source")  # its SSE-C key
        sse_objects.refuse_unencrypted_part_options(upload, encryption)
        encrypted = sse_objects.is_encrypted(source) or sse_objects.is_encrypted(upload)
        if length > MAX_PART_SIZE:
            raise too_large_copy(length, MAX_PART_SIZE)
        location = self.locations[upload.location]
        # The part's checksum: the upload's algorithm (or, without one, AWS's default), the
        # source's value when it holds for exactly these bytes, else computed as they stream.
        mode = mp.upload_mode(upload)
        algorithm = mode["algorithm"] if mode else checksums.DEFAULT_ALGORITHM
        whole = first == 0 and length == source.size
        reused = reusable_checksum(source, algorithm, whole)
        part_sums = {algorithm: reused["value"]} if reused else {}
        stored: Stored | None = None
        etag = ""
        sealed = None
        if (length and len(source.pieces) == 1 and source.pieces[0].location == location.name
                and (reused or mode is None) and not encrypted):
            try:
                stored = await location.copy_part(source.pieces[0], first, length,
                                                  upload.backend_key, upload.backend_upload_id,
                                                  number)
            except NotFound:
                raise missing_data(source.key, "The copy source's") from None
            if stored is not None:
                if whole and _PLAIN_MD5.match(source.etag):
                    etag = source.etag
                else:
                    # The bytes never passed through the gateway, so their MD5 is unknown;
                    # the part ETag (which clients only echo back at completion) is a stable
                    # stand-in.
                    etag = hashlib.md5(f"{source.etag}:{first}-{length}".encode()).hexdigest()
        if stored is None:
            streamed = copy_source(self.locations, self.encryption, source, first, length,
                                   (algorithm,), sse_objects.customer_of(encryption, "source"))
            body, body_size = aiter(streamed), length
            if sse_objects.is_encrypted(upload):
                sealed = await sse_objects.seal_part(self.encryption, upload, encryption, body,
                                                     length)
                body, body_size = sealed.stream, sealed.size
            stored = await location.upload_part(upload.backend_key, upload.backend_upload_id,
                                                number, body, body_size)
            etag = streamed.etag
            part_sums = {algorithm: streamed.checksum(algorithm)}
        part = PartRecord(upload_id=upload.upload_id, number=number, size=length, etag=etag,
                          last_modified=time.time(), stored=stored, checksums=part_sums)
        if sealed is not None:
            sse_objects.keep_part_segment(part, sealed)
        await self.store_part(upload, part)
        return part

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

    async def all_parts(self, upload_id: str, page: int = 1000) -> list[PartRecord]:
        parts: list[PartRecord] = []
        after = 0
        while True:
            found = await self.metadata.list_parts(upload_id, after, page)
            parts += found
            if len(found) < page:
                return parts
            after = found[-1].number

    async def complete_upload(self, upload: UploadRecord, listed: list[ListedPart],
                              opts: CompleteOptions) -> WriteResult:
        """CompleteMultipartUpload: claim the upload (a concurrent abort or part upload then
        waits for this one), choose the listed parts as AWS checks them, make the object's
        checksum from theirs (BadDigest unless it is opts.stated_checksum), and commit the
        object while opts.mode holds."""
        numbers = [entry.number for entry in listed]
        if numbers != sorted(numbers) or len(set(numbers)) != len(numbers):
            raise S3Error("InvalidPartOrder", UploadId=upload.upload_id)
        bucket = await self.metadata.get_bucket(upload.bucket)
        assert bucket is not None  # a bucket with an open upload cannot be deleted
        expect = opts.expectation()
        await self.check_expectation(bucket, upload.key, expect)
        if await self.metadata.claim_upload(upload.upload_id) is None:
            raise S3Error("NoSuchUpload", UploadId=upload.upload_id)
        try:
            chosen = mp.choose_parts(upload, listed, await self.all_parts(upload.upload_id))
            checksum = mp.completed_checksum(mp.upload_mode(upload), chosen)
            # An encrypted upload: the parts' streams, in order (gateway/crypto/).
            sealed = (sse_objects.completed_attrs(upload, chosen)
                      if sse_objects.is_encrypted(upload) else None)
            stated = opts.stated_checksum
            if stated is not None and (checksum is None or stated != (
                    checksum["algorithm"], checksum["value"])):
                raise checksums.bad_digest(stated[0])
            bucket = await self.metadata.get_bucket(upload.bucket)
            assert bucket is not None
        except BaseException:
            await self.metadata.release_upload(upload.upload_id)
            raise
        digest = hashlib.md5(b"".join(bytes.fromhex(p.etag) for p in chosen)).hexdigest()
        attrs = {name: value for name, value in upload.attrs.items() if name != "checksum"}
        attrs.update(mp.part_attrs(chosen, checksum))
        if checksum is not None:
            attrs["checksum"] = checksum
        if sealed is not None:
            attrs[sse_objects.ATTR] = sealed
        if object_lock.ATTR in attrs:  # a default retention is dated from the completion
            attrs[object_lock.ATTR] = object_lock.completed_lock(bucket, attrs[object_lock.ATTR])
        record = ObjectRecord(
            bucket=upload.bucket, key=upload.key, size=sum(p.size for p in chosen),
            etag=f"{digest}-{len(chosen)}", last_modified=time.time(), location=upload.location,
            pieces=[], owner=upload.owner, headers=upload.headers, user_meta=upload.user_meta,
            tags=upload.tags, attrs=attrs)
        await self.complete(upload, chosen, record, bucket, expect=expect)
        return WriteResult(record, None, self._event(
            CREATED_COMPLETE, record, opts.requester or upload.owner))

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


class _AttrsChanged(Exception):
    """A compare-and-set's guard found the version's attrs changed since they were read."""


def _same_attrs(read: ObjectRecord) -> Callable[[ObjectRecord], None]:
    def guard(stored: ObjectRecord) -> None:
        if stored.attrs != read.attrs:
            raise _AttrsChanged()
    return guard


def reusable_checksum(src: ObjectRecord, algorithm: str | None, whole: bool = True
                      ) -> dict[str, str] | None:
    """The source's checksum when it holds for the copied bytes as they are: a whole-object
    one, of `algorithm`, and all of the source copied."""
    found = src.attrs.get("checksum")
    if (found and whole and found["type"] == checksums.FULL_OBJECT
            and found["algorithm"] == algorithm):
        return dict(found)
    return None


__all__ = ["Engine", "ObjectRead", "PieceWrite", "VERSION_ID", "check_conditions",
           "check_expectation", "new_version_id", "object_meta", "reusable_checksum",
           "shielded", "single_checksum", "storage_class_of", "versioning_state"]
