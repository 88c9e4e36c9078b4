"""The front door: request id, routing (path and virtual-hosted style), authentication,
dispatch to the operation for the resource, and S3 XML errors for every failure."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import random
import re
import time
import traceback
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl, unquote_to_bytes

from aiohttp import web
from aiohttp.web_protocol import RequestPayloadError

from gateway import accesslog
from gateway.errors import S3Error
from gateway.objects.options import MAX_PUT_SIZE
from gateway.s3 import access, auth
from gateway.s3.ops import (
    acl,
    batch,
    bucket,
    bucket_config,
    bucket_encryption,
    cors,
    lifecycle,
    multipart,
    obj,
    object_lock,
    policy,
    post,
    service,
    tagging,
)
from gateway.s3.request import REQUEST_ID, S3Request, resource_of
from gateway.s3.xml import render_error

log = logging.getLogger("gateway.access")
Handler = Callable[[S3Request], Awaitable[web.StreamResponse]]
# An error found before the body of an `Expect: 100-continue` request was asked for: the
# request is answered with it and its body is never read.
EARLY_ERROR = web.RequestKey("early_error", S3Error)


def early_error(http: web.BaseRequest) -> S3Error | None:
    """The refusal expect_continue() found before the body, if any. Only a request with an
    Expect header can have one: the header is looked up first, as a missing request key
    costs a raised KeyError (aiohttp's Mapping) on every request."""
    if "Expect" not in http.headers:
        return None
    return http.get(EARLY_ERROR)  # type: ignore[arg-type]

# Query keys that select a sub-resource instead of the plain resource, in precedence order.
SUBRESOURCES = (
    "uploads", "uploadId", "location", "versioning", "versions", "acl", "tagging", "policy",
    "cors", "delete", "lifecycle", "website", "logging", "encryption", "object-lock",
    "notification", "replication", "accelerate", "requestPayment", "legal-hold", "retention",
    "restore", "select", "torrent", "analytics", "inventory", "metrics", "ownershipControls",
    "publicAccessBlock", "intelligent-tiering", "policyStatus", "attributes",
)

ROUTES: dict[tuple[str, str, str], Handler] = {
    ("service", "GET", ""): service.list_buckets,
    ("bucket", "PUT", ""): bucket.create_bucket,
    ("bucket", "HEAD", ""): bucket.head_bucket,
    ("bucket", "DELETE", ""): bucket.delete_bucket,
    ("bucket", "GET", ""): bucket.list_objects,
    ("bucket", "GET", "location"): bucket.get_location,
    ("bucket", "GET", "uploads"): multipart.list_uploads,
    ("bucket", "GET", "versioning"): bucket.get_versioning,
    ("bucket", "PUT", "versioning"): bucket.put_versioning,
    ("bucket", "GET", "versions"): bucket.list_versions,
    ("object", "PUT", ""): obj.put_object,
    ("object", "GET", ""): obj.get_object,
    ("object", "HEAD", ""): obj.head_object,
    ("object", "DELETE", ""): obj.delete_object,
    ("object", "GET", "attributes"): obj.get_object_attributes,
    ("object", "POST", "uploads"): multipart.create_upload,
    ("object", "PUT", "uploadId"): multipart.upload_part,
    ("object", "POST", "uploadId"): multipart.complete_upload,
    ("object", "DELETE", "uploadId"): multipart.abort_upload,
    ("object", "GET", "uploadId"): multipart.list_parts,
    # access control and browser features
    ("bucket", "GET", "acl"): acl.get_bucket_acl,
    ("bucket", "PUT", "acl"): acl.put_bucket_acl,
    ("object", "GET", "acl"): acl.get_object_acl,
    ("object", "PUT", "acl"): acl.put_object_acl,
    ("bucket", "GET", "policy"): policy.get_bucket_policy,
    ("bucket", "PUT", "policy"): policy.put_bucket_policy,
    ("bucket", "DELETE", "policy"): policy.delete_bucket_policy,
    ("bucket", "GET", "policyStatus"): policy.get_bucket_policy_status,
    ("bucket", "GET", "publicAccessBlock"): bucket_config.get_public_access_block,
    ("bucket", "PUT", "publicAccessBlock"): bucket_config.put_public_access_block,
    ("bucket", "DELETE", "publicAccessBlock"): bucket_config.delete_public_access_block,
    ("bucket", "GET", "ownershipControls"): bucket_config.get_ownership_controls,
    ("bucket", "PUT", "ownershipControls"): bucket_config.put_ownership_controls,
    ("bucket", "DELETE", "ownershipControls"): bucket_config.delete_ownership_controls,
    ("bucket", "GET", "cors"): cors.get_bucket_cors,
    ("bucket", "PUT", "cors"): cors.put_bucket_cors,
    ("bucket", "DELETE", "cors"): cors.delete_bucket_cors,
    ("bucket", "POST", ""): post.post_object,
    # DeleteObjects and tagging
    ("bucket", "POST", "delete"): batch.delete_objects,
    ("object", "GET", "tagging"): tagging.get_object_tagging,
    ("object", "PUT", "tagging"): tagging.put_object_tagging,
    ("object", "DELETE", "tagging"): tagging.delete_object_tagging,
    ("bucket", "GET", "tagging"): tagging.get_bucket_tagging,
    ("bucket", "PUT", "tagging"): tagging.put_bucket_tagging,
    ("bucket", "DELETE", "tagging"): tagging.delete_bucket_tagging,
    # bucket configurations answered with AWS's unconfigured defaults
    ("bucket", "GET", "lifecycle"): lifecycle.get_lifecycle,  # acted on: gateway/lifecycle/
    ("bucket", "PUT", "lifecycle"): lifecycle.put_lifecycle,
    ("bucket", "DELETE", "lifecycle"): lifecycle.delete_lifecycle,
    ("bucket", "GET", "website"): bucket_config.get_website,
    ("bucket", "PUT", "website"): bucket_config.put_website,
    ("bucket", "DELETE", "website"): bucket_config.delete_website,
    ("bucket", "GET", "encryption"): bucket_encryption.get_encryption,
    ("bucket", "PUT", "encryption"): bucket_encryption.put_encryption,
    ("bucket", "DELETE", "encryption"): bucket_encryption.delete_encryption,
    # Object Lock (gateway/objects/lock.py)
    ("bucket", "GET", "object-lock"): object_lock.get_object_lock_configuration,
    ("bucket", "PUT", "object-lock"): object_lock.put_object_lock_configuration,
    ("object", "GET", "retention"): object_lock.get_object_retention,
    ("object", "PUT", "retention"): object_lock.put_object_retention,
    ("object", "GET", "legal-hold"): object_lock.get_object_legal_hold,
    ("object", "PUT", "legal-hold"): object_lock.put_object_legal_hold,
    ("bucket", "GET", "replication"): bucket_config.get_replication,
    ("bucket", "PUT", "replication"): bucket_config.put_replication,
    ("bucket", "DELETE", "replication"): bucket_config.delete_replication,
    ("bucket", "GET", "logging"): bucket_config.get_logging,
    ("bucket", "PUT", "logging"): bucket_config.put_logging,
    ("bucket", "GET", "notification"): bucket_config.get_notification,
    ("bucket", "PUT", "notification"): bucket_config.put_notification,
    ("bucket", "GET", "accelerate"): bucket_config.get_accelerate,
    ("bucket", "PUT", "accelerate"): bucket_config.put_accelerate,
    ("bucket", "GET", "requestPayment"): bucket_config.get_request_payment,
    ("bucket", "PUT", "requestPayment"): bucket_config.put_request_payment,
}


def request_id() -> str:
    # Unique enough to find a request in the logs; not a secret, so no system entropy call.
    return f"{random.getrandbits(64):016X}"


def split_host(host_header: str | None) -> str | None:
    if not host_header:
        return None
    if host_header.startswith("["):
        return host_header.split("]", 1)[0] + "]"
    return host_header.rsplit(":", 1)[0] if host_header.count(":") == 1 else host_header


def bucket_from_host(host: str | None, endpoints: list[str]) -> str | None:
    """Virtual-hosted style: `<bucket>.<endpoint>`; an IP or a bare endpoint is path style."""
    if not host:
        return None
    try:
        ipaddress.ip_address(host.strip("[]"))
        return None
    except ValueError:
        pass
    for endpoint in endpoints:  # longest endpoint first, so the shortest bucket name wins
        if host.endswith("." + endpoint):
            return host[: -len(endpoint) - 1]
    return None


def decode_path(text: str) -> str:
    """Percent-decoded, strictly: bytes that are not UTF-8 are refused (InvalidURI, as AWS),
    never replaced, or `k%FF` and `k%FE` would both name the key `k\ufffd`."""
    if "%" not in text and text.isascii():
        return text
    try:  # encode fails on raw undecodable bytes (surrogates), decode on %-escaped ones
        return unquote_to_bytes(text).decode("utf-8")
    except UnicodeError:
        raise S3Error("InvalidURI") from None


def parse_target(raw_path: str, host_bucket: str | None) -> tuple[str | None, str | None]:
    path = raw_path.split("?", 1)[0]
    if host_bucket is not None:
        key = decode_path(path[1:]) if len(path) > 1 else None
        return host_bucket, key or None
    parts = path[1:].split("/", 1)
    name = decode_path(parts[0]) if parts[0] else None
    key = decode_path(parts[1]) if len(parts) > 1 and parts[1] else None
    return name, key


# Control characters cannot go into a response header: aiohttp would refuse to send the
# answer and drop the connection.
_HEADER_UNSAFE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def check_headers(headers: Any) -> None:
    """Header bytes that are not UTF-8 reach us as lone surrogates, which no store, log or
    answer can encode: refuse them up front, whatever the header."""
    for name, value in headers.items():
        if value.isascii():
            continue
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise S3Error("InvalidArgument", f"Header {name} must be valid UTF-8.",
                          ArgumentName=name, ArgumentValue=value) from None


def check_overrides(query: dict[str, str]) -> None:
    """response-content-type & co. become response headers: no control characters."""
    for name, value in query.items():
        if name.startswith("response-") and _HEADER_UNSAFE.search(value):
            raise S3Error("InvalidArgument", f"Invalid value for {name}: control characters "
                          "are not allowed.", ArgumentName=name, ArgumentValue=value)


def one_line(exc: BaseException) -> str:
    """An unexpected exception for the log, on one line: type, message, innermost frames."""
    frames = traceback.extract_tb(exc.__traceback__)[-3:]
    where = " < ".join(f"{f.filename.rsplit('/', 1)[-1]}:{f.lineno} {f.name}"
                       for f in reversed(frames))
    message = " ".join(str(exc).split())[:300]
    return f"{type(exc).__name__}: {message} [at {where}]"


# --- the access log (one JSON line per request; server.py writes it as the whole line) -----
# When the answer's first byte went out (turnaround), set by add_request_id below.
ANSWER_STARTED = web.RequestKey("answer_started", float)
_CREDENTIAL_RE = re.compile(r"Credential=([^/,\s]{1,128})/")


def claimed_access_key(headers: Any, query: dict[str, str]) -> str | None:
    """The access key id a request names, for the log even when authentication fails (the
    id only: never a signature or a secret)."""
    authorization = headers.get("Authorization", "")
    if authorization.startswith("AWS4-"):
        found = _CREDENTIAL_RE.search(authorization)
        return found.group(1) if found else None
    if authorization.startswith("AWS "):
        return authorization[4:].split(":", 1)[0][:128] or None
    credential = query.get("X-Amz-Credential") or query.get("x-amz-credential")
    if credential:
        return credential.split("/", 1)[0][:128]
    return (query.get("AWSAccessKeyId") or "")[:128] or None


def write_access_line(http: web.Request, info: dict[str, object], rid: str, status: int,
                      response: web.StreamResponse, started: float) -> None:
    """The access-log fields people grep for, S3's server access log in JSON."""
    now = time.monotonic()
    answer_started = http.get(ANSWER_STARTED) or now
    accesslog.write(
        request_id=rid, client_ip=http.remote, account=info.get("account"),
        canonical_id=info.get("canonicalId"), access_key_id=info.get("accessKeyId"),
        user_agent=http.headers.get("User-Agent"), method=http.method,
        operation=info["operation"], bucket=info.get("bucket"), key=info.get("_key"),
        version_id=info.get("versionId"), location=info.get("location"), status=status,
        error_code=info.get("error"),
        bytes_in=http.content.total_bytes,  # received, not announced
        bytes_out=0 if status == 499 else response.content_length or 0,
        total_ms=round((now - started) * 1000, 2),
        # S3's turnaround: until the answer's first byte (for uploads: the body received)
        turnaround_ms=round((min(answer_started, now) - started) * 1000, 2))
# --- end of the access log ----------------------------------------------------------------


async def add_request_id(http: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare hook: streamed responses are prepared inside the operation."""
    http[ANSWER_STARTED] = time.monotonic()
    rid = http.get(REQUEST_ID)
    if rid:
        response.headers["x-amz-request-id"] = rid
        response.headers["x-amz-id-2"] = rid
    cors.add_cors_headers(http, response)


def check_declared_length(http: web.Request, level: str, sub: str,
                          result: auth.AuthResult) -> None:
    """An object upload (PutObject, UploadPart) must say how long it is: Content-Length, or
    x-amz-decoded-content-length for an aws-chunked body sent with Transfer-Encoding: chunked
    (411 MissingContentLength otherwise), and at most 5 GiB (EntityTooLarge), as AWS."""
    if level != "object" or http.method != "PUT" or sub not in ("", "uploadId") \
            or "x-amz-copy-source" in http.headers:
        return
    declared = result.decoded_length if result.decoded_length is not None \
        else http.content_length
    if declared is None:
        if "chunked" in http.headers.get("Transfer-Encoding", "").lower():
            raise S3Error("MissingContentLength")
        return
    if declared > MAX_PUT_SIZE:
        raise S3Error("EntityTooLarge", ProposedSize=str(declared),
                      MaxSizeAllowed=str(MAX_PUT_SIZE))


class Front:
    def __init__(self, gateway: object, endpoints: list[str]) -> None:
        self.gateway = gateway
        # The regions SigV4 signatures may name (config.json "region", then every location's
        # name, as clients name locations by region), or None for any ("region": "*").
        settings = getattr(gateway, "settings", None)
        region = getattr(settings, "region", "*")
        self.regions: tuple[str, ...] | None = None if region == "*" else (
            region, *sorted(getattr(settings, "locations", {})))
        self.endpoints = sorted(endpoints, key=len, reverse=True)
        self._counters: dict[tuple[str, int], Any] = {}
        self._hosts: dict[str | None, str | None] = {}
        self._histograms: dict[str, Any] = {}

    async def handle(self, http: web.Request) -> web.StreamResponse:
        if http.path.startswith("/_/"):
            answer = await self.gateway.health_endpoints.handle(http, http.path[3:])
            if answer is not None:
                return answer
        if http.path == "/" and self._browser_at_root(http):
            return web.Response(status=302, headers={"Location": "/_/console/"})
        started = time.monotonic()
        rid = request_id()
        http[REQUEST_ID] = rid
        status = 500
        info: dict[str, object] = {"operation": "unknown"}
        try:
            response = await self._dispatch(http, rid, info)
            status = response.status
        except S3Error as err:
            status = err.status
            info["error"] = err.code
            response = self.error_response(err, rid, http.method)
            if early_error(http) is not None:  # the client may or may not send the body:
                response.force_close()  # nothing after it on this connection can be parsed
        except web.HTTPRequestEntityTooLarge:
            # An XML body past client_max_size (aiohttp's read()): the XML parser's answer.
            err = S3Error("MalformedXML", "The XML you provided was larger than allowed.")
            status, info["error"] = err.status, err.code
            response = self.error_response(err, rid, http.method)
            response.force_close()  # the rest of the body is not worth reading
        except web.HTTPException as exc:  # raised inside aiohttp: S3 XML all the same
            err = S3Error("BadRequest" if exc.status < 500 else "InternalError", exc.reason,
                          status=exc.status)
            status, info["error"] = err.status, err.code
            response = self.error_response(err, rid, http.method)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            gone = self._client_gone(http, exc)
            if gone is None:
                log.error("request %s (%s) failed: %s", rid, info["operation"], one_line(exc))
                info["error"] = "InternalError"
                status = 500
                response = self.error_response(S3Error("InternalError"), rid, http.method)
            else:
                # The client went away (or its body ended early) mid-request: one line, not a
                # traceback; the operation already left nothing behind.
                log.warning("request %s (%s %s/%s): %s after %d of %s body bytes received",
                            rid, info["operation"], info.get("bucket") or "",
                            info.get("_key") or "", gone, http.content.total_bytes,
                            http.content_length if http.content_length is not None else "?")
                info["error"] = gone
                # 499 (nginx's "client closed request") marks it in logs and metrics; a
                # client still listening gets IncompleteBody, as from AWS.
                status = 499 if gone == "ClientDisconnected" else 400
                response = self.error_response(S3Error("IncompleteBody"), rid, http.method)
                response.force_close()
        elapsed = time.monotonic() - started
        operation = str(info["operation"])
        self._observe(operation, status, elapsed)
        if accesslog.enabled():
            write_access_line(http, info, rid, status, response, started)
        return response

    def _browser_at_root(self, http: web.Request) -> bool:
        """A browser, not an S3 client, opening the endpoint (a GET of / asking for HTML,
        with no S3 authentication, not virtual-hosted): it gets the console, not XML."""
        return (http.method == "GET" and getattr(self.gateway, "console", None) is not None
                and "text/html" in http.headers.get("Accept", "")
                and "Authorization" not in http.headers
                and not {"X-Amz-Algorithm", "Signature", "AWSAccessKeyId"} & set(http.query)
                and self._host_bucket(split_host(http.headers.get("Host"))) is None)

    @staticmethod
    def _client_gone(http: web.Request, exc: Exception) -> str | None:
        """ClientDisconnected / IncompleteBody when `exc` comes from the client's connection or
        body, else None (a fault of ours, or of a backend)."""
        if not isinstance(exc, (ConnectionError, RequestPayloadError)):
            return None
        transport = http.transport
        if transport is None or transport.is_closing():
            return "ClientDisconnected"
        if http.content.exception() is not None:
            return "IncompleteBody"
        return None

    def _host_bucket(self, host: str | None) -> str | None:
        # Clients send the same few Host values over and over: remember the answers.
        try:
            return self._hosts[host]
        except KeyError:
            pass
        if len(self._hosts) > 10_000:
            self._hosts.clear()
        answer = self._hosts[host] = bucket_from_host(host, self.endpoints)
        return answer

    def _observe(self, operation: str, status: int, elapsed: float) -> None:
        # prometheus-client's labels() costs a few microseconds; keep the children.
        counter = self._counters.get((operation, status))
        if counter is None:
            counter = self.gateway.metrics.requests.labels(operation, str(status))
            self._counters[(operation, status)] = counter
        histogram = self._histograms.get(operation)
        if histogram is None:
            histogram = self.gateway.metrics.request_seconds.labels(operation)
            self._histograms[operation] = histogram
        counter.inc()
        histogram.observe(elapsed)

    async def expect_continue(self, http: web.Request) -> None:
        """aiohttp's expect handler, for `Expect: 100-continue`: what refuses a request before
        its body (authentication, a missing bucket, access, a declared size over the limit)
        is found now and answered by handle() without a 100 Continue, so the client never
        sends the body; otherwise 100 Continue and the request runs as usual."""
        if http.headers.get("Expect", "").strip().lower() != "100-continue":
            return  # an expectation we do not know: served as if absent
        try:
            await self._before_body(http)
        except S3Error as err:
            http[EARLY_ERROR] = err
            return
        except Exception as exc:  # the request itself meets it again and answers it
            log.warning("100-continue pre-check failed: %s", one_line(exc))
        if http.version >= (1, 1):
            await http.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            http.writer.output_size = 0  # the answer proper has not started

    async def _before_body(self, http: web.Request) -> None:
        """The checks of _dispatch and of the operation that need no body."""
        if http.method not in ("PUT", "POST") or http.path.startswith("/_/"):
            return
        raw_path, _, raw_query = http.raw_path.partition("?")
        host = split_host(http.headers.get("Host"))
        host_bucket = self._host_bucket(host)
        bucket_name, key = parse_target(raw_path, host_bucket)
        query = {k: v for k, v in reversed(parse_qsl(raw_query, keep_blank_values=True))}
        result = auth.authenticate(http.method, raw_path, raw_query, http.headers,
                                   self.gateway.accounts, host_bucket=host_bucket,
                                   region=self.regions)
        level = "service" if bucket_name is None else ("bucket" if key is None else "object")
        sub = next((name for name in SUBRESOURCES if name in query), "")
        check_declared_length(http, level, sub, result)
        if bucket_name is None or ((level, sub) == ("bucket", "") and http.method == "PUT"):
            return  # CreateBucket: no bucket yet
        bucket_record = await self.gateway.metadata.get_bucket(bucket_name)
        if bucket_record is None:
            raise S3Error("NoSuchBucket", BucketName=bucket_name)
        if (level, http.method, sub) == ("bucket", "POST", ""):
            return  # POST Object: its form (in the body) carries the credentials
        s3req = S3Request(http=http, gateway=self.gateway, request_id="", bucket=bucket_name,
                          key=key, query=query, auth=result, host=host)
        await access.authorize(s3req, bucket_record, access.request_action(s3req), key)

    @staticmethod
    def error_response(err: S3Error, rid: str, method: str) -> web.Response:
        body = b"" if method == "HEAD" or err.status == 304 else render_error(err, rid)
        headers = {"Content-Type": "application/xml", **err.headers}
        return web.Response(status=err.status, body=body, headers=headers)

    async def _dispatch(self, http: web.Request, rid: str,
                        info: dict[str, object]) -> web.StreamResponse:
        raw = http.raw_path
        raw_path, _, raw_query = raw.partition("?")
        host = split_host(http.headers.get("Host"))
        host_bucket = self._host_bucket(host)
        bucket_name, key = parse_target(raw_path, host_bucket)
        info["_key"] = key  # for the one-line report of a client that goes away
        check_headers(http.headers)
        try:
            if not raw_query.isascii():  # raw bytes that are not UTF-8 arrive as surrogates
                raw_query.encode("utf-8")
            pairs = parse_qsl(raw_query, keep_blank_values=True, errors="strict")
        except (ValueError, UnicodeError):
            raise S3Error("InvalidURI") from None
        query = {k: v for k, v in reversed(pairs)}
        check_overrides(query)
        info["bucket"] = bucket_name
        if http.method == "OPTIONS":  # CORS preflight: browsers send it without credentials
            info["operation"] = "cors_preflight"
            return await cors.preflight(self.gateway, bucket_name, http)
        # The operation is known before authentication, so a refused request logs it too.
        level = "service" if bucket_name is None else ("bucket" if key is None else "object")
        sub = next((name for name in SUBRESOURCES if name in query), "")
        handler = ROUTES.get((level, http.method, sub))
        info["operation"] = handler.__name__ if handler else "unsupported"
        info["versionId"] = query.get("versionId")
        try:
            early = early_error(http)
            if early is not None:
                raise early
            result = auth.authenticate(http.method, raw_path, raw_query, http.headers,
                                       self.gateway.accounts, host_bucket=host_bucket,
                                       region=self.regions)
        except S3Error as err:
            info["accessKeyId"] = claimed_access_key(http.headers, query)
            if err.resource is None:
                err.resource = resource_of(bucket_name, key)
            raise
        check_declared_length(http, level, sub, result)
        s3req = S3Request(http=http, gateway=self.gateway, request_id=rid, bucket=bucket_name,
                          key=key, query=query, auth=result, host=host, extra_log=info)
        if result.account is not None:
            info["account"] = result.account.name
            info["canonicalId"] = result.account.canonical_id
            info["accessKeyId"] = result.access_key
        if handler is None:
            if sub or level != "service":
                raise S3Error("NotImplemented",
                              f"{http.method} {level} {'?' + sub if sub else ''} is not implemented",
                              resource=s3req.resource)
            raise S3Error("MethodNotAllowed", resource=s3req.resource)
        try:
            return await handler(s3req)
        except S3Error as err:
            if err.resource is None:
                err.resource = s3req.resource
            raise
