"""Read-through with two worker processes: a DELETE answered by one worker while another is
copying the same key in on a GET miss must stay deleted. Each worker serialises copies and
deletes of a key only in its own memory, so the copy's commit (conditional on "no current
object", which a delete marker does not count as) used to land on top of the other worker's
tombstone and resurrect the acknowledged delete."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.gatewayproc import Gateway, start_gateway
from tests.moving.test_read_through import read_through

pytestmark = pytest.mark.aws_s3
KEYS = 24
BODY = b"x" * (512 * 1024)  # big enough that a copy takes a few milliseconds


@pytest.fixture(scope="module")
def source(aws_s3_moto: Any) -> str:
    bucket = aws_s3_moto.create_bucket(versioned=False)
    client = aws_s3_moto.boto()
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: client.put_object(Bucket=bucket, Key=f"k-{i:03d}", Body=BODY),
                      range(KEYS * 2)))
    return bucket


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, aws_s3_moto: Any,
            source: str) -> Iterator[Gateway]:
    locations = {"old-cloud": {"type": "aws_s3", "legacyAwsBehavior": False,
                               "details": aws_s3_moto.details(source, bucketMatch=True,
                                                              supportsVersioning=False)}}
    with start_gateway(tmp_path_factory.mktemp("rt-workers"), locations,
                       config={"workers": 2, "jobs": {"pollSeconds": 0.2}}) as gw:
        client = gw.client()
        client.create_bucket(Bucket="lazy")
        client.create_bucket(Bucket="lazyv")
        client.put_bucket_versioning(Bucket="lazyv",
                                     VersioningConfiguration={"Status": "Enabled"})
        for bucket in ("lazy", "lazyv"):
            read_through(gw, bucket, "--source", "old-cloud")
        yield gw


def get(client: Any, bucket: str, key: str, start: threading.Barrier) -> None:
    start.wait()
    try:
        client.get_object(Bucket=bucket, Key=key)["Body"].read()
    except ClientError:
        pass


def delete(client: Any, bucket: str, key: str, start: threading.Barrier, delay: float) -> None:
    start.wait()
    time.sleep(delay)  # land anywhere in the copy's window
    client.delete_object(Bucket=bucket, Key=key)


def race(gw: Gateway, bucket: str, keys: list[str]) -> list[str]:
    """Per key, GETs and one DELETE on connections of their own (so both workers serve);
    returns the keys readable after their DELETE was acknowledged."""
    resurrected = []
    for index, key in enumerate(keys):
        clients = [gw.client() for _ in range(4)]
        start = threading.Barrier(4)
        with ThreadPoolExecutor(4) as pool:
            done = [pool.submit(get, c, bucket, key, start) for c in clients[:3]]
            done.append(pool.submit(delete, clients[3], bucket, key, start, 0.002 * (index % 6)))
            for future in done:
                future.result()
        try:
            gw.client().head_object(Bucket=bucket, Key=key)
            resurrected.append(key)
        except ClientError as err:
            assert err.response["Error"]["Code"] in ("404", "NoSuchKey")
    return resurrected


@pytest.mark.parametrize("bucket,first", [("lazy", 0), ("lazyv", KEYS)])
def test_delete_racing_a_copy_on_another_worker_stays_deleted(gateway: Gateway, bucket: str,
                                                              first: int) -> None:
    keys = [f"k-{i:03d}" for i in range(first, first + KEYS)]
    assert race(gateway, bucket, keys) == []


def test_delete_objects_of_a_source_key_stays_deleted(gateway: Gateway) -> None:
    s3 = gateway.client()
    keys = [f"k-{i:03d}" for i in range(KEYS * 2 - 4, KEYS * 2)]
    assert s3.get_object(Bucket="lazy", Key=keys[0])["Body"].read() == BODY  # copied in
    answer = s3.delete_objects(Bucket="lazy",
                               Delete={"Objects": [{"Key": key} for key in keys]})
    assert sorted(d["Key"] for d in answer["Deleted"]) == keys
    for key in keys:  # neither the copied key nor the source-only ones come back
        with pytest.raises(ClientError):
            s3.head_object(Bucket="lazy", Key=key)
