"""GET/HEAD ?partNumber and GetObjectAttributes ObjectParts on cloud locations (Azurite,
fake-gcs-server), where a completed upload is one backend object (committed blocks, a composed
object) and a part is a byte range of it: boto3 -> gateway -> emulator."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.gatewayproc import Gateway, start_gateway
from tests.s3.test_part_number import MiB, upload_parts

CLOUDS = [pytest.param("azure", marks=pytest.mark.azure),
          pytest.param("gcp", marks=pytest.mark.gcp)]


def cloud_location(request: pytest.FixtureRequest, cloud: str) -> dict[str, Any]:
    if cloud == "azure":
        azurite = request.getfixturevalue("azurite")
        container = asyncio.run(azurite.create_container())
        return {"type": "azure", "legacyAwsBehavior": False,
                "details": azurite.details(container, bucketMatch=False)}
    emulator = request.getfixturevalue("gcs_emulator")
    return {"type": "gcp", "legacyAwsBehavior": False,
            "details": {"bucketName": emulator.create_bucket(), "bucketMatch": False,
                        "gcpEndpoint": emulator.url}}


@pytest.fixture(scope="module", params=CLOUDS)
def gateway(request: pytest.FixtureRequest,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    try:
        location = cloud_location(request, request.param)
    except pytest.FixtureLookupError:
        pytest.skip(f"the {request.param} fixture is not loaded (TEST_CLOUDS)")
    with start_gateway(tmp_path_factory.mktemp(f"parts-{request.param}"),
                       {"cloud": location}) as gw:
        yield gw


def test_parts_of_a_cloud_object(gateway: Gateway) -> None:
    s3 = gateway.client()
    bucket = f"parts-{uuid.uuid4().hex[:10]}"
    s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "cloud"})
    parts = [os.urandom(5 * MiB), os.urandom(5 * MiB + 3), b"the last part"]
    done = upload_parts(s3, bucket, "mp", parts, ChecksumAlgorithm="SHA256")
    total = sum(len(p) for p in parts)
    first = 0
    for number, data in enumerate(parts, 1):
        got = s3.get_object(Bucket=bucket, Key="mp", PartNumber=number, ChecksumMode="ENABLED")
        assert got["Body"].read() == data
        assert got["ResponseMetadata"]["HTTPStatusCode"] == 206 and got["PartsCount"] == 3
        assert got["ContentRange"] == f"bytes {first}-{first + len(data) - 1}/{total}"
        assert got["ChecksumSHA256"] == base64.b64encode(hashlib.sha256(data).digest()).decode()
        first += len(data)
    head = s3.head_object(Bucket=bucket, Key="mp", PartNumber=2)
    assert head["ContentLength"] == len(parts[1]) and head["ETag"] == done["ETag"]
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=bucket, Key="mp", PartNumber=4)
    assert exc.value.response["Error"]["Code"] == "InvalidPartNumber"
    page = s3.get_object_attributes(Bucket=bucket, Key="mp",
                                    ObjectAttributes=["ObjectParts", "ObjectSize"])
    assert page["ObjectSize"] == total and page["ObjectParts"]["TotalPartsCount"] == 3
    assert [p["Size"] for p in page["ObjectParts"]["Parts"]] == [len(p) for p in parts]
    # A single-part object on the cloud: part 1 is all of it.
    s3.put_object(Bucket=bucket, Key="one", Body=b"single")
    assert s3.get_object(Bucket=bucket, Key="one", PartNumber=1)["Body"].read() == b"single"
