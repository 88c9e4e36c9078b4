"""Google Cloud Storage location, over the GCS JSON API with gcloud-aio-storage.

Objects sit in `bucketName` in native form: the bytes as one ordinary object, S3 user metadata as
GCS custom metadata under the same names, each S3 tag as custom metadata `aws-tag-<key>`, an
`Expires` header as custom metadata `aws-expires`, and the other content headers as the object's
own properties (contentType, cacheControl, ...). Every write lands at the key it is given (unique
per write, see base.py); `Stored.version_id` is the GCS generation, and every read, head and
delete is pinned to it. A delete without one removes every generation at the key.

Multipart uploads stage each part as a temporary object in `mpuBucketName` under
`s3gw-mpu/<uploadId>-<hash of key>/part-<number>-<random>`: a name of its own per attempt, so a
part uploaded again never overwrites bytes a running completion composes (the caller drops the
replaced one with discard_part). Staged objects carry the upload's key as custom metadata
`s3gw-key`, so list_pieces can tell which key they belong to. Completion composes the listed parts
(GCS composes at most 32 sources per call) in as many rounds as needed, so all 10,000 S3 parts
work, straight into the final key when both buckets are one, else into a temporary that is
rewritten into `bucketName`; then the staging prefix is emptied. All upload state is the upload
id, the key and the parts the caller passes in, so an upload survives a gateway restart.

Errors (one place, `_gcs_errors`): 404 of what a call names -> NotFound, 429 -> Throttled,
401 -> Unauthenticated, 403 -> PermissionDenied, 409/412 -> Precondition, 501 -> NotSupported,
any other 4xx the request caused (a too-long name, a bad value) -> Rejected; a missing bucket
and 5xx -> Unavailable.

gcloud-aio-storage gives the session, the OAuth token and the calls that fit as they are (delete,
list, rewrite, bucket metadata). Uploads, downloads, compose and metadata calls go through the
same session by hand: the SDK's versions buffer whole bodies or cannot pin a generation.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import io
import json
import logging
import re
import secrets
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar
from urllib.parse import quote

import aiohttp
from gcloud.aio.auth import Token
from gcloud.aio.storage import Storage

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
    Unauthenticated,
    Unavailable,
    details_bool,
    details_str,
    refuse_unknown,
)

log = logging.getLogger(__name__)

GCS_API_ROOT = "https://storage.googleapis.com"
SCOPES = ["https://www.googleapis.com/auth/devstorage.read_write"]

# Bodies up to this size go in one request (buffered); larger ones stream through a resumable
# session without buffering.
SINGLE_REQUEST_MAX = 8 * 1024 * 1024
COMPOSE_MAX_SOURCES = 32  # GCS limit per compose call
CONCURRENCY = 16  # parallel compose/delete calls of one completion or cleanup
TIMEOUT = aiohttp.ClientTimeout(total=None, connect=5, sock_connect=5, sock_read=60)
CHECK_TIMEOUT = aiohttp.ClientTimeout(total=10, connect=5)

LIST_PAGE = 1000
TAG_PREFIX = "aws-tag-"
EXPIRES_KEY = "aws-expires"
STAGING_ROOT = "s3gw-mpu/"
KEY_METADATA = "s3gw-key"  # on staged objects: the key of the upload they belong to
LIST_FIELDS = "items(name,generation,size,etag,metadata),nextPageToken"
# What import and read-through need of each object (list_objects with details).
FOREIGN_FIELDS = ("items(name,generation,size,etag,md5Hash,updated,metadata,contentType,"
                  "cacheControl,contentDisposition,contentEncoding,contentLanguage),nextPageToken")
_STAGING_NAME = re.compile(r"s3gw-mpu/[0-9a-f]{32}-[0-9a-f]{16}/")
_UPLOAD_ID = re.compile(r"[0-9a-f]{32}")
# GCS bucket names: 3-63 characters per dot-separated component, up to 222 with dots.
_BUCKET_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]")

# ObjectMeta attribute -> GCS object resource property.
_CONTENT_PROPERTIES = {
    "content_type": "contentType",
    "cache_control": "cacheControl",
    "content_disposition": "contentDisposition",
    "content_encoding": "contentEncoding",
    "content_language": "contentLanguage",
}

T = TypeVar("T")


KNOWN_DETAILS = ("bucketName", "mpuBucketName", "gcpEndpoint", "serviceCredentials",
                 # CloudServer's HMAC keys: known, so they are refused with the reason below.
                 "credentials", "credentialsProfile")


@dataclass(frozen=True)
class GcpSettings:
    """A gcp location's `details`, parsed and checked in this one place."""

    bucket: str
    mpu_bucket: str
    api_root: str
    # Where the service account key comes from: a file path (read in open(), no I/O here) or
    # the parsed key data; neither means anonymous (only with a custom endpoint).
    key_file: str | None
    key_data: dict[str, Any] | None
    scopes: list[str]

    @property
    def anonymous(self) -> bool:
        return self.key_file is None and self.key_data is None

    @classmethod
    def parse(cls, name: str, details: Mapping[str, Any], env: Mapping[str, str]) -> GcpSettings:
        refuse_unknown(GcpTranslator.type_name, details, KNOWN_DETAILS)
        bucket = _bucket_name(details, "bucketName", None)
        mpu_bucket = _bucket_name(details, "mpuBucketName", bucket)
        details_bool(details, "bucketMatch", False)  # applied by the caller; checked here
        for unsupported in ("credentials", "credentialsProfile"):
            if unsupported in details:
                raise ConfigError(unsupported, "GCS HMAC keys only work with the XML API; this "
                                  "gateway uses the JSON API: give serviceCredentials (a service "
                                  "account key) instead")
        endpoint = details_str(details, "gcpEndpoint", required=False)
        if endpoint is not None:
            if "://" not in endpoint:
                endpoint = f"https://{endpoint}"
            if not re.fullmatch(r"https?://[^/\s]+(/\S*)?", endpoint):
                raise ConfigError("gcpEndpoint", "must be a URL such as http://127.0.0.1:4443")
        key_file, key_data, scopes = _credentials(name, details, env)
        settings = cls(bucket=bucket, mpu_bucket=mpu_bucket,
                       api_root=(endpoint or GCS_API_ROOT).rstrip("/"), key_file=key_file,
                       key_data=key_data, scopes=scopes)
        # Without credentials, only a custom endpoint (an emulator, a private gateway) makes
        # sense: requests then go out without any Authorization header.
        if settings.anonymous and endpoint is None:
            raise ConfigError("serviceCredentials", "is required for storage.googleapis.com (a "
                              f"key file path or the key JSON); or set {name}_GCP_SERVICE_KEYFILE")
        return settings


class GcpTranslator(Translator):
    type_name = "gcp"

    def __init__(self, name: str, details: Mapping[str, Any], env: Mapping[str, str]) -> None:
        super().__init__(name, details, env)
        settings = self.settings = GcpSettings.parse(name, details, env)
        self.bucket = settings.bucket
        self.mpu_bucket = settings.mpu_bucket
        self.api_root = settings.api_root
        self._key_file, self._key_data, self._scopes = (settings.key_file, settings.key_data,
                                                        settings.scopes)
        self.anonymous = settings.anonymous
        self._session: aiohttp.ClientSession | None = None
        self._storage: Storage | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    async def open(self) -> None:
        key_data = self._key_data
        if self._key_file is not None:
            key_data = await asyncio.to_thread(_read_key_file, self._key_file)
        self._session = aiohttp.ClientSession(
            timeout=TIMEOUT, read_bufsize=CHUNK_SIZE,
            connector=aiohttp.TCPConnector(limit=64, ttl_dns_cache=300),
        )
        token: Token | _NoToken = _NoToken()  # anonymous: skip the SDK's default-credentials lookup
        if key_data is not None:
            token = Token(service_file=io.StringIO(json.dumps(key_data)), session=self._session,
                          scopes=self._scopes)
        self._storage = Storage(session=self._session, api_root=self.api_root,
                                api_is_dev=self.anonymous, token=token)  # type: ignore[arg-type]

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
        self._session = None
        self._storage = None

    @property
    def storage(self) -> Storage:
        if self._storage is None:
            raise RuntimeError(f"location {self.name}: open() was not called")
        return self._storage

    # -- objects -----------------------------------------------------------------------------

    async def put(self, key: str, body: ByteStream, size: int, meta: ObjectMeta) -> Stored:
        resource = _resource(meta)
        with _gcs_errors():
            return self._stored(await self._upload(self.bucket, key, resource, body, size))

    async def get(self, stored: Stored, offset: int = 0, length: int | None = None) -> ByteStream:
        if length == 0:
            await self.head(stored)
            return _no_bytes()
        # Accept-Encoding gzip: hand back the stored bytes, never GCS's decompressive transcoding.
        headers = {"Accept-Encoding": "gzip"}
        ranged = offset > 0 or length is not None
        if ranged:
            end = "" if length is None else str(offset + length - 1)
            headers["Range"] = f"bytes={offset}-{end}"
        params = {"alt": "media", **_generation(stored)}
        with _gcs_errors():
            response = await self._request("GET", self._object_url(stored.key), params=params,
                                           headers=headers, auto_decompress=False,
                                           not_found=stored.key)
        skip = offset if ranged and response.status == 200 else 0  # server ignored Range
        return _read_response(response, skip, length)

    async def head(self, stored: Stored) -> Stored:
        with _gcs_errors():
            resource = await self._object_resource(stored.key, stored.version_id)
        return self._stored(resource)

    async def delete(self, stored: Stored) -> None:
        bucket = self._bucket_of(stored.key)
        with _gcs_errors():
            if stored.version_id is None:
                # No pin: the bytes of a write that never committed. The key is that write's
                # alone, so every generation at exactly this name goes (one when the bucket
                # keeps no versions).
                async for piece in self._list(bucket, stored.key):
                    if piece.key == stored.key:
                        await self._delete_name(bucket, piece.key, piece.version_id)
                return
            # GCS deletes exactly the pinned generation, but some GCS-compatible servers
            # (fake-gcs-server) ignore `generation` and would remove a newer object under the
            # same name: confirm the generation still exists first.
            try:
                await self._object_resource(stored.key, stored.version_id)
            except NotFound:
                return
            await self._delete_name(bucket, stored.key, stored.version_id)

    async def list_pieces(self, prefix: str = "") -> AsyncIterator[Stored]:
        """Every object (every generation the bucket keeps) under `prefix`, then the staged
        objects of multipart uploads whose key is under `prefix` (reported by their own
        staging names, as upload_part returned them)."""
        with _gcs_errors():
            async for piece in self._list(self.bucket, prefix):
                if self.mpu_bucket == self.bucket and _STAGING_NAME.match(piece.key):
                    continue  # staged objects come below, filtered by their upload's key
                yield piece
            async for piece, metadata in self._list(self.mpu_bucket, STAGING_ROOT,
                                                    with_metadata=True):
                if not _STAGING_NAME.match(piece.key):
                    continue
                owner = metadata.get(KEY_METADATA)
                # Staged before keys were recorded: only a listing of everything claims them.
                if (owner.startswith(prefix) if owner is not None else not prefix):
                    yield piece

    async def list_objects(self, prefix: str = "", start_after: str = "",
                           details: bool = True) -> AsyncIterator[ForeignObject]:
        """Current generations in the main bucket (staged parts are no objects); the listing
        carries every property, so nothing is headed."""
        params = {"prefix": prefix, "maxResults": str(LIST_PAGE), "fields": FOREIGN_FIELDS}
        if start_after:
            params["startOffset"] = start_after  # inclusive: the name itself is skipped below
        with _gcs_errors():
            while True:
                listing = await self.storage.list_objects(self.bucket, params=dict(params),
                                                          timeout=TIMEOUT)  # type: ignore[arg-type]
                for item in listing.get("items", []):
                    if item["name"] <= start_after or (
                            self.mpu_bucket == self.bucket and _STAGING_NAME.match(item["name"])):
                        continue
                    yield self._foreign(item)
                token = listing.get("nextPageToken")
                if not token:
                    return
                params["pageToken"] = token

    async def describe(self, key: str) -> ForeignObject | None:
        with _gcs_errors():
            try:
                resource = await self._object_resource(key, None)
            except NotFound:
                return None
        return self._foreign(resource)

    def _foreign(self, resource: Mapping[str, Any]) -> ForeignObject:
        custom = dict(resource.get("metadata") or {})
        custom.pop(KEY_METADATA, None)
        tags = {name[len(TAG_PREFIX):]: custom.pop(name)
                for name in list(custom) if name.startswith(TAG_PREFIX)}
        meta = ObjectMeta(expires=custom.pop(EXPIRES_KEY, None), user=custom, tags=tags,
                          **{attr: resource.get(prop)
                             for attr, prop in _CONTENT_PROPERTIES.items()})
        md5 = resource.get("md5Hash")  # absent on composite objects
        updated = resource.get("updated")
        return ForeignObject(
            key=resource["name"], size=int(resource["size"]), stored=self._stored(resource),
            s3_etag=base64.b64decode(md5).hex() if md5 else None, meta=meta,
            last_modified=_rfc3339(updated) if updated else None)

    def piece_id(self, stored: Stored) -> str:
        if stored.version_id:
            return f"{stored.key}?generation={stored.version_id}"
        return stored.key

    async def copy(self, src: Stored, key: str, meta: ObjectMeta) -> Stored | None:
        with _gcs_errors():
            resource = await self._rewrite(src.key, src.version_id, self.bucket, key,
                                           _resource(meta))
        return self._stored(resource)

    async def update_meta(self, stored: Stored, meta: ObjectMeta) -> Stored:
        # PATCH merges custom metadata: keys no longer wanted are sent as null to drop them.
        with _gcs_errors():
            current = await self._object_resource(stored.key, stored.version_id)
            resource = _resource(meta)
            wanted = resource.get("metadata", {})
            resource["metadata"] = {**{k: None for k in current.get("metadata") or {}}, **wanted}
            for prop in _CONTENT_PROPERTIES.values():
                resource.setdefault(prop, None)
            params = {**_generation(stored), "ifMetagenerationMatch": current["metageneration"]}
            response = await self._request("PATCH", self._object_url(stored.key), params=params,
                                           json=resource, not_found=stored.key)
            return self._stored(await response.json(content_type=None))

    # -- multipart ---------------------------------------------------------------------------

    async def create_upload(self, key: str, meta: ObjectMeta) -> str:
        # Nothing to write: parts are named from (key, upload id), and completion gets `meta`.
        return uuid.uuid4().hex

    async def upload_part(
        self, key: str, upload_id: str, number: int, body: ByteStream, size: int
    ) -> Stored:
        name = self._part_name(key, upload_id, number)
        with _gcs_errors():
            return self._stored(await self._upload(self.mpu_bucket, name, _staged(key), body,
                                                   size))

    async def copy_part(
        self, src: Stored, offset: int, length: int, key: str, upload_id: str, number: int
    ) -> Stored | None:
        if offset != 0 or length != src.size:
            return None  # GCS cannot copy a byte range server-side
        name = self._part_name(key, upload_id, number)
        with _gcs_errors():
            return self._stored(await self._rewrite(src.key, src.version_id, self.mpu_bucket,
                                                    name, _staged(key)))

    async def discard_part(self, key: str, upload_id: str, part: Part) -> None:
        # Only ever a staged object of this very upload: nothing else is a part's to remove.
        if _UPLOAD_ID.fullmatch(upload_id) and part.stored.key.startswith(
                self._staging_prefix(key, upload_id)):
            await self.delete(part.stored)

    async def complete_upload(
        self, key: str, upload_id: str, parts: list[Part], meta: ObjectMeta
    ) -> list[Stored]:
        prefix = self._staging_prefix(key, upload_id)
        sources: list[tuple[str, str | None]] = []
        for part in parts:
            if not part.stored.key.startswith(prefix):
                raise NotFound(f"part {part.number} does not belong to upload {upload_id}")
            sources.append((part.stored.key, part.stored.version_id))
        if not sources:
            raise Rejected("a multipart upload needs at least one part")
        with _gcs_errors():
            final = await self._compose_all(key, prefix, sources, meta)
        try:
            await self._delete_prefix(self.mpu_bucket, prefix)
        except Exception:
            # The object is complete; leftovers under the staging prefix only cost storage.
            log.warning("location %s: could not remove staged parts under %s", self.name,
                        prefix, exc_info=True)
        return [self._stored(final)]

    async def _compose_all(self, key: str, prefix: str, sources: list[tuple[str, str | None]],
                           meta: ObjectMeta) -> dict[str, Any]:
        # Intermediate names are this completion's own (a token), pinned by generation.
        attempt = secrets.token_hex(4)
        staged = _staged(key)
        # Compose rounds: 10,000 parts -> 313 -> 10 -> the object.
        level = 0
        while len(sources) > COMPOSE_MAX_SOURCES:
            level += 1
            groups = [sources[i:i + COMPOSE_MAX_SOURCES]
                      for i in range(0, len(sources), COMPOSE_MAX_SOURCES)]
            composed = await _bounded([
                _bind(self._compose, self.mpu_bucket,
                      f"{prefix}compose-{attempt}-{level}-{index:05d}", group, staged)
                for index, group in enumerate(groups)
            ])
            sources = [(item["name"], item.get("generation")) for item in composed]
        # The object's own metadata, never the staging marker of its sources.
        resource = {"metadata": {}, **_resource(meta)}
        if self.mpu_bucket == self.bucket:
            return await self._compose(self.bucket, key, sources, resource)
        # Compose only works within one bucket: assemble beside the parts, then rewrite.
        assembled = await self._compose(self.mpu_bucket, f"{prefix}final-{attempt}", sources,
                                        staged)
        return await self._rewrite(assembled["name"], assembled.get("generation"), self.bucket,
                                   key, resource)

    async def abort_upload(self, key: str, upload_id: str, parts: list[Part]) -> None:
        # Everything under the upload's staging prefix, recorded in `parts` or not.
        with _gcs_errors():
            await self._delete_prefix(self.mpu_bucket, self._staging_prefix(key, upload_id))

    async def check(self) -> Health:
        for bucket in dict.fromkeys((self.bucket, self.mpu_bucket)):
            try:
                await self.storage.get_bucket_metadata(bucket, timeout=CHECK_TIMEOUT)  # type: ignore[arg-type]
            except aiohttp.ClientResponseError as exc:
                reason = {404: "does not exist", 401: "credentials refused",
                          403: "access denied"}.get(exc.status, f"HTTP {exc.status}")
                return Health(ok=False, message=f"GCS bucket {bucket}: {reason}")
            except Exception as exc:  # unreachable endpoint, timeout, token refresh failure
                return Health(ok=False, message=f"GCS endpoint {self.api_root} unreachable: "
                              f"{type(exc).__name__}")
        return Health(ok=True, message="OK")

    # -- helpers -----------------------------------------------------------------------------

    def _stored(self, resource: Mapping[str, Any]) -> Stored:
        return Stored(location=self.name, key=resource["name"], size=int(resource["size"]),
                      version_id=resource.get("generation"), etag=resource.get("etag"))

    def _bucket_of(self, name: str) -> str:
        """Staged parts live in the MPU bucket, everything else in the main bucket."""
        return self.mpu_bucket if _STAGING_NAME.match(name) else self.bucket

    def _object_url(self, name: str, bucket: str | None = None) -> str:
        bucket = bucket or self._bucket_of(name)
        return f"{self.api_root}/storage/v1/b/{quote(bucket, safe='')}/o/{quote(name, safe='')}"

    def _part_name(self, key: str, upload_id: str, number: int) -> str:
        """A name of its own for every attempt at a part (see the module doc)."""
        return f"{self._staging_prefix(key, upload_id)}part-{number:05d}-{secrets.token_hex(8)}"

    def _staging_prefix(self, key: str, upload_id: str) -> str:
        if not _UPLOAD_ID.fullmatch(upload_id):
            raise NotFound(f"upload {upload_id}")
        # A digest, not the key itself, keeps staged names within GCS's 1024-byte limit.
        digest = hashlib.sha256(key.encode()).hexdigest()[:16]
        return f"{STAGING_ROOT}{upload_id}-{digest}/"

    async def _headers(self) -> dict[str, str]:
        if self.anonymous:
            return {}
        return {"Authorization": f"Bearer {await self.storage.token.get()}"}

    async def _request(self, method: str, url: str, *, headers: Mapping[str, str] | None = None,
                       not_found: str | None = None, **kwargs: Any) -> aiohttp.ClientResponse:
        """One JSON API call on the shared session. A 404 becomes NotFound(`not_found`) when the
        caller names what would be missing; otherwise (a missing bucket on upload) it stays a
        backend error."""
        all_headers = {**(await self._headers()), **(headers or {})}
        try:
            return await self.storage.session.request(method, url, headers=all_headers,
                                                      timeout=TIMEOUT, **kwargs)
        except aiohttp.ClientResponseError as exc:
            if exc.status == 404 and not_found is not None:
                raise NotFound(not_found) from exc
            raise

    async def _object_resource(self, name: str, generation: str | None) -> dict[str, Any]:
        params = {"generation": generation} if generation else {}
        response = await self._request("GET", self._object_url(name), params=params,
                                       not_found=name)
        return await response.json(content_type=None)

    async def _upload(self, bucket: str, name: str, resource: dict[str, Any], body: ByteStream,
                      size: int) -> dict[str, Any]:
        """Stream `body` into a new object. Up to SINGLE_REQUEST_MAX: one multipart request
        (bounded buffer). Larger: a resumable session fed by ONE streamed PUT of the whole body,
        so nothing is buffered. (Chunked PUTs would cost a round trip per chunk, and
        fake-gcs-server rewrites the whole object on each chunk: 256 MiB took 14 s.)
        Nothing is visible before the last byte lands; a failure cancels the session and
        re-raises the body's own error when the body failed."""
        if size < 0:
            raise ValueError("GCS uploads need the body size")
        resource = {**resource, "name": name}
        counted = _CountedBody(body, size)
        if size <= SINGLE_REQUEST_MAX:
            data = b"".join([chunk async for chunk in counted])
            return await self._upload_single(bucket, resource, data)
        session_url = await self._start_resumable(bucket, resource, size)
        try:
            response = await self._request(
                "PUT", session_url, data=counted, allow_redirects=False,
                headers={"Content-Length": str(size)})
            if response.status not in (200, 201):  # 308: GCS is missing bytes
                response.release()
                raise RuntimeError(f"resumable upload incomplete: HTTP {response.status}")
            return await response.json(content_type=None)
        except BaseException as exc:
            await self._cancel_resumable(session_url)
            if counted.error is not None and counted.error is not exc:
                raise counted.error from None  # aiohttp wraps it in ClientOSError
            raise

    async def _upload_single(self, bucket: str, resource: dict[str, Any],
                             data: bytes) -> dict[str, Any]:
        """uploadType=multipart: the resource and the bytes in one request."""
        boundary = uuid.uuid4().hex
        content_type = resource.get("contentType") or "application/octet-stream"
        payload = b"".join([
            f"--{boundary}\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n".encode(),
            json.dumps(resource).encode(),
            f"\r\n--{boundary}\r\nContent-Type: {content_type}\r\n\r\n".encode(),
            data,
            f"\r\n--{boundary}--\r\n".encode(),
        ])
        url = f"{self.api_root}/upload/storage/v1/b/{quote(bucket, safe='')}/o"
        response = await self._request(
            "POST", url, params={"uploadType": "multipart"}, data=payload,
            headers={"Content-Type": f"multipart/related; boundary={boundary}"})
        return await response.json(content_type=None)

    async def _start_resumable(self, bucket: str, resource: dict[str, Any], size: int) -> str:
        url = f"{self.api_root}/upload/storage/v1/b/{quote(bucket, safe='')}/o"
        headers = {"X-Upload-Content-Length": str(size),
                   "X-Upload-Content-Type": resource.get("contentType")
                   or "application/octet-stream"}
        response = await self._request("POST", url, headers=headers, json=resource,
                                       params={"uploadType": "resumable", "name": resource["name"]})
        response.release()
        return response.headers["Location"]

    async def _cancel_resumable(self, session_url: str) -> None:
        # GCS answers 499 to a cancelled session; a failed cancel only leaves an
        # invisible session that GCS expires after a week.
        with contextlib.suppress(Exception):
            headers = await self._headers()
            response = await self.storage.session.request(
                "DELETE", session_url, headers=headers, timeout=CHECK_TIMEOUT,
                auto_raise_for_status=False)
            response.release()

    async def _compose(self, bucket: str, name: str, sources: list[tuple[str, str | None]],
                       resource: dict[str, Any]) -> dict[str, Any]:
        source_objects = [{"name": src, **({"generation": gen} if gen else {})}
                          for src, gen in sources]
        body = {"sourceObjects": source_objects, "destination": {**resource, "name": name}}
        response = await self._request("POST", f"{self._object_url(name, bucket)}/compose",
                                       json=body, not_found=f"a part of {name}")
        return await response.json(content_type=None)

    async def _rewrite(self, src: str, generation: str | None, bucket: str, name: str,
                       resource: dict[str, Any]) -> dict[str, Any]:
        """Server-side copy (objects.rewrite; the SDK repeats the call until done)."""
        # The SDK turns "Content-Type"-style keys into "contentType" JSON properties.
        metadata = {_header_key(prop): value for prop, value in resource.items()}
        params = {"sourceGeneration": generation} if generation else {}
        try:
            result = await self.storage.copy(self._bucket_of(src), src, bucket, new_name=name,
                                             metadata=metadata, params=params,
                                             timeout=TIMEOUT)  # type: ignore[arg-type]
        except aiohttp.ClientResponseError as exc:
            if exc.status == 404:
                raise NotFound(src) from exc
            raise
        return result["resource"]

    async def _delete_prefix(self, bucket: str, prefix: str) -> None:
        """Remove every object (and every generation) under `prefix`."""
        params = {"prefix": prefix, "versions": "true", "maxResults": "1000",
                  "fields": "items(name,generation),nextPageToken"}
        while True:
            listing = await self.storage.list_objects(bucket, params=dict(params),
                                                      timeout=TIMEOUT)  # type: ignore[arg-type]
            await _bounded([_bind(self._delete_name, bucket, item["name"], item.get("generation"))
                            for item in listing.get("items", [])])
            token = listing.get("nextPageToken")
            if not token:
                return
            params["pageToken"] = token

    async def _list(self, bucket: str, prefix: str, *,
                    with_metadata: bool = False) -> AsyncIterator[Any]:
        """Every object and generation under `prefix` in `bucket`, page by page: Stored, or
        (Stored, custom metadata) pairs."""
        params = {"prefix": prefix, "versions": "true", "maxResults": str(LIST_PAGE),
                  "fields": LIST_FIELDS}
        while True:
            listing = await self.storage.list_objects(bucket, params=dict(params),
                                                      timeout=TIMEOUT)  # type: ignore[arg-type]
            for item in listing.get("items", []):
                piece = self._stored(item)
                yield (piece, item.get("metadata") or {}) if with_metadata else piece
            token = listing.get("nextPageToken")
            if not token:
                return
            params["pageToken"] = token

    async def _delete_name(self, bucket: str, name: str, generation: str | None) -> None:
        try:
            await self.storage.delete(bucket, name,
                                      params={"generation": generation} if generation else {},
                                      timeout=TIMEOUT)  # type: ignore[arg-type]
        except aiohttp.ClientResponseError as exc:
            if exc.status != 404:
                raise


class _CountedBody:
    """The request body, held to exactly `size` bytes; remembers the error the body raised."""

    def __init__(self, body: ByteStream, size: int) -> None:
        self.body = body
        self.size = size
        self.error: BaseException | None = None

    async def __aiter__(self) -> AsyncIterator[bytes]:
        seen = 0
        try:
            async for chunk in self.body:
                seen += len(chunk)
                if seen > self.size:
                    raise ValueError(f"body is longer than the announced {self.size} bytes")
                yield chunk
            if seen != self.size:
                raise ValueError(f"body gave {seen} bytes, expected {self.size}")
        except BaseException as exc:
            self.error = exc
            raise


class _NoToken:
    """Token stand-in for anonymous endpoints: never asked (the Storage runs in dev mode)."""

    async def get(self) -> None:
        return None

    async def close(self) -> None:
        return None


def _bucket_name(details: Mapping[str, Any], key: str, default: str | None) -> str:
    value = details_str(details, key, required=default is None, default=default)
    assert value is not None
    if not _BUCKET_NAME.fullmatch(value) or ".." in value:
        raise ConfigError(key, f"{value!r} is not a valid GCS bucket name")
    return value


def _credentials(name: str, details: Mapping[str, Any], env: Mapping[str, str]
                 ) -> tuple[str | None, dict[str, Any] | None, list[str]]:
    """-> (key file path, inline key data, scopes). The environment wins over the file:
    `<name>_GCP_SERVICE_KEYFILE` (a path or the key JSON), else `<name>_GCP_SERVICE_EMAIL` with
    `<name>_GCP_SERVICE_KEY` (CloudServer 7.x names)."""
    creds: Any = details.get("serviceCredentials")
    scopes = SCOPES
    if isinstance(creds, Mapping) and "scopes" in creds:
        scopes = creds["scopes"] if isinstance(creds["scopes"], list) else [creds["scopes"]]
        if not all(isinstance(s, str) and s for s in scopes):
            raise ConfigError("serviceCredentials.scopes", "must be a list of scope URLs")
    keyfile_env = env.get(f"{name}_GCP_SERVICE_KEYFILE")
    email_env, key_env = env.get(f"{name}_GCP_SERVICE_EMAIL"), env.get(f"{name}_GCP_SERVICE_KEY")
    if keyfile_env:
        return *_key_source(f"{name}_GCP_SERVICE_KEYFILE", keyfile_env), scopes
    if email_env or key_env:
        if not (email_env and key_env):
            raise ConfigError(f"{name}_GCP_SERVICE_EMAIL", f"needs {name}_GCP_SERVICE_KEY too")
        return None, _service_account(email_env, key_env), scopes
    if creds is None:
        return None, None, scopes
    if isinstance(creds, str):
        return *_key_source("serviceCredentials", creds), scopes
    if not isinstance(creds, Mapping):
        raise ConfigError("serviceCredentials", "must be a key file path, the key JSON, or an "
                          "object with keyFilename or serviceEmail + serviceKey")
    if "type" in creds:  # the key file's content, inline
        return None, _checked_key("serviceCredentials", dict(creds)), scopes
    if "keyFilename" in creds:
        path = creds["keyFilename"]
        if not isinstance(path, str) or not path:
            raise ConfigError("serviceCredentials.keyFilename", "must be a file path")
        return path, None, scopes
    email, key = creds.get("serviceEmail"), creds.get("serviceKey")
    if isinstance(email, str) and email and isinstance(key, str) and key:
        return None, _service_account(email, key), scopes
    raise ConfigError("serviceCredentials", "needs keyFilename, or serviceEmail and serviceKey, "
                      "or the service account key JSON itself")


def _key_source(where: str, value: str) -> tuple[str | None, dict[str, Any] | None]:
    """A string is inline key JSON when it starts with '{', else a path to the key file."""
    if not value.lstrip().startswith("{"):
        return value, None
    try:
        data = json.loads(value)
    except ValueError:
        raise ConfigError(where, "is not valid JSON") from None
    return None, _checked_key(where, data)


def _checked_key(where: str, data: Any) -> dict[str, Any]:
    if not isinstance(data, dict) or not isinstance(data.get("type"), str):
        raise ConfigError(where, "is not a Google credentials JSON (no \"type\")")
    if data["type"] == "service_account":
        missing = [f for f in ("client_email", "private_key") if not data.get(f)]
        if missing:
            raise ConfigError(where, f"service account key lacks {', '.join(missing)}")
    return data


def _service_account(email: str, private_key: str) -> dict[str, Any]:
    # Keys pasted into JSON or env files often carry literal "\n" for newlines.
    return {"type": "service_account", "client_email": email,
            "private_key": private_key.replace("\\n", "\n"),
            "token_uri": "https://oauth2.googleapis.com/token"}


def _read_key_file(path: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except OSError as exc:
        raise ConfigError("serviceCredentials", f"cannot read key file {path}: "
                          f"{exc.strerror}") from None
    _, data = _key_source(f"serviceCredentials ({path})", text if text.strip() else "{}")
    if data is None:
        raise ConfigError("serviceCredentials", f"key file {path} does not hold JSON")
    return data


def _resource(meta: ObjectMeta) -> dict[str, Any]:
    """The GCS object resource carrying `meta` (content headers as properties, the rest as
    custom metadata)."""
    resource: dict[str, Any] = {}
    for attr, prop in _CONTENT_PROPERTIES.items():
        value = getattr(meta, attr)
        if value is not None:
            resource[prop] = value
    custom = dict(meta.user)
    custom.update({f"{TAG_PREFIX}{k}": v for k, v in meta.tags.items()})
    if meta.expires is not None:
        custom[EXPIRES_KEY] = meta.expires
    if custom:
        resource["metadata"] = custom
    return resource


def _rfc3339(value: str) -> float | None:
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _header_key(prop: str) -> str:
    """contentType -> Content-Type (the SDK converts it back); other keys unchanged."""
    if prop == "metadata":
        return prop
    return re.sub(r"(?<!^)([A-Z])", r"-\1", prop).title()


def _staged(key: str) -> dict[str, Any]:
    """The resource of a staged object of an upload to `key`."""
    return {"contentType": "application/octet-stream", "metadata": {KEY_METADATA: key}}


@contextlib.contextmanager
def _gcs_errors() -> Iterator[None]:
    """The one mapping of GCS error answers (see the module doc). NotFound is decided where
    the call knows what would be missing (`_request(not_found=...)`)."""
    try:
        yield
    except aiohttp.ClientResponseError as exc:
        status = exc.status
        if status == 429:
            raise Throttled(_error_text(exc), retry_after=_retry_after(exc)) from exc
        if status == 401:
            raise Unauthenticated(_error_text(exc)) from exc
        if status == 403:
            raise PermissionDenied(_error_text(exc)) from exc
        if status in (409, 412):
            raise Precondition(_error_text(exc)) from exc
        if status == 501:
            raise NotSupported(_error_text(exc)) from exc
        if 400 <= status < 500 and status != 404:
            raise Rejected(_error_text(exc)) from exc
        # A 404 no call claimed (the bucket) and 5xx: the location is unusable.
        raise Unavailable(_error_text(exc)) from exc


def _retry_after(exc: aiohttp.ClientResponseError) -> float | None:
    try:
        return float((exc.headers or {}).get("Retry-After", ""))
    except (TypeError, ValueError):
        return None


def _error_text(exc: aiohttp.ClientResponseError) -> str:
    """GCS's own error message (gcloud-aio puts the response body after the reason)."""
    text = exc.message or ""
    _, _, body = text.partition(": ")
    with contextlib.suppress(ValueError, KeyError, TypeError):
        text = json.loads(body)["error"]["message"]
    return f"HTTP {exc.status}: {text}"[:300]


def _generation(stored: Stored) -> dict[str, str]:
    return {"generation": stored.version_id} if stored.version_id else {}


def _bind(func: Callable[..., Awaitable[T]], *args: Any) -> Callable[[], Awaitable[T]]:
    return lambda: func(*args)


async def _bounded(calls: list[Callable[[], Awaitable[T]]], limit: int = CONCURRENCY) -> list[T]:
    """Run the calls at most `limit` at a time; the first failure cancels the rest and is
    raised as it is (NotFound stays NotFound)."""
    semaphore = asyncio.Semaphore(limit)

    async def run(call: Callable[[], Awaitable[T]]) -> T:
        async with semaphore:
            return await call()

    tasks = [asyncio.ensure_future(run(call)) for call in calls]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


async def _read_response(response: aiohttp.ClientResponse, skip: int,
                         length: int | None) -> AsyncIterator[bytes]:
    try:
        remaining = length
        async for chunk in response.content.iter_chunked(CHUNK_SIZE):
            if skip:
                dropped = min(skip, len(chunk))
                chunk, skip = chunk[dropped:], skip - dropped
            if remaining is not None:
                chunk = chunk[:remaining]
                remaining -= len(chunk)
            if chunk:
                yield chunk
            if remaining == 0:
                break
    finally:
        response.release()


async def _no_bytes() -> AsyncIterator[bytes]:
    return
    yield  # pragma: no cover - makes this an async generator
