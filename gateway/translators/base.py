"""The one interface every backend implements.

A translator moves bytes to and from one location. It knows nothing of HTTP requests, XML,
accounts or gateway metadata: it receives a backend key (already mapped by bucketMatch) and
returns `Stored` records that metadata keeps to find the bytes again. Errors it cannot map to
`NotFound` or `Conflict` propagate as they are; the location wrapper turns them into 503s.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

ByteStream = AsyncIterator[bytes]

# Streams are read and written in chunks of this size: big enough for cheap hashing and syscalls.
CHUNK_SIZE = 1024 * 1024


class TranslatorError(Exception):
    """Base of the errors a translator raises on purpose."""


class NotFound(TranslatorError):
    """The backend object (or upload) does not exist."""


class Conflict(TranslatorError):
    """The backend refuses because of state, e.g. an upload in progress on the key."""


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
        return {k: v for k, v in asdict(self).items() if v is not None}

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
    # True when multipart parts are staged on the final key itself (Azure blocks), so a plain
    # PUT/DELETE of that key while an upload is open would destroy the upload.
    stages_parts_on_target: bool = False
    # True when every put() stores its bytes under a key of its own (file, mem), so older
    # versions of an S3 key stay readable: what a versioned bucket needs.
    versions_kept: bool = False

    def __init__(self, name: str, details: Mapping[str, Any], env: Mapping[str, str]) -> None:
        self.name = name

    async def open(self) -> None:
        """Create clients; called once inside the running event loop."""

    async def close(self) -> None:
        """Release clients and connection pools."""

    @abstractmethod
    async def put(self, key: str, body: ByteStream, size: int, meta: ObjectMeta) -> Stored:
        """Stream `size` bytes from `body` to `key`; atomic replace. A translator may store under
        a key of its own choosing (file, mem) and report it in the returned Stored.
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
        """Remove the piece. Already gone is success."""

    async def copy(self, src: Stored, key: str, meta: ObjectMeta) -> Stored | None:
        """Server-side copy of `src` (same location) to `key`; None means: caller streams."""
        return None

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
        """Store one part. Uploading the same number again replaces it."""

    @abstractmethod
    async def complete_upload(
        self, key: str, upload_id: str, parts: list[Part], meta: ObjectMeta
    ) -> list[Stored]:
        """Assemble the listed parts (ascending, validated by the caller) into the object.
        Return its pieces in order: one for clouds, the parts themselves for file/mem
        (no bytes copied). Parts stored but not listed are the translator's to remove."""

    @abstractmethod
    async def abort_upload(self, key: str, upload_id: str, parts: list[Part]) -> None:
        """Drop the upload and everything staged for it. Idempotent."""

    @abstractmethod
    async def check(self) -> Health:
        """One cheap authenticated probe: credentials valid, container/bucket reachable."""


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
