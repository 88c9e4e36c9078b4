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
from collections.abc import AsyncIterator, Callable, Collection
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


# Called with a record as stored, inside a metadata transaction under its key's lock; raising
# refuses the change (Object Lock: gateway/objects/lock.py). It must not block.
Guard = Callable[[ObjectRecord], None]


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
    # computed while it streamed (gateway/checksums.py).
    checksums: dict[str, str] = field(default_factory=dict)
    # What else a part keeps until completion (JSON), e.g. "sse": the stream header of an
    # encrypted part (gateway/crypto/objects.py).
    attrs: dict[str, Any] = field(default_factory=dict)


@dataclass
class JobRecord:
    """A unit of background work (gateway/jobs/). `job_key` names what it works on (e.g. one
    object version): a kind has at most one pending or running job per key. `state`:
    "pending" (due from not_before), "running" (claimed by `worker` until `lease_until`), or
    "failed" (gave up; kept for the operator)."""

    id: int
    kind: str
    job_key: str
    bucket: str
    data: dict[str, Any]
    state: str
    attempts: int
    created: float
    not_before: float = 0.0
    worker: str | None = None
    lease_until: float = 0.0
    error: str | None = None


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


# --- accounts and access keys at runtime (gateway/accounts.py) -----------------------------
@dataclass(frozen=True)
class AccountRow:
    """An account added at runtime (`python -m gateway accounts add`)."""

    name: str
    email: str
    arn: str
    canonical_id: str
    shortid: str
    created: float


@dataclass(frozen=True)
class AccessKeyRow:
    """An access key kept in the store. `secret` is the sealed secret (gateway/accounts.py:
    AES-GCM under the master key file), never the plain text; None on a row that only
    disables a key of authdata.json. `account` is an account's name (from the store or the
    file)."""

    access: str
    account: str
    secret: str | None
    enabled: bool
    created: float


class AccountConflict(Exception):
    """An account name, email, canonical id or access key that is already taken."""
# --- end of accounts ------------------------------------------------------------------------


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
                            expect: str | None = None,
                            guard: Guard | None = None) -> ObjectRecord | None:
        """Remove one version (None or "null": the null version) and return it; when it was
        the current one, the next newest becomes current. Its pieces go to the garbage ledger
        in the same transaction. `expect`: as put_object's (DeleteObject If-Match).
        `guard` (Object Lock): called with the version as stored, in the transaction under the
        key's lock; whatever it raises refuses the delete, changing nothing."""

    async def delete_objects(self, bucket: str, versions: list[tuple[str, str | None, Guard]]
                             ) -> list[ObjectRecord | None | Exception]:
        """Several deletes of one bucket (DeleteObjects): each (key, version id, guard) as
        delete_object would, except that version id None means the key's current version
        (marker included). One result per entry, in order: the version removed, None when
        there was none, or what its guard raised (that entry changed nothing). A store may
        run them in few transactions; this default runs them one by one."""
        results: list[ObjectRecord | None | Exception] = []
        for key, version_id, guard in versions:
            refused: list[Exception] = []

            def checked(record: ObjectRecord, guard: Guard = guard,
                        refused: list[Exception] = refused) -> None:
                try:
                    guard(record)
                except Exception as exc:
                    refused.append(exc)
                    raise

            if version_id is None:
                current = await self.get_object(bucket, key, markers=True)
                if current is None:
                    results.append(None)
                    continue
                version_id = current.version_id or "null"
            try:
                results.append(await self.delete_object(bucket, key, version_id, guard=checked))
            except Exception as exc:
                if not refused or exc is not refused[-1]:
                    raise
                results.append(exc)
        return results

    @abstractmethod
    async def list_versions(self, bucket: str, prefix: str, delimiter: str | None,
                            key_marker: str | None, version_id_marker: str | None,
                            limit: int) -> VersionListing: ...

    @abstractmethod
    async def update_object(self, bucket: str, key: str, expected_pieces: list[Stored],
                            changes: dict[str, Any], *,
                            guard: Guard | None = None) -> ObjectRecord | None:
        """Change fields of an object in place (`changes`: ObjectRecord field -> new value, e.g.
        tags, attrs, pieces, headers), only while it is still the object stored at
        `expected_pieces` (compare-and-set against a concurrent overwrite). Pieces of the old
        record that no new piece may name go to garbage in the same transaction. Return the
        updated record, or None when it was replaced or deleted meanwhile. `guard`: as
        delete_object's (e.g. the attrs must still be those the change was computed from)."""

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

    # --- accounts and access keys at runtime (gateway/accounts.py) -------------------------
    # Every change bumps one counter in the same transaction: a gateway polls the counter
    # (one tiny read per accounts.refreshSeconds, off the request path) and reloads the few
    # rows only when it moved.
    @abstractmethod
    async def accounts_version(self) -> int:
        """The account change counter (0 before any change)."""

    @abstractmethod
    async def load_accounts(self) -> tuple[int, list[AccountRow], list[AccessKeyRow]]:
        """The counter, every account and every access key, read in one snapshot."""

    @abstractmethod
    async def add_account(self, account: AccountRow, key: AccessKeyRow | None) -> None:
        """Add an account (and its first key); AccountConflict when its name, email,
        canonical id or the key is taken."""

    @abstractmethod
    async def remove_account(self, name: str) -> bool:
        """Remove an account and every key naming it; False when there is none."""

    @abstractmethod
    async def put_access_key(self, key: AccessKeyRow, *, replace: bool = False) -> None:
        """Add a key (AccountConflict when its id is taken), or with `replace` write it
        over the row of the same id (enable/disable)."""

    @abstractmethod
    async def remove_access_key(self, access: str) -> bool:
        """Forget a key's row; False when there is none."""
    # --- end of accounts --------------------------------------------------------------------

    # --- background jobs and relocation (lifecycle, tiering; gateway/jobs/) ---------------
    # A job queue in the store, so every gateway sharing it shares the work: a job is claimed
    # with a lease (a crashed worker's claim expires and the job is claimed again), finished
    # by the claimant only, and retried with back-off when it fails.
    @abstractmethod
    async def enqueue_job(self, kind: str, job_key: str, bucket: str, data: dict[str, Any],
                          not_before: float = 0.0) -> int | None:
        """Add a pending job; its id. None (adding nothing) when a job of this `kind` and
        `job_key` is already pending or running: one object never has two such jobs."""

    @abstractmethod
    async def claim_jobs(self, worker: str, limit: int, lease: float,
                         now: float | None = None) -> list[JobRecord]:
        """Claim up to `limit` due jobs for `worker` until now + `lease`: pending ones whose
        not_before has come, and running ones whose lease expired (their worker died). Each
        job is claimed by one worker only, however many claim at once; attempts counts claims."""

    @abstractmethod
    async def extend_job(self, job_id: int, worker: str, lease_until: float) -> bool:
        """Renew `worker`'s lease on a running job; False when the claim is no longer its."""

    @abstractmethod
    async def complete_job(self, job_id: int, worker: str) -> bool:
        """The job is done: remove it and count it. False (changing nothing) when `worker`
        no longer holds the claim."""

    @abstractmethod
    async def fail_job(self, job_id: int, worker: str, error: str,
                       retry_at: float | None) -> bool:
        """The attempt failed: pending again from `retry_at`, or, with None, "failed" for
        good (kept for the operator, counted). False when `worker` no longer holds it."""

    @abstractmethod
    async def job_counts(self) -> dict[str, dict[str, int]]:
        """Progress: kind -> {"pending", "running", "failed", "done"} counts (done: total
        completed since the store was created)."""

    @abstractmethod
    async def get_job(self, job_id: int) -> JobRecord | None: ...

    @abstractmethod
    async def release_jobs(self) -> int:
        """Give every running job back (pending, due now); return how many. Only for a store
        no other process writes (SQLite, at start-up): every claim then is a crashed
        gateway's, which would otherwise wait for its lease to run out."""

    @abstractmethod
    async def relocate_version(self, bucket: str, key: str, version_id: str | None,
                               expected_pieces: list[Stored], pieces: list[Stored],
                               location: str, attrs: dict[str, Any],
                               intents: list[int], *,
                               keep_old: bool = False) -> ObjectRecord | None:
        """Point one version (None: the null version) at new bytes, in one transaction, only
        while it still has `expected_pieces` (not overwritten, deleted or moved meanwhile):
        its pieces become `pieces` at `location`, `attrs` are merged into its attrs (None
        removes a key), the intents of the new bytes are removed, and the old pieces go to the
        garbage ledger (with `keep_old` they stay where they are, referenced by nothing: the
        operator's copy, `migrate --keep-source`). Return the updated version; None when it changed (nothing is done,
        the intents stay for their writer to abandon). LookupError (changing nothing) when an
        intent is gone (reclaimed: its bytes are garbage already)."""

    # --- moving a bucket (gateway/moving/) ------------------------------------------------
    @abstractmethod
    async def update_bucket(self, name: str, changes: dict[str, Any], *,
                            location: str | None = None,
                            guard: Callable[[BucketRecord], None] | None = None,
                            exclusive_location: bool = False) -> BucketRecord | None:
        """update_bucket_attrs, and more, in one transaction: `guard` is called first with the
        bucket as stored (under its row lock); whatever it raises refuses the change (a
        compare-and-set on attrs). `location`, when given, becomes the bucket's location
        (where placement puts new objects); with `exclusive_location` (a bucketMatch
        location), LocationTaken when another bucket already has it. None when gone."""
    # --- end of moving a bucket -----------------------------------------------------------
