"""Put/Get/DeleteBucketLifecycleConfiguration. The rules (validated as AWS does, see
gateway/lifecycle/rules.py) are kept in bucket.attrs["lifecycle"]; gateway/lifecycle/ runs them."""

from __future__ import annotations

from aiohttp import web

from gateway.errors import S3Error
from gateway.lifecycle.rules import Rule, parse_lifecycle, render_rules
from gateway.s3.ops.common import get_bucket, read_body
from gateway.s3.request import S3Request
from gateway.s3.xml import render


async def put_lifecycle(req: S3Request) -> web.Response:
    bucket = await get_bucket(req)
    rules = parse_lifecycle(await read_body(req, require_digest=True),
                            req.gateway.settings.storage_classes)
    await _set(req, bucket.name, rules)
    # The first scan now (it reschedules itself while the bucket has rules).
    await req.gateway.lifecycle.schedule(bucket.name)
    return web.Response()


async def get_lifecycle(req: S3Request) -> web.Response:
    bucket = await get_bucket(req)
    rules = bucket.attrs.get("lifecycle")
    if not rules:
        raise S3Error("NoSuchLifecycleConfiguration", BucketName=bucket.name)
    return web.Response(body=render("LifecycleConfiguration", render_rules(rules)),
                        content_type="application/xml")


async def delete_lifecycle(req: S3Request) -> web.Response:
    bucket = await get_bucket(req)
    await _set(req, bucket.name, None)
    return web.Response(status=204)


async def _set(req: S3Request, bucket_name: str, rules: list[Rule] | None) -> None:
    # Only the lifecycle key: other bucket settings changed meanwhile are kept.
    if await req.gateway.metadata.update_bucket_attrs(bucket_name, {"lifecycle": rules}) is None:
        raise S3Error("NoSuchBucket", BucketName=bucket_name)
