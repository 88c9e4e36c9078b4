"""Bucket settings: the public access block and object ownership (enforced by
gateway/s3/access.py), and the bucket configurations the gateway does not act on: website, logging, encryption,
notification, replication, accelerate, request payment.

Clients (SDKs, terraform, backup tools) read these routinely, so a GET answers what AWS answers
for a bucket where nothing is configured: an empty document, or the configuration's own
"not found" error. A PUT that only asks for that same unconfigured state succeeds; any other
PUT answers NotImplemented (501), never a 500. A DELETE of a configuration that cannot exist
succeeds, as on AWS.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from xml.etree.ElementTree import Element

from aiohttp import web

from gateway.errors import S3Error
from gateway.s3.access import (
    OWNERSHIP_MODES,
    PUBLIC_ACCESS_SETTINGS,
    Grant,
    owner_grant,
)
from gateway.s3.ops.common import get_bucket, read_body
from gateway.s3.request import S3Request
from gateway.s3.xml import Node, parse, render

Handler = Callable[[S3Request], Awaitable[web.Response]]


def xml_response(root: str, nodes: list[Node]) -> web.Response:
    return web.Response(body=render(root, nodes), content_type="application/xml")


def _named(handler: Handler, name: str) -> Handler:
    handler.__name__ = handler.__qualname__ = name  # the access log names the operation
    return handler


def not_found(operation: str, code: str) -> Handler:
    """GET of a configuration AWS reports as absent with its own 404 error code."""
    async def handler(req: S3Request) -> web.Response:
        bucket = await get_bucket(req)
        raise S3Error(code, BucketName=bucket.name)
    return _named(handler, operation)


def empty_default(operation: str, root: str, nodes: list[Node]) -> Handler:
    """GET of a configuration AWS answers with its unconfigured document."""
    async def handler(req: S3Request) -> web.Response:
        await get_bucket(req)
        return xml_response(root, nodes)
    return _named(handler, operation)


def not_implemented(operation: str) -> Handler:
    async def handler(req: S3Request) -> web.Response:
        await get_bucket(req)
        raise S3Error("NotImplemented", f"{operation} is not implemented by this gateway.")
    return _named(handler, operation)


def nothing_to_delete(operation: str) -> Handler:
    async def handler(req: S3Request) -> web.Response:
        await get_bucket(req)
        return web.Response(status=204)
    return _named(handler, operation)


def accept_default(operation: str, root: str, is_default: Callable[[Element], bool]) -> Handler:
    """PUT that succeeds when the document asks for the unconfigured state (e.g. logging off),
    NotImplemented for anything the gateway would have to act on."""
    async def handler(req: S3Request) -> web.Response:
        await get_bucket(req)
        document = parse(await read_body(req), root)
        if not is_default(document):
            raise S3Error("NotImplemented", f"{operation} is not implemented by this gateway "
                          "beyond its default setting.")
        return web.Response()
    return _named(handler, operation)


def _has_no_children(document: Element) -> bool:
    return len(document) == 0


def _accelerate_suspended(document: Element) -> bool:
    status = document.findtext("Status")
    if status not in ("Enabled", "Suspended"):
        raise S3Error("MalformedXML")
    return status == "Suspended"


def _payer_is_owner(document: Element) -> bool:
    payer = document.findtext("Payer")
    if payer not in ("BucketOwner", "Requester"):
        raise S3Error("MalformedXML")
    return payer == "BucketOwner"


# (lifecycle is acted on: gateway/s3/ops/lifecycle.py, gateway/lifecycle/)
# website
get_website = not_found("GetBucketWebsite", "NoSuchWebsiteConfiguration")
put_website = not_implemented("PutBucketWebsite")
delete_website = nothing_to_delete("DeleteBucketWebsite")
# encryption
get_encryption = not_found("GetBucketEncryption", "ServerSideEncryptionConfigurationNotFoundError")
put_encryption = not_implemented("PutBucketEncryption")
delete_encryption = nothing_to_delete("DeleteBucketEncryption")
# (object lock is acted on: gateway/s3/ops/object_lock.py, gateway/objects/lock.py)
# replication
get_replication = not_found("GetBucketReplication", "ReplicationConfigurationNotFoundError")
put_replication = not_implemented("PutBucketReplication")
delete_replication = nothing_to_delete("DeleteBucketReplication")
# logging
get_logging = empty_default("GetBucketLogging", "BucketLoggingStatus", [])
put_logging = accept_default("PutBucketLogging", "BucketLoggingStatus", _has_no_children)
# notification
get_notification = empty_default("GetBucketNotificationConfiguration",
                                 "NotificationConfiguration", [])
put_notification = accept_default("PutBucketNotificationConfiguration",
                                  "NotificationConfiguration", _has_no_children)
# transfer acceleration
get_accelerate = empty_default("GetBucketAccelerateConfiguration", "AccelerateConfiguration", [])
put_accelerate = accept_default("PutBucketAccelerateConfiguration", "AccelerateConfiguration",
                                _accelerate_suspended)
# request payment
get_request_payment = empty_default("GetBucketRequestPayment", "RequestPaymentConfiguration",
                                    [("Payer", "BucketOwner")])
put_request_payment = accept_default("PutBucketRequestPayment", "RequestPaymentConfiguration",
                                     _payer_is_owner)


# --- settings the gateway acts on: public access block, object ownership ----------------------
# Kept in bucket.attrs ("publicAccessBlock": {setting: bool}, "ownership": mode) and enforced
# by gateway/s3/access.py.

async def get_public_access_block(req: S3Request) -> web.Response:
    bucket = await get_bucket(req)
    config = bucket.attrs.get("publicAccessBlock")
    if config is None:
        raise S3Error("NoSuchPublicAccessBlockConfiguration", BucketName=bucket.name)
    return xml_response("PublicAccessBlockConfiguration",
                        [(name, bool(config.get(name))) for name in PUBLIC_ACCESS_SETTINGS])


async def put_public_access_block(req: S3Request) -> web.Response:
    bucket = await get_bucket(req)
    document = parse(await read_body(req), "PublicAccessBlockConfiguration")
    config: dict[str, bool] = {}
    for node in document:
        value = (node.text or "").strip().lower()
        if node.tag not in PUBLIC_ACCESS_SETTINGS or node.tag in config \
                or value not in ("true", "false"):
            raise S3Error("MalformedXML")
        config[node.tag] = value == "true"
    await update_attrs(req, bucket.name, {"publicAccessBlock": {
        name: config.get(name, False) for name in PUBLIC_ACCESS_SETTINGS}})
    return web.Response()


async def delete_public_access_block(req: S3Request) -> web.Response:
    bucket = await get_bucket(req)
    await update_attrs(req, bucket.name, {"publicAccessBlock": None})
    return web.Response(status=204)


def ownership_mode(value: str | None) -> str:
    """An ObjectOwnership value (x-amz-object-ownership, OwnershipControls' rule)."""
    if value not in OWNERSHIP_MODES:
        raise S3Error("InvalidArgument", f"Invalid x-amz-object-ownership: {value}; expected "
                      f"one of {', '.join(OWNERSHIP_MODES)}.", ArgumentName="ObjectOwnership",
                      ArgumentValue=value or "")
    return value


def check_enforceable(acl: list[Grant] | None, owner: str) -> None:
    """BucketOwnerEnforced needs a bucket ACL that grants only its owner's full control."""
    if acl and any(grant != owner_grant(owner) for grant in acl):
        raise S3Error("InvalidBucketAclWithObjectOwnership")


async def get_ownership_controls(req: S3Request) -> web.Response:
    bucket = await get_bucket(req)
    mode = bucket.attrs.get("ownership")
    if mode is None:
        raise S3Error("OwnershipControlsNotFoundError", BucketName=bucket.name)
    return xml_response("OwnershipControls", [("Rule", [("ObjectOwnership", mode)])])


async def put_ownership_controls(req: S3Request) -> web.Response:
    bucket = await get_bucket(req)
    document = parse(await read_body(req), "OwnershipControls")
    rules = document.findall("Rule")
    if len(rules) != 1 or len(document) != 1:
        raise S3Error("MalformedXML")
    value = rules[0].findtext("ObjectOwnership")
    if value not in OWNERSHIP_MODES:
        raise S3Error("MalformedXML")
    if value == "BucketOwnerEnforced":
        check_enforceable(bucket.attrs.get("acl"), bucket.owner)
    await update_attrs(req, bucket.name, {"ownership": value})
    return web.Response()


async def delete_ownership_controls(req: S3Request) -> web.Response:
    bucket = await get_bucket(req)
    await update_attrs(req, bucket.name, {"ownership": None})
    return web.Response(status=204)


async def update_attrs(req: S3Request, bucket_name: str, changes: dict[str, object]) -> None:
    # Only these settings: the store merges them, so others changed meanwhile are kept.
    if await req.gateway.metadata.update_bucket_attrs(bucket_name, changes) is None:
        raise S3Error("NoSuchBucket", BucketName=bucket_name)
