"""POST Object: the browser form upload (POST /bucket, multipart/form-data).

The front authenticates every request from its headers, and a form carries no Authorization
header, so it arrives anonymous: the form's own signature (SigV4 `x-amz-signature` or SigV2
`signature`, both over the base64 policy document) names the account here. The policy
document's expiration and conditions are checked before a byte of the file is read, except
`content-length-range`, checked once the file's size is known.

The file field is streamed to a temporary spool file (never held in memory) because a
backend put needs the exact size up front and the form gives none; from there the object
engine stores it as a PutObject (verified as it streams, committed after the bytes are stored).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import dataclasses
import hashlib
import hmac
import json
import tempfile
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import IO, Any
from urllib.parse import quote, urlencode

from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import HttpProcessingError, LineTooLong

from gateway import checksums
from gateway.accounts import Account
from gateway.crypto import objects as sse_objects
from gateway.errors import S3Error
from gateway.locations import LOCATION_HEADER
from gateway.objects.options import CREATED_POST, MAX_PUT_SIZE, PutOptions
from gateway.s3 import access
from gateway.s3.auth import _signing_key  # the one SigV4 key derivation
from gateway.s3.ops import object_lock
from gateway.s3.ops.common import (
    CONTENT_HEADERS,
    STORAGE_CLASS_HEADER,
    content_headers_from,
    get_bucket,
    requested_storage_class,
    user_metadata_from,
    validate_key,
    validate_tags,
)
from gateway.s3.ops.tagging import parse_tagging
from gateway.s3.request import S3Request
from gateway.s3.xml import render
from gateway.translators.base import CHUNK_SIZE

# AWS's bound on everything before the file (MaxPostPreDataLengthBytes in its error): field
# names, values and part headers all count, so an anonymous form cannot make the gateway
# hold more than this before its signature is even checked.
MAX_PRE_DATA = 20 * 1024
# Fields that become response headers (the object's, or the redirect's Location).
HEADER_FIELDS = (*CONTENT_HEADERS, "success_action_redirect", "redirect")
# Fields the policy need not name (AWS's list).
EXEMPT_FIELDS = ("policy", "x-amz-signature", "signature", "awsaccesskeyid", "file")
ENCLOSURE = "Bucket POST must be of the enclosure-type multipart/form-data"


@dataclasses.dataclass
class FormPolicy:
    conditions: list[tuple[str, str, str]]  # (op "eq"/"starts-with", field, value)
    length_range: tuple[int, int] | None
    raw: list[Any]


def pre_data_exceeded() -> S3Error:
    return S3Error("MaxPostPreDataLengthExceeded",
                   MaxPostPreDataLengthBytes=str(MAX_PRE_DATA))


async def read_field(part: BodyPartReader, budget: int) -> str:
    """A field's value, refused as soon as it passes what is left of the pre-data budget."""
    data = bytearray()
    while chunk := await part.read_chunk(min(CHUNK_SIZE, budget + 1)):
        data += chunk
        if len(data) > budget:
            raise pre_data_exceeded()
    return data.decode("utf-8", "replace")


async def read_form(req: S3Request) -> tuple[dict[str, str], BodyPartReader]:
    """The fields before the file (lower-cased names) and the file part itself; fields after
    the file are ignored, as AWS does."""
    assert req.bucket is not None
    # Before a byte of the form: a missing bucket answers NoSuchBucket at once, as AWS does,
    # and nobody can make the gateway read forms for buckets that do not exist.
    if await req.gateway.metadata.get_bucket(req.bucket) is None:
        raise S3Error("NoSuchBucket", BucketName=req.bucket)
    if not req.headers.get("Content-Type", "").lower().startswith("multipart/form-data"):
        raise S3Error("PreconditionFailed", ENCLOSURE, Condition=ENCLOSURE)
    try:
        reader = await req.http.multipart()
    except (AssertionError, ValueError, KeyError):
        raise S3Error("MalformedPOSTRequest") from None
    fields: dict[str, str] = {}
    total = 0
    while True:
        try:
            part = await reader.next()
        except LineTooLong:  # a part header line past max_field_size: a huge field name
            raise pre_data_exceeded() from None
        except (AssertionError, ValueError, HttpProcessingError):
            raise S3Error("MalformedPOSTRequest") from None
        if part is None:
            raise S3Error("InvalidArgument", "POST requires exactly one file upload per request.",
                          ArgumentName="file", ArgumentValue="0")
        if not isinstance(part, BodyPartReader) or not part.name:
            raise S3Error("MalformedPOSTRequest")
        name = part.name.lower()
        if name == "file":
            return fields, part
        # The part's headers (its name among them) count, not only its value.
        total += sum(len(k) + len(v) for k, v in part.headers.items())
        if total > MAX_PRE_DATA:
            raise pre_data_exceeded()
        value = await read_field(part, MAX_PRE_DATA - total)
        total += len(value.encode())
        if name in HEADER_FIELDS and any(c in value for c in "\r\n\0"):
            raise S3Error("InvalidArgument", f"The form field {name} must not contain line "
                          "breaks or NUL.", ArgumentName=name, ArgumentValue=value)
        fields[name] = value


# --- signature and policy --------------------------------------------------------------------

def form_account(req: S3Request, fields: dict[str, str]) -> Account | None:
    """Who signed the form (None: an unsigned, anonymous form)."""
    policy = fields.get("policy")
    if "x-amz-signature" in fields or "x-amz-algorithm" in fields or "x-amz-credential" in fields:
        return verify_v4(req, fields, policy)
    if "signature" in fields or "awsaccesskeyid" in fields:
        return verify_v2(req, fields, policy)
    return None


def _require(fields: dict[str, str], name: str, shown: str) -> str:
    value = fields.get(name)
    if not value:
        raise S3Error("InvalidArgument", f"Bucket POST must contain a field named '{shown}'. "
                      "If it is specified, please check the order of the fields.",
                      ArgumentName=shown, ArgumentValue="")
    return value


def verify_v4(req: S3Request, fields: dict[str, str], policy: str | None) -> Account:
    algorithm = _require(fields, "x-amz-algorithm", "X-Amz-Algorithm")
    credential = _require(fields, "x-amz-credential", "X-Amz-Credential")
    _require(fields, "x-amz-date", "X-Amz-Date")
    signature = _require(fields, "x-amz-signature", "X-Amz-Signature")
    policy = _require(fields, "policy", "Policy")
    if algorithm != "AWS4-HMAC-SHA256":
        raise S3Error("InvalidArgument", "Only AWS4-HMAC-SHA256 is supported",
                      ArgumentName="X-Amz-Algorithm", ArgumentValue=algorithm)
    parts = credential.split("/")
    if len(parts) != 5 or parts[4] != "aws4_request" or parts[3] != "s3" or len(parts[1]) != 8:
        raise S3Error("InvalidArgument", "Invalid X-Amz-Credential",
                      ArgumentName="X-Amz-Credential", ArgumentValue=credential)
    access_key, date, region, service, _ = parts
    found = req.gateway.accounts.lookup(access_key)
    if found is None:
        raise S3Error("InvalidAccessKeyId", AWSAccessKeyId=access_key)
    account, secret = found
    key = _signing_key(secret, date, region, service)
    expected = hmac.new(key, policy.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, signature.lower()):
        raise S3Error("SignatureDoesNotMatch", AWSAccessKeyId=access_key)
    return account


def verify_v2(req: S3Request, fields: dict[str, str], policy: str | None) -> Account:
    access_key = _require(fields, "awsaccesskeyid", "AWSAccessKeyId")
    signature = _require(fields, "signature", "Signature")
    policy = _require(fields, "policy", "Policy")
    found = req.gateway.accounts.lookup(access_key)
    if found is None:
        raise S3Error("InvalidAccessKeyId", AWSAccessKeyId=access_key)
    account, secret = found
    expected = base64.b64encode(
        hmac.new(secret.encode(), policy.encode(), hashlib.sha1).digest()).decode()
    if not hmac.compare_digest(expected, signature):
        raise S3Error("SignatureDoesNotMatch", AWSAccessKeyId=access_key)
    return account


def _bad_policy(message: str) -> S3Error:
    return S3Error("InvalidPolicyDocument", f"Invalid Policy: {message}")


def _policy_failed(message: str) -> S3Error:
    return S3Error("AccessDenied", f"Invalid according to Policy: {message}")


def parse_form_policy(encoded: str) -> FormPolicy:
    try:
        return _parse_form_policy(encoded)
    except RecursionError:  # JSON nested past Python's stack, in loads or in dumps
        raise _bad_policy("Invalid JSON.") from None


def _parse_form_policy(encoded: str) -> FormPolicy:
    try:
        doc = json.loads(base64.b64decode(encoded, validate=True))
    except (binascii.Error, ValueError):
        raise _bad_policy("Invalid JSON.") from None
    if not isinstance(doc, dict):
        raise _bad_policy("Invalid JSON.")
    expiration = doc.get("expiration")
    if expiration is None:
        raise _bad_policy("Policy missing expiration.")
    try:
        expires = datetime.fromisoformat(str(expiration).replace("Z", "+00:00"))
    except ValueError:
        raise _bad_policy(f"Invalid 'expiration' value: '{expiration}'") from None
    if expires.tzinfo is None:
        expires = expires.replace(tzinfo=UTC)
    if expires.timestamp() < time.time():
        raise _policy_failed("Policy expired.")
    raw = doc.get("conditions")
    if not isinstance(raw, list):
        raise _bad_policy("Policy missing conditions.")
    conditions: list[tuple[str, str, str]] = []
    length_range = None
    for item in raw:
        if isinstance(item, dict) and len(item) == 1:
            name, value = next(iter(item.items()))
            if not isinstance(value, str):
                raise _bad_policy(f"Invalid Condition: {json.dumps(item)}")
            conditions.append(("eq", name.lower().lstrip("$"), value))
        elif isinstance(item, list) and len(item) == 3 and isinstance(item[0], str):
            op = item[0].lower()
            if op == "content-length-range":
                try:
                    low, high = int(item[1]), int(item[2])
                except (TypeError, ValueError):
                    raise _bad_policy(f"Invalid content-length-range: {json.dumps(item)}") from None
                length_range = (low, high)
            elif op in ("eq", "starts-with") and isinstance(item[1], str) and \
                    item[1].startswith("$") and isinstance(item[2], str):
                conditions.append((op, item[1][1:].lower(), item[2]))
            else:
                raise _bad_policy(f"Invalid Condition: {json.dumps(item)}")
        else:
            raise _bad_policy(f"Invalid Condition: {json.dumps(item)}")
    return FormPolicy(conditions, length_range, raw)


def check_form_policy(policy: FormPolicy, fields: dict[str, str], bucket: str) -> None:
    for op, name, expected in policy.conditions:
        actual = bucket if name == "bucket" else fields.get(name)
        shown = json.dumps([op, f"${name}", expected])
        if actual is None:
            raise _policy_failed(f"Policy Condition failed: {shown}")
        if op == "eq" and actual != expected:
            raise _policy_failed(f"Policy Condition failed: {shown}")
        if op == "starts-with" and not actual.startswith(expected):
            raise _policy_failed(f"Policy Condition failed: {shown}")
    named = {name for _, name, _ in policy.conditions}
    for name in fields:
        if name in EXEMPT_FIELDS or name.startswith("x-ignore-") or name in named:
            continue
        raise _policy_failed(f"Extra input fields: {name}")


# --- the upload --------------------------------------------------------------------------------

async def spool(part: BodyPartReader, limit: int) -> tuple[IO[bytes], int]:
    """Stream the file part to a temporary file: (file, size). The engine hashes it as it
    stores it."""
    spool_file = tempfile.TemporaryFile()
    size = 0
    try:
        while chunk := await part.read_chunk(CHUNK_SIZE):
            size += len(chunk)
            if size > limit:
                raise S3Error("EntityTooLarge", ProposedSize=str(size),
                              MaxSizeAllowed=str(limit))
            await asyncio.to_thread(spool_file.write, chunk)
        await asyncio.to_thread(spool_file.seek, 0)
    except BaseException:
        spool_file.close()
        raise
    return spool_file, size


async def read_spool(spool_file: IO[bytes]) -> AsyncIterator[bytes]:
    while chunk := await asyncio.to_thread(spool_file.read, CHUNK_SIZE):
        yield chunk


def form_acl(req: S3Request, fields: dict[str, str], owner: str,
             bucket_owner: str) -> list[access.Grant] | None:
    """The ACL the form's `acl` (or x-amz-grant-*) field asks for, as the bucket lets it be
    set (ownership controls, public access block: access.allowed_acl, as for PutObject's
    headers); None when none is asked."""
    canned = fields.get("acl")
    if canned is not None:
        grants = access.canned_acl(canned.strip(), owner, bucket_owner)
    else:
        grants = []
        for name, permission in access.GRANT_HEADERS.items():
            if name in fields:
                grants += access.parse_grant_header(req.gateway.accounts, fields[name],
                                                    permission)
        if not grants:
            return None
    return access.allowed_acl(req, grants, canned)


async def post_object(req: S3Request) -> web.StreamResponse:
    fields, file_part = await read_form(req)
    signed_by = form_account(req, fields)
    if signed_by is not None:  # act as the form's signer from here on
        req.auth = dataclasses.replace(req.auth, account=signed_by)
    policy = parse_form_policy(fields["policy"]) if "policy" in fields else None
    assert req.bucket is not None
    if policy is not None:
        check_form_policy(policy, fields, req.bucket)
    key = _require(fields, "key", "key")
    if "${filename}" in key:
        key = key.replace("${filename}", file_part.filename or "")
    if not key:
        raise S3Error("InvalidArgument", "User key must have a length greater than 0.",
                      ArgumentName="key", ArgumentValue="")
    validate_key(key)
    req.key = key
    bucket = await get_bucket(req, "s3:PutObject")
    owner = access.requester_id(req)
    grants = form_acl(req, fields, owner, bucket.owner)
    headers = content_headers_from(fields)
    user = user_metadata_from(fields)
    tags: dict[str, str] = {}
    if fields.get("tagging"):
        tags = parse_tagging(fields["tagging"].encode())
        validate_tags(tags)
    storage_class = requested_storage_class({STORAGE_CLASS_HEADER: fields[STORAGE_CLASS_HEADER]}
                                            if STORAGE_CLASS_HEADER in fields else {})
    # A checksum field (x-amz-checksum-<alg>) is verified as the spooled file is stored,
    # before the location sees its end; x-amz-checksum-algorithm alone names the one to keep.
    stated = checksums.requested(fields, None, trailer_mode=False)
    algorithm = (stated.algorithm if stated else
                 checksums.parse_algorithm(fields["x-amz-checksum-algorithm"])
                 if "x-amz-checksum-algorithm" in fields else None)

    def verify(computed: dict[str, bytes]) -> None:
        if stated is not None:
            checksums.verify(stated, computed[stated.algorithm], {})

    opts = PutOptions(owner=owner, headers=headers, user_meta=user, tags=tags, acl=grants,
                      storage_class=storage_class, location=fields.get(LOCATION_HEADER),
                      host=req.host, checksum_algorithm=algorithm, verify=verify,
                      encryption=sse_objects.put_encryption(  # SSE fields (gateway/crypto/)
                          fields, secure=req.http.secure,
                          allow_http=req.gateway.settings.encryption.allow_sse_c_over_http),
                      lock=object_lock.lock_request(fields))  # x-amz-object-lock-* fields
    engine = req.gateway.engine
    req.extra_log["location"] = engine.place(bucket, opts.location, opts.host).name
    low, high = policy.length_range if policy and policy.length_range else (0, MAX_PUT_SIZE)
    spool_file, size = await spool(file_part, min(high, MAX_PUT_SIZE))
    try:
        if size < low:
            raise S3Error("EntityTooSmall", ProposedSize=str(size), MinSizeAllowed=str(low))
        result = await engine.put(bucket, key, read_spool(spool_file), size, opts,
                                  kind=CREATED_POST)
    finally:
        spool_file.close()
    await req.http.release()  # fields after the file are ignored
    return post_response(req, fields, bucket.name, key, result.record.etag, result.checksum)


def post_response(req: S3Request, fields: dict[str, str], bucket: str, key: str,
                  etag: str, checksum: dict[str, str] | None = None) -> web.Response:
    object_url = f"{req.http.scheme}://{req.http.host}/{quote(bucket)}/{quote(key)}"
    headers = {"ETag": f'"{etag}"', "Location": object_url,
               **checksums.response_headers(checksum)}
    redirect = fields.get("success_action_redirect") or fields.get("redirect")
    if redirect and redirect.startswith(("http://", "https://")):
        query = urlencode({"bucket": bucket, "key": key, "etag": f'"{etag}"'})
        headers["Location"] = redirect + ("&" if "?" in redirect else "?") + query
        return web.Response(status=303, headers=headers)
    wanted = fields.get("success_action_status")
    if wanted == "201":
        body = render("PostResponse", [("Location", object_url), ("Bucket", bucket),
                                       ("Key", key), ("ETag", f'"{etag}"')], namespace=False)
        return web.Response(status=201, body=body, headers=headers,
                            content_type="application/xml")
    if wanted == "200":
        return web.Response(status=200, headers=headers)
    return web.Response(status=204, headers=headers)
