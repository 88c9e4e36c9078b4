"""Service-level operations: ListBuckets (with AWS's pagination: max-buckets,
continuation-token, prefix, bucket-region)."""

from __future__ import annotations

import base64
import binascii

from aiohttp import web

from gateway.errors import S3Error
from gateway.s3.request import S3Request
from gateway.s3.xml import Node, iso_time, render

MAX_BUCKETS = 10_000  # AWS's bound on max-buckets, and a page when none is asked for


def owner_node(canonical_id: str, display_name: str) -> list[tuple[str, str]]:
    return [("ID", canonical_id), ("DisplayName", display_name)]


def parse_max_buckets(value: str | None) -> int:
    if value is None:
        return MAX_BUCKETS
    text = value.strip()
    if not text.isascii() or not text.isdigit() or not 1 <= int(text) <= MAX_BUCKETS:
        raise S3Error("InvalidArgument", "Argument max-buckets must be an integer between 1 "
                      f"and {MAX_BUCKETS}", ArgumentName="max-buckets", ArgumentValue=value)
    return int(text)


def encode_token(name: str) -> str:
    """The opaque continuation token: the last bucket name of the page."""
    return base64.urlsafe_b64encode(name.encode()).decode()


def decode_token(token: str) -> str:
    try:
        name = base64.urlsafe_b64decode(token.encode()).decode()
    except (binascii.Error, UnicodeError, ValueError):
        name = ""
    if not name:
        raise S3Error("InvalidArgument", "The continuation token provided is incorrect",
                      ArgumentName="continuation-token", ArgumentValue=token)
    return name


async def list_buckets(req: S3Request) -> web.Response:
    account = req.require_account()
    q = req.query
    limit = parse_max_buckets(q.get("max-buckets"))
    prefix = q.get("prefix", "")
    region = q.get("bucket-region")
    token = q.get("continuation-token")
    after = decode_token(token) if token is not None else None
    buckets = [b for b in await req.gateway.metadata.list_buckets(account.canonical_id)
               if b.name.startswith(prefix) and (after is None or b.name > after)
               and (not region or b.location == region)]  # sorted by name
    page = buckets[:limit]
    nodes: list[Node] = [
        ("Buckets", [("Bucket", [("Name", b.name), ("CreationDate", iso_time(b.created)),
                                 ("BucketRegion", b.location)]) for b in page]),
        ("Owner", owner_node(account.canonical_id, account.name)),
    ]
    if len(buckets) > limit:  # AWS names the next page's token ContinuationToken
        nodes.append(("ContinuationToken", encode_token(page[-1].name)))
    if "prefix" in q:
        nodes.append(("Prefix", prefix))
    body = render("ListAllMyBucketsResult", nodes)
    return web.Response(body=body, content_type="application/xml")
