"""Bucket operations: create, head, delete, location, listing (v1 and v2)."""

from __future__ import annotations

import base64
import binascii
import time
from collections.abc import Callable
from urllib.parse import quote

from aiohttp import web

from gateway.errors import S3Error
from gateway.metadata.base import BucketRecord, Listing, LocationTaken, VersionListing
from gateway.objects import lock
from gateway.objects.options import storage_class_of
from gateway.s3 import access
from gateway.s3.ops import bucket_config
from gateway.s3.ops.common import get_bucket, read_body, validate_bucket_name
from gateway.s3.ops.service import owner_node
from gateway.s3.request import S3Request
from gateway.s3.xml import child_text, iso_time, parse, render

MAX_KEYS = 1000
LOCKED_VERSIONING = ("An Object Lock configuration is present on this bucket, so the "
                     "versioning state cannot be changed.")


async def create_bucket(req: S3Request) -> web.Response:
    account = req.require_account()
    assert req.bucket is not None
    validate_bucket_name(req.bucket)
    # Object Lock (gateway/objects/lock.py): on from the start, with versioning for good.
    object_lock = req.headers.get("x-amz-bucket-object-lock-enabled", "").strip().lower() == "true"
    locations = req.gateway.locations
    body = await read_body(req)  # through auth's payload checks, like every body
    location_name = None
    if body.strip():
        config = parse(body, "CreateBucketConfiguration")
        location_name = child_text(config, "LocationConstraint")
    if not location_name:
        location_name = locations.endpoint_location(req.host)
    if location_name not in locations:
        raise S3Error("InvalidLocationConstraint",
                      f"The specified location constraint is not valid: {location_name}",
                      LocationConstraint=location_name)
    grants = access.acl_from_headers(req, account.canonical_id)
    attrs: dict[str, object] = {"acl": grants} if grants else {}
    if object_lock:
        attrs.update({lock.BUCKET_ATTR: {"enabled": True}, "versioning": "Enabled"})
    ownership = req.headers.get("x-amz-object-ownership")
    if ownership is not None:  # Object Ownership (ops/bucket_config.py, access.py)
        attrs["ownership"] = bucket_config.ownership_mode(ownership.strip())
        if attrs["ownership"] == "BucketOwnerEnforced":
            bucket_config.check_enforceable(grants, account.canonical_id)
            attrs.pop("acl", None)  # only the owner's full control: the default
    record = BucketRecord(name=req.bucket, owner=account.canonical_id, location=location_name,
                          created=time.time(), attrs=attrs)
    # A bucketMatch location stores objects under their bare keys: it can hold one bucket only,
    # or two buckets' objects (two tenants') would share names on the backend.
    exclusive = locations[location_name].spec.bucket_match
    try:
        existing = await req.gateway.metadata.create_bucket(record, exclusive_location=exclusive)
    except LocationTaken:
        raise S3Error("InvalidLocationConstraint",
                      f"Location {location_name} stores objects under their own keys "
                      "(bucketMatch) and already belongs to another bucket.",
                      LocationConstraint=location_name) from None
    if existing is not None:
        if existing.owner != account.canonical_id:
            raise S3Error("BucketAlreadyExists", BucketName=req.bucket)
        both_legacy = (locations[location_name].spec.legacy_aws_behavior
                       and existing.location in locations
                       and locations[existing.location].spec.legacy_aws_behavior)
        if not both_legacy:  # us-east-1 (legacy) answers 200 to a repeated create, as AWS does
            raise S3Error("BucketAlreadyOwnedByYou", BucketName=req.bucket)
    return web.Response(headers={"Location": f"/{req.bucket}"})


async def head_bucket(req: S3Request) -> web.Response:
    bucket = await get_bucket(req)
    return web.Response(headers={"x-amz-bucket-region": bucket.location})


async def delete_bucket(req: S3Request) -> web.Response:
    bucket = await get_bucket(req)
    if not await req.gateway.metadata.delete_bucket(bucket.name):
        raise S3Error("BucketNotEmpty", BucketName=bucket.name)
    req.gateway.engine.collector.wake()  # uploads left open were aborted with the bucket
    return web.Response(status=204)


async def get_location(req: S3Request) -> web.Response:
    bucket = await get_bucket(req)
    # AWS answers an empty constraint for us-east-1.
    value = "" if bucket.location == "us-east-1" else bucket.location
    body = render("LocationConstraint", []).replace(b"</LocationConstraint>",
                                                     value.encode() + b"</LocationConstraint>")
    return web.Response(body=body, content_type="application/xml")


async def get_versioning(req: S3Request) -> web.Response:
    bucket = await get_bucket(req)
    status = bucket.attrs.get("versioning")
    body = render("VersioningConfiguration", [("Status", status)] if status else [])
    return web.Response(body=body, content_type="application/xml")


async def put_versioning(req: S3Request) -> web.Response:
    bucket = await get_bucket(req)
    config = parse(await read_body(req), "VersioningConfiguration")
    status = child_text(config, "Status")
    if status not in ("Enabled", "Suspended"):
        raise S3Error("MalformedXML", "The versioning Status must be Enabled or Suspended.")
    if child_text(config, "MfaDelete") == "Enabled":
        raise S3Error("NotImplemented", "MFA Delete is not supported.")
    if status != "Enabled" and lock.enabled(bucket):
        raise S3Error("InvalidBucketState", LOCKED_VERSIONING)
    # Only the versioning state: the store merges it, so a policy or ACL set while this
    # request's body was arriving is kept.
    updated = await req.gateway.metadata.update_bucket_attrs(bucket.name, {"versioning": status})
    if updated is None:
        raise S3Error("NoSuchBucket", BucketName=bucket.name)
    if status != "Enabled" and lock.enabled(updated):
        # Object Lock was enabled meanwhile (PutObjectLockConfiguration): it wins.
        await req.gateway.metadata.update_bucket_attrs(bucket.name, {"versioning": "Enabled"})
        raise S3Error("InvalidBucketState", LOCKED_VERSIONING)
    return web.Response()


async def list_versions(req: S3Request) -> web.Response:
    bucket = await get_bucket(req)
    q = req.query
    encoding = q.get("encoding-type")
    enc = key_encoder(encoding)
    prefix = q.get("prefix", "")
    delimiter = q.get("delimiter") or None
    max_keys = parse_max_keys(q.get("max-keys"))
    key_marker = q.get("key-marker") or None
    version_marker = q.get("version-id-marker") or None
    if version_marker and not key_marker:
        raise S3Error("InvalidArgument", "A version-id marker cannot be specified without a key "
                      "marker.", ArgumentName="version-id-marker", ArgumentValue=version_marker)
    try:
        listing = await req.gateway.metadata.list_versions(
            bucket.name, prefix, delimiter, key_marker, version_marker, max_keys) if max_keys \
            else VersionListing([], [], False, None, None)
    except LookupError:
        raise S3Error("InvalidArgument", "Invalid version id specified",
                      ArgumentName="version-id-marker", ArgumentValue=version_marker) from None
    accounts = req.gateway.accounts
    nodes: list[tuple[str, object]] = [
        ("Name", bucket.name), ("Prefix", enc(prefix)), ("KeyMarker", enc(key_marker or "")),
        ("VersionIdMarker", version_marker or ""), ("MaxKeys", max_keys)]
    if delimiter:
        nodes.append(("Delimiter", enc(delimiter)))
    if encoding:
        nodes.append(("EncodingType", encoding))
    nodes.append(("IsTruncated", listing.truncated))
    if listing.truncated:
        nodes.append(("NextKeyMarker", enc(listing.next_key or "")))
        if listing.next_version_id:
            nodes.append(("NextVersionIdMarker", listing.next_version_id))
    for v in listing.versions:
        owner_id = bucket.owner if access.acls_disabled(bucket) else v.owner  # Enforced
        owner = accounts.by_canonical_id(owner_id)
        entry: list[tuple[str, object]] = [
            ("Key", enc(v.key)), ("VersionId", v.version_id or "null"), ("IsLatest", v.latest),
            ("LastModified", iso_time(v.last_modified))]
        if not v.delete_marker:
            entry += [("ETag", f'"{v.etag}"'), ("Size", v.size),
                      ("StorageClass", storage_class_of(v))]
        entry.append(("Owner", owner_node(owner_id, owner.name if owner else "")))
        nodes.append(("DeleteMarker" if v.delete_marker else "Version", entry))
    nodes += [("CommonPrefixes", [("Prefix", enc(p))]) for p in listing.prefixes]
    return web.Response(body=render("ListVersionsResult", nodes), content_type="application/xml")


def key_encoder(encoding: str | None) -> Callable[[str], str]:
    """How keys and prefixes go into a listing: as they are, or URL-encoded with
    encoding-type=url (the only value S3 knows)."""
    if encoding is None:
        return lambda text: text
    if encoding != "url":
        raise S3Error("InvalidArgument", "Invalid Encoding Method specified in Request",
                      ArgumentName="encoding-type", ArgumentValue=encoding)
    return lambda text: quote(text, safe="/")


def parse_max_keys(value: str | None) -> int:
    if value is None:
        return MAX_KEYS
    try:
        number = int(value)
    except ValueError:
        raise S3Error("InvalidArgument", "Provided max-keys not an integer or within integer range",
                      ArgumentName="max-keys", ArgumentValue=value) from None
    if number < 0:
        raise S3Error("InvalidArgument", "Argument maxKeys must be an integer between 0 and 2147483647",
                      ArgumentName="max-keys", ArgumentValue=value)
    return min(number, MAX_KEYS)


def encode_token(key: str) -> str:
    return base64.urlsafe_b64encode(key.encode()).decode()


def decode_token(token: str) -> str:
    try:
        return base64.urlsafe_b64decode(token.encode()).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise S3Error("InvalidArgument", "The continuation token provided is incorrect",
                      ArgumentName="continuation-token") from None


async def list_objects(req: S3Request) -> web.Response:
    bucket = await get_bucket(req)
    q = req.query
    v2 = q.get("list-type") == "2"
    if "list-type" in q and not v2:
        raise S3Error("InvalidArgument", "Invalid List Type specified",
                      ArgumentName="list-type", ArgumentValue=q["list-type"])
    encoding = q.get("encoding-type")
    enc = key_encoder(encoding)
    prefix = q.get("prefix", "")
    delimiter = q.get("delimiter") or None
    max_keys = parse_max_keys(q.get("max-keys"))
    if v2:
        token = q.get("continuation-token")
        after = decode_token(token) if token is not None else (q.get("start-after") or None)
    else:
        after = q.get("marker") or None
    if max_keys == 0:
        listing = Listing([], [], False, None)
    else:
        # The bucket's records, merged with a read-through source's keys (gateway/moving/).
        listing = await req.gateway.read_through.list_objects(bucket, prefix, delimiter, after,
                                                              max_keys)
    accounts = req.gateway.accounts
    fetch_owner = not v2 or q.get("fetch-owner") == "true"
    contents = []
    for o in listing.objects:
        entry: list[tuple[str, object]] = [
            ("Key", enc(o.key)), ("LastModified", iso_time(o.last_modified)),
            ("ETag", f'"{o.etag}"'), ("Size", o.size)]
        if fetch_owner:
            owner_id = bucket.owner if access.acls_disabled(bucket) else o.owner  # Enforced
            owner = accounts.by_canonical_id(owner_id)
            entry.append(("Owner", owner_node(owner_id, owner.name if owner else "")))
        entry.append(("StorageClass", storage_class_of(o)))
        contents.append(("Contents", entry))
    nodes: list[tuple[str, object]] = [("Name", bucket.name), ("Prefix", enc(prefix))]
    if v2:
        if "continuation-token" in q:
            nodes.append(("ContinuationToken", q["continuation-token"]))
        if "start-after" in q:
            nodes.append(("StartAfter", enc(q["start-after"])))
        nodes.append(("KeyCount", len(listing.objects) + len(listing.prefixes)))
    else:
        nodes.append(("Marker", enc(q.get("marker", ""))))
    nodes.append(("MaxKeys", max_keys))
    if delimiter:
        nodes.append(("Delimiter", enc(delimiter)))
    if encoding:
        nodes.append(("EncodingType", encoding))
    nodes.append(("IsTruncated", listing.truncated))
    if listing.truncated and listing.next_marker is not None:
        if v2:
            nodes.append(("NextContinuationToken", encode_token(listing.next_marker)))
        elif delimiter:  # AWS sends NextMarker only with a delimiter
            nodes.append(("NextMarker", enc(listing.next_marker)))
    nodes += contents
    nodes += [("CommonPrefixes", [("Prefix", enc(p))]) for p in listing.prefixes]
    root = "ListBucketResult"
    return web.Response(body=render(root, nodes), content_type="application/xml")
