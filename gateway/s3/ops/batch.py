"""DeleteObjects (POST /bucket?delete): up to 1000 keys in one request, each deleted exactly as
DeleteObject deletes it, with per-key results."""

from __future__ import annotations

import asyncio
import dataclasses
from xml.etree.ElementTree import Element

from aiohttp import web

from gateway.errors import S3Error
from gateway.s3.ops.common import get_bucket, read_body
from gateway.s3.ops.obj import remove_object
from gateway.s3.request import S3Request
from gateway.s3.xml import Node, parse, render

MAX_DELETE_KEYS = 1000
# Entries of one DeleteObjects request deleted at the same time.
PARALLEL_DELETES = 16


def parse_delete(body: bytes) -> tuple[bool, list[tuple[str, str | None]]]:
    """(quiet, [(key, version id)]) from a <Delete> document."""
    root = parse(body, "Delete")
    quiet_text = root.findtext("Quiet")
    quiet = quiet_text is not None and quiet_text.strip().lower() == "true"
    entries: list[tuple[str, str | None]] = []
    objects: list[Element] = root.findall("Object")
    if not objects or len(objects) > MAX_DELETE_KEYS:
        raise S3Error("MalformedXML")
    for node in objects:
        key = node.findtext("Key")
        if not key:
            raise S3Error("MalformedXML")
        entries.append((key, node.findtext("VersionId")))
    return quiet, entries


async def delete_objects(req: S3Request) -> web.Response:
    assert req.bucket is not None
    if await req.gateway.metadata.get_bucket(req.bucket) is None:
        raise S3Error("NoSuchBucket", BucketName=req.bucket)
    quiet, entries = parse_delete(await read_body(req, require_digest=True))
    # Keys are independent: delete several at once, so their metadata writes and data
    # removals overlap instead of queueing one behind the other. Results keep request order.
    slots = asyncio.Semaphore(PARALLEL_DELETES)

    async def delete_one(key: str, version_id: str | None) -> Node | None:
        async with slots:
            return await delete_entry(req, key, version_id, quiet)

    results = await asyncio.gather(*(delete_one(key, vid) for key, vid in entries))
    nodes = [node for node in results if node is not None]
    return web.Response(body=render("DeleteResult", nodes), content_type="application/xml")


async def delete_entry(req: S3Request, key: str, version_id: str | None,
                       quiet: bool) -> Node | None:
    """Delete one entry as DeleteObject would; its <Deleted> or <Error> node (None when quiet
    and deleted)."""
    try:
        # AWS authorizes each key as its own DeleteObject (a policy may allow a prefix only),
        # and a refused key is a per-key AccessDenied.
        action = "s3:DeleteObject" if version_id is None else "s3:DeleteObjectVersion"
        bucket = await get_bucket(dataclasses.replace(req, key=key), action)
        outcome = await remove_object(req, bucket, key, version_id)
    except S3Error as err:
        error: list[Node] = [("Key", key)]
        if version_id is not None:
            error.append(("VersionId", version_id))
        error += [("Code", err.code), ("Message", err.message)]
        return ("Error", error)
    if quiet:  # Quiet mode reports only the failures
        return None
    deleted: list[Node] = [("Key", key)]
    if version_id is not None:
        deleted.append(("VersionId", version_id))
    if outcome is not None and outcome.delete_marker:
        deleted.append(("DeleteMarker", True))
        deleted.append(("DeleteMarkerVersionId", outcome.version_id or "null"))
    return ("Deleted", deleted)
