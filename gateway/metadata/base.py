"""The metadata interface: buckets, objects, multipart uploads and parts.

Implementations: SQLite (embedded default) and, for several gateway processes, PostgreSQL.
Records are plain dataclasses; pieces (`Stored`) say where an object's bytes live.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
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


@dataclass
class PartRecord:
    upload_id: str
    number: int
    size: int
    etag: str  # MD5 hex of the part, S3's part ETag
    last_modified: float
    stored: Stored


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
    async def create_bucket(self, bucket: BucketRecord) -> BucketRecord | None:
        """Insert; when the name is taken, insert nothing and return the existing bucket."""

    @abstractmethod
    async def get_bucket(self, name: str) -> BucketRecord | None: ...

    @abstractmethod
    async def list_buckets(self, owner: str) -> list[BucketRecord]: ...

    @abstractmethod
    async def update_bucket_attrs(self, name: str, attrs: dict[str, Any]) -> None: ...

    @abstractmethod
    async def delete_bucket(self, name: str) -> bool:
        """Delete when it holds no object and no upload; False when not empty."""

    # objects: every key has one or more versions; the newest is its current one. Unversioned
    # writes (version_id None, S3's "null" version) replace the key's null version.
    @abstractmethod
    async def put_object(self, obj: ObjectRecord) -> ObjectRecord | None:
        """Make `obj` (an object or a delete marker) the current version of its key, atomically.
        With version_id None it replaces the key's null version, which is returned."""

    @abstractmethod
    async def get_object(self, bucket: str, key: str, version_id: str | None = None, *,
                         markers: bool = False) -> ObjectRecord | None:
        """The current version (or `version_id`; "null" names the null version). A delete
        marker is returned only with `markers=True`; otherwise it reads as absent."""

    @abstractmethod
    async def delete_object(self, bucket: str, key: str,
                            version_id: str | None = None) -> ObjectRecord | None:
        """Remove one version (None or "null": the null version) and return it; when it was
        the current one, the next newest becomes current."""

    @abstractmethod
    async def list_versions(self, bucket: str, prefix: str, delimiter: str | None,
                            key_marker: str | None, version_id_marker: str | None,
                            limit: int) -> VersionListing: ...

    @abstractmethod
    async def update_object(self, bucket: str, key: str, expected_pieces: list[Stored],
                            changes: dict[str, Any]) -> ObjectRecord | None:
        """Change fields of an object in place (`changes`: ObjectRecord field -> new value, e.g.
        tags, attrs, pieces, headers), only while it is still the object stored at
        `expected_pieces` (compare-and-set against a concurrent overwrite). Return the updated
        record, or None when it was replaced or deleted meanwhile."""

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
    async def has_upload_on(self, location: str, backend_key: str) -> bool:
        """Whether an upload is open whose parts are staged at this backend key."""

    @abstractmethod
    async def put_part(self, part: PartRecord) -> PartRecord | None:
        """Insert or replace; return the part replaced. Fails with LookupError when the upload
        is gone (aborted or completed meanwhile)."""

    @abstractmethod
    async def list_parts(self, upload_id: str, after: int, limit: int) -> list[PartRecord]: ...

    @abstractmethod
    async def finish_upload(self, upload_id: str, obj: ObjectRecord | None
                            ) -> tuple[list[PartRecord], ObjectRecord | None] | None:
        """Atomically remove the upload and its parts and, when completing, write `obj`.
        Return (the parts removed, the object replaced) or None when the upload was gone."""
