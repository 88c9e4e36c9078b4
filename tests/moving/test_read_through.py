"""Read-through (lazy) migration, end to end: a gateway bucket on a file location reads
through to a moto bucket holding pre-existing objects (put natively with boto3). A GET miss is
served from the source and copied into the bucket's own location on the way; listings merge
source and bucket without duplicates (pages, delimiters); a deleted key is not resurrected;
a client's write always wins over the source; the drain job copies the rest. Prints the extra
latency of a miss over a hit.
"""

from __future__ import annotations

import json
import os
import sqlite3
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.gatewayproc import REPO, Gateway, eventually, free_port, start_gateway, write_config

pytestmark = pytest.mark.aws_s3
SOURCE_OBJECTS = 300


def body_of(key: str) -> bytes:
    return f"{key} from the old cloud ".encode() * (1 + len(key) % 5)


def read_through(gw: Gateway, *args: str) -> dict[str, Any]:
    result = subprocess.run([sys.executable, "-m", "gateway", "read-through", *args,
                             "--endpoint", gw.endpoint], env={**os.environ, **gw.env},
                            cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout)


def records(gw: Gateway, bucket: str) -> dict[str, str]:
    """key -> location of the bucket's current records (read-only SQLite), markers excluded."""
    uri = f"file:{gw.workdir / 'metadata' / 'metadata.sqlite3'}?mode=ro"
    with sqlite3.connect(uri, uri=True, timeout=10) as db:
        rows = db.execute("SELECT key, location FROM objects WHERE bucket=? AND latest=1 AND "
                          "delete_marker=0", (bucket,)).fetchall()
    return dict(rows)


def listed(s3: Any, bucket: str, **extra: Any) -> tuple[list[str], list[str]]:
    keys: list[str] = []
    prefixes: list[str] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, **extra):
        keys += [entry["Key"] for entry in page.get("Contents", [])]
        prefixes += [entry["Prefix"] for entry in page.get("CommonPrefixes", [])]
    return keys, prefixes


@pytest.fixture(scope="module")
def source(aws_s3_moto: Any) -> tuple[str, dict[str, bytes]]:
    bucket = aws_s3_moto.create_bucket(versioned=False)
    client = aws_s3_moto.boto()
    objects = {f"photos/{i % 4}/img-{i:04d}.jpg": b"" for i in range(SOURCE_OBJECTS - 20)}
    objects.update({f"top-{i:02d}.txt": b"" for i in range(20)})
    objects = {key: body_of(key) for key in objects}

    def put(key: str) -> None:
        client.put_object(Bucket=bucket, Key=key, Body=objects[key],
                          ContentType="image/jpeg" if key.endswith(".jpg") else "text/plain",
                          Metadata={"camera": "old"})

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(put, objects))
    return bucket, objects


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, aws_s3_moto: Any,
            source: tuple[str, dict[str, bytes]]) -> Iterator[Gateway]:
    locations = {"old-cloud": {"type": "aws_s3", "legacyAwsBehavior": False,
                               "details": aws_s3_moto.details(source[0], bucketMatch=True,
                                                              supportsVersioning=False)}}
    with start_gateway(tmp_path_factory.mktemp("read-through"), locations,
                       config={"jobs": {"pollSeconds": 0.2}}) as gw:
        gw.client().create_bucket(Bucket="lazy")
        status = read_through(gw, "lazy", "--source", "old-cloud")
        assert status["source"] == "old-cloud"
        yield gw


def test_miss_is_served_and_copied_then_a_hit(gateway: Gateway,
                                              source: tuple[str, dict[str, bytes]]) -> None:
    s3, (_, objects) = gateway.client(), source
    misses, hits = [], []
    for key in sorted(objects)[:15]:
        started = time.perf_counter()
        answer = s3.get_object(Bucket="lazy", Key=key)
        assert answer["Body"].read() == objects[key]
        misses.append(time.perf_counter() - started)
        assert answer["Metadata"] == {"camera": "old"}
        assert answer["ContentType"] == "image/jpeg"
        started = time.perf_counter()
        assert s3.get_object(Bucket="lazy", Key=key)["Body"].read() == objects[key]
        hits.append(time.perf_counter() - started)
    copied = records(gateway, "lazy")
    assert {key: copied[key] for key in sorted(objects)[:15]} == \
        dict.fromkeys(sorted(objects)[:15], "us-east-1")  # copied into the bucket's own location
    head = s3.head_object(Bucket="lazy", Key="top-03.txt")  # HEAD misses copy too
    assert head["ContentLength"] == len(objects["top-03.txt"])
    assert "top-03.txt" in records(gateway, "lazy")
    with pytest.raises(ClientError) as caught:
        s3.get_object(Bucket="lazy", Key="not/anywhere")
    assert caught.value.response["Error"]["Code"] == "NoSuchKey"
    miss, hit = statistics.median(misses), statistics.median(hits)
    print(f"\nread-through GET (small objects): miss {miss * 1000:.1f} ms, hit "
          f"{hit * 1000:.1f} ms, extra latency of a miss {(miss - hit) * 1000:.1f} ms (median)")


def test_listing_merges_without_duplicates_and_deletes_are_not_resurrected(
        gateway: Gateway, source: tuple[str, dict[str, bytes]]) -> None:
    s3, (_, objects) = gateway.client(), source
    s3.put_object(Bucket="lazy", Key="top-05.txt", Body=b"the client's newer write")
    s3.put_object(Bucket="lazy", Key="new/only-here.txt", Body=b"only in the gateway")
    s3.delete_object(Bucket="lazy", Key="top-06.txt")  # only ever in the source
    s3.get_object(Bucket="lazy", Key="top-07.txt")["Body"].read()  # copied in...
    s3.delete_object(Bucket="lazy", Key="top-07.txt")  # ...then deleted
    s3.delete_objects(Bucket="lazy", Delete={"Objects": [{"Key": "top-08.txt"}]})  # batch too
    gone = {"top-06.txt", "top-07.txt", "top-08.txt"}

    keys, _ = listed(s3, "lazy", PaginationConfig={"PageSize": 37})
    assert keys == sorted(keys) and len(keys) == len(set(keys))
    assert set(keys) == (set(objects) - gone) | {"new/only-here.txt"}
    top, prefixes = listed(s3, "lazy", Delimiter="/", PaginationConfig={"PageSize": 7})
    assert prefixes == ["new/", "photos/"]
    assert top == sorted(key for key in objects if key.startswith("top-") and key not in gone)
    inner, _ = listed(s3, "lazy", Prefix="photos/2/", StartAfter="photos/2/img-0100.jpg")
    assert inner == sorted(key for key in objects
                           if key.startswith("photos/2/") and key > "photos/2/img-0100.jpg")
    v1 = s3.list_objects(Bucket="lazy", Prefix="top-", MaxKeys=5)
    assert [e["Key"] for e in v1["Contents"]] == ["top-00.txt", "top-01.txt", "top-02.txt",
                                                  "top-03.txt", "top-04.txt"]
    assert v1["IsTruncated"]

    assert s3.get_object(Bucket="lazy", Key="top-05.txt")["Body"].read() == \
        b"the client's newer write"
    for key in gone:
        for _ in range(2):
            with pytest.raises(ClientError) as caught:
                s3.get_object(Bucket="lazy", Key=key)
            assert caught.value.response["Error"]["Code"] == "NoSuchKey"
    s3.put_object(Bucket="lazy", Key="top-06.txt", Body=b"written again")  # after a tombstone
    assert s3.get_object(Bucket="lazy", Key="top-06.txt")["Body"].read() == b"written again"
    s3.delete_object(Bucket="lazy", Key="top-06.txt")


def test_races_of_misses_writes_and_deletes(gateway: Gateway,
                                            source: tuple[str, dict[str, bytes]]) -> None:
    """Bounded loops of concurrent clients on source-only keys: simultaneous misses all get
    the source's bytes; a PUT racing a miss always wins; a DELETE racing a miss stays
    deleted."""
    s3, (_, objects) = gateway.client(), source
    keys = sorted(key for key in objects if key.startswith("photos/3/"))[:30]
    with ThreadPoolExecutor(8) as pool:
        for key in keys[:10]:
            reads = [pool.submit(s3.get_object, Bucket="lazy", Key=key) for _ in range(6)]
            assert [read.result()["Body"].read() for read in reads] == [objects[key]] * 6
        for key in keys[10:20]:
            put = pool.submit(s3.put_object, Bucket="lazy", Key=key, Body=b"client wins")
            reads = [pool.submit(s3.get_object, Bucket="lazy", Key=key) for _ in range(3)]
            put.result()
            for read in reads:  # each read: the source's bytes or the client's, never others
                assert read.result()["Body"].read() in (objects[key], b"client wins")
            assert s3.get_object(Bucket="lazy", Key=key)["Body"].read() == b"client wins"
        for key in keys[20:30]:
            reads = [pool.submit(s3.get_object, Bucket="lazy", Key=key) for _ in range(2)]
            pool.submit(s3.delete_object, Bucket="lazy", Key=key).result()
            for read in reads:
                try:
                    assert read.result()["Body"].read() == objects[key]
                except ClientError as err:
                    assert err.response["Error"]["Code"] == "NoSuchKey"
            with pytest.raises(ClientError) as caught:
                s3.get_object(Bucket="lazy", Key=key)
            assert caught.value.response["Error"]["Code"] == "NoSuchKey", key
    for key in keys[20:30]:
        objects.pop(key)  # deleted for good: the drain test below must not expect them


def test_drain_copies_the_rest(gateway: Gateway, source: tuple[str, dict[str, bytes]]) -> None:
    s3, (_, objects) = gateway.client(), source
    started = time.monotonic()
    read_through(gateway, "lazy", "--source", "old-cloud", "--drain")
    eventually(lambda: (read_through(gateway, "lazy", "--status")["drain"] or {})
               .get("state") == "done", timeout=60)
    seconds = time.monotonic() - started
    status = read_through(gateway, "lazy", "--status")
    copied = records(gateway, "lazy")
    gone = {"top-06.txt", "top-07.txt", "top-08.txt"}
    assert set(objects) - gone <= set(copied) and not gone & set(copied)
    assert all(copied[key] == "us-east-1" for key in objects if key not in gone)
    print(f"\nread-through drain: {status['drain']['copied']} objects copied in {seconds:.1f}s")
    # Nothing left to read through: off, and the bucket has everything but what was deleted.
    assert read_through(gateway, "lazy", "--off")["source"] is None
    keys, _ = listed(s3, "lazy")
    assert set(keys) == (set(objects) - gone) | {"new/only-here.txt"}
    key = "photos/1/img-0001.jpg"
    assert s3.get_object(Bucket="lazy", Key=key)["Body"].read() == objects[key]
    assert s3.get_object(Bucket="lazy", Key="top-05.txt")["Body"].read() == \
        b"the client's newer write"


def test_config_file_names_the_source(tmp_path: Path, aws_s3_moto: Any,
                                      source: tuple[str, dict[str, bytes]]) -> None:
    bucket, objects = source
    locations = {"old-cloud": {"type": "aws_s3", "legacyAwsBehavior": False,
                               "details": aws_s3_moto.details(bucket, bucketMatch=True,
                                                              supportsVersioning=False)}}
    config = {"readThrough": {"cfg": {"source": "old-cloud", "prefix": "photos/0/"}}}
    with start_gateway(tmp_path / "good", locations, config=config) as gw:
        s3 = gw.client()
        s3.create_bucket(Bucket="cfg")
        key = sorted(k for k in objects if k.startswith("photos/0/"))[0]
        short = key.removeprefix("photos/0/")
        assert s3.get_object(Bucket="cfg", Key=short)["Body"].read() == objects[key]
        keys, _ = listed(s3, "cfg")
        assert set(keys) == {k.removeprefix("photos/0/") for k in objects
                             if k.startswith("photos/0/")}
    bad = {"readThrough": {"cfg": {"source": "old-cloud", "prefx": ""}}}
    env = write_config(tmp_path / "bad", free_port(), locations, bad)
    result = subprocess.run([sys.executable, "-m", "gateway"], env={**os.environ, **env},
                            cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert 'config.json: key "readThrough.cfg.prefx"' in result.stderr.strip().splitlines()[-1]
