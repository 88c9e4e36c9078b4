"""AwsS3Translator against moto server (AWS S3) and s3rver (another S3-compatible server): what only
aws_s3 does (what every location type does alike is in test_conformance.py)."""

from __future__ import annotations

import asyncio
import hashlib
import socket
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from botocore.exceptions import BotoCoreError, ClientError

from gateway.translators import aws_s3 as aws_s3_module
from gateway.translators import translator_class
from gateway.translators.aws_s3 import AwsS3Translator
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
from gateway.translators.wrappers import Boundary
from tests.clouds.aws_s3 import S3Emulator

pytestmark = pytest.mark.aws_s3

MiB = 1024 * 1024
T = TypeVar("T")


def pattern(seed: int, size: int) -> bytes:
    """Deterministic, non-repeating-looking bytes (distinct per seed), cheap to make."""
    block = b"".join(hashlib.sha256(f"{seed}:{i}".encode()).digest() for i in range(128))
    return (block * (size // len(block) + 1))[:size]


async def stream(data: bytes, chunk: int = 256 * 1024) -> AsyncIterator[bytes]:
    for start in range(0, len(data), chunk):
        yield data[start : start + chunk]


async def generated(size: int, seed: int, digest: Any = None) -> AsyncIterator[bytes]:
    """`size` bytes made chunk by chunk (never all at once); fed into `digest` on the way."""
    made = 0
    index = 0
    while made < size:
        chunk = pattern(seed * 100_000 + index, min(MiB, size - made))
        if digest is not None:
            digest.update(chunk)
        made += len(chunk)
        index += 1
        yield chunk


async def collect(body: AsyncIterator[bytes]) -> bytes:
    return b"".join([chunk async for chunk in body])


def make(emulator: S3Emulator, bucket: str, name: str = "awsloc", env: dict[str, str] | None = None,
         **extra: Any) -> AwsS3Translator:
    return AwsS3Translator(name, emulator.details(bucket, **extra), env or {})


@pytest.fixture
async def moto_loc(aws_s3_moto: S3Emulator, aws_s3_bucket: str) -> AsyncIterator[AwsS3Translator]:
    translator = make(aws_s3_moto, aws_s3_bucket)
    await translator.open()
    yield translator
    await translator.close()


META = ObjectMeta(content_type="text/plain; charset=utf-8", cache_control="max-age=60",
                  content_disposition='attachment; filename="a.txt"', content_language="fr",
                  expires="Wed, 21 Oct 2037 07:28:00 GMT",
                  user={"color": "blue", "owner": "zoé"}, tags={"project": "x y", "tier": "1"})


def test_registered_type() -> None:
    assert translator_class("aws_s3") is AwsS3Translator


async def test_native_form(moto_loc: AwsS3Translator, aws_s3_moto: S3Emulator,
                           aws_s3_bucket: str) -> None:
    """What lands on S3: the MD5 etag, the version, non-ASCII metadata as RFC 2047 words."""
    data = pattern(1, 3 * MiB + 17)
    stored = await moto_loc.put("src-bucket/dir/obj.txt", stream(data), len(data), META)
    assert stored.etag == hashlib.md5(data).hexdigest()
    assert stored.version_id  # the bucket is versioned
    assert stored.encryption is None
    head = await moto_loc.head(stored)
    assert (head.size, head.etag, head.version_id) == (len(data), stored.etag, stored.version_id)
    obj = aws_s3_moto.boto().head_object(Bucket=aws_s3_bucket, Key="src-bucket/dir/obj.txt")
    assert obj["Expires"].year == 2037
    assert obj["Metadata"]["owner"] == "=?UTF-8?B?em/DqQ==?="  # RFC 2047, as AWS answers
    await moto_loc.delete(stored)
    with pytest.raises(NotFound):
        await moto_loc.get(stored, 0, 0)


async def test_unversioned_location(aws_s3_moto: S3Emulator) -> None:
    bucket = aws_s3_moto.create_bucket(versioned=False)
    translator = make(aws_s3_moto, bucket, supportsVersioning=False)
    await translator.open()
    try:
        stored = await translator.put("k", stream(b"abc"), 3, ObjectMeta())
        assert stored.version_id is None
        assert await collect(await translator.get(stored)) == b"abc"
        assert (await translator.check()).ok
    finally:
        await translator.close()


async def test_a_short_body_is_an_error(moto_loc: AwsS3Translator, aws_s3_moto: S3Emulator,
                                        aws_s3_bucket: str) -> None:
    # A body shorter than announced is an error, not a truncated object.
    with pytest.raises(ValueError, match="ended after"):
        await moto_loc.put("short", stream(b"abc"), 10, ObjectMeta())
    listing = aws_s3_moto.boto().list_objects_v2(Bucket=aws_s3_bucket, Prefix="short")
    assert listing.get("KeyCount", 0) == 0
    # The pool still works afterwards.
    stored = await moto_loc.put("after", stream(b"fine"), 4, ObjectMeta())
    assert await collect(await moto_loc.get(stored)) == b"fine"


async def test_multipart_100mib(moto_loc: AwsS3Translator, aws_s3_moto: S3Emulator,
                                aws_s3_bucket: str) -> None:
    """One 100 MiB object of five 20 MiB parts; part 2 uploaded twice; ranged read across
    the part 1/2 boundary; read back through boto3 too."""
    part_size, count = 20 * MiB, 5
    key = "big/object.bin"
    upload_id = await moto_loc.create_upload(key, META)
    stale = await moto_loc.upload_part(key, upload_id, 2, generated(part_size, seed=999), part_size)
    started = time.monotonic()
    digest = hashlib.md5()
    parts: list[Part] = []
    for number in range(1, count + 1):
        stored = await moto_loc.upload_part(
            key, upload_id, number, generated(part_size, seed=number, digest=digest), part_size)
        assert stored.size == part_size and stored.etag
        parts.append(Part(number=number, stored=stored))
    assert parts[1].stored.etag != stale.etag  # the re-upload replaced part 2
    # The gateway deletes a replaced part's piece: that must not touch the object at the key.
    await moto_loc.delete(stale)
    [whole] = await moto_loc.complete_upload(key, upload_id, parts, META)
    elapsed = time.monotonic() - started
    assert whole.size == count * part_size and whole.etag and whole.etag.endswith("-5")
    assert whole.version_id

    read_digest = hashlib.md5()
    async for chunk in await moto_loc.get(whole):
        read_digest.update(chunk)
    assert read_digest.hexdigest() == digest.hexdigest()

    boundary = await collect(await moto_loc.get(whole, part_size - 100, 200))
    assert boundary == pattern(1 * 100_000 + 19, MiB)[-100:] + pattern(2 * 100_000, MiB)[:100]

    native = aws_s3_moto.boto()
    obj = native.head_object(Bucket=aws_s3_bucket, Key=key)
    assert obj["ContentLength"] == 100 * MiB and obj["Metadata"]["color"] == "blue"
    assert not native.list_multipart_uploads(Bucket=aws_s3_bucket).get("Uploads")
    print(f"100 MiB multipart upload: {elapsed:.1f}s ({100 / elapsed:.0f} MiB/s)")


async def test_multipart_unlisted_part_and_copy_part(moto_loc: AwsS3Translator) -> None:
    src_data = pattern(4, 6 * MiB)
    src = await moto_loc.put("copysrc", stream(src_data), len(src_data), ObjectMeta())
    key = "assembled"
    upload_id = await moto_loc.create_upload(key, ObjectMeta(content_type="a/b"))
    first = pattern(5, 5 * MiB)
    part1 = await moto_loc.upload_part(key, upload_id, 1, stream(first), len(first))
    unlisted = await moto_loc.upload_part(key, upload_id, 2, stream(b"zz"), 2)
    part3 = await moto_loc.copy_part(src, MiB, 3 * MiB, key, upload_id, 3)
    assert part3 is not None and part3.size == 3 * MiB
    parts = [Part(1, part1), Part(3, part3)]
    [whole] = await moto_loc.complete_upload(key, upload_id, parts, ObjectMeta())
    assert unlisted.etag
    existing = await moto_loc.put(key, stream(b"older object"), 12, ObjectMeta())
    await moto_loc.delete(unlisted)  # a part piece: never the object at the upload's key
    with pytest.raises(NotFound):
        await moto_loc.get(unlisted)
    assert await collect(await moto_loc.get(existing)) == b"older object"
    assert whole.size == 8 * MiB
    assert await collect(await moto_loc.get(whole)) == first + src_data[MiB : 4 * MiB]


async def test_multipart_survives_restart(aws_s3_moto: S3Emulator, aws_s3_bucket: str) -> None:
    """All upload state is the backend's: a new translator (a restarted gateway) completes it."""
    before = make(aws_s3_moto, aws_s3_bucket)
    await before.open()
    upload_id = await before.create_upload("restart", ObjectMeta())
    part = await before.upload_part("restart", upload_id, 1, stream(b"hello"), 5)
    await before.close()

    after = make(aws_s3_moto, aws_s3_bucket)
    await after.open()
    try:
        [whole] = await after.complete_upload("restart", upload_id, [Part(1, part)], ObjectMeta())
        assert await collect(await after.get(whole)) == b"hello"
    finally:
        await after.close()


async def test_abort_cleans_up(moto_loc: AwsS3Translator, aws_s3_moto: S3Emulator,
                               aws_s3_bucket: str) -> None:
    upload_id = await moto_loc.create_upload("aborted", ObjectMeta())
    part = await moto_loc.upload_part("aborted", upload_id, 1, stream(b"data"), 4)
    native = aws_s3_moto.boto()
    assert len(native.list_multipart_uploads(Bucket=aws_s3_bucket)["Uploads"]) == 1
    await moto_loc.abort_upload("aborted", upload_id, [Part(1, part)])
    await moto_loc.abort_upload("aborted", upload_id, [Part(1, part)])  # idempotent
    assert not native.list_multipart_uploads(Bucket=aws_s3_bucket).get("Uploads")
    # (Using an aborted upload is NoSuchUpload -> NotFound on AWS; moto 5.2 answers 500 and
    # s3rver has no abort at all, so neither emulator can show it.)
    assert native.list_objects_v2(Bucket=aws_s3_bucket).get("KeyCount", 0) == 0


async def test_server_side_encryption(aws_s3_moto: S3Emulator, aws_s3_bucket: str) -> None:
    translator = make(aws_s3_moto, aws_s3_bucket, serverSideEncryption=True)
    await translator.open()
    native = aws_s3_moto.boto()
    try:
        stored = await translator.put("enc", stream(b"secret"), 6, ObjectMeta())
        assert stored.encryption == "AES256"
        copied = await translator.copy(stored, "enc-copy", ObjectMeta())
        assert copied is not None and copied.encryption == "AES256"
        upload_id = await translator.create_upload("enc-mpu", ObjectMeta())
        part = await translator.upload_part("enc-mpu", upload_id, 1, stream(b"p"), 1)
        [whole] = await translator.complete_upload("enc-mpu", upload_id, [Part(1, part)],
                                                   ObjectMeta())
        assert whole.encryption == "AES256"
        for key in ("enc", "enc-copy", "enc-mpu"):
            assert native.head_object(Bucket=aws_s3_bucket, Key=key)["ServerSideEncryption"] == "AES256"
    finally:
        await translator.close()


# ---- configuration --------------------------------------------------------------------------

GOOD = {"awsEndpoint": "127.0.0.1:9", "bucketName": "bkt",
        "credentials": {"accessKey": "a", "secretKey": "b"}}


@pytest.mark.parametrize(("change", "key"), [
    ({"bucketName": None}, "bucketName"),
    ({"bucketName": ""}, "bucketName"),
    ({"bucketName": "a/b"}, "bucketName"),
    ({"https": "yes"}, "https"),
    ({"pathStyle": 1}, "pathStyle"),
    ({"bucketMatch": "true"}, "bucketMatch"),
    ({"serverSideEncryption": "AES256"}, "serverSideEncryption"),
    ({"supportsVersioning": "no"}, "supportsVersioning"),
    ({"region": 5}, "region"),
    ({"awsEndpoint": "http://s3.example.com"}, "awsEndpoint"),
    ({"awsEndpoint": "host:port"}, "awsEndpoint"),
    ({"awsEndpoint": ""}, "awsEndpoint"),
    ({"credentials": {"accessKey": "a"}}, "credentials"),
    ({"credentials": "a:b"}, "credentials"),
    ({"credentials": None}, "credentials"),
    ({"credentialsProfile": "p"}, "credentialsProfile"),  # together with credentials
    ({"maxPoolConnections": 0}, "maxPoolConnections"),
])
def test_config_errors(change: dict[str, Any], key: str) -> None:
    details = {**GOOD, **change}
    details = {k: v for k, v in details.items() if v is not None}
    with pytest.raises(ConfigError) as info:
        AwsS3Translator("loc", details, {})
    assert info.value.key == key


def test_config_defaults_and_endpoint() -> None:
    translator = AwsS3Translator("loc", GOOD, {})
    assert translator.endpoint_url == "https://127.0.0.1:9"  # https is the default
    assert (translator.region, translator.path_style, translator.sse,
            translator.supports_versioning) == ("us-east-1", False, False, True)
    aws = AwsS3Translator("loc", {k: v for k, v in GOOD.items() if k != "awsEndpoint"}, {})
    assert aws.endpoint_url is None  # AWS itself: the SDK picks the regional endpoint


def test_env_credentials_must_come_in_pairs() -> None:
    with pytest.raises(ConfigError) as info:
        AwsS3Translator("loc", GOOD, {"loc_AWS_ACCESS_KEY_ID": "only-half"})
    assert info.value.key == "credentials"


async def test_missing_profile_fails_at_open(tmp_path: Path) -> None:
    credentials = tmp_path / "credentials"
    credentials.write_text("[other]\naws_access_key_id = a\naws_secret_access_key = b\n")
    details = {k: v for k, v in GOOD.items() if k != "credentials"}
    translator = AwsS3Translator("loc", {**details, "credentialsProfile": "nope"},
                                 {"AWS_SHARED_CREDENTIALS_FILE": str(credentials)})
    with pytest.raises(ConfigError) as info:
        await translator.open()
    assert info.value.key == "credentialsProfile" and "nope" in info.value.message


# ---- health and failures --------------------------------------------------------------------

async def test_check(aws_s3_moto: S3Emulator, aws_s3_bucket: str) -> None:
    good = make(aws_s3_moto, aws_s3_bucket)
    missing = make(aws_s3_moto, "no-such-bucket-here")
    unversioned = make(aws_s3_moto, aws_s3_moto.create_bucket(versioned=False))
    for translator in (good, missing, unversioned):
        await translator.open()
    try:
        assert (await good.check()).ok
        health = await missing.check()
        assert not health.ok and "NoSuchBucket" in health.message
        health = await unversioned.check()
        assert not health.ok and "versioning must be enabled" in health.message
    finally:
        for translator in (good, missing, unversioned):
            await translator.close()


async def test_emulator_stopped_mid_test(aws_s3_throwaway: Callable[[], S3Emulator]) -> None:
    emulator = aws_s3_throwaway()
    bucket = emulator.create_bucket()
    translator = make(emulator, bucket)
    await translator.open()
    try:
        stored = await translator.put("k", stream(b"abc"), 3, ObjectMeta())
        assert (await translator.check()).ok
        emulator.stop()
        started = time.monotonic()
        with pytest.raises(BotoCoreError):
            await translator.get(stored)
        with pytest.raises(BotoCoreError):
            await translator.put("k2", stream(b"abc"), 3, ObjectMeta())
        health = await translator.check()
        assert not health.ok and "testing" not in health.message  # no secrets
        assert time.monotonic() - started < 5
    finally:
        await translator.close()


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A port that accepts connections and never answers (a hung backend)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join(2)
    for conn in accepted:
        conn.close()
    listener.close()


async def test_hung_backend_times_out(silent_server: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(aws_s3_module, "_READ_TIMEOUT", 1)
    translator = AwsS3Translator("loc", {**GOOD, "awsEndpoint": f"127.0.0.1:{silent_server}",
                                         "https": False}, {})
    await translator.open()
    try:
        started = time.monotonic()
        with pytest.raises(BotoCoreError):
            await translator.head(Stored(location="loc", key="k", size=1))
        assert time.monotonic() - started < 5
    finally:
        await translator.close()


@pytest.fixture
def scripted_backend() -> Iterator[Callable[[bytes, str], int]]:
    """A port whose every connection gets one canned GET answer, then (`after`) is closed
    ("close") or left silent ("hang"): a backend that breaks off mid-body."""
    listeners: list[socket.socket] = []
    stop = threading.Event()

    def serve(listener: socket.socket, answer: bytes, after: str) -> None:
        listener.settimeout(0.2)
        held: list[socket.socket] = []
        while not stop.is_set():
            try:
                conn = listener.accept()[0]
            except OSError:
                continue
            request = b""
            while b"\r\n\r\n" not in request:
                request += conn.recv(65536) or b"\r\n\r\n"
            conn.sendall(answer)
            if after == "close":
                conn.close()
            else:
                held.append(conn)
        for conn in held:
            conn.close()

    def start(answer: bytes, after: str) -> int:
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        listeners.append(listener)
        threading.Thread(target=serve, args=(listener, answer, after), daemon=True).start()
        return listener.getsockname()[1]

    yield start
    stop.set()
    time.sleep(0.3)
    for listener in listeners:
        listener.close()


def _answer(body: bytes, length: int | None = None, chunked: bool = False) -> bytes:
    head = b"HTTP/1.1 200 OK\r\nETag: \"e\"\r\nContent-Type: binary/octet-stream\r\n"
    if chunked:
        framed = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + 1000]), body[i:i + 1000])
                          for i in range(0, len(body), 1000))
        return head + b"Transfer-Encoding: chunked\r\n\r\n" + framed + b"0\r\n\r\n"
    return head + b"Content-Length: %d\r\n\r\n" % (len(body) if length is None else length) + body


@pytest.mark.parametrize("after", ["close", "hang"])
async def test_a_body_cut_short_is_unavailable(
        scripted_backend: Callable[[bytes, str], int], after: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The body is read chunk by chunk straight from aiohttp (aws_s3._read_body): a backend
    that stops early (closes, or goes silent past the read timeout) still fails the GET
    (Unavailable through the wrappers), never ends it as if complete."""
    monkeypatch.setattr(aws_s3_module, "_READ_TIMEOUT", 1)
    port = scripted_backend(_answer(pattern(3, 300_000), length=1_000_000), after)
    translator = AwsS3Translator("loc", {**GOOD, "awsEndpoint": f"127.0.0.1:{port}",
                                         "https": False, "supportsVersioning": False}, {})
    store = Boundary(translator)
    await translator.open()
    try:
        started = time.monotonic()
        stream = await store.get(Stored(location="loc", key="k", size=1_000_000, etag="e"))
        received = 0
        with pytest.raises(Unavailable):
            async for chunk in stream:
                received += len(chunk)
        assert received <= 300_000
        assert time.monotonic() - started < 5
    finally:
        await translator.close()


async def test_a_chunked_body_is_read_whole(
        scripted_backend: Callable[[bytes, str], int]) -> None:
    """An S3-compatible backend may answer without Content-Length (chunked): every byte
    arrives, the HTTP chunks' ends are no empty chunks of the object."""
    data = pattern(4, 123_457)
    port = scripted_backend(_answer(data, chunked=True), "close")
    translator = AwsS3Translator("loc", {**GOOD, "awsEndpoint": f"127.0.0.1:{port}",
                                         "https": False, "supportsVersioning": False}, {})
    await translator.open()
    try:
        chunks = [c async for c in await translator.get(
            Stored(location="loc", key="k", size=len(data), etag="e"))]
        assert b"".join(chunks) == data and all(chunks)
    finally:
        await translator.close()


# ---- a second S3-compatible implementation, configured only through awsEndpoint -----------

@pytest.fixture
async def s3rver_loc(aws_s3_s3rver: S3Emulator) -> AsyncIterator[AwsS3Translator]:
    bucket = aws_s3_s3rver.create_bucket(versioned=False)
    translator = make(aws_s3_s3rver, bucket, supportsVersioning=False)
    await translator.open()
    yield translator
    await translator.close()


async def test_s3rver_round_trip(s3rver_loc: AwsS3Translator, aws_s3_s3rver: S3Emulator) -> None:
    assert (await s3rver_loc.check()).ok
    data = pattern(7, 2 * MiB + 3)
    stored = await s3rver_loc.put("bkt/obj", stream(data), len(data), META)
    assert stored.etag == hashlib.md5(data).hexdigest()
    assert await collect(await s3rver_loc.get(stored, MiB, 10)) == data[MiB : MiB + 10]
    native = aws_s3_s3rver.boto()
    obj = native.head_object(Bucket=s3rver_loc.bucket, Key="bkt/obj")
    assert obj["Metadata"]["color"] == "blue" and obj["ContentType"] == META.content_type

    copied = await s3rver_loc.copy(stored, "bkt/copy", ObjectMeta(user={"c": "1"}))
    assert copied is not None
    assert await collect(await s3rver_loc.get(copied)) == data

    upload_id = await s3rver_loc.create_upload("bkt/mpu", ObjectMeta())
    first = pattern(8, 5 * MiB)
    part1 = await s3rver_loc.upload_part("bkt/mpu", upload_id, 1, stream(first), len(first))
    part2 = await s3rver_loc.upload_part("bkt/mpu", upload_id, 2, stream(b"tail"), 4)
    [whole] = await s3rver_loc.complete_upload("bkt/mpu", upload_id,
                                               [Part(1, part1), Part(2, part2)], ObjectMeta())
    assert whole.size == len(first) + 4
    assert await collect(await s3rver_loc.get(whole, len(first) - 2, 4)) == first[-2:] + b"ta"

    await s3rver_loc.delete(stored)
    await s3rver_loc.delete(stored)
    with pytest.raises(NotFound):
        await s3rver_loc.head(stored)


async def test_s3rver_credentials(aws_s3_s3rver: S3Emulator, tmp_path: Path) -> None:
    """Wrong keys fail; keys from the environment or a profile visibly win."""
    bucket = aws_s3_s3rver.create_bucket(versioned=False)
    # s3rver checks the access key id of V4 requests (not the signature itself).
    wrong = {"accessKey": "NOT-S3RVER", "secretKey": "sekrit-value"}
    base = aws_s3_s3rver.details(bucket, supportsVersioning=False)
    bad = AwsS3Translator("s3r", {**base, "credentials": wrong}, {})
    from_env = AwsS3Translator("s3r", {**base, "credentials": wrong},
                               {"s3r_AWS_ACCESS_KEY_ID": "S3RVER",
                                "s3r_AWS_SECRET_ACCESS_KEY": "S3RVER"})
    credentials = tmp_path / "credentials"
    credentials.write_text("[emu]\naws_access_key_id = S3RVER\naws_secret_access_key = S3RVER\n")
    no_inline = {k: v for k, v in base.items() if k != "credentials"}
    profile = AwsS3Translator("s3r", {**no_inline, "credentialsProfile": "emu"},
                              {"AWS_SHARED_CREDENTIALS_FILE": str(credentials)})
    env_profile = AwsS3Translator("s3r", no_inline, {"AWS_SHARED_CREDENTIALS_FILE": str(credentials),
                                                     "AWS_PROFILE": "emu"})
    translators = [bad, from_env, profile, env_profile]
    for translator in translators:
        await translator.open()
    try:
        health = await bad.check()
        assert not health.ok and "403" in health.message  # HEAD answers carry no body
        assert "sekrit" not in health.message
        for translator in translators[1:]:
            assert (await translator.check()).ok
        stored = await profile.put("p", stream(b"via profile"), 11, ObjectMeta())
        assert await collect(await from_env.get(stored)) == b"via profile"
    finally:
        for translator in translators:
            await translator.close()


async def test_concurrent_requests_share_the_pool(moto_loc: AwsS3Translator) -> None:
    stored = await asyncio.gather(*[
        moto_loc.put(f"c/{i}", stream(pattern(i, 1000)), 1000, ObjectMeta()) for i in range(8)])
    bodies = await asyncio.gather(*[collect(await moto_loc.get(s)) for s in stored])
    assert bodies == [pattern(i, 1000) for i in range(8)]


# ---- unique keys: unpinned deletes, fsck listings, retried parts, refused requests ---------

async def test_delete_without_pin_removes_every_version(
        moto_loc: AwsS3Translator, aws_s3_moto: S3Emulator, aws_s3_bucket: str) -> None:
    """A record-less delete (the collector dropping an uncommitted write) removes every
    version and delete marker at exactly that key, and nothing at a longer key."""
    key = "b/k~0123456789abcdef01234567"
    first = await moto_loc.put(key, stream(b"one"), 3, ObjectMeta())
    await moto_loc.put(key, stream(b"two!"), 4, ObjectMeta())
    native = aws_s3_moto.boto()
    native.delete_object(Bucket=aws_s3_bucket, Key=key)  # a delete marker on top
    neighbour = await moto_loc.put(key + "x", stream(b"keep"), 4, ObjectMeta())
    listed = native.list_object_versions(Bucket=aws_s3_bucket, Prefix=key)
    assert len(listed["Versions"]) == 3 and len(listed["DeleteMarkers"]) == 1

    await moto_loc.delete(Stored(location=first.location, key=key, size=0))
    listed = native.list_object_versions(Bucket=aws_s3_bucket, Prefix=key)
    assert [(v["Key"], v["VersionId"]) for v in listed.get("Versions", [])] == [
        (neighbour.key, neighbour.version_id)]
    assert not listed.get("DeleteMarkers")
    await moto_loc.delete(Stored(location=first.location, key=key, size=0))  # gone: success
    assert await collect(await moto_loc.get(neighbour)) == b"keep"


async def test_delete_without_pin_unversioned(aws_s3_moto: S3Emulator) -> None:
    bucket = aws_s3_moto.create_bucket(versioned=False)
    translator = make(aws_s3_moto, bucket, supportsVersioning=False)
    await translator.open()
    try:
        stored = await translator.put("k~1", stream(b"abc"), 3, ObjectMeta())
        await translator.delete(Stored(location=stored.location, key="k~1", size=0))
        assert aws_s3_moto.boto().list_objects_v2(Bucket=bucket).get("KeyCount", 0) == 0
    finally:
        await translator.close()


async def test_list_pieces(moto_loc: AwsS3Translator, monkeypatch: pytest.MonkeyPatch) -> None:
    """Puts, copies and every version under the prefix, page by page; nothing else (not the
    parts of an open native upload: they are no objects)."""
    monkeypatch.setattr(aws_s3_module, "_PAGE_SIZE", 2)  # several pages from a few objects
    a = await moto_loc.put("p/a", stream(b"a"), 1, ObjectMeta())
    a2 = await moto_loc.put("p/a", stream(b"a2"), 2, ObjectMeta())  # a second version
    b = await moto_loc.put("p/b", stream(b"bb"), 2, ObjectMeta())
    c = await moto_loc.copy(a, "p/c", ObjectMeta())
    assert c is not None
    outside = await moto_loc.put("q/outside", stream(b"q"), 1, ObjectMeta())
    upload_id = await moto_loc.create_upload("p/mpu", ObjectMeta())
    await moto_loc.upload_part("p/mpu", upload_id, 1, stream(b"part"), 4)

    listed = [piece async for piece in moto_loc.list_pieces("p/")]
    expected = {a, a2, b, c}
    assert {moto_loc.piece_id(p) for p in listed} == {moto_loc.piece_id(p) for p in expected}
    assert len(listed) == 4
    assert {(p.key, p.size, p.version_id, p.etag) for p in listed} == {
        (p.key, p.size, p.version_id, p.etag) for p in expected}
    everything = [piece async for piece in moto_loc.list_pieces()]
    assert {moto_loc.piece_id(p) for p in everything} == {
        moto_loc.piece_id(p) for p in (a, a2, b, c, outside)}
    await moto_loc.abort_upload("p/mpu", upload_id, [])


async def test_list_pieces_unversioned(aws_s3_moto: S3Emulator) -> None:
    bucket = aws_s3_moto.create_bucket(versioned=False)
    translator = make(aws_s3_moto, bucket, supportsVersioning=False)
    await translator.open()
    try:
        one = await translator.put("p/1", stream(b"1"), 1, ObjectMeta())
        two = await translator.copy(one, "p/2", ObjectMeta())
        await translator.put("other", stream(b"o"), 1, ObjectMeta())
        assert two is not None
        listed = [piece async for piece in translator.list_pieces("p/")]
        assert sorted((p.key, p.size, p.version_id) for p in listed) == [
            ("p/1", 1, None), ("p/2", 1, None)]
        assert [translator.piece_id(p) for p in sorted(listed, key=lambda p: p.key)] == [
            "p/1", "p/2"]
    finally:
        await translator.close()


async def delayed(seconds: float, call: Awaitable[T]) -> T:
    await asyncio.sleep(seconds)
    return await call


async def test_retried_part_races_completion(moto_loc: AwsS3Translator) -> None:
    """A part re-uploaded while the completion that lists its first attempt runs: the object
    is the listed bytes or the completion fails; never the re-uploaded bytes."""
    outcomes: dict[str, int] = {}
    for trial in range(12):
        key = f"race-{trial}"
        upload_id = await moto_loc.create_upload(key, ObjectMeta())
        listed = await moto_loc.upload_part(key, upload_id, 1, stream(b"listed"), 6)
        retry = moto_loc.upload_part(key, upload_id, 1, stream(b"RETRIED!"), 8)
        complete = delayed(trial % 4 * 0.004, moto_loc.complete_upload(
            key, upload_id, [Part(1, listed)], ObjectMeta()))
        result, _ = await asyncio.wait_for(
            asyncio.gather(complete, retry, return_exceptions=True), 30)
        if isinstance(result, BaseException):
            assert isinstance(result, Precondition), result
            outcomes["refused"] = outcomes.get("refused", 0) + 1
            await moto_loc.abort_upload(key, upload_id, [])
        else:
            assert await collect(await moto_loc.get(result[0])) == b"listed"
            outcomes["listed bytes"] = outcomes.get("listed bytes", 0) + 1
    assert sum(outcomes.values()) == 12
    print(f"retried part vs completion: {outcomes}")


async def test_backend_4xx_is_rejected(moto_loc: AwsS3Translator, aws_s3_moto: S3Emulator,
                                       aws_s3_bucket: str) -> None:
    """A request the backend refuses for what it carries is Rejected (the client's 400), not
    a backend failure that would count against the location's health."""
    for tags in ({"aws:reserved": "1"}, {"k": "v" * 300},
                 {f"t{i}": "v" for i in range(11)}):
        with pytest.raises(Rejected):
            await moto_loc.put("tagged", stream(b"x"), 1, ObjectMeta(tags=tags))
    stored = await moto_loc.put("tagged", stream(b"x"), 1, ObjectMeta())
    with pytest.raises(Rejected, match="InvalidTag"):
        await moto_loc.update_meta(stored, ObjectMeta(tags={"k" * 200: "v"}))
    with pytest.raises(Rejected, match="InvalidTag"):
        await moto_loc.copy(stored, "tagged-copy", ObjectMeta(tags={"aws:x": "1"}))
    # (moto stores such a copy before refusing its tags; AWS refuses first.)
    native = aws_s3_moto.boto()
    assert native.get_object_tagging(Bucket=aws_s3_bucket, Key="tagged")["TagSet"] == []

    # A missing backend bucket is the location's problem: Unavailable (counts against health).
    gone = make(aws_s3_moto, "no-such-bucket-at-all")
    await gone.open()
    try:
        with pytest.raises(Unavailable, match="NoSuchBucket"):
            await gone.put("k", stream(b"x"), 1, ObjectMeta())
    finally:
        await gone.close()


async def test_wrong_credentials_are_unauthenticated(aws_s3_s3rver: S3Emulator) -> None:
    bucket = aws_s3_s3rver.create_bucket(versioned=False)
    details = aws_s3_s3rver.details(bucket, supportsVersioning=False,
                                    credentials={"accessKey": "WRONG", "secretKey": "x"})
    translator = AwsS3Translator("s3r", details, {})
    await translator.open()
    try:
        with pytest.raises(Unauthenticated) as caught:  # a configuration problem, no outage
            await translator.put("k", stream(b"x"), 1, ObjectMeta())
        assert caught.value.__cause__.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    finally:
        await translator.close()


@pytest.mark.parametrize(("status", "code", "expected"), [
    (400, "InvalidTag", Rejected),
    (400, "KeyTooLongError", Rejected),
    (400, "EntityTooLarge", Rejected),
    (400, "InvalidArgument", Rejected),
    (404, "NoSuchKey", NotFound),
    (404, "NoSuchBucket", Unavailable),
    (409, "OperationAborted", Precondition),
    (412, "PreconditionFailed", Precondition),
    (403, "AccessDenied", PermissionDenied),
    (403, "SignatureDoesNotMatch", Unauthenticated),
    (400, "ExpiredToken", Unauthenticated),
    (401, "Unauthorized", Unauthenticated),
    (501, "NotImplemented", NotSupported),
    (503, "SlowDown", Throttled),
    (429, "TooManyRequests", Throttled),
    (503, "ServiceUnavailable", Unavailable),
    (500, "InternalError", Unavailable),
])
def test_error_mapping(status: int, code: str, expected: type[Exception]) -> None:
    """The one mapping of S3 error answers (emulators cannot produce throttling or auth
    expiry on demand, so the answers are built as botocore builds them)."""
    error = ClientError({"Error": {"Code": code, "Message": "m"},
                         "ResponseMetadata": {"HTTPStatusCode": status}}, "PutObject")
    with pytest.raises(expected) as caught:
        aws_s3_module._translate(error, "k")
    assert caught.value.__cause__ is error
