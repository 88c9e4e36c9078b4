"""Tagging: Get/Put/DeleteObjectTagging and Get/Put/DeleteBucketTagging.

The gateway's metadata holds the tags; after an object's tags change, a one-piece object's
backend copy is told too (Location.update_meta) so clouds carry them natively.
"""

from __future__ import annotations

from aiohttp import web

from gateway.errors import S3Error
from gateway.metadata.base import BucketRecord, ObjectRecord
from gateway.metadata.ledger import dropped_pieces
from gateway.s3.ops.common import (
    get_bucket,
    object_meta,
    read_body,
    requested_object,
    validate_tags,
    version_headers,
)
from gateway.s3.request import S3Request
from gateway.s3.xml import Node, parse, render
from gateway.translators.base import NotFound, Stored

MAX_BUCKET_TAGS = 50
# Tries of the read / update-backend / compare-and-set cycle before giving up to a writer.
UPDATE_ATTEMPTS = 3


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
    """Backend first (it may hand back a changed piece, e.g. a new etag), then metadata by
    compare-and-set, so a concurrent overwrite is never clobbered with the old pieces.
    `obj`: the version already looked up and authorized for this request, if any."""
    for _ in range(UPDATE_ATTEMPTS):
        if obj is None:
            # Authorized on the version found: a retry may find another one (another owner).
            obj = await requested_object(req, bucket)
        pieces = obj.pieces
        if len(pieces) == 1 and pieces[0].location in req.gateway.locations:
            location = req.gateway.locations[pieces[0].location]
            meta = object_meta(obj.headers, obj.user_meta, tags)
            try:
                pieces = [await location.update_meta(pieces[0], meta)]
            except NotFound:
                raise S3Error("NoSuchKey", "The object's data is missing from its location.",
                              Key=obj.key) from None
        updated = await req.gateway.metadata.update_object(
            bucket.name, obj.key, obj.pieces, {"tags": tags, "pieces": pieces})
        if updated is not None:
            if pieces != obj.pieces:
                req.gateway.engine.collector.wake()  # the re-pinned old version is garbage
            return
        # Lost the race: a backend copy made for it (a new version, not the same bytes
        # re-tagged in place) is garbage.
        for piece in dropped_pieces([p.to_dict() for p in pieces],
                                    [p.to_dict() for p in obj.pieces]):
            await req.gateway.metadata.discard_piece(Stored.from_dict(piece))
            req.gateway.engine.collector.wake()
        obj = None
    raise S3Error("OperationAborted", "The object kept changing while its tags were set. "
                  "Please try again.")


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
