"""Object Lock through boto3 on the file location: bucket configuration, retention and legal
hold on writes and by their own operations, AWS's validation and error codes, and every way a
locked version could be deleted (each refused), racing deletes included."""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.s3.conftest import error_code, raw_request, status

OTHER_ARN = "arn:aws:iam::123456789013:root"  # the account of accessKey2 (s3_other)
LOCKED = "Access Denied because object protected by object lock."


def future(days: float = 1.0) -> datetime:
    return (datetime.now(UTC) + timedelta(days=days)).replace(microsecond=0)


def lock_bucket(s3: Any) -> str:
    name = f"lock-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name, ObjectLockEnabledForBucket=True)
    return name


def put_locked(s3: Any, bucket: str, key: str, mode: str = "GOVERNANCE",
               until: datetime | None = None, body: bytes = b"locked") -> str:
    response = s3.put_object(Bucket=bucket, Key=key, Body=body, ObjectLockMode=mode,
                             ObjectLockRetainUntilDate=until or future())
    return response["VersionId"]


def refused(call: Any, code: str = "AccessDenied", **kwargs: Any) -> ClientError:
    with pytest.raises(ClientError) as exc:
        call(**kwargs)
    assert error_code(exc) == code, exc.value.response["Error"]
    return exc.value


def version_exists(s3: Any, bucket: str, key: str, version_id: str) -> bool:
    try:
        s3.head_object(Bucket=bucket, Key=key, VersionId=version_id)
    except ClientError as err:
        assert err.response["ResponseMetadata"]["HTTPStatusCode"] == 404
        return False
    return True


def policy(bucket: str, *statements: dict[str, Any]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


# --- the bucket ----------------------------------------------------------------------------------
def test_lock_bucket_is_versioned_for_good(s3: Any) -> None:
    bucket = lock_bucket(s3)
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    assert s3.get_object_lock_configuration(Bucket=bucket)["ObjectLockConfiguration"] == {
        "ObjectLockEnabled": "Enabled"}
    err = refused(s3.put_bucket_versioning, "InvalidBucketState", Bucket=bucket,
                  VersioningConfiguration={"Status": "Suspended"})
    assert err.response["ResponseMetadata"]["HTTPStatusCode"] == 409
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})


def test_lock_configuration_roundtrip(s3: Any) -> None:
    bucket = lock_bucket(s3)
    for rule in ({"Mode": "GOVERNANCE", "Days": 1}, {"Mode": "COMPLIANCE", "Years": 1}):
        conf = {"ObjectLockEnabled": "Enabled", "Rule": {"DefaultRetention": rule}}
        s3.put_object_lock_configuration(Bucket=bucket, ObjectLockConfiguration=conf)
        assert s3.get_object_lock_configuration(Bucket=bucket)["ObjectLockConfiguration"] == conf
    # Without a rule: no default retention any more, the lock stays.
    s3.put_object_lock_configuration(Bucket=bucket,
                                     ObjectLockConfiguration={"ObjectLockEnabled": "Enabled"})
    assert s3.get_object_lock_configuration(Bucket=bucket)["ObjectLockConfiguration"] == {
        "ObjectLockEnabled": "Enabled"}
    version = s3.put_object(Bucket=bucket, Key="k", Body=b"x")["VersionId"]
    assert "ObjectLockMode" not in s3.head_object(Bucket=bucket, Key="k", VersionId=version)


@pytest.mark.parametrize("conf, code", [
    ({"ObjectLockEnabled": "Enabled",
      "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 1, "Years": 1}}},
     "MalformedXML"),
    ({"ObjectLockEnabled": "Enabled", "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE"}}},
     "MalformedXML"),
    ({"ObjectLockEnabled": "Enabled", "Rule": {"DefaultRetention": {"Days": 1}}},
     "MalformedXML"),
    ({"ObjectLockEnabled": "Enabled", "Rule": {}}, "MalformedXML"),
    ({"ObjectLockEnabled": "Enabled",
      "Rule": {"DefaultRetention": {"Mode": "governance", "Days": 1}}}, "MalformedXML"),
    ({"ObjectLockEnabled": "Enabled", "Rule": {"DefaultRetention": {"Mode": "abc", "Years": 1}}},
     "MalformedXML"),
    ({"ObjectLockEnabled": "Disabled",
      "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 1}}}, "MalformedXML"),
    ({"ObjectLockEnabled": "Enabled",
      "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 0}}}, "InvalidRetentionPeriod"),
    ({"ObjectLockEnabled": "Enabled",
      "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Years": -1}}},
     "InvalidRetentionPeriod"),
    ({"ObjectLockEnabled": "Enabled",
      "Rule": {"DefaultRetention": {"Mode": "COMPLIANCE", "Days": 36501}}},
     "InvalidRetentionPeriod"),
])
def test_lock_configuration_errors(s3: Any, conf: dict[str, Any], code: str) -> None:
    bucket = lock_bucket(s3)
    err = refused(s3.put_object_lock_configuration, code, Bucket=bucket,
                  ObjectLockConfiguration=conf)
    assert err.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert s3.get_object_lock_configuration(Bucket=bucket)["ObjectLockConfiguration"] == {
        "ObjectLockEnabled": "Enabled"}  # nothing changed


def test_bucket_without_lock(s3: Any, bucket: str) -> None:
    err = refused(s3.get_object_lock_configuration, "ObjectLockConfigurationNotFoundError",
                  Bucket=bucket)
    assert err.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    conf = {"ObjectLockEnabled": "Enabled",
            "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 1}}}
    err = refused(s3.put_object_lock_configuration, "InvalidBucketState", Bucket=bucket,
                  ObjectLockConfiguration=conf)
    assert err.response["ResponseMetadata"]["HTTPStatusCode"] == 409
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    for call, kwargs in (
            (s3.put_object_retention, {"Retention": {"Mode": "GOVERNANCE",
                                                     "RetainUntilDate": future()}}),
            (s3.get_object_retention, {}),
            (s3.put_object_legal_hold, {"LegalHold": {"Status": "ON"}}),
            (s3.get_object_legal_hold, {})):
        err = refused(call, "InvalidRequest", Bucket=bucket, Key="k", **kwargs)
        assert err.response["Error"]["Message"] == "Bucket is missing Object Lock Configuration"
    for kwargs in ({"ObjectLockMode": "GOVERNANCE", "ObjectLockRetainUntilDate": future()},
                   {"ObjectLockLegalHoldStatus": "ON"}):
        refused(s3.put_object, "InvalidRequest", Bucket=bucket, Key="k2", Body=b"x", **kwargs)
        refused(s3.create_multipart_upload, "InvalidRequest", Bucket=bucket, Key="k2", **kwargs)
        refused(s3.copy_object, "InvalidRequest", Bucket=bucket, Key="k2",
                CopySource={"Bucket": bucket, "Key": "k"}, **kwargs)
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == ["k"]


def test_lock_enabled_on_an_existing_versioned_bucket(s3: Any, bucket: str) -> None:
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    conf = {"ObjectLockEnabled": "Enabled",
            "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 1}}}
    s3.put_object_lock_configuration(Bucket=bucket, ObjectLockConfiguration=conf)
    assert s3.get_object_lock_configuration(Bucket=bucket)["ObjectLockConfiguration"] == conf
    refused(s3.put_bucket_versioning, "InvalidBucketState", Bucket=bucket,
            VersioningConfiguration={"Status": "Suspended"})
    version = s3.put_object(Bucket=bucket, Key="k", Body=b"x")["VersionId"]
    assert s3.head_object(Bucket=bucket, Key="k")["ObjectLockMode"] == "GOVERNANCE"
    refused(s3.delete_object, Bucket=bucket, Key="k", VersionId=version)


# --- lock headers on writes, and on reads ----------------------------------------------------------
def test_put_with_lock_headers_shows_on_get_and_head(s3: Any) -> None:
    bucket = lock_bucket(s3)
    until = future(2)
    s3.put_object(Bucket=bucket, Key="k", Body=b"data", ObjectLockMode="GOVERNANCE",
                  ObjectLockRetainUntilDate=until, ObjectLockLegalHoldStatus="ON")
    for response in (s3.head_object(Bucket=bucket, Key="k"),
                     s3.get_object(Bucket=bucket, Key="k")):
        assert response["ObjectLockMode"] == "GOVERNANCE"
        assert response["ObjectLockRetainUntilDate"] == until
        assert response["ObjectLockLegalHoldStatus"] == "ON"
    assert s3.get_object_retention(Bucket=bucket, Key="k")["Retention"] == {
        "Mode": "GOVERNANCE", "RetainUntilDate": until}
    assert s3.get_object_legal_hold(Bucket=bucket, Key="k")["LegalHold"] == {"Status": "ON"}
    s3.put_object(Bucket=bucket, Key="plain", Body=b"p")
    head = s3.head_object(Bucket=bucket, Key="plain")
    assert not {"ObjectLockMode", "ObjectLockRetainUntilDate", "ObjectLockLegalHoldStatus"} \
        & set(head)
    for call in (s3.get_object_retention, s3.get_object_legal_hold):
        err = refused(call, "NoSuchObjectLockConfiguration", Bucket=bucket, Key="plain")
        assert err.response["ResponseMetadata"]["HTTPStatusCode"] == 404


@pytest.mark.parametrize("headers, message", [
    ({"x-amz-object-lock-mode": "GOVERNANCE"}, "must both be supplied"),
    ({"x-amz-object-lock-retain-until-date": "2099-01-01T00:00:00Z"}, "must both be supplied"),
    ({"x-amz-object-lock-mode": "Governance",
      "x-amz-object-lock-retain-until-date": "2099-01-01T00:00:00Z"}, "Unknown wormMode"),
    ({"x-amz-object-lock-mode": "COMPLIANCE",
      "x-amz-object-lock-retain-until-date": "2005-10-12T00:00:00Z"}, "must be in the future"),
    ({"x-amz-object-lock-mode": "COMPLIANCE",
      "x-amz-object-lock-retain-until-date": "next tuesday"}, "ISO 8601"),
    ({"x-amz-object-lock-legal-hold": "on"}, "'ON' or 'OFF'"),
])
def test_lock_header_validation(gateway: Any, s3: Any, headers: dict[str, str],
                                message: str) -> None:
    bucket = lock_bucket(s3)
    body = b"x"
    digest = base64.b64encode(hashlib.md5(body).digest()).decode()
    response = raw_request(gateway, "PUT", f"/{bucket}/k", body=body,
                           headers={**headers, "Content-MD5": digest})
    assert response.status_code == 400, response.text
    assert b"<Code>InvalidArgument</Code>" in response.content
    assert message in response.text
    assert s3.list_object_versions(Bucket=bucket).get("Versions") is None


def test_lock_put_needs_an_integrity_header(gateway: Any, s3: Any) -> None:
    bucket = lock_bucket(s3)
    body = b"x"
    lock_headers = {"x-amz-object-lock-mode": "GOVERNANCE",
                    "x-amz-object-lock-retain-until-date": future().isoformat()}
    response = raw_request(gateway, "PUT", f"/{bucket}/k", body=body, headers=lock_headers)
    assert response.status_code == 400
    assert b"<Code>InvalidRequest</Code>" in response.content
    assert "Content-MD5 OR x-amz-checksum- HTTP header is required" in response.text
    # A plain PUT to a lock bucket without default retention needs none...
    assert raw_request(gateway, "PUT", f"/{bucket}/plain", body=body).status_code == 200
    digest = base64.b64encode(hashlib.md5(body).digest()).decode()
    response = raw_request(gateway, "PUT", f"/{bucket}/k", body=body,
                           headers={**lock_headers, "Content-MD5": digest})
    assert response.status_code == 200, response.text
    # ...but once the bucket has a default retention, every PUT locks: it is required.
    s3.put_object_lock_configuration(Bucket=bucket, ObjectLockConfiguration={
        "ObjectLockEnabled": "Enabled",
        "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 1}}})
    assert raw_request(gateway, "PUT", f"/{bucket}/plain", body=body).status_code == 400
    response = raw_request(gateway, "PUT", f"/{bucket}/plain", body=body,
                           headers={"Content-MD5": digest})
    assert response.status_code == 200


def test_default_retention_applies_when_headers_are_absent(s3: Any) -> None:
    bucket = lock_bucket(s3)
    s3.put_object_lock_configuration(Bucket=bucket, ObjectLockConfiguration={
        "ObjectLockEnabled": "Enabled",
        "Rule": {"DefaultRetention": {"Mode": "COMPLIANCE", "Days": 2}}})
    before = datetime.now(UTC)
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    head = s3.head_object(Bucket=bucket, Key="k")
    assert head["ObjectLockMode"] == "COMPLIANCE"
    delta = head["ObjectLockRetainUntilDate"] - before
    assert timedelta(days=2) - timedelta(seconds=5) < delta < timedelta(days=2, seconds=5)
    assert "ObjectLockLegalHoldStatus" not in head
    # Headers override the default; multipart and copies get it too.
    until = future(5)
    s3.put_object(Bucket=bucket, Key="explicit", Body=b"x", ObjectLockMode="GOVERNANCE",
                  ObjectLockRetainUntilDate=until)
    assert s3.get_object_retention(Bucket=bucket, Key="explicit")["Retention"] == {
        "Mode": "GOVERNANCE", "RetainUntilDate": until}
    upload = s3.create_multipart_upload(Bucket=bucket, Key="mp")["UploadId"]
    part = s3.upload_part(Bucket=bucket, Key="mp", UploadId=upload, PartNumber=1, Body=b"p")
    s3.complete_multipart_upload(Bucket=bucket, Key="mp", UploadId=upload, MultipartUpload={
        "Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]})
    assert s3.head_object(Bucket=bucket, Key="mp")["ObjectLockMode"] == "COMPLIANCE"
    s3.copy_object(Bucket=bucket, Key="copied", CopySource={"Bucket": bucket, "Key": "explicit"})
    copied = s3.head_object(Bucket=bucket, Key="copied")
    assert copied["ObjectLockMode"] == "COMPLIANCE"  # the bucket's, not the source's
    s3.put_object_lock_configuration(Bucket=bucket, ObjectLockConfiguration={
        "ObjectLockEnabled": "Enabled",
        "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Years": 1}}})
    s3.put_object(Bucket=bucket, Key="years", Body=b"x")
    head = s3.head_object(Bucket=bucket, Key="years")
    assert head["ObjectLockMode"] == "GOVERNANCE"
    assert head["ObjectLockRetainUntilDate"] - before > timedelta(days=364)


def test_multipart_and_copy_with_lock_headers(s3: Any) -> None:
    bucket = lock_bucket(s3)
    until = future(3)
    upload = s3.create_multipart_upload(Bucket=bucket, Key="mp", ObjectLockMode="COMPLIANCE",
                                        ObjectLockRetainUntilDate=until,
                                        ObjectLockLegalHoldStatus="ON")["UploadId"]
    part = s3.upload_part(Bucket=bucket, Key="mp", UploadId=upload, PartNumber=1,
                          Body=b"p" * 100)
    done = s3.complete_multipart_upload(Bucket=bucket, Key="mp", UploadId=upload,
                                        MultipartUpload={"Parts": [{"PartNumber": 1,
                                                                    "ETag": part["ETag"]}]})
    head = s3.head_object(Bucket=bucket, Key="mp")
    assert (head["ObjectLockMode"], head["ObjectLockRetainUntilDate"],
            head["ObjectLockLegalHoldStatus"]) == ("COMPLIANCE", until, "ON")
    refused(s3.delete_object, Bucket=bucket, Key="mp", VersionId=done["VersionId"],
            BypassGovernanceRetention=True)
    s3.put_object_legal_hold(Bucket=bucket, Key="mp", LegalHold={"Status": "OFF"})
    s3.put_object_retention(Bucket=bucket, Key="mp", Retention={
        "Mode": "COMPLIANCE", "RetainUntilDate": until + timedelta(days=1)})
    head = s3.head_object(Bucket=bucket, Key="mp", PartNumber=1)  # its parts are kept
    assert (head["ObjectLockLegalHoldStatus"], head["PartsCount"]) == ("OFF", 1)
    # A copy of a locked object is not locked unless asked (no default here)...
    s3.copy_object(Bucket=bucket, Key="copy1", CopySource={"Bucket": bucket, "Key": "mp"})
    assert "ObjectLockMode" not in s3.head_object(Bucket=bucket, Key="copy1")
    # ...and is when asked.
    copied = s3.copy_object(Bucket=bucket, Key="copy2", CopySource={"Bucket": bucket, "Key": "mp"},
                            ObjectLockMode="GOVERNANCE", ObjectLockRetainUntilDate=until)
    assert s3.head_object(Bucket=bucket, Key="copy2")["ObjectLockMode"] == "GOVERNANCE"
    refused(s3.delete_object, Bucket=bucket, Key="copy2", VersionId=copied["VersionId"])


# --- retention and legal hold by their own operations ----------------------------------------------
def test_retention_by_version_id(s3: Any) -> None:
    bucket = lock_bucket(s3)
    first = s3.put_object(Bucket=bucket, Key="k", Body=b"1")["VersionId"]
    s3.put_object(Bucket=bucket, Key="k", Body=b"2")
    retention = {"Mode": "GOVERNANCE", "RetainUntilDate": future()}
    s3.put_object_retention(Bucket=bucket, Key="k", VersionId=first, Retention=retention)
    assert s3.get_object_retention(Bucket=bucket, Key="k", VersionId=first)["Retention"] == \
        retention
    refused(s3.get_object_retention, "NoSuchObjectLockConfiguration", Bucket=bucket, Key="k")
    refused(s3.delete_object, Bucket=bucket, Key="k", VersionId=first)
    refused(s3.put_object_retention, "NoSuchVersion", Bucket=bucket, Key="k",
            VersionId="0" * 32, Retention=retention)
    refused(s3.put_object_retention, "InvalidArgument", Bucket=bucket, Key="k",
            Retention={"Mode": "GOVERNANCE", "RetainUntilDate": future(-1)})


@pytest.mark.parametrize("document", [
    b"<Retention><Mode>governance</Mode><RetainUntilDate>2099-01-01T00:00:00Z</RetainUntilDate>"
    b"</Retention>",
    b"<Retention><Mode>abc</Mode><RetainUntilDate>2099-01-01T00:00:00Z</RetainUntilDate>"
    b"</Retention>",
    b"<Retention><Mode>GOVERNANCE</Mode></Retention>",
    b"<Retention><RetainUntilDate>2099-01-01T00:00:00Z</RetainUntilDate></Retention>",
    b"<Retention><Mode>GOVERNANCE</Mode><RetainUntilDate>soon</RetainUntilDate></Retention>",
    b"<LegalHold><Status>ON</Status></LegalHold>",
])
def test_malformed_retention(gateway: Any, s3: Any, document: bytes) -> None:
    bucket = lock_bucket(s3)
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    digest = base64.b64encode(hashlib.md5(document).digest()).decode()
    response = raw_request(gateway, "PUT", f"/{bucket}/k?retention", body=document,
                           headers={"Content-MD5": digest})
    assert response.status_code == 400 and b"<Code>MalformedXML</Code>" in response.content


def test_governance_extend_shorten_change_remove(s3: Any) -> None:
    bucket = lock_bucket(s3)
    version = put_locked(s3, bucket, "k", "GOVERNANCE", future(2))
    # Extending needs no bypass.
    s3.put_object_retention(Bucket=bucket, Key="k", Retention={
        "Mode": "GOVERNANCE", "RetainUntilDate": future(3)})
    # Shortening, changing the mode and removing do.
    for retention in ({"Mode": "GOVERNANCE", "RetainUntilDate": future(1)},
                      {"Mode": "COMPLIANCE", "RetainUntilDate": future(3)}, {}):
        err = refused(s3.put_object_retention, Bucket=bucket, Key="k", Retention=retention)
        assert err.response["Error"]["Message"] == LOCKED
    assert s3.get_object_retention(Bucket=bucket, Key="k")["Retention"] == {
        "Mode": "GOVERNANCE", "RetainUntilDate": future(3)}
    shorter = {"Mode": "GOVERNANCE", "RetainUntilDate": future(1)}
    s3.put_object_retention(Bucket=bucket, Key="k", Retention=shorter,
                            BypassGovernanceRetention=True)
    assert s3.get_object_retention(Bucket=bucket, Key="k")["Retention"] == shorter
    s3.put_object_retention(Bucket=bucket, Key="k", Retention={},
                            BypassGovernanceRetention=True)  # removed
    refused(s3.get_object_retention, "NoSuchObjectLockConfiguration", Bucket=bucket, Key="k")
    assert "ObjectLockMode" not in s3.head_object(Bucket=bucket, Key="k")
    s3.delete_object(Bucket=bucket, Key="k", VersionId=version)
    assert not version_exists(s3, bucket, "k", version)


def test_governance_to_compliance_with_bypass(s3: Any) -> None:
    bucket = lock_bucket(s3)
    version = put_locked(s3, bucket, "k", "GOVERNANCE", future(1))
    s3.put_object_retention(Bucket=bucket, Key="k", BypassGovernanceRetention=True, Retention={
        "Mode": "COMPLIANCE", "RetainUntilDate": future(1)})
    refused(s3.delete_object, Bucket=bucket, Key="k", VersionId=version,
            BypassGovernanceRetention=True)


def test_compliance_can_only_be_extended(s3: Any) -> None:
    bucket = lock_bucket(s3)
    version = put_locked(s3, bucket, "k", "COMPLIANCE", future(2))
    s3.put_object_retention(Bucket=bucket, Key="k", Retention={
        "Mode": "COMPLIANCE", "RetainUntilDate": future(4)})
    for retention in ({"Mode": "COMPLIANCE", "RetainUntilDate": future(3)},
                      {"Mode": "GOVERNANCE", "RetainUntilDate": future(5)}, {}):
        for bypass in (False, True):
            err = refused(s3.put_object_retention, Bucket=bucket, Key="k", Retention=retention,
                          BypassGovernanceRetention=bypass)
            assert err.response["Error"]["Message"] == LOCKED
    assert s3.get_object_retention(Bucket=bucket, Key="k")["Retention"] == {
        "Mode": "COMPLIANCE", "RetainUntilDate": future(4)}
    for bypass in (False, True):
        refused(s3.delete_object, Bucket=bucket, Key="k", VersionId=version,
                BypassGovernanceRetention=bypass)
    assert s3.get_object(Bucket=bucket, Key="k", VersionId=version)["Body"].read() == b"locked"


def test_legal_hold_on_and_off(s3: Any) -> None:
    bucket = lock_bucket(s3)
    version = s3.put_object(Bucket=bucket, Key="k", Body=b"x")["VersionId"]
    refused(s3.get_object_legal_hold, "NoSuchObjectLockConfiguration", Bucket=bucket, Key="k")
    s3.put_object_legal_hold(Bucket=bucket, Key="k", LegalHold={"Status": "ON"})
    assert s3.get_object_legal_hold(Bucket=bucket, Key="k")["LegalHold"] == {"Status": "ON"}
    assert s3.head_object(Bucket=bucket, Key="k")["ObjectLockLegalHoldStatus"] == "ON"
    for bypass in (False, True):  # a legal hold is not a retention: no bypass
        err = refused(s3.delete_object, Bucket=bucket, Key="k", VersionId=version,
                      BypassGovernanceRetention=bypass)
        assert err.response["Error"]["Message"] == LOCKED
    refused(s3.put_object_legal_hold, "MalformedXML", Bucket=bucket, Key="k",
            LegalHold={"Status": "abc"})
    s3.put_object_legal_hold(Bucket=bucket, Key="k", LegalHold={"Status": "OFF"})
    assert s3.get_object_legal_hold(Bucket=bucket, Key="k")["LegalHold"] == {"Status": "OFF"}
    response = s3.delete_object(Bucket=bucket, Key="k", VersionId=version)
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert not version_exists(s3, bucket, "k", version)


def test_legal_hold_and_retention_are_independent(s3: Any) -> None:
    bucket = lock_bucket(s3)
    version = put_locked(s3, bucket, "k", "GOVERNANCE", future(1))
    s3.put_object_legal_hold(Bucket=bucket, Key="k", LegalHold={"Status": "ON"})
    s3.put_object_retention(Bucket=bucket, Key="k", Retention={},
                            BypassGovernanceRetention=True)
    refused(s3.delete_object, Bucket=bucket, Key="k", VersionId=version,
            BypassGovernanceRetention=True)  # the hold alone still protects it
    s3.put_object_legal_hold(Bucket=bucket, Key="k", LegalHold={"Status": "OFF"})
    s3.delete_object(Bucket=bucket, Key="k", VersionId=version)


# --- every way to delete a locked version ---------------------------------------------------------
def test_delete_paths(s3: Any) -> None:
    bucket = lock_bucket(s3)
    version = put_locked(s3, bucket, "k", "GOVERNANCE")
    other = s3.put_object(Bucket=bucket, Key="free", Body=b"f")["VersionId"]
    # DeleteObject with the version id.
    err = refused(s3.delete_object, Bucket=bucket, Key="k", VersionId=version)
    assert err.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert err.response["Error"]["Message"] == LOCKED
    # DeleteObjects with version ids: the locked entry fails alone.
    result = s3.delete_objects(Bucket=bucket, Delete={"Objects": [
        {"Key": "k", "VersionId": version}, {"Key": "free", "VersionId": other}]})
    assert [(e["Key"], e["VersionId"], e["Code"]) for e in result["Errors"]] == [
        ("k", version, "AccessDenied")]
    assert [(d["Key"], d["VersionId"]) for d in result["Deleted"]] == [("free", other)]
    # Without a version id: a delete marker, allowed; the version stays.
    marker = s3.delete_object(Bucket=bucket, Key="k")
    assert marker["DeleteMarker"] is True
    refused(s3.get_object, "NoSuchKey", Bucket=bucket, Key="k")
    assert s3.get_object(Bucket=bucket, Key="k", VersionId=version)["Body"].read() == b"locked"
    s3.delete_object(Bucket=bucket, Key="k", VersionId=marker["VersionId"])  # markers: free
    # An overwrite is a new version; the locked one never changes.
    s3.put_object(Bucket=bucket, Key="k", Body=b"newer")
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"newer"
    assert s3.get_object(Bucket=bucket, Key="k", VersionId=version)["Body"].read() == b"locked"
    # The bucket cannot go while it has versions.
    refused(s3.delete_bucket, "BucketNotEmpty", Bucket=bucket)
    # The bucket owner may bypass GOVERNANCE, in DeleteObjects too.
    result = s3.delete_objects(Bucket=bucket, BypassGovernanceRetention=True, Delete={
        "Objects": [{"Key": "k", "VersionId": version}]})
    assert not result.get("Errors") and result["Deleted"][0]["VersionId"] == version
    assert not version_exists(s3, bucket, "k", version)


def test_bypass_needs_the_permission(s3: Any, s3_other: Any) -> None:
    bucket = lock_bucket(s3)
    resources = [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"]
    grant = {"Effect": "Allow", "Principal": {"AWS": OTHER_ARN},
             "Action": ["s3:PutObject", "s3:GetObject", "s3:GetObjectVersion",
                        "s3:DeleteObject", "s3:DeleteObjectVersion", "s3:PutObjectRetention",
                        "s3:GetObjectRetention", "s3:ListBucket", "s3:ListBucketVersions"],
             "Resource": resources}
    s3.put_bucket_policy(Bucket=bucket, Policy=policy(bucket, grant))
    first = put_locked(s3, bucket, "a", "GOVERNANCE")
    second = put_locked(s3, bucket, "b", "GOVERNANCE")
    # Without s3:BypassGovernanceRetention the header counts for nothing.
    for call, kwargs in ((s3_other.delete_object, {"Key": "a", "VersionId": first}),
                         (s3_other.put_object_retention, {"Key": "a", "Retention": {}})):
        err = refused(call, Bucket=bucket, BypassGovernanceRetention=True, **kwargs)
        assert err.response["Error"]["Message"] == LOCKED
    result = s3_other.delete_objects(Bucket=bucket, BypassGovernanceRetention=True, Delete={
        "Objects": [{"Key": "a", "VersionId": first}]})
    assert result["Errors"][0]["Code"] == "AccessDenied"
    assert version_exists(s3, bucket, "a", first)
    # Granted: it works.
    s3.put_bucket_policy(Bucket=bucket, Policy=policy(bucket, grant, {
        "Effect": "Allow", "Principal": {"AWS": OTHER_ARN},
        "Action": "s3:BypassGovernanceRetention", "Resource": f"arn:aws:s3:::{bucket}/a"}))
    s3_other.delete_object(Bucket=bucket, Key="a", VersionId=first,
                           BypassGovernanceRetention=True)
    assert not version_exists(s3, bucket, "a", first)
    refused(s3_other.delete_object, Bucket=bucket, Key="b", VersionId=second,
            BypassGovernanceRetention=True)  # granted on "a" only
    # An explicit Deny binds the bucket owner too.
    s3.put_bucket_policy(Bucket=bucket, Policy=policy(bucket, grant, {
        "Effect": "Deny", "Principal": "*", "Action": "s3:BypassGovernanceRetention",
        "Resource": resources}))
    refused(s3.delete_object, Bucket=bucket, Key="b", VersionId=second,
            BypassGovernanceRetention=True)
    s3.delete_bucket_policy(Bucket=bucket)
    s3.delete_object(Bucket=bucket, Key="b", VersionId=second, BypassGovernanceRetention=True)


def test_expired_retention_no_longer_protects(s3: Any) -> None:
    bucket = lock_bucket(s3)
    until = datetime.now(UTC) + timedelta(seconds=2)
    version = s3.put_object(Bucket=bucket, Key="k", Body=b"x", ObjectLockMode="COMPLIANCE",
                            ObjectLockRetainUntilDate=until)["VersionId"]
    refused(s3.delete_object, Bucket=bucket, Key="k", VersionId=version)
    threading.Event().wait(max(0.0, (until - datetime.now(UTC)).total_seconds()) + 0.2)
    s3.delete_object(Bucket=bucket, Key="k", VersionId=version)
    assert not version_exists(s3, bucket, "k", version)


def test_retention_racing_delete_never_loses_a_locked_version(gateway: Any, s3: Any) -> None:
    """A PutObjectRetention and a DeleteObject of the same version, at once, many times:
    whenever the retention was acknowledged, the version must still be there."""
    bucket = lock_bucket(s3)
    deleter, locker = gateway.client(), gateway.client()
    acknowledged = 0
    for round_ in range(25):
        key = f"race-{round_}"
        version = s3.put_object(Bucket=bucket, Key=key, Body=b"x")["VersionId"]
        outcome: dict[str, Any] = {}
        start = threading.Barrier(2)

        def lock_it(key: str = key, version: str = version, start: Any = start,
                    outcome: dict[str, Any] = outcome) -> None:
            start.wait()
            try:
                locker.put_object_retention(Bucket=bucket, Key=key, VersionId=version,
                                            Retention={"Mode": "COMPLIANCE",
                                                       "RetainUntilDate": future()})
                outcome["locked"] = True
            except ClientError as err:
                outcome["locked"] = error_code_of(err)

        def delete_it(key: str = key, version: str = version, start: Any = start,
                      outcome: dict[str, Any] = outcome) -> None:
            start.wait()
            try:
                deleter.delete_object(Bucket=bucket, Key=key, VersionId=version)
                outcome["deleted"] = True
            except ClientError as err:
                outcome["deleted"] = error_code_of(err)

        threads = [threading.Thread(target=lock_it), threading.Thread(target=delete_it)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        exists = version_exists(s3, bucket, key, version)
        if outcome["locked"] is True:  # locked first: the delete was refused
            acknowledged += 1
            assert exists, f"round {round_}: the locked version was deleted ({outcome})"
            assert outcome["deleted"] == "AccessDenied", outcome
        else:  # deleted first: there was nothing left to lock
            assert outcome["locked"] in ("NoSuchVersion", "NoSuchKey"), outcome
            assert outcome["deleted"] is True and not exists
    # Which one wins each round is up to the scheduler: each round was checked either way.
    print(f"retention won {acknowledged} of 25 rounds")


def error_code_of(err: ClientError) -> str:
    return err.response["Error"]["Code"]


def test_acl_put_racing_retention_put_keeps_the_lock(s3: Any, gateway: Any) -> None:
    """PutObjectAcl rewrites a version's attributes: it must never drop a lock set meanwhile."""
    bucket = lock_bucket(s3)
    acl_client, lock_client = gateway.client(), gateway.client()
    for round_ in range(10):
        key = f"acl-{round_}"
        version = s3.put_object(Bucket=bucket, Key=key, Body=b"x")["VersionId"]
        start = threading.Barrier(2)

        def set_acl(key: str = key, version: str = version, start: Any = start) -> None:
            start.wait()
            for _ in range(3):
                acl_client.put_object_acl(Bucket=bucket, Key=key, VersionId=version,
                                          ACL="public-read")

        def set_hold(key: str = key, version: str = version, start: Any = start) -> None:
            start.wait()
            lock_client.put_object_legal_hold(Bucket=bucket, Key=key, VersionId=version,
                                              LegalHold={"Status": "ON"})

        threads = [threading.Thread(target=set_acl), threading.Thread(target=set_hold)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert s3.get_object_legal_hold(Bucket=bucket, Key=key,
                                        VersionId=version)["LegalHold"]["Status"] == "ON"
        refused(s3.delete_object, Bucket=bucket, Key=key, VersionId=version)


def test_lock_operations_need_their_permissions(s3: Any, s3_other: Any) -> None:
    bucket = lock_bucket(s3)
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    for call, kwargs in (
            (s3_other.put_object_retention, {"Key": "k", "Retention": {
                "Mode": "GOVERNANCE", "RetainUntilDate": future()}}),
            (s3_other.get_object_retention, {"Key": "k"}),
            (s3_other.put_object_legal_hold, {"Key": "k", "LegalHold": {"Status": "ON"}}),
            (s3_other.get_object_legal_hold, {"Key": "k"}),
            (s3_other.get_object_lock_configuration, {}),
            (s3_other.put_object_lock_configuration, {"ObjectLockConfiguration": {
                "ObjectLockEnabled": "Enabled"}})):
        err = refused(call, Bucket=bucket, **kwargs)
        assert status_of(err) == 403
    assert "ObjectLockLegalHoldStatus" not in s3.head_object(Bucket=bucket, Key="k")
    # GET/HEAD show a version's lock only to who may read it.
    put_locked(s3, bucket, "k")
    s3.put_object_legal_hold(Bucket=bucket, Key="k", LegalHold={"Status": "ON"})
    read = {"Effect": "Allow", "Principal": {"AWS": OTHER_ARN}, "Action": "s3:GetObject",
            "Resource": f"arn:aws:s3:::{bucket}/*"}
    s3.put_bucket_policy(Bucket=bucket, Policy=policy(bucket, read))
    lock_fields = {"ObjectLockMode", "ObjectLockRetainUntilDate", "ObjectLockLegalHoldStatus"}
    assert not lock_fields & set(s3_other.head_object(Bucket=bucket, Key="k"))
    assert lock_fields <= set(s3.head_object(Bucket=bucket, Key="k"))
    s3.put_bucket_policy(Bucket=bucket, Policy=policy(bucket, read, {
        **read, "Action": "s3:GetObjectRetention"}))
    shown = set(s3_other.get_object(Bucket=bucket, Key="k")) & lock_fields
    assert shown == {"ObjectLockMode", "ObjectLockRetainUntilDate"}
    s3.put_bucket_policy(Bucket=bucket, Policy=policy(bucket, read, {
        **read, "Action": "s3:GetObjectLegalHold"}))
    assert set(s3_other.head_object(Bucket=bucket, Key="k")) & lock_fields == {
        "ObjectLockLegalHoldStatus"}


def status_of(err: ClientError) -> int:
    return err.response["ResponseMetadata"]["HTTPStatusCode"]


def test_create_bucket_header_false_is_a_plain_bucket(gateway: Any, s3: Any) -> None:
    name = f"lock-{uuid.uuid4().hex[:12]}"
    response = raw_request(gateway, "PUT", f"/{name}",
                           headers={"x-amz-bucket-object-lock-enabled": "false"})
    assert response.status_code == 200
    with pytest.raises(ClientError) as exc:
        s3.get_object_lock_configuration(Bucket=name)
    assert error_code(exc) == "ObjectLockConfigurationNotFoundError" and status(exc) == 404
