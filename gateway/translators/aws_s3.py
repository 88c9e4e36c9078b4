"""AWS S3 and any S3-compatible service (MinIO, Ceph RGW, Wasabi, s3rver, another gateway).

Objects sit on the backend bucket as ordinary S3 objects: user metadata as x-amz-meta-*, tags as
object tags, content headers as the object's own. Multipart uploads are the backend's native ones
(its UploadId, one backend part per S3 part), so an upload outlives a gateway restart. One
aiobotocore client (one aiohttp connection pool, keep-alive) is made in open() and reused.

Every write lands at the key it is given (unique per write, see base.py) and is pinned by its
VersionId when the bucket keeps versions. A part uploaded again under its number replaces the
backend's part, which is safe: completion names every part by its ETag (the MD5 of its bytes),
so a completion racing a re-upload fails (InvalidPart -> Precondition) instead of assembling bytes
it was not given.

Errors (one place, `_translate`): the missing object/version/upload -> NotFound, throttling
(429, SlowDown) -> Throttled, bad credentials -> Unauthenticated, AccessDenied ->
PermissionDenied, 409/412 -> Precondition, 501 -> NotSupported, any other 4xx the request
itself caused (a bad tag, a too-long key...) -> Rejected; a missing bucket and 5xx ->
Unavailable.
"""

from __future__ import annotations

import asyncio
import base64
import configparser
import os
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from email.utils import format_datetime, parsedate_to_datetime
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlencode

import botocore.auth
from aiobotocore.session import get_session
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

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

# Error codes meaning "the object / version / upload is not there".
_MISSING_CODES = frozenset({"404", "NoSuchKey", "NoSuchVersion", "NoSuchUpload"})
# "Slow down" answers of S3 and the S3-compatibles (AWS sends SlowDown with a 503).
_THROTTLE_CODES = frozenset({"SlowDown", "Throttling", "ThrottlingException", "TooManyRequests",
                             "RequestLimitExceeded", "RequestThrottled", "429"})
# Answers about the gateway's credentials (the location's configuration, not an outage and not
# the request's fault): the key is unknown or the signature/token/clock is wrong...
_UNAUTHENTICATED_CODES = frozenset({
    "AuthorizationHeaderMalformed", "ExpiredToken", "InvalidAccessKeyId", "InvalidSecurity",
    "InvalidToken", "MissingSecurityHeader", "RequestTimeTooSkewed", "SignatureDoesNotMatch",
    "TokenRefreshRequired",
})
# ... or the key is known and not allowed to do this.
_DENIED_CODES = frozenset({"AccessDenied", "AccountProblem", "AllAccessDisabled", "NotSignedUp"})
# 4xx answers about the location's bucket: it is unusable (Unavailable, counts against health).
_LOCATION_CODES = frozenset({"InvalidBucketName", "NoSuchBucket", "PermanentRedirect",
                             "TemporaryRedirect"})
_PAGE_SIZE = 1000
_DESCRIBE_CONCURRENCY = 8  # heads in flight while listing objects with their details
# CopyObject refuses sources over 5 GiB; bigger ones are copied part by part.
_MAX_SINGLE_COPY = 5 * 1024**3
_COPY_PART_SIZE = 1024**3
_DEFAULT_POOL = 64
_PART_KEY = ""  # no S3 object has an empty key
_CONNECT_TIMEOUT = 5
_READ_TIMEOUT = 60
# What a GET's body may buffer ahead of its client (see _widen_buffer).
_READ_LOW_WATER = CHUNK_SIZE
_READ_HIGH_WATER = 2 * CHUNK_SIZE

# With awscrt importable (the gateway depends on it for CRC32C/CRC64NVME checksums), botocore
# signs "s3v4" with awscrt's signer, which wants the body as bytes or a seekable file and fails on a streamed
# body (TypeError: every PUT and part upload a 503). Keep botocore's own signer: same SigV4.
botocore.auth.AUTH_TYPE_MAPS["s3v4"] = botocore.auth.S3SigV4Auth


KNOWN_DETAILS = ("bucketName", "awsEndpoint", "region", "https", "pathStyle",
                 "serverSideEncryption", "supportsVersioning", "maxPoolConnections",
                 "credentials", "credentialsProfile")


@dataclass(frozen=True)
class AwsS3Settings:
    """An aws_s3 location's `details`, parsed and checked in this one place."""

    bucket: str
    https: bool
    path_style: bool
    sse: bool
    supports_versioning: bool
    region: str
    endpoint_url: str | None
    max_pool: int
    # Credentials, first found wins: environment for this location, inline, profile, AWS_PROFILE
    # from the environment. Profiles are read in open() (no I/O here).
    keys: tuple[str, str, str | None] | None
    profile: str | None
    credentials_file: Path

    @classmethod
    def parse(cls, name: str, details: Mapping[str, Any], env: Mapping[str, str]
              ) -> AwsS3Settings:
        refuse_unknown(AwsS3Translator.type_name, details, KNOWN_DETAILS)
        bucket = details_str(details, "bucketName")
        assert bucket is not None
        if "/" in bucket:
            raise ConfigError("bucketName", "must be a bucket name, without '/'")
        details_bool(details, "bucketMatch", False)  # applied by the caller; type-checked here
        https = details_bool(details, "https", True)
        pool = details.get("maxPoolConnections", _DEFAULT_POOL)
        if not isinstance(pool, int) or isinstance(pool, bool) or pool < 1:
            raise ConfigError("maxPoolConnections", "must be a positive integer")
        keys: tuple[str, str, str | None] | None = None
        profile_name: str | None = None
        inline = details.get("credentials")
        if inline is not None and not (
                isinstance(inline, Mapping)
                and isinstance(inline.get("accessKey"), str) and inline["accessKey"]
                and isinstance(inline.get("secretKey"), str) and inline["secretKey"]):
            raise ConfigError("credentials", "must be {accessKey, secretKey}, non-empty strings")
        profile = details_str(details, "credentialsProfile", required=False)
        if inline is not None and profile is not None:
            raise ConfigError("credentialsProfile",
                              "set either credentials or credentialsProfile, not both")
        env_access = env.get(f"{name}_AWS_ACCESS_KEY_ID")
        env_secret = env.get(f"{name}_AWS_SECRET_ACCESS_KEY")
        if bool(env_access) != bool(env_secret):
            raise ConfigError("credentials", f"set both {name}_AWS_ACCESS_KEY_ID and "
                                             f"{name}_AWS_SECRET_ACCESS_KEY, or neither")
        if env_access and env_secret:
            keys = (env_access, env_secret, None)
        elif inline is not None:
            keys = (inline["accessKey"], inline["secretKey"], None)
        elif profile is not None:
            profile_name = profile
        elif env.get("AWS_PROFILE"):
            profile_name = env["AWS_PROFILE"]
        else:
            raise ConfigError("credentials", "set credentials {accessKey, secretKey}, "
                                             "credentialsProfile, or the environment variables "
                                             f"{name}_AWS_ACCESS_KEY_ID/_SECRET_ACCESS_KEY")
        return cls(
            bucket=bucket, https=https,
            path_style=details_bool(details, "pathStyle", False),
            sse=details_bool(details, "serverSideEncryption", False),
            supports_versioning=details_bool(details, "supportsVersioning", True),
            region=details_str(details, "region", required=False) or "us-east-1",
            endpoint_url=_endpoint_url(details_str(details, "awsEndpoint", required=False),
                                       https),
            max_pool=pool, keys=keys, profile=profile_name,
            credentials_file=Path(
                env.get("AWS_SHARED_CREDENTIALS_FILE")
                or Path(env.get("HOME") or os.path.expanduser("~")) / ".aws" / "credentials"),
        )


class AwsS3Translator(Translator):
    type_name = "aws_s3"

    def __init__(self, name: str, details: Mapping[str, Any], env: Mapping[str, str]) -> None:
        super().__init__(name, details, env)
        settings = self.settings = AwsS3Settings.parse(name, details, env)
        self.bucket = settings.bucket
        self.https = settings.https
        self.path_style = settings.path_style
        self.sse = settings.sse
        self.supports_versioning = settings.supports_versioning
        self.region = settings.region
        self.endpoint_url = settings.endpoint_url
        self.max_pool = settings.max_pool
        self._keys = settings.keys
        self._profile = settings.profile
        self._credentials_file = settings.credentials_file
        self._client: Any = None
        self._client_context: Any = None

    # ---- lifecycle -------------------------------------------------------------------------

    async def open(self) -> None:
        if self._keys is None:
            assert self._profile is not None
            self._keys = await asyncio.to_thread(
                _read_profile, self._credentials_file, self._profile)
        access, secret, token = self._keys
        config = Config(
            connect_timeout=_CONNECT_TIMEOUT,
            read_timeout=_READ_TIMEOUT,
            # One attempt: retries of idempotent calls belong to the wrapper above us.
            retries={"mode": "standard", "total_max_attempts": 1},
            max_pool_connections=self.max_pool,
            # No CRC trailers (they need aws-chunked bodies); no SHA-256 of streamed bodies,
            # which would need the whole body before sending (UNSIGNED-PAYLOAD instead).
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            s3={"addressing_style": "path" if self.path_style else "auto",
                "payload_signing_enabled": False},
            signature_version="s3v4",
            tcp_keepalive=True,
        )
        self._client_context = get_session().create_client(
            "s3", region_name=self.region, endpoint_url=self.endpoint_url,
            aws_access_key_id=access, aws_secret_access_key=secret, aws_session_token=token,
            config=config,
        )
        self._client = await self._client_context.__aenter__()

    async def close(self) -> None:
        if self._client_context is not None:
            context, self._client_context, self._client = self._client_context, None, None
            await context.__aexit__(None, None, None)

    @property
    def client(self) -> Any:
        if self._client is None:
            raise RuntimeError(f"location {self.name}: translator used before open()")
        return self._client

    # ---- objects ---------------------------------------------------------------------------

    async def put(self, key: str, body: ByteStream, size: int, meta: ObjectMeta) -> Stored:
        upload = _UploadBody(body, size)
        try:
            response = await self.client.put_object(
                Bucket=self.bucket, Key=key, Body=upload if size else b"", ContentLength=size,
                **self._object_params(meta))
        except ClientError as exc:
            upload.reraise_body_error()  # the client's own failure wins over what S3 said
            _translate(exc)
        except Exception:
            upload.reraise_body_error()
            raise
        if not size:
            await upload.drain()
        return self._stored(key, size, response)

    async def get(self, stored: Stored, offset: int = 0, length: int | None = None) -> ByteStream:
        _not_a_part(stored)
        if length == 0:
            await self.head(stored)  # NotFound still wins over an empty answer
            return _empty()
        params = self._version(stored)
        if not params and stored.etag:
            # No version pin: the etag pins the bytes (an imported object overwritten on the
            # backend behind the gateway's back is gone, never served as the old one).
            params["IfMatch"] = f'"{stored.etag}"'
        if offset or length is not None:
            end = "" if length is None else str(offset + length - 1)
            params["Range"] = f"bytes={offset}-{end}"
        try:
            response = await self.client.get_object(Bucket=self.bucket, Key=stored.key, **params)
        except ClientError as exc:
            if "IfMatch" in params and _status(exc) == 412:
                raise NotFound(f"{stored.key} (changed since it was stored)") from exc
            _translate(exc, stored.key)
        return _read_body(response["Body"], response.get("ContentLength"), stored.key)

    async def head(self, stored: Stored) -> Stored:
        _not_a_part(stored)
        try:
            response = await self.client.head_object(
                Bucket=self.bucket, Key=stored.key, **self._version(stored))
        except ClientError as exc:
            _translate(exc, stored.key)
        return self._stored(stored.key, response["ContentLength"], response,
                            version_id=stored.version_id)

    async def delete(self, stored: Stored) -> None:
        if stored.key == _PART_KEY:
            return  # a part of a native upload: the backend drops it on complete or abort
        if self.supports_versioning and not stored.version_id:
            # No pin: the bytes of a write that never committed. The key is that write's alone,
            # so every version (and delete marker) at exactly this key goes.
            async for version in self._versions(stored.key):
                if version.key == stored.key:
                    await self._delete_one(version)
            return
        await self._delete_one(stored)

    async def _delete_one(self, stored: Stored) -> None:
        try:
            await self.client.delete_object(
                Bucket=self.bucket, Key=stored.key, **self._version(stored))
        except ClientError as exc:
            if _code(exc) not in _MISSING_CODES:
                _translate(exc)

    async def list_pieces(self, prefix: str = "") -> AsyncIterator[Stored]:
        """Every object under `prefix`; on a versioned location every version and delete
        marker (a marker is a piece of size 0 whose version id delete() removes). Parts of
        open native uploads are no objects and are not listed."""
        if self.supports_versioning:
            async for piece in self._versions(prefix):
                yield piece
            return
        params: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix, "MaxKeys": _PAGE_SIZE}
        while True:
            try:
                page = await self.client.list_objects_v2(**params)
            except ClientError as exc:
                _translate(exc)
            for item in page.get("Contents", []):
                yield Stored(location=self.name, key=item["Key"], size=item["Size"],
                             etag=_etag(item.get("ETag")), encryption=self._encryption())
            if not page.get("IsTruncated"):
                return
            params["ContinuationToken"] = page["NextContinuationToken"]

    async def _versions(self, prefix: str) -> AsyncIterator[Stored]:
        """Every version and delete marker under `prefix`, page by page."""
        params: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix, "MaxKeys": _PAGE_SIZE}
        while True:
            try:
                page = await self.client.list_object_versions(**params)
            except ClientError as exc:
                _translate(exc)
            for item in page.get("Versions", []):
                yield Stored(location=self.name, key=item["Key"], size=item["Size"],
                             version_id=item["VersionId"], etag=_etag(item.get("ETag")),
                             encryption=self._encryption())
            for item in page.get("DeleteMarkers", []):
                yield Stored(location=self.name, key=item["Key"], size=0,
                             version_id=item["VersionId"])
            if not page.get("IsTruncated"):
                return
            params["KeyMarker"] = page["NextKeyMarker"]
            params["VersionIdMarker"] = page["NextVersionIdMarker"]

    async def list_objects(self, prefix: str = "", start_after: str = "",
                           details: bool = True) -> AsyncIterator[ForeignObject]:
        """ListObjectsV2 pages; with `details` each object is headed as well (the listing has
        no content headers or metadata), a page's heads a few at a time."""
        params: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix, "MaxKeys": _PAGE_SIZE}
        if start_after:
            params["StartAfter"] = start_after
        limit = asyncio.Semaphore(_DESCRIBE_CONCURRENCY)

        async def described(key: str) -> ForeignObject | None:
            async with limit:
                return await self.describe(key)

        while True:
            try:
                page = await self.client.list_objects_v2(**params)
            except ClientError as exc:
                _translate(exc)
            items = page.get("Contents", [])
            if details:
                for found in await asyncio.gather(*(described(item["Key"]) for item in items)):
                    if found is not None:  # deleted since the listing
                        yield found
            else:
                for item in items:
                    etag = _etag(item.get("ETag"))
                    yield ForeignObject(
                        key=item["Key"], size=item["Size"], s3_etag=etag, detailed=False,
                        stored=Stored(location=self.name, key=item["Key"], size=item["Size"],
                                      etag=etag, encryption=self._encryption()),
                        last_modified=item["LastModified"].timestamp()
                        if item.get("LastModified") else None)
            if not page.get("IsTruncated"):
                return
            params["ContinuationToken"] = page["NextContinuationToken"]

    async def describe(self, key: str) -> ForeignObject | None:
        try:
            response = await self.client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if _code(exc) in _MISSING_CODES or _status(exc) == 404:
                return None
            _translate(exc)
        stored = self._stored(key, response["ContentLength"], response)
        expires = response.get("ExpiresString")
        if expires is None and response.get("Expires") is not None:
            expires = format_datetime(response["Expires"], usegmt=True)
        meta = ObjectMeta(
            content_type=response.get("ContentType"),
            cache_control=response.get("CacheControl"),
            content_disposition=response.get("ContentDisposition"),
            content_encoding=response.get("ContentEncoding"),
            content_language=response.get("ContentLanguage"), expires=expires,
            user={name: _from_header(value)
                  for name, value in (response.get("Metadata") or {}).items()})
        modified = response.get("LastModified")
        return ForeignObject(key=key, size=stored.size, stored=stored, s3_etag=stored.etag,
                             meta=meta, last_modified=modified.timestamp() if modified else None)

    def piece_id(self, stored: Stored) -> str:
        if self.supports_versioning and stored.version_id:
            return f"{stored.key}?versionId={stored.version_id}"
        return stored.key

    async def copy(self, src: Stored, key: str, meta: ObjectMeta) -> Stored | None:
        if src.size > _MAX_SINGLE_COPY:
            return await self._multipart_copy(src, key, meta)
        try:
            response = await self.client.copy_object(
                Bucket=self.bucket, Key=key, CopySource=self._copy_source(src),
                MetadataDirective="REPLACE", TaggingDirective="REPLACE",
                **self._object_params(meta))
        except ClientError as exc:
            _translate(exc, src.key)
        result = response.get("CopyObjectResult", {})
        return self._stored(key, src.size, {**response, "ETag": result.get("ETag")})

    async def _multipart_copy(self, src: Stored, key: str, meta: ObjectMeta) -> Stored:
        upload_id = await self.create_upload(key, meta)
        try:
            parts = []
            for number, offset in enumerate(range(0, src.size, _COPY_PART_SIZE), start=1):
                length = min(_COPY_PART_SIZE, src.size - offset)
                stored = await self.copy_part(src, offset, length, key, upload_id, number)
                parts.append(Part(number=number, stored=stored))
            [result] = await self.complete_upload(key, upload_id, parts, meta)
        except BaseException:
            await asyncio.shield(self.abort_upload(key, upload_id, []))
            raise
        return result

    async def update_meta(self, stored: Stored, meta: ObjectMeta) -> Stored:
        # Tags change in place (no new version, no data copy). User metadata on S3 only changes
        # by rewriting the object, which the gateway does through copy(); we leave it.
        params = self._version(stored)
        try:
            if meta.tags:
                await self.client.put_object_tagging(
                    Bucket=self.bucket, Key=stored.key, **params,
                    Tagging={"TagSet": [{"Key": k, "Value": v} for k, v in meta.tags.items()]})
            else:
                await self.client.delete_object_tagging(Bucket=self.bucket, Key=stored.key, **params)
        except ClientError as exc:
            _translate(exc, stored.key)
        return stored

    # ---- multipart -------------------------------------------------------------------------

    async def create_upload(self, key: str, meta: ObjectMeta) -> str:
        try:
            response = await self.client.create_multipart_upload(
                Bucket=self.bucket, Key=key, **self._object_params(meta))
        except ClientError as exc:
            _translate(exc)
        return response["UploadId"]

    async def upload_part(
        self, key: str, upload_id: str, number: int, body: ByteStream, size: int
    ) -> Stored:
        upload = _UploadBody(body, size)
        try:
            response = await self.client.upload_part(
                Bucket=self.bucket, Key=key, UploadId=upload_id, PartNumber=number,
                Body=upload if size else b"", ContentLength=size)
        except ClientError as exc:
            upload.reraise_body_error()
            _translate(exc, f"{key} upload {upload_id}")
        except Exception:
            upload.reraise_body_error()
            raise
        if not size:
            await upload.drain()
        return _part(self.name, size, _etag(response.get("ETag")))

    async def copy_part(
        self, src: Stored, offset: int, length: int, key: str, upload_id: str, number: int
    ) -> Stored | None:
        try:
            response = await self.client.upload_part_copy(
                Bucket=self.bucket, Key=key, UploadId=upload_id, PartNumber=number,
                CopySource=self._copy_source(src),
                CopySourceRange=f"bytes={offset}-{offset + length - 1}")
        except ClientError as exc:
            _translate(exc, f"{src.key} or upload {upload_id}")
        return _part(self.name, length, _etag(response.get("CopyPartResult", {}).get("ETag")))

    async def complete_upload(
        self, key: str, upload_id: str, parts: list[Part], meta: ObjectMeta
    ) -> list[Stored]:
        listed = [{"PartNumber": p.number, "ETag": f'"{p.stored.etag}"'} for p in parts]
        try:
            response = await self.client.complete_multipart_upload(
                Bucket=self.bucket, Key=key, UploadId=upload_id,
                MultipartUpload={"Parts": listed})
        except ClientError as exc:
            # A listed part whose bytes changed since (re-uploaded meanwhile) is InvalidPart:
            # Precondition, never an object assembled from bytes the caller did not list.
            if _code(exc) == "InvalidPart":
                raise Precondition(f"{key} upload {upload_id}: {exc}") from exc
            _translate(exc, f"{key} upload {upload_id}")
        # Unlisted parts are discarded by the backend itself on completion.
        size = sum(p.stored.size for p in parts)
        return [self._stored(key, size, response)]

    async def abort_upload(self, key: str, upload_id: str, parts: list[Part]) -> None:
        # The backend drops every part of the upload, recorded in `parts` or not.
        try:
            await self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
        except ClientError as exc:
            if _code(exc) not in _MISSING_CODES:
                _translate(exc)

    # ---- health ----------------------------------------------------------------------------

    async def check(self) -> Health:
        try:
            if self.supports_versioning:
                # One call proves credentials and bucket, and that versions will be kept.
                response = await self.client.get_bucket_versioning(Bucket=self.bucket)
                if response.get("Status") != "Enabled":
                    return Health(False, f"versioning must be enabled on bucket {self.bucket} "
                                         "(or set supportsVersioning: false)")
            else:
                await self.client.head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            detail = f"{error.get('Code')} {error.get('Message') or ''}".rstrip()
            return Health(False, f"bucket {self.bucket}: {detail}")
        except BotoCoreError as exc:
            return Health(False, f"bucket {self.bucket}: {exc}")
        return Health(True, "OK")

    # ---- helpers ---------------------------------------------------------------------------

    def _encryption(self) -> str | None:
        return "AES256" if self.sse else None

    def _version(self, stored: Stored) -> dict[str, str]:
        if self.supports_versioning and stored.version_id:
            return {"VersionId": stored.version_id}
        return {}

    def _copy_source(self, src: Stored) -> dict[str, str]:
        return {"Bucket": self.bucket, "Key": src.key, **self._version(src)}

    def _stored(self, key: str, size: int, response: Mapping[str, Any],
                version_id: str | None = None) -> Stored:
        if self.supports_versioning:
            version_id = response.get("VersionId") or version_id
        else:
            version_id = None
        return Stored(location=self.name, key=key, size=size, version_id=version_id,
                      etag=_etag(response.get("ETag")), encryption=self._encryption())

    def _object_params(self, meta: ObjectMeta) -> dict[str, Any]:
        """PutObject / CopyObject / CreateMultipartUpload parameters carrying `meta` natively."""
        params: dict[str, Any] = {
            "Metadata": {name: _header_safe(value) for name, value in meta.user.items()},
        }
        for field, param in (("content_type", "ContentType"), ("cache_control", "CacheControl"),
                             ("content_disposition", "ContentDisposition"),
                             ("content_encoding", "ContentEncoding"),
                             ("content_language", "ContentLanguage")):
            value = getattr(meta, field)
            if value:
                params[param] = _header_safe(value)
        if meta.expires:
            try:
                params["Expires"] = parsedate_to_datetime(meta.expires)
            except (TypeError, ValueError):
                pass  # S3 keeps an unparseable Expires as is; the gateway's metadata still has it
        if meta.tags:
            params["Tagging"] = urlencode(meta.tags)
        if self.sse:
            params["ServerSideEncryption"] = "AES256"
        return params


class _UploadBody:
    """An async-iterable request body for aiohttp that streams `body` and checks its length.

    aiohttp sends any async iterable chunk by chunk (AsyncIterablePayload). botocore's parameter
    validation wants a file-like object, hence `read`, which nothing calls for these bodies.
    An error raised by `body` itself is kept, so the caller re-raises it instead of the
    transport error aiohttp wraps it in.
    """

    def __init__(self, body: ByteStream, size: int) -> None:
        self._body = body
        self._size = size
        self._error: BaseException | None = None

    def read(self, amount: int = -1) -> bytes:
        raise NotImplementedError("streamed body: iterate asynchronously")

    async def __aiter__(self) -> AsyncIterator[bytes]:
        sent = 0
        try:
            async for chunk in self._body:
                sent += len(chunk)
                if sent > self._size:
                    raise ValueError(f"body is longer than its declared size {self._size}")
                if chunk:
                    yield chunk
            if sent != self._size:
                raise ValueError(f"body ended after {sent} of {self._size} bytes")
        except BaseException as exc:
            self._error = exc
            raise

    async def drain(self) -> None:
        async for _ in self:
            pass

    def reraise_body_error(self) -> None:
        if self._error is not None:
            raise self._error


async def _read_body(stream: Any, size: int | None, key: str) -> ByteStream:
    """The body as the socket delivers it (up to 256 KB a read), each chunk passed on as it is.
    Why not the SDK's read(n): it joins the buffered chunks into one more copy of every byte,
    ~10 % of the gateway's CPU on a big GET. Errors of the connection (cut, read timeout) are
    aiohttp's, made Unavailable by the Boundary wrapper; the length (when the backend stated
    one) is checked here."""
    # aiobotocore 3 names the aiohttp response raw_stream; 2.x proxies its attributes.
    content = getattr(stream, "raw_stream", stream).content
    _widen_buffer(content)
    received = 0
    try:
        async for chunk, _ in content.iter_chunks():
            if chunk:  # (b"", True) marks the end of an HTTP chunk of a chunked answer
                received += len(chunk)
                yield chunk
        if size is not None and received != size:
            raise Unavailable(f"{key}: the backend sent {received} of {size} bytes",
                              kind="short_body")
    finally:
        stream.close()  # releases (or drops, when unread) the pooled connection


def _widen_buffer(content: Any) -> None:
    """aiohttp stops reading the backend's socket once 2 x read_bufsize (64 KiB, which
    aiobotocore does not let us set) is buffered, and resumes below 64 KiB: a big GET then
    stalls the backend whenever the client is slower for a moment. Buffer up to 2 MiB instead
    (bounded per GET; the S3 port reads uploads with the same 2 MiB, gateway/connections.py).
    These are aiohttp's private knobs: without them the defaults stay, nothing breaks."""
    if isinstance(getattr(content, "_high_water", None), int) and \
            isinstance(getattr(content, "_low_water", None), int):
        content._low_water = _READ_LOW_WATER
        content._high_water = _READ_HIGH_WATER


async def _empty() -> ByteStream:
    return
    yield b""  # an async generator that yields nothing


def _part(location: str, size: int, etag: str | None) -> Stored:
    """A part of a native multipart upload. It is no object of its own, so it has no key: a
    delete of it (a re-uploaded or unlisted part) must not touch the object at the upload's key;
    the backend itself drops unused parts on complete and all of them on abort."""
    return Stored(location=location, key=_PART_KEY, size=size, etag=etag)


def _not_a_part(stored: Stored) -> None:
    if stored.key == _PART_KEY:
        raise NotFound("a part of a multipart upload is not readable on its own")


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _status(exc: ClientError) -> int:
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    if isinstance(status, int):
        return status
    code = _code(exc)
    return int(code) if code.isdigit() else 0  # HEAD answers carry only the status as code


def _translate(exc: ClientError, missing: str | None = None) -> NoReturn:
    """The one mapping of S3 error answers (see the module doc). `missing` names what a
    NoSuchKey/NoSuchVersion/NoSuchUpload means is gone; without it they are failures."""
    code, status = _code(exc), _status(exc)
    message = exc.response.get("Error", {}).get("Message") or ""
    detail = f"{code}: {message}" if message else code
    if code in _MISSING_CODES and missing is not None:
        raise NotFound(missing) from exc
    if status == 429 or code in _THROTTLE_CODES:
        raise Throttled(detail, retry_after=_retry_after(exc)) from exc
    if code in _UNAUTHENTICATED_CODES or status == 401:
        raise Unauthenticated(detail) from exc
    if code in _DENIED_CODES or status == 403:
        raise PermissionDenied(detail) from exc
    if code in _LOCATION_CODES or status == 404:
        raise Unavailable(f"bucket: {detail}") from exc
    if status in (409, 412):
        raise Precondition(detail) from exc
    if status == 501:
        raise NotSupported(detail) from exc
    if 400 <= status < 500:
        raise Rejected(detail) from exc
    raise Unavailable(detail or f"HTTP {status}") from exc


def _retry_after(exc: ClientError) -> float | None:
    headers = exc.response.get("ResponseMetadata", {}).get("HTTPHeaders", {})
    try:
        return float(headers.get("retry-after", ""))
    except ValueError:
        return None


def _etag(value: str | None) -> str | None:
    return value.strip('"') if value else None


def _header_safe(value: str) -> str:
    """S3 carries metadata in HTTP headers, ASCII only: encode other text as RFC 2047, the
    form AWS itself answers with for such values."""
    if value.isascii():
        return value
    return "=?UTF-8?B?" + base64.b64encode(value.encode()).decode() + "?="


def _from_header(value: str) -> str:
    """The inverse of _header_safe (RFC 2047 B-words as AWS answers them)."""
    if value.startswith("=?UTF-8?B?") and value.endswith("?="):
        try:
            return base64.b64decode(value[10:-2]).decode()
        except ValueError:
            return value
    return value


def _endpoint_url(endpoint: str | None, https: bool) -> str | None:
    """`awsEndpoint` is host[:port]; None (AWS itself) lets the SDK pick the regional endpoint."""
    if endpoint is None:
        return None
    if "://" in endpoint or "/" in endpoint:
        raise ConfigError("awsEndpoint", "must be host[:port], without scheme or path "
                                         "(use https: false for http)")
    port = endpoint.rpartition(":")[2] if endpoint.count(":") == 1 else ""
    if not endpoint or endpoint.startswith(":"):
        raise ConfigError("awsEndpoint", "must name a host")
    if endpoint.count(":") == 1 and not port.isdigit():
        raise ConfigError("awsEndpoint", f"port {port!r} is not a number")
    return f"{'https' if https else 'http'}://{endpoint}"


def _read_profile(path: Path, profile: str) -> tuple[str, str, str | None]:
    parser = configparser.RawConfigParser()
    try:
        with open(path) as handle:
            parser.read_file(handle)
    except OSError as exc:
        raise ConfigError("credentialsProfile", f"cannot read {path}: {exc.strerror}") from None
    if not parser.has_section(profile):
        raise ConfigError("credentialsProfile", f"profile {profile!r} not found in {path}")
    access = parser.get(profile, "aws_access_key_id", fallback="")
    secret = parser.get(profile, "aws_secret_access_key", fallback="")
    if not access or not secret:
        raise ConfigError("credentialsProfile", f"profile {profile!r} in {path} lacks "
                                                "aws_access_key_id or aws_secret_access_key")
    return access, secret, parser.get(profile, "aws_session_token", fallback=None) or None
