"""Rules shared by the operations: bucket access, names, metadata headers, hashed bodies."""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import AsyncIterator, Mapping
from urllib.parse import parse_qsl

from gateway import checksums
from gateway.errors import S3Error
from gateway.metadata.base import BucketRecord, ObjectRecord
from gateway.objects.engine import versioning_state
from gateway.objects.options import (
    CREATE,
    OVERWRITE,
    STANDARD,
    UPDATE,
    Verifier,
    parse_storage_class,
    storage_class_of,
)
from gateway.s3 import access
from gateway.s3.request import BUCKET_RECORD, S3Request
from gateway.s3.xml import MAX_XML_BODY
from gateway.translators.base import CHUNK_SIZE

MAX_KEY_BYTES = 1024
MAX_USER_META_BYTES = 2048
CONTENT_HEADERS = ("content-type", "cache-control", "content-disposition", "content-encoding",
                   "content-language", "expires")
META_PREFIX = "x-amz-meta-"
STORAGE_CLASS_HEADER = "x-amz-storage-class"

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


def write_condition(req: S3Request) -> tuple[str, str | None]:
    """A conditional write's mode (PutObject, CompleteMultipartUpload), as options.PutOptions
    takes it: (CREATE, None) for If-None-Match: * (the key must have no object), (UPDATE,
    etag) for If-Match, else (OVERWRITE, None)."""
    if_none_match = req.headers.get("If-None-Match")
    if if_none_match is not None:
        if if_none_match.strip() != "*":
            raise S3Error("NotImplemented", "If-None-Match on writes supports only '*'.",
                          Header="If-None-Match")
        return CREATE, None
    if_match = req.headers.get("If-Match")
    if if_match is not None:
        return UPDATE, if_match.strip().removeprefix("W/").strip('"')
    return OVERWRITE, None


def requested_storage_class(fields: Mapping[str, str]) -> str | None:
    """x-amz-storage-class (a header, or a POST form field), validated (InvalidStorageClass)."""
    return parse_storage_class(fields.get(STORAGE_CLASS_HEADER))


def storage_class_headers(record: ObjectRecord) -> dict[str, str]:
    """x-amz-storage-class on GET/HEAD: omitted for STANDARD, as AWS does."""
    found = storage_class_of(record)
    return {STORAGE_CLASS_HEADER: found} if found != STANDARD else {}


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
    if encoding and "aws-chunked" in encoding.lower():
        # aws-chunked is transport framing, not the object's encoding: that token goes, the
        # rest stays exactly as sent (as AWS stores it).
        kept = ",".join(p for p in encoding.split(",") if p.strip().lower() != "aws-chunked")
        if kept.strip(" \t,"):
            headers["content-encoding"] = kept.strip(" \t")
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


def request_body(req: S3Request, stated: checksums.Requested | None = None
                 ) -> AsyncIterator[bytes]:
    """The request body as plain bytes: decoded and verified by auth (aws-chunked framing,
    payload signatures). A checksum stated in a trailer is checked by the engine's verifying
    stream (stated_verifier), so auth only checks that the trailer came, and its signature."""
    raw = req.http.content.iter_chunked(CHUNK_SIZE)
    return req.auth.body(raw, verify_trailer=not (stated is not None and stated.trailer))


def stated_verifier(req: S3Request, stated: checksums.Requested | None) -> Verifier | None:
    """The check of the checksum the request states (a header, or an aws-chunked trailer that
    arrives after the body), against what the engine computed while the body streamed."""
    if stated is None:
        return None

    def verify(computed: dict[str, bytes]) -> None:
        checksums.verify(stated, computed[stated.algorithm], req.auth.trailers)

    return verify


def requested_checksum(req: S3Request) -> checksums.Requested | None:
    """The body checksum the request states (header or trailer), judged as AWS does."""
    return checksums.requested(req.headers, req.auth.trailer, trailer_mode=req.auth.trailer_mode)


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
