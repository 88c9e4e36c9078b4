"""Service-level operations: ListBuckets."""

from __future__ import annotations

from aiohttp import web

from gateway.s3.request import S3Request
from gateway.s3.xml import iso_time, render


def owner_node(canonical_id: str, display_name: str) -> list[tuple[str, str]]:
    return [("ID", canonical_id), ("DisplayName", display_name)]


async def list_buckets(req: S3Request) -> web.Response:
    account = req.require_account()
    buckets = await req.gateway.metadata.list_buckets(account.canonical_id)
    body = render("ListAllMyBucketsResult", [
        ("Owner", owner_node(account.canonical_id, account.name)),
        ("Buckets", [("Bucket", [("Name", b.name), ("CreationDate", iso_time(b.created))])
                     for b in buckets]),
    ])
    return web.Response(body=body, content_type="application/xml")
