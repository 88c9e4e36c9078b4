"""The console's S3 client: real, signed S3 requests to the gateway's own S3 listener on
loopback, so every console action is authorized exactly as the same S3 request would be."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any
from xml.etree.ElementTree import Element

import aiohttp
from defusedxml.ElementTree import fromstring
from yarl import URL

from gateway.console.sigv4 import canonical_query, object_path, sign_headers

MAX_ANSWER = 16 * 1024 * 1024  # a listing page of 1000 long keys is well below this
USER_AGENT = "s3gw-console"


class S3Failure(Exception):
    """An S3 error answer, as the client would have seen it."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}" if message else code)
        self.status = status
        self.code = code
        self.message = message


@dataclass
class Credentials:
    access_key: str
    secret: str = field(repr=False)


@dataclass
class ObjectEntry:
    key: str
    size: int
    last_modified: str
    etag: str


@dataclass
class VersionEntry:
    key: str
    version_id: str
    latest: bool
    last_modified: str
    size: int
    delete_marker: bool


@dataclass
class ObjectPage:
    objects: list[ObjectEntry]
    prefixes: list[str]
    next_token: str | None


def _strip(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _children(element: Element, name: str) -> list[Element]:
    return [child for child in element if _strip(child.tag) == name]


def _text(element: Element, name: str, default: str = "") -> str:
    for child in element:
        if _strip(child.tag) == name:
            return child.text or ""
    return default


def _xml(body: bytes) -> Element:
    return fromstring(body)


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class S3Client:
    """One aiohttp session for the whole console; each call is signed with the caller's key."""

    def __init__(self, endpoint: str, *, ssl: Any = None) -> None:
        self.endpoint = URL(endpoint)
        self.host = f"{self.endpoint.host}:{self.endpoint.port}"
        if self.endpoint.host and ":" in self.endpoint.host:
            self.host = f"[{self.endpoint.host}]:{self.endpoint.port}"
        self._ssl = ssl
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=120),
                connector=aiohttp.TCPConnector(limit=32, ssl=self._ssl))
        return self._session

    async def request(self, creds: Credentials, method: str, bucket: str | None = None,
                      key: str | None = None, params: dict[str, str] | None = None,
                      headers: dict[str, str] | None = None, body: bytes = b"") -> tuple[
                          int, dict[str, str], bytes]:
        params = params or {}
        path = object_path(bucket, key)
        signed = sign_headers(method, self.host, path, params, headers or {}, body,
                              creds.access_key, creds.secret)
        signed["User-Agent"] = USER_AGENT
        query = canonical_query(params)
        url = URL(str(self.endpoint.origin()) + path + ("?" + query if query else ""),
                  encoded=True)
        async with self._http().request(method, url, headers=signed, data=body or None,
                                        allow_redirects=False) as answer:
            chunks: list[bytes] = []
            total = 0
            async for chunk in answer.content.iter_chunked(64 * 1024):
                total += len(chunk)
                if total > MAX_ANSWER:  # never for the requests made here: refuse, bounded
                    raise S3Failure(502, "InternalError", "the S3 answer was too large")
                chunks.append(chunk)
            data = b"".join(chunks)
            found = dict(answer.headers)
            status = answer.status
        if status >= 300:
            code, message = f"HTTP{status}", ""
            if data:
                try:
                    root = _xml(data)
                    code, message = _text(root, "Code", code), _text(root, "Message")
                except Exception:  # noqa: BLE001 - not XML: keep the status
                    pass
            elif status == 404:
                code = "NotFound"
            elif status == 403:
                code = "AccessDenied"
            raise S3Failure(status, code, message)
        return status, found, data

    # --- service and buckets --------------------------------------------------------------

    async def list_buckets(self, creds: Credentials) -> list[tuple[str, str]]:
        _, _, body = await self.request(creds, "GET")
        buckets = _children(_xml(body), "Buckets")
        return [(_text(b, "Name"), _text(b, "CreationDate"))
                for group in buckets for b in _children(group, "Bucket")]

    async def bucket_location(self, creds: Credentials, bucket: str) -> str:
        _, _, body = await self.request(creds, "GET", bucket, params={"location": ""})
        return (_xml(body).text or "").strip() or "us-east-1"

    async def bucket_versioning(self, creds: Credentials, bucket: str) -> str:
        _, _, body = await self.request(creds, "GET", bucket, params={"versioning": ""})
        return _text(_xml(body), "Status") or "Off"

    async def create_bucket(self, creds: Credentials, bucket: str, location: str) -> None:
        body = b""
        if location:
            body = ("<CreateBucketConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
                    f"<LocationConstraint>{_escape(location)}</LocationConstraint>"
                    "</CreateBucketConfiguration>").encode()
        await self.request(creds, "PUT", bucket, body=body)

    async def delete_bucket(self, creds: Credentials, bucket: str) -> None:
        await self.request(creds, "DELETE", bucket)

    async def put_versioning(self, creds: Credentials, bucket: str, status: str) -> None:
        body = ("<VersioningConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
                f"<Status>{_escape(status)}</Status></VersioningConfiguration>").encode()
        await self.request(creds, "PUT", bucket, params={"versioning": ""}, body=body)

    async def list_objects(self, creds: Credentials, bucket: str, prefix: str = "",
                           token: str | None = None, max_keys: int = 100,
                           delimiter: str | None = "/") -> ObjectPage:
        params = {"list-type": "2", "max-keys": str(max_keys), "prefix": prefix}
        if delimiter:
            params["delimiter"] = delimiter
        if token:
            params["continuation-token"] = token
        _, _, body = await self.request(creds, "GET", bucket, params=params)
        root = _xml(body)
        objects = [ObjectEntry(_text(c, "Key"), int(_text(c, "Size", "0")),
                               _text(c, "LastModified"), _text(c, "ETag").strip('"'))
                   for c in _children(root, "Contents")]
        prefixes = [_text(p, "Prefix") for p in _children(root, "CommonPrefixes")]
        truncated = _text(root, "IsTruncated") == "true"
        return ObjectPage(objects, prefixes,
                          _text(root, "NextContinuationToken") or None if truncated else None)

    async def bucket_usage(self, creds: Credentials, bucket: str,
                           max_pages: int) -> tuple[int, int, bool]:
        """(objects, bytes, complete): counted by listing, at most `max_pages` pages of 1000."""
        count = size = 0
        token: str | None = None
        for _ in range(max_pages):
            page = await self.list_objects(creds, bucket, token=token, max_keys=1000,
                                           delimiter=None)
            count += len(page.objects)
            size += sum(o.size for o in page.objects)
            token = page.next_token
            if token is None:
                return count, size, True
        return count, size, False

    # --- objects ----------------------------------------------------------------------------

    async def head_object(self, creds: Credentials, bucket: str, key: str,
                          version_id: str | None = None) -> dict[str, str]:
        params = {"versionId": version_id} if version_id else {}
        _, headers, _ = await self.request(creds, "HEAD", bucket, key, params=params)
        return headers

    async def object_tags(self, creds: Credentials, bucket: str, key: str,
                          version_id: str | None = None) -> list[tuple[str, str]]:
        params = {"tagging": ""}
        if version_id:
            params["versionId"] = version_id
        _, _, body = await self.request(creds, "GET", bucket, key, params=params)
        tags = []
        for group in _children(_xml(body), "TagSet"):
            for tag in _children(group, "Tag"):
                tags.append((_text(tag, "Key"), _text(tag, "Value")))
        return tags

    async def key_versions(self, creds: Credentials, bucket: str, key: str,
                           limit: int = 100) -> list[VersionEntry]:
        """The versions and delete markers of exactly `key`, newest first (one page)."""
        _, _, body = await self.request(creds, "GET", bucket, params={
            "versions": "", "prefix": key, "max-keys": str(limit)})
        found = []
        for element in _xml(body):
            kind = _strip(element.tag)
            if kind not in ("Version", "DeleteMarker") or _text(element, "Key") != key:
                continue
            found.append(VersionEntry(key, _text(element, "VersionId"),
                                      _text(element, "IsLatest") == "true",
                                      _text(element, "LastModified"),
                                      int(_text(element, "Size", "0") or 0),
                                      kind == "DeleteMarker"))
        return found

    async def delete_object(self, creds: Credentials, bucket: str, key: str,
                            version_id: str | None = None) -> None:
        params = {"versionId": version_id} if version_id else {}
        await self.request(creds, "DELETE", bucket, key, params=params)

    async def create_upload(self, creds: Credentials, bucket: str, key: str,
                            content_type: str) -> str:
        headers = {"Content-Type": content_type} if content_type else {}
        _, _, body = await self.request(creds, "POST", bucket, key, params={"uploads": ""},
                                        headers=headers)
        return _text(_xml(body), "UploadId")

    async def complete_upload(self, creds: Credentials, bucket: str, key: str, upload_id: str,
                              etags: list[str]) -> str:
        parts = "".join(f"<Part><PartNumber>{n}</PartNumber><ETag>{_escape(etag)}</ETag></Part>"
                        for n, etag in enumerate(etags, start=1))
        body = f"<CompleteMultipartUpload>{parts}</CompleteMultipartUpload>".encode()
        _, _, answer = await self.request(creds, "POST", bucket, key,
                                          params={"uploadId": upload_id}, body=body)
        root = _xml(answer)
        if _strip(root.tag) == "Error":  # S3 may fail a completion inside a 200 answer
            raise S3Failure(200, _text(root, "Code"), _text(root, "Message"))
        return _text(root, "ETag").strip('"')

    async def abort_upload(self, creds: Credentials, bucket: str, key: str,
                           upload_id: str) -> None:
        await self.request(creds, "DELETE", bucket, key, params={"uploadId": upload_id})


async def gather_limited(limit: int, *calls: Any) -> list[Any]:
    """Run coroutines at most `limit` at a time; exceptions are returned, not raised."""
    semaphore = asyncio.Semaphore(limit)

    async def run(call: Any) -> Any:
        async with semaphore:
            return await call

    return await asyncio.gather(*(run(c) for c in calls), return_exceptions=True)
