"""Versioning conformance: the same S3 versioning tests on all seven location types (mem, file,
aws_s3, azure, gcp, b2, swift), boto3 -> one real gateway -> each backend on its emulator.

Enabled and Suspended versioning, delete markers (create, list, remove to restore), null
versions, version ids, GET/HEAD/DELETE ?versionId, ListObjectVersions order and IsLatest, copy
from a version, multipart in a versioned bucket; and on the backend itself (the translator's own
`list_pieces`, opened in this process next to the gateway's), deleting a version removes exactly
its bytes once the collector has run (Gateway.settle()), nothing else.

One gateway for the module, with a location per loaded emulator (TEST_CLOUDS). It runs
in-process because the b2 test cloud is b2sdk's in-process simulator (tests/clouds/b2.py); mem
locations share one store per process, so the test sees the gateway's mem pieces too.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from botocore.exceptions import ClientError

from gateway.translators import translator_class
from gateway.translators.base import Stored
from tests.gatewayproc import Gateway, start_gateway

KINDS = ("mem", "file", "aws_s3", "azure", "gcp", "b2", "swift")
MARKS = {"aws_s3": pytest.mark.aws_s3, "azure": pytest.mark.azure, "gcp": pytest.mark.gcp,
         "b2": pytest.mark.b2, "swift": pytest.mark.swift}
CLOUDS = [pytest.param(kind, marks=[MARKS[kind]] if kind in MARKS else []) for kind in KINDS]
CONFIG = {"storage": {"collectInterval": 0.2}}
MiB = 1024 * 1024
READ_LIMIT = 64 * 1024  # pieces up to this size are read back to see whose bytes they hold


@dataclass(frozen=True)
class Loc:
    """One location of the gateway under test, and how to open its translator here."""

    kind: str
    name: str
    details: dict[str, Any]

    def pieces(self, bucket: str, key: str, read: bool = False) -> dict[str, bytes | None]:
        """The backend's pieces holding writes of `bucket`/`key` (piece id -> with `read`, its
        bytes when small, else None), listed by the location's own translator. A file location
        lists every piece it has (hashed names: no prefix), told apart by content."""

        async def listing() -> dict[str, bytes | None]:
            store = translator_class(self.kind)(self.name, self.details, dict(os.environ))
            await store.open()
            try:
                found: dict[str, bytes | None] = {}
                pieces: list[Stored] = [p async for p in store.list_pieces(f"{bucket}/{key}~")]
                for piece in pieces:
                    data = None
                    if read and piece.size <= READ_LIMIT:
                        data = b"".join([chunk async for chunk in await store.get(piece)])
                    found[store.piece_id(piece)] = data
                return found
            finally:
                await store.close()

        return asyncio.run(listing())

    def holding(self, bucket: str, key: str, *bodies: bytes) -> list[int]:
        """How many backend pieces hold each of `bodies`."""
        held = list(self.pieces(bucket, key, read=True).values())
        return [held.count(body) for body in bodies]


def cloud_details(request: pytest.FixtureRequest, kind: str, tmp: Any) -> dict[str, Any] | None:
    """The details of a location of `kind` on its emulator; None when it is not loaded."""
    try:
        if kind == "mem":
            return {}
        if kind == "file":
            return {"dataPath": str(tmp / "file-location")}
        if kind == "aws_s3":
            moto = request.getfixturevalue("aws_s3_moto")
            return moto.details(moto.create_bucket(), bucketMatch=False)
        if kind == "azure":
            azurite = request.getfixturevalue("azurite")
            return azurite.details(asyncio.run(azurite.create_container()), bucketMatch=False)
        if kind == "gcp":
            emulator = request.getfixturevalue("gcs_emulator")
            return {"bucketName": emulator.create_bucket(), "bucketMatch": False,
                    "gcpEndpoint": emulator.url}
        if kind == "b2":
            return request.getfixturevalue("b2_cloud").details(bucketMatch=False, threads=4)
        cluster = request.getfixturevalue("swift_cloud")
        return cluster.details(cluster.make_container(f"vc-{uuid.uuid4().hex[:10]}"),
                               bucketMatch=False)
    except pytest.FixtureLookupError:
        return None


@pytest.fixture(scope="module")
def conformance(request: pytest.FixtureRequest,
                tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Gateway, dict[str, Loc]]]:
    tmp = tmp_path_factory.mktemp("versioning")
    locs = {kind: Loc(kind, f"v-{kind}", details) for kind in KINDS
            if (details := cloud_details(request, kind, tmp)) is not None}
    spec = {loc.name: {"type": loc.kind, "legacyAwsBehavior": False, "details": loc.details}
            for loc in locs.values()}
    with start_gateway(tmp / "gw", spec, config=CONFIG, inprocess=True) as gw:
        yield gw, locs


@dataclass
class Case:
    s3: Any
    gateway: Gateway
    loc: Loc
    bucket: str
    key: str

    def body(self, label: str) -> bytes:
        """A small body no other write has (so a piece's owner shows by its content)."""
        return f"{label} of {self.bucket}/{self.key} {uuid.uuid4().hex}".encode()

    def versioning(self, status: str) -> None:
        self.s3.put_bucket_versioning(Bucket=self.bucket,
                                      VersioningConfiguration={"Status": status})
        assert self.s3.get_bucket_versioning(Bucket=self.bucket)["Status"] == status

    def put(self, body: bytes, key: str | None = None) -> str | None:
        return self.s3.put_object(Bucket=self.bucket, Key=key or self.key, Body=body).get(
            "VersionId")

    def get(self, version_id: str | None = None, key: str | None = None) -> bytes:
        extra = {"VersionId": version_id} if version_id else {}
        got = self.s3.get_object(Bucket=self.bucket, Key=key or self.key, **extra)
        if version_id:
            assert got["VersionId"] == version_id
        return got["Body"].read()

    def versions(self, key: str | None = None) -> list[tuple[str, str, bool]]:
        """ListObjectVersions of the key: its versions in listed order (newest first), then
        its delete markers in listed order, each as (kind "v" or "m", version id, IsLatest).
        (boto3 splits the two, and LastModified has whole seconds: no interleaving.)"""
        listed = self.s3.list_object_versions(Bucket=self.bucket, Prefix=key or self.key)
        return ([("v", v["VersionId"], v["IsLatest"]) for v in listed.get("Versions", [])]
                + [("m", m["VersionId"], m["IsLatest"]) for m in listed.get("DeleteMarkers", [])])

    def holding(self, *bodies: bytes) -> list[int]:
        """After the collector's work: how many backend pieces hold each body."""
        self.gateway.settle()
        return self.loc.holding(self.bucket, self.key, *bodies)


def error(caught: pytest.ExceptionInfo[ClientError]) -> tuple[int, str]:
    response = caught.value.response
    return response["ResponseMetadata"]["HTTPStatusCode"], response["Error"]["Code"]


@pytest.fixture(params=CLOUDS)
def case(request: pytest.FixtureRequest,
         conformance: tuple[Gateway, dict[str, Loc]]) -> Case:
    gateway, locs = conformance
    if request.param not in locs:
        pytest.skip(f"{request.param} emulator not loaded (TEST_CLOUDS)")
    loc = locs[request.param]
    s3 = gateway.client()
    bucket = f"vc-{request.param.replace('_', '')}-{uuid.uuid4().hex[:10]}"
    s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": loc.name})
    return Case(s3, gateway, loc, bucket, "dir/obj")


def test_enabled_versions_by_id(case: Case) -> None:
    """Every PUT is a version of its own id; each is read, headed, and deleted by id; deleting
    one removes exactly its bytes on the backend."""
    s3, bucket, key = case.s3, case.bucket, case.key
    case.versioning("Enabled")
    bodies = [case.body(f"version {n}") for n in range(3)]
    ids = [case.put(body) for body in bodies]
    assert all(ids) and "null" not in ids and len(set(ids)) == 3
    for version_id, body in zip(ids, bodies, strict=True):
        assert case.get(version_id) == body
        head = s3.head_object(Bucket=bucket, Key=key, VersionId=version_id)
        assert head["VersionId"] == version_id and head["ContentLength"] == len(body)
    assert case.get() == bodies[2]
    assert s3.head_object(Bucket=bucket, Key=key)["VersionId"] == ids[2]
    assert case.versions() == [("v", ids[2], True), ("v", ids[1], False), ("v", ids[0], False)]
    assert case.holding(*bodies) == [1, 1, 1]

    deleted = s3.delete_object(Bucket=bucket, Key=key, VersionId=ids[1])
    assert deleted["VersionId"] == ids[1] and not deleted.get("DeleteMarker")
    with pytest.raises(ClientError) as caught:
        case.get(ids[1])
    assert error(caught) == (404, "NoSuchVersion")
    with pytest.raises(ClientError) as caught:
        s3.head_object(Bucket=bucket, Key=key, VersionId=ids[1])
    assert error(caught)[0] == 404
    assert case.versions() == [("v", ids[2], True), ("v", ids[0], False)]
    assert case.holding(*bodies) == [1, 0, 1]

    # Deleting the latest version by id makes the one before it current.
    s3.delete_object(Bucket=bucket, Key=key, VersionId=ids[2])
    assert case.get() == bodies[0] and case.versions() == [("v", ids[0], True)]
    assert case.holding(*bodies) == [1, 0, 0]


def test_delete_marker_hides_and_its_removal_restores(case: Case) -> None:
    s3, bucket, key = case.s3, case.bucket, case.key
    case.versioning("Enabled")
    body = case.body("kept")
    version_id = case.put(body)

    marker = s3.delete_object(Bucket=bucket, Key=key)
    assert marker["DeleteMarker"] is True and marker["VersionId"] not in (None, "null", version_id)
    with pytest.raises(ClientError) as caught:
        case.get()
    assert error(caught) == (404, "NoSuchKey")
    headers = caught.value.response["ResponseMetadata"]["HTTPHeaders"]
    assert headers.get("x-amz-delete-marker") == "true"
    with pytest.raises(ClientError) as caught:
        s3.head_object(Bucket=bucket, Key=key)
    assert error(caught)[0] == 404
    with pytest.raises(ClientError) as caught:  # a marker has no body: 405, as AWS
        case.get(marker["VersionId"])
    assert error(caught) == (405, "MethodNotAllowed")
    assert case.versions() == [("v", version_id, False), ("m", marker["VersionId"], True)]
    assert case.get(version_id) == body
    assert case.holding(body) == [1]  # a marker removes no bytes

    # A second plain DELETE stacks another marker; removing both restores the version.
    second = s3.delete_object(Bucket=bucket, Key=key)["VersionId"]
    for marker_id in (second, marker["VersionId"]):
        removed = s3.delete_object(Bucket=bucket, Key=key, VersionId=marker_id)
        assert removed["DeleteMarker"] is True and removed["VersionId"] == marker_id
    assert case.get() == body and case.versions() == [("v", version_id, True)]
    assert case.holding(body) == [1]


def test_null_versions_and_suspended_versioning(case: Case) -> None:
    """An object from before versioning is the "null" version; a PUT while suspended replaces
    the null version (its bytes go), and a DELETE while suspended writes a null marker."""
    s3, bucket, key = case.s3, case.bucket, case.key
    before = case.body("before versioning")
    assert case.put(before) in (None, "null")
    case.versioning("Enabled")
    assert case.versions() == [("v", "null", True)]
    enabled = case.body("enabled")
    enabled_id = case.put(enabled)
    assert enabled_id not in (None, "null")
    assert case.get("null") == before and case.get() == enabled
    assert case.versions() == [("v", enabled_id, True), ("v", "null", False)]

    case.versioning("Suspended")
    suspended = [case.body("suspended 1"), case.body("suspended 2")]
    for body in suspended:
        assert case.put(body) in (None, "null")
        assert case.get() == body and case.get("null") == body
        assert case.versions() == [("v", "null", True), ("v", enabled_id, False)]
    assert case.holding(before, enabled, *suspended) == [0, 1, 0, 1]

    marker = s3.delete_object(Bucket=bucket, Key=key)
    assert marker["DeleteMarker"] is True and marker["VersionId"] == "null"
    with pytest.raises(ClientError) as caught:
        case.get()
    assert error(caught) == (404, "NoSuchKey")
    assert case.versions() == [("v", enabled_id, False), ("m", "null", True)]
    assert case.holding(enabled, suspended[1]) == [1, 0]  # the null marker replaced its bytes

    s3.delete_object(Bucket=bucket, Key=key, VersionId="null")  # remove the null marker
    assert case.get() == enabled and case.versions() == [("v", enabled_id, True)]

    # Enabled again: versions get ids again, the old ones stay.
    case.versioning("Enabled")
    again = case.body("enabled again")
    again_id = case.put(again)
    assert again_id not in (None, "null", enabled_id)
    assert case.versions() == [("v", again_id, True), ("v", enabled_id, False)]
    assert case.holding(enabled, again) == [1, 1]


def test_copy_from_a_version(case: Case) -> None:
    s3, bucket, key = case.s3, case.bucket, case.key
    case.versioning("Enabled")
    old, new = case.body("old"), case.body("new")
    old_id, new_id = case.put(old), case.put(new)

    copied = s3.copy_object(Bucket=bucket, Key="dir/copy",
                            CopySource={"Bucket": bucket, "Key": key, "VersionId": old_id})
    assert copied["CopySourceVersionId"] == old_id
    assert copied["VersionId"] not in (None, "null", old_id, new_id)
    assert case.get(key="dir/copy") == old

    # Restoring an old version the S3 way: copy it onto its own key as the newest version.
    restored = s3.copy_object(Bucket=bucket, Key=key,
                              CopySource={"Bucket": bucket, "Key": key, "VersionId": old_id})
    restored_id = restored["VersionId"]
    assert case.get() == old and case.get(new_id) == new and case.get(old_id) == old
    assert case.versions() == [("v", restored_id, True), ("v", new_id, False),
                               ("v", old_id, False)]
    # Deleting the source version leaves the restored copy readable (its bytes are its own
    # or still referenced by it: never deleted while referenced).
    s3.delete_object(Bucket=bucket, Key=key, VersionId=old_id)
    case.gateway.settle()
    assert case.get() == old and case.get(restored_id) == old
    assert case.get(key="dir/copy") == old


def test_multipart_in_a_versioned_bucket(case: Case) -> None:
    s3, bucket, key = case.s3, case.bucket, case.key
    case.versioning("Enabled")
    plain = case.body("plain")
    plain_id = case.put(plain)
    case.gateway.settle()
    before = case.loc.pieces(bucket, key)

    upload_id = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    parts_data = [os.urandom(5 * MiB), case.body("tail part")]
    parts = [{"PartNumber": n, "ETag": s3.upload_part(Bucket=bucket, Key=key, UploadId=upload_id,
                                                       PartNumber=n, Body=data)["ETag"]}
             for n, data in enumerate(parts_data, 1)]
    done = s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id,
                                        MultipartUpload={"Parts": parts})
    mp_id = done["VersionId"]
    assert mp_id not in (None, "null", plain_id)
    assert case.get() == b"".join(parts_data) and case.get(plain_id) == plain
    assert case.versions() == [("v", mp_id, True), ("v", plain_id, False)]
    case.gateway.settle()
    with_upload = case.loc.pieces(bucket, key)
    assert set(before) < set(with_upload)  # the upload's pieces, added to the plain version's

    s3.delete_object(Bucket=bucket, Key=key, VersionId=mp_id)
    assert case.get() == plain and case.versions() == [("v", plain_id, True)]
    case.gateway.settle()
    assert set(case.loc.pieces(bucket, key)) == set(before)  # exactly the upload's bytes went
