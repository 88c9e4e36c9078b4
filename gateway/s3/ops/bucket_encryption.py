"""Put/Get/DeleteBucketEncryption: a bucket's default encryption, kept in
bucket.attrs["encryption"] = {"algorithm": "AES256" | "aws:kms", "kmsKeyId"?, "bucketKey",
"blocked": ["SSE-C"]?}. Writes without SSE headers get it (gateway/crypto/objects.py
write_encryption); a bucket that blocks SSE-C refuses SSE-C writes (403 AccessDenied).

As AWS: one Rule, SSEAlgorithm AES256 or aws:kms, KMSMasterKeyID only with aws:kms (not checked
against the KMS here: a write naming a missing key fails then), 200 with an empty body on PUT,
204 on DELETE. A bucket never configured answers ServerSideEncryptionConfigurationNotFoundError:
unlike AWS since 2023, this gateway does not encrypt by default, so it does not claim to.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from gateway.crypto.objects import BUCKET_ATTR
from gateway.errors import S3Error
from gateway.s3.ops.common import get_bucket, read_body
from gateway.s3.request import S3Request
from gateway.s3.xml import Node, parse, render

ROOT = "ServerSideEncryptionConfiguration"
ALGORITHMS = ("AES256", "aws:kms")
BLOCKABLE = ("NONE", "SSE-C")


def parse_configuration(body: bytes) -> dict[str, Any]:
    document = parse(body, ROOT)
    rules = document.findall("Rule")
    if len(rules) != 1:
        raise S3Error("MalformedXML", "The XML you provided was not well-formed or did not "
                      "validate against our published schema")
    rule = rules[0]
    config: dict[str, Any] = {}
    default = rule.find("ApplyServerSideEncryptionByDefault")
    if default is not None:
        algorithm = (default.findtext("SSEAlgorithm") or "").strip()
        if algorithm in ("aws:kms:dsse", "aws:fsx", "aws:backup"):
            raise S3Error("NotImplemented", f"SSEAlgorithm {algorithm} is not implemented by "
                          "this gateway.")
        if algorithm not in ALGORITHMS:
            raise S3Error("MalformedXML", "The XML you provided was not well-formed or did not "
                          "validate against our published schema")
        config["algorithm"] = algorithm
        key_id = default.findtext("KMSMasterKeyID")
        if key_id is not None and key_id.strip():
            if algorithm != "aws:kms":
                raise S3Error("InvalidArgument", "a KMSMasterKeyID is not applicable if the "
                              "default sse algorithm is not aws:kms or aws:kms:dsse",
                              ArgumentName="ApplyServerSideEncryptionByDefault")
            config["kmsKeyId"] = key_id.strip()
    bucket_key = rule.findtext("BucketKeyEnabled")
    if bucket_key is not None:
        if bucket_key.strip() not in ("true", "false"):
            raise S3Error("MalformedXML")
        config["bucketKey"] = bucket_key.strip() == "true"
    blocked = rule.find("BlockedEncryptionTypes")
    if blocked is not None:
        types = [(node.text or "").strip() for node in blocked.findall("EncryptionType")]
        if any(t not in BLOCKABLE for t in types):
            raise S3Error("MalformedXML")
        config["blocked"] = [t for t in types if t != "NONE"]
    if "algorithm" not in config and not config.get("blocked"):
        raise S3Error("MalformedXML", "The XML you provided was not well-formed or did not "
                      "validate against our published schema")
    return config


def render_configuration(config: dict[str, Any]) -> bytes:
    rule: list[Node] = []
    if "algorithm" in config:
        default: list[Node] = [("SSEAlgorithm", config["algorithm"])]
        if config.get("kmsKeyId"):
            default.append(("KMSMasterKeyID", config["kmsKeyId"]))
        rule.append(("ApplyServerSideEncryptionByDefault", default))
    rule.append(("BucketKeyEnabled", bool(config.get("bucketKey"))))
    if "blocked" in config:
        rule.append(("BlockedEncryptionTypes", [("EncryptionType", t)
                                                for t in config["blocked"] or ["NONE"]]))
    return render(ROOT, [("Rule", rule)])


async def put_encryption(req: S3Request) -> web.Response:
    bucket = await get_bucket(req)
    config = parse_configuration(await read_body(req))
    await _set(req, bucket.name, config)
    return web.Response()


async def get_encryption(req: S3Request) -> web.Response:
    bucket = await get_bucket(req)
    config = bucket.attrs.get(BUCKET_ATTR)
    if not config:
        raise S3Error("ServerSideEncryptionConfigurationNotFoundError", BucketName=bucket.name)
    return web.Response(body=render_configuration(config), content_type="application/xml")


async def delete_encryption(req: S3Request) -> web.Response:
    bucket = await get_bucket(req)
    await _set(req, bucket.name, None)
    return web.Response(status=204)


async def _set(req: S3Request, bucket_name: str, config: dict[str, Any] | None) -> None:
    # Only this key: other bucket settings changed meanwhile are kept.
    if await req.gateway.metadata.update_bucket_attrs(bucket_name, {BUCKET_ATTR: config}) is None:
        raise S3Error("NoSuchBucket", BucketName=bucket_name)


__all__ = ["delete_encryption", "get_encryption", "parse_configuration", "put_encryption",
           "render_configuration"]
