"""Azure Blob Storage location (type "azure"), on azure-storage-blob's async client.

Every object is one ordinary block blob named by its backend key, with content headers as the
blob's HTTP properties, user metadata as blob metadata (names and values encoded reversibly where
Azure would refuse or alter them, see `encode_metadata_name`/`encode_metadata_value`) and tags as
blob index tags (or, when Azure's tag rules refuse them, as JSON in the metadata entry `__s3tags`).

Uploads stream: each staged block is sent straight from the incoming body, never buffered, so a
100 MiB block costs one chunk of memory. Objects up to `SINGLE_PUT_MAX` go in one Put Blob.

Every write lands at the key it is given, which no other write uses (see base.py), and is
pinned by the blob's etag (and version id where the account keeps versions).

Multipart uploads stage blocks on the upload's own blob name and commit the block list at
completion. Every block id this module writes, for plain puts and parts alike, is the same width:
`<upload id: 32 hex>.<part: 5 digits>.<attempt: 8 hex>.<sub-block: 5 digits>`, because Azure
refuses block ids of different lengths on one blob. The attempt is random per UploadPart call, so
a re-uploaded part never overwrites the blocks an earlier (still recorded) attempt staged. A part's
`Stored.etag` is `blocks:<attempt>:<sub-block count>`: exactly what completion needs to name the
part's blocks. Committing drops every staged block not named (replaced attempts, unlisted parts),
so discard_part has nothing to do. Abort, a failed streamed put and a delete without pin drop the
uncommitted blocks of their name by committing an empty block list only where no blob is committed
(If-None-Match: *) and deleting that empty blob: the name is the write's alone, so nothing else
can be touched.

Errors (one place, `_azure_errors`): a missing or replaced blob -> NotFound (decided where the
call knows what it names), 429 and 503 ServerBusy -> Throttled, AuthenticationFailed/401 ->
Unauthenticated, other 403 -> PermissionDenied, BlobAlreadyExists -> AlreadyExists, other
409/412 -> Precondition, any other 4xx the request caused (a value Azure refuses, a too-long
name...) -> Rejected; a missing container and 5xx -> Unavailable.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import re
import secrets
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any, NoReturn
from urllib.parse import urlsplit

from azure.core import MatchConditions
from azure.core.credentials import AzureNamedKeyCredential, AzureSasCredential
from azure.core.exceptions import (
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.storage.blob import BlobBlock, ContentSettings
from azure.storage.blob.aio import BlobClient, ContainerClient

from gateway.translators.base import (
    AlreadyExists,
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

MiB = 1024 * 1024
# Largest block staged per request (Azure allows 4000 MiB; CloudServer and older API versions 100).
BLOCK_SIZE = 100 * MiB
# Objects up to this size are read into memory and sent in a single Put Blob (one round trip).
SINGLE_PUT_MAX = 4 * MiB
# Downloads are fetched in ranges of this size: the memory one GET holds.
DOWNLOAD_CHUNK = 4 * MiB
CONNECT_TIMEOUT = 5
READ_TIMEOUT = 60
# A pending server-side copy (real Azure, large blobs) is polled up to this long, then aborted.
COPY_TIMEOUT = 600

AUTH_METHODS = ("shared-key", "shared-access-signature", "client-secret")
PART_ETAG_PREFIX = "blocks:"
TAGS_METADATA_NAME = "__s3tags"  # never produced by encode_metadata_name (see there)

_ACCOUNT_NAME = re.compile(r"[a-z0-9]{3,24}")
_CONTAINER_NAME = re.compile(r"(?!.*--)[a-z0-9][a-z0-9-]{1,61}[a-z0-9]")
_UPLOAD_ID = re.compile(r"[0-9a-f]{32}")
_PART_ETAG = re.compile(r"blocks:([0-9a-f]{8}):(\d{1,5})")
_PLAIN_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")  # a C# identifier not starting with "_"
_TAG_TEXT = re.compile(r"[A-Za-z0-9 +\-./:=_]*")  # blob index tag alphabet
_ENCODED_VALUE = re.compile(r"=\?UTF-8\?B\?([A-Za-z0-9+/=]*)\?=")

# Locations opened in this process, so a copy between two azure locations of one storage account
# can be done by Azure (the destination needs the source's URL and SAS).
_OPEN_LOCATIONS: dict[str, AzureTranslator] = {}


# --- metadata encoding -----------------------------------------------------------------------

def encode_metadata_name(name: str) -> str:
    """S3 metadata name -> Azure metadata name (a C# identifier), reversibly.

    A name that already is an identifier and does not start with "_" is kept as is. Any other
    name becomes "_" followed by the name with "_" doubled and every other character outside
    [A-Za-z0-9] written as "_XX" per UTF-8 byte (upper-case hex): "content-md5" ->
    "_content_2Dmd5", "my_key.v2" -> "_my__key_2Ev2". "__s3tags" is not an encoding of anything.
    """
    if _PLAIN_NAME.fullmatch(name):
        return name
    out = ["_"]
    for char in name:
        if char == "_":
            out.append("__")
        elif char.isascii() and char.isalnum():
            out.append(char)
        else:
            out.extend(f"_{byte:02X}" for byte in char.encode())
    return "".join(out)


def decode_metadata_name(name: str) -> str:
    """Inverse of encode_metadata_name; ValueError for a name it cannot have produced."""
    if not name.startswith("_"):
        return name
    raw = bytearray()
    index = 1
    while index < len(name):
        char = name[index]
        if char != "_":
            raw += char.encode()
            index += 1
        elif name[index + 1 : index + 2] == "_":
            raw += b"_"
            index += 2
        else:
            hex_pair = name[index + 1 : index + 3]
            if not re.fullmatch(r"[0-9A-F]{2}", hex_pair):
                raise ValueError(f"not an encoded metadata name: {name!r}")
            raw.append(int(hex_pair, 16))
            index += 3
    return raw.decode()


def encode_metadata_value(value: str) -> str:
    """Values travel as HTTP headers: Azure rejects non-ASCII and trims spaces. Such values (and
    empty ones, and any starting with "=?") become RFC 2047 "=?UTF-8?B?<base64>?=" words."""
    plain = (
        value
        and value.isascii()
        and value.isprintable()
        and value == value.strip()
        and not value.startswith("=?")
    )
    if plain:
        return value
    return f"=?UTF-8?B?{base64.b64encode(value.encode()).decode()}?="


def decode_metadata_value(value: str) -> str:
    match = _ENCODED_VALUE.fullmatch(value)
    return base64.b64decode(match.group(1)).decode() if match else value


def index_tags_allowed(tags: Mapping[str, str]) -> bool:
    """Whether Azure accepts `tags` as blob index tags (its rules are narrower than S3's)."""
    if len(tags) > 10:
        return False
    return all(
        1 <= len(key) <= 128 and len(value) <= 256
        and _TAG_TEXT.fullmatch(key) and _TAG_TEXT.fullmatch(value)
        for key, value in tags.items()
    )


def encode_metadata(meta: ObjectMeta) -> tuple[dict[str, str], dict[str, str] | None]:
    """(blob metadata, blob index tags) for `meta`. Tags Azure cannot index go to the metadata
    entry TAGS_METADATA_NAME as JSON, and the index tags are then empty."""
    metadata = {
        encode_metadata_name(name): encode_metadata_value(value) for name, value in meta.user.items()
    }
    if not meta.tags:
        return metadata, None
    if index_tags_allowed(meta.tags):
        return metadata, dict(meta.tags)
    metadata[TAGS_METADATA_NAME] = encode_metadata_value(
        json.dumps(meta.tags, ensure_ascii=False, separators=(",", ":"))
    )
    return metadata, None


def decode_metadata(
    metadata: Mapping[str, str], index_tags: Mapping[str, str] | None = None
) -> ObjectMeta:
    """User metadata and tags as S3 sent them, from a blob's metadata and index tags."""
    user: dict[str, str] = {}
    tags = dict(index_tags or {})
    for name, value in metadata.items():
        if name == TAGS_METADATA_NAME:
            tags = json.loads(decode_metadata_value(value))
        else:
            user[decode_metadata_name(name)] = decode_metadata_value(value)
    return ObjectMeta(user=user, tags=tags)


def _content_settings(meta: ObjectMeta) -> ContentSettings:
    # Azure has no Expires property; the gateway's own metadata answers it.
    return ContentSettings(
        content_type=meta.content_type,
        content_encoding=meta.content_encoding,
        content_language=meta.content_language,
        content_disposition=meta.content_disposition,
        cache_control=meta.cache_control,
    )


# --- block ids ---------------------------------------------------------------------------------

def block_id(upload_id: str, part: int, attempt: str, sub: int) -> str:
    """The raw (pre-base64) block id; the SDK base64-encodes it. Always 53 characters."""
    return f"{upload_id}.{part:05d}.{attempt}.{sub:05d}"


def _block_count(size: int, block_size: int) -> int:
    return -(-size // block_size)


def _is_part(stored: Stored) -> bool:
    return (stored.etag or "").startswith(PART_ETAG_PREFIX)


# --- body streaming ----------------------------------------------------------------------------

class _BodyReader:
    """Cuts an async byte stream into consecutive pieces of known sizes, streaming each.

    An exception from the source (client cut off, bad digest) is remembered in `failure`, so the
    caller can re-raise it instead of the transport error the SDK wraps it in.
    """

    def __init__(self, body: ByteStream) -> None:
        self._source = body.__aiter__()
        self._pending = b""
        self.failure: BaseException | None = None

    async def _next_chunk(self) -> bytes | None:
        if self._pending:
            chunk, self._pending = self._pending, b""
            return chunk
        while True:
            try:
                chunk = await anext(self._source)
            except StopAsyncIteration:
                return None
            except BaseException as exc:
                self.failure = exc
                raise
            if chunk:
                return chunk

    async def stream(self, length: int) -> ByteStream:
        """Yield exactly `length` bytes; raise if the source ends first."""
        remaining = length
        while remaining:
            chunk = await self._next_chunk()
            if chunk is None:
                self.failure = ValueError(f"body ended {remaining} bytes short of its size")
                raise self.failure
            if len(chunk) > remaining:
                chunk, self._pending = chunk[:remaining], chunk[remaining:]
            remaining -= len(chunk)
            yield chunk

    async def read(self, length: int) -> bytes:
        return b"".join([chunk async for chunk in self.stream(length)])

    async def expect_end(self) -> None:
        if await self._next_chunk() is not None:
            self.failure = ValueError("body is longer than its size")
            raise self.failure


# --- configuration -------------------------------------------------------------------------------

KNOWN_DETAILS = ("azureStorageEndpoint", "azureContainerName", "azureStorageAccountName",
                 "azureStorageAccessKey", "sasToken", "authMethod", "tenantId", "clientId",
                 "clientKey")


@dataclass(frozen=True)
class AzureSettings:
    endpoint: str  # account URL without trailing "/", e.g. https://acct.blob.core.windows.net
    container: str
    bucket_match: bool
    auth_method: str
    account_name: str | None = None
    account_key: str | None = None
    sas_token: str | None = None
    tenant_id: str | None = None
    client_id: str | None = None
    client_key: str | None = None

    @classmethod
    def parse(cls, name: str, details: Mapping[str, Any], env: Mapping[str, str]) -> AzureSettings:
        refuse_unknown(AzureTranslator.type_name, details, KNOWN_DETAILS)

        def setting(key: str, env_suffix: str) -> str | None:
            env_name = f"{name}_AZURE_{env_suffix}"
            if env.get(env_name):
                return env[env_name]
            return details_str(details, key, required=False) or None

        def required(key: str, env_suffix: str) -> str:
            value = setting(key, env_suffix)
            if value is None:
                raise ConfigError(
                    key, f"must be set in locationConfig or environment variable {name}_AZURE_{env_suffix}"
                )
            return value

        endpoint = required("azureStorageEndpoint", "STORAGE_ENDPOINT").rstrip("/")
        parts = urlsplit(endpoint)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
            raise ConfigError(
                "azureStorageEndpoint",
                "must be an http(s) URL such as https://ACCOUNT.blob.core.windows.net, without a "
                "query (put a SAS token in sasToken)",
            )
        container = details_str(details, "azureContainerName")
        assert container is not None
        if not _CONTAINER_NAME.fullmatch(container):
            raise ConfigError(
                "azureContainerName",
                f"{container!r} is not a valid container name (3-63 characters: lower-case letters, "
                "digits and single hyphens, starting and ending with a letter or digit)",
            )
        bucket_match = details_bool(details, "bucketMatch", False)

        account_key = setting("azureStorageAccessKey", "STORAGE_ACCESS_KEY")
        sas_token = setting("sasToken", "SAS_TOKEN")
        client_key = setting("clientKey", "CLIENT_KEY")
        auth_method = setting("authMethod", "AUTH_METHOD")
        if auth_method is None:
            auth_method = (
                "shared-key" if account_key
                else "shared-access-signature" if sas_token
                else "client-secret" if client_key
                else "shared-key"
            )
        if auth_method not in AUTH_METHODS:
            raise ConfigError("authMethod", f"must be one of {', '.join(AUTH_METHODS)}")
        settings = cls(endpoint=endpoint, container=container, bucket_match=bucket_match,
                       auth_method=auth_method)

        if auth_method == "shared-key":
            account_name = required("azureStorageAccountName", "STORAGE_ACCOUNT_NAME")
            if not _ACCOUNT_NAME.fullmatch(account_name):
                raise ConfigError("azureStorageAccountName",
                                  "must be 3-24 lower-case letters and digits")
            account_key = required("azureStorageAccessKey", "STORAGE_ACCESS_KEY")
            try:
                valid_key = bool(base64.b64decode(account_key, validate=True))
            except binascii.Error:
                valid_key = False
            if not valid_key:
                raise ConfigError("azureStorageAccessKey", "must be a base64 string")
            return replace(settings, account_name=account_name, account_key=account_key)
        if auth_method == "shared-access-signature":
            sas_token = required("sasToken", "SAS_TOKEN").lstrip("?")
            if "sig=" not in sas_token:
                raise ConfigError("sasToken", "is not a SAS token (it has no sig= parameter)")
            return replace(settings, sas_token=sas_token)
        return replace(
            settings,
            tenant_id=required("tenantId", "TENANT_ID"),
            client_id=required("clientId", "CLIENT_ID"),
            client_key=required("clientKey", "CLIENT_KEY"),
        )


# --- the translator ------------------------------------------------------------------------------

class AzureTranslator(Translator):
    type_name = "azure"
    # Instance-overridable so tests can exercise block splitting with small bodies.
    block_size = BLOCK_SIZE
    single_put_max = SINGLE_PUT_MAX

    def __init__(self, name: str, details: Mapping[str, Any], env: Mapping[str, str]) -> None:
        super().__init__(name, details, env)
        self.settings = AzureSettings.parse(name, details, env)
        self._container: ContainerClient | None = None
        self._credential: Any = None  # closed with the client when it is an azure-identity one

    # lifecycle

    async def open(self) -> None:
        settings = self.settings
        if settings.auth_method == "shared-key":
            assert settings.account_name and settings.account_key
            credential: Any = AzureNamedKeyCredential(settings.account_name, settings.account_key)
        elif settings.auth_method == "shared-access-signature":
            assert settings.sas_token
            credential = AzureSasCredential(settings.sas_token)
        else:
            try:
                from azure.identity.aio import ClientSecretCredential
            except ImportError:
                raise ConfigError(
                    "clientKey", "service-principal authentication (tenantId, clientId, "
                    "clientKey) needs the azure-identity package: pip install azure-identity"
                ) from None
            credential = self._credential = ClientSecretCredential(
                settings.tenant_id, settings.client_id, settings.client_key
            )
        # No retries: the location wrapper retries what is idempotent; a failed call fails fast.
        self._container = ContainerClient(
            settings.endpoint,
            settings.container,
            credential=credential,
            retry_total=0,
            connection_timeout=CONNECT_TIMEOUT,
            read_timeout=READ_TIMEOUT,
            max_single_get_size=DOWNLOAD_CHUNK,
            max_chunk_get_size=DOWNLOAD_CHUNK,
            max_single_put_size=self.single_put_max,
        )
        _OPEN_LOCATIONS[self.name] = self

    async def close(self) -> None:
        if _OPEN_LOCATIONS.get(self.name) is self:
            del _OPEN_LOCATIONS[self.name]
        if self._container is not None:
            await self._container.close()
            self._container = None
        if self._credential is not None:
            await self._credential.close()
            self._credential = None

    def _blob(self, key: str) -> BlobClient:
        if self._container is None:
            raise RuntimeError(f"azure location {self.name} is not open")
        return self._container.get_blob_client(key)

    def _stored(self, key: str, size: int, response: Mapping[str, Any]) -> Stored:
        return Stored(
            location=self.name,
            key=key,
            size=size,
            etag=response.get("etag"),
            version_id=response.get("version_id"),
            encryption="AES256" if response.get("request_server_encrypted") else None,
        )

    # plain objects

    async def put(self, key: str, body: ByteStream, size: int, meta: ObjectMeta) -> Stored:
        blob = self._blob(key)
        metadata, tags = encode_metadata(meta)
        reader = _BodyReader(body)
        with _azure_errors():
            if size <= self.single_put_max:
                data = await reader.read(size)
                await reader.expect_end()
                response = await blob.upload_blob(
                    data, length=size, overwrite=True, content_settings=_content_settings(meta),
                    metadata=metadata, tags=tags, max_concurrency=1,
                )
                return self._stored(key, size, response)
            upload_id = uuid.uuid4().hex
            try:
                block_ids = await self._stage(blob, reader, size, upload_id, 0, "0" * 8)
                await reader.expect_end()
            except BaseException:
                if reader.failure is not None:  # the client failed, Azure is fine: tidy up now
                    with contextlib.suppress(Exception):
                        await asyncio.shield(self._drop_uncommitted(blob))
                raise
            response = await blob.commit_block_list(
                [BlobBlock(block_id=block) for block in block_ids],
                content_settings=_content_settings(meta), metadata=metadata, tags=tags,
            )
            return self._stored(key, size, response)

    async def _stage(
        self, blob: BlobClient, reader: _BodyReader, size: int, upload_id: str, part: int,
        attempt: str,
    ) -> list[str]:
        """Stage `size` bytes from `reader` as blocks of at most block_size, each streamed."""
        block_ids = []
        remaining = size
        for sub in range(_block_count(size, self.block_size)):
            length = min(self.block_size, remaining)
            block = block_id(upload_id, part, attempt, sub)
            try:
                await blob.stage_block(block, reader.stream(length), length=length)
            except Exception:
                if reader.failure is not None:
                    raise reader.failure from None
                raise
            block_ids.append(block)
            remaining -= length
        return block_ids

    def _conditions(self, stored: Stored, *, version: bool = True) -> dict[str, Any]:
        """Pin a call to the exact blob `stored` describes: after the key was overwritten, the
        old piece's etag no longer matches and Azure answers 412 instead of acting on new bytes."""
        conditions: dict[str, Any] = {}
        if stored.etag:
            conditions.update(etag=stored.etag, match_condition=MatchConditions.IfNotModified)
        if version and stored.version_id:
            conditions["version_id"] = stored.version_id
        return conditions

    async def get(self, stored: Stored, offset: int = 0, length: int | None = None) -> ByteStream:
        if _is_part(stored):
            raise NotFound(f"{stored.key}: an uncommitted part cannot be read")
        blob = self._blob(stored.key)
        with _azure_errors():
            try:
                if length == 0:
                    await blob.get_blob_properties(**self._conditions(stored))
                    return _empty()
                downloader = await blob.download_blob(
                    # offset None means the whole blob, which the SDK also reads when it is empty
                    offset=offset if offset or length is not None else None, length=length,
                    max_concurrency=1, **self._conditions(stored),
                )
            except (ResourceNotFoundError, ResourceModifiedError) as exc:
                _raise_not_found(stored.key, exc)
        return _download_chunks(downloader)

    async def head(self, stored: Stored) -> Stored:
        if _is_part(stored):
            raise NotFound(f"{stored.key}: an uncommitted part has no blob")
        blob = self._blob(stored.key)
        with _azure_errors():
            try:
                props = await blob.get_blob_properties(version_id=stored.version_id)
            except ResourceNotFoundError as exc:
                _raise_not_found(stored.key, exc)
        return Stored(
            location=self.name, key=stored.key, size=props.size, etag=props.etag,
            version_id=props.version_id,
            encryption="AES256" if props.server_encrypted else None,
        )

    async def delete(self, stored: Stored) -> None:
        if _is_part(stored):
            return  # a part's blocks: the upload's commit or abort drops them
        blob = self._blob(stored.key)
        with _azure_errors():
            if stored.etag or stored.version_id:
                conditions = self._conditions(stored)
                if "version_id" not in conditions:
                    conditions["delete_snapshots"] = "include"
                await _delete_blob(blob, **conditions)
                return
            # No pin: the bytes of a write that never committed, at a name that is the write's
            # alone. The blob with its snapshots; then, when there was none, uncommitted blocks
            # (a cut-off streamed put, an upload's staged parts); then versions the account kept.
            if not await _delete_blob(blob, delete_snapshots="include"):
                await self._drop_uncommitted(blob)
            async for piece in self._list(stored.key, versions=True):
                if piece.key == stored.key and piece.version_id:
                    await _delete_blob(blob, version_id=piece.version_id)

    async def list_pieces(self, prefix: str = "") -> AsyncIterator[Stored]:
        """Every blob under `prefix` (every version, where the account keeps them), and every
        name that holds only uncommitted blocks (an open upload, a cut-off put): size 0, the
        Stored.key of the upload's parts; a delete without pin drops its blocks. Snapshots are
        not listed (the gateway makes none; a delete without pin removes them)."""
        with _azure_errors():
            async for piece in self._list(prefix, versions=True, uncommitted=True):
                yield piece

    async def _list(self, prefix: str, *, versions: bool = False,
                    uncommitted: bool = False) -> AsyncIterator[Stored]:
        if self._container is None:
            raise RuntimeError(f"azure location {self.name} is not open")
        include = [kind for kind, wanted in (("versions", versions),
                                             ("uncommittedblobs", uncommitted)) if wanted]
        async for item in self._container.list_blobs(name_starts_with=prefix or None,
                                                     include=include or None):
            etag = item.etag
            if etag and not etag.startswith('"'):
                etag = f'"{etag}"'  # listings drop the quotes every other answer has
            yield Stored(location=self.name, key=item.name, size=item.size or 0, etag=etag,
                         version_id=item.version_id,
                         encryption="AES256" if item.server_encrypted else None)

    async def list_objects(self, prefix: str = "", start_after: str = "",
                           details: bool = True) -> AsyncIterator[ForeignObject]:
        """Committed blobs, current versions only; the listing carries properties and
        metadata (always: it costs nothing more), so nothing is headed. Azure has no
        start-after: earlier names are skipped as they come."""
        if self._container is None:
            raise RuntimeError(f"azure location {self.name} is not open")
        with _azure_errors():
            async for item in self._container.list_blobs(name_starts_with=prefix or None,
                                                         include=["metadata"]):
                if item.name <= start_after:
                    continue
                yield self._foreign(item)

    async def describe(self, key: str) -> ForeignObject | None:
        with _azure_errors():
            try:
                props = await self._blob(key).get_blob_properties()
            except ResourceNotFoundError:
                return None
        return self._foreign(props)

    def _foreign(self, item: Any) -> ForeignObject:
        """A ForeignObject from BlobProperties (a listing's or get_blob_properties')."""
        etag = item.etag
        if etag and not etag.startswith('"'):
            etag = f'"{etag}"'  # listings drop the quotes every other answer has
        settings = item.content_settings
        md5 = settings.content_md5 if settings is not None else None
        user: dict[str, str] = {}
        tags: dict[str, str] = {}
        if item.metadata:
            try:
                decoded = decode_metadata(item.metadata)
                user, tags = decoded.user, decoded.tags
            except (ValueError, UnicodeDecodeError):  # written natively: names as they are
                user = dict(item.metadata)
        meta = ObjectMeta(
            content_type=settings.content_type if settings else None,
            cache_control=settings.cache_control if settings else None,
            content_disposition=settings.content_disposition if settings else None,
            content_encoding=settings.content_encoding if settings else None,
            content_language=settings.content_language if settings else None,
            user=user, tags=tags)
        modified = item.last_modified
        # Pinned by etag only: the version id (where the account keeps versions) is not
        # needed to read the current blob, and the etag pin fails once it is overwritten.
        stored = Stored(location=self.name, key=item.name, size=item.size or 0, etag=etag,
                        encryption="AES256" if item.server_encrypted else None)
        return ForeignObject(key=item.name, size=item.size or 0, stored=stored,
                             s3_etag=bytes(md5).hex() if md5 else None, meta=meta,
                             last_modified=modified.timestamp() if modified else None)

    async def _drop_uncommitted(self, blob: BlobClient) -> None:
        """Drop the uncommitted blocks staged at `blob`'s name, where no blob is committed:
        commit an empty block list only if none exists (which discards every staged block),
        then delete exactly that empty blob. A committed blob is left alone."""
        try:
            _, staged = await blob.get_block_list("uncommitted")
        except ResourceNotFoundError as exc:
            if _error_code(exc) == "ContainerNotFound":
                raise
            return  # nothing at this name at all
        if not staged:
            return
        try:
            response = await blob.commit_block_list(
                [], match_condition=MatchConditions.IfMissing)
        except (ResourceExistsError, ResourceModifiedError):
            return  # a committed blob is there: not ours to touch
        await _delete_blob(blob, etag=response.get("etag"),
                           match_condition=MatchConditions.IfNotModified)

    async def copy(self, src: Stored, key: str, meta: ObjectMeta) -> Stored | None:
        source = self if src.location == self.name else _OPEN_LOCATIONS.get(src.location)
        if source is None or source.settings.endpoint != self.settings.endpoint or _is_part(src):
            return None  # another account (or not an azure location): the caller streams
        if self.settings.sas_token and not source.settings.sas_token:
            return None  # Azure reads the source with our shared key or token, never our SAS
        source_url = source._blob(src.key).url
        if source.settings.sas_token:
            source_url += "?" + source.settings.sas_token
        metadata, tags = encode_metadata(meta)
        blob = self._blob(key)
        source_conditions: dict[str, Any] = {}
        if src.etag:
            source_conditions = dict(source_etag=src.etag,
                                     source_match_condition=MatchConditions.IfNotModified)
        with _azure_errors():
            try:
                response = await blob.start_copy_from_url(
                    source_url, metadata=metadata or None, tags=tags, **source_conditions
                )
            except (ResourceNotFoundError, ResourceModifiedError) as exc:
                if _error_code(exc) == "ContainerNotFound":
                    raise
                raise NotFound(f"copy source {src.key}: {_error_code(exc)}") from exc
            if response.get("copy_status") != "success":
                await self._wait_for_copy(blob, response.get("copy_id"))
            if not metadata:
                await blob.set_blob_metadata({})  # Copy Blob keeps the source's metadata else
            # Copy Blob keeps the source's content headers; the copy gets the requested ones.
            response = await blob.set_http_headers(content_settings=_content_settings(meta))
        return Stored(location=self.name, key=key, size=src.size, etag=response.get("etag"),
                      version_id=response.get("version_id"), encryption=src.encryption)

    async def _wait_for_copy(self, blob: BlobClient, copy_id: str | None) -> None:
        """Real Azure may copy asynchronously; poll until done, abort past COPY_TIMEOUT."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + COPY_TIMEOUT
        delay = 0.2
        while True:
            props = await blob.get_blob_properties()
            status = props.copy.status
            if status == "success":
                return
            if status != "pending":
                raise RuntimeError(f"server-side copy ended {status}: {props.copy.status_description}")
            if loop.time() > deadline:
                if copy_id:
                    await blob.abort_copy(copy_id)
                raise TimeoutError(f"server-side copy still pending after {COPY_TIMEOUT}s")
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    async def update_meta(self, stored: Stored, meta: ObjectMeta) -> Stored:
        blob = self._blob(stored.key)
        metadata, tags = encode_metadata(meta)
        with _azure_errors():
            try:
                props = await blob.get_blob_properties(**self._conditions(stored))
                etag = props.etag
                if props.metadata != metadata:  # setting metadata changes the etag: if needed
                    response = await blob.set_blob_metadata(
                        metadata, **self._conditions(stored, version=False)
                    )
                    etag = response.get("etag")
                # Setting index tags leaves the etag alone.
                await blob.set_blob_tags(tags or {}, version_id=stored.version_id)
            except (ResourceNotFoundError, ResourceModifiedError) as exc:
                _raise_not_found(stored.key, exc)
        return replace(stored, etag=etag)

    # multipart uploads

    async def create_upload(self, key: str, meta: ObjectMeta) -> str:
        return uuid.uuid4().hex  # nothing reaches Azure until the first part

    async def upload_part(
        self, key: str, upload_id: str, number: int, body: ByteStream, size: int
    ) -> Stored:
        if not _UPLOAD_ID.fullmatch(upload_id):
            raise NotFound(f"upload {upload_id}")
        if not 1 <= number <= 10000:
            raise ValueError(f"part number {number} is outside 1..10000")
        attempt = secrets.token_hex(4)
        reader = _BodyReader(body)
        with _azure_errors():
            block_ids = await self._stage(self._blob(key), reader, size, upload_id, number,
                                          attempt)
        await reader.expect_end()
        return Stored(location=self.name, key=key, size=size,
                      etag=f"{PART_ETAG_PREFIX}{attempt}:{len(block_ids)}")

    async def complete_upload(
        self, key: str, upload_id: str, parts: list[Part], meta: ObjectMeta
    ) -> list[Stored]:
        if not _UPLOAD_ID.fullmatch(upload_id):
            raise NotFound(f"upload {upload_id}")
        blocks: list[BlobBlock] = []
        for part in parts:
            match = _PART_ETAG.fullmatch(part.stored.etag or "")
            if match is None:
                raise ValueError(f"part {part.number} was not staged by an azure location")
            attempt, count = match.group(1), int(match.group(2))
            blocks.extend(
                BlobBlock(block_id=block_id(upload_id, part.number, attempt, sub))
                for sub in range(count)
            )
        metadata, tags = encode_metadata(meta)
        # Committing also discards every staged block not listed (unlisted parts, old attempts).
        with _azure_errors():
            try:
                response = await self._blob(key).commit_block_list(
                    blocks, content_settings=_content_settings(meta), metadata=metadata,
                    tags=tags
                )
            except HttpResponseError as exc:
                if _error_code(exc) != "InvalidBlockList":
                    raise
                raise Precondition(
                    f"{key}: staged blocks of upload {upload_id} are gone (the upload was "
                    "aborted, another commit on this name dropped them, or they expired)"
                ) from exc
        size = sum(part.stored.size for part in parts)
        return [self._stored(key, size, response)]

    async def abort_upload(self, key: str, upload_id: str, parts: list[Part]) -> None:
        # The name is this upload's alone: every block staged there, recorded in `parts` or
        # not, is its own. (A completed upload's blob is committed and left alone.)
        if not _UPLOAD_ID.fullmatch(upload_id):
            raise NotFound(f"upload {upload_id}")
        with _azure_errors():
            await self._drop_uncommitted(self._blob(key))

    async def check(self) -> Health:
        if self._container is None:
            return Health(False, "not open")
        try:
            if self.settings.auth_method == "shared-access-signature":
                # A container SAS may not allow Get Container Properties; listing is its probe.
                pages = self._container.list_blobs(results_per_page=1).by_page()
                async for _page in pages:
                    break
            else:
                await self._container.get_container_properties()
        except ResourceNotFoundError:
            return Health(False, f"container {self.settings.container} does not exist")
        except HttpResponseError as exc:
            return Health(False, f"container {self.settings.container}: HTTP {exc.status_code} "
                                 f"{_error_code(exc) or exc.reason}")
        except Exception as exc:  # unreachable endpoint, timeout: report, never raise
            return Health(False, f"{self.settings.endpoint} unreachable: {type(exc).__name__}")
        return Health(True, "OK")


def _error_code(exc: HttpResponseError) -> str | None:
    code = exc.error_code
    return getattr(code, "value", code)


@contextlib.contextmanager
def _azure_errors() -> Iterator[None]:
    """The one mapping of Azure error answers (see the module doc). NotFound is decided by
    each call, which knows what a 404 or a failed etag pin names."""
    try:
        yield
    except HttpResponseError as exc:
        status, code = exc.status_code or 0, _error_code(exc) or ""
        detail = f"{code or status}: {_first_line(exc.message)}"
        if status == 429 or (status == 503 and code == "ServerBusy"):
            raise Throttled(detail, retry_after=_retry_after(exc)) from exc
        # Azure answers a wrong key or SAS with 403 AuthenticationFailed.
        if status == 401 or code == "AuthenticationFailed":
            raise Unauthenticated(detail) from exc
        if status == 403:
            raise PermissionDenied(detail) from exc
        if code == "BlobAlreadyExists":
            raise AlreadyExists(detail) from exc
        if status in (409, 412):
            raise Precondition(detail) from exc
        if status == 501:
            raise NotSupported(detail) from exc
        if 400 <= status < 500 and status != 404:
            raise Rejected(detail) from exc
        # A 404 no call claimed (ContainerNotFound) and 5xx: the location is unusable.
        raise Unavailable(detail) from exc


def _retry_after(exc: HttpResponseError) -> float | None:
    headers = getattr(exc.response, "headers", None) or {}
    try:
        return float(headers.get("Retry-After", ""))
    except (TypeError, ValueError):
        return None


def _first_line(message: str | None) -> str:
    # Azure's messages go on with RequestId/Time lines: the first says what was refused.
    return (message or "").strip().splitlines()[0][:300] if message and message.strip() else ""


async def _delete_blob(blob: BlobClient, **conditions: Any) -> bool:
    """Delete; False when it was already gone (or replaced, under an etag pin). A missing
    container is a broken location and raises."""
    try:
        await blob.delete_blob(**conditions)
    except ResourceNotFoundError as exc:
        if _error_code(exc) == "ContainerNotFound":
            raise
        return False
    except ResourceModifiedError:
        return False  # the pinned blob is not there any more: this piece is already gone
    return True


def _raise_not_found(key: str, exc: HttpResponseError) -> NoReturn:
    """BlobNotFound or a failed etag condition mean the piece is gone; a missing container is a
    broken location and stays a backend error."""
    if _error_code(exc) == "ContainerNotFound":
        raise exc
    raise NotFound(key) from exc


async def _empty() -> ByteStream:
    return
    yield  # noqa: B901 - an async generator that yields nothing


async def _download_chunks(downloader: Any) -> ByteStream:
    async for chunk in downloader.chunks():
        yield chunk
