"""boto3 -> gateway -> aws_s3 locations on moto server (and one on s3rver)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.clouds.aws_s3 import S3Emulator
from tests.e2e import scenarios
from tests.gatewayproc import Gateway, start_gateway

pytestmark = pytest.mark.aws_s3

MiB = 1024 * 1024


def pattern(seed: int, size: int) -> bytes:
    block = b"".join(hashlib.sha256(f"{seed}:{i}".encode()).digest() for i in range(128))
    return (block * (size // len(block) + 1))[:size]


def location(emulator: S3Emulator, bucket: str, **extra: Any) -> dict[str, Any]:
    return {"type": "aws_s3", "legacyAwsBehavior": False,
            "details": emulator.details(bucket, **extra)}


class Setup:
    """The module's gateway and the backend bucket behind each of its aws_s3 locations."""

    def __init__(self, gateway: Gateway, backend: dict[str, str]) -> None:
        self.gateway = gateway
        self.backend = backend
        self.s3 = gateway.client()


@pytest.fixture(scope="module")
def setup(aws_s3_moto: S3Emulator, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    backend = {name: aws_s3_moto.create_bucket()
               for name in ("awsmatch", "awsprefix", "awssse")}
    locations = {
        "awsmatch": location(aws_s3_moto, backend["awsmatch"], bucketMatch=True),
        "awsprefix": location(aws_s3_moto, backend["awsprefix"], bucketMatch=False),
        "awssse": location(aws_s3_moto, backend["awssse"], serverSideEncryption=True),
    }
    with start_gateway(tmp_path_factory.mktemp("gw-aws"), locations) as gateway:
        yield Setup(gateway, backend)


@contextmanager
def not_implemented_yet() -> Iterator[None]:
    """Skip (not fail) while the core answers NotImplemented for the operation."""
    try:
        yield
    except ClientError as exc:
        if exc.response["Error"]["Code"] == "NotImplemented":
            pytest.skip(f"core: {exc.response['Error'].get('Message')}")
        raise


def new_bucket(s3: Any, location_name: str) -> str:
    return scenarios.new_bucket(s3, location_name, "gw")


@pytest.mark.parametrize(("location_name", "match"), [("awsmatch", True), ("awsprefix", False)])
def test_object_round_trip(setup: Setup, aws_s3_moto: S3Emulator, location_name: str,
                           match: bool) -> None:
    s3 = setup.s3
    bucket = new_bucket(s3, location_name)
    assert s3.get_bucket_location(Bucket=bucket)["LocationConstraint"] == location_name
    data = pattern(1, 3 * MiB + 5)
    # On the cloud: one native object under <key> (bucketMatch) or <bucket>/<key>.
    native = aws_s3_moto.boto()
    backend = setup.backend[location_name]
    backend_key = scenarios.backend_name(bucket, "dir/obj.txt", match)

    def check_native() -> None:
        obj = native.get_object(Bucket=backend, Key=backend_key)
        assert obj["Body"].read() == data
        assert obj["Metadata"]["color"] == "blue" and obj["ContentType"] == "text/csv"
        tags = native.get_object_tagging(Bucket=backend, Key=backend_key)
        assert {t["Key"]: t["Value"] for t in tags["TagSet"]} == {"team": "storage", "tier": "1"}

    def native_gone() -> bool:
        return native.list_objects_v2(Bucket=backend, Prefix=backend_key).get("KeyCount", 0) == 0

    scenarios.object_round_trip(
        s3, bucket, "dir/obj.txt", data, metadata={"color": "blue"}, content_type="text/csv",
        tagging="team=storage&tier=1", byte_range=(100, 199), check_native=check_native,
        native_gone=native_gone)


def test_overwrite_keeps_the_new_data(setup: Setup, aws_s3_moto: S3Emulator) -> None:
    """Replacing an object reuses its backend key: the new bytes must survive the cleanup."""
    s3 = setup.s3
    bucket = new_bucket(s3, "awsmatch")
    s3.put_object(Bucket=bucket, Key="k", Body=b"first")
    s3.put_object(Bucket=bucket, Key="k", Body=b"second")
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"second"
    native = aws_s3_moto.boto()
    assert native.get_object(Bucket=setup.backend["awsmatch"], Key="k")["Body"].read() == b"second"
    # The versioned backend keeps only the current version: the replaced one was deleted by id.
    versions = native.list_object_versions(Bucket=setup.backend["awsmatch"], Prefix="k")
    assert [v["Size"] for v in versions.get("Versions", []) if v["Key"] == "k"] == [6]


def test_multipart_100mib(setup: Setup, aws_s3_moto: S3Emulator) -> None:
    s3 = setup.s3
    bucket = new_bucket(s3, "awsprefix")
    key = "big.bin"
    part_size, count = 20 * MiB, 5

    def early_part_3(upload_id: str) -> None:  # replaced by the scenario's own part 3
        s3.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=3,
                       Body=pattern(99, part_size))

    scenarios.multipart_upload(s3, bucket, key, part_size=part_size, count=count, boundary=2,
                               before_parts=early_part_3, Metadata={"kind": "big"})

    native = aws_s3_moto.boto()
    obj = native.head_object(Bucket=setup.backend["awsprefix"], Key=f"{bucket}/{key}")
    assert obj["ContentLength"] == count * part_size and obj["Metadata"]["kind"] == "big"
    assert not native.list_multipart_uploads(Bucket=setup.backend["awsprefix"]).get("Uploads")


def test_multipart_abort(setup: Setup, aws_s3_moto: S3Emulator) -> None:
    s3 = setup.s3
    bucket = new_bucket(s3, "awsmatch")
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="gone")["UploadId"]
    s3.upload_part(Bucket=bucket, Key="gone", UploadId=upload_id, PartNumber=1, Body=b"x" * 100)
    native = aws_s3_moto.boto()
    uploads = native.list_multipart_uploads(Bucket=setup.backend["awsmatch"]).get("Uploads", [])
    assert [u["Key"] for u in uploads] == ["gone"]
    s3.abort_multipart_upload(Bucket=bucket, Key="gone", UploadId=upload_id)
    assert not native.list_multipart_uploads(Bucket=setup.backend["awsmatch"]).get("Uploads")


def test_copy(setup: Setup, aws_s3_moto: S3Emulator) -> None:
    s3 = setup.s3
    bucket = new_bucket(s3, "awsmatch")
    scenarios.copy_object(s3, bucket, pattern(5, MiB), {"a": "1"}, replace={"b": "2"})
    native = aws_s3_moto.boto().head_object(Bucket=setup.backend["awsmatch"], Key="dst")
    assert native["Metadata"] == {"b": "2"} and native["ContentLength"] == MiB


def test_upload_part_copy(setup: Setup) -> None:
    s3 = setup.s3
    bucket = new_bucket(s3, "awsmatch")
    data = pattern(7, 6 * MiB)
    s3.put_object(Bucket=bucket, Key="src", Body=data)
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="dst")["UploadId"]
    with not_implemented_yet():
        first = s3.upload_part_copy(Bucket=bucket, Key="dst", UploadId=upload_id, PartNumber=1,
                                    CopySource={"Bucket": bucket, "Key": "src"},
                                    CopySourceRange=f"bytes=0-{5 * MiB - 1}")
    second = s3.upload_part(Bucket=bucket, Key="dst", UploadId=upload_id, PartNumber=2,
                            Body=b"tail")
    s3.complete_multipart_upload(
        Bucket=bucket, Key="dst", UploadId=upload_id,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": first["CopyPartResult"]["ETag"]},
                                   {"PartNumber": 2, "ETag": second["ETag"]}]})
    assert s3.get_object(Bucket=bucket, Key="dst")["Body"].read() == data[: 5 * MiB] + b"tail"


def test_server_side_encryption_reported(setup: Setup, aws_s3_moto: S3Emulator) -> None:
    s3 = setup.s3
    bucket = new_bucket(s3, "awssse")
    put = s3.put_object(Bucket=bucket, Key="enc", Body=b"secret")
    assert put.get("ServerSideEncryption") == "AES256"
    assert s3.head_object(Bucket=bucket, Key="enc")["ServerSideEncryption"] == "AES256"
    assert s3.get_object(Bucket=bucket, Key="enc")["ServerSideEncryption"] == "AES256"
    native = aws_s3_moto.boto().head_object(Bucket=setup.backend["awssse"], Key=f"{bucket}/enc")
    assert native["ServerSideEncryption"] == "AES256"


def test_emulator_stopped_is_503(aws_s3_throwaway: Callable[[], S3Emulator], tmp_path: Path) -> None:
    emulator = aws_s3_throwaway()
    backend = emulator.create_bucket()
    with start_gateway(tmp_path / "gw", {"doomed": location(emulator, backend)}) as gateway:
        s3 = gateway.client()
        scenarios.stopped_is_503(s3, new_bucket(s3, "doomed"), "doomed", emulator.stop, within=10)


def test_any_s3_compatible_endpoint(aws_s3_s3rver: S3Emulator, tmp_path: Path) -> None:
    """s3rver, a different S3 implementation, is reached through awsEndpoint alone."""
    backend = aws_s3_s3rver.create_bucket(versioned=False)
    locations = {"s3rver": location(aws_s3_s3rver, backend, supportsVersioning=False,
                                    bucketMatch=True)}
    with start_gateway(tmp_path / "gw", locations) as gateway:
        s3 = gateway.client()
        bucket = new_bucket(s3, "s3rver")
        data = pattern(6, 6 * MiB)
        s3.put_object(Bucket=bucket, Key="obj", Body=data, Metadata={"m": "v"})
        assert s3.get_object(Bucket=bucket, Key="obj", Range="bytes=10-19")["Body"].read() == data[10:20]
        native = aws_s3_s3rver.boto().get_object(Bucket=backend, Key="obj")
        assert native["Body"].read() == data and native["Metadata"] == {"m": "v"}

        upload_id = s3.create_multipart_upload(Bucket=bucket, Key="mpu")["UploadId"]
        etags = [s3.upload_part(Bucket=bucket, Key="mpu", UploadId=upload_id, PartNumber=n,
                                Body=body)["ETag"]
                 for n, body in ((1, data[: 5 * MiB]), (2, data[5 * MiB :]))]
        s3.complete_multipart_upload(
            Bucket=bucket, Key="mpu", UploadId=upload_id,
            MultipartUpload={"Parts": [{"PartNumber": n, "ETag": e}
                                       for n, e in enumerate(etags, start=1)]})
        assert s3.get_object(Bucket=bucket, Key="mpu")["Body"].read() == data
        s3.delete_object(Bucket=bucket, Key="obj")
        with pytest.raises(ClientError):
            aws_s3_s3rver.boto().head_object(Bucket=backend, Key="obj")
