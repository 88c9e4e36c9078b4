"""boto3 -> gateway -> OpenStack Swift all-in-one, and what lands on Swift read back with
python-swiftclient."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import swiftclient
from swiftclient.exceptions import ClientException

from tests.clouds.swift import SwiftCluster
from tests.e2e import scenarios
from tests.e2e.scenarios import MiB
from tests.gatewayproc import Gateway, eventually, start_gateway

pytestmark = pytest.mark.swift


def swift_location(cluster: SwiftCluster, container: str, bucket_match: bool) -> dict[str, Any]:
    details = cluster.details(container, bucketMatch=bucket_match)
    del details["key"]  # from the environment: <location>_SWIFT_KEY
    return {"type": "swift", "legacyAwsBehavior": False, "details": details}


@pytest.fixture(scope="module")
def containers(swift_cloud: SwiftCluster) -> dict[str, str]:
    return {loc: swift_cloud.make_container(f"e2e-{uuid.uuid4().hex[:10]}")
            for loc in ("swiftmatch", "swiftnomatch")}


@pytest.fixture(scope="module")
def gateway(swift_cloud: SwiftCluster, containers: dict[str, str],
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    locations = {
        "swiftmatch": swift_location(swift_cloud, containers["swiftmatch"], True),
        "swiftnomatch": swift_location(swift_cloud, containers["swiftnomatch"], False),
    }
    env = {"swiftmatch_SWIFT_KEY": "testing", "swiftnomatch_SWIFT_KEY": "testing"}
    # The collector removes replaced and deleted bytes in the background: run it often.
    config = {"storage": {"collectInterval": 0.2}}
    with start_gateway(tmp_path_factory.mktemp("swiftgw"), locations, env=env,
                       config=config) as gw:
        yield gw


@pytest.fixture(scope="module")
def s3(gateway: Gateway) -> Any:
    return gateway.client()


@pytest.fixture(scope="module")
def native(swift_cloud: SwiftCluster) -> Iterator[swiftclient.Connection]:
    conn = swift_cloud.connection()
    yield conn
    conn.close()


@pytest.fixture(scope="module")
def buckets(s3: Any) -> scenarios.Buckets:
    """New buckets, but one only on swiftmatch (bucketMatch): its tests share it."""
    return scenarios.Buckets(s3, "swift", {"swiftmatch"})


def swift_head(native: swiftclient.Connection, container: str, name: str) -> dict[str, str] | None:
    try:
        return native.head_object(container, name)
    except ClientException as exc:
        if exc.http_status == 404:
            return None
        raise


def segments(native: swiftclient.Connection, container: str) -> list[str]:
    try:
        return [o["name"] for o in native.get_container(f"{container}_segments",
                                                        full_listing=True)[1]]
    except ClientException as exc:
        if exc.http_status == 404:
            return []
        raise


def names_of(native: swiftclient.Connection, container: str, bucket: str, key: str,
             bucket_match: bool) -> list[str]:
    """The Swift objects holding writes of this S3 key: `<natural name>~<token>`."""
    prefix = scenarios.backend_name(bucket, key, bucket_match) + "~"
    listing = native.get_container(container, prefix=prefix, full_listing=True)[1]
    return scenarios.native_names([o["name"] for o in listing], bucket, key, bucket_match)


@pytest.mark.parametrize(("location", "bucket_match"),
                         [("swiftnomatch", False), ("swiftmatch", True)])
def test_object_lifecycle(s3: Any, buckets: scenarios.Buckets, native: swiftclient.Connection,
                          containers: dict[str, str], location: str, bucket_match: bool) -> None:
    bucket = buckets(location)
    key = "dir/hello wörld.txt"
    payload = b"hello from boto3 to swift"
    metadata = {"color": "blue", "x-trace-id": "abc-123"}
    # Native on Swift: `<key>~<token>` with bucketMatch, `<bucket>/<key>~<token>` without.
    container = containers[location]
    first: list[str] = []

    def names() -> list[str]:
        return names_of(native, container, bucket, key, bucket_match)

    def check_native() -> None:
        [name] = names()
        headers, body = native.get_object(container, name)
        assert body == payload
        assert headers["content-type"] == "text/plain" and headers["cache-control"] == "max-age=5"
        assert {k: v for k, v in headers.items() if k.startswith("x-object-meta-")} == {
            "x-object-meta-color": "blue", "x-object-meta-x-trace-id": "abc-123",
            "x-object-meta-s3-tagging": "team=storage"}
        first.append(name)

    def check_overwrite(second: bytes) -> None:
        # The new write is an object of its own; the replaced one goes with the collector.
        eventually(lambda: len(names()) == 1 and names()[0] != first[0])
        assert native.get_object(container, names()[0])[1] == second

    def native_gone() -> bool:
        eventually(lambda: names() == [])
        return True

    scenarios.object_round_trip(
        s3, bucket, key, payload, metadata=metadata, content_type="text/plain",
        tagging="team=storage", byte_range=(6, 9), check_native=check_native,
        check_overwrite=check_overwrite, CacheControl="max-age=5", native_gone=native_gone)


@pytest.mark.slow
def test_multipart_100_mib(s3: Any, buckets: scenarios.Buckets, native: swiftclient.Connection,
                           containers: dict[str, str]) -> None:
    container = containers["swiftnomatch"]
    bucket = buckets("swiftnomatch")
    key = "big/object.bin"

    def one_segment_per_part(upload_id: str) -> None:
        assert len(segments(native, container)) == 10

    scenarios.multipart_upload(s3, bucket, key, part_size=10 * MiB, count=10,
                               before_complete=one_segment_per_part,
                               ContentType="application/x-big", Metadata={"kind": "big-one"},
                               Tagging="size=big")

    # Natively one Static Large Object: readable whole by any Swift client.
    [name] = names_of(native, container, bucket, key, False)
    headers = native.head_object(container, name)
    assert headers["x-static-large-object"].lower() == "true"
    assert int(headers["content-length"]) == 100 * MiB
    assert headers["content-type"] == "application/x-big"
    assert headers["x-object-meta-kind"] == "big-one"
    assert headers["x-object-meta-s3-tagging"] == "size=big"
    _, manifest = native.get_object(container, name, query_string="multipart-manifest=get")
    assert len(json.loads(manifest)) == 10
    assert all(segment.startswith(f"{name}/") for segment in segments(native, container))
    s3.delete_object(Bucket=bucket, Key=key)
    # Deleting the SLO removes its segments.
    eventually(lambda: swift_head(native, container, name) is None
               and segments(native, container) == [])


def test_multipart_reupload_and_abort(s3: Any, buckets: scenarios.Buckets,
                                      native: swiftclient.Connection,
                                      containers: dict[str, str]) -> None:
    container = containers["swiftmatch"]
    bucket = buckets("swiftmatch")
    key = "mpu-small"
    scenarios.reupload_and_complete(s3, bucket, key, unlisted_part=True)
    [name] = names_of(native, container, bucket, key, True)
    assert native.head_object(container, name)["content-length"] == str(5 * MiB + 4)
    # The replaced attempt at part 1 and the unlisted part 2 are gone: two segments are left.
    eventually(lambda: len(segments(native, container)) == 2)

    looks: list[int] = []

    def staged() -> int:
        # Looked at before the upload, after its part, and after the abort: the abort's
        # segments are removed by the collector, in the background.
        if len(looks) == 2:
            eventually(lambda: len(segments(native, container)) == looks[0])
        looks.append(len(segments(native, container)))
        return looks[-1]

    scenarios.abort_upload(s3, bucket, "aborted", staged)
    s3.delete_object(Bucket=bucket, Key=key)
    eventually(lambda: segments(native, container) == [])


def test_copy(s3: Any, buckets: scenarios.Buckets, native: swiftclient.Connection,
              containers: dict[str, str]) -> None:
    container = containers["swiftnomatch"]
    bucket = buckets("swiftnomatch")
    scenarios.copy_object(s3, bucket, b"copy me", {"a-b": "c"})
    [dst] = names_of(native, container, bucket, "dst", False)
    headers, body = native.get_object(container, dst)
    assert body == b"copy me" and headers["x-object-meta-a-b"] == "c"
    s3.copy_object(Bucket=bucket, Key="dst2", CopySource={"Bucket": bucket, "Key": "src"},
                   MetadataDirective="REPLACE", Metadata={"new": "1"}, ContentType="x/y")
    [dst2] = names_of(native, container, bucket, "dst2", False)
    headers = native.head_object(container, dst2)
    assert headers["x-object-meta-new"] == "1" and "x-object-meta-a-b" not in headers
    assert headers["content-type"] == "x/y"
    [src] = names_of(native, container, bucket, "src", False)
    assert len({src, dst, dst2}) == 3  # every write at a key of its own


def test_swift_stopped_gives_503(swift_factory: Callable[..., SwiftCluster],
                                 tmp_path: Any) -> None:
    cluster = swift_factory()
    locations = {"swiftdown": swift_location(cluster, cluster.make_container("down"), True)}
    with start_gateway(tmp_path / "gw", locations, env={"swiftdown_SWIFT_KEY": "testing"}) as gw:
        s3 = gw.client()
        bucket = scenarios.new_bucket(s3, "swiftdown", "swift")
        scenarios.stopped_is_503(s3, bucket, "swiftdown", cluster.stop)
