"""Tagging: Get/Put/DeleteObjectTagging and Get/Put/DeleteBucketTagging.

The gateway's metadata holds the tags; after an object's tags change, a one-piece object's
backend copy is told too (the engine's update_tags: Location.update_meta) so clouds carry them
natively.
"""

from __future__ import annotations

from aiohttp import web

from gateway.errors import S3Error
from gateway.metadata.base import BucketRecord, ObjectRecord
from gateway.s3 import access
from gateway.s3.ops.common import (
    get_bucket,
    read_body,
    requested_object,
    validate_tags,
    version_headers,
)
from gateway.s3.request import S3Request
from gateway.s3.xml import Node, parse, render

MAX_BUCKET_TAGS = 50


def parse_tagging(body: bytes) -> dict[str, str]:
    """A <Tagging><TagSet><Tag><Key/><Value/></Tag>...</TagSet></Tagging> document."""
    root = parse(body, "Tagging")
    tag_set = root.find("TagSet")
    if tag_set is None:
        raise S3Error("MalformedXML")
    tags: dict[str, str] = {}
    for tag in tag_set.findall("Tag"):
        key, value = tag.findtext("Key"), tag.findtext("Value")
        if key is None or value is None:
            raise S3Error("MalformedXML")
        if key in tags:
            raise S3Error("InvalidTag", "Cannot provide multiple Tags with the same key",
                          TagKey=key)
        tags[key] = value
    return tags


def validate_bucket_tags(tags: dict[str, str]) -> None:
    if len(tags) > MAX_BUCKET_TAGS:
        raise S3Error("InvalidTag", "Bucket tag count cannot be greater than 50")
    for key, value in tags.items():
        validate_tags({key: value})  # the same key and value limits as object tags
        if key.lower().startswith("aws:"):
            raise S3Error("InvalidTag", "System tags cannot be added/updated by requester")


def tagging_xml(tags: dict[str, str]) -> web.Response:
    tag_nodes: list[Node] = [("Tag", [("Key", k), ("Value", v)]) for k, v in tags.items()]
    return web.Response(body=render("Tagging", [("TagSet", tag_nodes)]),
                        content_type="application/xml")


async def get_object_tagging(req: S3Request) -> web.Response:
    bucket = await get_bucket(req)
    obj = await requested_object(req, bucket)  # authorized on exactly the version named
    response = tagging_xml(obj.tags)
    response.headers.update(version_headers(bucket, obj))
    return response


async def set_object_tags(req: S3Request, bucket: BucketRecord, tags: dict[str, str],
                          obj: ObjectRecord | None = None) -> None:
    """The engine sets the tags of the version the request names. `obj`: that version,
    already looked up and authorized for this request, if any; a retry looks it up and
    authorizes it again (another version, of another owner, may have taken its place)."""
    if obj is None:
        obj = await requested_object(req, bucket)
    await req.gateway.engine.update_tags(bucket, obj, tags, lambda: requested_object(req, bucket),
                                         requester=access.requester_id(req))


async def put_object_tagging(req: S3Request) -> web.Response:
    bucket = await get_bucket(req)
    assert req.key is not None
    obj = await requested_object(req, bucket)  # authorized before the body is even read
    tags = parse_tagging(await read_body(req))
    validate_tags(tags)
    await set_object_tags(req, bucket, tags, obj)
    return web.Response()


async def delete_object_tagging(req: S3Request) -> web.Response:
    bucket = await get_bucket(req)
    await set_object_tags(req, bucket, {})
    return web.Response(status=204)


async def get_bucket_tagging(req: S3Request) -> web.Response:
    bucket = await get_bucket(req)
    tags = bucket.attrs.get("tags")
    if not tags:
        raise S3Error("NoSuchTagSet", BucketName=bucket.name)
    return tagging_xml(tags)


async def put_bucket_tagging(req: S3Request) -> web.Response:
    bucket = await get_bucket(req)
    tags = parse_tagging(await read_body(req))
    validate_bucket_tags(tags)
    await update_bucket_tags(req, bucket, tags)
    return web.Response(status=204)


async def delete_bucket_tagging(req: S3Request) -> web.Response:
    bucket = await get_bucket(req)
    await update_bucket_tags(req, bucket, {})
    return web.Response(status=204)


async def update_bucket_tags(req: S3Request, bucket: BucketRecord, tags: dict[str, str]) -> None:
    # Only the tags (None removes them): the store merges them into the attrs atomically, so
    # other settings (ACL, policy...) changed meanwhile are kept.
    if await req.gateway.metadata.update_bucket_attrs(bucket.name, {"tags": tags or None}) is None:
        raise S3Error("NoSuchBucket", BucketName=bucket.name)
