"""The swift translator against a real OpenStack Swift all-in-one (tests/clouds/swift.py). What every
location type does alike is in test_conformance.py."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import random
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import unquote

import pytest
import requests
import swiftclient
from swiftclient.exceptions import ClientException

from gateway.translators import swift as swift_module
from gateway.translators.base import (
    ConfigError,
    NotFound,
    NotSupported,
    ObjectMeta,
    Part,
    PermissionDenied,
    Precondition,
    Rejected,
    Stored,
    Throttled,
    Unauthenticated,
    Unavailable,
)
from gateway.translators.swift import SwiftTranslator, translate_error
from tests.clouds.swift import SwiftCluster

pytestmark = pytest.mark.swift

MIB = 1024 * 1024


class Source:
    """An async body of `size` pseudo-random bytes (from `seed`) in `chunk`-sized pieces,
    hashed as it goes; iterating it again yields the same bytes."""

    def __init__(self, size: int, chunk: int = MIB, fail_after: int | None = None,
                 seed: int | None = None) -> None:
        self.size, self.chunk, self.fail_after = size, chunk, fail_after
        self.seed = random.randrange(1 << 30) if seed is None else seed
        self.md5 = hashlib.md5()

    async def __aiter__(self) -> AsyncIterator[bytes]:
        sent, rng = 0, random.Random(self.seed)
        self.md5 = hashlib.md5()
        while sent < self.size:
            if self.fail_after is not None and sent >= self.fail_after:
                raise ConnectionResetError("client went away")
            data = rng.randbytes(min(self.chunk, self.size - sent))
            self.md5.update(data)
            sent += len(data)
            yield data


async def body_of(data: bytes, chunk: int = 64 * 1024) -> AsyncIterator[bytes]:
    for start in range(0, len(data), chunk):
        yield data[start:start + chunk]


async def read_all(stream: AsyncIterator[bytes]) -> bytes:
    return b"".join([chunk async for chunk in stream])


async def md5_of(stream: AsyncIterator[bytes]) -> tuple[str, int]:
    digest, size = hashlib.md5(), 0
    async for chunk in stream:
        digest.update(chunk)
        size += len(chunk)
    return digest.hexdigest(), size


@pytest.fixture
def container(swift_cloud: SwiftCluster) -> str:
    return swift_cloud.make_container(f"gw-{uuid.uuid4().hex[:10]}")


@pytest.fixture
def native(swift_cloud: SwiftCluster) -> Iterator[swiftclient.Connection]:
    conn = swift_cloud.connection()
    yield conn
    conn.close()


async def opened(cluster: SwiftCluster, container: str, env: dict[str, str] | None = None,
                 **extra: Any) -> SwiftTranslator:
    translator = SwiftTranslator("swiftloc", cluster.details(container, **extra), env or {})
    await translator.open()
    return translator


@pytest.fixture
async def swift(swift_cloud: SwiftCluster, container: str) -> AsyncIterator[SwiftTranslator]:
    translator = await opened(swift_cloud, container)
    yield translator
    await translator.close()


def swift_head_missing(conn: swiftclient.Connection, container: str, name: str) -> bool:
    try:
        conn.head_object(container, name)
    except ClientException as exc:
        if exc.http_status == 404:
            return True
        raise
    return False


def segment_names(conn: swiftclient.Connection, container: str) -> list[str]:
    try:
        _, listing = conn.get_container(f"{container}_segments", full_listing=True)
    except ClientException as exc:
        if exc.http_status == 404:
            return []
        raise
    return [item["name"] for item in listing]


# ---- plain objects ------------------------------------------------------------------------


async def test_metadata_tags_and_content_headers_are_native(
        swift: SwiftTranslator, native: swiftclient.Connection, container: str) -> None:
    meta = ObjectMeta(content_type="text/csv", cache_control="max-age=60",
                      content_disposition='attachment; filename="a.csv"',
                      content_encoding="identity", content_language="fr",
                      expires="Thu, 01 Dec 2044 16:00:00 GMT",
                      user={"color": "blue", "owner-name": "ann"},
                      tags={"project": "x y", "k=v&": "ü/é"})
    stored = await swift.put("meta-obj", body_of(b"a,b\n"), 4, meta)
    headers = native.head_object(container, "meta-obj")
    assert headers["content-type"] == "text/csv"
    assert headers["cache-control"] == "max-age=60"
    assert headers["content-disposition"] == 'attachment; filename="a.csv"'
    assert headers["content-encoding"] == "identity"
    assert headers["content-language"] == "fr"
    assert headers["expires"] == "Thu, 01 Dec 2044 16:00:00 GMT"
    assert headers["x-object-meta-color"] == "blue"
    assert headers["x-object-meta-owner-name"] == "ann"
    # Tags: one item in x-amz-tagging form. python-swiftclient URL-decodes every header value
    # it reads; on the wire the value is the encoded form.
    tagging = "project=x%20y&k%3Dv%26=%C3%BC%2F%C3%A9"
    assert headers["x-object-meta-s3-tagging"] == unquote(tagging)
    raw = await asyncio.to_thread(requests.head, f"{native.url}/{container}/meta-obj",
                                  headers={"X-Auth-Token": native.token}, timeout=5)
    assert raw.headers["X-Object-Meta-S3-Tagging"] == tagging

    # update_meta replaces user metadata and tags in place.
    new = ObjectMeta(content_type="text/plain", user={"color": "red"})
    await swift.update_meta(stored, new)
    headers = native.head_object(container, "meta-obj")
    assert headers["x-object-meta-color"] == "red"
    assert "x-object-meta-owner-name" not in headers
    assert "x-object-meta-s3-tagging" not in headers
    assert headers["content-type"] == "text/plain"
    with pytest.raises(NotFound):
        await swift.update_meta(Stored("swiftloc", "missing", 1), new)


async def test_copy_is_server_side_with_fresh_metadata(
        swift: SwiftTranslator, native: swiftclient.Connection, container: str) -> None:
    data = os.urandom(2 * MIB + 3)
    src = await swift.put("src", body_of(data, MIB), len(data),
                          ObjectMeta(content_type="a/b", user={"old": "1"}))
    copied = await swift.copy(src, "dst/copy", ObjectMeta(content_type="c/d",
                                                          user={"new": "2"}, tags={"t": "1"}))
    assert copied == Stored("swiftloc", "dst/copy", len(data), etag=src.etag)
    headers, body = native.get_object(container, "dst/copy")
    assert body == data
    assert headers["content-type"] == "c/d" and headers["x-object-meta-new"] == "2"
    assert headers["x-object-meta-s3-tagging"] == "t=1"
    assert "x-object-meta-old" not in headers
    with pytest.raises(NotFound):
        await swift.copy(Stored("swiftloc", "nope", 1), "x", ObjectMeta())
    # Over the single-object limit Swift cannot copy in one go: the caller streams.
    assert await swift.copy(Stored("swiftloc", "src", 6 * 1024**3), "y", ObjectMeta()) is None


async def test_failed_bodies_leave_nothing(swift: SwiftTranslator,
                                           native: swiftclient.Connection, container: str) -> None:
    source = Source(3 * MIB, fail_after=MIB)
    with pytest.raises(ConnectionResetError):
        await swift.put("broken", source, source.size, ObjectMeta())
    started = time.monotonic()
    with pytest.raises(Exception, match="ended after"):  # shorter than declared: no hang
        await swift.put("short", body_of(b"x" * 100), 200, ObjectMeta())
    assert time.monotonic() - started < 5
    with pytest.raises(ValueError, match="longer"):
        await swift.put("long", body_of(b"x" * 300), 200, ObjectMeta())
    upload = await swift.create_upload("mp-broken", ObjectMeta())
    with pytest.raises(ConnectionResetError):
        await swift.upload_part("mp-broken", upload, 1, Source(2 * MIB, fail_after=MIB), 2 * MIB)
    _, listing = native.get_container(container)
    assert listing == []
    assert segment_names(native, container) == []
    # The pool still works after the failures.
    stored = await swift.put("fine", body_of(b"ok"), 2, ObjectMeta())
    assert await read_all(await swift.get(stored)) == b"ok"


# ---- multipart ----------------------------------------------------------------------------


async def test_multipart_100mib(swift: SwiftTranslator, native: swiftclient.Connection,
                                container: str) -> None:
    part_size, count = 10 * MIB, 10
    key = "bkt/big object"
    meta = ObjectMeta(content_type="video/mp4", user={"origin": "test"}, tags={"size": "big"})
    upload = await swift.create_upload(key, meta)
    sources: dict[int, Source] = {}
    started = time.monotonic()
    parts = []
    for number in range(1, count + 1):
        sources[number] = Source(part_size)
        parts.append(Part(number, await swift.upload_part(key, upload, number,
                                                          sources[number], part_size)))
    # Re-upload part 2: the new bytes win.
    sources[2] = Source(part_size)
    parts[1] = Part(2, await swift.upload_part(key, upload, 2, sources[2], part_size))
    assert parts[1].stored.etag == sources[2].md5.hexdigest()
    [stored] = await swift.complete_upload(key, upload, parts, meta)
    upload_seconds = time.monotonic() - started
    assert stored.key == key and stored.size == part_size * count

    started = time.monotonic()
    digest, size = await md5_of(await swift.get(stored))
    download_seconds = time.monotonic() - started
    expected = hashlib.md5()
    for number in range(1, count + 1):  # regenerate the final parts' bytes in order
        async for chunk in sources[number]:
            expected.update(chunk)
    assert (digest, size) == (expected.hexdigest(), part_size * count)
    # Compare per part: ranged reads of each part match what was uploaded.
    across = await read_all(await swift.get(stored, part_size - 100, 200))
    assert len(across) == 200
    first_tail = await read_all(await swift.get(stored, part_size - 100, 100))
    second_head = await read_all(await swift.get(stored, part_size, 100))
    assert across == first_tail + second_head
    for number in (1, 2, count):
        got, _ = await md5_of(await swift.get(stored, (number - 1) * part_size, part_size))
        assert got == sources[number].md5.hexdigest()

    # Natively: a Static Large Object with our metadata, its segments in <container>_segments.
    headers = native.head_object(container, key)
    assert headers["x-static-large-object"].lower() == "true"
    assert headers["content-length"] == str(part_size * count)
    assert headers["content-type"] == "video/mp4"
    assert headers["x-object-meta-origin"] == "test"
    assert headers["x-object-meta-s3-tagging"] == "size=big"
    segments = segment_names(native, container)
    assert len(segments) == count  # the replaced part 2 left nothing behind
    assert all(name.startswith(f"{key}/{upload}/") for name in segments)
    _, manifest = native.get_object(container, key, query_string="multipart-manifest=get")
    assert [entry["hash"] for entry in json.loads(manifest)] == [
        sources[n].md5.hexdigest() for n in range(1, count + 1)]

    await swift.delete(stored)
    assert segment_names(native, container) == []
    print(f"\nswift 100 MiB multipart: upload {upload_seconds:.2f}s "
          f"({100 / upload_seconds:.0f} MiB/s), download {download_seconds:.2f}s "
          f"({100 / download_seconds:.0f} MiB/s)")


async def test_multipart_empty_parts(swift: SwiftTranslator) -> None:
    upload = await swift.create_upload("tail", ObjectMeta())
    parts = [Part(1, await swift.upload_part("tail", upload, 1, body_of(b"abc"), 3)),
             Part(2, await swift.upload_part("tail", upload, 2, body_of(b""), 0))]
    [stored] = await swift.complete_upload("tail", upload, parts, ObjectMeta())
    assert stored.size == 3 and await read_all(await swift.get(stored)) == b"abc"
    upload = await swift.create_upload("nothing", ObjectMeta())
    part = Part(1, await swift.upload_part("nothing", upload, 1, body_of(b""), 0))
    [stored] = await swift.complete_upload("nothing", upload, [part], ObjectMeta())
    assert stored.size == 0 and await read_all(await swift.get(stored)) == b""


async def test_nested_manifest_beyond_max_segments(swift: SwiftTranslator,
                                                   native: swiftclient.Connection,
                                                   container: str) -> None:
    swift._capabilities = {"slo": {"max_manifest_segments": 2}}  # as a cluster may set it
    upload = await swift.create_upload("nested", ObjectMeta())
    parts = [Part(n, await swift.upload_part("nested", upload, n, body_of(bytes([96 + n]) * 5), 5))
             for n in range(1, 6)]
    [stored] = await swift.complete_upload("nested", upload, parts, ObjectMeta())
    assert await read_all(await swift.get(stored)) == b"aaaaabbbbbcccccdddddeeeee"
    assert await read_all(await swift.get(stored, 8, 10)) == b"bbcccccddd"
    _, manifest = native.get_object(container, "nested", query_string="multipart-manifest=get")
    assert len(json.loads(manifest)) == 3  # sub-manifests of 2, 2 and 1 segments
    assert len(segment_names(native, container)) == 5 + 3
    await swift.delete(stored)
    assert segment_names(native, container) == []


async def test_copy_part_is_a_ranged_server_side_copy(swift: SwiftTranslator) -> None:
    data = os.urandom(1000)
    src = await swift.put("copy-src", body_of(data), len(data), ObjectMeta())
    upload = await swift.create_upload("assembled", ObjectMeta())
    part1 = await swift.copy_part(src, 100, 400, "assembled", upload, 1)
    assert part1 is not None and part1.size == 400
    part2 = await swift.upload_part("assembled", upload, 2, body_of(b"tail"), 4)
    [stored] = await swift.complete_upload("assembled", upload, [Part(1, part1), Part(2, part2)],
                                           ObjectMeta())
    assert await read_all(await swift.get(stored)) == data[100:500] + b"tail"


async def test_large_single_put_becomes_slo_and_delete_drops_segments(
        swift_cloud: SwiftCluster, native: swiftclient.Connection, container: str) -> None:
    swift = await opened(swift_cloud, container, largeObjectThreshold=3 * MIB,
                         segmentSize=MIB)
    try:
        source = Source(3 * MIB + 5, chunk=700 * 1024)
        stored = await swift.put("large", source, source.size, ObjectMeta(user={"a": "b"}))
        headers = native.head_object(container, "large")
        assert headers["x-static-large-object"].lower() == "true"
        assert headers["x-object-meta-a"] == "b"
        assert (await md5_of(await swift.get(stored))) == (source.md5.hexdigest(), source.size)
        assert len(segment_names(native, container)) == 4
        # Another write of the S3 key has a key of its own: the SLO stays whole meanwhile.
        other = await swift.put(f"large~{'1' * 24}", body_of(b"small"), 5, ObjectMeta())
        assert len(segment_names(native, container)) == 4
        assert (await md5_of(await swift.get(stored))) == (source.md5.hexdigest(), source.size)
        # Deleting it (unpinned, as the collector does) removes the manifest and its segments.
        await swift.delete(Stored("swiftloc", "large", 0))
        assert segment_names(native, container) == []
        assert swift_head_missing(native, container, "large")
        assert await read_all(await swift.get(other)) == b"small"
        # A failing large body leaves no segment behind.
        with pytest.raises(ConnectionResetError):
            await swift.put("large2", Source(4 * MIB, fail_after=2 * MIB), 4 * MIB, ObjectMeta())
        assert segment_names(native, container) == []
    finally:
        await swift.close()


# ---- configuration and health -------------------------------------------------------------


@pytest.mark.parametrize(("change", "key"), [
    ({"authUrl": None}, "authUrl"),
    ({"authUrl": "ftp://x"}, "authUrl"),
    ({"authVersion": 2}, "authVersion"),
    ({"user": None}, "user"),
    ({"key": None}, "key"),
    ({"containerName": None}, "containerName"),
    ({"containerName": "a/b"}, "containerName"),
    ({"bucketMatch": "yes"}, "bucketMatch"),
    ({"storagePolicy": 3}, "storagePolicy"),
    ({"maxConnections": 0}, "maxConnections"),
    ({"largeObjectThreshold": "big"}, "largeObjectThreshold"),
    ({"authVersion": 3, "projectName": "p"}, "authVersion"),  # no python-keystoneclient here
])
def test_config_errors_name_the_key(change: dict[str, Any], key: str) -> None:
    details: dict[str, Any] = {"authUrl": "http://127.0.0.1:1/auth/v1.0", "user": "u",
                               "key": "k", "containerName": "c"}
    details.update(change)
    details = {k: v for k, v in details.items() if v is not None}
    with pytest.raises(ConfigError) as err:
        SwiftTranslator("loc", details, {})
    assert err.value.key == key


async def test_check_and_key_from_env(swift_cloud: SwiftCluster, container: str) -> None:
    details = swift_cloud.details(container)
    del details["key"]
    good = SwiftTranslator("envloc", details, {"envloc_SWIFT_KEY": "testing"})
    bad = SwiftTranslator("envloc", swift_cloud.details(container),
                          {"envloc_SWIFT_KEY": "wrong-secret"})  # env wins over details
    missing = SwiftTranslator("envloc", swift_cloud.details("no-such-container"), {})
    for translator in (good, bad, missing):
        await translator.open()
    try:
        assert (await good.check()).ok
        health = await bad.check()
        assert not health.ok and "wrong-secret" not in health.message
        assert "auth" in health.message.lower()
        health = await missing.check()
        assert not health.ok and "no-such-container" in health.message
    finally:
        for translator in (good, bad, missing):
            await translator.close()


async def test_storage_policy_applies_to_segments_container(
        swift_cloud: SwiftCluster, native: swiftclient.Connection) -> None:
    container = swift_cloud.make_container(f"pol-{uuid.uuid4().hex[:8]}")
    swift = await opened(swift_cloud, container, storagePolicy="Policy-0")
    unknown = await opened(swift_cloud, swift_cloud.make_container(f"pol-{uuid.uuid4().hex[:8]}"),
                           storagePolicy="no-such-policy")
    try:
        await swift.create_upload("k", ObjectMeta())
        assert native.head_container(f"{container}_segments")["x-storage-policy"] == "Policy-0"
        with pytest.raises(ClientException, match="Storage-Policy"):
            await unknown.create_upload("k", ObjectMeta())
    finally:
        await swift.close()
        await unknown.close()


async def test_token_expiry_then_cloud_stopped(swift_factory: Any,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    cluster: SwiftCluster = swift_factory(token_life=3)
    container = cluster.make_container("short")
    monkeypatch.setattr(swift_module, "TOKEN_PROBE_AFTER", 1.0)
    swift = await opened(cluster, container)
    try:
        stored = await swift.put("k", body_of(b"first"), 5, ObjectMeta())
        upload = await swift.create_upload("mp", ObjectMeta())
        token = swift._token
        await asyncio.sleep(3.5)  # the token expires; swiftclient re-authenticates on the 401
        assert (await swift.head(stored)).size == 5
        await asyncio.sleep(3.5)  # expired again: a streamed part cannot replay its body, so
        part = await swift.upload_part("mp", upload, 1, body_of(b"second"), 6)  # probe first
        [done] = await swift.complete_upload("mp", upload, [Part(1, part)], ObjectMeta())
        assert await read_all(await swift.get(done)) == b"second"
        assert swift._token != token

        cluster.stop()
        for call in (lambda: swift.head(stored), lambda: swift.get(stored),
                     lambda: swift.put("k2", body_of(b"x"), 1, ObjectMeta())):
            started = time.monotonic()
            with pytest.raises(Exception) as err:
                await call()
            assert not isinstance(err.value, NotFound)
            assert time.monotonic() - started < 10
        health = await swift.check()
        assert not health.ok
    finally:
        await swift.close()


# ---- the unique-key contract: unpinned deletes, pieces, retried parts, aborts, errors ------


async def complete_slo(swift: SwiftTranslator, key: str, *bodies: bytes) -> Stored:
    upload = await swift.create_upload(key, ObjectMeta())
    parts = [Part(n, await swift.upload_part(key, upload, n, body_of(data), len(data)))
             for n, data in enumerate(bodies, 1)]
    [stored] = await swift.complete_upload(key, upload, parts, ObjectMeta())
    return stored


async def test_delete_without_pin_removes_the_object_and_its_segments(
        swift: SwiftTranslator, native: swiftclient.Connection, container: str) -> None:
    key = f"bkt/obj~{'1' * 24}"
    plain = await swift.put(key, body_of(b"plain"), 5, ObjectMeta())
    await swift.delete(Stored("swiftloc", plain.key, 0))  # no etag: the key goes
    assert swift_head_missing(native, container, key)

    slo = await complete_slo(swift, key, b"a" * 10, b"b" * 10)
    longer = await complete_slo(swift, f"{key}/more~{'2' * 24}", b"c" * 10)  # shares the prefix
    assert len(segment_names(native, container)) == 3
    await swift.delete(Stored("swiftloc", slo.key, 0))
    await swift.delete(Stored("swiftloc", slo.key, 0))  # already gone is success
    assert swift_head_missing(native, container, key)
    remaining = segment_names(native, container)
    assert len(remaining) == 1 and remaining[0].startswith(f"{longer.key}/")
    assert await read_all(await swift.get(longer)) == b"c" * 10


async def test_list_pieces_finds_puts_copies_and_staged_parts(
        swift: SwiftTranslator, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(swift_module, "LIST_PAGE", 2)  # several pages, fetched as consumed
    outside = await swift.put("pieces", body_of(b"o"), 1, ObjectMeta())  # before the prefix
    put = await swift.put("pieces/a~1", body_of(b"put"), 3, ObjectMeta())
    copied = await swift.copy(put, "pieces/b~2", ObjectMeta())
    assert copied is not None
    slo = await complete_slo(swift, "pieces/c~3", b"x" * 10, b"y" * 3)
    upload = await swift.create_upload("pieces/d~4", ObjectMeta())
    staged = await swift.upload_part("pieces/d~4", upload, 1, body_of(b"part"), 4)

    listed = [piece async for piece in swift.list_pieces("pieces/")]
    keys = [p.key for p in listed]
    # The container's objects, then the segments container's, each in name order.
    assert keys[:3] == [put.key, copied.key, slo.key] and len(keys) == 3 + 2 + 1
    segments = [p for p in listed if p.key.startswith("pieces/c~3/")]
    assert sorted(p.size for p in segments) == [3, 10]  # the SLO's segments, by their own names
    assert [(p.key, p.size, p.etag) for p in listed if p.key.startswith("pieces/d~4/")] == [
        (staged.key, 4, hashlib.md5(b"part").hexdigest())]  # the open upload's staged part
    assert outside.key not in keys
    # fsck: an SLO and its segments, an open upload and its parts, are one piece each.
    assert {swift.piece_id(p) for p in listed} == {
        swift.piece_id(s) for s in (put, copied, slo, staged)}
    assert swift.piece_id(segments[0]) == swift.piece_id(slo) == slo.key
    # A listed segment can be deleted as listed (what fsck may hand the collector).
    await swift.delete(segments[0])
    assert len([p async for p in swift.list_pieces("pieces/c~3/")]) == 1
    assert outside.key in [p.key async for p in swift.list_pieces()]


async def test_backend_4xx_raises_rejected(swift: SwiftTranslator,
                                           native: swiftclient.Connection,
                                           container: str) -> None:
    # Swift refuses metadata values over 256 bytes with a 400: the request's problem.
    with pytest.raises(Rejected, match="400"):
        await swift.put("too-much-meta", body_of(b"x"), 1, ObjectMeta(user={"v": "x" * 300}))
    assert swift_head_missing(native, container, "too-much-meta")
    stored = await swift.put("fine", body_of(b"ok"), 2, ObjectMeta(user={"v": "x" * 200}))
    with pytest.raises(Rejected):
        await swift.update_meta(stored, ObjectMeta(user={"v": "y" * 300}))
    with pytest.raises(Rejected):  # over Swift's name limit: refused before asking
        await swift.put("n" * 1100, body_of(b"x"), 1, ObjectMeta())
    assert await read_all(await swift.get(stored)) == b"ok"
    assert (await swift.check()).ok  # nothing of this is an outage


@pytest.mark.parametrize(("status", "expected"), [
    (400, Rejected), (408, Rejected), (411, Rejected), (413, Rejected), (422, Rejected),
    (429, Throttled), (498, Throttled), (409, Precondition), (412, Precondition),
    (401, Unauthenticated), (403, PermissionDenied), (501, NotSupported),
    (404, None),  # left to the callers, which know what is missing
    (500, Unavailable), (503, Unavailable), (507, Unavailable),
])
def test_error_mapping(status: int, expected: Any) -> None:
    mapped = translate_error(ClientException("answer", http_status=status, http_reason="x"))
    if expected is None:
        assert mapped is None
    else:
        assert type(mapped) is expected
    assert translate_error(ConnectionResetError()) is None
