"""CORS: Put/Get/DeleteBucketCors, the preflight OPTIONS request (answered before
authentication, as browsers send no credentials with it) and the Access-Control-* headers of
actual requests. Rules are kept in bucket.attrs["cors"] as a list of dicts."""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from aiohttp import web

from gateway.errors import S3Error
from gateway.metadata.base import BucketRecord
from gateway.s3.ops.common import get_bucket, read_body
from gateway.s3.request import BUCKET_RECORD, S3Request
from gateway.s3.xml import parse, render

CORS_METHODS = ("GET", "PUT", "HEAD", "POST", "DELETE")
MAX_RULES = 100
MAX_ID = 255
_RULE_CHILDREN = {"ID", "AllowedMethod", "AllowedOrigin", "AllowedHeader", "ExposeHeader",
                  "MaxAgeSeconds"}
Rule = dict[str, Any]


def parse_cors(body: bytes) -> list[Rule]:
    root = parse(body, "CORSConfiguration")
    nodes = list(root)
    if not nodes or any(node.tag != "CORSRule" for node in nodes):
        raise S3Error("MalformedXML")
    if len(nodes) > MAX_RULES:
        raise S3Error("MalformedXML", "The number of CORS rules should not exceed allowed "
                      f"limit of {MAX_RULES} rules.")
    rules = []
    for node in nodes:
        values: dict[str, list[str]] = {tag: [] for tag in _RULE_CHILDREN}
        for child in node:
            if child.tag not in _RULE_CHILDREN:
                raise S3Error("MalformedXML")
            values[child.tag].append((child.text or "").strip())
        if not values["AllowedMethod"] or not values["AllowedOrigin"]:
            raise S3Error("MalformedXML")
        for method in values["AllowedMethod"]:
            if method not in CORS_METHODS:
                raise S3Error("InvalidRequest", "Found unsupported HTTP method in CORS config. "
                              f"Unsupported method is {method}")
        for tag in ("AllowedOrigin", "AllowedHeader"):
            for value in values[tag]:
                if value.count("*") > 1:
                    raise S3Error("InvalidRequest",
                                  f'{tag} "{value}" can not have more than one wildcard.')
        rule: Rule = {"methods": values["AllowedMethod"], "origins": values["AllowedOrigin"],
                      "headers": values["AllowedHeader"], "expose": values["ExposeHeader"]}
        if len(values["ID"]) > 1 or len(values["MaxAgeSeconds"]) > 1:
            raise S3Error("MalformedXML")
        if values["ID"]:
            if len(values["ID"][0]) > MAX_ID:
                raise S3Error("InvalidArgument", "ID length should not exceed allowed limit "
                              f"of {MAX_ID}", ArgumentName="ID")
            rule["id"] = values["ID"][0]
        if values["MaxAgeSeconds"]:
            try:
                rule["max_age"] = int(values["MaxAgeSeconds"][0])
            except ValueError:
                raise S3Error("MalformedXML") from None
        rules.append(rule)
    return rules


async def put_bucket_cors(req: S3Request) -> web.Response:
    bucket = await get_bucket(req)
    rules = parse_cors(await read_body(req, require_digest=True))
    await set_cors(req, bucket.name, rules)
    return web.Response()


async def get_bucket_cors(req: S3Request) -> web.Response:
    bucket = await get_bucket(req)
    rules = bucket.attrs.get("cors")
    if not rules:
        raise S3Error("NoSuchCORSConfiguration", BucketName=bucket.name)
    nodes = []
    for rule in rules:
        children: list[tuple[str, Any]] = [("ID", rule["id"])] if "id" in rule else []
        children += [("AllowedHeader", h) for h in rule["headers"]]
        children += [("AllowedMethod", m) for m in rule["methods"]]
        children += [("AllowedOrigin", o) for o in rule["origins"]]
        children += [("ExposeHeader", h) for h in rule["expose"]]
        if "max_age" in rule:
            children.append(("MaxAgeSeconds", rule["max_age"]))
        nodes.append(("CORSRule", children))
    return web.Response(body=render("CORSConfiguration", nodes), content_type="application/xml")


async def delete_bucket_cors(req: S3Request) -> web.Response:
    bucket = await get_bucket(req)
    await set_cors(req, bucket.name, None)
    return web.Response(status=204)


async def set_cors(req: S3Request, bucket_name: str, rules: list[Rule] | None) -> None:
    # Only the CORS rules (None removes them): the store merges them into the attrs
    # atomically, so other settings (ACL, tags, policy...) changed meanwhile are kept.
    if await req.gateway.metadata.update_bucket_attrs(bucket_name, {"cors": rules}) is None:
        raise S3Error("NoSuchBucket", BucketName=bucket_name)


# --- matching ----------------------------------------------------------------------------------

@lru_cache(maxsize=1024)
def _wildcard(pattern: str) -> re.Pattern[str]:
    return re.compile(".*".join(re.escape(part) for part in pattern.split("*")) + r"\Z",
                      re.DOTALL)


def match_rule(rules: list[Rule], origin: str, method: str,
               request_headers: list[str] | None = None) -> tuple[Rule, str] | None:
    """The first rule allowing this origin, method (and, for preflight, headers), with the
    origin pattern that matched."""
    for rule in rules:
        if method not in rule["methods"]:
            continue
        pattern = next((p for p in rule["origins"] if _wildcard(p).match(origin)), None)
        if pattern is None:
            continue
        if request_headers and not all(
                any(_wildcard(allowed.lower()).match(header) for allowed in rule["headers"])
                for header in request_headers):
            continue
        return rule, pattern
    return None


def allow_headers(rule: Rule, pattern: str, origin: str) -> dict[str, str]:
    headers = {"Access-Control-Allow-Methods": ", ".join(rule["methods"])}
    if pattern == "*":
        headers["Access-Control-Allow-Origin"] = "*"
    else:
        headers["Access-Control-Allow-Origin"] = origin
        headers["Access-Control-Allow-Credentials"] = "true"
    if rule["expose"]:
        headers["Access-Control-Expose-Headers"] = ", ".join(rule["expose"])
    if "max_age" in rule:
        headers["Access-Control-Max-Age"] = str(rule["max_age"])
    headers["Vary"] = "Origin, Access-Control-Request-Headers, Access-Control-Request-Method"
    return headers


async def preflight(gateway: Any, bucket_name: str | None, http: web.Request) -> web.Response:
    """OPTIONS /bucket[/key]: S3's answer to a browser's CORS preflight."""
    origin = http.headers.get("Origin")
    if not origin:
        raise S3Error("BadRequest", "Insufficient information. Origin request header needed.")
    method = http.headers.get("Access-Control-Request-Method")
    if method not in CORS_METHODS:
        raise S3Error("BadRequest", f"Invalid Access-Control-Request-Method: {method}")
    if bucket_name is None:
        raise S3Error("BadRequest", "Insufficient information. A bucket is needed.")
    bucket = await gateway.metadata.get_bucket(bucket_name)
    if bucket is None:
        raise S3Error("AccessForbidden", "CORSResponse: Bucket not found", status=403)
    rules = bucket.attrs.get("cors")
    if not rules:
        raise S3Error("AccessForbidden", "CORSResponse: CORS is not enabled for this bucket.")
    requested = [h.strip().lower() for h in
                 http.headers.get("Access-Control-Request-Headers", "").split(",") if h.strip()]
    found = match_rule(rules, origin, method, requested)
    if found is None:
        raise S3Error("AccessForbidden", Method=method, ResourceType="OBJECT")
    rule, pattern = found
    headers = allow_headers(rule, pattern, origin)
    if requested:
        headers["Access-Control-Allow-Headers"] = ", ".join(requested)
    return web.Response(headers=headers)


def add_cors_headers(http: web.Request, response: web.StreamResponse) -> None:
    """For actual (non-preflight) requests with an Origin on a bucket with CORS rules; called
    when the response is prepared, so streamed and error responses get them too."""
    origin = http.headers.get("Origin")
    bucket: BucketRecord | None = http.get(BUCKET_RECORD)
    if not origin or bucket is None or http.method == "OPTIONS":
        return
    rules = bucket.attrs.get("cors")
    if not rules:
        return
    found = match_rule(rules, origin, http.method)
    if found is not None:
        for name, value in allow_headers(*found, origin).items():
            response.headers.setdefault(name, value)
