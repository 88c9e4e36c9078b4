"""Mirror locations (gateway/translators/mirror.py) end to end: a real gateway process whose
mirrors have an Azurite member that is stopped mid-run and restarted (TEST_CLOUDS=azure,gcp).

- reads keep succeeding the whole time (a reader thread, zero errors), in every read mode;
- writes follow the write mode while Azurite is down: `all` refused cleanly (503, nothing
  left), `quorum` over 3 members and `primary+async` acknowledged, each with a multipart object;
- `fsck` reports the members that differ; after the restart the repair jobs catch Azurite up,
  every byte of every object is verified on every member with the cloud's own SDK (and the file
  member read directly), and `fsck` is clean;
- deleting a mirrored object removes it from every member.
Without any cloud: config refusals (unknown key, mode, member); `fsck --repair` queueing the
copy a file member lost (and a GET failing over meanwhile); the translator over members that
fail mid-read (the GET goes on from the next member) and mid-write (each write mode).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import sqlite3
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from gateway.config import LocationSpec, load_locations
from gateway.errors import ConfigFileError
from gateway.locations import Location, Locations
from gateway.translators.base import ObjectMeta, Part, Stored, Unavailable
from gateway.translators.file import FileTranslator
from gateway.translators.mem import _STORE, MemTranslator
from gateway.translators.mirror import MirrorTranslator, decode_pins
from tests.gatewayproc import Gateway, eventually, free_port, start_gateway, write_config
from tests.races.scenarios import fsck

MiB = 1024 * 1024
FAST = {"jobs": {"pollSeconds": 0.2, "concurrency": 8},
        "healthChecks": {"interval": 0.5, "timeout": 1},
        "storage": {"collectInterval": 0.3, "durability": "relaxed"}}
MODES = {  # bucket -> (mirror location, members, read, write)
    "all": ("m-all", ["az", "gc"], "primary-fallback", "all"),
    "quorum": ("m-quorum", ["az", "gc", "fl"], "fastest", "quorum"),
    "async": ("m-async", ["gc", "az"], "primary", "primary+async"),
}


def data(name: str, size: int) -> bytes:
    seed = hashlib.sha256(name.encode()).digest()
    return (seed * (size // len(seed) + 1))[:size]


def cloud(request: pytest.FixtureRequest, name: str) -> Any:
    try:
        return request.getfixturevalue(name)
    except pytest.FixtureLookupError:
        pytest.skip(f"{name} is not loaded (TEST_CLOUDS)")


@pytest.fixture(scope="module")
def setup(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[dict[str, Any]]:
    cloud(request, "azurite")  # TEST_CLOUDS loads azure
    gcs = cloud(request, "gcs_emulator")
    from tests.clouds.azure import start_azurite

    # A dedicated Azurite: stopped and restarted (same port, same data) by the test.
    azurite = start_azurite(tmp_path_factory.mktemp("mirror-azurite"))
    try:
        container = asyncio.run(azurite.create_container())
        bucket = gcs.create_bucket()
        file_root = tmp_path_factory.mktemp("mirror-file")
        locations: dict[str, Any] = {
            "az": {"type": "azure", "details": azurite.details(container)},
            "gc": {"type": "gcp", "details": {"bucketName": bucket, "gcpEndpoint": gcs.url}},
            "fl": {"type": "file", "details": {"dataPath": str(file_root)}},
        }
        for name, members, read, write in MODES.values():
            locations[name] = {"type": "mirror", "details": {"members": members, "read": read,
                                                             "write": write}}
        with start_gateway(tmp_path_factory.mktemp("mirror-gw"), locations, config=FAST,
                           timeout=40) as gw:
            yield {"gw": gw, "azurite": azurite, "container": container, "gcs": gcs,
                   "gcs_bucket": bucket, "file_root": file_root}
    finally:
        azurite.stop()


def pieces(gw: Gateway, bucket: str, key: str) -> list[Stored]:
    uri = f"file:{gw.workdir / 'metadata' / 'metadata.sqlite3'}?mode=ro"
    with sqlite3.connect(uri, uri=True, timeout=10) as db:
        rows = db.execute("SELECT pieces FROM objects WHERE bucket=? AND key=?",
                          (bucket, key)).fetchall()
    assert len(rows) == 1, rows
    return [Stored.from_dict(p) for p in json.loads(rows[0][0])]


async def azure_bytes(setup: dict[str, Any], key: str) -> bytes | None:
    from azure.core.exceptions import ResourceNotFoundError

    async with setup["azurite"].container_client(setup["container"]) as client:
        try:
            return await (await client.download_blob(key)).readall()
        except ResourceNotFoundError:
            return None


def gcs_bytes(setup: dict[str, Any], key: str) -> bytes | None:
    url = (f"{setup['gcs'].url}/download/storage/v1/b/{setup['gcs_bucket']}/o/"
           f"{urllib.parse.quote(key, safe='')}?alt=media")
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:
            return answer.read()
    except urllib.error.HTTPError as err:
        if err.code == 404:
            return None
        raise


async def file_bytes(setup: dict[str, Any], piece: Stored) -> bytes | None:
    """The file member, read with its own translator (the pieces its entry names)."""
    store = FileTranslator("fl", {"dataPath": str(setup["file_root"])}, {})
    entry = decode_pins(piece.version_id).get("fl")
    parts = ([Stored("fl", k, s, v, e) for k, s, v, e in entry["p"]] if entry and "p" in entry
             else [Stored("fl", (entry or {}).get("k", piece.key), piece.size)])
    out = b""
    try:
        for part in parts:
            async for chunk in await store.get(part):
                out += chunk
    except Exception:
        return None
    return out


def member_bytes(setup: dict[str, Any], member: str, piece: Stored) -> bytes | None:
    if member == "az":
        return asyncio.run(azure_bytes(setup, piece.key))
    if member == "gc":
        return gcs_bytes(setup, piece.key)
    return asyncio.run(file_bytes(setup, piece))


def put(s3: Any, bucket: str, key: str, body: bytes) -> None:
    s3.put_object(Bucket=bucket, Key=key, Body=body)


def put_multipart(s3: Any, bucket: str, key: str, body: bytes) -> None:
    upload = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    parts = []
    for number, start in enumerate(range(0, len(body), 5 * MiB), 1):
        answer = s3.upload_part(Bucket=bucket, Key=key, UploadId=upload, PartNumber=number,
                                Body=body[start:start + 5 * MiB])
        parts.append({"PartNumber": number, "ETag": answer["ETag"]})
    s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload,
                                 MultipartUpload={"Parts": parts})


class Reader(threading.Thread):
    """GETs every object of `objects` in a loop until stopped; counts errors and reads."""

    def __init__(self, gw: Gateway, objects: dict[tuple[str, str], bytes]) -> None:
        super().__init__(daemon=True)
        self.s3 = gw.client()
        self.objects = objects
        self.stop = threading.Event()
        self.errors: list[str] = []
        self.reads = 0

    def run(self) -> None:
        while not self.stop.is_set():
            for (bucket, key), body in list(self.objects.items()):
                try:
                    got = self.s3.get_object(Bucket=bucket, Key=key)["Body"].read()
                    if got != body:
                        self.errors.append(f"{bucket}/{key}: wrong bytes")
                except Exception as exc:
                    self.errors.append(f"{bucket}/{key}: {exc}")
                self.reads += 1


def test_mirror_with_a_member_down_then_repaired(setup: dict[str, Any]) -> None:
    gw, azurite = setup["gw"], setup["azurite"]
    s3 = gw.client()
    for bucket, (location, *_rest) in MODES.items():
        s3.create_bucket(Bucket=bucket,
                         CreateBucketConfiguration={"LocationConstraint": location})
    before: dict[tuple[str, str], bytes] = {}
    for bucket in MODES:
        for i in range(3):
            body = data(f"{bucket}-{i}", 20_000 + i)
            put(s3, bucket, f"before-{i}", body)
            before[(bucket, f"before-{i}")] = body
        body = data(f"{bucket}-mpu", 5 * MiB + 3000)
        put_multipart(s3, bucket, "before-mpu", body)
        before[(bucket, "before-mpu")] = body
    def everywhere(objects: dict[tuple[str, str], bytes]) -> bool:
        for (bucket, key), body in objects.items():
            [piece] = pieces(gw, bucket, key)
            assert piece.location == MODES[bucket][0]
            for member in MODES[bucket][1]:
                if member_bytes(setup, member, piece) != body:
                    return False
        return True
    eventually(lambda: everywhere(before), timeout=30)  # async: once its repairs ran

    reader = Reader(gw, before)
    reader.start()
    azurite.stop()  # --- Azurite goes down -------------------------------------------------
    down_at, reads_at_stop = time.monotonic(), reader.reads
    try:
        written: dict[tuple[str, str], bytes] = {}
        for attempt in range(3):  # `all` refuses, however often asked
            with pytest.raises(ClientError) as refused:
                put(s3, "all", f"during-{attempt}", b"refused")
            assert refused.value.response["Error"]["Code"] == "ServiceUnavailable"
        with pytest.raises(ClientError) as refused:
            put_multipart(s3, "all", "during-mpu", data("x", 5 * MiB + 1))
        assert refused.value.response["Error"]["Code"] == "ServiceUnavailable"
        for bucket in ("quorum", "async"):
            for i in range(3):
                body = data(f"{bucket}-during-{i}", 30_000 + i)
                put(s3, bucket, f"during-{i}", body)
                written[(bucket, f"during-{i}")] = body
            body = data(f"{bucket}-during-mpu", 5 * MiB + 7)
            put_multipart(s3, bucket, "during-mpu", body)
            written[(bucket, "during-mpu")] = body
        for (bucket, key), body in written.items():  # readable at once, from the others
            assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == body
        # fsck sees the members that differ (Azurite: unreadable) before any repair.
        report = fsck(gw.env)
        differs = {r["name"]: r["membersDiffer"] for r in report["locations"]}
        assert report["exit"] == 1 and differs["m-quorum"] and differs["m-async"], report
        time.sleep(1.5)  # the reader keeps going while the member is down
    finally:
        reads_while_down = reader.reads - reads_at_stop
        print(f"{reads_while_down} GETs in {time.monotonic() - down_at:.1f}s with Azurite down")
        azurite.start()  # --- Azurite is back (same port, same data) ------------------------
    assert reads_while_down > len(before)  # every object read at least once while down
    try:
        # The repair jobs catch Azurite up: every byte, on every member, by the SDKs.
        started = time.monotonic()
        eventually(lambda: everywhere({**before, **written}), timeout=60)
        print(f"mirror repairs caught Azurite up {time.monotonic() - started:.1f}s after "
              "its restart")
        # The refused writes left nothing: no record, and nothing on any member (fsck below).
        listed = s3.list_objects_v2(Bucket="all").get("Contents", [])
        assert {o["Key"] for o in listed} == {k for b, k in before if b == "all"}
        # `all` writes again once Azurite is seen up.
        eventually(lambda: _writes(s3), timeout=20)
    finally:
        reader.stop.set()
        reader.join(30)
    assert reader.errors == [] and reader.reads > len(before), reader.errors[:5]

    # Deleting a mirrored object removes it from every member (the collector, idempotent).
    [piece] = pieces(gw, "all", "before-0")
    s3.delete_object(Bucket="all", Key="before-0")
    gw.settle()
    assert member_bytes(setup, "az", piece) is None and member_bytes(setup, "gc", piece) is None

    report = fsck(gw.env)
    assert report["exit"] == 0, report
    for location in report["locations"]:
        assert not location["membersDiffer"] and not location["unreferenced"], location


def _writes(s3: Any) -> bool:
    try:
        put(s3, "all", "after", b"back to all")
    except ClientError:
        return False
    return True


# --- configuration -----------------------------------------------------------------------------
@pytest.mark.parametrize(("details", "named"), [
    ({"members": ["a", "b"], "raed": "primary"}, 'key "details.raed"'),
    ({"members": ["a", "b"], "read": "nearest"}, 'key "details.read"'),
    ({"members": ["a", "b"], "write": "most"}, 'key "details.write"'),
    ({"members": ["a", "nowhere"]}, 'key "details.members"'),
    ({"members": ["a"]}, 'key "details.members"'),
    ({"members": ["a", "m"]}, 'key "details.members"'),
])
def test_bad_mirror_details_refuse_to_start(tmp_path: Path, details: dict[str, Any],
                                           named: str) -> None:
    locations = {"a": {"type": "mem"}, "b": {"type": "mem"},
                 "m": {"type": "mirror", "details": details}}
    env = write_config(tmp_path, free_port(), locations, None)
    with pytest.raises(ConfigFileError) as refused:
        Locations(load_locations(Path(env["S3_LOCATION_FILE"]), {}), {}, {},
                  env["S3_LOCATION_FILE"])
    line = str(refused.value)
    assert "\n" not in line and "locationConfig.json" in line and 'location "m"' in line \
        and named in line, line


# --- fsck --repair, on file members (no cloud) ---------------------------------------------------
def test_fsck_repair_queues_the_copy_a_member_lost(tmp_path: Path) -> None:
    roots = {name: tmp_path / name for name in ("f1", "f2")}
    locations: dict[str, Any] = {
        name: {"type": "file", "details": {"dataPath": str(root)}} for name, root in roots.items()}
    locations["m"] = {"type": "mirror", "details": {"members": ["f1", "f2"]}}
    body = data("lost", 70_000)
    with start_gateway(tmp_path / "gw", locations, config=FAST) as gw:
        s3 = gw.client()
        s3.create_bucket(Bucket="bkt", CreateBucketConfiguration={"LocationConstraint": "m"})
        put(s3, "bkt", "k", body)
    [piece] = pieces(gw, "bkt", "k")
    # The primary's copy is lost behind the gateway's back.
    f1 = FileTranslator("f1", {"dataPath": str(roots["f1"])}, {})
    asyncio.run(f1.delete(Stored("f1", piece.key, 0)))
    report = fsck(gw.env)
    [mirror] = [r for r in report["locations"] if r["name"] == "m"]
    assert report["exit"] == 1 and len(mirror["membersDiffer"]) == 1, report
    assert mirror["membersDiffer"][0].endswith(f"{piece.key} on f1: missing"), report
    report = fsck(gw.env, "--repair")
    [mirror] = [r for r in report["locations"] if r["name"] == "m"]
    assert mirror["repairsQueued"] == 1, report
    with start_gateway(tmp_path / "gw", locations, config=FAST) as gw:
        # Reads fail over to f2 meanwhile: no client error.
        assert gw.client().get_object(Bucket="bkt", Key="k")["Body"].read() == body
        eventually(lambda: fsck(gw.env)["exit"] == 0, timeout=20)  # the queued repair ran

    async def primary_copy() -> bytes:
        return b"".join([chunk async for chunk in await f1.get(Stored("f1", piece.key, 0))])
    assert asyncio.run(primary_copy()) == body


# --- the translator over members that fail (no cloud, no gateway) ------------------------------
class Flaky(MemTranslator):
    """A mem member whose GET streams break after their first chunk, or whose puts fail
    (a backend falling over mid-request)."""

    break_reads = False
    fail_writes = False

    async def get(self, stored: Stored, offset: int = 0, length: int | None = None) -> Any:
        stream = await super().get(stored, offset, length)
        if not self.break_reads:
            return stream

        async def broken() -> Any:
            async for chunk in stream:
                yield chunk[:1000]
                raise ConnectionResetError("the backend hung up")
        return broken()

    async def put(self, key: str, body: Any, size: int, meta: ObjectMeta) -> Stored:
        if self.fail_writes:
            async for _chunk in body:
                raise ConnectionResetError("the backend hung up")
        return await super().put(key, body, size, meta)


def mirror_over(read: str, write: str, *members: MemTranslator) -> MirrorTranslator:
    by_name = {m.name: Location(LocationSpec(m.name, "mem", False, {}, m.name), m)
               for m in members}
    mirror = MirrorTranslator("mm", {"members": list(by_name), "read": read, "write": write}, {})
    mirror.bind(by_name)
    return mirror


async def chunks_of(data_: bytes) -> Any:
    for start in range(0, len(data_), 64 * 1024):
        yield data_[start:start + 64 * 1024]


async def read_all(stream: Any) -> bytes:
    return b"".join([chunk async for chunk in stream])


async def test_a_read_that_breaks_midway_goes_on_from_the_next_member() -> None:
    first, second = Flaky("flaky-a", {}, {}), Flaky("flaky-b", {}, {})
    body = data("midway", 300_000)
    for read in ("primary-fallback", "fastest"):
        mirror = mirror_over(read, "all", first, second)
        stored = await mirror.put(f"k-{read}~{'0' * 24}", chunks_of(body), len(body),
                                  ObjectMeta())
        first.break_reads = True
        assert await read_all(await mirror.get(stored)) == body
        assert await read_all(await mirror.get(stored, 1000, 200_000)) == body[1000:201_000]
        first.break_reads = False
        await mirror.delete(stored)
        assert not [k for k in _STORE if k.startswith(f"k-{read}")]  # gone from both
    mirror = mirror_over("primary", "all", first, second)
    stored = await mirror.put(f"k-primary~{'0' * 24}", chunks_of(body), len(body), ObjectMeta())
    first.break_reads = True
    with pytest.raises(Unavailable):  # primary: no other member to go on from
        await read_all(await mirror.get(stored))
    first.break_reads = False
    await mirror.delete(stored)


async def test_write_modes_when_a_member_fails_mid_write() -> None:
    members = [Flaky(f"w-{i}", {}, {}) for i in range(3)]
    members[1].fail_writes = True
    body = data("write", 200_000)
    queued: list[tuple[str, list[str]]] = []

    async def repairs(mirror: str, stored: Stored, missing: list[str]) -> None:
        queued.append((stored.key, missing))

    refused = mirror_over("primary-fallback", "all", *members)
    with pytest.raises(Unavailable, match="member w-1"):
        await refused.put(f"all~{'1' * 24}", chunks_of(body), len(body), ObjectMeta())
    assert not [k for k in _STORE if k.startswith("all~")]  # the others' copies dropped

    quorum = mirror_over("primary-fallback", "quorum", *members)
    quorum.repairs = repairs
    stored = await quorum.put(f"quorum~{'2' * 24}", chunks_of(body), len(body), ObjectMeta())
    assert quorum.holders(stored) == ["w-0", "w-2"] and queued == [(stored.key, ["w-1"])]
    assert await read_all(await quorum.get(stored)) == body
    await quorum.delete(stored)

    members[1].fail_writes = False  # async: the primary only, the others queued at once
    queued.clear()
    lazy = mirror_over("primary", "primary+async", *members)
    lazy.repairs = repairs
    upload = await lazy.create_upload(f"mpu~{'3' * 24}", ObjectMeta())
    part = await lazy.upload_part(f"mpu~{'3' * 24}", upload, 1, chunks_of(body), len(body))
    [piece] = await lazy.complete_upload(f"mpu~{'3' * 24}", upload, [Part(1, part)],
                                         ObjectMeta())
    assert lazy.holders(piece) == ["w-0"] and queued == [(piece.key, ["w-1", "w-2"])]
    assert await read_all(await lazy.get(piece)) == body
    await lazy.delete(piece)
    assert not [k for k in _STORE if k.startswith("mpu~")]
