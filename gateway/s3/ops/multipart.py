"""Multipart upload: create, upload part, complete, abort, list parts, list uploads."""

from __future__ import annotations

import re
from urllib.parse import quote

from aiohttp import web

from gateway import checksums
from gateway.crypto import objects as sse_objects
from gateway.errors import S3Error
from gateway.locations import LOCATION_HEADER
from gateway.metadata.base import PartRecord, UploadRecord
from gateway.objects import lock
from gateway.objects.multipart import upload_mode
from gateway.objects.options import (
    MAX_PART_NUMBER,
    CompleteOptions,
    ListedPart,
    PartOptions,
    PutOptions,
    storage_class_of,
)
from gateway.s3 import access
from gateway.s3.ops import object_lock
from gateway.s3.ops.common import (
    body_size,
    content_headers,
    content_md5,
    get_bucket,
    parse_tagging_header,
    read_body,
    request_body,
    requested_checksum,
    requested_storage_class,
    stated_verifier,
    user_metadata,
    validate_key,
    version_headers,
    write_condition,
)
from gateway.s3.ops.service import owner_node
from gateway.s3.request import S3Request
from gateway.s3.xml import iso_time, parse, render

MAX_LIST = 1000


def xml_response(root: str, nodes: list, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=render(root, nodes), content_type="application/xml", headers=headers)


async def create_upload(req: S3Request) -> web.Response:
    bucket = await get_bucket(req)
    assert req.key is not None
    validate_key(req.key)
    owner = access.requester_id(req)
    # x-amz-checksum-algorithm / -type: every part then carries (or gets) that checksum, and
    # the object a COMPOSITE or FULL_OBJECT one made from them at completion.
    mode = checksums.upload_checksum(req.headers)
    opts = PutOptions(
        owner=owner, headers=content_headers(req), user_meta=user_metadata(req),
        tags=parse_tagging_header(req.headers.get("x-amz-tagging")),
        acl=access.acl_from_headers(req, owner, bucket.owner),
        storage_class=requested_storage_class(req.headers),
        location=req.headers.get(LOCATION_HEADER), host=req.host, upload_checksum=mode,
        encryption=sse_objects.put_encryption(  # gateway/crypto/
            req.headers, secure=req.http.secure,
            allow_http=req.gateway.settings.encryption.allow_sse_c_over_http),
        lock=object_lock.lock_request(req.headers))  # Object Lock (ops/object_lock.py)
    upload = await req.gateway.engine.create_upload(bucket, req.key, opts)
    response_headers = ({"x-amz-checksum-algorithm": mode["algorithm"],
                         "x-amz-checksum-type": mode["type"]} if mode else {})
    response_headers.update(sse_objects.response_headers(upload, req.headers))
    return xml_response("InitiateMultipartUploadResult", [
        ("Bucket", bucket.name), ("Key", req.key), ("UploadId", upload.upload_id)],
        headers=response_headers)


def part_checksum_headers(upload: UploadRecord, stated: checksums.Requested | None,
                          part: PartRecord) -> dict[str, str]:
    """UploadPart's x-amz-checksum-<alg> answer: the upload's algorithm, else the stated one."""
    mode = upload_mode(upload)
    algorithm = mode["algorithm"] if mode else stated.algorithm if stated else None
    if algorithm is None or algorithm not in part.checksums:
        return {}
    return {checksums.header(algorithm): part.checksums[algorithm]}


def part_checksum_nodes(upload: UploadRecord, part: PartRecord) -> list[tuple[str, str]]:
    """A part's ChecksumX elements (ListParts): the upload's algorithm, or every one kept."""
    mode = upload_mode(upload)
    shown = [mode["algorithm"]] if mode else list(checksums.ALGORITHMS)
    return [(checksums.xml_tag(a), part.checksums[a]) for a in shown if a in part.checksums]


async def get_upload(req: S3Request, *, for_parts: bool = False) -> UploadRecord:
    """The upload the request names. `for_parts`: a part is about to be stored, so one being
    completed is refused now, before any byte moves (the store refuses it at the record too)."""
    bucket = await get_bucket(req)
    upload = await req.gateway.engine.get_upload(req.query["uploadId"])
    if upload is None or upload.bucket != bucket.name or upload.key != req.key \
            or (for_parts and upload.state != "open"):
        raise S3Error("NoSuchUpload", UploadId=req.query["uploadId"])
    return upload


def part_number(req: S3Request) -> int:
    value = req.query.get("partNumber", "")
    try:
        number = int(value)
    except ValueError:
        number = 0
    if not 1 <= number <= MAX_PART_NUMBER:
        raise S3Error("InvalidArgument", "Part number must be an integer between 1 and 10000, inclusive",
                      ArgumentName="partNumber", ArgumentValue=value)
    return number


async def upload_part(req: S3Request) -> web.Response:
    if "x-amz-copy-source" in req.headers:
        from gateway.s3.ops.copy import upload_part_copy  # copy builds on this module's helpers
        return await upload_part_copy(req)
    number = part_number(req)
    upload = await get_upload(req, for_parts=True)
    stated = requested_checksum(req)
    object_lock.require_digest(req, None, None, what="Put Part",  # a part of a locked object
                               locked=lock.ATTR in upload.attrs)
    opts = PartOptions(content_md5=content_md5(req),
                       checksum_algorithm=stated.algorithm if stated else None,
                       verify=stated_verifier(req, stated),
                       encryption=sse_objects.read_encryption(  # SSE-C: the part's key
                           req.headers, secure=req.http.secure,
                           allow_http=req.gateway.settings.encryption.allow_sse_c_over_http))
    req.extra_log["location"] = upload.location
    part = await req.gateway.engine.upload_part(upload, number, request_body(req, stated),
                                                body_size(req), opts)
    return web.Response(headers={"ETag": f'"{part.etag}"',
                                 **part_checksum_headers(upload, stated, part),
                                 **sse_objects.response_headers(upload, req.headers)})


def parse_complete(body: bytes) -> list[ListedPart]:
    """The parts a completion lists: number, ETag, {algorithm: base64 checksum}."""
    root = parse(body, "CompleteMultipartUpload")
    listed: list[ListedPart] = []
    for node in root.findall("Part"):
        number_text = node.findtext("PartNumber")
        etag = node.findtext("ETag")
        if number_text is None or etag is None:
            raise S3Error("MalformedXML")
        try:
            number = int(number_text)
        except ValueError:
            raise S3Error("MalformedXML") from None
        sums = {algorithm: (node.findtext(checksums.xml_tag(algorithm)) or "").strip()
                for algorithm in checksums.ALGORITHMS
                if node.find(checksums.xml_tag(algorithm)) is not None}
        listed.append(ListedPart(number, etag.strip().strip('"'), sums))
    if not listed:
        raise S3Error("MalformedXML", "The XML you provided was not well-formed or did not "
                      "validate against our published schema: no parts listed.")
    if len(listed) > MAX_PART_NUMBER:
        raise S3Error("TooManyParts")
    return listed


async def complete_upload(req: S3Request) -> web.Response:
    upload = await get_upload(req)
    # x-amz-checksum-<alg> here states the object's checksum, not the XML body's.
    listed = parse_complete(await read_body(req, body_checksums=False))
    mode, if_match = write_condition(req)
    opts = CompleteOptions(mode=mode, if_match=if_match,
                           stated_checksum=stated_object_checksum(req, upload_mode(upload)),
                           requester=access.requester_id(req))
    result = await req.gateway.engine.complete_upload(upload, listed, opts)
    record = result.record
    bucket = await req.gateway.metadata.get_bucket(upload.bucket)  # for the version headers
    base = f"http://{req.host or 'localhost'}"
    headers = version_headers(bucket, record) if bucket is not None else {}
    headers.update(sse_objects.response_headers(record, req.headers))  # gateway/crypto/
    return xml_response("CompleteMultipartUploadResult", [
        ("Location", f"{base}/{quote(upload.bucket)}/{quote(upload.key)}"),
        ("Bucket", upload.bucket), ("Key", upload.key), ("ETag", f'"{record.etag}"'),
        *checksums.xml_nodes(result.checksum)], headers=headers or None)


def stated_object_checksum(req: S3Request,
                           mode: dict[str, str] | None) -> tuple[str, str] | None:
    """CompleteMultipartUpload's x-amz-checksum-type (must be the upload's) and its
    x-amz-checksum-<alg>: the object checksum the client expects, as (algorithm, value)."""
    kind = req.headers.get("x-amz-checksum-type")
    if kind is not None:
        kind = kind.strip().upper()
        if kind not in (checksums.COMPOSITE, checksums.FULL_OBJECT):
            raise S3Error("InvalidRequest", "Value for x-amz-checksum-type header is invalid.")
        if mode is None:
            raise S3Error("InvalidRequest", "The upload was not created with a checksum mode. "
                          "The complete request must not include a x-amz-checksum-type header.")
        if kind != mode["type"]:
            raise S3Error("InvalidRequest", f"The upload was created using the {mode['type']} "
                          "checksum mode. The complete request must use the same checksum mode.")
    names = checksums.value_headers(req.headers)
    if not names:
        return None
    if len(names) > 1:
        raise S3Error("InvalidRequest", "Expecting a single x-amz-checksum- header. Multiple "
                      "checksum Types are not allowed.")
    algorithm = names[0].removeprefix(checksums.PREFIX).upper()
    if algorithm not in checksums.SIZES:
        raise S3Error("InvalidRequest", "The algorithm type you specified in x-amz-checksum- "
                      "header is invalid.")
    value = req.headers[names[0]].strip()
    digest, dash, count = value.rpartition("-")
    checksums.decode(algorithm, digest if dash and count.isdigit() else value)
    return algorithm, value


async def abort_upload(req: S3Request) -> web.Response:
    upload = await get_upload(req)
    # Metadata first: once the upload is gone no completion can use its parts; the backend
    # upload and every part are then garbage for the collector.
    await req.gateway.engine.abort(upload)
    return web.Response(status=204)


async def list_parts(req: S3Request) -> web.Response:
    upload = await get_upload(req)
    q = req.query
    max_parts = min(list_argument(q, "max-parts", MAX_LIST), MAX_LIST)
    marker = list_argument(q, "part-number-marker", 0)
    page = await req.gateway.metadata.list_parts(upload.upload_id, marker, max_parts + 1)
    truncated = len(page) > max_parts
    page = page[:max_parts]
    accounts = req.gateway.accounts
    owner = accounts.by_canonical_id(upload.owner)
    owner_xml = owner_node(upload.owner, owner.name if owner else "")
    nodes: list = [
        ("Bucket", upload.bucket), ("Key", upload.key), ("UploadId", upload.upload_id),
        ("Initiator", owner_xml), ("Owner", owner_xml),
        ("StorageClass", storage_class_of(upload)), ("PartNumberMarker", marker),
        ("NextPartNumberMarker", page[-1].number if page else marker),
        ("MaxParts", max_parts), ("IsTruncated", truncated)]
    mode = upload_mode(upload)
    if mode:
        nodes += [("ChecksumAlgorithm", mode["algorithm"]), ("ChecksumType", mode["type"])]
    nodes += [("Part", [("PartNumber", p.number), ("LastModified", iso_time(p.last_modified)),
                        ("ETag", f'"{p.etag}"'), ("Size", p.size),
                        *part_checksum_nodes(upload, p)]) for p in page]
    return xml_response("ListPartsResult", nodes)


async def list_uploads(req: S3Request) -> web.Response:
    bucket = await get_bucket(req)
    q = req.query
    max_uploads = min(list_argument(q, "max-uploads", MAX_LIST), MAX_LIST)
    prefix = q.get("prefix", "")
    delimiter = q.get("delimiter") or None
    listing = await req.gateway.metadata.list_uploads(
        bucket.name, prefix, delimiter, q.get("key-marker") or None,
        q.get("upload-id-marker") or None, max_uploads)
    accounts = req.gateway.accounts
    nodes: list = [("Bucket", bucket.name), ("KeyMarker", q.get("key-marker", "")),
                   ("UploadIdMarker", q.get("upload-id-marker", ""))]
    if listing.uploads:
        nodes += [("NextKeyMarker", listing.uploads[-1].key),
                  ("NextUploadIdMarker", listing.uploads[-1].upload_id)]
    nodes += [("Prefix", prefix)]
    if delimiter:
        nodes.append(("Delimiter", delimiter))
    nodes += [("MaxUploads", max_uploads), ("IsTruncated", listing.truncated)]
    for up in listing.uploads:
        owner = accounts.by_canonical_id(up.owner)
        owner_xml = owner_node(up.owner, owner.name if owner else "")
        nodes.append(("Upload", [("Key", up.key), ("UploadId", up.upload_id),
                                 ("Initiator", owner_xml), ("Owner", owner_xml),
                                 ("StorageClass", storage_class_of(up)),
                                 ("Initiated", iso_time(up.initiated)),
                                 *upload_mode_nodes(up)]))
    nodes += [("CommonPrefixes", [("Prefix", p)]) for p in listing.prefixes]
    return xml_response("ListMultipartUploadsResult", nodes)


def list_argument(query: dict[str, str], name: str, default: int) -> int:
    """A ListParts / ListMultipartUploads integer argument, judged as AWS does: 0..2^31-1, or
    InvalidArgument (a negative max-uploads would otherwise lift the page cap, a huge marker
    overflow the database's integers)."""
    raw = query.get(name, "")
    if raw == "":
        return default
    if not re.fullmatch(r"-?[0-9]{1,10}", raw) or int(raw) < -2**31 or int(raw) > 2**31 - 1:
        raise S3Error("InvalidArgument", f"Provided {name} not an integer or within integer "
                      "range", ArgumentName=name, ArgumentValue=raw)
    value = int(raw)
    if value < 0:
        raise S3Error("InvalidArgument", f"Argument {name} must be an integer between 0 and "
                      "2147483647", ArgumentName=name, ArgumentValue=raw)
    return value


def upload_mode_nodes(upload: UploadRecord) -> list[tuple[str, str]]:
    """ChecksumAlgorithm and ChecksumType of an upload created with them (ListMultipartUploads)."""
    mode = upload_mode(upload)
    return [("ChecksumAlgorithm", mode["algorithm"]), ("ChecksumType", mode["type"])] if mode \
        else []
