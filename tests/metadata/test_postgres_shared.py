"""Two real gateway processes sharing one PostgreSQL metadata database and one data directory
(`file` location): what one writes the other serves, and concurrent writers through both leave
S3's outcome (one whole winner, one bucket)."""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.gatewayproc import ACCESS_KEY2, SECRET_KEY2, Gateway, start_gateway
from tests.metadata.conftest import pg_dsn

pytestmark = pytest.mark.postgres

MiB = 1024 * 1024


@pytest.fixture(scope="module")
def shared_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("shared-data")


@pytest.fixture(scope="module")
def gateways(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
             shared_data: Path) -> Iterator[tuple[Gateway, Gateway]]:
    config = {"metadata": {"backend": "postgres", "dsn": pg_dsn(request, "shared_gateways")}}
    env = {"S3DATAPATH": str(shared_data)}  # file-location bytes visible to both
    with start_gateway(tmp_path_factory.mktemp("gw-a"), config=config, env=env) as a, \
            start_gateway(tmp_path_factory.mktemp("gw-b"), config=config, env=env) as b:
        yield a, b
        for gw in (a, b):
            assert "Traceback" not in gw.log(), gw.log()


@pytest.fixture(scope="module")
def clients(gateways: tuple[Gateway, Gateway]) -> tuple[Any, Any]:
    return gateways[0].client(), gateways[1].client()


def new_bucket(s3: Any) -> str:
    name = f"pg-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    return name


def code(err: ClientError) -> str:
    return err.response["Error"]["Code"]


def data_files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def test_put_through_one_get_through_the_other(clients: tuple[Any, Any]) -> None:
    a, b = clients
    bucket = new_bucket(a)
    body = os.urandom(3 * MiB + 17)
    put = a.put_object(Bucket=bucket, Key="dir/ké.bin", Body=body, Metadata={"m": "1"},
                       ContentType="application/x-test")
    got = b.get_object(Bucket=bucket, Key="dir/ké.bin")
    assert got["Body"].read() == body
    assert got["ETag"] == put["ETag"] == f'"{hashlib.md5(body).hexdigest()}"'
    assert got["Metadata"] == {"m": "1"} and got["ContentType"] == "application/x-test"
    b.put_object_tagging(Bucket=bucket, Key="dir/ké.bin",
                         Tagging={"TagSet": [{"Key": "t", "Value": "v"}]})
    assert a.get_object_tagging(Bucket=bucket, Key="dir/ké.bin")["TagSet"] == [
        {"Key": "t", "Value": "v"}]
    b.delete_object(Bucket=bucket, Key="dir/ké.bin")
    with pytest.raises(ClientError) as exc:
        a.get_object(Bucket=bucket, Key="dir/ké.bin")
    assert code(exc.value) == "NoSuchKey"


def test_listings_agree(clients: tuple[Any, Any]) -> None:
    a, b = clients
    bucket = new_bucket(b)
    keys = [f"{d}/{i}" for d in ("x", "y", "日本") for i in range(8)] + ["top", "Z", "é"]
    for i, key in enumerate(keys):
        (a, b)[i % 2].put_object(Bucket=bucket, Key=key, Body=key.encode())

    def pages(s3: Any, **kw: Any) -> list[tuple[list[str], list[str]]]:
        out = []
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, **kw):
            out.append(([o["Key"] for o in page.get("Contents", [])],
                        [p["Prefix"] for p in page.get("CommonPrefixes", [])]))
        return out

    for kw in ({}, {"Delimiter": "/"}, {"PaginationConfig": {"PageSize": 4}},
               {"Delimiter": "/", "PaginationConfig": {"PageSize": 2}}, {"Prefix": "y/"}):
        assert pages(a, **kw) == pages(b, **kw)
    flat = [k for page in pages(a) for k in page[0]]
    assert flat == sorted(keys, key=str.encode)
    assert pages(b, Delimiter="/")[0] == (["Z", "top", "é"], ["x/", "y/", "日本/"])


@pytest.mark.parametrize("versioned", [False, True])
def test_concurrent_puts_of_one_key_leave_one_whole_winner(
        gateways: tuple[Gateway, Gateway], clients: tuple[Any, Any], shared_data: Path,
        versioned: bool) -> None:
    a, b = clients
    bucket = new_bucket(a)
    if versioned:
        b.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    before = data_files(shared_data)
    bodies = [bytes([i]) * (256 * 1024 + i) for i in range(24)]
    with ThreadPoolExecutor(12) as pool:
        results = list(pool.map(lambda i: (a, b)[i % 2].put_object(
            Bucket=bucket, Key="contended", Body=bodies[i]), range(len(bodies))))
    etags = {f'"{hashlib.md5(body).hexdigest()}"': body for body in bodies}
    assert {r["ETag"] for r in results} == set(etags)
    seen = []
    for s3 in (a, b):
        got = s3.get_object(Bucket=bucket, Key="contended")
        data = got["Body"].read()
        assert etags[got["ETag"]] == data  # whole: the bytes are the ETag's own
        seen.append(data)
    assert seen[0] == seen[1]
    versions = b.list_object_versions(Bucket=bucket)["Versions"]
    assert [v["IsLatest"] for v in versions] == [True] + [False] * (len(versions) - 1)
    assert len(versions) == (len(bodies) if versioned else 1)
    assert versions[0]["ETag"] == a.head_object(Bucket=bucket, Key="contended")["ETag"]
    # every replaced version's bytes were removed by the collectors (either gateway's: they
    # share the garbage ledger), in the background: wait until none is left
    gateways[0].settle()
    assert len(data_files(shared_data) - before) == len(versions)


def test_bucket_created_on_one_is_known_to_the_other(
        gateways: tuple[Gateway, Gateway], clients: tuple[Any, Any]) -> None:
    a, b = clients
    bucket = new_bucket(a)
    try:
        b.create_bucket(Bucket=bucket)  # us-east-1 repeats by the owner answer 200, as AWS
    except ClientError as err:
        assert code(err) == "BucketAlreadyOwnedByYou"
    b.head_bucket(Bucket=bucket)
    assert bucket in [x["Name"] for x in b.list_buckets()["Buckets"]]
    other = gateways[1].client(ACCESS_KEY2, SECRET_KEY2)
    with pytest.raises(ClientError) as exc:
        other.create_bucket(Bucket=bucket)
    assert code(exc.value) == "BucketAlreadyExists"
    a.put_object(Bucket=bucket, Key="k", Body=b"x")
    with pytest.raises(ClientError) as exc:
        b.delete_bucket(Bucket=bucket)
    assert code(exc.value) == "BucketNotEmpty"
    b.delete_object(Bucket=bucket, Key="k")
    b.delete_bucket(Bucket=bucket)
    with pytest.raises(ClientError) as exc:  # no stale bucket on the other gateway
        a.head_bucket(Bucket=bucket)
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def test_concurrent_create_bucket_through_both(clients: tuple[Any, Any]) -> None:
    a, b = clients
    name = f"pg-race-{uuid.uuid4().hex[:8]}"

    def create(i: int) -> str:
        try:
            (a, b)[i % 2].create_bucket(Bucket=name)
            return "200"
        except ClientError as err:
            return code(err)

    with ThreadPoolExecutor(10) as pool:
        outcomes = set(pool.map(create, range(20)))
    assert outcomes <= {"200", "BucketAlreadyOwnedByYou"}
    assert [x["Name"] for x in a.list_buckets()["Buckets"]].count(name) == 1


def test_multipart_upload_across_gateways(clients: tuple[Any, Any]) -> None:
    a, b = clients
    bucket = new_bucket(a)
    upload_id = a.create_multipart_upload(Bucket=bucket, Key="mp")["UploadId"]
    assert [u["UploadId"] for u in b.list_multipart_uploads(Bucket=bucket)["Uploads"]] == [
        upload_id]
    part1, part2 = os.urandom(5 * MiB), os.urandom(1234)
    e1 = b.upload_part(Bucket=bucket, Key="mp", UploadId=upload_id, PartNumber=1,
                       Body=part1)["ETag"]
    e2 = a.upload_part(Bucket=bucket, Key="mp", UploadId=upload_id, PartNumber=2,
                       Body=part2)["ETag"]
    assert [p["PartNumber"] for p in a.list_parts(Bucket=bucket, Key="mp",
                                                   UploadId=upload_id)["Parts"]] == [1, 2]
    b.complete_multipart_upload(Bucket=bucket, Key="mp", UploadId=upload_id, MultipartUpload={
        "Parts": [{"PartNumber": 1, "ETag": e1}, {"PartNumber": 2, "ETag": e2}]})
    assert a.get_object(Bucket=bucket, Key="mp")["Body"].read() == part1 + part2
    with pytest.raises(ClientError) as exc:  # completed: gone for both
        a.upload_part(Bucket=bucket, Key="mp", UploadId=upload_id, PartNumber=3, Body=b"x")
    assert code(exc.value) == "NoSuchUpload"


def test_versions_across_gateways(clients: tuple[Any, Any]) -> None:
    a, b = clients
    bucket = new_bucket(a)
    a.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    assert b.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    v1 = a.put_object(Bucket=bucket, Key="k", Body=b"one")["VersionId"]
    v2 = b.put_object(Bucket=bucket, Key="k", Body=b"two")["VersionId"]
    listing = a.list_object_versions(Bucket=bucket)
    assert [v["VersionId"] for v in listing["Versions"]] == [v2, v1]
    marker = b.delete_object(Bucket=bucket, Key="k")
    assert marker["DeleteMarker"] is True
    with pytest.raises(ClientError) as exc:
        a.get_object(Bucket=bucket, Key="k")
    assert code(exc.value) == "NoSuchKey"
    assert a.get_object(Bucket=bucket, Key="k", VersionId=v1)["Body"].read() == b"one"
    a.delete_object(Bucket=bucket, Key="k", VersionId=marker["VersionId"])
    assert b.get_object(Bucket=bucket, Key="k")["Body"].read() == b"two"
