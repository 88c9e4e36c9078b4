"""OpenStack Swift location (tempauth or Keystone v3) through python-swiftclient.

Objects are ordinary Swift objects in `containerName`, each at exactly the key it is given (the
location wrapper makes every write's key unique, so nothing is ever overwritten in place); user
metadata, tags and content headers are the object's own Swift metadata. Multipart uploads write
each part as a segment object in `<containerName>_segments`, named
`<key>/<upload id>/<part number>-<token>` (a new segment per attempt: a retried part never
replaces bytes a completion may be using), and complete into a Static Large Object (SLO)
manifest, which any Swift client reads as one object. python-swiftclient is synchronous: every
call runs in a thread pool the translator owns, on pooled connections that share one token and
re-authenticate on 401; bodies cross between the loop and those threads through
gateway.translators.sync_bridge.

Swift's request-level 4xx answers (a metadata value too long, too many segments...) raise
Rejected, 429/498 Throttled, 409/412 Precondition, 401 Unauthenticated, 403 PermissionDenied;
a missing container, 5xx and transport errors Unavailable (see translate_error).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import importlib.util
import json
import logging
import re
import secrets
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import parse_qsl, quote, urlencode

import swiftclient
from swiftclient.exceptions import ClientException

from gateway.translators.base import (
    CHUNK_SIZE,
    ByteStream,
    ConfigError,
    ForeignObject,
    Health,
    NotFound,
    NotSupported,
    ObjectMeta,
    Part,
    PermissionDenied,
    Precondition,
    Rejected,
    Stored,
    Throttled,
    Translator,
    TranslatorError,
    Unauthenticated,
    Unavailable,
    details_bool,
    details_int,
    details_str,
    refuse_unknown,
)
from gateway.translators.sync_bridge import AsyncBodyReader, stream_from_thread

log = logging.getLogger(__name__)
# swiftclient logs every non-2xx answer at INFO (our expected 404s included) with token
# prefixes; errors reach the gateway as exceptions anyway.
logging.getLogger("swiftclient").setLevel(logging.WARNING)

T = TypeVar("T")

CONNECT_TIMEOUT, READ_TIMEOUT = 5.0, 60.0
GIB = 1024**3
# Swift refuses single PUTs over max_file_size (5 GiB + 2 by default): larger bodies go as an SLO.
DEFAULT_LARGE_OBJECT_THRESHOLD = 5 * GIB
DEFAULT_SEGMENT_SIZE = 1 * GIB
DEFAULT_MAX_CONNECTIONS = 16
# Swift's default max_manifest_segments; /info is asked for the cluster's own value.
DEFAULT_MAX_MANIFEST_SEGMENTS = 1000
# A streamed PUT cannot be replayed after a 401, so a connection idle for longer than this
# first proves its token with a cheap HEAD (swiftclient re-authenticates on that 401).
TOKEN_PROBE_AFTER = 10.0
# Tags travel as one metadata item in x-amz-tagging form (`k1=v1&k2=v2`, URL-encoded), because
# tag keys may hold characters that are not allowed in header names.
TAGS_META = "s3-tagging"
# Content headers Swift keeps with an object (object-server allowed_headers defaults).
CONTENT_HEADERS = {
    "content_type": "Content-Type",
    "cache_control": "Cache-Control",
    "content_disposition": "Content-Disposition",
    "content_encoding": "Content-Encoding",
    "content_language": "Content-Language",
    "expires": "Expires",
}
MAX_NAME_BYTES = 1024  # Swift's default max_object_name_length
# The longest `/<upload id>/<leaf>` after a key prefix: `/` 32 `/manifest-000-<16 hex>`.
SEGMENT_SUFFIX = 64
LEGACY_SEGMENT_SUFFIX = 50  # what it was before part names had a token (older SLOs)
LIST_PAGE = 10000  # Swift's default container_listing_limit
# What follows `<key prefix>/` in our segment names: the upload id, then a part attempt
# (`00001-<token>`; `00001` before tokens), a nested manifest, or a segment of a large PUT.
_SEGMENT_LEAF = r"[0-9a-f]{32}/(\d{5}(-[0-9a-f]{16})?|manifest-\d{3}(-[0-9a-f]{16})?|segment-\d{5})"
_UPLOAD_SEGMENT = re.compile(_SEGMENT_LEAF)
_SEGMENT_NAME = re.compile(r"(.+)/" + _SEGMENT_LEAF)
# Every write's key ends with the location wrapper's token; a segment name never does.
_WRITE_KEY = re.compile(r".*~[0-9a-f]{24}")


@dataclass
class _Pooled:
    conn: swiftclient.Connection
    verified_at: float = 0.0  # monotonic time of the last successful request


def _is_missing(exc: BaseException) -> bool:
    return isinstance(exc, ClientException) and exc.http_status == 404


def _etag(value: str | None) -> str | None:
    return value.strip('"') if value else None


def translate_error(exc: BaseException) -> TranslatorError | None:
    """The translator error a Swift answer stands for; None when it is no answer (a transport
    error: the wrapper makes it Unavailable) or a 404, which is left to the callers, which
    know what is missing. Swift's 503 means its storage nodes did not answer, not "slow down"."""
    if not isinstance(exc, ClientException) or exc.http_status is None:
        return None
    status = exc.http_status
    reason = f"{status} {exc.http_reason}"
    if status == 404:
        return None
    if status in (429, 498):  # 498: the status of Swift's own ratelimit middleware
        return Throttled(f"swift asked to slow down: {reason}")
    if status == 401:
        return Unauthenticated(f"swift refused the credentials: {reason}")
    if status == 403:
        return PermissionDenied(f"swift: {reason}")
    if status in (409, 412):
        return Precondition(f"swift: {reason}")
    if status == 501:
        return NotSupported(f"swift: {reason}")
    if 400 <= status < 500:
        detail = (exc.http_response_content or b"")[:300]
        if isinstance(detail, bytes):
            detail = detail.decode(errors="replace")
        return Rejected(f"swift refused the request: {reason} {detail}".strip())
    return Unavailable(f"swift: {reason}")


KNOWN_DETAILS = ("authUrl", "authVersion", "user", "key", "containerName", "storagePolicy",
                 "region", "tenantName", "projectName", "userDomainName", "projectDomainName",
                 "userDomainId", "projectDomainId", "maxConnections", "largeObjectThreshold",
                 "segmentSize")


@dataclass(frozen=True)
class SwiftSettings:
    """A swift location's `details`, parsed and checked in this one place."""

    auth_url: str
    auth_version: str
    user: str
    key: str
    container: str
    storage_policy: str | None
    os_options: dict[str, str]
    max_connections: int
    large_object_threshold: int
    segment_size: int

    @classmethod
    def parse(cls, name: str, details: Mapping[str, Any], env: Mapping[str, str]
              ) -> SwiftSettings:
        refuse_unknown(SwiftTranslator.type_name, details, KNOWN_DETAILS)
        auth_url = details_str(details, "authUrl")
        assert auth_url is not None
        if not auth_url.startswith(("http://", "https://")):
            raise ConfigError("authUrl", "must be an http:// or https:// URL")
        auth_version = _auth_version(details.get("authVersion", 1))
        user = details_str(details, "user")
        assert user is not None
        key = env.get(f"{name}_SWIFT_KEY") or details_str(details, "key", required=False)
        if not key:
            raise ConfigError("key", f"is required (in details or env {name}_SWIFT_KEY)")
        container = details_str(details, "containerName")
        assert container is not None
        if "/" in container or len(container.encode()) > 256 - len("_segments"):
            raise ConfigError("containerName", "must not contain '/' and be at most 247 bytes")
        details_bool(details, "bucketMatch", False)  # applied by the caller; checked here
        return cls(
            auth_url=auth_url, auth_version=auth_version, user=user, key=key,
            container=container,
            storage_policy=details_str(details, "storagePolicy", required=False),
            os_options=_keystone_options(details, auth_version),
            max_connections=details_int(details, "maxConnections", DEFAULT_MAX_CONNECTIONS,
                                        1, 256),
            large_object_threshold=details_int(details, "largeObjectThreshold",
                                               DEFAULT_LARGE_OBJECT_THRESHOLD, 1, 5 * GIB),
            segment_size=details_int(details, "segmentSize", DEFAULT_SEGMENT_SIZE, 1, 5 * GIB),
        )


def _keystone_options(details: Mapping[str, Any], auth_version: str) -> dict[str, str]:
    options: dict[str, str] = {}
    region = details_str(details, "region", required=False)
    if region:
        options["region_name"] = region
    if auth_version != "3":
        return options
    if importlib.util.find_spec("keystoneclient") is None:
        raise ConfigError("authVersion", "3 (Keystone) needs python-keystoneclient installed")
    tenant = details_str(details, "tenantName", required=False)
    project = details_str(details, "projectName", required=False)
    if tenant and project and tenant != project:
        raise ConfigError("projectName", "and tenantName name different projects")
    if not (tenant or project):
        raise ConfigError("projectName", "is required with authVersion 3 (or tenantName)")
    options["project_name"] = project or tenant or ""
    for key, option, default in (
        ("userDomainName", "user_domain_name", "Default"),
        ("projectDomainName", "project_domain_name", "Default"),
        ("userDomainId", "user_domain_id", None),
        ("projectDomainId", "project_domain_id", None),
    ):
        value = details_str(details, key, required=False, default=default)
        if value:
            options[option] = value
    return options


class SwiftTranslator(Translator):
    type_name = "swift"

    def __init__(self, name: str, details: Mapping[str, Any], env: Mapping[str, str]) -> None:
        super().__init__(name, details, env)
        settings = self.settings = SwiftSettings.parse(name, details, env)
        self.auth_url = settings.auth_url
        self.auth_version = settings.auth_version
        self.user = settings.user
        self.key = settings.key
        self.container = settings.container
        self.segments_container = f"{self.container}_segments"
        self.storage_policy = settings.storage_policy
        self.os_options = settings.os_options
        self.max_connections = settings.max_connections
        self.large_object_threshold = settings.large_object_threshold
        self.segment_size = settings.segment_size
        self._executor: ThreadPoolExecutor | None = None
        self._idle: list[_Pooled] = []
        self._lock = threading.Lock()
        self._token: tuple[str, str] | None = None  # (storage url, token) shared by the pool
        self._segments_ready = False
        self._capabilities: dict[str, Any] | None = None

    # ---- connection pool and threads -------------------------------------------------------

    async def open(self) -> None:
        self._executor = ThreadPoolExecutor(self.max_connections,
                                            thread_name_prefix=f"swift-{self.name}")

    async def close(self) -> None:
        executor, self._executor = self._executor, None
        if executor is not None:
            await asyncio.to_thread(executor.shutdown, wait=True, cancel_futures=True)
        with self._lock:
            idle, self._idle = self._idle, []
        for pooled in idle:
            pooled.conn.close()

    def _new_connection(self) -> swiftclient.Connection:
        url, token = self._token or (None, None)
        return swiftclient.Connection(
            authurl=self.auth_url, user=self.user, key=self.key, auth_version=self.auth_version,
            os_options=dict(self.os_options), preauthurl=url, preauthtoken=token,
            retries=0,  # no replays of PUT/POST; 401 still triggers one re-auth and retry
            timeout=(CONNECT_TIMEOUT, READ_TIMEOUT))

    def _checkout(self) -> _Pooled:
        with self._lock:
            if self._idle:
                return self._idle.pop()
        return _Pooled(self._new_connection())

    def _checkin(self, pooled: _Pooled, ok: bool) -> None:
        if ok:
            pooled.verified_at = time.monotonic()
        else:
            pooled.conn.close()  # the HTTP connection may be mid-request; the token stays
        conn = pooled.conn
        with self._lock:
            if conn.url and conn.token:
                self._token = (conn.url, conn.token)  # new connections start authenticated
            if len(self._idle) < self.max_connections:
                self._idle.append(pooled)
                return
        conn.close()

    def _with_connection(self, call: Callable[[_Pooled], T]) -> T:
        pooled = self._checkout()
        try:
            result = call(pooled)
        except BaseException:
            self._checkin(pooled, ok=False)
            raise
        self._checkin(pooled, ok=True)
        return result

    def _pool(self) -> ThreadPoolExecutor:
        if self._executor is None:
            raise RuntimeError(f"swift location {self.name} is not open")
        return self._executor

    async def _in_thread(self, call: Callable[[], T], *, translate: bool = True) -> T:
        """Run `call` in the pool; Swift's answers become translator errors
        (unless `translate` is off: the caller reads the raw answer)."""
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool(), call)
        except ClientException as exc:
            mapped = translate_error(exc) if translate else None
            if mapped is None:
                raise
            raise mapped from exc

    async def _run(self, call: Callable[[swiftclient.Connection], T], *,
                   translate: bool = True) -> T:
        """Run `call(connection)` in the pool's threads on a pooled connection."""
        return await self._in_thread(lambda: self._with_connection(lambda p: call(p.conn)),
                                     translate=translate)

    # ---- metadata --------------------------------------------------------------------------

    def _headers(self, meta: ObjectMeta) -> dict[str, str]:
        headers = {header: value for field, header in CONTENT_HEADERS.items()
                   if (value := getattr(meta, field))}
        for name, value in meta.user.items():
            headers[f"X-Object-Meta-{name}"] = value
        if meta.tags:
            headers[f"X-Object-Meta-{TAGS_META}"] = urlencode(meta.tags, quote_via=quote)
        return headers

    # ---- streaming -------------------------------------------------------------------------

    async def _put_stream(self, container: str, name: str, body: ByteStream, size: int,
                          headers: Mapping[str, str]) -> str:
        """PUT `size` bytes of `body` to container/name from a pool thread; return the etag."""
        async with AsyncBodyReader(body, size) as reader:
            etag = await self._send(container, name, reader, size, headers)
            try:
                await reader.finish()  # a body longer than `size` fails here
            except BaseException:
                with contextlib.suppress(Exception):
                    await self._run(lambda conn: conn.delete_object(container, name))
                raise
        return etag

    async def _send(self, container: str, name: str, reader: AsyncBodyReader, size: int,
                    headers: Mapping[str, str]) -> str:
        """PUT the next `size` bytes of `reader` to container/name; return the etag."""

        def send(pooled: _Pooled) -> str:
            conn = pooled.conn
            if time.monotonic() - pooled.verified_at > TOKEN_PROBE_AFTER:
                conn.head_container(container)
            response: dict[str, Any] = {}
            # The reader has no seek/tell: swiftclient never replays a half-sent body.
            conn.put_object(container, name, reader, content_length=size, headers=dict(headers),
                            response_dict=response)
            return _etag(response["headers"].get("etag")) or ""

        return await self._in_thread(lambda: self._with_connection(send))

    # ---- objects ---------------------------------------------------------------------------

    async def put(self, key: str, body: ByteStream, size: int, meta: ObjectMeta) -> Stored:
        self._check_name(key)
        headers = self._headers(meta)
        # The key is this write's own: nothing there to replace (or whose segments to drop).
        if size > self.large_object_threshold:
            return await self._put_large(key, body, size, headers)
        etag = await self._put_stream(self.container, key, body, size, headers)
        return Stored(location=self.name, key=key, size=size, etag=etag)

    async def _put_large(self, key: str, body: ByteStream, size: int,
                         headers: Mapping[str, str]) -> Stored:
        """A body over largeObjectThreshold: segments of segmentSize, then an SLO manifest."""
        await self._ensure_segments_container()
        upload_id = uuid.uuid4().hex
        parts: list[Part] = []
        # One reader for the whole body; each segment PUT reads exactly its length of it.
        async with AsyncBodyReader(body, size) as reader:
            try:
                for number, start in enumerate(range(0, size, self.segment_size), start=1):
                    length = min(self.segment_size, size - start)
                    name = self._segment_name(key, upload_id, f"segment-{number:05d}")
                    etag = await self._send(self.segments_container, name, reader, length, {})
                    parts.append(Part(number, Stored(self.name, name, length, etag=etag)))
                await reader.finish()  # a body longer than `size` fails here
                return await self._write_manifest(key, upload_id, parts, headers)
            except BaseException:
                await asyncio.shield(self._abort_quietly(key, upload_id))
                raise

    async def get(self, stored: Stored, offset: int = 0, length: int | None = None) -> ByteStream:
        if length == 0:
            await self.head(stored)
            return _empty()
        headers = {}
        if offset or length is not None:
            end = "" if length is None else str(offset + length - 1)
            headers["Range"] = f"bytes={offset}-{end}"

        try:
            return await stream_from_thread(self._pool(),
                                            lambda: self._download(stored.key, headers))
        except ClientException as exc:
            if _is_missing(exc):
                raise NotFound(stored.key) from None
            mapped = translate_error(exc)
            if mapped is None:
                raise
            raise mapped from exc

    def _download(self, name: str, headers: Mapping[str, str]) -> Iterator[bytes]:
        """The object's chunks on a pooled connection, checked back in at the end; one not read
        to the end (the generator closed early) is closed, as it is mid-response."""
        pooled = self._checkout()
        try:
            _, body = pooled.conn.get_object(self.container, name, resp_chunk_size=CHUNK_SIZE,
                                             headers=dict(headers))
        except BaseException as exc:
            self._checkin(pooled, ok=_is_missing(exc))
            raise
        finished = False
        try:
            yield from body
            finished = True
        finally:
            if not finished:
                body.close()
            self._checkin(pooled, ok=finished)

    async def head(self, stored: Stored) -> Stored:
        try:
            headers = await self._run(lambda conn: conn.head_object(self.container, stored.key))
        except ClientException as exc:
            if _is_missing(exc):
                raise NotFound(stored.key) from None
            raise
        return Stored(location=self.name, key=stored.key, size=int(headers["content-length"]),
                      etag=_etag(headers.get("etag")))

    async def delete(self, stored: Stored) -> None:
        """The object at stored.key and, for an SLO, the segments it owns. A segment's name
        (as list_pieces reports segments) deletes that segment. Swift keeps no versions, and
        every write has a key of its own: with or without an etag pin, the key goes."""
        def delete(conn: swiftclient.Connection) -> list[str]:
            segments = self._owned_segments(conn, stored.key)
            try:
                conn.delete_object(self.container, stored.key)  # an SLO: just its manifest
            except ClientException as exc:
                if not _is_missing(exc):
                    raise
            return segments

        if _is_segment_name(stored.key):
            await self._drop_segments([stored.key])
        await self._drop_segments(await self._run(delete))

    async def list_pieces(self, prefix: str = "") -> AsyncIterator[Stored]:
        """Every object under `prefix` in the container, then every segment under it in the
        segments container (parts of open uploads, segments of SLOs, nested manifests), one
        listing page at a time. Segments are reported by their own names; piece_id() maps
        them to the key they belong to."""
        for container in (self.container, self.segments_container):
            marker = ""
            while True:
                page = await self._run(
                    lambda conn, c=container, m=marker: self._list_page(conn, c, prefix, m))
                for item in page:
                    yield Stored(location=self.name, key=item["name"], size=int(item["bytes"]),
                                 etag=_etag(item.get("hash")))
                if len(page) < LIST_PAGE:
                    break
                marker = page[-1]["name"]

    def _list_page(self, conn: swiftclient.Connection, container: str, prefix: str,
                   marker: str) -> list[dict[str, Any]]:
        try:
            _, page = conn.get_container(container, prefix=prefix or None, marker=marker or None,
                                         limit=LIST_PAGE)
        except ClientException as exc:
            if container == self.segments_container and _is_missing(exc):
                return []  # no multipart upload or large object ever made it
            raise
        return page

    async def list_objects(self, prefix: str = "", start_after: str = "",
                           details: bool = True) -> AsyncIterator[ForeignObject]:
        """Objects of the main container (segments are no objects), a listing page at a time;
        with `details` each is headed (listings carry no user metadata)."""
        marker = start_after
        while True:
            page = await self._run(
                lambda conn, m=marker: self._list_page(conn, self.container, prefix, m))
            for item in page:
                if details:
                    found = await self.describe(item["name"])
                    if found is not None:  # deleted since the listing
                        yield found
                    continue
                etag = _etag(item.get("hash"))
                yield ForeignObject(
                    key=item["name"], size=int(item["bytes"]), s3_etag=None, detailed=False,
                    stored=Stored(location=self.name, key=item["name"],
                                  size=int(item["bytes"]), etag=etag),
                    meta=ObjectMeta(content_type=item.get("content_type")),
                    last_modified=_listing_time(item.get("last_modified")))
            if len(page) < LIST_PAGE:
                return
            marker = page[-1]["name"]

    async def describe(self, key: str) -> ForeignObject | None:
        try:
            headers = await self._run(lambda conn: conn.head_object(self.container, key))
        except ClientException as exc:
            if _is_missing(exc):
                return None
            raise
        meta = ObjectMeta(**{field: headers.get(header.lower())
                             for field, header in CONTENT_HEADERS.items()})
        for name, value in headers.items():
            if not name.lower().startswith("x-object-meta-"):
                continue
            user_name = name[len("x-object-meta-"):]
            if user_name.lower() == TAGS_META:
                meta.tags = dict(parse_qsl(value, keep_blank_values=True))
            else:
                meta.user[user_name.lower()] = value
        etag = _etag(headers.get("etag"))
        # A large object's (SLO/DLO) etag is not the MD5 of its bytes.
        large = "x-static-large-object" in headers or "x-object-manifest" in headers
        stored = Stored(location=self.name, key=key, size=int(headers["content-length"]),
                        etag=etag)
        modified = headers.get("x-timestamp")
        return ForeignObject(key=key, size=stored.size, stored=stored,
                             s3_etag=None if large else etag, meta=meta,
                             last_modified=float(modified) if modified else None)

    def piece_id(self, stored: Stored) -> str:
        """The key a piece belongs to: an object's own key, a segment's owner (its name up to
        `/<upload id>/`), so an SLO and its segments, or an open upload and its parts, are one
        piece for fsck. Keys too long to prefix segments are compared by their hash."""
        match = _SEGMENT_NAME.fullmatch(stored.key)
        if match and not _WRITE_KEY.fullmatch(stored.key):
            return match.group(1)
        return self._key_prefix(stored.key)

    async def copy(self, src: Stored, key: str, meta: ObjectMeta) -> Stored | None:
        if src.size > self.large_object_threshold:
            return None  # Swift copies an SLO as one object, over max_file_size: caller streams
        self._check_name(key)
        headers = self._headers(meta)

        def copy(conn: swiftclient.Connection) -> str | None:
            response: dict[str, Any] = {}
            conn.copy_object(self.container, src.key, f"/{self.container}/{key}",
                             headers=headers, fresh_metadata=True, response_dict=response)
            return _etag(response["headers"].get("etag"))

        try:
            etag = await self._run(copy)
        except ClientException as exc:
            if _is_missing(exc):
                raise NotFound(src.key) from None
            raise
        return Stored(location=self.name, key=key, size=src.size, etag=etag)

    async def update_meta(self, stored: Stored, meta: ObjectMeta) -> Stored:
        headers = self._headers(meta)  # a POST replaces all of the object's user metadata
        try:
            await self._run(lambda conn: conn.post_object(self.container, stored.key, headers))
        except ClientException as exc:
            if _is_missing(exc):
                raise NotFound(stored.key) from None
            raise
        return stored

    # ---- multipart -------------------------------------------------------------------------

    async def create_upload(self, key: str, meta: ObjectMeta) -> str:
        self._check_name(key)
        await self._ensure_segments_container()
        return uuid.uuid4().hex

    async def upload_part(
        self, key: str, upload_id: str, number: int, body: ByteStream, size: int
    ) -> Stored:
        name = self._part_name(key, upload_id, number)
        etag = await self._put_stream(self.segments_container, name, body, size, {})
        return Stored(location=self.name, key=name, size=size, etag=etag)

    async def copy_part(
        self, src: Stored, offset: int, length: int, key: str, upload_id: str, number: int
    ) -> Stored | None:
        name = self._part_name(key, upload_id, number)
        headers = {"X-Copy-From": quote(f"/{self.container}/{src.key}"),
                   "Range": f"bytes={offset}-{offset + length - 1}"}
        try:
            etag = await self._run(lambda conn: conn.put_object(
                self.segments_container, name, None, headers=headers))
        except ClientException as exc:
            if _is_missing(exc):
                raise NotFound(src.key) from None
            raise
        return Stored(location=self.name, key=name, size=length, etag=_etag(etag))

    async def discard_part(self, key: str, upload_id: str, part: Part) -> None:
        """A part replaced by a newer attempt of its number, or left out of the completion:
        its segment is its own (never in a manifest), so it simply goes."""
        await self._drop_segments([part.stored.key])

    async def complete_upload(
        self, key: str, upload_id: str, parts: list[Part], meta: ObjectMeta
    ) -> list[Stored]:
        stored = await self._write_manifest(key, upload_id, parts, self._headers(meta))
        return [stored]

    async def _write_manifest(self, key: str, upload_id: str, parts: list[Part],
                              headers: Mapping[str, str]) -> Stored:
        # SLO refuses 0-byte segments; S3 allows an empty last part (or one empty part).
        segments = [part.stored for part in parts if part.stored.size > 0]
        size = sum(s.size for s in segments)
        max_segments = await self._max_manifest_segments()
        attempt = secrets.token_hex(8)  # nested manifests of a retried completion are new too

        def write(conn: swiftclient.Connection) -> tuple[str | None, set[str]]:
            used = {s.key for s in segments}
            if not segments:  # an empty object: a plain one, no manifest
                return _etag(conn.put_object(self.container, key, b"", headers=dict(headers))), used
            # Each entry pins its segment's etag: SLO refuses a manifest whose segments differ.
            entries = [{"path": f"/{self.segments_container}/{s.key}", "etag": s.etag,
                        "size_bytes": s.size} for s in segments]
            if len(entries) > max_segments:  # nest: sub-manifests of max_segments each
                subs = []
                for index, start in enumerate(range(0, len(entries), max_segments)):
                    name = self._segment_name(key, upload_id, f"manifest-{index:03d}-{attempt}")
                    conn.put_object(self.segments_container, name,
                                    json.dumps(entries[start:start + max_segments]),
                                    query_string="multipart-manifest=put")
                    used.add(name)
                    subs.append({"path": f"/{self.segments_container}/{name}"})
                entries = subs
            etag = conn.put_object(self.container, key, json.dumps(entries),
                                   headers=dict(headers), query_string="multipart-manifest=put")
            return _etag(etag), used

        etag, used = await self._run(write)
        # Only once the manifest stands: segments of this upload it does not use (replaced
        # attempts, unlisted parts, nested manifests of failed completions) go.
        staged = await self._run(lambda conn: self._upload_segments(conn, key, upload_id))
        await self._drop_segments([n for n in staged if n not in used])
        return Stored(location=self.name, key=key, size=size, etag=etag)

    async def abort_upload(self, key: str, upload_id: str, parts: list[Part]) -> None:
        staged = await self._run(lambda conn: self._upload_segments(conn, key, upload_id))
        await self._drop_segments(sorted(set(staged) | {p.stored.key for p in parts}))

    async def _abort_quietly(self, key: str, upload_id: str) -> None:
        try:
            await self.abort_upload(key, upload_id, [])
        except Exception:  # the original error matters more
            log.warning("swift %s: could not remove segments of %s", self.name, key,
                        exc_info=True)

    # ---- segments --------------------------------------------------------------------------

    def _check_name(self, key: str) -> None:
        if len(key.encode()) > MAX_NAME_BYTES:  # Swift would answer 400: the request's problem
            raise Rejected(f"object name longer than Swift's {MAX_NAME_BYTES} bytes")

    def _key_prefix(self, key: str, room: int = SEGMENT_SUFFIX) -> str:
        """Segments live under `<key>/` (as the swift CLI does); keys that leave no room for a
        segment's suffix use a hash."""
        if len(key.encode()) + room > MAX_NAME_BYTES:
            return "sha256-" + hashlib.sha256(key.encode()).hexdigest()
        return key

    def _segment_name(self, key: str, upload_id: str, leaf: str) -> str:
        return f"{self._key_prefix(key)}/{upload_id}/{leaf}"

    def _part_name(self, key: str, upload_id: str, number: int) -> str:
        """A new segment name for each attempt at a part."""
        return self._segment_name(key, upload_id, f"{number:05d}-{secrets.token_hex(8)}")

    def _upload_segments(self, conn: swiftclient.Connection, key: str,
                         upload_id: str) -> list[str]:
        prefix = self._segment_name(key, upload_id, "")
        try:
            _, listing = conn.get_container(self.segments_container, prefix=prefix,
                                            full_listing=True)
        except ClientException as exc:
            if _is_missing(exc):
                return []
            raise
        return [item["name"] for item in listing]

    def _owned_segments(self, conn: swiftclient.Connection, key: str) -> list[str]:
        """Segments (in our segments container, under this key's prefix) of the SLO now at
        `key`, so that deleting it does not leak them. [] for plain objects."""
        try:
            headers = conn.head_object(self.container, key)
        except ClientException as exc:
            if _is_missing(exc):
                return []
            raise
        if headers.get("x-static-large-object", "").lower() != "true":
            return []
        names: list[str] = []
        prefixes = {self._key_prefix(key) + "/", self._key_prefix(key, LEGACY_SEGMENT_SUFFIX) + "/"}
        self._manifest_segments(conn, self.container, key, prefixes, names)
        return names

    def _manifest_segments(self, conn: swiftclient.Connection, container: str, name: str,
                           prefixes: set[str], names: list[str]) -> None:
        _, body = conn.get_object(container, name, query_string="multipart-manifest=get")
        own = f"/{self.segments_container}/"
        for entry in json.loads(body):
            path: str = entry.get("name", "")
            if not path.startswith(own):
                continue
            segment = path[len(own):]
            if not any(segment.startswith(prefix)
                       and _UPLOAD_SEGMENT.fullmatch(segment[len(prefix):])
                       for prefix in prefixes):
                continue
            if entry.get("sub_slo"):
                self._manifest_segments(conn, self.segments_container, segment, prefixes, names)
            names.append(segment)

    async def _drop_segments(self, names: list[str]) -> None:
        if not names:
            return

        def drop(conn: swiftclient.Connection) -> None:
            for name in names:
                try:
                    conn.delete_object(self.segments_container, name)
                except ClientException as exc:
                    if not _is_missing(exc):
                        raise

        await self._run(drop)

    async def _ensure_segments_container(self) -> None:
        if self._segments_ready:
            return

        def ensure(conn: swiftclient.Connection) -> None:
            try:
                conn.head_container(self.segments_container)
            except ClientException as exc:
                if not _is_missing(exc):
                    raise
                headers = {"X-Storage-Policy": self.storage_policy} if self.storage_policy else {}
                conn.put_container(self.segments_container, headers=headers)

        # Untranslated: a 400 here (an unknown storagePolicy) is the location's config problem.
        await self._run(ensure, translate=False)
        self._segments_ready = True

    async def _max_manifest_segments(self) -> int:
        if self._capabilities is None:
            try:
                self._capabilities = await self._run(lambda conn: conn.get_capabilities())
            except Exception:  # /info can be disabled: use Swift's default
                self._capabilities = {}
        slo = self._capabilities.get("slo") or {}
        return int(slo.get("max_manifest_segments", DEFAULT_MAX_MANIFEST_SEGMENTS))

    # ---- health ----------------------------------------------------------------------------

    async def check(self) -> Health:
        try:
            await self._run(lambda conn: conn.head_container(self.container), translate=False)
        except ClientException as exc:
            if exc.http_status == 404:
                return Health(False, f"container {self.container} does not exist")
            if exc.http_status == 401:
                return Health(False, "authentication refused")
            return Health(False, f"swift error {exc.http_status or ''}: {exc.msg}".strip())
        except Exception as exc:
            return Health(False, f"{type(exc).__name__}: {exc}"[:300])
        return Health(True, "OK")


async def _empty() -> ByteStream:
    return
    yield b""  # an async generator that yields nothing


def _listing_time(value: str | None) -> float | None:
    """A container listing's last_modified (ISO 8601, UTC, no zone) as POSIX seconds."""
    if not value:
        return None
    try:
        return datetime.fromisoformat(value).replace(tzinfo=UTC).timestamp()
    except ValueError:
        return None


def _is_segment_name(name: str) -> bool:
    return bool(_SEGMENT_NAME.fullmatch(name)) and not _WRITE_KEY.fullmatch(name)


def _auth_version(value: Any) -> str:
    text = str(value)
    if text in ("1", "1.0"):
        return "1"
    if text in ("3", "3.0"):
        return "3"
    raise ConfigError("authVersion", "must be 1 (tempauth, swauth) or 3 (Keystone v3)")
