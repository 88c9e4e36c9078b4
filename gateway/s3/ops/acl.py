"""ACL operations: Get/PutBucketAcl, Get/PutObjectAcl. The rules live in gateway/s3/access.py."""

from __future__ import annotations

from xml.etree.ElementTree import Element

from aiohttp import web

from gateway.errors import S3Error
from gateway.metadata.base import BucketRecord
from gateway.s3 import access
from gateway.s3.access import Grant
from gateway.s3.ops.common import get_bucket, read_body, requested_object
from gateway.s3.ops.service import owner_node
from gateway.s3.request import S3Request
from gateway.s3.xml import parse, render

XSI = 'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"'
_XSI_TYPE = "{http://www.w3.org/2001/XMLSchema-instance}type"


def render_acl(req: S3Request, owner: str, grants: list[Grant]) -> web.Response:
    accounts = req.gateway.accounts

    def display(canonical_id: str) -> str:
        account = accounts.by_canonical_id(canonical_id)
        return account.name if account else ""

    nodes = []
    for grant in access.ordered_acl(owner, grants):
        if "uri" in grant:
            grantee = (f'Grantee {XSI} xsi:type="Group"', [("URI", grant["uri"])])
        else:
            grantee = (f'Grantee {XSI} xsi:type="CanonicalUser"',
                       owner_node(grant["id"], display(grant["id"])))
        nodes.append(("Grant", [grantee, ("Permission", grant["permission"])]))
    body = render("AccessControlPolicy", [("Owner", owner_node(owner, display(owner))),
                                          ("AccessControlList", nodes)])
    return web.Response(body=body, content_type="application/xml")


def parse_acl_body(req: S3Request, body: bytes, owner: str) -> list[Grant]:
    """An AccessControlPolicy document: its Owner must be the resource's owner."""
    root = parse(body)
    if root.tag != "AccessControlPolicy":
        raise S3Error("MalformedACLError")
    owner_id = root.findtext("Owner/ID")
    if owner_id is None:
        raise S3Error("MalformedACLError")
    if owner_id.strip() != owner:
        raise S3Error("AccessDenied")
    acl = root.find("AccessControlList")
    if acl is None:
        raise S3Error("MalformedACLError")
    grants: list[Grant] = []
    for node in acl:
        if node.tag != "Grant":
            raise S3Error("MalformedACLError")
        grants.append(parse_grant(req, node))
    return grants


def parse_grant(req: S3Request, node: Element) -> Grant:
    grantee = node.find("Grantee")
    permission = (node.findtext("Permission") or "").strip()
    if grantee is None or permission not in access.PERMISSIONS:
        raise S3Error("MalformedACLError")
    kind = grantee.get(_XSI_TYPE) or grantee.get("type")
    fields = {"CanonicalUser": ("ID", "id"), "AmazonCustomerByEmail": ("EmailAddress",
                                                                     "emailaddress"),
              "Group": ("URI", "uri")}
    if kind is None:  # no xsi:type: infer it from the one identifying element present
        kind = next((k for k, (tag, _) in fields.items() if grantee.find(tag) is not None), None)
    if kind not in fields:
        raise S3Error("MalformedACLError")
    tag, resolver_kind = fields[kind]
    value = grantee.findtext(tag)
    if not value or not value.strip():
        raise S3Error("MalformedACLError")
    resolved = access.resolve_grantee(req.gateway.accounts, resolver_kind, value.strip())
    return {**resolved, "permission": permission}


async def requested_acl(req: S3Request, bucket: BucketRecord) -> list[Grant]:
    """The bucket's new ACL, from the canned/grant headers or the XML body (never both)."""
    return acl_request(req, await read_body(req), bucket.owner, None, bucket)


def acl_request(req: S3Request, body: bytes, owner: str, bucket_owner: str | None,
                bucket: BucketRecord) -> list[Grant]:
    """The ACL the headers or `body` ask for on a resource owned by `owner` in `bucket`
    (whose public access block may refuse it: BlockPublicAcls)."""
    from_headers = access.acl_from_headers(req, owner, bucket_owner)
    if from_headers is not None:
        if body.strip():
            raise S3Error("UnexpectedContent")
        return from_headers
    if not body.strip():
        raise S3Error("MalformedACLError", "You must specify an ACL: the x-amz-acl header, "
                      "x-amz-grant-* headers or an AccessControlPolicy body.")
    grants = parse_acl_body(req, body, owner)
    access.refuse_public_acl(bucket, grants)
    return grants


def refuse_when_disabled(bucket: BucketRecord) -> None:
    """BucketOwnerEnforced: ACLs are off; setting one is refused, as AWS does."""
    if access.acls_disabled(bucket):
        raise S3Error("AccessControlListNotSupported")


async def get_bucket_acl(req: S3Request) -> web.Response:
    bucket = await get_bucket(req)
    if access.acls_disabled(bucket):  # reads still work: the owner's full control
        return render_acl(req, bucket.owner, [access.owner_grant(bucket.owner)])
    return render_acl(req, bucket.owner, access.acl_of(bucket))


async def put_bucket_acl(req: S3Request) -> web.Response:
    bucket = await get_bucket(req)
    refuse_when_disabled(bucket)
    grants = await requested_acl(req, bucket)
    # Only the ACL: a merge in the store, so settings changed meanwhile stay as they are.
    if await req.gateway.metadata.update_bucket_attrs(bucket.name, {"acl": grants}) is None:
        raise S3Error("NoSuchBucket", BucketName=bucket.name)
    return web.Response()


async def get_object_acl(req: S3Request) -> web.Response:
    bucket = await get_bucket(req)
    record = await requested_object(req, bucket)  # READ_ACP on exactly the version named
    if access.acls_disabled(bucket):  # the bucket owner owns every object, fully
        return render_acl(req, bucket.owner, [access.owner_grant(bucket.owner)])
    return render_acl(req, record.owner, access.acl_of(record))


async def put_object_acl(req: S3Request) -> web.Response:
    bucket = await get_bucket(req)
    record = await requested_object(req, bucket)  # WRITE_ACP on exactly the version named
    refuse_when_disabled(bucket)
    body = await read_body(req)
    # The engine sets it by compare-and-set. The grants are built for the version's owner
    # (canned ACLs and the body's Owner name it), and a version changed meanwhile is looked up
    # and authorized again: the current one may now be someone else's, with an ACL that does
    # not let this requester change it.
    await req.gateway.engine.update_acl(
        bucket, record, lambda found: acl_request(req, body, found.owner, bucket.owner, bucket),
        lambda: requested_object(req, bucket), requester=access.requester_id(req))
    return web.Response()
