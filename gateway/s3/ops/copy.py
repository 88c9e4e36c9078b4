"""Server-side copies: CopyObject (PUT with x-amz-copy-source) and UploadPartCopy.

Within one location a single-piece source is copied by the translator (no byte passes through
the gateway); otherwise the source pieces are streamed from their location(s) into the
destination and MD5-hashed on the way.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from urllib.parse import parse_qsl, unquote

from aiohttp import web

from gateway.errors import S3Error
from gateway.locations import LOCATION_HEADER
from gateway.metadata.base import BucketRecord, ObjectRecord, PartRecord
from gateway.s3 import access, checksums
from gateway.s3.ops.common import (
    MAX_PUT_SIZE,
    META_PREFIX,
    THREAD_HASH_MIN,
    content_headers,
    get_bucket,
    object_checksum,
    object_meta,
    parse_tagging_header,
    read_version,
    user_metadata,
    validate_key,
    version_headers,
    versioning_state,
)
from gateway.s3.ops.multipart import (
    MAX_PART_SIZE,
    get_upload,
    part_checksum_nodes,
    part_number,
    upload_mode,
)
from gateway.s3.ops.obj import (
    failed_condition,
    piece_spans,
)
from gateway.s3.request import S3Request
from gateway.s3.xml import iso_time, render
from gateway.translators.base import NotFound, Stored

COPY_SOURCE = "x-amz-copy-source"
METADATA_DIRECTIVE = "x-amz-metadata-directive"
TAGGING_DIRECTIVE = "x-amz-tagging-directive"
COPY_RANGE = "x-amz-copy-source-range"
# The location header is also ordinary user metadata, stored under this name.
LOCATION_META = LOCATION_HEADER[len(META_PREFIX):]
SELF_COPY_MESSAGE = (
    "This copy request is illegal because it is trying to copy an object to itself without "
    "changing the object's metadata, storage class, website redirect location or encryption "
    "attributes.")
_PLAIN_MD5 = re.compile(r"^[0-9a-f]{32}$")
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


def check_source_conditions(req: S3Request, obj: ObjectRecord) -> None:
    """x-amz-copy-source-if-*: the same rules as GET's conditions, but every failure is 412."""
    failed = failed_condition(req.headers, obj, prefix="x-amz-copy-source-")
    if failed is not None:
        raise S3Error("PreconditionFailed", Condition=failed[0])


def directive(req: S3Request, header: str, kind: str) -> str:
    value = req.headers.get(header, "COPY")
    if value not in ("COPY", "REPLACE"):
        raise S3Error("InvalidArgument", f"Unknown {kind} directive.", ArgumentName=header,
                      ArgumentValue=value)
    return value


def too_large(size: int, limit: int) -> S3Error:
    return S3Error("InvalidRequest", "The specified copy source is larger than the maximum "
                   f"allowable size for a copy source: {limit}", ProposedSize=str(size))


def missing_data(key: str) -> S3Error:
    return S3Error("NoSuchKey", "The copy source's data is missing from its location.", Key=key)


class SourceBody:
    """A byte range of the source object, read piece by piece from its location(s), MD5-hashed
    and checksummed (`algorithms`) as it streams. The last chunk is held back until the length
    is confirmed and, when the whole object is read, its stored whole-object checksum too (if
    it is one of `algorithms`), so a source that comes up short or corrupt never completes a
    write at the destination."""

    def __init__(self, req: S3Request, obj: ObjectRecord, first: int, length: int,
                 algorithms: tuple[str, ...] = ()) -> None:
        self.req = req
        self.key = obj.key
        self.length = length
        self.spans = piece_spans(obj.pieces, first, first + length - 1) if length else []
        self.md5 = hashlib.md5()
        self._hashers = {algorithm: checksums.hasher(algorithm) for algorithm in algorithms}
        stored = obj.attrs.get("checksum")
        self._expected = (stored if stored and first == 0 and length == obj.size
                          and stored["type"] == checksums.FULL_OBJECT
                          and stored["algorithm"] in self._hashers else None)

    def _update(self, chunk: bytes) -> None:
        self.md5.update(chunk)
        for h in self._hashers.values():
            h.update(chunk)

    def checksum(self, algorithm: str) -> str:
        """The base64 `algorithm` checksum of the bytes copied (after the iteration)."""
        return checksums.encode(bytes(self._hashers[algorithm].digest()))

    async def __aiter__(self) -> AsyncIterator[bytes]:
        locations = self.req.gateway.locations
        seen = 0
        pending: bytes | None = None
        for piece, offset, span_length in self.spans:
            if piece.location not in locations:
                raise missing_data(self.key)
            try:
                stream = await locations[piece.location].get(piece, offset, span_length)
                async for chunk in stream:
                    if not chunk:
                        continue
                    seen += len(chunk)
                    if len(chunk) >= THREAD_HASH_MIN:
                        await asyncio.to_thread(self._update, chunk)
                    else:
                        self._update(chunk)
                    if pending is not None:
                        yield pending
                    pending = chunk
            except NotFound:
                raise missing_data(self.key) from None
        if seen != self.length:
            raise S3Error("InternalError", f"The copy source gave {seen} of {self.length} bytes.")
        if self._expected and self.checksum(self._expected["algorithm"]) != self._expected["value"]:
            raise S3Error("InternalError", "The copy source's data does not match its stored "
                          f"{self._expected['algorithm']} checksum.")
        if pending is not None:
            yield pending

    @property
    def etag(self) -> str:
        return self.md5.hexdigest()


def xml_response(root: str, etag: str, modified: float, headers: dict[str, str],
                 extra: list[tuple[str, str]] | None = None) -> web.Response:
    body = render(root, [("LastModified", iso_time(modified)), ("ETag", f'"{etag}"'),
                         *(extra or [])])
    return web.Response(body=body, content_type="application/xml", headers=headers)


def copy_algorithm(req: S3Request) -> str | None:
    """CopyObject's x-amz-checksum-algorithm: the checksum to compute for the copy."""
    value = req.headers.get("x-amz-checksum-algorithm")
    return checksums.parse_algorithm(value) if value is not None else None


def reusable_checksum(src: ObjectRecord, algorithm: str | None, whole: bool = True
                      ) -> dict[str, str] | None:
    """The source's checksum when it holds for the copied bytes as they are: a whole-object
    one, of `algorithm`, and all of the source copied."""
    found = src.attrs.get("checksum")
    if (found and whole and found["type"] == checksums.FULL_OBJECT
            and found["algorithm"] == algorithm):
        return dict(found)
    return None


async def copy_object(req: S3Request) -> web.Response:
    bucket = await get_bucket(req)  # the destination must be writable by the requester
    assert req.key is not None
    validate_key(req.key)
    meta_directive = directive(req, METADATA_DIRECTIVE, "metadata")
    tag_directive = directive(req, TAGGING_DIRECTIVE, "tagging")
    source = await load_source(req)
    src = source.obj
    check_source_conditions(req, src)
    same_object = source.bucket.name == bucket.name and src.key == req.key
    if same_object and meta_directive != "REPLACE":
        raise S3Error("InvalidRequest", SELF_COPY_MESSAGE)
    if src.size > MAX_PUT_SIZE:
        raise too_large(src.size, MAX_PUT_SIZE)
    if meta_directive == "REPLACE":
        headers, user = content_headers(req), user_metadata(req)
        header_location = req.headers.get(LOCATION_HEADER)
    else:  # COPY: the request's content and x-amz-meta-* headers are ignored, as AWS does
        headers, user = dict(src.headers), dict(src.user_meta)
        header_location = None
    if tag_directive == "REPLACE":
        tags = parse_tagging_header(req.headers.get("x-amz-tagging"))
    else:
        tags = dict(src.tags)
    location = req.gateway.locations.for_new_object(header_location, bucket.location, req.host)
    if header_location is None and LOCATION_META in user:
        user[LOCATION_META] = location.name  # COPY: the destination's location replaces it
    req.extra_log["location"] = location.name
    meta = object_meta(headers, user, tags)
    # The copy is a new object: the requester's, with the ACL its headers ask for (not the
    # source's), as AWS does.
    owner = access.requester_id(req)
    grants = access.acl_from_headers(req, owner, bucket.owner)
    attrs: dict[str, object] = {"acl": grants} if grants else {}
    now = time.time()
    # The copy's checksum: the one asked for (x-amz-checksum-algorithm), else the source's
    # algorithm. The source's value carries over when it is a whole-object one of that
    # algorithm; any other must be computed, from the bytes, so they must stream.
    algorithm = copy_algorithm(req)
    if algorithm is None and src.attrs.get("checksum"):
        algorithm = src.attrs["checksum"]["algorithm"]
    checksum = reusable_checksum(src, algorithm)
    must_read = algorithm is not None and checksum is None
    if checksum is not None:
        attrs["checksum"] = checksum
    # A one-piece object with a plain MD5 ETag can be copied without reading it: its ETag is
    # already the MD5 of its bytes. A multipart source gets a fresh MD5 (as AWS), so it streams.
    one_piece = (len(src.pieces) == 1 and src.pieces[0].location == location.name
                 and bool(_PLAIN_MD5.match(src.etag)) and not must_read)

    source_headers = version_headers(source.bucket, src)
    copy_headers = ({"x-amz-copy-source-version-id": source_headers["x-amz-version-id"]}
                    if "x-amz-version-id" in source_headers else {})
    if same_object and one_piece and versioning_state(bucket) != "Enabled":
        # REPLACE onto itself in place: only the gateway's metadata changes (it is the
        # reference); the stored piece stays untouched, as every piece does once written.
        piece = src.pieces[0]
        changes = {"headers": headers, "user_meta": user, "tags": tags,
                   "last_modified": now, "owner": owner, "attrs": attrs}
        if await req.gateway.metadata.update_object(bucket.name, req.key, src.pieces,
                                                    changes) is None:
            raise S3Error("OperationAborted", "The object changed while it was being copied. "
                          "Please try again.")
        return xml_response("CopyObjectResult", src.etag, now,
                            {**encryption_headers(piece), **copy_headers},
                            checksums.xml_nodes(checksum))

    engine = req.gateway.engine
    async with engine.new_piece(location, bucket.name, req.key) as write:
        stored: Stored | None = None
        etag = src.etag
        if one_piece:
            try:
                stored = await location.copy(src.pieces[0], write.key, meta)
            except NotFound:
                raise missing_data(src.key) from None
        if stored is None:  # another location, several pieces, or no server-side copy: stream
            computed = algorithm or checksums.DEFAULT_ALGORITHM
            body = SourceBody(req, src, 0, src.size, (computed,))
            stored = await location.put(write.key, aiter(body), src.size, meta)
            etag = body.etag
            checksum = object_checksum(computed, body.checksum(computed))
            attrs["checksum"] = checksum
        record = ObjectRecord(
            bucket=bucket.name, key=req.key, size=src.size, etag=etag, last_modified=now,
            location=location.name, pieces=[stored], owner=owner, headers=headers,
            user_meta=user, tags=tags, attrs=attrs)
        await engine.commit(bucket, record, write)
    return xml_response("CopyObjectResult", etag, now,
                        {**encryption_headers(stored), **copy_headers,
                         **version_headers(bucket, record)}, checksums.xml_nodes(checksum))


def encryption_headers(stored: Stored) -> dict[str, str]:
    return {"x-amz-server-side-encryption": stored.encryption} if stored.encryption else {}


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
    src = source.obj
    check_source_conditions(req, src)
    first, length = parse_copy_range(req.headers.get(COPY_RANGE), src.size)
    if length > MAX_PART_SIZE:
        raise too_large(length, MAX_PART_SIZE)
    location = req.gateway.locations[upload.location]
    req.extra_log["location"] = location.name
    # The part's checksum: the upload's algorithm (or, without one, AWS's default), the
    # source's value when it holds for exactly these bytes, else computed as they stream.
    mode = upload_mode(upload)
    algorithm = mode["algorithm"] if mode else checksums.DEFAULT_ALGORITHM
    reused = reusable_checksum(src, algorithm, first == 0 and length == src.size)
    part_sums = {algorithm: reused["value"]} if reused else {}
    stored: Stored | None = None
    etag = ""
    if (length and len(src.pieces) == 1 and src.pieces[0].location == location.name
            and (reused or mode is None)):
        try:
            stored = await location.copy_part(src.pieces[0], first, length, upload.backend_key,
                                              upload.backend_upload_id, number)
        except NotFound:
            raise missing_data(src.key) from None
        if stored is not None:
            whole = first == 0 and length == src.size
            if whole and _PLAIN_MD5.match(src.etag):
                etag = src.etag
            else:
                # The bytes never passed through the gateway, so their MD5 is unknown; the
                # part ETag (which clients only echo back at completion) is a stable stand-in.
                etag = hashlib.md5(f"{src.etag}:{first}-{length}".encode()).hexdigest()
    if stored is None:
        body = SourceBody(req, src, first, length, (algorithm,))
        stored = await location.upload_part(upload.backend_key, upload.backend_upload_id, number,
                                            aiter(body), length)
        etag = body.etag
        part_sums = {algorithm: body.checksum(algorithm)}
    now = time.time()
    part = PartRecord(upload_id=upload.upload_id, number=number, size=length, etag=etag,
                      last_modified=now, stored=stored, checksums=part_sums)
    await req.gateway.engine.store_part(upload, part)
    return xml_response("CopyPartResult", etag, now, encryption_headers(stored),
                        part_checksum_nodes(upload, part))
