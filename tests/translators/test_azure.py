"""AzureTranslator against Azurite: no mocks; what lands on the emulator is read back with the
Azure SDK itself. What every location type does alike is in test_conformance.py."""

from __future__ import annotations

import asyncio
import hashlib
import random
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import pytest
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.storage.blob import ContainerSasPermissions, generate_container_sas

from gateway.translators import azure as azure_module
from gateway.translators.azure import (
    TAGS_METADATA_NAME,
    AzureTranslator,
    decode_metadata,
    decode_metadata_name,
    decode_metadata_value,
    encode_metadata_name,
    encode_metadata_value,
)
from gateway.translators.base import (
    AlreadyExists,
    ConfigError,
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
    Unauthenticated,
    Unavailable,
)
from tests.clouds.azure import ACCOUNT_KEY, ACCOUNT_NAME, Azurite

pytestmark = pytest.mark.azure

MiB = 1024 * 1024
T = TypeVar("T")


# --- deterministic test data, generated chunk by chunk (never 100 MiB at once) ---------------

def chunk(seed: str, index: int, size: int = MiB) -> bytes:
    return random.Random(f"{seed}:{index}").randbytes(size)


async def body(seed: str, size: int, chunk_size: int = MiB) -> AsyncIterator[bytes]:
    """`size` bytes in chunks of `chunk_size` (the last one shorter)."""
    for index, start in enumerate(range(0, size, chunk_size)):
        yield chunk(seed, index, min(chunk_size, size - start))
        await asyncio.sleep(0)


def data(seed: str, size: int, chunk_size: int = MiB) -> bytes:
    return b"".join(chunk(seed, i, min(chunk_size, size - s))
                    for i, s in enumerate(range(0, size, chunk_size)))


async def one_shot(payload: bytes) -> AsyncIterator[bytes]:
    yield payload


async def read_all(stream: AsyncIterator[bytes]) -> bytes:
    return b"".join([piece async for piece in stream])


async def md5_of_stream(stream: AsyncIterator[bytes]) -> tuple[str, int]:
    digest, size = hashlib.md5(), 0
    async for piece in stream:
        digest.update(piece)
        size += len(piece)
    return digest.hexdigest(), size


class ClientGone(Exception):
    """What a body raises when the S3 client disconnects."""


async def failing_body(good_bytes: int) -> AsyncIterator[bytes]:
    yield b"x" * good_bytes
    raise ClientGone("client went away")


# --- fixtures ---------------------------------------------------------------------------------

@pytest.fixture
async def translator(azurite: Azurite, azure_container: str) -> AsyncIterator[AzureTranslator]:
    location = AzureTranslator("az1", azurite.details(azure_container), {})
    await location.open()
    yield location
    await location.close()


@pytest.fixture
async def sdk(azurite: Azurite, azure_container: str) -> AsyncIterator[Any]:
    """The container as the Azure SDK sees it."""
    async with azurite.container_client(azure_container) as client:
        yield client


FULL_META = ObjectMeta(
    content_type="text/plain; charset=utf-8",
    cache_control="max-age=60",
    content_disposition='attachment; filename="a.txt"',
    content_encoding="identity",
    content_language="fr",
    user={"color": "blue", "x-request-id": "42", "Ünï_cøde": " välue ", "empty": "", "9lives": "=?x"},
    tags={"project": "alpha", "env": "dev stage"},
)


# --- plain objects ----------------------------------------------------------------------------

async def test_put_get_head_native_form(translator: AzureTranslator, sdk: Any) -> None:
    payload = b"hello azure"
    stored = await translator.put("bkt/dir/hello.txt", one_shot(payload), len(payload), FULL_META)
    assert (stored.location, stored.key, stored.size) == ("az1", "bkt/dir/hello.txt", len(payload))
    assert stored.etag and stored.encryption == "AES256"
    assert await read_all(await translator.get(stored)) == payload
    assert await translator.head(stored) == stored

    blob = sdk.get_blob_client("bkt/dir/hello.txt")
    props = await blob.get_blob_properties()
    assert props.size == len(payload)
    settings = props.content_settings
    assert (settings.content_type, settings.cache_control, settings.content_disposition,
            settings.content_encoding, settings.content_language) == (
        FULL_META.content_type, FULL_META.cache_control, FULL_META.content_disposition,
        FULL_META.content_encoding, FULL_META.content_language)
    assert await blob.get_blob_tags() == FULL_META.tags  # native blob index tags
    assert props.metadata["color"] == "blue"  # plain names stay readable
    assert props.metadata["_x_2Drequest_2Did"] == "42"
    decoded = decode_metadata(props.metadata, await blob.get_blob_tags())
    assert decoded.user == FULL_META.user
    assert decoded.tags == FULL_META.tags
    assert await (await blob.download_blob()).readall() == payload


async def test_streamed_put_is_split_into_blocks(translator: AzureTranslator, sdk: Any) -> None:
    translator.block_size = 3 * MiB
    translator.single_put_max = MiB
    size = 10 * MiB + 5
    stored = await translator.put("big", body("s", size, 700 * 1024), size, ObjectMeta())
    assert stored.size == size
    digest, length = await md5_of_stream(await translator.get(stored))
    assert (digest, length) == (hashlib.md5(data("s", size, 700 * 1024)).hexdigest(), size)
    committed, uncommitted = await sdk.get_blob_client("big").get_block_list("all")
    assert [block.size for block in committed] == [3 * MiB, 3 * MiB, 3 * MiB, MiB + 5]
    assert len({len(block.id) for block in committed}) == 1
    assert uncommitted == []


@pytest.mark.parametrize("size", [100, 5 * MiB])  # single Put Blob, staged blocks
async def test_failing_body_is_reraised_and_leaves_blob_intact(
    translator: AzureTranslator, sdk: Any, size: int
) -> None:
    translator.block_size = 2 * MiB
    translator.single_put_max = MiB
    before = await translator.put("keep", one_shot(b"before"), 6, ObjectMeta())
    with pytest.raises(ClientGone):
        await translator.put("keep", failing_body(size // 2), size, ObjectMeta())
    with pytest.raises(ClientGone):
        await translator.put("fresh", failing_body(size // 2), size, ObjectMeta())
    assert await read_all(await translator.get(before)) == b"before"
    assert [blob.name async for blob in sdk.list_blobs()] == ["keep"]


async def test_short_and_long_bodies_fail_promptly(translator: AzureTranslator, sdk: Any) -> None:
    translator.single_put_max = MiB
    for size, actual in [(5 * MiB, 3 * MiB), (100, 50), (3 * MiB, 4 * MiB), (10, 11)]:
        with pytest.raises(ValueError, match="body"):
            await asyncio.wait_for(
                translator.put("short", one_shot(b"z" * actual), size, ObjectMeta()), 20)
    assert [blob.name async for blob in sdk.list_blobs()] == []


# --- copy ---------------------------------------------------------------------------------------

async def test_copy_of_missing_or_replaced_source(translator: AzureTranslator) -> None:
    with pytest.raises(NotFound):
        await translator.copy(Stored(location="az1", key="ghost", size=1), "x", ObjectMeta())
    old = await translator.put("moving", one_shot(b"1"), 1, ObjectMeta())
    await translator.put("moving", one_shot(b"2"), 1, ObjectMeta())
    with pytest.raises(NotFound):
        await translator.copy(old, "x", ObjectMeta())


async def test_copy_between_locations_of_one_account(
    translator: AzureTranslator, azurite: Azurite
) -> None:
    other_container = await azurite.create_container()
    other = AzureTranslator("az2", azurite.details(other_container), {})
    await other.open()
    try:
        src = await translator.put("from-az1", one_shot(b"cross"), 5, ObjectMeta())
        dst = await other.copy(src, "to-az2", ObjectMeta(user={"k": "v"}))
        assert dst is not None and dst.location == "az2"
        assert await read_all(await other.get(dst)) == b"cross"
        unknown = Stored(location="elsewhere", key="k", size=1)
        assert await other.copy(unknown, "x", ObjectMeta()) is None  # caller streams
    finally:
        await other.close()


# --- multipart --------------------------------------------------------------------------------

@pytest.mark.slow
async def test_multipart_100_mib(translator: AzureTranslator, sdk: Any) -> None:
    part_size = 25 * MiB
    key = "bkt/mpu-100"
    upload_id = await translator.create_upload(key, FULL_META)
    parts = []
    started = time.monotonic()
    for number in range(1, 5):
        stored = await translator.upload_part(
            key, upload_id, number, body(f"p{number}", part_size), part_size)
        assert stored.size == part_size
        parts.append(Part(number, stored))
    pieces = await translator.complete_upload(key, upload_id, parts, FULL_META)
    upload_seconds = time.monotonic() - started
    assert len(pieces) == 1 and pieces[0].size == 100 * MiB and pieces[0].key == key

    expected = hashlib.md5()
    for number in range(1, 5):
        async for piece in body(f"p{number}", part_size):
            expected.update(piece)
    started = time.monotonic()
    assert await md5_of_stream(await translator.get(pieces[0])) == (expected.hexdigest(), 100 * MiB)
    download_seconds = time.monotonic() - started
    print(f"100 MiB multipart: upload {upload_seconds:.2f}s, download {download_seconds:.2f}s")

    # A range across the boundary between parts 1 and 2.
    boundary_range = await read_all(await translator.get(pieces[0], part_size - 1000, 3000))
    assert boundary_range == chunk("p1", 24)[-1000:] + chunk("p2", 0)[:2000]

    blob = sdk.get_blob_client(key)
    props = await blob.get_blob_properties()
    assert props.size == 100 * MiB
    assert props.content_settings.content_type == FULL_META.content_type
    assert decode_metadata(props.metadata, await blob.get_blob_tags()).user == FULL_META.user
    assert await blob.get_blob_tags() == FULL_META.tags


async def test_multipart_sub_blocks_reupload_and_unlisted_parts(
    translator: AzureTranslator, sdk: Any
) -> None:
    translator.block_size = 2 * MiB
    key = "mpu"
    upload_id = await translator.create_upload(key, ObjectMeta())
    first = await translator.upload_part(key, upload_id, 1, body("a", 5 * MiB), 5 * MiB)
    assert first.etag is not None and first.etag.endswith(":3")  # 2 + 2 + 1 MiB sub-blocks
    second = await translator.upload_part(key, upload_id, 2, body("b", 3 * MiB), 3 * MiB)
    await translator.upload_part(key, upload_id, 3, body("c", MiB), MiB)  # never listed
    again = await translator.upload_part(key, upload_id, 1, body("A", 4 * MiB), 4 * MiB)
    assert again.etag != first.etag
    await translator.delete(first)  # dropping a replaced part's piece must be harmless

    pieces = await translator.complete_upload(
        key, upload_id, [Part(1, again), Part(2, second)], ObjectMeta())
    assert pieces[0].size == 7 * MiB
    got = await read_all(await translator.get(pieces[0]))
    assert got == data("A", 4 * MiB) + data("b", 3 * MiB)
    committed, uncommitted = await sdk.get_blob_client(key).get_block_list("all")
    assert [block.size for block in committed] == [2 * MiB, 2 * MiB, 2 * MiB, MiB]
    assert len({len(block.id) for block in committed}) == 1
    assert uncommitted == []  # the commit dropped part 3 and the first attempt of part 1


async def test_multipart_empty_last_part(translator: AzureTranslator) -> None:
    upload_id = await translator.create_upload("mpu0", ObjectMeta())
    one = await translator.upload_part("mpu0", upload_id, 1, one_shot(b"abc"), 3)
    two = await translator.upload_part("mpu0", upload_id, 2, one_shot(b""), 0)
    pieces = await translator.complete_upload(
        "mpu0", upload_id, [Part(1, one), Part(2, two)], ObjectMeta())
    assert await read_all(await translator.get(pieces[0])) == b"abc"


async def test_abort_leaves_nothing_and_keeps_existing_blob(
    translator: AzureTranslator, sdk: Any
) -> None:
    before = await translator.put("kept", one_shot(b"original"), 8, ObjectMeta(user={"v": "1"}))
    for key in ("kept", "never"):
        upload_id = await translator.create_upload(key, ObjectMeta())
        part = await translator.upload_part(key, upload_id, 1, body("x", 2 * MiB), 2 * MiB)
        await translator.abort_upload(key, upload_id, [Part(1, part)])
        await translator.abort_upload(key, upload_id, [Part(1, part)])  # idempotent
    assert [blob.name async for blob in sdk.list_blobs()] == ["kept"]
    assert await read_all(await translator.get(before)) == b"original"
    assert (await sdk.get_blob_client("kept").get_blob_properties()).metadata == {"v": "1"}
    with pytest.raises(ResourceNotFoundError):
        await sdk.get_blob_client("never").get_blob_properties()


async def test_complete_after_blocks_were_discarded_is_a_precondition(
    translator: AzureTranslator,
) -> None:
    upload_id = await translator.create_upload("raced", ObjectMeta())
    part = await translator.upload_part("raced", upload_id, 1, one_shot(b"p"), 1)
    other = await translator.create_upload("raced", ObjectMeta())
    other_part = await translator.upload_part("raced", other, 1, one_shot(b"q"), 1)
    await translator.complete_upload("raced", other, [Part(1, other_part)], ObjectMeta())
    with pytest.raises(Precondition):
        await translator.complete_upload("raced", upload_id, [Part(1, part)], ObjectMeta())


async def test_unknown_upload_id(translator: AzureTranslator) -> None:
    with pytest.raises(NotFound):
        await translator.upload_part("k", "not-ours", 1, one_shot(b"p"), 1)


# --- metadata and tags --------------------------------------------------------------------------

METADATA_NAMES = ["color", "Color2", "my_key", "x-amz-thing", "_lead", "9lives", "a.b", "ünï",
                  "a__b", "a_2Db", "", "-", "_", "__s3tags", "s3tags", "emoji😀"]


def test_metadata_names_are_reversible_identifiers() -> None:
    encoded = [encode_metadata_name(name) for name in METADATA_NAMES]
    for name, enc in zip(METADATA_NAMES, encoded, strict=True):
        assert re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", enc), (name, enc)
        assert decode_metadata_name(enc) == name
    assert len(set(encoded)) == len(encoded)
    assert TAGS_METADATA_NAME not in encoded
    with pytest.raises(ValueError):
        decode_metadata_name(TAGS_METADATA_NAME)
    assert encode_metadata_name("content-md5") == "_content_2Dmd5"


def test_metadata_values_are_reversible_ascii() -> None:
    for value in ["plain", "", " padded ", "café", "=?UTF-8?B?Zm9v?=", "tab\there", "日本"]:
        enc = encode_metadata_value(value)
        assert enc.isascii() and enc == enc.strip() and enc
        assert decode_metadata_value(enc) == value
    assert encode_metadata_value("plain") == "plain"


async def test_unindexable_tags_go_to_metadata(translator: AzureTranslator, sdk: Any) -> None:
    tags = {"owner": "me@example.com", "ünï": "x"}
    stored = await translator.put("tagged", one_shot(b"t"), 1, ObjectMeta(tags=tags))
    blob = sdk.get_blob_client("tagged")
    props = await blob.get_blob_properties()
    assert TAGS_METADATA_NAME in props.metadata
    assert decode_metadata(props.metadata, await blob.get_blob_tags()).tags == tags
    assert await read_all(await translator.get(stored)) == b"t"


async def test_update_meta(translator: AzureTranslator, sdk: Any) -> None:
    meta = ObjectMeta(user={"a": "1"}, tags={"t": "1"})
    stored = await translator.put("upd", one_shot(b"u"), 1, meta)
    retagged = await translator.update_meta(stored, ObjectMeta(user={"a": "1"}, tags={"t": "2"}))
    assert retagged.etag == stored.etag  # index tags do not change the blob
    blob = sdk.get_blob_client("upd")
    assert await blob.get_blob_tags() == {"t": "2"}
    changed = await translator.update_meta(
        retagged, ObjectMeta(user={"b-c": "2"}, tags={"mail": "a@b"}))
    props = await blob.get_blob_properties()
    assert changed.etag == props.etag
    assert decode_metadata(props.metadata, await blob.get_blob_tags()) == ObjectMeta(
        user={"b-c": "2"}, tags={"mail": "a@b"})
    assert await read_all(await translator.get(changed)) == b"u"


# --- configuration --------------------------------------------------------------------------------

BASE_DETAILS = {
    "azureStorageEndpoint": "https://acct.blob.core.windows.net",
    "azureContainerName": "container-1",
    "azureStorageAccountName": "acct",
    "azureStorageAccessKey": ACCOUNT_KEY,
    "bucketMatch": True,
}


@pytest.mark.parametrize(
    ("changes", "key"),
    [
        ({"azureStorageEndpoint": None}, "azureStorageEndpoint"),
        ({"azureStorageEndpoint": "ftp://x"}, "azureStorageEndpoint"),
        ({"azureStorageEndpoint": "https://a.blob.core.windows.net/?sig=x"}, "azureStorageEndpoint"),
        ({"azureStorageEndpoint": 42}, "azureStorageEndpoint"),
        ({"azureContainerName": None}, "azureContainerName"),
        ({"azureContainerName": "ab"}, "azureContainerName"),
        ({"azureContainerName": "Upper"}, "azureContainerName"),
        ({"azureContainerName": "a--b"}, "azureContainerName"),
        ({"azureContainerName": "my.bucket"}, "azureContainerName"),
        ({"bucketMatch": "yes"}, "bucketMatch"),
        ({"azureStorageAccountName": "Bad_Name"}, "azureStorageAccountName"),
        ({"azureStorageAccountName": None}, "azureStorageAccountName"),
        ({"azureStorageAccessKey": "not base64!"}, "azureStorageAccessKey"),
        ({"azureStorageAccessKey": None}, "azureStorageAccessKey"),  # no credentials at all
        ({"authMethod": "magic"}, "authMethod"),
        ({"azureStorageAccessKey": None, "sasToken": "sv=2020&sp=r"}, "sasToken"),
        ({"azureStorageAccessKey": None, "clientKey": "s", "tenantId": "t"}, "clientId"),
    ],
)
def test_config_errors_name_the_key(changes: dict[str, Any], key: str) -> None:
    details = {k: v for k, v in {**BASE_DETAILS, **changes}.items() if v is not None}
    with pytest.raises(ConfigError) as caught:
        AzureTranslator("loc", details, {})
    assert caught.value.key == key
    assert ACCOUNT_KEY not in str(caught.value)


def test_valid_configurations() -> None:
    shared = AzureTranslator("loc", BASE_DETAILS, {})
    assert shared.settings.auth_method == "shared-key"
    assert shared.settings.bucket_match is True
    sas = AzureTranslator("loc", {**BASE_DETAILS, "azureStorageAccessKey": None,
                                  "sasToken": "?sv=2020&sig=abc"}, {})
    assert (sas.settings.auth_method, sas.settings.sas_token) == (
        "shared-access-signature", "sv=2020&sig=abc")
    principal = AzureTranslator("loc", {**BASE_DETAILS, "azureStorageAccessKey": None,
                                        "tenantId": "t", "clientId": "c", "clientKey": "k"}, {})
    assert principal.settings.auth_method == "client-secret"


def test_environment_overrides_the_file() -> None:
    env = {
        "loc_AZURE_STORAGE_ENDPOINT": "http://127.0.0.1:1/devstoreaccount1/",
        "loc_AZURE_STORAGE_ACCOUNT_NAME": "devstoreaccount1",
        "loc_AZURE_STORAGE_ACCESS_KEY": "c2VjcmV0",
        "other_AZURE_STORAGE_ACCESS_KEY": "!!",  # another location's: ignored
    }
    details = {**BASE_DETAILS, "azureStorageAccessKey": "bad key"}
    settings = AzureTranslator("loc", details, env).settings
    assert settings.endpoint == "http://127.0.0.1:1/devstoreaccount1"
    assert (settings.account_name, settings.account_key) == ("devstoreaccount1", "c2VjcmV0")
    sas = AzureTranslator("loc", {k: v for k, v in BASE_DETAILS.items()
                                  if k != "azureStorageAccessKey"},
                          {"loc_AZURE_SAS_TOKEN": "sv=1&sig=2"}).settings
    assert (sas.auth_method, sas.sas_token) == ("shared-access-signature", "sv=1&sig=2")
    with pytest.raises(ConfigError) as caught:
        AzureTranslator("loc", BASE_DETAILS, {"loc_AZURE_STORAGE_ACCOUNT_NAME": "NO"})
    assert caught.value.key == "azureStorageAccountName"


async def test_environment_credentials_work_against_azurite(
    azurite: Azurite, azure_container: str
) -> None:
    details = {**azurite.details(azure_container), "azureStorageAccessKey": "d3Jvbmc="}
    location = AzureTranslator("envloc", details, {"envloc_AZURE_STORAGE_ACCESS_KEY": ACCOUNT_KEY})
    await location.open()
    try:
        assert (await location.check()).ok
    finally:
        await location.close()


async def test_sas_token_location(azurite: Azurite, azure_container: str, sdk: Any) -> None:
    token = generate_container_sas(
        ACCOUNT_NAME, azure_container, account_key=ACCOUNT_KEY,
        permission=ContainerSasPermissions(read=True, write=True, delete=True, list=True,
                                           add=True, create=True, tag=True),
        expiry=datetime.now(UTC) + timedelta(hours=1),
    )
    details = {"azureStorageEndpoint": azurite.endpoint, "azureContainerName": azure_container,
               "sasToken": token}
    location = AzureTranslator("sas", details, {})
    await location.open()
    try:
        assert await location.check() == Health(True, "OK")
        stored = await location.put("via-sas", one_shot(b"sas"), 3, ObjectMeta(user={"a": "b"}))
        assert await read_all(await location.get(stored)) == b"sas"
        copied = await location.copy(stored, "via-sas-copy", ObjectMeta())
        assert copied is not None
        assert await read_all(await location.get(copied)) == b"sas"
    finally:
        await location.close()
    assert (await sdk.get_blob_client("via-sas").get_blob_properties()).metadata == {"a": "b"}
    for bad in ({**details, "sasToken": token.replace("sig=", "sig=AAAA")},
                {**details, "azureContainerName": "no-such-container"}):
        failing = AzureTranslator("sas-bad", bad, {})
        await failing.open()
        try:
            health = await failing.check()
        finally:
            await failing.close()
        assert not health.ok and "sig=" not in health.message


async def test_service_principal_needs_azure_identity() -> None:
    try:
        import azure.identity  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("azure-identity is installed")
    details = {**BASE_DETAILS, "azureStorageAccessKey": None, "tenantId": "t", "clientId": "c",
               "clientKey": "k"}
    location = AzureTranslator("sp", details, {})
    with pytest.raises(ConfigError, match="azure-identity") as caught:
        await location.open()
    assert caught.value.key == "clientKey"


# --- health and failures ----------------------------------------------------------------------

async def test_check(translator: AzureTranslator, azurite: Azurite) -> None:
    assert await translator.check() == Health(True, "OK")
    missing = AzureTranslator("gone", azurite.details("no-such-container"), {})
    wrong_key = AzureTranslator("wrong", azurite.details("whatever", azureStorageAccessKey="d3Jvbmc="), {})
    messages = []
    for location in (missing, wrong_key):
        await location.open()
        try:
            health = await location.check()
        finally:
            await location.close()
        assert not health.ok
        assert "d3Jvbmc=" not in health.message and ACCOUNT_KEY not in health.message
        messages.append(health.message)
    assert "no-such-container" in messages[0] and "does not exist" in messages[0]
    assert "403" in messages[1]


async def test_emulator_stopped_mid_test_fails_fast(
    azurite_factory: Callable[[], Azurite],
) -> None:
    server = azurite_factory()
    container = await server.create_container()
    location = AzureTranslator("doomed", server.details(container), {})
    await location.open()
    try:
        stored = await location.put("k", one_shot(b"v"), 1, ObjectMeta())
        server.stop()
        started = time.monotonic()
        for call in (
            location.get(stored),
            location.head(stored),
            location.put("k2", one_shot(b"v"), 1, ObjectMeta()),
            location.upload_part("k3", "0" * 32, 1, body("q", 2 * MiB), 2 * MiB),
        ):
            with pytest.raises(Exception) as caught:
                await asyncio.wait_for(call, 15)
            assert not isinstance(caught.value, (NotFound, asyncio.TimeoutError))
        health = await location.check()
        assert not health.ok and "unreachable" in health.message
        assert time.monotonic() - started < 10
    finally:
        await location.close()


# --- unique keys: unpinned deletes, fsck listings, retried parts, refused requests -------------

async def names(sdk: Any, uncommitted: bool = True) -> list[str]:
    """Blob names as the SDK lists them, names holding only uncommitted blocks included."""
    include = ["uncommittedblobs"] if uncommitted else None
    return sorted([blob.name async for blob in sdk.list_blobs(include=include)])


async def staged_blocks(sdk: Any, name: str) -> int:
    try:
        _, uncommitted = await sdk.get_blob_client(name).get_block_list("uncommitted")
    except ResourceNotFoundError:
        return 0
    return len(uncommitted)


async def test_delete_without_pin_removes_everything_at_the_name(
    translator: AzureTranslator, sdk: Any
) -> None:
    """A record-less delete (the collector dropping an uncommitted write): the blob with its
    snapshots, or the blocks a cut-off put or an upload staged; nothing at a longer name."""
    key = "b/k~0123456789abcdef01234567"
    stored = await translator.put(key, one_shot(b"bytes"), 5, ObjectMeta())
    await sdk.get_blob_client(key).create_snapshot()
    neighbour = await translator.put(key + "x", one_shot(b"keep"), 4, ObjectMeta())
    await translator.delete(Stored(location=stored.location, key=key, size=0))
    assert await names(sdk) == [neighbour.key]
    await translator.delete(Stored(location=stored.location, key=key, size=0))  # gone: fine

    upload_id = await translator.create_upload("staged~1", ObjectMeta())
    await translator.upload_part("staged~1", upload_id, 1, one_shot(b"p"), 1)
    assert await staged_blocks(sdk, "staged~1") == 1
    await translator.delete(Stored(location=stored.location, key="staged~1", size=0))
    assert await staged_blocks(sdk, "staged~1") == 0
    assert await names(sdk) == [neighbour.key]
    assert await read_all(await translator.get(neighbour)) == b"keep"


async def test_list_pieces(translator: AzureTranslator, sdk: Any) -> None:
    """Puts, copies and names where an upload staged blocks (size 0, the key its parts'
    Stored.key has), under the prefix; no snapshots, nothing outside."""
    a = await translator.put("p/a", one_shot(b"a"), 1, ObjectMeta())
    b = await translator.put("p/b", one_shot(b"bb"), 2, ObjectMeta(user={"u": "1"}))
    c = await translator.copy(a, "p/c", ObjectMeta())
    assert c is not None
    await sdk.get_blob_client("p/a").create_snapshot()
    await translator.put("q/outside", one_shot(b"q"), 1, ObjectMeta())
    upload_id = await translator.create_upload("p/mpu", ObjectMeta())
    part = await translator.upload_part("p/mpu", upload_id, 1, one_shot(b"part"), 4)

    listed = [piece async for piece in translator.list_pieces("p/")]
    assert sorted(translator.piece_id(p) for p in listed) == ["p/a", "p/b", "p/c", "p/mpu"]
    by_key = {p.key: p for p in listed}
    for piece in (a, b, c):  # the handle the write returned: its etag pins the listed blob
        assert (by_key[piece.key].size, by_key[piece.key].etag) == (piece.size, piece.etag)
    assert by_key["p/mpu"].size == 0 and translator.piece_id(part) == "p/mpu"
    everything = [translator.piece_id(piece) async for piece in translator.list_pieces()]
    assert sorted(everything) == ["p/a", "p/b", "p/c", "p/mpu", "q/outside"]
    await translator.delete(by_key["p/a"])  # a listed handle pins the blob it lists
    assert await names(sdk, uncommitted=False) == ["p/b", "p/c", "q/outside"]


async def delayed(seconds: float, call: Awaitable[T]) -> T:
    await asyncio.sleep(seconds)
    return await call


async def test_retried_part_races_completion(translator: AzureTranslator, sdk: Any) -> None:
    """A part re-uploaded while the completion that lists its first attempt runs: the blob is
    always the listed bytes."""
    outcomes: dict[str, int] = {}
    for trial in range(16):
        key = f"race-{trial}"
        upload_id = await translator.create_upload(key, ObjectMeta())
        listed = await translator.upload_part(key, upload_id, 1, one_shot(b"listed"), 6)

        # Either call may go first, by a few milliseconds or none.
        head_start = (trial % 4) * 0.002
        complete = delayed(head_start if trial % 2 else 0, translator.complete_upload(
            key, upload_id, [Part(1, listed)], ObjectMeta()))
        retry = delayed(0 if trial % 2 else head_start, translator.upload_part(
            key, upload_id, 1, one_shot(b"RETRIED!"), 8))
        done, retried = await asyncio.wait_for(
            asyncio.gather(complete, retry, return_exceptions=True), 30)
        assert not isinstance(done, BaseException), done
        assert await read_all(await translator.get(done[0])) == b"listed"
        left = await staged_blocks(sdk, key)
        outcome = ("retry failed" if isinstance(retried, BaseException)
                   else "retry outlived completion" if left else "retry dropped by commit")
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    assert sum(outcomes.values()) == 16
    print(f"retried part vs completion: {outcomes}")


async def test_backend_4xx_is_rejected(translator: AzureTranslator) -> None:
    """A request Azure refuses for what it asks is Rejected (the client's 400), not a backend
    failure that would count against the location's health."""
    stored = await translator.put("short", one_shot(b"abc"), 3, ObjectMeta())
    with pytest.raises(Rejected, match="416|InvalidRange"):  # a range past the end
        await translator.get(stored, 10, 5)
    missing = Stored(location="az1", key="nope", size=3)
    with pytest.raises(NotFound):  # a missing blob stays NotFound
        await translator.get(missing, 10, 5)


async def test_missing_container_is_unavailable(azurite: Azurite) -> None:
    location = AzureTranslator("gone", azurite.details("no-such-container"), {})
    await location.open()
    try:
        with pytest.raises(Unavailable, match="ContainerNotFound") as caught:
            await location.put("k", one_shot(b"x"), 1, ObjectMeta())
        assert caught.value.__cause__.status_code == 404
    finally:
        await location.close()


@pytest.mark.parametrize(("status", "code", "expected"), [
    (400, "InvalidMetadata", Rejected),
    (400, "InvalidBlobOrBlock", Rejected),
    (413, "RequestBodyTooLarge", Rejected),
    (416, "InvalidRange", Rejected),
    (409, "LeaseIdMissing", Precondition),
    (409, "BlobAlreadyExists", AlreadyExists),
    (412, "ConditionNotMet", Precondition),
    (429, "TooManyRequests", Throttled),
    (503, "ServerBusy", Throttled),
    (503, "ServiceUnavailable", Unavailable),
    (500, "InternalError", Unavailable),
    (403, "AuthenticationFailed", Unauthenticated),
    (403, "AuthorizationPermissionMismatch", PermissionDenied),
    (501, "NotImplemented", NotSupported),
    (404, "ContainerNotFound", Unavailable),
])
def test_error_mapping(status: int, code: str, expected: type[Exception]) -> None:
    """The one mapping of Azure answers (throttling cannot be had from Azurite on demand; the
    error carries what the SDK sets from a response)."""
    error = HttpResponseError(message=f"What Azure said.\nRequestId:1\nErrorCode:{code}")
    error.status_code, error.error_code = status, code
    with pytest.raises(expected) as caught, azure_module._azure_errors():
        raise error
    assert caught.value.__cause__ is error
    assert str(caught.value) == f"{code}: What Azure said."
