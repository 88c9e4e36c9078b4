"""Rules shared by the operations: bucket access, names, metadata headers, hashed bodies."""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import re
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Any
from urllib.parse import parse_qsl

from gateway.errors import S3Error
from gateway.metadata.base import BucketRecord, ObjectRecord
from gateway.objects.engine import (  # noqa: F401
    check_expectation,
    new_version_id,
    object_meta,
    versioning_state,
)
from gateway.s3 import access, checksums
from gateway.s3.request import BUCKET_RECORD, S3Request
from gateway.s3.xml import MAX_XML_BODY
from gateway.translators.base import CHUNK_SIZE

MAX_KEY_BYTES = 1024
MAX_USER_META_BYTES = 2048
MAX_PUT_SIZE = 5 * 1024**3
CONTENT_HEADERS = ("content-type", "cache-control", "content-disposition", "content-encoding",
                   "content-language", "expires")
META_PREFIX = "x-amz-meta-"
# Hash big chunks in a worker thread (hashlib drops the GIL), small ones inline.
THREAD_HASH_MIN = 256 * 1024

_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_IP_RE = re.compile(r"^\d+\.\d+\.\d+\.\d+$")


def validate_bucket_name(name: str) -> None:
    if (not _BUCKET_RE.match(name) or ".." in name or ".-" in name or "-." in name
            or _IP_RE.match(name) or name.startswith("xn--") or name.endswith("-s3alias")):
        raise S3Error("InvalidBucketName", BucketName=name)


def validate_key(key: str) -> None:
    if len(key.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
        raise S3Error("KeyTooLongError")


async def get_bucket(req: S3Request, action: str | None = None) -> BucketRecord:
    """The request's bucket, which must exist and allow the requester `action` (by default the
    request's own, e.g. s3:GetObject) on it or on the request's key: see gateway/s3/access.py."""
    assert req.bucket is not None
    record = await req.gateway.metadata.get_bucket(req.bucket)
    if record is None:
        raise S3Error("NoSuchBucket", BucketName=req.bucket)
    req.http[BUCKET_RECORD] = record  # for the CORS headers of the response (ops/cors.py)
    await access.authorize(req, record, action or access.request_action(req), req.key)
    return record


async def requested_object(req: S3Request, bucket: BucketRecord,
                           action: str | None = None) -> ObjectRecord:
    """The object the request names (its key, at ?versionId= when given), once the requester
    is authorized for `action` (default: the request's own) on exactly that version."""
    assert req.key is not None
    return await read_version(req, bucket, req.key, req.query.get("versionId"),
                              action=action or access.request_action(req))


def write_condition(req: S3Request) -> str | None:
    """A conditional write's expectation (PutObject, CompleteMultipartUpload): "*" for
    If-None-Match: * (the key must have no object), an ETag for If-Match, else None."""
    if_none_match = req.headers.get("If-None-Match")
    if if_none_match is not None:
        if if_none_match.strip() != "*":
            raise S3Error("NotImplemented", "If-None-Match on writes supports only '*'.",
                          Header="If-None-Match")
        return "*"
    if_match = req.headers.get("If-Match")
    if if_match is not None:
        return if_match.strip().removeprefix("W/").strip('"')
    return None


async def check_write_condition(req: S3Request, bucket: BucketRecord, key: str) -> str | None:
    """write_condition(), checked early against the current object so a doomed upload is
    refused before its body is read (the commit checks again, atomically)."""
    expect = write_condition(req)
    if expect is not None:
        check_expectation(await req.gateway.metadata.get_object(bucket.name, key), expect, key)
    return expect


def user_metadata(req: S3Request) -> dict[str, str]:
    return user_metadata_from(req.headers)


_META_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9a-z-]*")  # an HTTP header name (token)
_META_VALUE_BAD = re.compile(r"[\x00-\x08\x0a-\x1f\x7f\ud800-\udfff]")


def user_metadata_from(fields: Mapping[str, str]) -> dict[str, str]:
    """x-amz-meta-* from request headers or, for POST Object, from form fields. Each is sent
    back as a response header on GET/HEAD, so it must be one: a token name, and a value
    without control characters or undecodable bytes (InvalidArgument, else GET would fail)."""
    meta = {name[len(META_PREFIX):].lower(): value for name, value in fields.items()
            if name.lower().startswith(META_PREFIX)}
    for name, value in meta.items():
        if not _META_NAME.fullmatch(name) or _META_VALUE_BAD.search(value):
            shown = META_PREFIX + name
            raise S3Error("InvalidArgument", f"Invalid metadata {shown}: names must be HTTP "
                          "header names, values UTF-8 without control characters.",
                          ArgumentName=shown, ArgumentValue=value)
    size = sum(len(k.encode()) + len(v.encode()) for k, v in meta.items())
    if size > MAX_USER_META_BYTES:
        raise S3Error("MetadataTooLarge", Size=str(size), MaxSizeAllowed=str(MAX_USER_META_BYTES))
    return meta


def content_headers(req: S3Request) -> dict[str, str]:
    return content_headers_from(req.headers)


def content_headers_from(fields: Mapping[str, str]) -> dict[str, str]:
    """Content-Type & co. from request headers or, for POST Object, from (lower-cased) fields."""
    headers = {name: fields[name] for name in CONTENT_HEADERS if name in fields}
    encoding = headers.get("content-encoding")
    if encoding:  # aws-chunked is transport framing, not the object's encoding
        kept = [e for e in (p.strip() for p in encoding.split(",")) if e and e != "aws-chunked"]
        if kept:
            headers["content-encoding"] = ",".join(kept)
        else:
            del headers["content-encoding"]
    return headers


def parse_tagging_header(value: str | None) -> dict[str, str]:
    if not value:
        return {}
    tags = dict(parse_qsl(value, keep_blank_values=True))
    validate_tags(tags)
    return tags


def validate_tags(tags: dict[str, str]) -> None:
    if len(tags) > 10:
        raise S3Error("InvalidTag", "Object tags cannot be greater than 10")
    for key, value in tags.items():
        if not key or len(key) > 128:
            raise S3Error("InvalidTag", "The TagKey you have provided is invalid")
        if len(value) > 256:
            raise S3Error("InvalidTag", "The TagValue you have provided is too long")


def content_md5(req: S3Request) -> bytes | None:
    value = req.headers.get("Content-MD5")
    if value is None:
        return None
    try:
        digest = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise S3Error("InvalidDigest") from None
    if len(digest) != 16:
        raise S3Error("InvalidDigest")
    return digest


def body_size(req: S3Request) -> int:
    """The object's size: decoded length for aws-chunked bodies, else Content-Length."""
    if req.auth.decoded_length is not None:
        return req.auth.decoded_length
    length = req.http.content_length
    if length is None:
        if req.headers.get("Transfer-Encoding", "").lower() == "chunked":
            raise S3Error("MissingContentLength")
        return 0
    return length


def md5_inline(md5: Any, data: bytes) -> None:
    """Hash a small buffer on the loop without releasing the GIL: hashlib drops it for 2 KiB
    and more, and getting it back behind busy worker threads costs more than the hashing."""
    view = memoryview(data)
    for start in range(0, len(view), 2047):
        md5.update(view[start:start + 2047])


async def coalesce(stream: AsyncIterator[bytes], size: int) -> AsyncIterator[bytes]:
    """Regroup a stream into chunks of at least `size` bytes (the last may be smaller).
    Sockets deliver ~256 KiB at a time; hashing and writing 1 MiB per thread hop costs a
    quarter of the hops, for one memory copy."""
    held: list[bytes] = []
    total = 0
    async for chunk in stream:
        if not chunk:
            continue
        if not held and len(chunk) >= size:
            yield chunk
            continue
        held.append(chunk)
        total += len(chunk)
        if total >= size:
            yield b"".join(held)
            held.clear()
            total = 0
    if held:
        yield b"".join(held)


class HashedBody:
    """The request body, decoded and verified by auth, MD5-hashed as it streams through, and
    checksummed with each algorithm in `algorithms` (gateway/s3/checksums.py): the one the
    request states (`requested`, in a header or an aws-chunked trailer) and the one stored.
    At its end it checks the length, the Content-MD5 and the stated checksum (BadDigest),
    before the translator sees the end of the stream, so a bad upload never completes on the
    backend."""

    def __init__(self, req: S3Request, size: int, expected_md5: bytes | None,
                 requested: checksums.Requested | None = None,
                 algorithms: Iterable[str] = ()) -> None:
        self.req = req
        self.size = size
        self.expected_md5 = expected_md5
        self.requested = requested
        self.md5 = hashlib.md5()
        wanted = dict.fromkeys(algorithms)
        if requested is not None:
            wanted[requested.algorithm] = None
        self._hashers = {algorithm: checksums.hasher(algorithm) for algorithm in wanted}
        self.checksums: dict[str, bytes] = {}  # algorithm -> raw value, once the body ended

    def _update(self, chunk: bytes) -> None:
        self.md5.update(chunk)
        for h in self._hashers.values():
            h.update(chunk)

    def _update_inline(self, chunk: bytes) -> None:
        md5_inline(self.md5, chunk)
        view = memoryview(chunk)
        for h in self._hashers.values():
            for start in range(0, len(view), 2047):
                h.update(view[start:start + 2047])

    async def __aiter__(self) -> AsyncIterator[bytes]:
        # One chunk is held back until the stream has ended and every check (length, MD5, the
        # stated checksum, the payload signature verified by auth) has passed: the translator
        # never receives the complete body of a bad upload, so it can never commit one.
        raw = self.req.http.content.iter_chunked(CHUNK_SIZE)
        seen = 0
        pending: bytes | None = None
        hashing: asyncio.Future[None] | None = None
        loop = asyncio.get_running_loop()
        # A stated trailer checksum is computed here (with the others, in one pass) and
        # checked below; auth still checks that the trailer came, and its signature.
        decoded = self.req.auth.body(raw, verify_trailer=not (
            self.requested is not None and self.requested.trailer))
        async for chunk in coalesce(decoded, CHUNK_SIZE):
            seen += len(chunk)
            if seen > self.size:
                raise S3Error("InvalidRequest", "The body is longer than its declared length.")
            if hashing is not None:
                await hashing  # hash updates stay in order
                hashing = None
            if len(chunk) >= THREAD_HASH_MIN:
                # Hash this chunk in a thread while the consumer stores the previous one.
                hashing = loop.run_in_executor(None, self._update, chunk)
            else:
                self._update_inline(chunk)
            if pending is not None:
                yield pending
            pending = chunk
        if hashing is not None:
            await hashing
        if seen != self.size:
            raise S3Error("IncompleteBody")
        if self.expected_md5 is not None and self.md5.digest() != self.expected_md5:
            raise S3Error("BadDigest")
        self.checksums = {algorithm: bytes(h.digest()) for algorithm, h in self._hashers.items()}
        if self.requested is not None:
            checksums.verify(self.requested, self.checksums[self.requested.algorithm],
                             self.req.auth.trailers)
        if pending is not None:
            yield pending

    @property
    def etag(self) -> str:
        return self.md5.hexdigest()

    def checksum(self, algorithm: str) -> str:
        """The base64 value of `algorithm` over the whole body (after the iteration)."""
        return checksums.encode(self.checksums[algorithm])


def requested_checksum(req: S3Request) -> checksums.Requested | None:
    """The body checksum the request states (header or trailer), judged as AWS does."""
    return checksums.requested(req.headers, req.auth.trailer, trailer_mode=req.auth.trailer_mode)


def object_checksum(algorithm: str, value: str) -> dict[str, str]:
    """ObjectRecord.attrs["checksum"] of a single-part object."""
    return {"algorithm": algorithm, "value": value, "type": checksums.FULL_OBJECT}


def checksum_mode(req: S3Request) -> bool:
    """x-amz-checksum-mode: ENABLED (GET/HEAD return the object's checksum)."""
    return req.headers.get("x-amz-checksum-mode", "").strip().upper() == "ENABLED"


async def read_body(req: S3Request, *, require_digest: bool = False,
                    body_checksums: bool = True) -> bytes:
    """A small (XML) request body read whole, through auth's payload checks, verified against
    Content-MD5 (BadDigest) and any x-amz-checksum-* header (`body_checksums`; off where the
    header means something else, as CompleteMultipartUpload's object checksum). With
    `require_digest`, one of them must be present, as AWS requires for DeleteObjects."""
    expected_md5 = content_md5(req)
    stated = requested_checksum(req) if body_checksums else None
    if require_digest and expected_md5 is None and stated is None:
        raise S3Error("InvalidRequest", "Missing required header for this request: Content-MD5")
    data = bytearray()
    async for chunk in req.auth.body(req.http.content.iter_chunked(CHUNK_SIZE)):
        data += chunk
        if len(data) > MAX_XML_BODY:
            raise S3Error("MalformedXML", "The XML you provided was larger than allowed.")
    body = bytes(data)
    if expected_md5 is not None and hashlib.md5(body).digest() != expected_md5:
        raise S3Error("BadDigest")
    if stated is not None:
        checksums.verify(stated, checksums.compute(stated.algorithm, body), req.auth.trailers)
    return body


# --- versioning -------------------------------------------------------------------------------

def version_headers(bucket: BucketRecord, record: ObjectRecord) -> dict[str, str]:
    """x-amz-version-id (and x-amz-delete-marker) for responses in a versioning bucket."""
    headers: dict[str, str] = {}
    if record.version_id is not None or versioning_state(bucket) is not None:
        headers["x-amz-version-id"] = record.version_id or "null"
    if record.delete_marker:
        headers["x-amz-delete-marker"] = "true"
    return headers


async def read_version(req: S3Request, bucket: BucketRecord, key: str, version_id: str | None,
                       *, action: str) -> ObjectRecord:
    """The object version a request acts on: the current one, or `version_id` ("null"
    included), returned only once the requester may perform `action` on that very version
    (access.authorize_object: its own owner and ACL, never the current version's).

    What is absent (no such key or version, or a current delete marker) answers 404 only to
    those who may list (s3:ListBucket, s3:ListBucketVersions for a version), else 403, so
    absence leaks to nobody else. A delete marker named by id is authorized like any version
    and then answers MethodNotAllowed (AWS): it has no data, and the bucket's READ (a right to
    list) never stands in for an object's ACL."""
    if version_id == "":
        raise S3Error("InvalidArgument", "Version id cannot be the empty string",
                      ArgumentName="versionId", ArgumentValue="")
    obj = await req.gateway.metadata.get_object(bucket.name, key, version_id, markers=True)
    marker = ({"x-amz-delete-marker": "true", "x-amz-version-id": obj.version_id or "null"}
              if obj is not None and obj.delete_marker else {})
    if obj is None or (obj.delete_marker and version_id is None):
        await access.authorize(req, bucket, "s3:ListBucket" if version_id is None
                               else "s3:ListBucketVersions")
        if obj is None:
            if version_id is not None:
                raise S3Error("NoSuchVersion", Key=key, VersionId=version_id)
            raise S3Error("NoSuchKey", Key=key)
        raise S3Error("NoSuchKey", headers=marker, Key=key)
    access.authorize_object(req, bucket, obj, action, version_id)
    if obj.delete_marker:
        raise S3Error("MethodNotAllowed", headers=marker, Method=req.http.method,
                      ResourceType="DeleteMarker")
    return obj
