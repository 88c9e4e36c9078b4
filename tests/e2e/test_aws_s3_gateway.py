"""boto3 -> gateway -> aws_s3 locations on moto server (and one on s3rver).

Every write lands on the backend at a name of its own, `<natural name>~<token>` (see
scenarios.native_names); replaced and deleted bytes go with the gateway's background collector,
so what must disappear natively is waited for (`eventually`)."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from awscrt import checksums as crt_checksums
from botocore.exceptions import ClientError

from tests.clouds.aws_s3 import S3Emulator
from tests.e2e import scenarios
from tests.gatewayproc import Gateway, eventually, start_gateway

pytestmark = pytest.mark.aws_s3

MiB = 1024 * 1024


def pattern(seed: int, size: int) -> bytes:
    block = b"".join(hashlib.sha256(f"{seed}:{i}".encode()).digest() for i in range(128))
    return (block * (size // len(block) + 1))[:size]


def location(emulator: S3Emulator, bucket: str, **extra: Any) -> dict[str, Any]:
    return {"type": "aws_s3", "legacyAwsBehavior": False,
            "details": emulator.details(bucket, **extra)}


# The collector removes replaced and deleted bytes in the background: run it often.
CONFIG = {"storage": {"collectInterval": 0.2}}


def versions(native: Any, backend: str, bucket: str, key: str,
             bucket_match: bool) -> list[dict[str, Any]]:
    """Every backend version and delete marker at the names holding writes of this S3 key."""
    prefix = scenarios.backend_name(bucket, key, bucket_match) + "~"
    listed = native.list_object_versions(Bucket=backend, Prefix=prefix)
    assert not listed.get("IsTruncated")  # a test writes far fewer
    found = listed.get("Versions", []) + listed.get("DeleteMarkers", [])
    names = set(scenarios.native_names([v["Key"] for v in found], bucket, key, bucket_match))
    return [v for v in found if v["Key"] in names]


def native_name(native: Any, backend: str, bucket: str, key: str, bucket_match: bool) -> str:
    """The one backend name holding the S3 key's current write (old ones may still wait for
    the collector: the newest version wins)."""
    found = [v for v in versions(native, backend, bucket, key, bucket_match) if "Size" in v]
    assert found, f"no backend object for {bucket}/{key}"
    return max(found, key=lambda v: v["LastModified"])["Key"]


class Setup:
    """The module's gateway and the backend bucket behind each of its aws_s3 locations."""

    def __init__(self, gateway: Gateway, backend: dict[str, str]) -> None:
        self.gateway = gateway
        self.backend = backend
        self.s3 = gateway.client()
        # awsmatch (bucketMatch) holds one S3 bucket: the tests share it, each with its own keys.
        self.bucket = scenarios.Buckets(self.s3, "gw", {"awsmatch"})


@pytest.fixture(scope="module")
def setup(aws_s3_moto: S3Emulator, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    backend = {name: aws_s3_moto.create_bucket()
               for name in ("awsmatch", "awsprefix", "awssse")}
    locations = {
        "awsmatch": location(aws_s3_moto, backend["awsmatch"], bucketMatch=True),
        "awsprefix": location(aws_s3_moto, backend["awsprefix"], bucketMatch=False),
        "awssse": location(aws_s3_moto, backend["awssse"], serverSideEncryption=True),
    }
    with start_gateway(tmp_path_factory.mktemp("gw-aws"), locations, config=CONFIG) as gateway:
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
    bucket = setup.bucket(location_name)
    assert s3.get_bucket_location(Bucket=bucket)["LocationConstraint"] == location_name
    data = pattern(1, 3 * MiB + 5)
    # On the cloud: one native object at <key>~<token> (bucketMatch) or <bucket>/<key>~<token>.
    native = aws_s3_moto.boto()
    backend = setup.backend[location_name]

    def check_native() -> None:
        [version] = versions(native, backend, bucket, "dir/obj.txt", match)
        name = version["Key"]
        obj = native.get_object(Bucket=backend, Key=name, VersionId=version["VersionId"])
        assert obj["Body"].read() == data
        assert obj["Metadata"]["color"] == "blue" and obj["ContentType"] == "text/csv"
        tags = native.get_object_tagging(Bucket=backend, Key=name)
        assert {t["Key"]: t["Value"] for t in tags["TagSet"]} == {"team": "storage", "tier": "1"}

    def native_gone() -> bool:  # the version itself, by its id: no delete marker left behind
        eventually(lambda: versions(native, backend, bucket, "dir/obj.txt", match) == [])
        return True

    scenarios.object_round_trip(
        s3, bucket, "dir/obj.txt", data, metadata={"color": "blue"}, content_type="text/csv",
        tagging="team=storage&tier=1", byte_range=(100, 199), check_native=check_native,
        native_gone=native_gone)


def test_overwrite_keeps_the_new_data(setup: Setup, aws_s3_moto: S3Emulator) -> None:
    """Replacing an object writes a name of its own: the replaced bytes go with the collector
    (by their version id), the new bytes stay."""
    s3 = setup.s3
    bucket = setup.bucket("awsmatch")
    s3.put_object(Bucket=bucket, Key="k", Body=b"first")
    s3.put_object(Bucket=bucket, Key="k", Body=b"second")
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"second"
    native = aws_s3_moto.boto()
    backend = setup.backend["awsmatch"]
    eventually(lambda: [v.get("Size") for v in versions(native, backend, bucket, "k", True)]
               == [6])
    name = native_name(native, backend, bucket, "k", True)
    assert native.get_object(Bucket=backend, Key=name)["Body"].read() == b"second"


def test_multipart_100mib(setup: Setup, aws_s3_moto: S3Emulator) -> None:
    s3 = setup.s3
    bucket = setup.bucket("awsprefix")
    key = "big.bin"
    part_size, count = 20 * MiB, 5

    def early_part_3(upload_id: str) -> None:  # replaced by the scenario's own part 3
        s3.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=3,
                       Body=pattern(99, part_size))

    scenarios.multipart_upload(s3, bucket, key, part_size=part_size, count=count, boundary=2,
                               before_parts=early_part_3, Metadata={"kind": "big"})

    native = aws_s3_moto.boto()
    backend = setup.backend["awsprefix"]
    [version] = versions(native, backend, bucket, key, False)
    obj = native.head_object(Bucket=backend, Key=version["Key"])
    assert obj["ContentLength"] == count * part_size and obj["Metadata"]["kind"] == "big"
    assert not native.list_multipart_uploads(Bucket=backend).get("Uploads")


def test_multipart_abort(setup: Setup, aws_s3_moto: S3Emulator) -> None:
    s3 = setup.s3
    bucket = setup.bucket("awsmatch")
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="gone")["UploadId"]
    s3.upload_part(Bucket=bucket, Key="gone", UploadId=upload_id, PartNumber=1, Body=b"x" * 100)
    native = aws_s3_moto.boto()
    backend = setup.backend["awsmatch"]

    def uploads() -> list[str]:  # the backend's own uploads at names of this S3 key
        listed = native.list_multipart_uploads(Bucket=backend).get("Uploads", [])
        return scenarios.native_names([u["Key"] for u in listed], bucket, "gone", True)

    assert len(uploads()) == 1
    s3.abort_multipart_upload(Bucket=bucket, Key="gone", UploadId=upload_id)
    eventually(lambda: uploads() == [])  # the backend upload and its part, maybe via collector
    assert versions(native, backend, bucket, "gone", True) == []


def test_copy(setup: Setup, aws_s3_moto: S3Emulator) -> None:
    s3 = setup.s3
    bucket = setup.bucket("awsmatch")
    scenarios.copy_object(s3, bucket, pattern(5, MiB), {"a": "1"}, replace={"b": "2"})
    native = aws_s3_moto.boto()
    backend = setup.backend["awsmatch"]
    dst = native_name(native, backend, bucket, "dst", True)
    head = native.head_object(Bucket=backend, Key=dst)
    assert head["Metadata"] == {"b": "2"} and head["ContentLength"] == MiB
    assert dst != native_name(native, backend, bucket, "src", True)  # a copy of its own


def test_upload_part_copy(setup: Setup) -> None:
    s3 = setup.s3
    bucket = setup.bucket("awsprefix")  # its src/dst: test_copy's on awsmatch
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


def test_checksums_above_the_translator(setup: Setup, aws_s3_moto: S3Emulator) -> None:
    """Flexible checksums are the gateway's, whatever the location: a CRC32C COMPOSITE
    multipart upload on an aws_s3 location, and a wrong checksum refused with nothing left on
    the cloud."""
    s3 = setup.s3
    bucket = setup.bucket("awsprefix")
    parts = [pattern(11, 5 * MiB), pattern(12, 1234)]
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="sums",
                                           ChecksumAlgorithm="CRC32C")["UploadId"]
    listed = []
    for number, data in enumerate(parts, 1):
        up = s3.upload_part(Bucket=bucket, Key="sums", UploadId=upload_id, PartNumber=number,
                            Body=data, ChecksumAlgorithm="CRC32C")
        listed.append({"PartNumber": number, "ETag": up["ETag"],
                       "ChecksumCRC32C": up["ChecksumCRC32C"]})
    done = s3.complete_multipart_upload(Bucket=bucket, Key="sums", UploadId=upload_id,
                                        MultipartUpload={"Parts": listed})
    raws = b"".join(crt_checksums.crc32c(p).to_bytes(4, "big") for p in parts)
    expected = base64.b64encode(crt_checksums.crc32c(raws).to_bytes(4, "big")).decode() + "-2"
    assert done["ChecksumCRC32C"] == expected and done["ChecksumType"] == "COMPOSITE"
    got = s3.get_object(Bucket=bucket, Key="sums", ChecksumMode="ENABLED")
    assert got["ChecksumCRC32C"] == expected and got["Body"].read() == b"".join(parts)

    native = aws_s3_moto.boto()
    backend = setup.backend["awsprefix"]
    before = versions(native, backend, bucket, "sums", False)
    data = pattern(13, 2 * MiB)
    wrong = base64.b64encode((crt_checksums.crc32c(data) ^ 1).to_bytes(4, "big")).decode()
    with pytest.raises(ClientError) as caught:
        s3.put_object(Bucket=bucket, Key="sums", Body=data, ChecksumCRC32C=wrong)
    assert caught.value.response["Error"]["Code"] == "BadDigest"
    assert s3.get_object(Bucket=bucket, Key="sums")["Body"].read() == b"".join(parts)
    setup.gateway.settle()
    assert versions(native, backend, bucket, "sums", False) == before
    s3.put_object(Bucket=bucket, Key="sums", Body=data, ChecksumAlgorithm="CRC32C")
    assert s3.head_object(Bucket=bucket, Key="sums", ChecksumMode="ENABLED")[
        "ChecksumCRC32C"] == base64.b64encode(crt_checksums.crc32c(data).to_bytes(4, "big")).decode()


def test_server_side_encryption_reported(setup: Setup, aws_s3_moto: S3Emulator) -> None:
    s3 = setup.s3
    bucket = setup.bucket("awssse")
    put = s3.put_object(Bucket=bucket, Key="enc", Body=b"secret")
    assert put.get("ServerSideEncryption") == "AES256"
    assert s3.head_object(Bucket=bucket, Key="enc")["ServerSideEncryption"] == "AES256"
    assert s3.get_object(Bucket=bucket, Key="enc")["ServerSideEncryption"] == "AES256"
    native = aws_s3_moto.boto()
    name = native_name(native, setup.backend["awssse"], bucket, "enc", False)
    assert native.head_object(Bucket=setup.backend["awssse"],
                              Key=name)["ServerSideEncryption"] == "AES256"


def test_emulator_stopped_is_503(aws_s3_throwaway: Callable[[], S3Emulator], tmp_path: Path) -> None:
    emulator = aws_s3_throwaway()
    backend = emulator.create_bucket()
    with start_gateway(tmp_path / "gw", {"doomed": location(emulator, backend)},
                       config=CONFIG) as gateway:
        s3 = gateway.client()
        scenarios.stopped_is_503(s3, new_bucket(s3, "doomed"), "doomed", emulator.stop, within=10)


def test_any_s3_compatible_endpoint(aws_s3_s3rver: S3Emulator, tmp_path: Path) -> None:
    """s3rver, a different S3 implementation, is reached through awsEndpoint alone."""
    backend = aws_s3_s3rver.create_bucket(versioned=False)
    locations = {"s3rver": location(aws_s3_s3rver, backend, supportsVersioning=False,
                                    bucketMatch=True)}
    with start_gateway(tmp_path / "gw", locations, config=CONFIG) as gateway:
        s3 = gateway.client()
        bucket = new_bucket(s3, "s3rver")
        data = pattern(6, 6 * MiB)
        s3.put_object(Bucket=bucket, Key="obj", Body=data, Metadata={"m": "v"})
        assert s3.get_object(Bucket=bucket, Key="obj", Range="bytes=10-19")["Body"].read() == data[10:20]
        client = aws_s3_s3rver.boto()

        def names(key: str) -> list[str]:  # s3rver keeps no versions: a plain listing
            listed = client.list_objects_v2(Bucket=backend, Prefix=key + "~")
            return scenarios.native_names([o["Key"] for o in listed.get("Contents", [])],
                                          bucket, key, True)

        [name] = names("obj")
        native = client.get_object(Bucket=backend, Key=name)
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
        assert len(names("mpu")) == 1
        s3.delete_object(Bucket=bucket, Key="obj")
        eventually(lambda: names("obj") == [])
        with pytest.raises(ClientError):
            client.head_object(Bucket=backend, Key=name)
