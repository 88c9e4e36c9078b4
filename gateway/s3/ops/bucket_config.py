"""Bucket configurations the gateway does not act on: lifecycle, website, logging, encryption,
object lock, notification, replication, accelerate, request payment.

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


# lifecycle
get_lifecycle = not_found("GetBucketLifecycleConfiguration", "NoSuchLifecycleConfiguration")
put_lifecycle = not_implemented("PutBucketLifecycleConfiguration")
delete_lifecycle = nothing_to_delete("DeleteBucketLifecycle")
# website
get_website = not_found("GetBucketWebsite", "NoSuchWebsiteConfiguration")
put_website = not_implemented("PutBucketWebsite")
delete_website = nothing_to_delete("DeleteBucketWebsite")
# encryption
get_encryption = not_found("GetBucketEncryption", "ServerSideEncryptionConfigurationNotFoundError")
put_encryption = not_implemented("PutBucketEncryption")
delete_encryption = nothing_to_delete("DeleteBucketEncryption")
# object lock
get_object_lock = not_found("GetObjectLockConfiguration", "ObjectLockConfigurationNotFoundError")
put_object_lock = not_implemented("PutObjectLockConfiguration")
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
