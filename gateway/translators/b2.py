"""Backblaze B2 location, through B2's native API (b2sdk, which is synchronous).

Every b2sdk call runs in a bounded thread pool owned by the translator, so a slow B2 call never
stalls the event loop. Bytes stream both ways through gateway.translators.sync_bridge: an upload
reads the async request body from a worker thread a few chunks at a time (no whole object or
part in memory), a download is pulled chunk by chunk with one chunk of read-ahead. Objects are ordinary B2 files named by the backend key;
multipart uploads are B2 large files (start / upload part / finish, cancel on abort). The
Stored.version_id of every object is its B2 file id, so reads and deletes address exactly the
version the gateway wrote even though B2 keeps every version of a name. Every write goes to a
name of its own (the location wrapper's `~<token>` keys), so a delete without a file id removes
every version of that name: hide markers and unfinished large files included.

B2's request-level 4xx answers (bad file info, bad part number, unsatisfiable range...) raise
Rejected, its 429 and 503 Throttled, its 409 Precondition, 401 Unauthenticated, 403
PermissionDenied; a missing bucket and other 5xx Unavailable (see translate_error).

The gateway talks to b2sdk's B2Session (the layer below B2Api) so the code path is the same
against real B2 and against b2sdk's RawSimulator: only the raw API object differs, chosen by
the module-level RAW_API_FACTORY hook, which tests set (see tests/clouds/b2.py).
"""

from __future__ import annotations

import asyncio
import functools
import json
import re
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode

from b2sdk._internal.exception import CopySourceTooBig  # not re-exported; b2sdk is pinned
from b2sdk.v2 import (
    REALM_URLS,
    AbstractRawApi,
    B2Http,
    B2HttpApiConfig,
    B2Session,
    InMemoryAccountInfo,
    InMemoryCache,
    MetadataDirectiveMode,
    StreamWithHash,
)
from b2sdk.v2.exception import (
    AccessDenied,
    BadJson,
    BadRequest,
    ChecksumMismatch,
    FileAlreadyHidden,
    FileNotPresent,
    MissingPart,
    NonExistentBucket,
    NotAllowedByAppKeyError,
    PartSha1Mismatch,
    RequestTimeout,
    ServiceError,
    TooManyRequests,
    Unauthorized,
    UnknownError,
    UnsatisfiableRange,
)
from b2sdk.v2.exception import Conflict as B2Conflict

from gateway.translators.base import (
    CHUNK_SIZE,
    ByteStream,
    ConfigError,
    ForeignObject,
    Health,
    NotFound,
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

T = TypeVar("T")

# Test hook: when set, called with the B2Http object to give the raw API (b2sdk's RawSimulator
# in tests). A module-level hook rather than a constructor keyword because the end-to-end tests
# build translators inside the gateway (from locationConfig.json), where no keyword can reach.
RAW_API_FACTORY: Callable[[B2Http], AbstractRawApi] | None = None

# B2's own limits (https://www.backblaze.com/docs/cloud-storage-large-files).
MAX_SIMPLE_UPLOAD = 5_000_000_000  # b2_upload_file and b2_copy_file take at most 5 GB
MAX_PART = 5_000_000_000  # b2_upload_part / b2_copy_part
MAX_FILE_INFO = 10  # custom file info entries per file (b2-* content headers included)
DEFAULT_THREADS = 8
DEFAULT_CONTENT_TYPE = "application/octet-stream"
HEX_DIGITS_AT_END = "hex_digits_at_end"  # B2: the part/file SHA1 follows the bytes in the body
LIST_PAGE = 1000  # b2_list_file_versions entries per call (1000 cost one class C transaction)

# Our own file info names. B2 file info names: letters, digits, '-', '_', at most 50 chars.
TAGS_INFO = "s3-tagging"  # the S3 tag set as a URL query string, like x-amz-tagging
OVERFLOW_INFO = "s3-meta"  # JSON of the user metadata that cannot be entries of their own
CONTENT_INFO = {  # B2 serves these file infos back as the matching response headers
    "cache_control": "b2-cache-control",
    "content_disposition": "b2-content-disposition",
    "content_encoding": "b2-content-encoding",
    "content_language": "b2-content-language",
    "expires": "b2-expires",
}
_INFO_NAME = re.compile(r"[a-z0-9_-]{1,50}")


class _GatewayB2Http(B2Http):
    """b2sdk's HTTP layer with bounded timeouts and no retries.

    b2sdk retries up to 20 times with backoff by default, which turns an unreachable B2 into a
    minutes-long hang and re-sends non-idempotent calls. Retries of idempotent calls belong to
    the location wrapper above the translator."""

    CONNECTION_TIMEOUT = 5
    TIMEOUT = 60
    TIMEOUT_FOR_UPLOAD = 60
    TIMEOUT_FOR_COPY = 300  # every JSON call uses it; server-side copies of GBs take a while

    @classmethod
    def _translate_and_retry(cls, fcn: Callable[[], Any], try_count: int,
                             post_params: dict[str, Any] | None = None) -> Any:
        return super()._translate_and_retry(fcn, 1, post_params)


class _GatewaySession(B2Session):
    B2HTTP_CLASS = staticmethod(_GatewayB2Http)


KNOWN_DETAILS = ("bucketName", "applicationKeyId", "applicationKey", "realm", "threads")


@dataclass(frozen=True)
class B2Settings:
    """A b2 location's `details`, parsed and checked in this one place."""

    bucket_name: str
    bucket_match: bool
    key_id: str
    key: str
    realm: str
    threads: int

    @classmethod
    def parse(cls, name: str, details: Mapping[str, Any], env: Mapping[str, str]) -> B2Settings:
        refuse_unknown(B2Translator.type_name, details, KNOWN_DETAILS)
        bucket_name = details_str(details, "bucketName")
        assert bucket_name is not None
        bucket_match = details_bool(details, "bucketMatch", False)
        key_id = env.get(f"{name}_B2_APPLICATION_KEY_ID") or details.get("applicationKeyId")
        key = env.get(f"{name}_B2_APPLICATION_KEY") or details.get("applicationKey")
        if not isinstance(key_id, str) or not key_id:
            raise ConfigError("applicationKeyId", "must be set in locationConfig or environment "
                              f"variable {name}_B2_APPLICATION_KEY_ID")
        if not isinstance(key, str) or not key:
            raise ConfigError("applicationKey", "must be set in locationConfig or environment "
                              f"variable {name}_B2_APPLICATION_KEY")
        realm = details_str(details, "realm", required=False, default="production")
        if realm not in REALM_URLS and not re.match(r"https?://[^/\s]+", realm or ""):
            raise ConfigError("realm", f"must be one of {sorted(REALM_URLS)} or an http(s) URL")
        assert realm is not None
        return cls(bucket_name=bucket_name, bucket_match=bucket_match, key_id=key_id, key=key,
                   realm=realm, threads=details_int(details, "threads", DEFAULT_THREADS, 1, 64))


class B2Translator(Translator):
    type_name = "b2"

    def __init__(self, name: str, details: Mapping[str, Any], env: Mapping[str, str]) -> None:
        super().__init__(name, details, env)
        settings = self.settings = B2Settings.parse(name, details, env)
        self.bucket_name = settings.bucket_name
        self.bucket_match = settings.bucket_match
        self._key_id, self._key = settings.key_id, settings.key
        self.realm = settings.realm
        self.threads = settings.threads
        # Puts above this size become B2 large files (B2 refuses simple uploads over 5 GB).
        self.max_simple_upload = MAX_SIMPLE_UPLOAD
        self._session: B2Session | None = None
        self._bucket_id: str | None = None
        self._authorized = False
        self._auth_lock = threading.Lock()
        # Two pools: uploads block on the client's request body for as long as it trickles in,
        # so they get their own threads; a download feeding an upload of this same location
        # (streamed copy) must never wait for a thread held by that upload.
        self._calls: ThreadPoolExecutor | None = None
        self._uploads: ThreadPoolExecutor | None = None

    # ---- lifecycle and plumbing

    async def open(self) -> None:
        config = B2HttpApiConfig(_raw_api_class=RAW_API_FACTORY)  # None: the real HTTP API
        self._session = _GatewaySession(InMemoryAccountInfo(), InMemoryCache(), config)
        self._authorized, self._bucket_id = False, None
        self._calls = ThreadPoolExecutor(self.threads, thread_name_prefix=f"b2-{self.name}")
        self._uploads = ThreadPoolExecutor(self.threads, thread_name_prefix=f"b2up-{self.name}")

    async def close(self) -> None:
        for pool in (self._calls, self._uploads):
            if pool is not None:
                pool.shutdown(wait=False, cancel_futures=True)
        self._calls = self._uploads = None
        self._session = None

    def _pool(self) -> ThreadPoolExecutor:
        if self._calls is None:
            raise RuntimeError(f"b2 location {self.name} is not open")
        return self._calls

    async def _run(self, fn: Callable[..., T], *args: Any, pool: ThreadPoolExecutor | None = None,
                   **kwargs: Any) -> T:
        """Run one blocking b2sdk call in the translator's pool; B2's answers that are not
        answers become translator errors (FileNotPresent is left to the caller, which knows what
        is missing)."""
        calls = self._pool()
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(pool or calls, functools.partial(fn, *args, **kwargs))
        except Exception as exc:
            mapped = translate_error(exc)
            if mapped is None:
                raise
            raise mapped from exc

    def _ready(self, refresh: bool = False) -> tuple[B2Session, str]:
        """Session and bucket id, authorizing on first use (in a worker thread, never in
        open(), so an unreachable B2 does not stop the gateway from starting). b2sdk
        re-authorizes by itself when the token expires."""
        session = self._session
        if session is None:
            raise RuntimeError(f"b2 location {self.name} is not open")
        with self._auth_lock:
            if self._bucket_id is None or refresh:
                if not self._authorized:
                    session.authorize_account(self.realm, self._key_id, self._key)
                    self._authorized = True
                account_id = session.account_info.get_account_id()
                buckets = session.list_buckets(account_id, bucket_name=self.bucket_name)
                matches = [b for b in buckets["buckets"] if b["bucketName"] == self.bucket_name]
                if not matches:
                    raise NonExistentBucket(self.bucket_name)
                self._bucket_id = matches[0]["bucketId"]
            return session, self._bucket_id

    # ---- objects

    async def put(self, key: str, body: ByteStream, size: int, meta: ObjectMeta) -> Stored:
        content_type, info = file_info_from_meta(meta)
        async with AsyncBodyReader(body, size) as reader:
            if size > self.max_simple_upload:
                return await self._put_large(key, reader, size, content_type, info)
            result = await self._run(self._upload_simple, key, reader, size, content_type, info,
                                     pool=self._uploads)
            try:
                await reader.finish()
            except BaseException:  # e.g. the body is longer than announced: keep no truncated object
                await self._quietly(self._delete_version, result["fileId"], key)
                raise
        return self._stored(key, result)

    def _upload_simple(self, key: str, reader: AsyncBodyReader, size: int, content_type: str,
                       info: dict[str, str]) -> dict[str, Any]:
        session, bucket_id = self._ready()
        stream = StreamWithHash(_ExactStream(reader, size), size)
        return session.upload_file(bucket_id, key, len(stream), content_type, HEX_DIGITS_AT_END,
                                   info, stream)

    async def _put_large(self, key: str, reader: AsyncBodyReader, size: int, content_type: str,
                         info: dict[str, str]) -> Stored:
        """A put over B2's simple-upload limit: a large file of recommended-size parts, each
        streamed straight from the body."""
        upload_id = await self.create_upload_raw(key, content_type, info)
        try:
            part_size = await self._run(self._large_part_size, size)
            sha1s: list[str] = []
            offset = 0
            while offset < size:
                length = min(part_size, size - offset)
                result = await self._run(self._upload_part_sync, upload_id, len(sha1s) + 1,
                                         reader, length, pool=self._uploads)
                sha1s.append(result["contentSha1"])
                offset += length
            await reader.finish()
            result = await self._run(self._finish, upload_id, sha1s)
        except BaseException:
            await self._quietly(self._cancel_sync, upload_id)
            raise
        return self._stored(key, result, size)

    def _large_part_size(self, size: int) -> int:
        session, _ = self._ready()
        recommended = session.account_info.get_recommended_part_size()
        return max(recommended, -(-size // 10_000))  # B2 allows at most 10,000 parts

    async def get(self, stored: Stored, offset: int = 0, length: int | None = None) -> ByteStream:
        file_id = self._file_id(stored)
        if length == 0:
            await self.head(stored)  # NotFound still applies to an empty range
            return _empty()
        byte_range = None
        if offset or length is not None:
            end = stored.size - 1 if length is None else offset + length - 1
            byte_range = (offset, end)
        try:
            # A slow client holds a connection but no thread (see sync_bridge).
            return await stream_from_thread(self._pool(),
                                            lambda: self._download(file_id, byte_range))
        except FileNotPresent:
            raise NotFound(stored.key) from None
        except Exception as exc:
            mapped = translate_error(exc)
            if mapped is None:
                raise
            raise mapped from exc

    def _download(self, file_id: str, byte_range: tuple[int, int] | None) -> Iterator[bytes]:
        """The file's chunks; closing the generator (in the pool) closes the response."""
        session, _ = self._ready()
        url = session.get_download_url_by_id(file_id)
        with session.download_file_from_url(url, range_=byte_range) as response:
            yield from response.iter_content(CHUNK_SIZE)

    async def head(self, stored: Stored) -> Stored:
        file_id = self._file_id(stored)
        try:
            info = await self._run(self._file_info, file_id)
        except FileNotPresent:
            raise NotFound(stored.key) from None
        if info.get("action") not in ("upload", "copy"):  # an unfinished large file, a hide marker
            raise NotFound(stored.key)
        return self._stored(info["fileName"], info)

    def _file_info(self, file_id: str) -> dict[str, Any]:
        session, _ = self._ready()
        return session.get_file_info_by_id(file_id)

    async def delete(self, stored: Stored) -> None:
        # Pinned: only the version this Stored names (update_meta keeps a newer version at the
        # same name). Unpinned (the bytes of a write that never committed, e.g. a put cut off
        # before B2 answered): every version of the name, which is that write's alone.
        if stored.version_id:
            await self._run(self._delete_version, stored.version_id, stored.key)
        else:
            await self._run(self._delete_all_versions, stored.key)

    def _delete_version(self, file_id: str, file_name: str) -> None:
        session, _ = self._ready()
        try:
            session.delete_file_version(file_id, file_name)
        except FileNotPresent:
            pass  # already gone is success

    def _delete_all_versions(self, file_name: str) -> None:
        """Every version of exactly `file_name`: files, hide markers, and unfinished large
        files (b2_delete_file_version cancels those, as b2_cancel_large_file does)."""
        for version in list(self._versions(file_name, exact=True)):
            self._delete_version(version["fileId"], file_name)

    def _versions(self, prefix: str, exact: bool = False) -> Iterator[dict[str, Any]]:
        """Every version under `prefix` (of exactly that name with `exact`), in B2's order (by
        name, newest first), one b2_list_file_versions page at a time."""
        start: tuple[str | None, str | None] = (prefix or None, None)
        while True:
            files, start = self._list_page(prefix, start)
            for version in files:
                if exact and version["fileName"] != prefix:
                    return  # sorted by name: past the versions of this one
                yield version
            if start[0] is None or (exact and start[0] != prefix):
                return

    def _list_page(self, prefix: str, start: tuple[str | None, str | None]
                   ) -> tuple[list[dict[str, Any]], tuple[str | None, str | None]]:
        """One page of versions under `prefix` from `start` (name, file id); the next start,
        (None, None) after the last page."""
        session, bucket_id = self._ready()
        # Start at the prefix itself: B2 lists from there (and b2sdk's simulator, unlike B2,
        # stops at the first name before the prefix).
        page = session.list_file_versions(bucket_id, start_file_name=start[0] or prefix or None,
                                          start_file_id=start[1], max_file_count=LIST_PAGE,
                                          prefix=prefix or None)
        return page["files"], (page.get("nextFileName"), page.get("nextFileId"))

    async def list_pieces(self, prefix: str = "") -> AsyncIterator[Stored]:
        """Every version of every name under `prefix`: files (pinned by file id), hide markers,
        and unfinished large files (their id is the upload id, which open uploads' parts carry
        as version_id). One page is fetched at a time, as the caller consumes them."""
        start: tuple[str | None, str | None] = (prefix or None, None)
        while True:
            files, start = await self._run(self._list_page, prefix, start)
            for version in files:
                if version.get("action") != "folder":
                    yield self._stored(version["fileName"], version, 0)
            if start[0] is None:
                return

    async def list_objects(self, prefix: str = "", start_after: str = "",
                           details: bool = True) -> AsyncIterator[ForeignObject]:
        """b2_list_file_names (the visible version of each name; hidden names are no objects),
        a page at a time; the listing carries file info, so nothing is headed."""
        start: str | None = start_after or prefix or None
        while True:
            files, start = await self._run(self._names_page, prefix, start)
            for version in files:
                if version["fileName"] > start_after and version.get("action") in (
                        "upload", "copy"):
                    yield self._foreign(version)
            if start is None:
                return

    def _names_page(self, prefix: str, start: str | None
                    ) -> tuple[list[dict[str, Any]], str | None]:
        session, bucket_id = self._ready()
        page = session.list_file_names(bucket_id, start_file_name=start,
                                       max_file_count=LIST_PAGE, prefix=prefix or None)
        return page["files"], page.get("nextFileName")

    async def describe(self, key: str) -> ForeignObject | None:
        files, _ = await self._run(self._names_page, key, key)
        for version in files[:1]:
            if version["fileName"] == key and version.get("action") in ("upload", "copy"):
                return self._foreign(version)
        return None

    def _foreign(self, version: Mapping[str, Any]) -> ForeignObject:
        stored = self._stored(version["fileName"], version)
        md5 = version.get("contentMd5")
        if md5 and md5.startswith("unverified:"):
            md5 = None
        uploaded = version.get("uploadTimestamp")
        return ForeignObject(
            key=version["fileName"], size=stored.size, stored=stored, s3_etag=md5 or None,
            meta=meta_from_file_info(version.get("contentType"), version.get("fileInfo") or {}),
            last_modified=uploaded / 1000 if uploaded else None)

    def piece_id(self, stored: Stored) -> str:
        return stored.version_id or stored.key  # B2 file ids are unique across names

    async def copy(self, src: Stored, key: str, meta: ObjectMeta) -> Stored | None:
        if src.location != self.name:
            return None
        content_type, info = file_info_from_meta(meta)
        try:
            result = await self._run(self._copy_sync, self._file_id(src), src.size, key,
                                     content_type, info)
        except FileNotPresent:
            raise NotFound(src.key) from None
        return self._stored(key, result, src.size)

    def _copy_sync(self, file_id: str, size: int, key: str, content_type: str,
                   info: dict[str, str]) -> dict[str, Any]:
        session, _ = self._ready()
        try:
            return session.copy_file(file_id, key, metadata_directive=MetadataDirectiveMode.REPLACE,
                                     content_type=content_type, file_info=info)
        except CopySourceTooBig:
            pass  # over 5 GB: assemble a large file from server-side part copies below
        session, bucket_id = self._ready()
        large = session.start_large_file(bucket_id, key, content_type, info)
        upload_id = large["fileId"]
        try:
            part_size = min(MAX_PART, max(self._large_part_size(size), 1 << 30))
            sha1s = []
            for number, start in enumerate(range(0, size, part_size), 1):
                end = min(start + part_size, size) - 1
                part = session.copy_part(file_id, upload_id, number, bytes_range=(start, end))
                sha1s.append(part["contentSha1"])
            return session.finish_large_file(upload_id, sha1s)
        except BaseException:
            self._cancel_sync(upload_id)
            raise

    async def copy_part(self, src: Stored, offset: int, length: int, key: str, upload_id: str,
                        number: int) -> Stored | None:
        if src.location != self.name or length > MAX_PART or length == 0:
            return None
        try:
            result = await self._run(self._copy_part_sync, self._file_id(src), upload_id, number,
                                     (offset, offset + length - 1))
        except FileNotPresent:
            raise NotFound(src.key) from None
        return Stored(location=self.name, key=key, size=length, version_id=upload_id,
                      etag=result["contentSha1"])

    def _copy_part_sync(self, file_id: str, upload_id: str, number: int,
                        byte_range: tuple[int, int]) -> dict[str, Any]:
        session, _ = self._ready()
        try:
            return session.copy_part(file_id, upload_id, number, bytes_range=byte_range)
        except BadRequest:
            if not self._upload_exists(upload_id):  # B2's 400 for an upload that is gone
                raise NotFound(upload_id) from None
            raise

    async def update_meta(self, stored: Stored, meta: ObjectMeta) -> Stored:
        """B2 file info is immutable: copy the file onto its own name with the new info. The new
        Stored (new file id, same name) replaces the old one in the caller's record; the old
        version is left for the caller to drop (as garbage, once its record no longer names
        it): deleting it here would pull the bytes from under a reader, or a concurrent update,
        still holding the old record."""
        new = await self.copy(stored, stored.key, meta)
        assert new is not None
        return new

    # ---- multipart = B2 large files

    async def create_upload(self, key: str, meta: ObjectMeta) -> str:
        content_type, info = file_info_from_meta(meta)
        return await self.create_upload_raw(key, content_type, info)

    async def create_upload_raw(self, key: str, content_type: str, info: dict[str, str]) -> str:
        result = await self._run(self._start_large, key, content_type, info)
        return result["fileId"]

    def _start_large(self, key: str, content_type: str, info: dict[str, str]) -> dict[str, Any]:
        session, bucket_id = self._ready()
        return session.start_large_file(bucket_id, key, content_type, info)

    async def upload_part(
        self, key: str, upload_id: str, number: int, body: ByteStream, size: int
    ) -> Stored:
        try:
            async with AsyncBodyReader(body, size) as reader:
                result = await self._run(self._upload_part_sync, upload_id, number, reader, size,
                                         pool=self._uploads)
                await reader.finish()
        except FileNotPresent:
            raise NotFound(upload_id) from None
        # Nothing to clean up on failure: B2 keeps no half-uploaded part.
        return Stored(location=self.name, key=key, size=size, version_id=upload_id,
                      etag=result["contentSha1"])

    def _upload_part_sync(self, upload_id: str, number: int, reader: AsyncBodyReader,
                          size: int) -> dict[str, Any]:
        session, _ = self._ready()
        stream = StreamWithHash(_ExactStream(reader, size), size)
        try:
            return session.upload_part(upload_id, number, len(stream), HEX_DIGITS_AT_END, stream)
        except BadRequest as exc:
            # Refused before any byte: either the upload id is not (or no longer) an unfinished
            # large file, or the request itself was refused (a bad part number, a bad size).
            if reader.delivered == 0 and not self._upload_exists(upload_id):
                raise FileNotPresent(upload_id) from exc
            raise

    def _upload_exists(self, upload_id: str) -> bool:
        session, _ = self._ready()
        try:
            session.list_parts(upload_id, None, 1)
        except (BadRequest, FileNotPresent):  # B2 answers 400 for an id that is no large file
            return False
        return True

    async def complete_upload(
        self, key: str, upload_id: str, parts: list[Part], meta: ObjectMeta
    ) -> list[Stored]:
        try:
            result = await self._run(self._complete_sync, key, upload_id, parts)
        except FileNotPresent:
            raise NotFound(upload_id) from None
        return [self._stored(key, result, sum(p.stored.size for p in parts))]

    def _complete_sync(self, key: str, upload_id: str, parts: list[Part]) -> dict[str, Any]:
        session, bucket_id = self._ready()
        uploaded = self._list_parts(upload_id)
        listed = [p.number for p in parts]
        if listed == list(range(1, len(parts) + 1)) and sorted(uploaded) == listed:
            # The usual case: B2 finishes exactly the parts S3 lists.
            return self._finish(upload_id, [p.stored.etag or "" for p in parts])
        # S3 may list a subset of the uploaded parts (or leave gaps in the numbering); a B2
        # large file is always all its parts 1..N. When the uploaded parts are contiguous,
        # finish them all as a staging version, copy the listed ranges server-side into the
        # final file, and delete the staging version.
        numbers = sorted(uploaded)
        if numbers != list(range(1, len(numbers) + 1)):
            raise Precondition(f"b2 large file {upload_id}: uploaded parts {numbers} are not "
                            "numbered 1..N, B2 cannot assemble them")
        for part in parts:
            # B2 keeps one part per number (a retry replaces it): the listed parts must still
            # hold the bytes the caller recorded, or the copies below would take others.
            found = uploaded.get(part.number)
            if found is None or found["contentSha1"] != part.stored.etag:
                raise Precondition(f"b2 large file {upload_id}: part {part.number} was replaced "
                               "or is missing")
        staging = self._finish(upload_id, [uploaded[n]["contentSha1"] for n in numbers])
        try:
            starts: dict[int, int] = {}
            offset = 0
            for number in numbers:
                starts[number] = offset
                offset += uploaded[number]["contentLength"]
            info = staging.get("fileInfo") or {}
            final = session.start_large_file(bucket_id, key, staging["contentType"], info)
            try:
                sha1s = []
                for index, part in enumerate(parts, 1):
                    start = starts[part.number]
                    end = start + uploaded[part.number]["contentLength"] - 1
                    copied = session.copy_part(staging["fileId"], final["fileId"], index,
                                               bytes_range=(start, end))
                    sha1s.append(copied["contentSha1"])
                return session.finish_large_file(final["fileId"], sha1s)
            except BaseException:
                self._cancel_sync(final["fileId"])
                raise
        finally:
            self._delete_version(staging["fileId"], key)

    def _list_parts(self, upload_id: str) -> dict[int, dict[str, Any]]:
        session, _ = self._ready()
        parts: dict[int, dict[str, Any]] = {}
        start: int | None = None
        while True:
            try:
                page = session.list_parts(upload_id, start, 1000)
            except BadRequest as exc:  # B2 answers 400 for an id that is no unfinished file
                raise FileNotPresent(upload_id) from exc
            for part in page["parts"]:
                parts[part["partNumber"]] = part
            start = page.get("nextPartNumber")
            if start is None:
                return parts

    def _finish(self, upload_id: str, sha1s: list[str]) -> dict[str, Any]:
        """Finish with the parts' SHA1s: B2 refuses when a part on B2 is not the one the caller
        recorded (replaced by a retry meanwhile), so a completion never takes other bytes."""
        session, _ = self._ready()
        try:
            return session.finish_large_file(upload_id, sha1s)
        except (PartSha1Mismatch, ChecksumMismatch, MissingPart) as exc:
            raise Precondition(f"b2 large file {upload_id}: its parts are not the ones listed "
                           f"({exc})") from exc

    async def abort_upload(self, key: str, upload_id: str, parts: list[Part]) -> None:
        await self._run(self._cancel_sync, upload_id)

    def _cancel_sync(self, upload_id: str) -> None:
        session, _ = self._ready()
        try:
            session.cancel_large_file(upload_id)
        except (FileNotPresent, BadRequest):
            pass  # B2 answers 400 for an id that is no (longer an) unfinished large file

    async def _quietly(self, fn: Callable[..., Any], *args: Any) -> None:
        try:
            await self._run(fn, *args)
        except Exception:  # cleanup after a failure: the first error is the one to report
            pass

    async def check(self) -> Health:
        try:
            # Look the bucket up afresh each time (one b2_list_buckets, authorizing first if
            # needed): a bucket deleted or a key restricted since the last check must show.
            await self._run(self._probe)
        except Exception as exc:
            cause = exc.__cause__ if isinstance(exc, TranslatorError) and exc.__cause__ else exc
            if isinstance(cause, NonExistentBucket):
                return Health(ok=False, message=f"B2 bucket {self.bucket_name} does not exist "
                                                "or is not visible to this application key")
            return Health(ok=False,
                          message=f"B2 unreachable: {type(cause).__name__}: {cause}"[:300])
        return Health(ok=True, message=f"B2 bucket {self.bucket_name} is reachable")

    def _probe(self) -> None:
        self._ready(refresh=True)

    # ---- helpers

    def _file_id(self, stored: Stored) -> str:
        if not stored.version_id:
            raise NotFound(stored.key)
        return stored.version_id

    def _stored(self, key: str, result: Mapping[str, Any], size: int | None = None) -> Stored:
        sha1 = result.get("contentSha1")
        if not sha1 or sha1 == "none":  # large files carry no whole-file SHA1
            sha1 = None
        elif sha1.startswith("unverified:"):
            sha1 = sha1.removeprefix("unverified:")
        length = result.get("contentLength")
        return Stored(location=self.name, key=key,
                      size=int(length) if length is not None else int(size or 0),
                      version_id=result["fileId"], etag=sha1)


# ---- B2's answers -> the translator's errors

# Request-level 4xx answers: the request itself was refused (a client's problem, not an
# outage). b2sdk turns B2's status and code into these classes (b2sdk's interpret_b2_error).
_REFUSED = (BadRequest, BadJson, FileAlreadyHidden, MissingPart, PartSha1Mismatch,
            UnsatisfiableRange, RequestTimeout)
_STATUS = re.compile(r"\b([1-5]\d\d) ")  # the status in b2sdk's "<status> <code> <message>"


def translate_error(exc: BaseException) -> TranslatorError | None:
    """The translator error a b2sdk error stands for; None when it is not one of B2's answers
    (a transport error: the wrapper makes it Unavailable). FileNotPresent is not mapped:
    callers turn it into NotFound naming the object; our own TranslatorErrors (raised in the
    pool) are not b2sdk's and pass as they are."""
    if isinstance(exc, TooManyRequests):
        return Throttled(f"B2 asked to slow down: {exc}")
    if isinstance(exc, ServiceError):  # 5xx: only 503 (B2's "too busy, back off") is throttling
        match = _STATUS.search(str(exc))
        if match and match.group(1) == "503":
            return Throttled(f"B2 is busy: {exc}")
        return Unavailable(f"B2: {exc}")
    if isinstance(exc, Unauthorized):
        return Unauthenticated(f"B2 refused the application key: {exc}")
    if isinstance(exc, (AccessDenied, NotAllowedByAppKeyError)):
        return PermissionDenied(f"B2: {exc}")
    if isinstance(exc, NonExistentBucket):
        return Unavailable(f"B2: {exc}")
    if isinstance(exc, B2Conflict):
        return Precondition(f"B2: {exc}")
    if isinstance(exc, _REFUSED):
        return Rejected(f"B2 refused the request: {exc}")
    if isinstance(exc, UnknownError):  # a status b2sdk has no class for
        match = _STATUS.search(str(exc))
        status = int(match.group(1)) if match else 0
        if status == 401:
            return Unauthenticated(f"B2: {exc}")
        if status == 403:
            return PermissionDenied(f"B2: {exc}")
        if 400 <= status < 500 and status not in (404, 409, 429):
            return Rejected(f"B2 refused the request: {exc}")
    return None


# ---- metadata <-> B2 file info


def file_info_from_meta(meta: ObjectMeta) -> tuple[str, dict[str, str]]:
    """The B2 content type and file info for an object's metadata.

    B2 allows 10 file info entries (names: letters, digits, '-', '_', up to 50 chars, stored
    lower-case) and about 7,000 bytes of file info headers. Content headers become B2's own
    b2-* entries (served back as the HTTP headers), tags one `s3-tagging` entry, each user
    metadata key an entry of its own name (as B2's S3-compatible API does); user keys that
    are not valid names, collide with ours, or do not fit in 10 entries go together into one
    `s3-meta` JSON entry, so nothing is lost."""
    info: dict[str, str] = {}
    for field_name, info_name in CONTENT_INFO.items():
        value = getattr(meta, field_name)
        if value:
            info[info_name] = value
    if meta.tags:
        info[TAGS_INFO] = urlencode(meta.tags)
    direct: dict[str, str] = {}
    overflow: dict[str, str] = {}
    for name, value in meta.user.items():
        lowered = name.lower()
        reserved = lowered.startswith("b2-") or lowered in (TAGS_INFO, OVERFLOW_INFO)
        if _INFO_NAME.fullmatch(lowered) and not reserved and lowered not in direct:
            direct[lowered] = value
        else:
            overflow[name] = value
    room = MAX_FILE_INFO - len(info)
    if len(direct) + (1 if overflow else 0) > room:
        keep = max(room - 1, 0)
        names = list(direct)
        overflow = {**{n: direct[n] for n in names[keep:]}, **overflow}
        direct = {n: direct[n] for n in names[:keep]}
    info.update(direct)
    if overflow:
        info[OVERFLOW_INFO] = json.dumps(overflow, separators=(",", ":"), ensure_ascii=False)
    return meta.content_type or DEFAULT_CONTENT_TYPE, info


def meta_from_file_info(content_type: str | None, info: Mapping[str, str]) -> ObjectMeta:
    """The inverse of file_info_from_meta (user metadata names come back lower-case)."""
    meta = ObjectMeta(content_type=content_type)
    for field_name, info_name in CONTENT_INFO.items():
        if info_name in info:
            setattr(meta, field_name, info[info_name])
    for name, value in info.items():
        if name == TAGS_INFO:
            meta.tags = dict(parse_qsl(value, keep_blank_values=True))
        elif name == OVERFLOW_INFO:
            meta.user.update(json.loads(value))
        elif not name.startswith("b2-") and name not in ("large_file_sha1",):
            meta.user[name] = value
    return meta


# ---- the body as b2sdk's stream


class _ExactStream:
    """Exactly `length` bytes of the body reader as the file-like object b2sdk posts. A short
    read means the end to b2sdk's hashing stream, so every read is filled (AsyncBodyReader
    blocks until it can). It can be rewound only while nothing has been read (b2sdk seeks to
    0 before each attempt), so a retry can never resend a half-consumed body."""

    def __init__(self, reader: AsyncBodyReader, length: int) -> None:
        self._reader = reader
        self._length = length
        self._position = 0

    def seek(self, position: int, whence: int = 0) -> int:
        if position != 0 or whence != 0 or self._position != 0:
            raise OSError("a streamed request body cannot be rewound")
        return 0

    def tell(self) -> int:
        return self._position

    def seekable(self) -> bool:
        return False

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        remaining = self._length - self._position
        if size is None or size < 0 or size > remaining:
            size = remaining
        data = self._reader.read(size)
        self._position += len(data)
        if len(data) < size:  # the part runs past the body's declared size
            raise ValueError(f"request body ended after {self._position} of "
                             f"{self._length} bytes")
        return data


async def _empty() -> ByteStream:
    return
    yield b""  # pragma: no cover - makes this an async generator


__all__ = ["B2Translator", "RAW_API_FACTORY", "file_info_from_meta", "meta_from_file_info",
           "translate_error"]
