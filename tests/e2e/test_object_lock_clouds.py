"""Object Lock on cloud locations (Azurite, fake-gcs-server, moto): the gateway enforces it
the same way whatever holds the bytes. One gateway with a location per emulator loaded
(TEST_CLOUDS), and per location the core round trip: a locked version cannot be deleted, a
delete marker can be added, the locked bytes stay readable from the backend, a bypassed
GOVERNANCE version goes."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.gatewayproc import Gateway, start_gateway

CONFIG = {"storage": {"collectInterval": 0.2}}
CLOUDS = [pytest.param("azure", marks=pytest.mark.azure),
          pytest.param("gcp", marks=pytest.mark.gcp),
          pytest.param("aws_s3", marks=pytest.mark.aws_s3)]


def cloud_location(request: pytest.FixtureRequest, cloud: str) -> dict[str, Any] | None:
    """The location spec of `cloud` on its emulator, or None when that fixture is not loaded."""
    try:
        if cloud == "azure":
            azurite = request.getfixturevalue("azurite")
            container = asyncio.run(azurite.create_container())
            return {"type": "azure", "legacyAwsBehavior": False,
                    "details": azurite.details(container, bucketMatch=False)}
        if cloud == "gcp":
            emulator = request.getfixturevalue("gcs_emulator")
            return {"type": "gcp", "legacyAwsBehavior": False,
                    "details": {"bucketName": emulator.create_bucket(), "bucketMatch": False,
                                "gcpEndpoint": emulator.url}}
        moto = request.getfixturevalue("aws_s3_moto")
        return {"type": "aws_s3", "legacyAwsBehavior": False,
                "details": moto.details(moto.create_bucket(), bucketMatch=False)}
    except pytest.FixtureLookupError:
        return None


@pytest.fixture(scope="module")
def clouds(request: pytest.FixtureRequest,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Gateway, set[str]]]:
    """The gateway, and the names of the locations it has (one per emulator loaded)."""
    locations = {f"lock-{cloud}": spec for cloud in ("azure", "gcp", "aws_s3")
                 if (spec := cloud_location(request, cloud)) is not None}
    if not locations:
        pytest.skip("no cloud emulator loaded (TEST_CLOUDS)")
    with start_gateway(tmp_path_factory.mktemp("lockgw"), locations, config=CONFIG) as gw:
        yield gw, set(locations)


def refused(call: Any, **kwargs: Any) -> None:
    with pytest.raises(ClientError) as exc:
        call(**kwargs)
    assert exc.value.response["Error"]["Code"] == "AccessDenied"
    assert exc.value.response["Error"]["Message"] == \
        "Access Denied because object protected by object lock."


@pytest.mark.parametrize("cloud", CLOUDS)
def test_locked_version_round_trip(clouds: tuple[Gateway, set[str]], cloud: str) -> None:
    gateway, locations = clouds
    location = f"lock-{cloud}"
    if location not in locations:
        pytest.skip(f"{cloud} emulator not loaded (TEST_CLOUDS)")
    s3 = gateway.client()
    bucket = f"lock-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True,
                     CreateBucketConfiguration={"LocationConstraint": location})
    until = datetime.now(UTC) + timedelta(days=1)
    kept = s3.put_object(Bucket=bucket, Key="k", Body=b"compliance", ObjectLockMode="COMPLIANCE",
                         ObjectLockRetainUntilDate=until)["VersionId"]
    governed = s3.put_object(Bucket=bucket, Key="g", Body=b"governance",
                             ObjectLockMode="GOVERNANCE",
                             ObjectLockRetainUntilDate=until)["VersionId"]
    held = s3.put_object(Bucket=bucket, Key="h", Body=b"held",
                         ObjectLockLegalHoldStatus="ON")["VersionId"]
    assert s3.head_object(Bucket=bucket, Key="k")["ObjectLockMode"] == "COMPLIANCE"
    # Every delete path is refused.
    for key, version in (("k", kept), ("h", held)):
        refused(s3.delete_object, Bucket=bucket, Key=key, VersionId=version,
                BypassGovernanceRetention=True)
    refused(s3.delete_object, Bucket=bucket, Key="g", VersionId=governed)
    result = s3.delete_objects(Bucket=bucket, Delete={"Objects": [
        {"Key": "k", "VersionId": kept}, {"Key": "h", "VersionId": held}]})
    assert sorted(e["Code"] for e in result["Errors"]) == ["AccessDenied", "AccessDenied"]
    refused(s3.put_object_retention, Bucket=bucket, Key="k", Retention={
        "Mode": "COMPLIANCE", "RetainUntilDate": until - timedelta(hours=1)})
    # A delete marker is allowed, and overwrites add versions; the locked bytes stay readable
    # from the backend, after the collector has had its turns.
    assert s3.delete_object(Bucket=bucket, Key="k")["DeleteMarker"] is True
    s3.put_object(Bucket=bucket, Key="h", Body=b"newer")
    gateway.settle()
    assert s3.get_object(Bucket=bucket, Key="k", VersionId=kept)["Body"].read() == b"compliance"
    assert s3.get_object(Bucket=bucket, Key="h", VersionId=held)["Body"].read() == b"held"
    with pytest.raises(ClientError) as exc:
        s3.delete_bucket(Bucket=bucket)
    assert exc.value.response["Error"]["Code"] == "BucketNotEmpty"
    # The bucket owner bypasses GOVERNANCE; lifting the hold frees that version.
    s3.delete_object(Bucket=bucket, Key="g", VersionId=governed, BypassGovernanceRetention=True)
    s3.put_object_legal_hold(Bucket=bucket, Key="h", VersionId=held,
                             LegalHold={"Status": "OFF"})
    s3.delete_object(Bucket=bucket, Key="h", VersionId=held)
    for key, version in (("g", governed), ("h", held)):
        with pytest.raises(ClientError) as exc:
            s3.head_object(Bucket=bucket, Key=key, VersionId=version)
        assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
