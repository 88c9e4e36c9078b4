"""The plain values the object engine takes and returns (after Apache Arrow's object_store:
option objects instead of growing positional arguments, results as plain records).

Nothing here knows HTTP: handlers (gateway/s3/ops/) translate headers into these, background
jobs build them directly.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from gateway.errors import S3Error
from gateway.metadata.base import ObjectRecord
from gateway.objects.lock import LockRequest

MAX_PUT_SIZE = 5 * 1024**3
MAX_PART_NUMBER = 10_000
MIN_PART_SIZE = 5 * 1024**2
MAX_PART_SIZE = 5 * 1024**3

# --- storage classes ---------------------------------------------------------------------------
# Kept in ObjectRecord.attrs["storage_class"] (and UploadRecord.attrs), absent for STANDARD.
STANDARD = "STANDARD"
STORAGE_CLASSES = frozenset({
    "STANDARD", "REDUCED_REDUNDANCY", "STANDARD_IA", "ONEZONE_IA", "INTELLIGENT_TIERING",
    "GLACIER", "DEEP_ARCHIVE", "GLACIER_IR", "OUTPOSTS", "SNOW", "EXPRESS_ONEZONE"})


def parse_storage_class(value: str | None) -> str | None:
    """A requested storage class, validated (InvalidStorageClass): None when not asked for."""
    if value is None:
        return None
    if value not in STORAGE_CLASSES:
        raise S3Error("InvalidStorageClass", StorageClassRequested=value)
    return value


def storage_class_of(record: Any) -> str:
    """The storage class of an ObjectRecord or UploadRecord (absent attr: STANDARD)."""
    return record.attrs.get("storage_class") or STANDARD


# --- events ------------------------------------------------------------------------------------
# What happened, named as S3 event notifications name it, so one subscriber can later publish
# notifications and feed replication.
CREATED_PUT = "ObjectCreated:Put"
CREATED_POST = "ObjectCreated:Post"
CREATED_COPY = "ObjectCreated:Copy"
CREATED_COMPLETE = "ObjectCreated:CompleteMultipartUpload"
REMOVED_DELETE = "ObjectRemoved:Delete"
REMOVED_MARKER = "ObjectRemoved:DeleteMarkerCreated"
TAGGING_PUT = "ObjectTagging:Put"
TAGGING_DELETE = "ObjectTagging:Delete"
ACL_PUT = "ObjectAcl:Put"
STORAGE_CLASS_CHANGED = "ObjectTransition:StorageClass"


@dataclass(frozen=True)
class ObjectEvent:
    """One change to one object version."""

    kind: str  # one of the names above
    bucket: str
    key: str
    version_id: str | None  # None: the "null" version
    etag: str = ""
    size: int = 0
    requester: str | None = None


# --- writes ------------------------------------------------------------------------------------
OVERWRITE = "overwrite"  # replace whatever is there (S3's default)
CREATE = "create"  # only when the key has no current object (If-None-Match: *)
UPDATE = "update"  # only while the current object has ETag `if_match` (If-Match)


# Called with {algorithm: raw digest} once a body has ended, before its last chunk reaches the
# location; raises S3Error (BadDigest...) to refuse it. It checks a checksum the client stated,
# which may only arrive after the body (an aws-chunked trailer).
Verifier = Callable[[dict[str, bytes]], None]


@dataclass
class PutOptions:
    """How to store a new object version (PutObject, POST Object, CreateMultipartUpload, and
    the destination of a copy)."""

    owner: str  # canonical id of the requester, the new version's owner
    mode: str = OVERWRITE
    if_match: str | None = None  # the ETag expected with mode UPDATE
    headers: dict[str, str] = field(default_factory=dict)  # content-type & co.
    user_meta: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    acl: list[dict[str, str]] | None = None
    storage_class: str | None = None  # validated (parse_storage_class); None: STANDARD
    location: str | None = None  # a location the request names (placement header)
    host: str | None = None  # the endpoint the request came to (endpoint placement)
    content_md5: bytes | None = None  # the MD5 the body must have (BadDigest)
    checksum_algorithm: str | None = None  # kept with the object (default CRC64NVME)
    verify: Verifier | None = None
    # CreateMultipartUpload: {"algorithm", "type"} every part and the completion follow.
    upload_checksum: dict[str, str] | None = None
    encryption: dict[str, str] | None = None  # room for SSE settings (crypto/)
    requester: str | None = None  # who asked, for the event (default: owner)
    # Object Lock asked for (x-amz-object-lock-*); the bucket's default applies without
    # (gateway/objects/lock.py).
    lock: LockRequest | None = None

    def expectation(self) -> str | None:
        """What the metadata commit checks atomically: "*", an ETag, or nothing."""
        if self.mode == CREATE:
            return "*"
        if self.mode == UPDATE:
            if self.if_match is None:
                raise ValueError("mode update needs if_match")
            return self.if_match
        return None


COPY = "COPY"
REPLACE = "REPLACE"


@dataclass
class CopyOptions(PutOptions):
    """A copy's destination. With metadata_directive COPY the source's headers and user
    metadata are kept (the request's are ignored, as AWS does); with tagging_directive COPY,
    its tags."""

    metadata_directive: str = COPY
    tagging_directive: str = COPY
    source_conditions: Conditions | None = None


@dataclass
class PartOptions:
    content_md5: bytes | None = None
    checksum_algorithm: str | None = None  # the algorithm of a checksum the client states
    verify: Verifier | None = None
    # SSE-C: the customer key a part carries (gateway/crypto/objects.py read_encryption).
    encryption: dict[str, str] | None = None


@dataclass
class ListedPart:
    """A part as CompleteMultipartUpload lists it."""

    number: int
    etag: str
    checksums: dict[str, str] = field(default_factory=dict)  # algorithm -> base64


@dataclass
class CompleteOptions:
    mode: str = OVERWRITE
    if_match: str | None = None
    # The object checksum the client states (algorithm, base64 value), checked (BadDigest).
    stated_checksum: tuple[str, str] | None = None
    requester: str | None = None

    def expectation(self) -> str | None:
        return PutOptions(owner="", mode=self.mode, if_match=self.if_match).expectation()


# --- reads -------------------------------------------------------------------------------------
_RANGE_RE = re.compile(r"^bytes=(\d*)-(\d*)$")


@dataclass(frozen=True)
class GetRange:
    """Bytes first..last (inclusive; last None: to the end), or the last `suffix` bytes."""

    first: int | None = None
    last: int | None = None
    suffix: int | None = None

    @classmethod
    def parse(cls, value: str | None) -> GetRange | None:
        """An HTTP Range value. Malformed or multi-range: None (the whole object, as AWS)."""
        if not value:
            return None
        match = _RANGE_RE.match(value.strip())
        if not match or (not match.group(1) and not match.group(2)):
            return None
        first_s, last_s = match.groups()
        if not first_s:
            return cls(suffix=int(last_s))
        if last_s and int(last_s) < int(first_s):
            return None
        return cls(first=int(first_s), last=int(last_s) if last_s else None)

    def resolve(self, size: int) -> tuple[int, int]:
        """(first, last) inclusive within an object of `size` bytes, or InvalidRange."""
        if self.suffix is not None:
            if self.suffix == 0:
                raise invalid_range(size)
            first, last = max(size - self.suffix, 0), size - 1
        else:
            assert self.first is not None
            first = self.first
            last = min(self.last, size - 1) if self.last is not None else size - 1
        if first >= size:
            raise invalid_range(size)
        return first, last


def invalid_range(size: int) -> S3Error:
    return S3Error("InvalidRange", headers={"Content-Range": f"bytes */{size}"},
                   ActualObjectSize=str(size))


@dataclass
class Conditions:
    """GET's If-* (or a copy's x-amz-copy-source-if-*, `prefix` naming that family)."""

    if_match: str | None = None
    if_none_match: str | None = None
    if_modified_since: float | None = None
    if_unmodified_since: float | None = None
    # Header present but not a date: ignored, as AWS does (the same as absent).
    prefix: str = ""

    def failed(self, obj: ObjectRecord) -> tuple[str, str] | None:
        """The first condition that fails, as (header name, "412" or "304"), or None. AWS's
        precedence: a matching If-Match overrides a failing If-Unmodified-Since, and a
        non-matching If-None-Match overrides a failing If-Modified-Since."""
        modified = int(obj.last_modified)
        if self.if_match is not None:
            if not etag_matches(self.if_match, obj.etag):
                return f"{self.prefix}If-Match", "412"
        elif self.if_unmodified_since is not None and modified > self.if_unmodified_since:
            return f"{self.prefix}If-Unmodified-Since", "412"
        if self.if_none_match is not None:
            if etag_matches(self.if_none_match, obj.etag):
                return f"{self.prefix}If-None-Match", "304"
        elif self.if_modified_since is not None and modified <= self.if_modified_since:
            return f"{self.prefix}If-Modified-Since", "304"
        return None


def etag_matches(header: str, etag: str) -> bool:
    candidates = [c.strip().removeprefix("W/").strip('"') for c in header.split(",")]
    return "*" in candidates or etag in candidates


@dataclass
class GetOptions:
    version_id: str | None = None
    range: GetRange | None = None
    part_number: int | None = None
    conditions: Conditions | None = None
    # Read a body of at most this many bytes whole (ObjectRead.data) instead of streaming it.
    small: int = 0
    # SSE-C: the customer key a read carries (gateway/crypto/objects.py read_encryption).
    encryption: dict[str, str] | None = None


@dataclass
class WriteResult:
    """A new current object version: the record committed, the one it replaced (its pieces
    now garbage), and the event."""

    record: ObjectRecord
    replaced: ObjectRecord | None
    event: ObjectEvent
    in_place: bool = False  # a copy onto itself that changed only metadata (same version)

    @property
    def encryption(self) -> str | None:
        return next((p.encryption for p in self.record.pieces if p.encryption), None)

    @property
    def checksum(self) -> dict[str, str] | None:
        return self.record.attrs.get("checksum")


__all__ = [
    "ACL_PUT", "COPY", "CREATE", "CREATED_COMPLETE", "CREATED_COPY", "CREATED_POST",
    "CREATED_PUT", "CompleteOptions", "Conditions", "CopyOptions", "GetOptions", "GetRange",
    "ListedPart", "MAX_PART_NUMBER", "MAX_PART_SIZE", "MAX_PUT_SIZE", "MIN_PART_SIZE",
    "OVERWRITE", "ObjectEvent", "PartOptions", "PutOptions", "REMOVED_DELETE",
    "REMOVED_MARKER", "REPLACE", "STANDARD", "STORAGE_CLASSES", "STORAGE_CLASS_CHANGED",
    "TAGGING_DELETE", "TAGGING_PUT", "UPDATE", "Verifier", "WriteResult", "etag_matches",
    "invalid_range", "parse_storage_class", "storage_class_of",
]
