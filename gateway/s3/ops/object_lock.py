"""Object Lock over S3: Put/GetObjectLockConfiguration, Put/GetObjectRetention,
Put/GetObjectLegalHold, and the x-amz-object-lock-* / x-amz-bypass-governance-retention
headers other operations take.

Parse and authorize only: what is allowed is decided by gateway/objects/lock.py, through the
object engine (which checks deletes inside the metadata transaction)."""

from __future__ import annotations

from collections.abc import Mapping

from aiohttp import web

from gateway.errors import S3Error
from gateway.metadata.base import BucketRecord, ObjectRecord
from gateway.objects import lock
from gateway.objects.engine import versioning_state
from gateway.objects.lock import LockRequest, Retention
from gateway.s3 import access
from gateway.s3.ops.common import (
    content_md5,
    get_bucket,
    read_body,
    requested_checksum,
    requested_object,
    version_headers,
)
from gateway.s3.request import S3Request
from gateway.s3.xml import Node, child_text, parse, render

MODE_HEADER = "x-amz-object-lock-mode"
UNTIL_HEADER = "x-amz-object-lock-retain-until-date"
HOLD_HEADER = "x-amz-object-lock-legal-hold"
BYPASS_HEADER = "x-amz-bypass-governance-retention"
BYPASS_ACTION = "s3:BypassGovernanceRetention"
NOT_FOUND_MESSAGE = "The specified object does not have a ObjectLock configuration"


def xml_response(root: str, nodes: list[Node], headers: dict[str, str] | None = None
                 ) -> web.Response:
    return web.Response(body=render(root, nodes), content_type="application/xml",
                        headers=headers)


# --- headers of writes -------------------------------------------------------------------------
def lock_request(headers: Mapping[str, str]) -> LockRequest | None:
    """The x-amz-object-lock-* headers of PutObject, CopyObject, CreateMultipartUpload,
    validated as AWS does (InvalidArgument); None when there are none."""
    mode, until = headers.get(MODE_HEADER), headers.get(UNTIL_HEADER)
    hold = headers.get(HOLD_HEADER)
    if mode is None and until is None and hold is None:
        return None
    retention = None
    if (mode is None) != (until is None):
        raise S3Error("InvalidArgument", "x-amz-object-lock-retain-until-date and "
                      "x-amz-object-lock-mode must both be supplied",
                      ArgumentName=MODE_HEADER if mode is None else UNTIL_HEADER,
                      ArgumentValue="")
    if mode is not None and until is not None:
        if mode not in lock.MODES:
            raise S3Error("InvalidArgument", "Unknown wormMode directive.",
                          ArgumentName=MODE_HEADER, ArgumentValue=mode)
        when = lock.parse_date(until)
        if when is None:
            raise S3Error("InvalidArgument", "The retain until date must be provided in "
                          "ISO 8601 format", ArgumentName=UNTIL_HEADER, ArgumentValue=until)
        retention = Retention(mode, when)
    legal_hold = None
    if hold is not None:
        if hold not in ("ON", "OFF"):
            raise S3Error("InvalidArgument", "Legal Hold must be either of 'ON' or 'OFF'",
                          ArgumentName=HOLD_HEADER, ArgumentValue=hold)
        legal_hold = hold == "ON"
    return LockRequest(retention, legal_hold)


def require_digest(req: S3Request, bucket: BucketRecord | None, asked: LockRequest | None, *,
                   what: str = "Put Object", locked: bool | None = None) -> None:
    """A PUT (or a part, `what`) that locks what it writes must carry Content-MD5 or an
    x-amz-checksum-*, as AWS requires. `locked`: whether it does (default: the request's
    headers or the bucket's default retention)."""
    if locked is None:
        locked = bucket is not None and lock.requires_digest(bucket, asked)
    if locked and content_md5(req) is None and requested_checksum(req) is None:
        raise S3Error("InvalidRequest", f"Content-MD5 OR x-amz-checksum- HTTP header is "
                      f"required for {what} requests with Object Lock parameters")


async def bypass_governance(req: S3Request, bucket: BucketRecord, key: str) -> bool:
    """x-amz-bypass-governance-retention: true, from a requester who may
    s3:BypassGovernanceRetention on the key. Without the permission the header counts for
    nothing: a GOVERNANCE retention then refuses as for anyone else."""
    if req.headers.get(BYPASS_HEADER, "").strip().lower() != "true":
        return False
    return await _allowed(req, bucket, BYPASS_ACTION, key)


async def _allowed(req: S3Request, bucket: BucketRecord, action: str, key: str) -> bool:
    try:
        await access.authorize(req, bucket, action, key)
    except S3Error:
        return False
    return True


async def hide_unpermitted(req: S3Request, bucket: BucketRecord, obj: ObjectRecord,
                           headers: dict[str, str]) -> None:
    """GET/HEAD answer a version's retention only to who may s3:GetObjectRetention, and its
    legal hold only to who may s3:GetObjectLegalHold, as AWS does."""
    if lock.ATTR not in obj.attrs:
        return
    if MODE_HEADER in headers and not await _allowed(req, bucket, "s3:GetObjectRetention",
                                                     obj.key):
        headers.pop(MODE_HEADER, None)
        headers.pop(UNTIL_HEADER, None)
    if HOLD_HEADER in headers and not await _allowed(req, bucket, "s3:GetObjectLegalHold",
                                                     obj.key):
        headers.pop(HOLD_HEADER, None)


# --- the bucket configuration ------------------------------------------------------------------
def _period(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        return int(text.strip())
    except ValueError:
        raise S3Error("MalformedXML") from None


def parse_configuration(body: bytes) -> dict[str, object]:
    """An ObjectLockConfiguration document -> bucket.attrs["objectLock"]."""
    document = parse(body, "ObjectLockConfiguration")
    if child_text(document, "ObjectLockEnabled") != "Enabled":
        raise S3Error("MalformedXML")
    config: dict[str, object] = {"enabled": True}
    rule = document.find("Rule")
    if rule is not None:
        retention = rule.find("DefaultRetention")
        if retention is None:
            raise S3Error("MalformedXML")
        config["rule"] = lock.checked_rule(child_text(retention, "Mode"),
                                           _period(child_text(retention, "Days")),
                                           _period(child_text(retention, "Years")))
    return config


async def get_object_lock_configuration(req: S3Request) -> web.Response:
    bucket = await get_bucket(req)
    if not lock.enabled(bucket):
        raise S3Error("ObjectLockConfigurationNotFoundError", BucketName=bucket.name)
    nodes: list[Node] = [("ObjectLockEnabled", "Enabled")]
    rule = lock.default_rule(bucket)
    if rule is not None:
        period = ("Days", rule["days"]) if rule.get("days") is not None \
            else ("Years", rule["years"])
        nodes.append(("Rule", [("DefaultRetention", [("Mode", rule["mode"]), period])]))
    return xml_response("ObjectLockConfiguration", nodes)


async def put_object_lock_configuration(req: S3Request) -> web.Response:
    bucket = await get_bucket(req)
    config = parse_configuration(await read_body(req, require_digest=True))
    if not lock.enabled(bucket) and versioning_state(bucket) != "Enabled":
        # AWS enables Object Lock on an existing bucket only while versioning is on.
        raise S3Error("InvalidBucketState", "Versioning must be 'Enabled' on the bucket to "
                      "apply a Object Lock configuration")
    # Versioning with it, in the same merge: a concurrent PutBucketVersioning Suspended then
    # either sees the lock (and is refused) or is undone here (bucket.put_versioning).
    changes = {lock.BUCKET_ATTR: config, "versioning": "Enabled"}
    if await req.gateway.metadata.update_bucket_attrs(bucket.name, changes) is None:
        raise S3Error("NoSuchBucket", BucketName=bucket.name)
    return web.Response()


# --- a version's retention and legal hold ------------------------------------------------------
async def get_object_retention(req: S3Request) -> web.Response:
    bucket = await get_bucket(req)
    lock.require_enabled(bucket)
    obj = await requested_object(req, bucket)
    retention = lock.retention_of(obj)
    if retention is None:
        raise S3Error("NoSuchObjectLockConfiguration", NOT_FOUND_MESSAGE)
    return xml_response("Retention", [("Mode", retention.mode),
                                      ("RetainUntilDate", lock.render_date(retention.until))])


def parse_retention(body: bytes) -> Retention | None:
    """A Retention document: a mode and a date, or neither (the retention removed)."""
    document = parse(body, "Retention")
    mode, until = child_text(document, "Mode"), child_text(document, "RetainUntilDate")
    if mode is None and until is None:
        return None
    if mode not in lock.MODES or until is None:
        raise S3Error("MalformedXML")
    when = lock.parse_date(until)
    if when is None:
        raise S3Error("MalformedXML")
    return lock.future_retention(mode, when)


async def put_object_retention(req: S3Request) -> web.Response:
    bucket = await get_bucket(req)
    lock.require_enabled(bucket)
    new = parse_retention(await read_body(req, require_digest=True))
    assert req.key is not None
    bypass = await bypass_governance(req, bucket, req.key)
    obj = await requested_object(req, bucket)
    updated = await req.gateway.engine.update_lock(
        bucket, obj, lambda current: lock.with_retention(current, new, bypass),
        lambda: requested_object(req, bucket))
    return web.Response(headers=version_headers(bucket, updated))


async def get_object_legal_hold(req: S3Request) -> web.Response:
    bucket = await get_bucket(req)
    lock.require_enabled(bucket)
    obj = await requested_object(req, bucket)
    hold = lock.legal_hold_of(obj)
    if hold is None:
        raise S3Error("NoSuchObjectLockConfiguration", NOT_FOUND_MESSAGE)
    return xml_response("LegalHold", [("Status", "ON" if hold else "OFF")])


async def put_object_legal_hold(req: S3Request) -> web.Response:
    bucket = await get_bucket(req)
    lock.require_enabled(bucket)
    document = parse(await read_body(req, require_digest=True), "LegalHold")
    status = child_text(document, "Status")
    if status not in ("ON", "OFF"):
        raise S3Error("MalformedXML")
    obj = await requested_object(req, bucket)
    updated = await req.gateway.engine.update_lock(
        bucket, obj, lambda current: lock.with_legal_hold(current, status == "ON"),
        lambda: requested_object(req, bucket))
    return web.Response(headers=version_headers(bucket, updated))
