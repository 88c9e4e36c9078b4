"""Tenancy of locations: who may put bytes where.

- `x-amz-meta-scal-location-constraint` may name the bucket's own location, or a location the
  operator marked `"selectable": true`; any other known location answers 403 AccessDenied, an
  unknown one 400 InvalidArgument. A bucketMatch location is never chosen by header.
- A bucketMatch location (objects under their bare keys) belongs to exactly one gateway bucket:
  a second CreateBucket on it answers InvalidLocationConstraint, atomically (one winner in a
  race).
- The attack from the review: one account overwrote, read and deleted another account's object
  through its own bucket on a shared bucketMatch aws_s3 location. Both ways in are closed.

Real gateway processes (tests/gatewayproc.py), boto3 with accessKey1 and accessKey2.
"""

from __future__ import annotations

import hashlib
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from gateway.config import REPO_ROOT, load_locations
from tests.gatewayproc import ACCESS_KEY2, SECRET_KEY2, Gateway, start_gateway
from tests.s3.conftest import error_code, status

HEADER = "scal-location-constraint"  # boto3 Metadata name of x-amz-meta-scal-location-constraint

LOCATIONS: dict[str, Any] = {
    # Not selectable: only its own buckets' objects go there.
    "plain-file": {"type": "file", "legacyAwsBehavior": False, "details": {}},
    # The operator lets any writer pick it by header.
    "shared-mem": {"type": "mem", "legacyAwsBehavior": False, "details": {}, "selectable": True},
    # bucketMatch: one bucket only, never by header (even marked selectable).
    "match-a": {"type": "mem", "legacyAwsBehavior": False, "details": {"bucketMatch": True},
                "selectable": True},
    "match-b": {"type": "mem", "legacyAwsBehavior": False, "details": {"bucketMatch": True}},
    "match-race": {"type": "mem", "legacyAwsBehavior": False, "details": {"bucketMatch": True}},
    "match-own": {"type": "mem", "legacyAwsBehavior": False, "details": {"bucketMatch": True}},
}


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """This module's gateway (overrides tests/s3/conftest.py's; s3 and s3_other follow it)."""
    with start_gateway(tmp_path_factory.mktemp("tenancy"), LOCATIONS) as gw:
        yield gw


def name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def create(client: Any, bucket: str, location: str | None = None) -> str:
    if location is None:
        client.create_bucket(Bucket=bucket)
    else:
        client.create_bucket(Bucket=bucket,
                             CreateBucketConfiguration={"LocationConstraint": location})
    return bucket


def keys(client: Any, bucket: str) -> list[str]:
    return [o["Key"] for o in client.list_objects_v2(Bucket=bucket).get("Contents", [])]


def refused(call: Any, code: str, http_status: int) -> ClientError:
    with pytest.raises(ClientError) as exc:
        call()
    assert (error_code(exc), status(exc)) == (code, http_status), exc.value.response
    return exc.value


# --- the shipped configuration ----------------------------------------------------------------

def test_shipped_location_config_has_no_mem_location() -> None:
    shipped = load_locations(REPO_ROOT / "locationConfig.json", {})
    assert "us-east-1" in shipped
    assert [spec.name for spec in shipped.values() if spec.type == "mem"] == []
    # Nothing is selectable out of the box: a header may only name the bucket's own location.
    assert [spec.name for spec in shipped.values() if spec.selectable] == []


# --- a bucketMatch location belongs to one bucket ---------------------------------------------

def test_bucket_match_location_belongs_to_one_bucket(s3: Any, s3_other: Any) -> None:
    owner = create(s3, name("match-owner"), "match-b")
    assert s3.get_bucket_location(Bucket=owner)["LocationConstraint"] == "match-b"
    # Another account cannot take it...
    other = name("match-intruder")
    err = refused(lambda: create(s3_other, other, "match-b"), "InvalidLocationConstraint", 400)
    assert "match-b" in err.response["Error"]["Message"]
    refused(lambda: s3_other.head_bucket(Bucket=other), "404", 404)
    # ... nor does the owner get a second bucket there.
    second = name("match-second")
    refused(lambda: create(s3, second, "match-b"), "InvalidLocationConstraint", 400)
    refused(lambda: s3.head_bucket(Bucket=second), "404", 404)
    # The owner's own repeat is the usual answer for an existing bucket, not a location error.
    refused(lambda: create(s3, owner, "match-b"), "BucketAlreadyOwnedByYou", 409)
    # Locations without bucketMatch stay shared by any number of buckets, of any account.
    for client in (s3, s3, s3_other):
        bucket = create(client, name("shared"), "plain-file")
        assert client.get_bucket_location(Bucket=bucket)["LocationConstraint"] == "plain-file"
    assert owner in [b["Name"] for b in s3.list_buckets()["Buckets"]]


def test_concurrent_create_bucket_race_has_one_winner(gateway: Gateway) -> None:
    """Ten CreateBucket calls (both accounts) on one bucketMatch location at the same moment:
    exactly one bucket exists afterwards, the other nine answer InvalidLocationConstraint."""
    clients = [gateway.client() if i % 2 == 0 else gateway.client(ACCESS_KEY2, SECRET_KEY2)
               for i in range(10)]
    buckets = [name(f"race{i}") for i in range(10)]
    start = threading.Barrier(10)
    outcomes: list[str | None] = [None] * 10

    def attempt(index: int) -> None:
        start.wait()
        try:
            create(clients[index], buckets[index], "match-race")
            outcomes[index] = "created"
        except ClientError as exc:
            outcomes[index] = exc.response["Error"]["Code"]

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(map(str, outcomes)) == ["InvalidLocationConstraint"] * 9 + ["created"], outcomes
    winner = outcomes.index("created")
    assert clients[winner].get_bucket_location(
        Bucket=buckets[winner])["LocationConstraint"] == "match-race"
    for index, bucket in enumerate(buckets):
        if index != winner:
            refused(lambda bucket=bucket, index=index: clients[index].head_bucket(Bucket=bucket),
                    "404", 404)


# --- choosing a location by header ------------------------------------------------------------

def test_header_cannot_choose_a_bucket_match_location(gateway: Gateway, s3: Any,
                                                      s3_other: Any) -> None:
    victim = create(s3, name("victim"), "match-a")
    s3.put_object(Bucket=victim, Key="secret", Body=b"account 1's bytes")
    mine = create(s3_other, name("attacker"))
    files_before = set(gateway.data_files())
    where = {HEADER: "match-a"}

    # Account 2, into its own bucket: PUT, CreateMultipartUpload, CopyObject with REPLACE.
    err = refused(lambda: s3_other.put_object(Bucket=mine, Key="secret", Body=b"evil",
                                              Metadata=where), "AccessDenied", 403)
    assert "match-a" in err.response["Error"]["Message"]
    refused(lambda: s3_other.create_multipart_upload(Bucket=mine, Key="secret", Metadata=where),
            "AccessDenied", 403)
    s3_other.put_object(Bucket=mine, Key="src", Body=b"evil")
    refused(lambda: s3_other.copy_object(Bucket=mine, Key="secret", CopySource=f"{mine}/src",
                                         MetadataDirective="REPLACE", Metadata=where),
            "AccessDenied", 403)
    # Even marked selectable, and even for the account that owns the location's bucket.
    own_other = create(s3, name("victim-other"))
    refused(lambda: s3.put_object(Bucket=own_other, Key="secret", Body=b"x", Metadata=where),
            "AccessDenied", 403)

    # Nothing stored anywhere.
    assert keys(s3_other, mine) == ["src"]
    assert keys(s3, own_other) == []
    assert s3_other.list_multipart_uploads(Bucket=mine).get("Uploads", []) == []
    gateway.settle()
    assert len(set(gateway.data_files()) - files_before) == 1  # "src", on us-east-1 (file)
    # The victim's object is untouched, and still only its owner's.
    assert keys(s3, victim) == ["secret"]
    assert s3.get_object(Bucket=victim, Key="secret")["Body"].read() == b"account 1's bytes"
    refused(lambda: s3_other.get_object(Bucket=victim, Key="secret"), "AccessDenied", 403)


def test_header_naming_a_non_selectable_location_is_refused(gateway: Gateway, s3: Any) -> None:
    bucket = create(s3, name("plain"))  # on us-east-1
    gateway.settle()
    files_before = set(gateway.data_files())
    err = refused(lambda: s3.put_object(Bucket=bucket, Key="k", Body=b"x",
                                        Metadata={HEADER: "plain-file"}), "AccessDenied", 403)
    assert "plain-file" in err.response["Error"]["Message"]
    refused(lambda: s3.create_multipart_upload(Bucket=bucket, Key="k",
                                               Metadata={HEADER: "plain-file"}),
            "AccessDenied", 403)
    assert keys(s3, bucket) == []
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    gateway.settle()
    assert set(gateway.data_files()) == files_before


def test_header_naming_a_selectable_location_works(gateway: Gateway, s3: Any,
                                                   s3_other: Any) -> None:
    for client in (s3, s3_other):
        bucket = create(client, name("selects"))  # on us-east-1 (file)
        gateway.settle()
        files_before = set(gateway.data_files())
        put = client.put_object(Bucket=bucket, Key="k", Body=b"in memory",
                                Metadata={HEADER: "shared-mem"})
        assert put["ETag"] == f'"{hashlib.md5(b"in memory").hexdigest()}"'
        assert client.get_object(Bucket=bucket, Key="k")["Body"].read() == b"in memory"
        gateway.settle()
        assert set(gateway.data_files()) == files_before  # on shared-mem, not on disk


def test_header_naming_the_buckets_own_location_works(gateway: Gateway, s3: Any,
                                                      s3_other: Any) -> None:
    # A non-selectable location, named by a bucket created on it.
    on_plain = create(s3_other, name("own-plain"), "plain-file")
    s3_other.put_object(Bucket=on_plain, Key="k", Body=b"plain", Metadata={HEADER: "plain-file"})
    assert s3_other.get_object(Bucket=on_plain, Key="k")["Body"].read() == b"plain"
    # The default location, for a bucket created without a LocationConstraint.
    on_default = create(s3, name("own-default"))
    assert s3.get_bucket_location(Bucket=on_default)["LocationConstraint"] is None
    s3.put_object(Bucket=on_default, Key="k", Body=b"default", Metadata={HEADER: "us-east-1"})
    assert s3.get_object(Bucket=on_default, Key="k")["Body"].read() == b"default"
    # A bucketMatch location, by the one bucket it belongs to.
    on_match = create(s3_other, name("own-match"), "match-own")
    s3_other.put_object(Bucket=on_match, Key="k", Body=b"match", Metadata={HEADER: "match-own"})
    assert s3_other.get_object(Bucket=on_match, Key="k")["Body"].read() == b"match"


def test_header_naming_an_unknown_location_is_invalid_argument(s3: Any) -> None:
    bucket = create(s3, name("unknown"))
    err = refused(lambda: s3.put_object(Bucket=bucket, Key="k", Body=b"x",
                                        Metadata={HEADER: "no-such-location"}),
                  "InvalidArgument", 400)
    assert "no-such-location" in err.response["Error"]["Message"]
    assert keys(s3, bucket) == []


# --- the reproduced attack, on a bucketMatch aws_s3 location (moto) ---------------------------

@pytest.fixture
def moto(request: pytest.FixtureRequest) -> Any:
    try:
        return request.getfixturevalue("aws_s3_moto")
    except pytest.FixtureLookupError:
        pytest.skip("the aws_s3 fixture is not loaded (TEST_CLOUDS leaves out aws_s3)")


@pytest.mark.aws_s3
def test_cross_account_attack_on_a_bucket_match_location_is_impossible(
        moto: Any, tmp_path: Path) -> None:
    """Review finding: "One account overwrote, read and deleted another account's object through
    its own bucket". Account 2 used the shared bucketMatch location, where S3 keys are backend
    names, either through a bucket of its own on it or by naming it in the location header."""
    backend = moto.create_bucket()
    locations = {"awsmatch": {"type": "aws_s3", "legacyAwsBehavior": False,
                              "details": moto.details(backend, bucketMatch=True)}}
    with start_gateway(tmp_path / "gw", locations,
                       config={"storage": {"collectInterval": 0.2}}) as gw:
        victim_s3, attacker_s3 = gw.client(), gw.client(ACCESS_KEY2, SECRET_KEY2)
        victim = create(victim_s3, name("victim"), "awsmatch")
        data = b"account 1's confidential report" * 100
        put = victim_s3.put_object(Bucket=victim, Key="report.pdf", Body=data)
        native = moto.boto()

        def backend_versions() -> list[dict[str, Any]]:
            listed = native.list_object_versions(Bucket=backend, Prefix="report.pdf")
            return listed.get("Versions", []) + listed.get("DeleteMarkers", [])

        [original] = backend_versions()
        assert original["Key"].startswith("report.pdf~")

        # Way 1: a bucket of its own on the location. Refused: the location has its bucket.
        attacker = name("attacker")
        refused(lambda: create(attacker_s3, attacker, "awsmatch"),
                "InvalidLocationConstraint", 400)
        # Way 2: its own bucket elsewhere, the location named by header. Refused.
        create(attacker_s3, attacker)
        where = {HEADER: "awsmatch"}
        refused(lambda: attacker_s3.put_object(Bucket=attacker, Key="report.pdf", Body=b"evil",
                                               Metadata=where), "AccessDenied", 403)
        refused(lambda: attacker_s3.create_multipart_upload(Bucket=attacker, Key="report.pdf",
                                                            Metadata=where),
                "AccessDenied", 403)
        attacker_s3.put_object(Bucket=attacker, Key="bait", Body=b"evil")
        refused(lambda: attacker_s3.copy_object(
            Bucket=attacker, Key="report.pdf", CopySource=f"{attacker}/bait",
            MetadataDirective="REPLACE", Metadata=where), "AccessDenied", 403)
        # Through its own bucket the key is simply absent: nothing to read, deleting is a no-op.
        refused(lambda: attacker_s3.get_object(Bucket=attacker, Key="report.pdf"),
                "NoSuchKey", 404)
        attacker_s3.delete_object(Bucket=attacker, Key="report.pdf")
        # And the victim's bucket itself is closed to it.
        refused(lambda: attacker_s3.get_object(Bucket=victim, Key="report.pdf"),
                "AccessDenied", 403)
        refused(lambda: attacker_s3.put_object(Bucket=victim, Key="report.pdf", Body=b"evil"),
                "AccessDenied", 403)
        refused(lambda: attacker_s3.delete_object(Bucket=victim, Key="report.pdf"),
                "AccessDenied", 403)

        # The victim's object: same bytes through the gateway, and on the cloud exactly the one
        # backend object it wrote (no overwrite, no delete marker, nothing of account 2's).
        gw.settle()
        got = victim_s3.get_object(Bucket=victim, Key="report.pdf")
        assert got["Body"].read() == data and got["ETag"] == put["ETag"]
        assert backend_versions() == [original]
        body = native.get_object(Bucket=backend, Key=original["Key"],
                                 VersionId=original["VersionId"])["Body"].read()
        assert body == data
        everything = native.list_object_versions(Bucket=backend)
        assert [v["Key"] for v in everything.get("Versions", [])] == [original["Key"]]
        assert everything.get("DeleteMarkers", []) == []
