"""GcpTranslator against fake-gcs-server; objects read back with gcloud-aio-storage itself. What
every location type does alike is in test_conformance.py."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from gcloud.aio.storage import Storage

from gateway.translators import gcp as gcp_module
from gateway.translators.base import (
    ConfigError,
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
from gateway.translators.gcp import SINGLE_REQUEST_MAX, STAGING_ROOT, GcpTranslator
from tests.clouds.gcp import GcsEmulator

pytestmark = pytest.mark.gcp

MiB = 1024 * 1024
T = TypeVar("T")


async def delayed(seconds: float, call: Awaitable[T]) -> T:
    await asyncio.sleep(seconds)
    return await call


def pattern(offset: int, size: int) -> bytes:
    """Deterministic bytes of a virtual stream, so any slice can be recomputed."""
    block = bytes(range(251))  # a prime length: part and chunk boundaries fall mid-cycle
    start = offset % 251
    reps = (start + size) // 251 + 1
    return (block * reps)[start:start + size]


async def stream(size: int, offset: int = 0, chunk: int = MiB) -> AsyncIterator[bytes]:
    for pos in range(offset, offset + size, chunk):
        yield pattern(pos, min(chunk, offset + size - pos))


async def collect(body: AsyncIterator[bytes]) -> bytes:
    return b"".join([chunk async for chunk in body])


def md5_of(size: int, offset: int = 0) -> str:
    digest = hashlib.md5()
    for pos in range(offset, offset + size, MiB):
        digest.update(pattern(pos, min(MiB, offset + size - pos)))
    return digest.hexdigest()


@pytest.fixture
async def gcs(gcs_emulator: GcsEmulator, gcs_bucket: str) -> AsyncIterator[GcpTranslator]:
    translator = GcpTranslator("gcs1", {"bucketName": gcs_bucket,
                                        "gcpEndpoint": gcs_emulator.url}, {})
    await translator.open()
    yield translator
    await translator.close()


@pytest.fixture
async def sdk(gcs_emulator: GcsEmulator) -> AsyncIterator[Storage]:
    """The cloud's own SDK, to see objects as other tools do."""
    async with aiohttp.ClientSession() as session:
        yield Storage(session=session, api_root=gcs_emulator.url)


async def names_under(sdk: Storage, bucket: str, prefix: str = "") -> list[str]:
    listing = await sdk.list_objects(bucket, params={"prefix": prefix})
    return [item["name"] for item in listing.get("items", [])]


META = ObjectMeta(content_type="text/plain; charset=utf-8", cache_control="max-age=60",
                  content_disposition='attachment; filename="a.txt"', content_language="fr",
                  expires="Wed, 21 Oct 2037 07:28:00 GMT",
                  user={"color": "blue", "Mixed-Case": "kept"}, tags={"Team": "storage", "k2": ""})


# -- plain objects --------------------------------------------------------------------------

async def test_put_get_native_object(gcs: GcpTranslator, sdk: Storage, gcs_bucket: str) -> None:
    stored = await gcs.put("photos/a b+c.txt", stream(5000), 5000, META)
    assert (stored.key, stored.size, stored.location) == ("photos/a b+c.txt", 5000, "gcs1")
    assert stored.version_id and stored.etag
    assert await collect(await gcs.get(stored)) == pattern(0, 5000)
    # What any GCS tool sees: one ordinary object, headers as properties, the rest as metadata.
    assert await sdk.download(gcs_bucket, "photos/a b+c.txt") == pattern(0, 5000)
    native = await sdk.download_metadata(gcs_bucket, "photos/a b+c.txt")
    assert native["generation"] == stored.version_id
    assert native["contentType"] == "text/plain; charset=utf-8"
    assert native["cacheControl"] == "max-age=60"
    assert native["contentDisposition"] == 'attachment; filename="a.txt"'
    assert native["contentLanguage"] == "fr"
    assert native["metadata"] == {"color": "blue", "Mixed-Case": "kept", "aws-tag-Team": "storage",
                                  "aws-tag-k2": "", "aws-expires": "Wed, 21 Oct 2037 07:28:00 GMT"}


async def test_large_put_streams_in_chunks(gcs: GcpTranslator, sdk: Storage,
                                           gcs_bucket: str) -> None:
    size = 2 * SINGLE_REQUEST_MAX + 12345  # a resumable upload, streamed in one PUT
    stored = await gcs.put("big", stream(size, chunk=300_000), size, ObjectMeta(user={"a": "1"}))
    assert stored.size == size
    digest = hashlib.md5()
    async for chunk in await gcs.get(stored):
        digest.update(chunk)
    assert digest.hexdigest() == md5_of(size)
    native = await sdk.download_metadata(gcs_bucket, "big")
    assert native["metadata"] == {"a": "1"} and int(native["size"]) == size


# -- multipart ------------------------------------------------------------------------------

@pytest.mark.slow
async def test_multipart_100mib(gcs: GcpTranslator, sdk: Storage, gcs_bucket: str) -> None:
    part_size, count = 5 * MiB, 20
    upload_id = await gcs.create_upload("mpu/big", META)
    started = time.monotonic()
    parts = [Part(n, await gcs.upload_part("mpu/big", upload_id, n,
                                           stream(part_size, (n - 1) * part_size), part_size))
             for n in range(1, count + 1)]
    assert all(p.stored.size == part_size for p in parts)
    pieces = await gcs.complete_upload("mpu/big", upload_id, parts, META)
    elapsed = time.monotonic() - started
    size = part_size * count
    assert len(pieces) == 1 and pieces[0].key == "mpu/big" and pieces[0].size == size
    print(f"\n100 MiB multipart through the translator: {elapsed:.2f}s")
    digest = hashlib.md5()
    async for chunk in await gcs.get(pieces[0]):
        digest.update(chunk)
    assert digest.hexdigest() == md5_of(size)
    # A range across the boundary of parts 3 and 4.
    boundary = 3 * part_size
    assert await collect(await gcs.get(pieces[0], boundary - 100, 300)) == pattern(boundary - 100,
                                                                                    300)
    native = await sdk.download_metadata(gcs_bucket, "mpu/big")
    assert native["contentType"] == META.content_type
    assert native["metadata"]["aws-tag-Team"] == "storage"
    assert await names_under(sdk, gcs_bucket) == ["mpu/big"]  # temporaries gone


async def test_more_than_1024_parts(gcs: GcpTranslator, sdk: Storage, gcs_bucket: str) -> None:
    """CloudServer stops at 1024 parts (two compose rounds); three rounds are needed here."""
    count = 1100
    upload_id = await gcs.create_upload("many", ObjectMeta())
    limit = asyncio.Semaphore(8)

    async def upload(n: int) -> Part:
        async with limit:
            body = f"<{n}>".encode()

            async def one() -> AsyncIterator[bytes]:
                yield body

            return Part(n, await gcs.upload_part("many", upload_id, n, one(), len(body)))

    parts = await asyncio.gather(*(upload(n) for n in range(1, count + 1)))
    pieces = await gcs.complete_upload("many", upload_id, list(parts), ObjectMeta())
    expected = b"".join(f"<{n}>".encode() for n in range(1, count + 1))
    assert pieces[0].size == len(expected)
    assert await collect(await gcs.get(pieces[0])) == expected
    assert await names_under(sdk, gcs_bucket) == ["many"]


async def test_separate_mpu_bucket(gcs_emulator: GcsEmulator, sdk: Storage) -> None:
    main, staging = gcs_emulator.create_bucket(), gcs_emulator.create_bucket()
    gcs = GcpTranslator("gcs2", {"bucketName": main, "mpuBucketName": staging,
                                 "gcpEndpoint": gcs_emulator.url}, {})
    await gcs.open()
    try:
        upload_id = await gcs.create_upload("obj", META)
        part = await gcs.upload_part("obj", upload_id, 1, stream(1000), 1000)
        assert await names_under(sdk, staging) == [part.key]
        assert await names_under(sdk, main) == []
        assert (await gcs.head(part)).size == 1000  # part names resolve to the staging bucket
        pieces = await gcs.complete_upload("obj", upload_id, [Part(1, part)], META)
        assert await sdk.download(main, "obj") == pattern(0, 1000)
        native = await sdk.download_metadata(main, "obj")
        assert native["contentType"] == META.content_type
        assert native["metadata"]["color"] == "blue"
        assert pieces[0].version_id == native["generation"]
        assert await names_under(sdk, staging) == []
        assert (await gcs.check()).ok
    finally:
        await gcs.close()


async def test_upload_survives_a_restart(gcs_emulator: GcsEmulator, gcs_bucket: str) -> None:
    details = {"bucketName": gcs_bucket, "gcpEndpoint": gcs_emulator.url}
    before = GcpTranslator("gcs1", details, {})
    await before.open()
    upload_id = await before.create_upload("restart", ObjectMeta())
    part = await before.upload_part("restart", upload_id, 1, stream(64), 64)
    await before.close()
    after = GcpTranslator("gcs1", details, {})
    await after.open()
    try:
        pieces = await after.complete_upload("restart", upload_id, [Part(1, part)], ObjectMeta())
        assert await collect(await after.get(pieces[0])) == pattern(0, 64)
    finally:
        await after.close()


# -- health and failures --------------------------------------------------------------------

async def test_check(gcs: GcpTranslator, gcs_emulator: GcsEmulator) -> None:
    health = await gcs.check()
    assert health.ok and health.message == "OK"
    missing = GcpTranslator("gone", {"bucketName": "no-such-bucket",
                                     "gcpEndpoint": gcs_emulator.url}, {})
    await missing.open()
    try:
        health = await missing.check()
        assert not health.ok and "no-such-bucket" in health.message
        assert "does not exist" in health.message
    finally:
        await missing.close()


async def test_emulator_stopped_mid_test(gcs_emulator_factory: Any) -> None:
    emulator = gcs_emulator_factory()
    bucket = emulator.create_bucket()
    gcs = GcpTranslator("gcs1", {"bucketName": bucket, "gcpEndpoint": emulator.url}, {})
    await gcs.open()
    try:
        stored = await gcs.put("x", stream(10), 10, ObjectMeta())
        emulator.stop()
        started = time.monotonic()
        with pytest.raises(aiohttp.ClientError):  # not NotFound: the wrapper makes it a 503
            await gcs.get(stored)
        with pytest.raises(aiohttp.ClientError):
            await gcs.put("y", stream(10), 10, ObjectMeta())
        health = await gcs.check()
        assert not health.ok and "unreachable" in health.message
        assert time.monotonic() - started < 10
    finally:
        await gcs.close()


# -- configuration --------------------------------------------------------------------------

def service_key(token_uri: str = "https://oauth2.googleapis.com/token") -> dict[str, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    return {"type": "service_account", "client_email": "gw@test.iam.gserviceaccount.com",
            "private_key": pem, "token_uri": token_uri, "project_id": "test"}


@pytest.mark.parametrize(("details", "env", "key"), [
    ({}, {}, "bucketName"),
    ({"bucketName": "Bad_Name"}, {}, "bucketName"),
    ({"bucketName": "ok-bucket", "mpuBucketName": "x"}, {}, "mpuBucketName"),
    ({"bucketName": "ok-bucket", "bucketMatch": "yes"}, {}, "bucketMatch"),
    ({"bucketName": "ok-bucket"}, {}, "serviceCredentials"),  # real GCS needs credentials
    ({"bucketName": "ok-bucket", "gcpEndpoint": "http://"}, {}, "gcpEndpoint"),
    ({"bucketName": "ok-bucket", "credentials": {"accessKey": "a", "secretKey": "b"}}, {},
     "credentials"),
    ({"bucketName": "ok-bucket", "serviceCredentials": "{not json"}, {}, "serviceCredentials"),
    ({"bucketName": "ok-bucket", "serviceCredentials": {"type": "service_account"}}, {},
     "serviceCredentials"),
    ({"bucketName": "ok-bucket", "serviceCredentials": {"serviceEmail": "a@b"}}, {},
     "serviceCredentials"),
    ({"bucketName": "ok-bucket"}, {"gcs1_GCP_SERVICE_KEYFILE": "{}"}, "gcs1_GCP_SERVICE_KEYFILE"),
    ({"bucketName": "ok-bucket"}, {"gcs1_GCP_SERVICE_EMAIL": "a@b"}, "gcs1_GCP_SERVICE_EMAIL"),
])
def test_config_errors_name_the_key(details: dict[str, Any], env: dict[str, str],
                                    key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        GcpTranslator("gcs1", details, env)
    assert caught.value.key == key


def test_config_accepted_shapes(tmp_path: Path) -> None:
    emulator = GcpTranslator("e", {"bucketName": "b-1", "gcpEndpoint": "127.0.0.1:4443/"}, {})
    assert emulator.anonymous and emulator.api_root == "https://127.0.0.1:4443"
    assert emulator.mpu_bucket == "b-1"
    for creds in ("/etc/key.json", json.dumps(service_key()), service_key(),
                  {"keyFilename": "/etc/key.json"},
                  {"serviceEmail": "a@b", "serviceKey": "-----BEGIN PRIVATE KEY-----\\nx"}):
        real = GcpTranslator("r", {"bucketName": "b-1", "serviceCredentials": creds}, {})
        assert not real.anonymous and real.api_root == "https://storage.googleapis.com"
    from_env = GcpTranslator("r", {"bucketName": "b-1"}, {"r_GCP_SERVICE_KEYFILE": "/k.json"})
    assert not from_env.anonymous


async def test_unreadable_key_file_fails_at_open(tmp_path: Path) -> None:
    gcs = GcpTranslator("r", {"bucketName": "b-1", "serviceCredentials": str(tmp_path / "no")}, {})
    with pytest.raises(ConfigError) as caught:
        await gcs.open()
    assert caught.value.key == "serviceCredentials" and "cannot read" in caught.value.message


async def test_env_key_file_overrides_and_authenticates(tmp_path: Path) -> None:
    """A service account key from <location>_GCP_SERVICE_KEYFILE is exchanged for a token
    (local token endpoint) and the token goes out as a Bearer header."""
    seen: list[str] = []

    async def token(request: web.Request) -> web.Response:
        form = await request.post()
        assert form["grant_type"] == "urn:ietf:params:oauth:grant-type:jwt-bearer"
        return web.json_response({"access_token": "tok-123", "expires_in": 3600})

    async def bucket(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Authorization", ""))
        return web.json_response({"name": request.match_info["name"]})

    app = web.Application()
    app.router.add_post("/token", token)
    app.router.add_get("/storage/v1/b/{name}", bucket)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    url = f"http://127.0.0.1:{port}"
    key_file = tmp_path / "key.json"
    key_file.write_text(json.dumps(service_key(f"{url}/token")))
    details = {"bucketName": "b-1", "gcpEndpoint": url,
               "serviceCredentials": {"keyFilename": str(tmp_path / "ignored.json")}}
    gcs = GcpTranslator("loc", details, {"loc_GCP_SERVICE_KEYFILE": str(key_file)})
    await gcs.open()
    try:
        assert (await gcs.check()).ok
        assert seen == ["Bearer tok-123"]
    finally:
        await gcs.close()
        await runner.cleanup()


# -- unique keys: unpinned deletes, fsck listings, retried parts, refused requests ----------

async def test_delete_without_pin_removes_the_key(gcs: GcpTranslator, sdk: Storage,
                                                  gcs_bucket: str) -> None:
    """A record-less delete (the collector dropping an uncommitted write) removes what is at
    exactly that name, and nothing at a longer one. (fake-gcs-server's filesystem backend keeps
    no noncurrent generations, so there is one generation per name here.)"""
    key = "b/k~0123456789abcdef01234567"
    stored = await gcs.put(key, stream(10), 10, ObjectMeta())
    neighbour = await gcs.put(key + "x", stream(5), 5, ObjectMeta())
    await gcs.delete(Stored(location=stored.location, key=key, size=0))
    assert await names_under(sdk, gcs_bucket) == [neighbour.key]
    await gcs.delete(Stored(location=stored.location, key=key, size=0))  # gone: success
    assert await collect(await gcs.get(neighbour)) == pattern(0, 5)
    # A staged part too (the collector removing a part whose record never came).
    upload_id = await gcs.create_upload("up", ObjectMeta())
    part = await gcs.upload_part("up", upload_id, 1, stream(10), 10)
    await gcs.delete(Stored(location=part.location, key=part.key, size=0))
    assert await names_under(sdk, gcs_bucket, STAGING_ROOT) == []


async def test_list_pieces(gcs: GcpTranslator, monkeypatch: pytest.MonkeyPatch) -> None:
    """Puts, copies and the staged parts of uploads to keys under the prefix (a retried part
    twice: both attempts are objects), page by page; nothing else."""
    monkeypatch.setattr(gcp_module, "LIST_PAGE", 2)  # several pages from a few objects
    a = await gcs.put("p/a", stream(10), 10, ObjectMeta())
    b = await gcs.put("p/b", stream(20), 20, ObjectMeta(user={"u": "1"}))
    c = await gcs.copy(a, "p/c", ObjectMeta())
    assert c is not None
    outside = await gcs.put("q/outside", stream(5), 5, ObjectMeta())
    inside_upload = await gcs.create_upload("p/mpu", ObjectMeta())
    staged = [await gcs.upload_part("p/mpu", inside_upload, n, stream(n), n) for n in (1, 1, 2)]
    outside_upload = await gcs.create_upload("q/mpu", ObjectMeta())
    elsewhere = await gcs.upload_part("q/mpu", outside_upload, 1, stream(3), 3)

    listed = [piece async for piece in gcs.list_pieces("p/")]
    expected = [a, b, c, *staged]
    assert len(listed) == len(expected)
    assert {gcs.piece_id(p) for p in listed} == {gcs.piece_id(p) for p in expected}
    assert {(p.key, p.size, p.version_id) for p in listed} == {
        (p.key, p.size, p.version_id) for p in expected}
    everything = [gcs.piece_id(piece) async for piece in gcs.list_pieces()]
    assert sorted(everything) == sorted(gcs.piece_id(p)
                                        for p in [*expected, outside, elsewhere])


async def test_list_pieces_separate_mpu_bucket(gcs_emulator: GcsEmulator) -> None:
    main, staging = gcs_emulator.create_bucket(), gcs_emulator.create_bucket()
    gcs = GcpTranslator("gcs2", {"bucketName": main, "mpuBucketName": staging,
                                 "gcpEndpoint": gcs_emulator.url}, {})
    await gcs.open()
    try:
        obj = await gcs.put("p/obj", stream(4), 4, ObjectMeta())
        upload_id = await gcs.create_upload("p/up", ObjectMeta())
        part = await gcs.upload_part("p/up", upload_id, 1, stream(6), 6)
        listed = [gcs.piece_id(piece) async for piece in gcs.list_pieces("p/")]
        assert sorted(listed) == sorted([gcs.piece_id(obj), gcs.piece_id(part)])
        assert [piece async for piece in gcs.list_pieces("x/")] == []
    finally:
        await gcs.close()


async def test_retried_part_races_completion(gcs: GcpTranslator, sdk: Storage,
                                             gcs_bucket: str) -> None:
    """A part re-uploaded while the completion that lists its first attempt runs: the object
    is always the listed bytes; whatever the retry left is dropped by discard_part."""
    outcomes: Counter[str] = Counter()
    for trial in range(16):
        key = f"race-{trial}"
        upload_id = await gcs.create_upload(key, ObjectMeta())
        listed = await gcs.upload_part(key, upload_id, 1, stream(1000), 1000)
        retry = delayed(trial % 4 * 0.003, gcs.upload_part(key, upload_id, 1,
                                                           stream(1000, 7), 1000))
        complete = gcs.complete_upload(key, upload_id, [Part(1, listed)], ObjectMeta())
        done, retried = await asyncio.wait_for(
            asyncio.gather(complete, retry, return_exceptions=True), 30)
        assert not isinstance(done, BaseException), done
        assert await collect(await gcs.get(done[0])) == pattern(0, 1000)
        if isinstance(retried, Stored):
            left = retried.key in await names_under(sdk, gcs_bucket, STAGING_ROOT)
            outcomes["retry outlived completion" if left else "retry swept"] += 1
            await gcs.discard_part(key, upload_id, Part(1, retried))
        else:
            outcomes[type(retried).__name__] += 1
        await gcs.delete(done[0])
    assert await names_under(sdk, gcs_bucket) == []
    print(f"retried part vs completion: {dict(outcomes)}")


async def test_backend_4xx_is_rejected(gcs: GcpTranslator, sdk: Storage, gcs_bucket: str,
                                       gcs_emulator: GcsEmulator) -> None:
    """A request GCS refuses for what it carries is Rejected (the client's 400), not a
    backend failure that would count against the location's health."""
    with pytest.raises(Rejected):  # fake-gcs-server refuses names its filesystem cannot hold
        await gcs.put("k" * 300, stream(10), 10, ObjectMeta())
    with pytest.raises(Rejected, match="400"):  # not a generation
        await gcs.head(Stored(location="gcs1", key="k", size=1, version_id="not-a-number"))
    stored = await gcs.put("short", stream(10), 10, ObjectMeta())
    with pytest.raises(Rejected, match="416"):  # a range past the end
        await collect(await gcs.get(stored, 20, 5))
    assert await names_under(sdk, gcs_bucket) == ["short"]

    missing = GcpTranslator("gone", {"bucketName": "no-such-bucket",
                                     "gcpEndpoint": gcs_emulator.url}, {})
    await missing.open()
    try:
        with pytest.raises(Unavailable, match="404"):  # the location's problem
            await missing.put("k", stream(10), 10, ObjectMeta())
    finally:
        await missing.close()


@pytest.mark.parametrize(("status", "expected"), [
    (400, Rejected), (413, Rejected), (416, Rejected), (409, Precondition),
    (412, Precondition), (429, Throttled), (401, Unauthenticated), (403, PermissionDenied),
    (404, Unavailable), (501, NotSupported), (500, Unavailable), (503, Unavailable),
])
def test_error_mapping(status: int, expected: type[Exception]) -> None:
    """The one mapping of GCS answers (throttling and auth cannot be had from the emulator
    on demand; the error is built as gcloud-aio builds it)."""
    body = json.dumps({"error": {"code": status, "message": "what GCS said"}})
    error = aiohttp.ClientResponseError(None, (), status=status,  # type: ignore[arg-type]
                                        message=f"Reason: {body}")
    with pytest.raises(expected) as caught, gcp_module._gcs_errors():
        raise error
    assert caught.value.__cause__ is error
    assert str(caught.value) == f"HTTP {status}: what GCS said"
