"""The one interface every backend implements.

A translator moves bytes to and from one location. It knows nothing of HTTP requests, XML,
accounts or gateway metadata: it receives a backend key and returns `Stored` records that
metadata keeps to find the bytes again.

Keys: the location wrapper gives every write (put, copy, create_upload) a key that no other
write uses (`<bucket>/<key>~<token>`, see gateway/locations.py), so a translator never
overwrites bytes that a record may still reference, and two writes never race on one key.
A translator stores at exactly that key and pins what it stored with the backend's own handle
where it has one (S3 VersionId, GCS generation, B2 file id, Azure etag).

Errors: a translator raises only the TranslatorError subclasses below, a small closed set
(after Arrow's object_store): NotFound, AlreadyExists, Precondition, NotSupported, Rejected
(the request itself was refused), PermissionDenied and Unauthenticated (the location's
configuration, not an outage), Throttled and Unavailable. Anything else that escapes a
translator is wrapped as Unavailable by the location wrappers (gateway/translators/wrappers.py),
which also map each error to its S3 error in one table and decide which count against health.
"""

from __future__ import annotations

import difflib
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

ByteStream = AsyncIterator[bytes]

# Streams are read and written in chunks of this size: big enough for cheap hashing and syscalls.
CHUNK_SIZE = 1024 * 1024


class TranslatorError(Exception):
    """Base of the errors a translator raises. The set is closed: callers (the wrappers, the
    engine) handle exactly these, so a new backend adds a mapping, never a new error."""


class NotFound(TranslatorError):
    """The backend object, version or upload does not exist (or no longer: its pin moved)."""


class AlreadyExists(TranslatorError):
    """The target exists and the call was not allowed to replace it (create-only writes)."""


class Precondition(TranslatorError):
    """The backend's state is not the one the call relied on: an etag/generation pin moved, a
    listed part was replaced meanwhile, staged blocks are gone, a backend 409/412."""


class NotSupported(TranslatorError):
    """This location type cannot do what was asked (a feature its backend lacks)."""


class Rejected(TranslatorError):
    """The backend refused this request for a reason of the request itself (its 4xx other than
    not-found, auth or throttling: a tag or metadata value it does not accept, a too-long
    name...). Goes back to the client as 400 InvalidArgument; never counts against health."""


class PermissionDenied(TranslatorError):
    """The backend knows the gateway's credentials but refuses this call (403): the location's
    configuration (a key without the right permissions), not an outage."""


class Unauthenticated(TranslatorError):
    """The backend does not accept the gateway's credentials (401, a bad or expired key): the
    location's configuration, not an outage."""


class Throttled(TranslatorError):
    """The backend asked us to slow down (429/503 SlowDown). The client gets 503 SlowDown."""

    def __init__(self, message: str = "", retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after  # seconds, when the backend said


class Unavailable(TranslatorError):
    """The backend failed (5xx, connection refused, timeout, anything unexpected). Counts
    against the location's health."""

    def __init__(self, message: str = "", kind: str = "unavailable") -> None:
        super().__init__(message)
        self.kind = kind  # what failed, for metrics: "timeout", an exception's type name...


class ConfigError(Exception):
    """A location's `details` are wrong. `key` names the offending details key."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key
        self.message = message


@dataclass(frozen=True)
class Stored:
    """Where one piece of an object's bytes lives (CloudServer's "location piece")."""

    location: str
    key: str
    size: int
    version_id: str | None = None
    etag: str | None = None  # the backend's own etag/hash for the piece, not the S3 ETag
    encryption: str | None = None  # server-side encryption the backend applied, e.g. "AES256"

    def to_dict(self) -> dict[str, Any]:
        """The fields that are set, in field order (what asdict() without the Nones gives:
        every field is a str or an int). Written out: asdict() deep-copies field by field, ~10x
        the cost, and every metadata write and delete turns pieces into dicts.
        tests/translators/test_stored.py holds it to the asdict() form."""
        data: dict[str, Any] = {"location": self.location, "key": self.key, "size": self.size}
        if self.version_id is not None:
            data["version_id"] = self.version_id
        if self.etag is not None:
            data["etag"] = self.etag
        if self.encryption is not None:
            data["encryption"] = self.encryption
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Stored:
        return cls(**data)


@dataclass
class ObjectMeta:
    """What travels to the backend with an object so it sits there in native form."""

    content_type: str | None = None
    cache_control: str | None = None
    content_disposition: str | None = None
    content_encoding: str | None = None
    content_language: str | None = None
    expires: str | None = None
    user: dict[str, str] = field(default_factory=dict)  # x-amz-meta-* without the prefix
    tags: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ForeignObject:
    """An object found in a location's container, whoever wrote it (import, read-through):
    what the gateway's metadata needs to serve it as an S3 object, and `stored`, pinning this
    exact version (version id, generation, file id or etag), so a read of `stored` never
    returns bytes written after it was described."""

    key: str  # the backend key
    size: int
    stored: Stored
    # The ETag an S3 client should see when the backend keeps one: the content's MD5 (hex),
    # or S3's own multipart form `<md5>-<n>`. None: the importer computes or marks it.
    s3_etag: str | None = None
    meta: ObjectMeta = field(default_factory=ObjectMeta)
    last_modified: float | None = None  # POSIX seconds
    # False when a listing was asked without details and this backend's listing lacks them:
    # `meta` is then empty (not "no metadata"); describe(key) has it.
    detailed: bool = True


@dataclass(frozen=True)
class Part:
    """One uploaded part of a multipart upload, as the translator stored it."""

    number: int
    stored: Stored


@dataclass(frozen=True)
class Health:
    ok: bool
    message: str


class Translator(ABC):
    """One backend location. Subclasses: mem, file, aws_s3, azure, gcp, b2, swift.

    Lifecycle: constructed from the location's `details` (validate there, raise ConfigError,
    no I/O), then `await open()` once inside the event loop, `await close()` at shutdown.
    Clients/sessions are created once in open() and reused for every call.
    """

    type_name: str = ""
    # True when list_pieces() yields only what the gateway wrote (a data folder of its own);
    # otherwise fsck judges only keys that carry the gateway's `~<token>` ending.
    lists_only_own_pieces: bool = False
    # True for a location made of other locations (mirror): its members' breakers judge each
    # backend, so its own calls never trip its breaker; fsck checks its members instead. A
    # composite translator has `bind(locations)`, called with every Location by name once all
    # are built (gateway/locations.py): it picks its members there (ConfigError, no I/O).
    composite: bool = False
    # False when the stored bytes live in this process's memory (mem): several worker
    # processes would each see different objects, so `workers` > 1 refuses the location.
    shared_across_processes: bool = True

    def __init__(self, name: str, details: Mapping[str, Any], env: Mapping[str, str]) -> None:
        self.name = name

    def member_pieces(self, stored: Stored) -> list[Stored]:
        """The pieces on other locations that `stored` stands for (a mirror piece's copy on
        each member), so fsck counts them as referenced there. None for a plain location."""
        return []

    async def open(self) -> None:
        """Create clients; called once inside the running event loop."""

    async def close(self) -> None:
        """Release clients and connection pools."""

    @abstractmethod
    async def put(self, key: str, body: ByteStream, size: int, meta: ObjectMeta) -> Stored:
        """Stream `size` bytes from `body` to exactly `key` (unique: see the module doc), durable
        on the backend when it returns. Stored.key == key.
        If `body` raises (client cut off, bad digest), re-raise and leave nothing behind."""

    @abstractmethod
    async def get(self, stored: Stored, offset: int = 0, length: int | None = None) -> ByteStream:
        """Stream back `length` bytes from `offset` (all remaining when None). Raise NotFound
        before yielding anything when the object is gone."""

    @abstractmethod
    async def head(self, stored: Stored) -> Stored:
        """Current size/etag/version of the backend object; NotFound when gone."""

    @abstractmethod
    async def delete(self, stored: Stored) -> None:
        """Remove the piece. Already gone is success. With a version id (or etag pin), only
        that version; with none, every version at `stored.key` (the key is the piece's alone:
        this is how the collector removes the bytes of a write that never committed)."""

    async def copy(self, src: Stored, key: str, meta: ObjectMeta) -> Stored | None:
        """Server-side copy of `src` (same location) to exactly `key`; None: caller streams."""
        return None

    def list_pieces(self, prefix: str = "") -> AsyncIterator[Stored]:
        """For fsck: every object (every version, with its handle) stored at this location
        under `prefix`, including what multipart uploads stage as objects of their own
        (segments, temporary parts). Keys as Stored.key reports them. Streamed."""
        raise NotImplementedError(f"{self.type_name} cannot list its pieces")

    def list_objects(self, prefix: str = "", start_after: str = "",
                     details: bool = True) -> AsyncIterator[ForeignObject]:
        """For import and read-through: the current object at each backend key under `prefix`
        (a delete marker is no object), in ascending key order, keys > `start_after` only,
        whoever wrote them (the gateway's own pieces too: callers skip `~<token>` keys).
        With `details`, each carries its content headers and user metadata (a backend whose
        listing lacks them heads each object); without, only what the listing has. Streamed."""
        raise NotImplementedError(f"{self.type_name} cannot list its objects")

    async def describe(self, key: str) -> ForeignObject | None:
        """The current object at backend `key` with every detail, None when there is none."""
        raise NotImplementedError(f"{self.type_name} cannot describe its objects")

    def piece_id(self, stored: Stored) -> str:
        """What identifies `stored` among list_pieces() results (fsck compares these)."""
        return stored.key

    def storage_id(self) -> str:
        """Locations with the same storage id store into the same place (two file locations on
        one data path): fsck lists it once and counts every such location's references."""
        return f"{self.type_name}:{self.name}"

    async def copy_part(
        self, src: Stored, offset: int, length: int, key: str, upload_id: str, number: int
    ) -> Stored | None:
        """Server-side UploadPartCopy of a byte range; None means: caller streams."""
        return None

    async def update_meta(self, stored: Stored, meta: ObjectMeta) -> Stored:
        """Replace user metadata/tags on the backend object (e.g. after PutObjectTagging).
        The gateway's metadata stays the truth; a backend that cannot do it returns `stored`."""
        return stored

    @abstractmethod
    async def create_upload(self, key: str, meta: ObjectMeta) -> str:
        """Start a multipart upload; return the backend's upload id (or one of our own)."""

    @abstractmethod
    async def upload_part(
        self, key: str, upload_id: str, number: int, body: ByteStream, size: int
    ) -> Stored:
        """Store one part. Uploading the same number again gives a new part (the old one is
        dropped later through discard_part, never overwritten where a completion may use it,
        unless the backend's completion pins parts by content, as S3 part ETags do)."""

    async def discard_part(self, key: str, upload_id: str, part: Part) -> None:
        """Remove a part that was replaced by a newer upload of its number, or left out of a
        completed upload. Default: nothing to do (the backend drops it itself)."""

    @abstractmethod
    async def complete_upload(
        self, key: str, upload_id: str, parts: list[Part], meta: ObjectMeta
    ) -> list[Stored]:
        """Assemble the listed parts (ascending, validated by the caller) into the object.
        Return its pieces in order: one for clouds, the parts themselves for file/mem
        (no bytes copied). Parts stored but not listed are the translator's to remove."""

    @abstractmethod
    async def abort_upload(self, key: str, upload_id: str, parts: list[Part]) -> None:
        """Drop the upload and everything staged for it, including parts that never made it
        into `parts` (a crash between a part's write and its record). Idempotent."""

    @abstractmethod
    async def check(self) -> Health:
        """One cheap authenticated probe: credentials valid, container/bucket reachable."""


# Details keys every location type accepts: read by the placement layer, not the translator.
COMMON_DETAILS = frozenset({"bucketMatch"})


def refuse_unknown(type_name: str, details: Mapping[str, Any], known: Iterable[str]) -> None:
    """ConfigError naming the first key of `details` that is neither in `known` nor common: a
    typo (`bucketmatch`) must refuse to start, not silently change where objects land."""
    allowed = {*known, *COMMON_DETAILS}
    for key in details:
        if key in allowed:
            continue
        by_case = [name for name in allowed if name.lower() == str(key).lower()]
        close = by_case or difflib.get_close_matches(str(key), allowed, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise ConfigError(str(key), f"is not a setting of {type_name} locations{hint}; known: "
                                    f"{', '.join(sorted(allowed))}")


def details_str(details: Mapping[str, Any], key: str, *, required: bool = True,
                default: str | None = None) -> str | None:
    """Read a string from `details`, raising ConfigError naming the key when it is wrong."""
    value = details.get(key, default)
    if value is None:
        if required:
            raise ConfigError(key, "is required")
        return None
    if not isinstance(value, str) or (required and not value):
        raise ConfigError(key, "must be a non-empty string")
    return value


def details_bool(details: Mapping[str, Any], key: str, default: bool) -> bool:
    value = details.get(key, default)
    if not isinstance(value, bool):
        raise ConfigError(key, "must be true or false")
    return value


def details_int(details: Mapping[str, Any], key: str, default: int, low: int, high: int) -> int:
    value = details.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(key, f"must be an integer from {low} to {high}")
    return value
