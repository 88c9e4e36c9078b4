"""Object operations: PutObject, GetObject, HeadObject, DeleteObject, GetObjectAttributes.

Parse and authorize, call the object engine (gateway/objects/), render its answer."""

from __future__ import annotations

from collections.abc import Mapping
from email.utils import parsedate_to_datetime

from aiohttp import web

from gateway import checksums
from gateway.crypto import objects as sse_objects
from gateway.errors import S3Error
from gateway.locations import LOCATION_HEADER
from gateway.metadata.base import BucketRecord, ObjectRecord
from gateway.objects import lock
from gateway.objects.engine import ObjectRead
from gateway.objects.multipart import object_parts
from gateway.objects.options import (
    Conditions,
    GetOptions,
    GetRange,
    PutOptions,
    storage_class_of,
)
from gateway.s3 import access
from gateway.s3.ops import object_lock
from gateway.s3.ops.common import (
    body_size,
    checksum_mode,
    content_headers,
    content_md5,
    get_bucket,
    parse_tagging_header,
    request_body,
    requested_checksum,
    requested_object,
    requested_storage_class,
    stated_verifier,
    storage_class_headers,
    user_metadata,
    validate_key,
    version_headers,
    write_condition,
)
from gateway.s3.request import S3Request
from gateway.s3.xml import Node, http_time, render

RESPONSE_OVERRIDES = {
    "response-content-type": "Content-Type",
    "response-content-language": "Content-Language",
    "response-expires": "Expires",
    "response-cache-control": "Cache-Control",
    "response-content-disposition": "Content-Disposition",
    "response-content-encoding": "Content-Encoding",
}
# Objects up to this size are answered in one write (bounded memory: 64 KiB a request).
SMALL_RESPONSE = 64 * 1024
MAX_PART_NUMBER = 10_000


async def put_object(req: S3Request) -> web.Response:
    if "x-amz-copy-source" in req.headers:
        from gateway.s3.ops.copy import copy_object  # copy builds on this module's helpers
        return await copy_object(req)
    bucket = await get_bucket(req)
    assert req.key is not None
    validate_key(req.key)
    owner = access.requester_id(req)
    mode, if_match = write_condition(req)
    # The checksum the client states is verified; the one stored is its algorithm, else
    # AWS's default (CRC64NVME), returned on GET/HEAD with x-amz-checksum-mode: ENABLED.
    stated = requested_checksum(req)
    asked_lock = object_lock.lock_request(req.headers)  # Object Lock (ops/object_lock.py)
    object_lock.require_digest(req, bucket, asked_lock)
    opts = PutOptions(
        owner=owner, mode=mode, if_match=if_match, headers=content_headers(req),
        user_meta=user_metadata(req), tags=parse_tagging_header(req.headers.get("x-amz-tagging")),
        acl=access.acl_from_headers(req, owner, bucket.owner),
        storage_class=requested_storage_class(req.headers),
        location=req.headers.get(LOCATION_HEADER), host=req.host,
        content_md5=content_md5(req), checksum_algorithm=stated.algorithm if stated else None,
        verify=stated_verifier(req, stated), encryption=sse_objects.put_encryption(
            req.headers, secure=req.http.secure,
            allow_http=req.gateway.settings.encryption.allow_sse_c_over_http),
        lock=asked_lock)
    size = body_size(req)
    result = await req.gateway.engine.put(bucket, req.key, request_body(req, stated), size, opts)
    req.extra_log["location"] = result.record.location
    response_headers = {"ETag": f'"{result.record.etag}"', **version_headers(bucket, result.record),
                        **checksums.response_headers(result.checksum)}
    response_headers.update(req.gateway.lifecycle.object_headers(bucket, result.record))
    if result.encryption:
        response_headers["x-amz-server-side-encryption"] = result.encryption
    response_headers.update(sse_objects.response_headers(result.record, req.headers))
    return web.Response(headers=response_headers)


def parse_http_date(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError):
        return None


def request_conditions(headers: Mapping[str, str], prefix: str = "") -> Conditions | None:
    """GET's If-* headers (or, with `prefix`, a copy's x-amz-copy-source-if-* family)."""
    found = Conditions(
        if_match=headers.get(f"{prefix}If-Match"),
        if_none_match=headers.get(f"{prefix}If-None-Match"),
        if_modified_since=parse_http_date(headers.get(f"{prefix}If-Modified-Since")),
        if_unmodified_since=parse_http_date(headers.get(f"{prefix}If-Unmodified-Since")),
        prefix=prefix)
    if (found.if_match is None and found.if_none_match is None
            and found.if_modified_since is None and found.if_unmodified_since is None):
        return None
    return found


def object_headers(obj: ObjectRecord) -> dict[str, str]:
    headers = {
        "ETag": f'"{obj.etag}"',
        "Last-Modified": http_time(obj.last_modified),
        "Accept-Ranges": "bytes",
        "Content-Type": obj.headers.get("content-type", "binary/octet-stream"),
    }
    for name in ("cache-control", "content-disposition", "content-encoding", "content-language",
                 "expires"):
        if name in obj.headers:
            headers[name.title()] = obj.headers[name]
    for name, value in obj.user_meta.items():
        headers[f"x-amz-meta-{name}"] = value
    if obj.tags:
        headers["x-amz-tagging-count"] = str(len(obj.tags))
    encryption = next((p.encryption for p in obj.pieces if p.encryption), None)
    if encryption:
        headers["x-amz-server-side-encryption"] = encryption
    headers.update(sse_objects.response_headers(obj))  # gateway encryption (gateway/crypto/)
    headers.update(storage_class_headers(obj))
    headers.update(lock.response_headers(obj))  # x-amz-object-lock-*
    return headers


def apply_overrides(req: S3Request, headers: dict[str, str]) -> None:
    for param, header in RESPONSE_OVERRIDES.items():
        if param in req.query:
            headers[header] = req.query[param]


def requested_part(req: S3Request) -> int | None:
    """?partNumber=N of a GET or HEAD (1..10000, else InvalidArgument)."""
    value = req.query.get("partNumber")
    if value is None:
        return None
    if not value.isdigit() or not 1 <= int(value) <= MAX_PART_NUMBER:
        raise S3Error("InvalidArgument", "Part number must be an integer between 1 and 10000, "
                      "inclusive", ArgumentName="partNumber", ArgumentValue=value)
    return int(value)


async def read_object(req: S3Request, *, body: bool, small: int = 0
                      ) -> tuple[BucketRecord, ObjectRead, int, dict[str, str]]:
    """What GET and HEAD share: the engine's read of the version asked for (authorized on
    exactly that version, before any condition or header can tell the requester something
    about it), and the status and headers of the answer."""
    bucket = await get_bucket(req)
    assert req.key is not None
    opts = GetOptions(version_id=req.query.get("versionId"),
                      range=GetRange.parse(req.headers.get("Range")),
                      part_number=requested_part(req), conditions=request_conditions(req.headers),
                      small=small, encryption=sse_objects.read_encryption(
                          req.headers, secure=req.http.secure,
                          allow_http=req.gateway.settings.encryption.allow_sse_c_over_http))
    read = await req.gateway.engine.read(bucket, req.key, opts,
                                         lambda: requested_object(req, bucket), body=body)
    obj = read.record
    req.extra_log["location"] = obj.location
    headers = {**object_headers(obj), **version_headers(bucket, obj),
               **sse_objects.response_headers(obj, req.headers)}  # SSE-C: the key's MD5
    headers.update(req.gateway.lifecycle.object_headers(bucket, obj))  # x-amz-expiration
    await object_lock.hide_unpermitted(req, bucket, obj, headers)  # x-amz-object-lock-*
    apply_overrides(req, headers)
    if read.parts_count is not None and opts.part_number is not None:
        headers["x-amz-mp-parts-count"] = str(read.parts_count)
    if checksum_mode(req):
        # The whole object's checksum (a composite one ends in -N) or the part's; a range
        # has none.
        headers.update(checksums.response_headers(read.checksum))
    status = 200
    if read.partial:
        status = 206
        headers["Content-Range"] = read.content_range
    return bucket, read, status, headers


async def get_object(req: S3Request) -> web.StreamResponse:
    bucket, read, status, headers = await read_object(req, body=True, small=SMALL_RESPONSE)
    if read.data is not None:
        # A small object goes out in one write with its headers (streaming it would cost a
        # second write and syscall for a few kilobytes).
        return web.Response(status=status, headers=headers, body=read.data)
    response = web.StreamResponse(status=status, headers=headers)
    response.content_length = read.length
    await response.prepare(req.http)
    try:
        async for chunk in read.chunks():
            await response.write(chunk)
    except (S3Error, OSError) as exc:
        # The status line is sent: the only honest signal left is a cut connection, so the
        # client sees a short body instead of a complete-looking corrupt one.
        req.gateway.log.warning("GET %s/%s failed mid-stream: %s", bucket.name,
                                read.record.key, exc)
        if req.http.transport is not None:
            req.http.transport.close()
        return response
    await response.write_eof()
    return response


async def head_object(req: S3Request) -> web.Response:
    _, read, status, headers = await read_object(req, body=False)
    headers["Content-Length"] = str(read.length)
    return web.Response(status=status, headers=headers)


async def delete_object(req: S3Request) -> web.Response:
    bucket = await get_bucket(req)
    assert req.key is not None
    if_match = req.headers.get("If-Match")
    expect = if_match.strip().removeprefix("W/").strip('"') if if_match is not None else None
    outcome = await remove_object(req, bucket, req.key, req.query.get("versionId"),
                                  expect=expect)
    return web.Response(status=204, headers=version_headers(bucket, outcome) if outcome else {})


async def remove_object(req: S3Request, bucket: BucketRecord, key: str,
                        version_id: str | None = None, *,
                        expect: str | None = None) -> ObjectRecord | None:
    """DeleteObject, and each key of DeleteObjects: the engine's delete for this requester
    (a version Object Lock protects is refused there, unless this request may bypass a
    GOVERNANCE retention)."""
    bypass = await object_lock.bypass_governance(req, bucket, key)
    removed = await req.gateway.engine.delete(bucket, key, version_id, access.requester_id(req),
                                              expect=expect, bypass_governance=bypass)
    return removed


OBJECT_ATTRIBUTES = ("ETag", "Checksum", "ObjectParts", "StorageClass", "ObjectSize")


def wanted_attributes(req: S3Request) -> set[str]:
    """x-amz-object-attributes: the names asked for (case-sensitive, as AWS)."""
    names = {name.strip() for value in req.http.headers.getall("x-amz-object-attributes", [])
             for name in value.split(",") if name.strip()}
    if not names:
        raise S3Error("InvalidRequest", "The x-amz-object-attributes header specifying the "
                      "attributes to be retrieved is either missing or empty")
    unknown = sorted(names - set(OBJECT_ATTRIBUTES))
    if unknown:
        raise S3Error("InvalidArgument", "Invalid attribute name specified.",
                      ArgumentName="x-amz-object-attributes", ArgumentValue=unknown[0])
    return names


def header_integer(req: S3Request, name: str, default: int) -> int:
    raw = req.headers.get(name)
    if raw is None or raw.strip() == "":
        return default
    if not raw.strip().isdigit() or int(raw) > 2**31 - 1:
        raise S3Error("InvalidArgument", f"Provided {name} not an integer or within integer "
                      "range", ArgumentName=name, ArgumentValue=raw)
    return int(raw)


async def get_object_attributes(req: S3Request) -> web.Response:
    bucket = await get_bucket(req)
    assert req.key is not None
    wanted = wanted_attributes(req)
    max_parts = min(header_integer(req, "x-amz-max-parts", 1000), 1000)
    marker = header_integer(req, "x-amz-part-number-marker", 0)
    read = await req.gateway.engine.read(
        bucket, req.key, GetOptions(version_id=req.query.get("versionId")),
        lambda: requested_object(req, bucket), body=False)
    obj = read.record
    nodes: list[Node] = []
    if "ETag" in wanted:
        nodes.append(("ETag", obj.etag))  # unquoted here, as AWS answers
    checksum = obj.attrs.get("checksum")
    if "Checksum" in wanted and checksum:
        nodes.append(("Checksum", checksums.xml_nodes(checksum)))
    parts = object_parts(obj, marker, max_parts) if "ObjectParts" in wanted else None
    if parts is not None:
        nodes.append(("ObjectParts", [
            ("PartNumberMarker", marker), ("NextPartNumberMarker", parts.next_marker),
            ("MaxParts", max_parts), ("IsTruncated", parts.truncated),
            *[("Part", [("PartNumber", p.number), ("Size", p.size),
                        *([(checksums.xml_tag(p.checksum["algorithm"]), p.checksum["value"])]
                          if p.checksum else [])]) for p in parts.parts],
            ("PartsCount", parts.count)]))
    if "StorageClass" in wanted:
        nodes.append(("StorageClass", storage_class_of(obj)))
    if "ObjectSize" in wanted:
        nodes.append(("ObjectSize", obj.size))
    headers = {"Last-Modified": http_time(obj.last_modified), **version_headers(bucket, obj)}
    return web.Response(body=render("GetObjectAttributesResponse", nodes), headers=headers,
                        content_type="application/xml")
