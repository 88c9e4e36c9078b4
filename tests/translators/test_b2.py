"""The b2 translator against b2sdk's RawSimulator (tests/clouds/b2.py), no mocks. What every
location type does alike is in test_conformance.py."""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from b2sdk.v2.exception import (
    AccessDenied,
    B2ConnectionError,
    BadRequest,
    ServiceError,
    TooManyRequests,
    Unauthorized,
    UnknownError,
)
from b2sdk.v2.exception import Conflict as B2Conflict

from gateway.translators import b2 as b2_module
from gateway.translators.b2 import (
    B2Translator,
    file_info_from_meta,
    meta_from_file_info,
    translate_error,
)
from gateway.translators.base import (
    ConfigError,
    NotFound,
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
from tests.clouds.b2 import B2Cloud, b2_raw_api
from tests.gatewayproc import free_port

pytestmark = pytest.mark.b2

MiB = 1024 * 1024


def pattern_chunks(total: int, seed: int = 0, chunk: int = MiB) -> list[tuple[int, int]]:
    return [(offset, min(chunk, total - offset)) for offset in range(0, total, chunk)]


def make_chunk(offset: int, length: int, seed: int) -> bytes:
    # Every MiB differs (offset and seed in front), so a misplaced part shows.
    head = f"{seed}:{offset}:".encode()
    return (head + bytes(range(256)) * (length // 256 + 1))[:length]


async def pattern(total: int, seed: int = 0) -> AsyncIterator[bytes]:
    for offset, length in pattern_chunks(total, seed):
        yield make_chunk(offset, length, seed)


def pattern_bytes(total: int, seed: int = 0) -> bytes:
    return b"".join(make_chunk(o, n, seed) for o, n in pattern_chunks(total, seed))


async def body_of(data: bytes, chunk: int = 64 * 1024) -> AsyncIterator[bytes]:
    for start in range(0, len(data), chunk):
        yield data[start:start + chunk]


async def read_all(stream: AsyncIterator[bytes]) -> bytes:
    return b"".join([chunk async for chunk in stream])


async def md5_of(stream: AsyncIterator[bytes]) -> str:
    digest = hashlib.md5()
    async for chunk in stream:
        digest.update(chunk)
    return digest.hexdigest()


@pytest.fixture
async def b2(b2_cloud: B2Cloud) -> AsyncIterator[B2Translator]:
    translator = B2Translator("b2loc", b2_cloud.details(threads=4), {})
    await translator.open()
    yield translator
    await translator.close()


def versions_of(cloud: B2Cloud, name: str) -> list[str]:
    return [v.id_ for v in cloud.bucket().list_file_versions(name)]


def unfinished(cloud: B2Cloud, name: str) -> list[str]:
    return [f.file_id for f in cloud.bucket().list_unfinished_large_files() if f.file_name == name]


def raw_versions(cloud: B2Cloud, prefix: str) -> list[tuple[str, str, str]]:
    """(name, file id, action) of every version under `prefix` (uploads, hide markers and
    unfinished large files alike), as B2's b2_list_file_versions answers."""
    api = cloud.api()
    bucket_id = api.get_bucket_by_name(cloud.bucket_name).id_
    page = api.session.list_file_versions(bucket_id, start_file_name=prefix, max_file_count=1000,
                                          prefix=prefix)
    assert page["nextFileName"] is None  # the tests stay well under one page
    return [(f["fileName"], f["fileId"], f["action"]) for f in page["files"]]


async def test_put_get_head_delete(b2: B2Translator, b2_cloud: B2Cloud) -> None:
    data = b"hello, backblaze " * 1000
    meta = ObjectMeta(content_type="text/plain", cache_control="max-age=60",
                      user={"color": "blue", "Owner": "me"}, tags={"team": "a b", "x": "1&2"})
    stored = await b2.put("bkt/dir/hello.txt", body_of(data), len(data), meta)
    assert stored.key == "bkt/dir/hello.txt" and stored.size == len(data)
    assert stored.etag == hashlib.sha1(data).hexdigest() and stored.version_id

    assert await read_all(await b2.get(stored)) == data
    assert await read_all(await b2.get(stored, 5, 20)) == data[5:25]
    assert await read_all(await b2.get(stored, len(data) - 7)) == data[-7:]
    assert await read_all(await b2.get(stored, 3, 0)) == b""
    head = await b2.head(stored)
    assert (head.size, head.etag, head.version_id) == (len(data), stored.etag, stored.version_id)

    # Natively: an ordinary B2 file under the key, metadata as B2 file info.
    version = b2_cloud.api().get_file_info(stored.version_id)
    assert version.file_name == "bkt/dir/hello.txt" and version.content_type == "text/plain"
    assert version.file_info["color"] == "blue" and version.file_info["owner"] == "me"
    assert version.file_info["b2-cache-control"] == "max-age=60"
    assert version.file_info["s3-tagging"] == "team=a+b&x=1%262"
    back = meta_from_file_info(version.content_type, version.file_info)
    assert back.tags == meta.tags and back.user == {"color": "blue", "owner": "me"}

    await b2.delete(stored)
    await b2.delete(stored)  # already gone is success
    assert versions_of(b2_cloud, stored.key) == []
    with pytest.raises(NotFound):
        await b2.get(stored)
    with pytest.raises(NotFound):
        await b2.head(stored)


def test_file_info_limits() -> None:
    user = {f"k{i}": str(i) for i in range(12)} | {"bad.name": "x", "b2-evil": "y"}
    meta = ObjectMeta(content_disposition="attachment", expires="never", user=user,
                      tags={"t": "1"})
    content_type, info = file_info_from_meta(meta)
    assert content_type == "application/octet-stream"
    assert len(info) == 10  # B2's limit on file info entries
    assert info["b2-content-disposition"] == "attachment" and info["b2-expires"] == "never"
    back = meta_from_file_info(content_type, info)
    assert back.user == user and back.tags == {"t": "1"}  # nothing lost to the limit
    assert back.content_disposition == "attachment"


async def test_large_put_streams_parts(b2: B2Translator, b2_cloud: B2Cloud) -> None:
    # Over B2's simple-upload limit a put becomes a large file; lower the limit to see it.
    b2.max_simple_upload = 6 * MiB
    size = 12 * MiB + 5
    stored = await b2.put("big-put", pattern(size, 1), size, ObjectMeta(user={"a": "b"}))
    assert stored.size == size and stored.etag is None  # large files have no whole SHA1
    expected = pattern_bytes(size, 1)
    assert await md5_of(await b2.get(stored)) == hashlib.md5(expected).hexdigest()
    boundary = 5 * MiB  # the simulator's part size
    assert await read_all(await b2.get(stored, boundary - 10, 20)) == expected[boundary - 10:boundary + 10]
    assert b2_cloud.api().get_file_info(stored.version_id).file_info["a"] == "b"
    await b2.delete(stored)


async def test_multipart_100mib(b2: B2Translator, b2_cloud: B2Cloud) -> None:
    part_size, count = 10 * MiB, 10
    meta = ObjectMeta(content_type="application/x-test", user={"m": "1"}, tags={"t": "2"})
    upload_id = await b2.create_upload("mp/100mib", meta)
    started = time.monotonic()
    parts = []
    for number in range(1, count + 1):
        stored = await b2.upload_part("mp/100mib", upload_id, number,
                                      pattern(part_size, seed=number), part_size)
        assert stored.etag == hashlib.sha1(pattern_bytes(part_size, number)).hexdigest()
        parts.append(Part(number, stored))
    # Re-uploading a part replaces it.
    replaced = await b2.upload_part("mp/100mib", upload_id, 2, pattern(part_size, seed=99),
                                    part_size)
    parts[1] = Part(2, replaced)
    assert unfinished(b2_cloud, "mp/100mib") == [upload_id]
    pieces = await b2.complete_upload("mp/100mib", upload_id, parts, meta)
    elapsed = time.monotonic() - started
    assert len(pieces) == 1 and pieces[0].size == part_size * count
    final = pieces[0]
    seeds = [1, 99, *range(3, count + 1)]
    expected = hashlib.md5()
    for seed in seeds:
        expected.update(pattern_bytes(part_size, seed))
    assert await md5_of(await b2.get(final)) == expected.hexdigest()
    # A range across the boundary of parts 2 and 3.
    tail_of_2 = pattern_bytes(part_size, 99)[-100:]
    head_of_3 = pattern_bytes(part_size, 3)[:100]
    assert await read_all(await b2.get(final, 2 * part_size - 100, 200)) == tail_of_2 + head_of_3
    version = b2_cloud.api().get_file_info(final.version_id)
    assert version.content_type == "application/x-test" and version.file_info["m"] == "1"
    assert unfinished(b2_cloud, "mp/100mib") == []
    print(f"100 MiB multipart upload + complete: {elapsed:.2f}s")
    await b2.delete(final)
    assert versions_of(b2_cloud, "mp/100mib") == []


async def test_gapped_part_numbers_conflict_and_abort(b2: B2Translator, b2_cloud: B2Cloud) -> None:
    key = "mp/gaps"
    upload_id = await b2.create_upload(key, ObjectMeta())
    one = await b2.upload_part(key, upload_id, 1, pattern(5 * MiB), 5 * MiB)
    three = await b2.upload_part(key, upload_id, 3, body_of(b"x"), 1)
    with pytest.raises(Precondition):
        await b2.complete_upload(key, upload_id, [Part(1, one), Part(3, three)], ObjectMeta())
    await b2.abort_upload(key, upload_id, [Part(1, one), Part(3, three)])
    assert unfinished(b2_cloud, key) == []
    await b2.abort_upload(key, upload_id, [])  # idempotent
    with pytest.raises(NotFound):
        await b2.upload_part(key, upload_id, 2, body_of(b"late"), 4)
    assert versions_of(b2_cloud, key) == []


async def test_copy_server_side(b2: B2Translator, b2_cloud: B2Cloud) -> None:
    small = await b2.put("copy/src-small", body_of(b"tiny"), 4, ObjectMeta(user={"a": "1"}))
    size = 6 * MiB + 3  # over the simulator's simple-copy limit: the part-copy path
    big = await b2.put("copy/src-big", pattern(size, 7), size, ObjectMeta())
    for src, expected in ((small, b"tiny"), (big, pattern_bytes(size, 7))):
        dst = await b2.copy(src, src.key + "-copy", ObjectMeta(content_type="x/y", user={"b": "2"}))
        assert dst is not None and dst.size == len(expected) and dst.version_id != src.version_id
        assert await read_all(await b2.get(dst)) == expected
        version = b2_cloud.api().get_file_info(dst.version_id)
        assert version.file_name == src.key + "-copy" and version.content_type == "x/y"
        assert version.file_info.get("b") == "2" and "a" not in version.file_info
        await b2.delete(dst)
        assert versions_of(b2_cloud, dst.key) == []
    elsewhere = small.__class__(location="other", key="k", size=1, version_id="1")
    assert await b2.copy(elsewhere, "k2", ObjectMeta()) is None  # another location: streamed
    await b2.delete(small)
    with pytest.raises(NotFound):
        await b2.copy(small, "copy/ghost", ObjectMeta())
    await b2.delete(big)


async def test_copy_part_and_update_meta(b2: B2Translator, b2_cloud: B2Cloud) -> None:
    src = await b2.put("cp/src", pattern(7 * MiB, 3), 7 * MiB, ObjectMeta())
    upload_id = await b2.create_upload("cp/dst", ObjectMeta())
    first = await b2.copy_part(src, MiB, 5 * MiB, "cp/dst", upload_id, 1)
    assert first is not None and first.size == 5 * MiB
    second = await b2.upload_part("cp/dst", upload_id, 2, body_of(b"end"), 3)
    final = (await b2.complete_upload("cp/dst", upload_id, [Part(1, first), Part(2, second)],
                                      ObjectMeta()))[0]
    assert await read_all(await b2.get(final)) == pattern_bytes(7 * MiB, 3)[MiB:6 * MiB] + b"end"

    updated = await b2.update_meta(src, ObjectMeta(tags={"new": "tag"}))
    assert updated.version_id != src.version_id and updated.size == src.size
    assert updated.key == src.key
    assert b2_cloud.api().get_file_info(updated.version_id).file_info["s3-tagging"] == "new=tag"
    # The old version stays readable until the caller drops it (a reader may still hold it).
    assert await read_all(await b2.get(src, 0, 10)) == pattern_bytes(7 * MiB, 3)[:10]
    await b2.delete(src)
    assert versions_of(b2_cloud, "cp/src") == [updated.version_id]
    await b2.delete(updated)
    await b2.delete(final)


class BodyBroke(Exception):
    pass


async def broken_body(good: int) -> AsyncIterator[bytes]:
    yield b"x" * good
    raise BodyBroke("client went away")


async def short_body(size: int) -> AsyncIterator[bytes]:
    yield b"y" * size


def test_config_validation() -> None:
    good = {"bucketName": "b", "applicationKeyId": "id", "applicationKey": "secret"}
    cases = [
        ({k: v for k, v in good.items() if k != "bucketName"}, "bucketName"),
        ({k: v for k, v in good.items() if k != "applicationKeyId"}, "applicationKeyId"),
        ({**good, "applicationKey": ""}, "applicationKey"),
        ({**good, "realm": "nowhere"}, "realm"),
        ({**good, "threads": 0}, "threads"),
        ({**good, "threads": "8"}, "threads"),
        ({**good, "bucketMatch": "yes"}, "bucketMatch"),
    ]
    for details, key in cases:
        with pytest.raises(ConfigError) as info:
            B2Translator("loc", details, {})
        assert info.value.key == key, details
    translator = B2Translator("loc", {**good, "realm": "https://api.example.test",
                                      "threads": 3, "bucketMatch": True}, {})
    assert (translator.realm, translator.threads, translator.bucket_match) == (
        "https://api.example.test", 3, True)


async def test_env_overrides_and_check(b2_cloud: B2Cloud) -> None:
    env = {"envloc_B2_APPLICATION_KEY_ID": b2_cloud.key_id,
           "envloc_B2_APPLICATION_KEY": b2_cloud.key}
    details = {"bucketName": b2_cloud.bucket_name, "applicationKeyId": "wrong",
               "applicationKey": "wrong-secret"}
    translator = B2Translator("envloc", details, env)
    await translator.open()
    health = await translator.check()
    assert health.ok, health.message
    await translator.close()

    wrong = B2Translator("wrongloc", details, {})
    await wrong.open()
    health = await wrong.check()
    assert not health.ok and "wrong-secret" not in health.message
    await wrong.close()

    missing = B2Translator("missing", b2_cloud.details(bucketName="no-such-bucket"), {})
    await missing.open()
    health = await missing.check()
    assert not health.ok and "no-such-bucket" in health.message
    await missing.close()


async def test_unreachable_real_b2_fails_fast() -> None:
    # The real HTTP code path (no simulator): no 20 retries with backoff, an answer at once.
    with b2_raw_api(None):
        translator = B2Translator("dead", {"bucketName": "b", "applicationKeyId": "id",
                                           "applicationKey": "k",
                                           "realm": f"http://127.0.0.1:{free_port()}"}, {})
        await translator.open()
    started = time.monotonic()
    health = await translator.check()
    assert not health.ok and "B2ConnectionError" in health.message
    with pytest.raises(B2ConnectionError):
        await translator.put("k", body_of(b"abc"), 3, ObjectMeta())
    assert time.monotonic() - started < 10
    await translator.close()


async def test_stopped_mid_test(b2_throwaway: B2Cloud) -> None:
    translator = B2Translator("throwaway", b2_throwaway.details(), {})
    await translator.open()
    stored = await translator.put("obj", pattern(4 * MiB), 4 * MiB, ObjectMeta())
    stream = await translator.get(stored)
    first = await anext(stream)
    assert len(first) == MiB
    started = time.monotonic()
    with b2_throwaway.stopped():
        with pytest.raises(B2ConnectionError):
            await read_all(stream)  # mid-download
        with pytest.raises(B2ConnectionError):
            await translator.put("obj2", body_of(b"abc"), 3, ObjectMeta())
        with pytest.raises(B2ConnectionError):
            await translator.head(stored)
        assert not (await translator.check()).ok
    assert time.monotonic() - started < 5
    assert (await translator.check()).ok  # back once the cloud is
    assert await md5_of(await translator.get(stored)) == hashlib.md5(pattern_bytes(4 * MiB)).hexdigest()
    await translator.close()


async def test_event_loop_stays_responsive(b2: B2Translator, b2_cloud: B2Cloud) -> None:
    """b2sdk is synchronous: with its calls in the pool, the loop keeps ticking during
    concurrent transfers, each B2 call taking 250 ms as over a slow network."""
    size = 16 * MiB
    sources = [await b2.put(f"lag/src{i}", pattern(size, i), size, ObjectMeta())
               for i in range(3)]
    lags: list[float] = []
    done = asyncio.Event()

    async def ticker() -> None:
        while not done.is_set():
            before = time.monotonic()
            await asyncio.sleep(0.01)
            lags.append(time.monotonic() - before - 0.01)

    async def upload(i: int) -> None:
        stored = await b2.put(f"lag/up{i}", pattern(size, 10 + i), size, ObjectMeta())
        await b2.delete(stored)

    expected = [hashlib.md5(pattern_bytes(size, i)).hexdigest() for i in range(3)]

    async def download(i: int) -> None:
        assert await md5_of(await b2.get(sources[i])) == expected[i]

    tick = asyncio.create_task(ticker())
    started = time.monotonic()
    b2_cloud.simulator.latency = 0.25
    try:
        await asyncio.gather(*(upload(i) for i in range(3)), *(download(i) for i in range(3)))
    finally:
        b2_cloud.simulator.latency = 0.0
    elapsed = time.monotonic() - started
    done.set()
    await tick
    print(f"6 x 16 MiB concurrent transfers in {elapsed:.2f}s, max loop lag "
          f"{max(lags) * 1000:.0f} ms over {len(lags)} ticks, "
          f"top {sorted(round(lag * 1000) for lag in lags)[-5:]}")
    assert len(lags) > 20
    assert max(lags) < 0.2  # a single B2 call on the loop would stall it for 250 ms
    assert elapsed < 6 * 2 * 0.25  # the six transfers (2 calls each) overlapped
    for src in sources:
        await b2.delete(src)


# ---- the unique-key contract: unpinned deletes, pieces, retried parts, aborts, errors


async def test_delete_without_pin_removes_every_version_of_the_name(
        b2: B2Translator, b2_cloud: B2Cloud) -> None:
    base = f"unpinned-{uuid.uuid4().hex[:8]}/obj"
    key = f"{base}~{'1' * 24}"
    await b2.put(key, body_of(b"one"), 3, ObjectMeta())
    await b2.put(key, body_of(b"two"), 3, ObjectMeta())
    b2_cloud.bucket().hide_file(key)
    upload_id = await b2.create_upload(key, ObjectMeta())  # an unfinished large file too
    await b2.upload_part(key, upload_id, 1, body_of(b"p"), 1)
    # Names around it that share its prefix: not its versions.
    longer = await b2.put(f"{key}/x", body_of(b"x"), 1, ObjectMeta())
    sibling = await b2.put(f"{base}~{'2' * 24}", body_of(b"s"), 1, ObjectMeta())
    assert sorted(a for n, _, a in raw_versions(b2_cloud, key) if n == key) == [
        "hide", "start", "upload", "upload"]

    await b2.delete(Stored("b2loc", key, 0))  # no file id: what a never-committed write leaves
    assert [n for n, _, _ in raw_versions(b2_cloud, key) if n == key] == []
    assert unfinished(b2_cloud, key) == []
    await b2.delete(Stored("b2loc", key, 0))  # already gone is success
    assert await read_all(await b2.get(longer)) == b"x"
    assert await read_all(await b2.get(sibling)) == b"s"
    await b2.delete(longer)
    await b2.delete(sibling)


async def test_list_pieces_finds_puts_copies_and_staged_parts(
        b2: B2Translator, b2_cloud: B2Cloud, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(b2_module, "LIST_PAGE", 2)  # several pages, fetched as consumed
    prefix = f"pieces-{uuid.uuid4().hex[:8]}/"
    outside = [await b2.put(prefix[:-1] + name, body_of(b"o"), 1, ObjectMeta())
               for name in ("", "0/after", "-/before")]  # around the prefix in B2's order
    put = await b2.put(f"{prefix}a~1", body_of(b"put"), 3, ObjectMeta())
    copied = await b2.copy(put, f"{prefix}b~2", ObjectMeta())
    assert copied is not None
    old = await b2.put(f"{prefix}c~3", body_of(b"v1"), 2, ObjectMeta())
    new = await b2.update_meta(old, ObjectMeta(user={"k": "v"}))  # same name, a new version
    await b2.delete(old)  # what the caller does once its record names the new one
    upload_id = await b2.create_upload(f"{prefix}d~4", ObjectMeta())
    part = await b2.upload_part(f"{prefix}d~4", upload_id, 1, body_of(b"part"), 4)

    listed = [piece async for piece in b2.list_pieces(prefix)]
    assert {(p.key, p.version_id, p.size) for p in listed} == {
        (put.key, put.version_id, 3), (copied.key, copied.version_id, 3),
        (new.key, new.version_id, 2), (f"{prefix}d~4", upload_id, 0)}
    assert all(p.location == "b2loc" for p in listed)
    # fsck matches what metadata references (objects, open uploads' parts) by piece_id.
    ids = {b2.piece_id(p) for p in listed}
    assert {b2.piece_id(s) for s in (put, copied, new, part)} == ids
    assert b2.piece_id(old) not in ids  # the old version, deleted by its file id

    everything = [piece.key async for piece in b2.list_pieces()]
    assert put.key in everything and outside[0].key in everything
    await b2.abort_upload(f"{prefix}d~4", upload_id, [Part(1, part)])
    for stored in (put, copied, new, *outside):
        await b2.delete(stored)
    assert [piece async for piece in b2.list_pieces(prefix)] == []


async def test_retried_part_and_complete(b2: B2Translator, b2_cloud: B2Cloud) -> None:
    """B2 keeps one part per number, so a retry replaces it on B2; completion pins the parts by
    SHA1, so it assembles exactly the recorded bytes or refuses (Precondition), never others."""
    key = f"retry-{uuid.uuid4().hex[:8]}~{'a' * 24}"
    upload_id = await b2.create_upload(key, ObjectMeta())
    first = await b2.upload_part(key, upload_id, 1, pattern(5 * MiB, 1), 5 * MiB)
    retried = await b2.upload_part(key, upload_id, 1, pattern(5 * MiB, 2), 5 * MiB)
    tail = await b2.upload_part(key, upload_id, 2, body_of(b"tail"), 4)
    assert retried.etag != first.etag
    # A completion that recorded the first attempt: refused, nothing assembled.
    with pytest.raises(Precondition):
        await b2.complete_upload(key, upload_id, [Part(1, first), Part(2, tail)], ObjectMeta())
    assert raw_versions(b2_cloud, key) == [(key, upload_id, "start")]  # still unfinished
    [final] = await b2.complete_upload(key, upload_id, [Part(1, retried), Part(2, tail)],
                                       ObjectMeta())
    assert await md5_of(await b2.get(final)) == hashlib.md5(
        pattern_bytes(5 * MiB, 2) + b"tail").hexdigest()
    await b2.delete(final)

    # The same through the subset path (a part left out): the listed SHA1s are checked too.
    key2 = key + "-subset"
    upload_id = await b2.create_upload(key2, ObjectMeta())
    stale = await b2.upload_part(key2, upload_id, 1, pattern(5 * MiB, 3), 5 * MiB)
    await b2.upload_part(key2, upload_id, 2, pattern(5 * MiB, 4), 5 * MiB)
    last = await b2.upload_part(key2, upload_id, 3, body_of(b"end"), 3)
    fresh = await b2.upload_part(key2, upload_id, 1, pattern(5 * MiB, 5), 5 * MiB)
    with pytest.raises(Precondition):
        await b2.complete_upload(key2, upload_id, [Part(1, stale), Part(3, last)], ObjectMeta())
    assert raw_versions(b2_cloud, key2) == [(key2, upload_id, "start")]
    [final] = await b2.complete_upload(key2, upload_id, [Part(1, fresh), Part(3, last)],
                                       ObjectMeta())
    assert await md5_of(await b2.get(final)) == hashlib.md5(
        pattern_bytes(5 * MiB, 5) + b"end").hexdigest()
    assert versions_of(b2_cloud, key2) == [final.version_id]
    await b2.delete(final)


async def test_backend_4xx_raises_rejected(b2: B2Translator, b2_cloud: B2Cloud) -> None:
    key = f"refused-{uuid.uuid4().hex[:8]}"
    upload_id = await b2.create_upload(key, ObjectMeta())
    with pytest.raises(Rejected, match="Part number"):  # B2's 400 for a part number > 10000
        await b2.upload_part(key, upload_id, 10001, body_of(b"x"), 1)
    part = await b2.upload_part(key, upload_id, 1, body_of(b"fine"), 4)  # the upload lives on
    [final] = await b2.complete_upload(key, upload_id, [Part(1, part)], ObjectMeta())
    other = await b2.create_upload(key + "-2", ObjectMeta())
    with pytest.raises(Rejected):  # B2's 416 for a copied range past the source's end
        await b2.copy_part(final, 10, 5, key + "-2", other, 1)
    assert await read_all(await b2.get(final)) == b"fine"
    await b2.abort_upload(key + "-2", other, [])
    await b2.delete(final)


@pytest.mark.parametrize(("error", "expected"), [
    (BadRequest("File info too large", "bad_request"), Rejected),
    (UnknownError("413 too_big request too large"), Rejected),
    (TooManyRequests(), Throttled),
    (ServiceError("503 service_unavailable too busy"), Throttled),
    (B2Conflict(), Precondition),
    (ServiceError("500 internal_error oops"), Unavailable),
    (Unauthorized("bad key", "unauthorized"), Unauthenticated),  # config problems, not outages
    (AccessDenied(), PermissionDenied),
    (UnknownError("403 forbidden no"), PermissionDenied),
    (UnknownError("401 unauthorized no"), Unauthenticated),
    (B2ConnectionError("refused"), None),  # no answer: the wrapper makes it Unavailable
])
def test_error_mapping(error: Exception, expected: Any) -> None:
    mapped = translate_error(error)
    if expected is None:
        assert mapped is None
    else:
        assert type(mapped) is expected
