"""One translator conformance suite: the same tests against all seven location types, each
through its emulator (after Arrow object_store's integration.rs). Translators are called
through the location wrappers (`compose`), as the object engine calls them.

What a backend does natively (where metadata lands, how versions are pinned, how multipart
stages its parts) is tested in its own file (test_<type>.py); what every backend must do alike
is tested here. Backends whose emulator is not loaded (TEST_CLOUDS) are skipped.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import pytest
import pytest_asyncio

from gateway.translators import translator_class
from gateway.translators.base import (
    ByteStream,
    ConfigError,
    ForeignObject,
    NotFound,
    NotSupported,
    ObjectMeta,
    Part,
    Stored,
    Translator,
)
from gateway.translators.wrappers import HealthState, compose

# One event loop for the module, so each backend's translator (its client and connection
# pool) is opened once for all the tests, not once per test.
pytestmark = pytest.mark.asyncio(loop_scope="module")

MiB = 1024 * 1024
KINDS = ("mem", "file", "aws_s3", "azure", "gcp", "b2", "swift")
# The session fixture of each cloud's emulator (tests/clouds/<kind>.py).
EMULATOR = {"aws_s3": "aws_s3_moto", "azure": "azurite", "gcp": "gcs_emulator",
            "b2": "b2_cloud", "swift": "swift_cloud"}
CONTENT_FIELDS = ("content_type", "cache_control", "content_disposition", "content_encoding",
                  "content_language", "expires")
META = ObjectMeta(content_type="text/plain; charset=utf-8", cache_control="max-age=60",
                  content_disposition='attachment; filename="a b.txt"',
                  content_encoding="identity", content_language="fr",
                  expires="Wed, 21 Oct 2037 07:28:00 GMT",
                  # (No "_" in names: moto's and Swift's HTTP servers drop such headers.)
                  user={"color": "blue", "dash-name": "a=b&c", "spaced": "x  y",
                        "9lives": "cat", "dot.name": "v.1"},
                  tags={"project": "alpha", "env": "dev stage"})
NEW_META = ObjectMeta(content_type="application/json", user={"color": "red"},
                      tags={"tier": "cold"})


@dataclass
class Backend:
    """One location type under test, on its emulator."""

    kind: str
    details: dict[str, Any]  # the location's details, as in locationConfig.json
    env: dict[str, str] = field(default_factory=dict)
    store: Translator = field(init=False)  # opened, inside the wrappers
    # The older of two writes at one key stays pinned: it reads its own bytes or NotFound,
    # never the newer's, and deleting it leaves the newer (versions, generations, etags).
    pins: bool = False
    # The object's metadata as the cloud itself shows it (None: kept only by the gateway).
    native_meta: Callable[[Stored], Awaitable[ObjectMeta]] | None = None
    keeps: tuple[str, ...] = CONTENT_FIELDS  # the ObjectMeta content fields kept natively
    # update_meta rewrites user metadata too (not only tags).
    updates_user_meta: bool = True
    # A mirror's members (Locations by name), bound to every translator made and opened once.
    members: dict[str, Any] = field(default_factory=dict)

    def make(self, details: dict[str, Any] | None = None) -> Translator:
        """A new (unopened) bare translator of this location."""
        translator = translator_class(self.kind)(f"conf-{self.kind}", details or self.details,
                                                 self.env)
        if self.members:
            translator.bind(self.members)  # type: ignore[attr-defined]
        return translator


def pattern(size: int, seed: int | str = 0) -> bytes:
    return random.Random(seed).randbytes(size)


async def body(data: bytes, chunk: int = 64 * 1024) -> ByteStream:
    for start in range(0, len(data), chunk):
        yield data[start:start + chunk]
        await asyncio.sleep(0)


async def read(stream: ByteStream) -> bytes:
    return b"".join([chunk async for chunk in stream])


def token() -> str:
    return f"~{uuid.uuid4().hex[:24]}"


# ---- one backend per kind ---------------------------------------------------------------------

_SPACES: dict[str, Any] = {}  # one bucket/container per kind for the session (keys are unique)


def _space(kind: str, create: Callable[[], Any]) -> Any:
    if kind not in _SPACES:
        _SPACES[kind] = create()
    return _SPACES[kind]


def mem_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    return Backend("mem", {})


def file_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    details = {"dataPath": str(tmp_path / "data")}
    env = {"S3DURABILITY": "relaxed"}  # no fsync: test_file_translator covers durability
    return Backend("file", details, env)


def aws_s3_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    moto = request.getfixturevalue("aws_s3_moto")
    bucket = _space("aws_s3", moto.create_bucket)
    details = moto.details(bucket)
    client = moto.boto()

    async def native(stored: Stored) -> ObjectMeta:
        args = {"Bucket": bucket, "Key": stored.key}
        if stored.version_id:
            args["VersionId"] = stored.version_id
        head = await asyncio.to_thread(client.head_object, **args)
        tags = await asyncio.to_thread(client.get_object_tagging, **args)
        return ObjectMeta(
            content_type=head.get("ContentType"), cache_control=head.get("CacheControl"),
            content_disposition=head.get("ContentDisposition"),
            content_encoding=head.get("ContentEncoding"),
            content_language=head.get("ContentLanguage"),
            expires=head.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("expires"),
            user=head.get("Metadata", {}),
            tags={t["Key"]: t["Value"] for t in tags["TagSet"]})

    return Backend("aws_s3", details, pins=True, native_meta=native, updates_user_meta=False)


def azure_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    from azure.storage.blob import ContainerClient

    from gateway.translators.azure import decode_metadata
    from tests.clouds.azure import ACCOUNT_KEY, ACCOUNT_NAME

    azurite = request.getfixturevalue("azurite")
    credential = {"account_name": ACCOUNT_NAME, "account_key": ACCOUNT_KEY}

    def create() -> str:
        name = f"c{uuid.uuid4().hex[:20]}"
        ContainerClient(azurite.endpoint, name, credential=credential).create_container()
        return name

    container = _space("azure", create)
    details = azurite.details(container)

    async def native(stored: Stored) -> ObjectMeta:
        async with azurite.container_client(container) as client:
            blob = client.get_blob_client(stored.key)
            props = await blob.get_blob_properties()
            tags = await blob.get_blob_tags()
        meta = decode_metadata(props.metadata, tags)
        settings = props.content_settings
        return ObjectMeta(content_type=settings.content_type,
                          cache_control=settings.cache_control,
                          content_disposition=settings.content_disposition,
                          content_encoding=settings.content_encoding,
                          content_language=settings.content_language,
                          user=meta.user, tags=meta.tags)

    return Backend("azure", details, pins=True, native_meta=native,
                   keeps=tuple(f for f in CONTENT_FIELDS if f != "expires"))


def gcp_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    import aiohttp
    from gcloud.aio.storage import Storage

    from gateway.translators.gcp import EXPIRES_KEY, TAG_PREFIX

    emulator = request.getfixturevalue("gcs_emulator")
    bucket = _space("gcp", emulator.create_bucket)
    details = {"bucketName": bucket, "gcpEndpoint": emulator.url}

    async def native(stored: Stored) -> ObjectMeta:
        async with aiohttp.ClientSession() as session:
            sdk = Storage(session=session, api_root=emulator.url)
            resource = await sdk.download_metadata(bucket, stored.key)
        # fake-gcs-server keeps a key update_meta dropped (sent as null) as "": gone.
        custom = {k: v for k, v in (resource.get("metadata") or {}).items() if v != ""}
        return ObjectMeta(
            content_type=resource.get("contentType"), cache_control=resource.get("cacheControl"),
            content_disposition=resource.get("contentDisposition"),
            content_encoding=resource.get("contentEncoding"),
            content_language=resource.get("contentLanguage"), expires=custom.pop(EXPIRES_KEY, None),
            tags={k.removeprefix(TAG_PREFIX): custom.pop(k) for k in list(custom)
                  if k.startswith(TAG_PREFIX)},
            user=custom)

    return Backend("gcp", details, pins=True,
                   native_meta=native)


def b2_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    from gateway.translators.b2 import meta_from_file_info

    cloud = request.getfixturevalue("b2_cloud")
    details = cloud.details(threads=4)
    api = cloud.api()

    async def native(stored: Stored) -> ObjectMeta:
        info = await asyncio.to_thread(api.get_file_info, stored.version_id)
        return meta_from_file_info(info.content_type, info.file_info)

    return Backend("b2", details, pins=True,
                   native_meta=native)


def swift_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    from gateway.translators.swift import TAGS_META

    cluster = request.getfixturevalue("swift_cloud")
    container = _space("swift", lambda: cluster.make_container(f"gw-{uuid.uuid4().hex[:10]}"))
    details = cluster.details(container)

    async def native(stored: Stored) -> ObjectMeta:
        def head() -> dict[str, str]:
            conn = cluster.connection()
            try:
                return conn.head_object(container, stored.key)
            finally:
                conn.close()

        headers = await asyncio.to_thread(head)
        prefix = "x-object-meta-"
        user = {k.removeprefix(prefix): v for k, v in headers.items() if k.startswith(prefix)}
        tags = dict(parse_qsl(user.pop(TAGS_META, ""), keep_blank_values=True))
        return ObjectMeta(
            content_type=headers.get("content-type"), cache_control=headers.get("cache-control"),
            content_disposition=headers.get("content-disposition"),
            content_encoding=headers.get("content-encoding"),
            content_language=headers.get("content-language"), expires=headers.get("expires"),
            user=user, tags=tags)

    return Backend("swift", details, native_meta=native)


def mirror_backend(read: str, write: str, files: int = 1) -> Callable[..., Backend]:
    """A mirror over a mem and `files` file locations (cheap; the clouds: tests/moving/)."""
    def make(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
        from gateway.config import LocationSpec
        from gateway.locations import Location

        members = {}
        for n, (kind, details, env) in enumerate([("mem", {}, {})] + [
                ("file", {"dataPath": str(tmp_path / f"data{i}")}, {"S3DURABILITY": "relaxed"})
                for i in range(files)]):
            name = f"conf-mirror-{kind}{n}"
            members[name] = Location(LocationSpec(name, kind, False, details, name),
                                     translator_class(kind)(name, details, env))
        return Backend("mirror", {"members": list(members), "read": read, "write": write},
                       members=members)
    return make


MAKERS = {"mem": mem_backend, "file": file_backend, "aws_s3": aws_s3_backend,
          "azure": azure_backend, "gcp": gcp_backend, "b2": b2_backend, "swift": swift_backend,
          "mirror": mirror_backend("primary-fallback", "all"),
          "mirror-async": mirror_backend("fastest", "primary+async"),
          "mirror-quorum": mirror_backend("primary", "quorum", files=2)}


def _loaded(kind: str) -> bool:
    wanted = os.environ.get("TEST_CLOUDS", "all")
    return kind not in EMULATOR or wanted == "all" or kind in wanted.split(",")


@pytest.fixture(scope="module", params=[
    pytest.param(kind, marks=[getattr(pytest.mark, kind)] if kind in EMULATOR else [])
    for kind in (*KINDS, "mirror", "mirror-async", "mirror-quorum")])
def backend_spec(request: pytest.FixtureRequest,
                 tmp_path_factory: pytest.TempPathFactory) -> Backend:
    if not _loaded(request.param):
        pytest.skip(f"TEST_CLOUDS does not load the {request.param} emulator")
    return MAKERS[request.param](request, tmp_path_factory.mktemp(request.param))


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def backend(backend_spec: Backend) -> AsyncIterator[Backend]:
    translator = backend_spec.make()
    for member in backend_spec.members.values():
        await member.translator.open()
    await translator.open()
    backend_spec.store = compose(translator, HealthState())
    yield backend_spec
    await translator.close()


@pytest.fixture
def prefix() -> str:
    return f"conf-{uuid.uuid4().hex[:12]}/"  # every test writes under keys of its own


async def listed_ids(store: Translator, prefix: str = "") -> set[str]:
    return {store.piece_id(piece) async for piece in store.list_pieces(prefix)}


# ---- plain objects ---------------------------------------------------------------------------

async def test_put_get_ranges_head_at_exactly_the_key(backend: Backend, prefix: str) -> None:
    store = backend.store
    data = pattern(300 * 1024 + 7, "put")
    key = f"{prefix}bkt/dir/odd name+é=&?{token()}"
    stored = await store.put(key, body(data), len(data), ObjectMeta())
    assert (stored.key, stored.size, stored.location) == (key, len(data), store.name)
    assert await read(await store.get(stored)) == data
    for offset, length in ((0, 1), (100, 70_000), (65_535, 2), (len(data) - 3, None),
                           (len(data) - 1, 1), (5, 0), (200_000, None)):
        end = None if length is None else offset + length
        assert await read(await store.get(stored, offset, length)) == data[offset:end], \
            (offset, length)
    head = await store.head(stored)
    assert (head.key, head.size) == (key, len(data))

    empty = await store.put(f"{prefix}empty{token()}", body(b""), 0, ObjectMeta())
    assert empty.size == 0 and (await store.head(empty)).size == 0
    assert await read(await store.get(empty)) == b""
    for piece in (stored, empty):
        await store.delete(piece)


async def test_missing_is_not_found_and_delete_is_idempotent(backend: Backend,
                                                             prefix: str) -> None:
    store = backend.store
    missing = Stored(store.name, f"{prefix}never-written{token()}", 10)
    with pytest.raises(NotFound):
        await store.get(missing)
    with pytest.raises(NotFound):
        await store.head(missing)
    await store.delete(missing)  # already gone is success
    stored = await store.put(f"{prefix}gone{token()}", body(b"soon gone"), 9, ObjectMeta())
    await store.delete(stored)
    await store.delete(stored)
    await store.delete(Stored(store.name, stored.key, 0))  # without pin, too
    with pytest.raises(NotFound):
        await read(await store.get(stored))
    with pytest.raises(NotFound):
        await store.head(stored)


async def test_delete_without_pin_removes_exactly_its_key(backend: Backend, prefix: str) -> None:
    store = backend.store
    key = f"{prefix}obj{token()}"
    # Keys that start with it are other writes' pieces: untouched. (Not `<key>/...`: fake-gcs-
    # server keeps objects as files and cannot hold both.)
    others = (f"{key}#part", f"{key}0")
    written = {k: await store.put(k, body(k.encode()), len(k.encode()), ObjectMeta())
               for k in (key, *others)}
    await store.delete(Stored(store.name, key, 0))
    with pytest.raises(NotFound):
        await store.head(written[key])
    for k in others:
        assert await read(await store.get(written[k])) == k.encode()
        await store.delete(written[k])


async def test_two_writes_never_share_bytes(backend: Backend, prefix: str) -> None:
    store = backend.store
    first = await store.put(f"{prefix}a{token()}", body(b"first"), 5, ObjectMeta())
    second = await store.put(f"{prefix}a{token()}", body(b"second"), 6, ObjectMeta())
    await store.delete(first)
    assert await read(await store.get(second)) == b"second"
    await store.delete(second)
    if not backend.pins:
        return
    # Two writes at one key (the gateway never does it, a second gateway might): the older
    # piece is pinned to its own bytes.
    key = f"{prefix}same{token()}"
    old = await store.put(key, body(b"old bytes"), 9, ObjectMeta())
    new = await store.put(key, body(b"new bytes!"), 10, ObjectMeta())
    assert old != new
    try:
        assert await read(await store.get(old)) == b"old bytes"
    except NotFound:
        pass  # replaced (Azure without versions: the etag pin answers "gone")
    await store.delete(old)
    assert await read(await store.get(new)) == b"new bytes!"
    await store.delete(new)
    with pytest.raises(NotFound):
        await store.head(new)


async def test_copy_is_a_new_independent_piece(backend: Backend, prefix: str) -> None:
    store = backend.store
    data = pattern(200_000, "copy")
    src = await store.put(f"{prefix}src{token()}", body(data), len(data), META)
    dst_key = f"{prefix}dst{token()}"
    dst = await store.copy(src, dst_key, NEW_META)
    if dst is None:  # no server-side copy here: the caller streams (get + put)
        dst = await store.put(dst_key, await store.get(src), len(data), NEW_META)
    else:
        with pytest.raises(NotFound):
            await store.copy(Stored(store.name, f"{prefix}nothing{token()}", 3),
                             f"{prefix}x{token()}", ObjectMeta())
    assert (dst.key, dst.size) == (dst_key, len(data))
    await store.delete(src)
    assert await read(await store.get(dst)) == data
    if backend.native_meta is not None:
        native = await backend.native_meta(dst)
        assert (native.tags, native.content_type) == (NEW_META.tags, NEW_META.content_type)
    await store.delete(dst)


async def test_metadata_round_trip(backend: Backend, prefix: str) -> None:
    if backend.native_meta is None:
        pytest.skip(f"{backend.kind} keeps no metadata of its own (the gateway's is the truth)")
    store = backend.store
    stored = await store.put(f"{prefix}meta{token()}", body(b"payload"), 7, META)
    native = await backend.native_meta(stored)
    for name in backend.keeps:
        assert getattr(native, name) == getattr(META, name), name
    assert native.user == META.user
    assert native.tags == META.tags

    updated = await store.update_meta(stored, NEW_META)
    native = await backend.native_meta(updated)
    assert native.tags == NEW_META.tags
    if backend.updates_user_meta:
        assert native.user == NEW_META.user
    assert await read(await store.get(updated)) == b"payload"
    with pytest.raises(NotFound):
        await store.update_meta(Stored(store.name, f"{prefix}missing{token()}", 1), NEW_META)
    for piece in {stored, updated}:
        await store.delete(piece)


# ---- multipart -------------------------------------------------------------------------------

async def test_multipart_retry_discard_copy_part_complete(backend: Backend, prefix: str) -> None:
    store = backend.store
    before = await listed_ids(store)
    source = pattern(300_000, "source")
    src = await store.put(f"{prefix}src{token()}", body(source), len(source), ObjectMeta())
    key = f"{prefix}mpu{token()}"
    upload_id = await store.create_upload(key, META)
    attempt = await store.upload_part(key, upload_id, 1, body(pattern(5 * MiB, "a")), 5 * MiB)
    first = pattern(5 * MiB, "b")
    retry = await store.upload_part(key, upload_id, 1, body(first), 5 * MiB)
    await store.discard_part(key, upload_id, Part(1, attempt))  # the replaced attempt
    unlisted = await store.upload_part(key, upload_id, 3, body(b"never listed"), 12)
    second = await store.copy_part(src, 1000, 50_000, key, upload_id, 2)
    if second is None:  # no server-side part copy: the caller streams the range
        second = await store.upload_part(key, upload_id, 2,
                                         await store.get(src, 1000, 50_000), 50_000)
    assert (retry.size, second.size, unlisted.size) == (5 * MiB, 50_000, 12)
    pieces = await store.complete_upload(key, upload_id, [Part(1, retry), Part(2, second)],
                                         META)
    expected = first + source[1000:51_000]
    assert sum(piece.size for piece in pieces) == len(expected)
    assert b"".join([await read(await store.get(piece)) for piece in pieces]) == expected
    assert pieces[0].key == key or len(pieces) == 2  # one object at the key, or the parts
    # Deleting what the completion returned leaves nothing of the upload behind: no replaced
    # attempt, no unlisted part, no staged block or segment.
    for piece in [*pieces, src]:
        await store.delete(piece)
    assert await listed_ids(store) <= before


async def test_abort_leaves_nothing_and_is_idempotent(backend: Backend, prefix: str) -> None:
    store = backend.store
    before = await listed_ids(store)
    key = f"{prefix}aborted{token()}"
    upload_id = await store.create_upload(key, ObjectMeta())
    recorded = await store.upload_part(key, upload_id, 1, body(b"recorded"), 8)
    await store.upload_part(key, upload_id, 2, body(b"never recorded"), 14)
    await store.upload_part(key, upload_id, 2, body(b"a retry, never recorded either"), 30)
    other_key = f"{prefix}other{token()}"
    other = await store.create_upload(other_key, ObjectMeta())
    kept = await store.upload_part(other_key, other, 1, body(b"another upload"), 14)
    await store.abort_upload(key, upload_id, [Part(1, recorded)])
    await store.abort_upload(key, upload_id, [Part(1, recorded)])  # idempotent
    # Another upload is untouched: it still completes.
    [*pieces] = await store.complete_upload(other_key, other, [Part(1, kept)], ObjectMeta())
    assert b"".join([await read(await store.get(p)) for p in pieces]) == b"another upload"
    for piece in pieces:
        await store.delete(piece)
    assert await listed_ids(store) <= before


# ---- listing and identity --------------------------------------------------------------------

async def test_list_pieces_and_piece_id(backend: Backend, prefix: str) -> None:
    store = backend.store
    a = await store.put(f"{prefix}list/a{token()}", body(b"a"), 1, ObjectMeta())
    b = await store.put(f"{prefix}list/b{token()}", body(b"bb"), 2, ObjectMeta())
    listed = {store.piece_id(p): p async for p in store.list_pieces(f"{prefix}list/")}
    assert {store.piece_id(a), store.piece_id(b)} <= set(listed)
    assert listed[store.piece_id(b)].size == 2
    await store.delete(a)
    listed_after = await listed_ids(store, f"{prefix}list/")
    assert store.piece_id(a) not in listed_after and store.piece_id(b) in listed_after
    await store.delete(b)


# ---- what a container holds, whoever wrote it (import, read-through) --------------------------

async def test_list_objects_and_describe_what_the_container_holds(backend: Backend,
                                                                 prefix: str) -> None:
    store = backend.store
    if backend.kind == "file":  # hashed file names: nothing but the gateway's own pieces
        with pytest.raises(NotSupported, match="nothing to import"):
            await store.describe(f"{prefix}x")
        with pytest.raises(NotSupported):
            [found async for found in store.list_objects(prefix)]
        return
    data = {f"{prefix}held/{name}": pattern(size, name)
            for name, size in (("a", 10), ("b b+é", 2000), ("c/d", 0))}
    for key, content in data.items():
        await store.put(key, body(content), len(content), META)
    keys = sorted(data)

    listed = [found async for found in store.list_objects(f"{prefix}held/")]
    assert [found.key for found in listed] == keys  # ascending key order, current objects
    for found in listed:
        assert isinstance(found, ForeignObject) and found.size == len(data[found.key])
        assert found.stored.key == found.key and found.stored.size == found.size
        # When the backend keeps an MD5, it is the content's (a single put: no composite).
        assert found.s3_etag in (None, hashlib.md5(data[found.key]).hexdigest())
        # (b2sdk's simulator counts upload times from 0: only "not in the future" holds.)
        assert found.last_modified is None or 0 < found.last_modified < time.time() + 3600
        if backend.native_meta is not None:
            assert found.detailed and found.meta.content_type == META.content_type
            assert found.meta.user == META.user
        assert await read(await store.get(found.stored)) == data[found.key]
    after = [found.key async for found in store.list_objects(f"{prefix}held/", keys[0])]
    assert after == keys[1:]
    bare = [(found.key, found.size) async for found in
            store.list_objects(f"{prefix}held/", details=False)]
    assert bare == [(key, len(data[key])) for key in keys]

    described = await store.describe(keys[1])
    assert described is not None and described.size == 2000
    if backend.native_meta is not None:
        assert described.meta.user == META.user
        assert described.meta.cache_control == META.cache_control
    assert await store.describe(f"{prefix}held/missing") is None
    if backend.pins:
        # Overwritten natively behind the gateway's back: the old pin never reads new bytes.
        await store.put(keys[1], body(b"newer bytes"), 11, ObjectMeta())
        try:
            assert await read(await store.get(described.stored)) == data[keys[1]]
        except NotFound:
            pass
        newer = await store.describe(keys[1])
        assert newer is not None and newer.size == 11 and newer.stored != described.stored
    async for piece in store.list_pieces(f"{prefix}held/"):
        await store.delete(piece)


async def test_unknown_details_key_is_refused_by_name(backend_spec: Backend) -> None:
    # A typo (bucketmatch) would silently change where objects land: refused, named.
    with pytest.raises(ConfigError) as caught:
        backend_spec.make({**backend_spec.details, "bucketmatch": True})
    assert caught.value.key == "bucketmatch" and "bucketMatch" in caught.value.message
    backend_spec.make({**backend_spec.details, "bucketMatch": True})  # the real one is fine


async def test_storage_id_names_the_storage(backend: Backend) -> None:
    again = backend.make()  # the same location built again: the same storage
    assert backend.store.storage_id() == again.storage_id()
    assert isinstance(again.storage_id(), str) and again.storage_id()


# ---- a client that fails mid-body --------------------------------------------------------------

class ClientGone(Exception):
    """What the front raises when a client's body breaks off (IncompleteBody, BadDigest...)."""


async def broken_body(size: int) -> ByteStream:
    yield pattern(size // 2, "half")
    await asyncio.sleep(0)
    raise ClientGone("the client went away")


@pytest.mark.parametrize("size", [1000, 6 * MiB])  # one request, streamed/staged
async def test_a_broken_body_is_the_clients_error_and_leaves_nothing(
        backend: Backend, prefix: str, size: int) -> None:
    store = backend.store
    before = await listed_ids(store)
    with pytest.raises(ClientGone):
        await store.put(f"{prefix}broken{token()}", broken_body(size), size, ObjectMeta())
    key = f"{prefix}mpu{token()}"
    upload_id = await store.create_upload(key, ObjectMeta())
    with pytest.raises(ClientGone):
        await store.upload_part(key, upload_id, 1, broken_body(size), size)
    await store.abort_upload(key, upload_id, [])
    assert await listed_ids(store) <= before
