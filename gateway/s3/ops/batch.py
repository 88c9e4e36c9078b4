"""DeleteObjects (POST /bucket?delete): up to 1000 keys in one request, each deleted exactly as
DeleteObject deletes it, with per-key results."""

from __future__ import annotations

from xml.etree.ElementTree import Element

from aiohttp import web

from gateway.errors import S3Error
from gateway.metadata.base import ObjectRecord
from gateway.s3 import access
from gateway.s3.ops import object_lock
from gateway.s3.ops.common import read_body
from gateway.s3.request import BUCKET_RECORD, S3Request
from gateway.s3.xml import Node, parse, render

MAX_DELETE_KEYS = 1000


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
    bucket = await req.gateway.metadata.get_bucket(req.bucket)
    if bucket is None:
        raise S3Error("NoSuchBucket", BucketName=req.bucket)
    req.http[BUCKET_RECORD] = bucket  # for the CORS headers of the response (ops/cors.py)
    quiet, entries = parse_delete(await read_body(req, require_digest=True))
    # AWS authorizes each key as its own DeleteObject (a policy may allow a prefix only), and
    # a refused key is a per-key AccessDenied. The allowed ones are deleted by the engine in one
    # batch (few metadata transactions instead of one per key); results keep request order.
    outcomes: list[ObjectRecord | S3Error | None] = [None] * len(entries)
    allowed: list[tuple[str, str | None, bool]] = []
    where: list[int] = []
    requester = access.requester_id(req)
    for index, (key, version_id) in enumerate(entries):
        action = "s3:DeleteObject" if version_id is None else "s3:DeleteObjectVersion"
        try:
            await access.authorize(req, bucket, action, key)
            bypass = await object_lock.bypass_governance(req, bucket, key)
        except S3Error as err:
            outcomes[index] = err
            continue
        allowed.append((key, version_id, bypass))
        where.append(index)
    removed = await req.gateway.engine.delete_many(bucket, allowed, requester)
    for index, outcome in zip(where, removed, strict=True):
        outcomes[index] = outcome
    if quiet:  # only the failures: no call per deleted key
        nodes = [error_node(key, version_id, outcome)
                 for (key, version_id), outcome in zip(entries, outcomes, strict=True)
                 if isinstance(outcome, S3Error)]
    else:
        nodes = [node for (key, version_id), outcome in zip(entries, outcomes, strict=True)
                 if (node := result_node(key, version_id, outcome, quiet)) is not None]
    return web.Response(body=render("DeleteResult", nodes), content_type="application/xml")


def result_node(key: str, version_id: str | None, outcome: ObjectRecord | S3Error | None,
                quiet: bool) -> Node | None:
    """One entry's <Deleted> or <Error> node (None when quiet and deleted)."""
    if isinstance(outcome, S3Error):
        return error_node(key, version_id, outcome)
    if quiet:  # Quiet mode reports only the failures
        return None
    deleted: list[Node] = [("Key", key)]
    if version_id is not None:
        deleted.append(("VersionId", version_id))
    if outcome is not None and outcome.delete_marker:
        deleted.append(("DeleteMarker", True))
        deleted.append(("DeleteMarkerVersionId", outcome.version_id or "null"))
    return ("Deleted", deleted)


def error_node(key: str, version_id: str | None, error: S3Error) -> Node:
    """One refused entry's <Error> node."""
    nodes: list[Node] = [("Key", key)]
    if version_id is not None:
        nodes.append(("VersionId", version_id))
    nodes += [("Code", error.code), ("Message", error.message)]
    return ("Error", nodes)
