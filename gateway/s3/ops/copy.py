"""Server-side copies: CopyObject (PUT with x-amz-copy-source) and UploadPartCopy.

Parse the copy source and authorize reading exactly that version, then the object engine
copies (server-side within one location when it can, else streaming the bytes)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import parse_qsl, unquote

from aiohttp import web

from gateway import checksums
from gateway.crypto import objects as sse_objects
from gateway.errors import S3Error
from gateway.locations import LOCATION_HEADER
from gateway.metadata.base import BucketRecord, ObjectRecord
from gateway.objects.options import COPY, REPLACE, CopyOptions
from gateway.s3 import access
from gateway.s3.ops import object_lock
from gateway.s3.ops.common import (
    content_headers,
    get_bucket,
    parse_tagging_header,
    read_version,
    requested_storage_class,
    user_metadata,
    validate_key,
    version_headers,
)
from gateway.s3.ops.multipart import get_upload, part_checksum_nodes, part_number
from gateway.s3.ops.obj import request_conditions
from gateway.s3.request import S3Request
from gateway.s3.xml import iso_time, render

COPY_SOURCE = "x-amz-copy-source"
METADATA_DIRECTIVE = "x-amz-metadata-directive"
TAGGING_DIRECTIVE = "x-amz-tagging-directive"
COPY_RANGE = "x-amz-copy-source-range"
_COPY_RANGE_RE = re.compile(r"^bytes=(\d+)-(\d+)$")


@dataclass
class CopySource:
    bucket: BucketRecord
    obj: ObjectRecord
    version_id: str | None


def parse_copy_source(value: str) -> tuple[str, str, str | None]:
    """`[/]bucket/key[?versionId=v]`, URL-encoded -> (bucket, key, version id)."""
    raw_path, _, raw_query = value.partition("?")
    path = unquote(raw_path).removeprefix("/")
    bucket, _, key = path.partition("/")
    if not bucket or not key:
        raise S3Error("InvalidArgument", "Copy Source must mention the source bucket and key: "
                      "sourcebucket/sourcekey", ArgumentName=COPY_SOURCE, ArgumentValue=value)
    version_id = dict(parse_qsl(raw_query, keep_blank_values=True)).get("versionId")
    return bucket, key, version_id


async def load_source(req: S3Request) -> CopySource:
    """The source object: exactly the version the copy source names, once the requester may
    read that version (s3:GetObject, s3:GetObjectVersion with a version id) by its own owner
    and ACL, as a GET of it would be decided (ops/common.py read_version)."""
    bucket_name, key, version_id = parse_copy_source(req.headers[COPY_SOURCE])
    bucket = await req.gateway.metadata.get_bucket(bucket_name)
    if bucket is None:
        raise S3Error("NoSuchBucket", BucketName=bucket_name)
    try:
        obj = await read_version(req, bucket, key, version_id, action="s3:GetObject")
    except S3Error as err:
        if err.code == "MethodNotAllowed":  # AWS's answer for a delete marker as source
            raise S3Error("InvalidRequest", "The source of a copy request may not specifically "
                          "refer to a delete marker by version id.") from None
        raise
    return CopySource(bucket=bucket, obj=obj, version_id=version_id)


def directive(req: S3Request, header: str, kind: str) -> str:
    value = req.headers.get(header, COPY)
    if value not in (COPY, REPLACE):
        raise S3Error("InvalidArgument", f"Unknown {kind} directive.", ArgumentName=header,
                      ArgumentValue=value)
    return value


def xml_response(root: str, etag: str, modified: float, headers: dict[str, str],
                 extra: list[tuple[str, str]] | None = None) -> web.Response:
    body = render(root, [("LastModified", iso_time(modified)), ("ETag", f'"{etag}"'),
                         *(extra or [])])
    return web.Response(body=body, content_type="application/xml", headers=headers)


def copy_algorithm(req: S3Request) -> str | None:
    """CopyObject's x-amz-checksum-algorithm: the checksum to compute for the copy."""
    value = req.headers.get("x-amz-checksum-algorithm")
    return checksums.parse_algorithm(value) if value is not None else None


def encryption_headers(encryption: str | None) -> dict[str, str]:
    return {"x-amz-server-side-encryption": encryption} if encryption else {}


async def copy_object(req: S3Request) -> web.Response:
    bucket = await get_bucket(req)  # the destination must be writable by the requester
    assert req.key is not None
    validate_key(req.key)
    meta_directive = directive(req, METADATA_DIRECTIVE, "metadata")
    tag_directive = directive(req, TAGGING_DIRECTIVE, "tagging")
    source = await load_source(req)
    owner = access.requester_id(req)
    replace = meta_directive == REPLACE
    opts = CopyOptions(
        owner=owner, metadata_directive=meta_directive, tagging_directive=tag_directive,
        headers=content_headers(req) if replace else {},
        user_meta=user_metadata(req) if replace else {},
        tags=parse_tagging_header(req.headers.get("x-amz-tagging"))
        if tag_directive == REPLACE else {},
        # The copy is a new object: the requester's, with the ACL its headers ask for (not
        # the source's), as AWS does.
        acl=access.acl_from_headers(req, owner, bucket.owner),
        storage_class=requested_storage_class(req.headers),
        location=req.headers.get(LOCATION_HEADER) if replace else None, host=req.host,
        checksum_algorithm=copy_algorithm(req),
        source_conditions=request_conditions(req.headers, "x-amz-copy-source-"),
        encryption=sse_objects.put_encryption(  # the destination's, the source's SSE-C key
            req.headers, secure=req.http.secure,
            allow_http=req.gateway.settings.encryption.allow_sse_c_over_http),
        lock=object_lock.lock_request(req.headers))  # the copy's own, never the source's
    result = await req.gateway.engine.copy(bucket, req.key, source.obj, source.bucket, opts)
    record = result.record
    req.extra_log["location"] = record.location
    source_headers = version_headers(source.bucket, source.obj)
    copy_headers = ({"x-amz-copy-source-version-id": source_headers["x-amz-version-id"]}
                    if "x-amz-version-id" in source_headers else {})
    headers = {**encryption_headers(result.encryption), **copy_headers,
               **sse_objects.response_headers(record, req.headers)}  # gateway encryption
    if not result.in_place:  # in place, the version stays the same
        headers.update(version_headers(bucket, record))
    return xml_response("CopyObjectResult", record.etag, record.last_modified, headers,
                        checksums.xml_nodes(result.checksum))


def parse_copy_range(value: str | None, size: int) -> tuple[int, int]:
    """(first, length) of the x-amz-copy-source-range, or the whole object. Unlike GET's Range
    (ignored when malformed), a bad copy range is an error, and AWS answers InvalidArgument."""
    if value is None:
        return 0, size
    match = _COPY_RANGE_RE.match(value.strip())
    if not match:
        raise S3Error("InvalidArgument", "The x-amz-copy-source-range value must be of the form "
                      "bytes=first-last where first and last are the zero-based offsets of the "
                      "first and last bytes to copy", ArgumentName=COPY_RANGE, ArgumentValue=value)
    first, last = int(match.group(1)), int(match.group(2))
    if first > last or last >= size:
        raise S3Error("InvalidArgument",
                      f"Range specified is not valid for source object of size: {size}",
                      ArgumentName=COPY_RANGE, ArgumentValue=value)
    return first, last - first + 1


async def upload_part_copy(req: S3Request) -> web.Response:
    number = part_number(req)
    upload = await get_upload(req, for_parts=True)  # the destination bucket's access check too
    source = await load_source(req)
    conditions = request_conditions(req.headers, "x-amz-copy-source-")
    first, length = parse_copy_range(req.headers.get(COPY_RANGE), source.obj.size)
    req.extra_log["location"] = upload.location
    part = await req.gateway.engine.copy_part(
        upload, number, source.obj, first, length, conditions=conditions,
        encryption=sse_objects.put_encryption(  # SSE-C keys: the part's, the source's
            req.headers, secure=req.http.secure,
            allow_http=req.gateway.settings.encryption.allow_sse_c_over_http))
    return xml_response("CopyPartResult", part.etag, part.last_modified,
                        {**encryption_headers(part.stored.encryption),
                         **sse_objects.response_headers(upload, req.headers)},
                        part_checksum_nodes(upload, part))
