"""boto3 -> gateway -> OpenStack Swift all-in-one, and what lands on Swift read back with
python-swiftclient."""

from __future__ import annotations

import hashlib
import json
import random
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import swiftclient
from botocore.exceptions import ClientError
from swiftclient.exceptions import ClientException

from tests.clouds.swift import SwiftCluster
from tests.gatewayproc import Gateway, start_gateway

pytestmark = pytest.mark.swift

MiB = 1024 * 1024


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
    with start_gateway(tmp_path_factory.mktemp("swiftgw"), locations, env=env) as gw:
        yield gw


@pytest.fixture(scope="module")
def s3(gateway: Gateway) -> Any:
    return gateway.client()


@pytest.fixture(scope="module")
def native(swift_cloud: SwiftCluster) -> Iterator[swiftclient.Connection]:
    conn = swift_cloud.connection()
    yield conn
    conn.close()


def new_bucket(s3: Any, location: str) -> str:
    name = f"swift-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": location})
    return name


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


def error_code(exc: pytest.ExceptionInfo[ClientError]) -> str:
    return exc.value.response["Error"]["Code"]


@pytest.mark.parametrize(("location", "bucket_match"),
                         [("swiftnomatch", False), ("swiftmatch", True)])
def test_object_lifecycle(s3: Any, native: swiftclient.Connection, containers: dict[str, str],
                          location: str, bucket_match: bool) -> None:
    bucket = new_bucket(s3, location)
    key = "dir/hello wörld.txt"
    payload = b"hello from boto3 to swift"
    metadata = {"color": "blue", "x-trace-id": "abc-123"}
    put = s3.put_object(Bucket=bucket, Key=key, Body=payload, ContentType="text/plain",
                        CacheControl="max-age=5", Metadata=metadata, Tagging="team=storage")
    assert put["ETag"] == f'"{hashlib.md5(payload).hexdigest()}"'

    got = s3.get_object(Bucket=bucket, Key=key)
    assert got["Body"].read() == payload
    assert got["Metadata"] == metadata and got["ContentType"] == "text/plain"
    ranged = s3.get_object(Bucket=bucket, Key=key, Range="bytes=6-9")
    assert ranged["Body"].read() == payload[6:10]
    assert ranged["ContentRange"] == f"bytes 6-9/{len(payload)}"
    assert s3.head_object(Bucket=bucket, Key=key)["ContentLength"] == len(payload)

    # Native on Swift: `<key>` with bucketMatch, `<bucket>/<key>` without.
    container = containers[location]
    name = key if bucket_match else f"{bucket}/{key}"
    headers, body = native.get_object(container, name)
    assert body == payload
    assert headers["content-type"] == "text/plain" and headers["cache-control"] == "max-age=5"
    assert {k: v for k, v in headers.items() if k.startswith("x-object-meta-")} == {
        "x-object-meta-color": "blue", "x-object-meta-x-trace-id": "abc-123",
        "x-object-meta-s3-tagging": "team=storage"}

    s3.put_object(Bucket=bucket, Key=key, Body=b"second version")  # overwrite in place
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == b"second version"
    assert native.get_object(container, name)[1] == b"second version"

    s3.delete_object(Bucket=bucket, Key=key)
    s3.delete_object(Bucket=bucket, Key=key)  # idempotent
    assert swift_head(native, container, name) is None
    with pytest.raises(ClientError) as caught:
        s3.get_object(Bucket=bucket, Key=key)
    assert error_code(caught) == "NoSuchKey"


def part_bytes(number: int, size: int) -> bytes:
    return random.Random(number).randbytes(size)


@pytest.mark.slow
def test_multipart_100_mib(s3: Any, native: swiftclient.Connection,
                           containers: dict[str, str]) -> None:
    container = containers["swiftnomatch"]
    bucket = new_bucket(s3, "swiftnomatch")
    key = "big/object.bin"
    part_size = 10 * MiB
    upload_id = s3.create_multipart_upload(
        Bucket=bucket, Key=key, ContentType="application/x-big", Metadata={"kind": "big-one"},
        Tagging="size=big")["UploadId"]
    parts = []
    whole = hashlib.md5()
    for number in range(1, 11):
        chunk = part_bytes(number, part_size)  # one part in memory at a time
        whole.update(chunk)
        etag = s3.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number,
                              Body=chunk)["ETag"]
        parts.append({"PartNumber": number, "ETag": etag})
        del chunk
    assert len(segments(native, container)) == 10  # one segment object per part
    done = s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id,
                                        MultipartUpload={"Parts": parts})
    assert done["ETag"].strip('"').endswith("-10")

    body = s3.get_object(Bucket=bucket, Key=key)["Body"]
    digest, size = hashlib.md5(), 0
    for piece in body.iter_chunks(MiB):
        digest.update(piece)
        size += len(piece)
    assert (digest.hexdigest(), size) == (whole.hexdigest(), 100 * MiB)
    across = s3.get_object(Bucket=bucket, Key=key, Range=f"bytes={part_size - 10}-{part_size + 9}")
    assert across["Body"].read() == part_bytes(1, part_size)[-10:] + part_bytes(2, part_size)[:10]

    # Natively one Static Large Object: readable whole by any Swift client.
    headers = native.head_object(container, f"{bucket}/{key}")
    assert headers["x-static-large-object"].lower() == "true"
    assert int(headers["content-length"]) == 100 * MiB
    assert headers["content-type"] == "application/x-big"
    assert headers["x-object-meta-kind"] == "big-one"
    assert headers["x-object-meta-s3-tagging"] == "size=big"
    _, manifest = native.get_object(container, f"{bucket}/{key}",
                                    query_string="multipart-manifest=get")
    assert len(json.loads(manifest)) == 10
    s3.delete_object(Bucket=bucket, Key=key)
    assert swift_head(native, container, f"{bucket}/{key}") is None
    assert segments(native, container) == []  # deleting the SLO removed its segments


def test_multipart_reupload_and_abort(s3: Any, native: swiftclient.Connection,
                                      containers: dict[str, str]) -> None:
    container = containers["swiftmatch"]
    bucket = new_bucket(s3, "swiftmatch")
    key = "mpu-small"
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    s3.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=1, Body=b"a" * 5 * MiB)
    first = s3.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=1,
                           Body=b"b" * 5 * MiB)["ETag"]  # re-uploaded
    s3.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=2, Body=b"unlisted")
    third = s3.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=3,
                           Body=b"tail")["ETag"]
    s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={
        "Parts": [{"PartNumber": 1, "ETag": first}, {"PartNumber": 3, "ETag": third}]})
    ranged = s3.get_object(Bucket=bucket, Key=key, Range=f"bytes={5 * MiB - 2}-{5 * MiB + 1}")
    assert ranged["Body"].read() == b"bbta"
    assert native.head_object(container, key)["content-length"] == str(5 * MiB + 4)
    assert len(segments(native, container)) == 2  # the unlisted part is gone

    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="aborted")["UploadId"]
    s3.upload_part(Bucket=bucket, Key="aborted", UploadId=upload_id, PartNumber=1, Body=b"x")
    assert len(segments(native, container)) == 3
    s3.abort_multipart_upload(Bucket=bucket, Key="aborted", UploadId=upload_id)
    assert len(segments(native, container)) == 2
    with pytest.raises(ClientError) as caught:
        s3.list_parts(Bucket=bucket, Key="aborted", UploadId=upload_id)
    assert error_code(caught) == "NoSuchUpload"
    s3.delete_object(Bucket=bucket, Key=key)
    assert segments(native, container) == []


def test_copy(s3: Any, native: swiftclient.Connection, containers: dict[str, str]) -> None:
    container = containers["swiftnomatch"]
    bucket = new_bucket(s3, "swiftnomatch")
    s3.put_object(Bucket=bucket, Key="src", Body=b"copy me", Metadata={"a-b": "c"})
    try:
        s3.copy_object(Bucket=bucket, Key="dst", CopySource={"Bucket": bucket, "Key": "src"})
    except ClientError as exc:
        if exc.response["Error"]["Code"] == "NotImplemented":
            pytest.skip("the core gateway does not implement CopyObject yet")
        raise
    got = s3.get_object(Bucket=bucket, Key="dst")
    assert got["Body"].read() == b"copy me" and got["Metadata"] == {"a-b": "c"}
    headers, body = native.get_object(container, f"{bucket}/dst")
    assert body == b"copy me" and headers["x-object-meta-a-b"] == "c"
    s3.copy_object(Bucket=bucket, Key="dst2", CopySource={"Bucket": bucket, "Key": "src"},
                   MetadataDirective="REPLACE", Metadata={"new": "1"}, ContentType="x/y")
    headers = native.head_object(container, f"{bucket}/dst2")
    assert headers["x-object-meta-new"] == "1" and "x-object-meta-a-b" not in headers
    assert headers["content-type"] == "x/y"


def test_swift_stopped_gives_503(swift_factory: Callable[..., SwiftCluster],
                                 tmp_path: Any) -> None:
    cluster = swift_factory()
    locations = {"swiftdown": swift_location(cluster, cluster.make_container("down"), True)}
    with start_gateway(tmp_path / "gw", locations, env={"swiftdown_SWIFT_KEY": "testing"}) as gw:
        s3 = gw.client()
        bucket = new_bucket(s3, "swiftdown")
        s3.put_object(Bucket=bucket, Key="k", Body=b"before")
        cluster.stop()
        for call in (lambda: s3.get_object(Bucket=bucket, Key="k"),
                     lambda: s3.put_object(Bucket=bucket, Key="k2", Body=b"after")):
            with pytest.raises(ClientError) as caught:
                call()
            assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
            assert error_code(caught) == "ServiceUnavailable"
            assert "swiftdown" in caught.value.response["Error"]["Message"]
