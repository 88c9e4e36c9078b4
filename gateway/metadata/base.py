"""The metadata interface: buckets, objects, multipart uploads and parts, and the two ledgers
that keep data safe: intents (bytes being written, not yet referenced) and garbage (bytes no
record references any more, waiting for the collector).

Implementations: SQLite (embedded default) and, for several gateway processes, PostgreSQL.
Records are plain dataclasses; pieces (`Stored`) say where an object's bytes live.

The invariants every implementation keeps (see README, "How it is built"):
- A piece is referenced by at most one record (an object version, or a part). Every call that
  drops a reference moves the piece into the garbage ledger *in the same transaction*, so bytes
  are deleted only by the collector, and only once nothing points at them.
- An intent is written before bytes are sent to a location and removed in the transaction that
  makes a record reference them (put_object/abandon_intent). Intents left by a crash are turned
  into garbage (reclaim_intents), so a crash between the data write and the commit leaks nothing.
- A failed call changes nothing: every method is one transaction.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Collection
from dataclasses import dataclass, field
from typing import Any

from gateway.translators.base import Stored


@dataclass
class BucketRecord:
    name: str
    owner: str  # canonical id
    location: str
    created: float
    attrs: dict[str, Any] = field(default_factory=dict)  # acl, tags, versioning, policy, cors...


@dataclass
class ObjectRecord:
    bucket: str
    key: str
    size: int
    etag: str  # the S3 ETag, without quotes
    last_modified: float
    location: str
    pieces: list[Stored]
    owner: str
    headers: dict[str, str] = field(default_factory=dict)  # content-type, cache-control, ...
    user_meta: dict[str, str] = field(default_factory=dict)  # x-amz-meta-* names without prefix
    tags: dict[str, str] = field(default_factory=dict)
    attrs: dict[str, Any] = field(default_factory=dict)  # acl, sse, parts count...
    version_id: str | None = None  # None is S3's "null" version (unversioned writes)
    delete_marker: bool = False
    latest: bool = True  # as read back: whether this is the key's current version


@dataclass
class UploadRecord:
    upload_id: str
    bucket: str
    key: str
    initiated: float
    owner: str
    location: str
    backend_key: str
    backend_upload_id: str
    headers: dict[str, str] = field(default_factory=dict)
    user_meta: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    attrs: dict[str, Any] = field(default_factory=dict)
    # "open": parts may be added; "completing": a CompleteMultipartUpload holds it (claim_upload),
    # parts and aborts are refused until it finishes or releases it.
    state: str = "open"


@dataclass
class IntentRecord:
    """Bytes being written to `location` at `key`, not referenced by any record yet."""

    id: int
    location: str
    key: str
    created: float


@dataclass
class GarbageRecord:
    """Something the collector must remove from a location. Kinds:
    - "piece": `data` is a Stored.to_dict(); delete those bytes (Location.delete).
    - "part": `data` = {"backend_key", "backend_upload_id", "number", "stored"}: a part replaced
      by a newer upload of its number or left out at completion (Location.discard_part).
    - "upload": `data` = {"backend_key", "backend_upload_id", "parts": [{"number", "stored"}]}:
      an aborted upload; drop everything staged for it (Location.abort_upload)."""

    id: int
    location: str
    kind: str
    data: dict[str, Any]
    added: float
    attempts: int = 0


class BucketGone(Exception):
    """The bucket a write was meant for was deleted (or deleted and created again) meanwhile."""


class ConditionFailed(Exception):
    """A conditional write's expectation did not hold at commit: `reason` is "exists" (If-None-Match:
    * and the key has an object), "missing" (If-Match and it has none) or "mismatch"."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class LocationTaken(Exception):
    """create_bucket(exclusive_location=True): another bucket already uses that location."""

    def __init__(self, bucket: str) -> None:
        super().__init__(bucket)
        self.bucket = bucket


@dataclass
class PartRecord:
    upload_id: str
    number: int
    size: int
    etag: str  # MD5 hex of the part, S3's part ETag
    last_modified: float
    stored: Stored
    # The part's flexible checksums, algorithm ("CRC32", ...) -> base64 value, as verified or
    # computed while it streamed (gateway/s3/checksums.py).
    checksums: dict[str, str] = field(default_factory=dict)


@dataclass
class Listing:
    """One page of a listing: entries in key order, common prefixes, and where to go on."""

    objects: list[ObjectRecord]
    prefixes: list[str]
    truncated: bool
    next_marker: str | None  # last key or prefix returned, when truncated


@dataclass
class VersionListing:
    """One page of ListObjectVersions: versions and delete markers, by key, newest first."""

    versions: list[ObjectRecord]
    prefixes: list[str]
    truncated: bool
    next_key: str | None
    next_version_id: str | None


@dataclass
class UploadListing:
    uploads: list[UploadRecord]
    prefixes: list[str]
    truncated: bool


class MetadataStore(ABC):
    """All calls are coroutines and never block the event loop."""

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    @abstractmethod
    async def ping(self) -> None:
        """Raise when the store is unreachable (the shallow health check)."""

    # buckets
    @abstractmethod
    async def create_bucket(self, bucket: BucketRecord, *,
                            exclusive_location: bool = False) -> BucketRecord | None:
        """Insert; when the name is taken, insert nothing and return the existing bucket.
        With `exclusive_location` (a bucketMatch location belongs to one bucket), raise
        LocationTaken naming the other bucket when one already has `bucket.location`; the
        check and the insert are atomic against a concurrent create."""

    @abstractmethod
    async def get_bucket(self, name: str) -> BucketRecord | None: ...

    @abstractmethod
    async def list_buckets(self, owner: str) -> list[BucketRecord]: ...

    @abstractmethod
    async def update_bucket_attrs(self, name: str, changes: dict[str, Any]) -> BucketRecord | None:
        """Merge `changes` into the bucket's attrs atomically: each key given is set (a value of
        None removes the key), every other key is left as it is now, so two requests changing
        different settings never undo each other. Return the updated bucket, None when gone."""

    @abstractmethod
    async def delete_bucket(self, name: str) -> bool:
        """Delete when it holds no object and no upload; False when not empty."""

    # objects: every key has one or more versions; the newest is its current one. Unversioned
    # writes (version_id None, S3's "null" version) replace the key's null version.
    @abstractmethod
    async def put_object(self, obj: ObjectRecord, *, intent: int | None = None,
                         bucket_created: float | None = None,
                         expect: str | None = None) -> ObjectRecord | None:
        """Make `obj` (an object or a delete marker) the current version of its key, atomically.
        With version_id None it replaces the key's null version, which is returned; the
        replaced version's pieces go to the garbage ledger in the same transaction.
        `intent`: the intent of obj's new bytes, removed in that transaction.
        `bucket_created`: the bucket must still exist with this `created` value (the same
        incarnation the request checked), else raise BucketGone and change nothing.
        `expect` (conditional writes, checked in the same transaction under the key's lock):
        "*" -> the key must have no current object; an ETag -> the current object must have
        it; else raise ConditionFailed and change nothing."""

    @abstractmethod
    async def get_object(self, bucket: str, key: str, version_id: str | None = None, *,
                         markers: bool = False) -> ObjectRecord | None:
        """The current version (or `version_id`; "null" names the null version). A delete
        marker is returned only with `markers=True`; otherwise it reads as absent."""

    @abstractmethod
    async def delete_object(self, bucket: str, key: str, version_id: str | None = None, *,
                            expect: str | None = None) -> ObjectRecord | None:
        """Remove one version (None or "null": the null version) and return it; when it was
        the current one, the next newest becomes current. Its pieces go to the garbage ledger
        in the same transaction. `expect`: as put_object's (DeleteObject If-Match)."""

    @abstractmethod
    async def list_versions(self, bucket: str, prefix: str, delimiter: str | None,
                            key_marker: str | None, version_id_marker: str | None,
                            limit: int) -> VersionListing: ...

    @abstractmethod
    async def update_object(self, bucket: str, key: str, expected_pieces: list[Stored],
                            changes: dict[str, Any]) -> ObjectRecord | None:
        """Change fields of an object in place (`changes`: ObjectRecord field -> new value, e.g.
        tags, attrs, pieces, headers), only while it is still the object stored at
        `expected_pieces` (compare-and-set against a concurrent overwrite). Pieces of the old
        record that no new piece may name go to garbage in the same transaction. Return the
        updated record, or None when it was replaced or deleted meanwhile."""

    @abstractmethod
    async def discard_piece(self, piece: Stored) -> None:
        """Record bytes that no record references and none ever will (e.g. the backend copy
        of a metadata change whose compare-and-set lost) as garbage."""

    @abstractmethod
    async def list_objects(self, bucket: str, prefix: str, delimiter: str | None,
                           after: str | None, limit: int) -> Listing:
        """Keys > `after` starting with `prefix`, in UTF-8 byte order; with a delimiter, keys
        sharing a prefix up to it are rolled into one common prefix (counted once)."""

    # multipart
    @abstractmethod
    async def create_upload(self, upload: UploadRecord) -> None: ...

    @abstractmethod
    async def get_upload(self, upload_id: str) -> UploadRecord | None: ...

    @abstractmethod
    async def list_uploads(self, bucket: str, prefix: str, delimiter: str | None,
                           key_marker: str | None, upload_id_marker: str | None,
                           limit: int) -> UploadListing: ...

    @abstractmethod
    async def count_uploads(self) -> int:
        """Multipart uploads open in every bucket (for the metrics)."""

    @abstractmethod
    async def put_part(self, part: PartRecord) -> PartRecord | None:
        """Insert or replace; return the part replaced, which goes to the garbage ledger as a
        "part" row in the same transaction. Fails with LookupError, changing nothing, when the
        upload is gone or not "open" (aborted, completed, or being completed meanwhile)."""

    @abstractmethod
    async def list_parts(self, upload_id: str, after: int, limit: int) -> list[PartRecord]: ...

    @abstractmethod
    async def claim_upload(self, upload_id: str) -> UploadRecord | None:
        """Move an "open" upload to "completing" and return it (state "completing"); None when
        it is gone or not open. While completing, put_part and abort (finish_upload with None)
        are refused, so the parts a completion read cannot change under it."""

    @abstractmethod
    async def release_upload(self, upload_id: str) -> None:
        """Give a claimed upload back ("completing" -> "open"), after a completion failed."""

    @abstractmethod
    async def release_claims(self) -> int:
        """Give every claimed upload back ("completing" -> "open"); return how many. Only for a
        store no other process writes (SQLite, at start-up): every claim found then is one of a
        crashed gateway, whose completion will never finish or release it."""

    @abstractmethod
    async def finish_upload(self, upload_id: str, obj: ObjectRecord | None,
                            listed: Collection[int] = (), *, expect: str | None = None
                            ) -> tuple[list[PartRecord], ObjectRecord | None] | None:
        """Atomically remove the upload and its parts and, when completing, write `obj` (as
        put_object does: the replaced version's pieces to garbage).
        Completing (`obj` given): the upload must be "completing"; every part whose number is
        not in `listed` (the parts the completion assembled) and whose `stored` is not one of
        obj.pieces goes to garbage as a "part" row. A listed part is never garbage: on clouds
        it lives on inside the backend object (a Swift SLO still reads its segments).
        Aborting (`obj` None): the upload must be "open"; one "upload" garbage row carries the
        backend upload and all its parts.
        Return (the parts removed, the object replaced), or None (changing nothing) when the
        upload is gone or in the wrong state."""

    # intents and garbage: the ledgers behind "nothing referenced is deleted, nothing leaks"
    @abstractmethod
    async def add_intent(self, location: str, key: str) -> int:
        """Record that bytes are about to be written at (location, key); return its id."""

    @abstractmethod
    async def abandon_intent(self, intent_id: int) -> None:
        """The write behind the intent failed or was refused: when the intent still exists
        (no commit took it), move it to garbage as a "piece" row with
        Stored(location, key, size=0) (no version: delete every version at that key).
        Idempotent: after a commit it does nothing."""

    @abstractmethod
    async def reclaim_intents(self, older_than: float) -> int:
        """Move every intent created before `older_than` (epoch seconds) to garbage, as
        abandon_intent does; return how many. Run at start-up and periodically: a crash
        between a data write and its commit leaves such intents behind."""

    @abstractmethod
    async def list_intents(self) -> list[IntentRecord]: ...

    @abstractmethod
    async def due_garbage(self, now: float, limit: int,
                          added_before: float | None = None) -> list[GarbageRecord]:
        """Garbage rows whose retry time has come (new rows are due at once), oldest first;
        with `added_before`, only rows added by then (the collector's read grace)."""

    @abstractmethod
    async def drop_garbage(self, garbage_id: int) -> None:
        """The collector removed the bytes: forget the row."""

    @abstractmethod
    async def retry_garbage(self, garbage_id: int, not_before: float) -> None:
        """Removing failed: count the attempt and try again no earlier than `not_before`."""

    @abstractmethod
    async def count_garbage(self) -> int: ...

    @abstractmethod
    def referenced_pieces(self) -> AsyncIterator[tuple[str, Stored]]:
        """For fsck: every piece a record references, as (what, piece) where what names the
        record ("object b/k v=..." or "part <upload> <n>"), streamed (not one big list)."""
