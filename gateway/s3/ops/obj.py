"""Object operations: PutObject, GetObject, HeadObject, DeleteObject."""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from email.utils import parsedate_to_datetime

from aiohttp import web

from gateway.errors import S3Error
from gateway.locations import LOCATION_HEADER
from gateway.metadata.base import BucketRecord, ObjectRecord
from gateway.s3 import access, checksums
from gateway.s3.ops.common import (
    MAX_PUT_SIZE,
    HashedBody,
    body_size,
    check_write_condition,
    checksum_mode,
    content_headers,
    content_md5,
    get_bucket,
    object_checksum,
    object_meta,
    parse_tagging_header,
    requested_checksum,
    requested_object,
    user_metadata,
    validate_key,
    version_headers,
)
from gateway.s3.request import S3Request
from gateway.s3.xml import http_time
from gateway.translators.base import NotFound, Stored

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
_RANGE_RE = re.compile(r"^bytes=(\d*)-(\d*)$")


async def put_object(req: S3Request) -> web.Response:
    if "x-amz-copy-source" in req.headers:
        from gateway.s3.ops.copy import copy_object  # copy builds on this module's helpers
        return await copy_object(req)
    bucket = await get_bucket(req)
    assert req.key is not None
    validate_key(req.key)
    user = user_metadata(req)
    headers = content_headers(req)
    tags = parse_tagging_header(req.headers.get("x-amz-tagging"))
    owner = access.requester_id(req)
    grants = access.acl_from_headers(req, owner, bucket.owner)
    expected_md5 = content_md5(req)
    # The checksum the client states is verified; the one stored is its algorithm, else
    # AWS's default (CRC64NVME), returned on GET/HEAD with x-amz-checksum-mode: ENABLED.
    stated = requested_checksum(req)
    algorithm = stated.algorithm if stated else checksums.DEFAULT_ALGORITHM
    size = body_size(req)
    if size > MAX_PUT_SIZE:
        raise S3Error("EntityTooLarge", ProposedSize=str(size), MaxSizeAllowed=str(MAX_PUT_SIZE))
    location = req.gateway.locations.for_new_object(req.headers.get(LOCATION_HEADER),
                                                    bucket.location, req.host)
    req.extra_log["location"] = location.name
    expect = await check_write_condition(req, bucket, req.key)
    engine = req.gateway.engine
    body = HashedBody(req, size, expected_md5, stated, (algorithm,))
    async with engine.new_piece(location, bucket.name, req.key) as write:
        stored = await location.put(write.key, aiter(body), size,
                                    object_meta(headers, user, tags))
        checksum = object_checksum(algorithm, body.checksum(algorithm))
        attrs: dict[str, object] = {"checksum": checksum}
        if grants:
            attrs["acl"] = grants
        record = ObjectRecord(
            bucket=bucket.name, key=req.key, size=size, etag=body.etag,
            last_modified=time.time(), location=location.name, pieces=[stored], owner=owner,
            headers=headers, user_meta=user, tags=tags, attrs=attrs)
        await engine.commit(bucket, record, write, expect=expect)
    response_headers = {"ETag": f'"{body.etag}"', **version_headers(bucket, record),
                        **checksums.response_headers(checksum)}
    if stored.encryption:
        response_headers["x-amz-server-side-encryption"] = stored.encryption
    return web.Response(headers=response_headers)


def parse_http_date(value: str) -> float | None:
    try:
        return parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError):
        return None


def etag_matches(header: str, etag: str) -> bool:
    candidates = [c.strip().removeprefix("W/").strip('"') for c in header.split(",")]
    return "*" in candidates or etag in candidates


def failed_condition(headers: Mapping[str, str], obj: ObjectRecord,
                     prefix: str = "") -> tuple[str, str] | None:
    """The first conditional header that fails, as (header name, "412" or "304"), or None.
    AWS's precedence: a matching If-Match overrides a failing If-Unmodified-Since, and a
    non-matching If-None-Match overrides a failing If-Modified-Since. `prefix` selects the
    x-amz-copy-source-if-* family."""
    modified = int(obj.last_modified)
    if_match = headers.get(f"{prefix}If-Match")
    if if_match is not None:
        if not etag_matches(if_match, obj.etag):
            return f"{prefix}If-Match", "412"
    elif f"{prefix}If-Unmodified-Since" in headers:
        since = parse_http_date(headers[f"{prefix}If-Unmodified-Since"])
        if since is not None and modified > since:
            return f"{prefix}If-Unmodified-Since", "412"
    if_none_match = headers.get(f"{prefix}If-None-Match")
    if if_none_match is not None:
        if etag_matches(if_none_match, obj.etag):
            return f"{prefix}If-None-Match", "304"
    elif f"{prefix}If-Modified-Since" in headers:
        since = parse_http_date(headers[f"{prefix}If-Modified-Since"])
        if since is not None and modified <= since:
            return f"{prefix}If-Modified-Since", "304"
    return None


def check_conditions(req: S3Request, obj: ObjectRecord) -> None:
    """If-Match / If-Unmodified-Since -> 412, If-None-Match / If-Modified-Since -> 304."""
    failed = failed_condition(req.headers, obj)
    if failed is None:
        return
    header, status = failed
    if status == "412":
        raise S3Error("PreconditionFailed", Condition=header)
    raise S3Error("NotModified", headers={"ETag": f'"{obj.etag}"',
                                          "Last-Modified": http_time(obj.last_modified)})


def parse_range(value: str | None, size: int) -> tuple[int, int] | None:
    """(first, last) inclusive, or None for the whole object. Unsatisfiable -> InvalidRange;
    a malformed or multi-range header is ignored, as AWS does."""
    if not value:
        return None
    match = _RANGE_RE.match(value.strip())
    if not match or (not match.group(1) and not match.group(2)):
        return None
    first_s, last_s = match.groups()
    if first_s:
        first = int(first_s)
        last = min(int(last_s), size - 1) if last_s else size - 1
        if last_s and int(last_s) < first:
            return None
    else:
        suffix = int(last_s)
        if suffix == 0:
            raise invalid_range(size)
        first, last = max(size - suffix, 0), size - 1
    if first >= size:
        raise invalid_range(size)
    return first, last


def invalid_range(size: int) -> S3Error:
    return S3Error("InvalidRange", headers={"Content-Range": f"bytes */{size}"},
                   ActualObjectSize=str(size))


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
    parts = obj.attrs.get("parts_count")
    if parts:
        headers["x-amz-mp-parts-count"] = str(parts)
    return headers


def apply_overrides(req: S3Request, headers: dict[str, str]) -> None:
    for param, header in RESPONSE_OVERRIDES.items():
        if param in req.query:
            headers[header] = req.query[param]


def piece_spans(pieces: list[Stored], first: int, last: int) -> list[tuple[Stored, int, int]]:
    """Map the byte range [first, last] onto the pieces: (piece, offset in piece, length)."""
    spans = []
    start = 0
    for piece in pieces:
        end = start + piece.size  # exclusive
        if end > first and start <= last:
            offset = max(first - start, 0)
            stop = min(last + 1, end) - start
            spans.append((piece, offset, stop - offset))
        start = end
        if start > last:
            break
    return spans


async def prepare_read(req: S3Request) -> tuple[BucketRecord, ObjectRecord, dict[str, str],
                                               tuple[int, int] | None]:
    """What GET and HEAD share: the object, its conditions checked, its response headers, and
    the byte range asked for."""
    bucket = await get_bucket(req)
    # Authorized on exactly the version read (its owner and ACL), before any condition or
    # header can tell the requester something about it.
    obj = await requested_object(req, bucket)
    req.extra_log["location"] = obj.location
    check_conditions(req, obj)
    headers = {**object_headers(obj), **version_headers(bucket, obj)}
    apply_overrides(req, headers)
    byte_range = parse_range(req.headers.get("Range"), obj.size)
    if byte_range is None and checksum_mode(req):
        # The whole object's checksum (a composite one ends in -N); a range has none.
        headers.update(checksums.response_headers(obj.attrs.get("checksum")))
    return bucket, obj, headers, byte_range


# A GET reads the key's record, then opens its bytes. An overwrite or delete committing in
# between hands the old bytes to the collector, which may remove them first: the record is then
# read again (the newer state was in force during this request) up to this many times in all.
READ_ATTEMPTS = 3


def data_missing(key: str) -> S3Error:
    return S3Error("NoSuchKey", "The object's data is missing from its location.", Key=key)


async def get_object(req: S3Request) -> web.StreamResponse:
    gone: list[Stored] | None = None  # the pieces of a record whose bytes could not be opened
    for _ in range(READ_ATTEMPTS):
        bucket, obj, headers, byte_range = await prepare_read(req)
        if obj.pieces == gone:
            raise data_missing(obj.key)  # still referenced, yet not stored
        status = 200
        first, last = 0, obj.size - 1
        if byte_range is not None:
            first, last = byte_range
            status = 206
            headers["Content-Range"] = f"bytes {first}-{last}/{obj.size}"
        length = last - first + 1 if obj.size else 0
        spans = piece_spans(obj.pieces, first, last) if length else []
        locations = req.gateway.locations
        # Open the first stream before answering, so a missing backend object is a clean error.
        streams = []
        try:
            if spans:
                piece, offset, span_len = spans[0]
                streams.append(await locations[piece.location].get(piece, offset, span_len))
            if len(spans) == 1 and length <= SMALL_RESPONSE:
                # A small object goes out in one write with its headers (streaming it would
                # cost a second write and syscall for a few kilobytes).
                body = b"".join([chunk async for chunk in streams[0]])
                return web.Response(status=status, headers=headers, body=body)
        except (NotFound, OSError):
            gone = obj.pieces
            continue
        break
    else:
        raise data_missing(obj.key)  # replaced again under every attempt
    response = web.StreamResponse(status=status, headers=headers)
    response.content_length = length
    await response.prepare(req.http)
    try:
        for index, (piece, offset, span_len) in enumerate(spans):
            stream = streams[0] if index == 0 else await locations[piece.location].get(
                piece, offset, span_len)
            async for chunk in stream:
                await response.write(chunk)
    except (S3Error, NotFound, OSError) as exc:
        # The status line is sent: the only honest signal left is a cut connection, so the
        # client sees a short body instead of a complete-looking corrupt one.
        req.gateway.log.warning("GET %s/%s failed mid-stream: %s", bucket.name, obj.key, exc)
        if req.http.transport is not None:
            req.http.transport.close()
        return response
    await response.write_eof()
    return response


async def head_object(req: S3Request) -> web.Response:
    _, obj, headers, byte_range = await prepare_read(req)
    status, length = 200, obj.size
    if byte_range is not None:
        status = 206
        length = byte_range[1] - byte_range[0] + 1
        headers["Content-Range"] = f"bytes {byte_range[0]}-{byte_range[1]}/{obj.size}"
    headers["Content-Length"] = str(length)
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
    """DeleteObject, and each key of DeleteObjects: the engine's delete for this requester."""
    return await req.gateway.engine.delete(bucket, key, version_id, access.requester_id(req),
                                           expect=expect)
