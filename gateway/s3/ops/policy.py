"""Bucket policy operations: Get/Put/DeleteBucketPolicy, GetBucketPolicyStatus. Validation and
evaluation live in gateway/s3/access.py; the policy is kept as the JSON text the client sent."""

from __future__ import annotations

from aiohttp import web

from gateway.errors import S3Error
from gateway.s3 import access
from gateway.s3.ops.common import get_bucket, read_body
from gateway.s3.request import S3Request
from gateway.s3.xml import render


async def get_bucket_policy(req: S3Request) -> web.Response:
    bucket = await get_bucket(req)
    policy = bucket.attrs.get("policy")
    if policy is None:
        raise S3Error("NoSuchBucketPolicy", BucketName=bucket.name)
    return web.Response(text=policy, content_type="application/json")


async def put_bucket_policy(req: S3Request) -> web.Response:
    bucket = await get_bucket(req)
    body = await read_body(req)
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise S3Error("MalformedPolicy", "Policies must be valid JSON and the first byte "
                      "must be '{'") from None
    try:
        access.parse_policy(text, bucket.name)
    except RecursionError:  # "[[[[..." nested past Python's stack: not a policy either
        raise S3Error("MalformedPolicy", "Policies must be valid JSON and the first byte "
                      "must be '{'") from None
    if access.blocks(bucket, "BlockPublicPolicy") and access.policy_is_public(text, bucket.name):
        raise S3Error("AccessDenied", "Access Denied: the bucket's public access block "
                      "(BlockPublicPolicy) refuses public policies.")
    await set_policy(req, bucket.name, text)
    return web.Response(status=204)


async def get_bucket_policy_status(req: S3Request) -> web.Response:
    bucket = await get_bucket(req)
    policy = bucket.attrs.get("policy")
    if policy is None:
        raise S3Error("NoSuchBucketPolicy", BucketName=bucket.name)
    body = render("PolicyStatus", [("IsPublic", access.policy_is_public(policy, bucket.name))])
    return web.Response(body=body, content_type="application/xml")


async def delete_bucket_policy(req: S3Request) -> web.Response:
    bucket = await get_bucket(req)
    await set_policy(req, bucket.name, None)
    return web.Response(status=204)


async def set_policy(req: S3Request, bucket_name: str, text: str | None) -> None:
    # Only the policy (None removes it): the store merges it into the attrs atomically, so
    # other settings (ACL, tags, CORS...) changed meanwhile are kept.
    if await req.gateway.metadata.update_bucket_attrs(bucket_name, {"policy": text}) is None:
        raise S3Error("NoSuchBucket", BucketName=bucket_name)
