"""Per-version authorization: a request that names a version (?versionId=, or a copy source's
versionId) is decided on that version's own owner and ACL, never on the current version's, and
a delete marker never lets the bucket's READ (a right to list) stand in for an object ACL.

Each test replays an attack that worked when the decision looked at the current version."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
import requests
from botocore.exceptions import ClientError

from tests.s3.conftest import error_code, status

OWNER1 = "79a59df900b949e55d96a1e698fbacedfd6e09d98eacf8f8d5218e7cd47ef2be"
OWNER2 = "79a59df900b949e55d96a1e698fbacedfd6e09d98eacf8f8d5218e7cd47ef2bf"
ACCOUNT2 = "arn:aws:iam::123456789013:root"
MISSING_VERSION = "0" * 32
TAGS_XML = b"<Tagging><TagSet><Tag><Key>pwned</Key><Value>yes</Value></Tag></TagSet></Tagging>"
ALL_USERS = "http://acs.amazonaws.com/groups/global/AllUsers"


def versioned_bucket(s3: Any, where: str = "us-east-1", acl: str | None = None) -> str:
    name = f"vacc-{uuid.uuid4().hex[:12]}"
    kwargs: dict[str, Any] = {}
    if where != "us-east-1":
        kwargs["CreateBucketConfiguration"] = {"LocationConstraint": where}
    if acl is not None:
        kwargs["ACL"] = acl
    s3.create_bucket(Bucket=name, **kwargs)
    s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    return name


def anon(gateway: Any, method: str, path: str, data: bytes = b"",
         headers: dict[str, str] | None = None) -> requests.Response:
    """An unsigned request: what anyone on the network can send."""
    return requests.request(method, gateway.endpoint + path, data=data, headers=headers,
                            timeout=10)


def denied(response: requests.Response) -> bool:
    # HEAD answers carry no body: the status is all there is.
    return response.status_code == 403 and (response.request.method == "HEAD"
                                            or b"<Code>AccessDenied</Code>" in response.content)


def grants_of(acl: dict[str, Any]) -> set[tuple[str, str]]:
    return {(g["Grantee"].get("ID") or g["Grantee"].get("URI"), g["Permission"])
            for g in acl["Grants"]}


def tags_of(s3: Any, bucket: str, key: str, version: str) -> dict[str, str]:
    found = s3.get_object_tagging(Bucket=bucket, Key=key, VersionId=version)["TagSet"]
    return {t["Key"]: t["Value"] for t in found}


def client_status(call: Any, **kwargs: Any) -> tuple[int, str]:
    with pytest.raises(ClientError) as exc:
        call(**kwargs)
    return status(exc), error_code(exc)


def policy(*statements: dict[str, Any]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


@pytest.mark.parametrize("where", ["us-east-1", "memloc"])
@pytest.mark.parametrize("current", ["public-version", "delete-marker"])
def test_anonymous_on_public_read_bucket_cannot_touch_private_old_version(
        gateway: Any, s3: Any, where: str, current: str) -> None:
    bucket = versioned_bucket(s3, where, acl="public-read")  # anonymous may list, not read
    v1 = s3.put_object(Bucket=bucket, Key="k", Body=b"old secret", Tagging="owner=bart")[
        "VersionId"]
    if current == "public-version":
        s3.put_object(Bucket=bucket, Key="k", Body=b"new public", ACL="public-read")
        got = anon(gateway, "GET", f"/{bucket}/k")
        assert got.status_code == 200 and got.content == b"new public"
    else:
        assert s3.delete_object(Bucket=bucket, Key="k")["DeleteMarker"] is True
        # The current marker reads as absent to those who may list, as before.
        gone = anon(gateway, "GET", f"/{bucket}/k")
        assert gone.status_code == 404 and b"<Code>NoSuchKey</Code>" in gone.content
    assert anon(gateway, "GET", f"/{bucket}?versions").status_code == 200

    path = f"/{bucket}/k?versionId={v1}"
    assert denied(anon(gateway, "GET", path))
    assert denied(anon(gateway, "HEAD", path))
    assert denied(anon(gateway, "GET", f"/{bucket}/k?acl&versionId={v1}"))
    assert denied(anon(gateway, "GET", f"/{bucket}/k?tagging&versionId={v1}"))
    assert denied(anon(gateway, "PUT", f"/{bucket}/k?acl&versionId={v1}",
                       headers={"x-amz-acl": "public-read"}))
    assert denied(anon(gateway, "PUT", f"/{bucket}/k?tagging&versionId={v1}", TAGS_XML))
    assert denied(anon(gateway, "DELETE", f"/{bucket}/k?tagging&versionId={v1}"))

    # Nothing changed: still private, tags intact, and still unreadable.
    assert grants_of(s3.get_object_acl(Bucket=bucket, Key="k", VersionId=v1)) == {
        (OWNER1, "FULL_CONTROL")}
    assert tags_of(s3, bucket, "k", v1) == {"owner": "bart"}
    assert s3.get_object(Bucket=bucket, Key="k", VersionId=v1)["Body"].read() == b"old secret"
    assert denied(anon(gateway, "GET", path))


def test_delete_marker_by_id_is_authorized_before_method_not_allowed(
        gateway: Any, s3: Any, s3_other: Any) -> None:
    bucket = versioned_bucket(s3, acl="public-read")
    s3.put_object(Bucket=bucket, Key="k", Body=b"data")
    marker = s3.delete_object(Bucket=bucket, Key="k")["VersionId"]
    path = f"/{bucket}/k?versionId={marker}"
    # Bucket READ is no right on the marker itself: 403, not the marker's 405.
    assert denied(anon(gateway, "GET", path))
    assert denied(anon(gateway, "HEAD", path))
    assert denied(anon(gateway, "GET", f"/{bucket}/k?acl&versionId={marker}"))
    assert client_status(s3_other.get_object, Bucket=bucket, Key="k",
                         VersionId=marker) == (403, "AccessDenied")
    # Its owner gets AWS's answer for a marker named by id.
    assert client_status(s3.get_object, Bucket=bucket, Key="k",
                         VersionId=marker) == (405, "MethodNotAllowed")
    with pytest.raises(ClientError) as exc:
        s3.head_object(Bucket=bucket, Key="k", VersionId=marker)
    assert status(exc) == 405


def test_version_made_public_by_its_owner_is_readable_alone(gateway: Any, s3: Any) -> None:
    bucket = versioned_bucket(s3)  # private bucket: anonymous may not even list
    v1 = s3.put_object(Bucket=bucket, Key="k", Body=b"one")["VersionId"]
    v2 = s3.put_object(Bucket=bucket, Key="k", Body=b"two")["VersionId"]
    s3.put_object_acl(Bucket=bucket, Key="k", VersionId=v1, ACL="public-read")

    got = anon(gateway, "GET", f"/{bucket}/k?versionId={v1}")
    assert got.status_code == 200 and got.content == b"one"
    assert got.headers["x-amz-version-id"] == v1
    assert anon(gateway, "HEAD", f"/{bucket}/k?versionId={v1}").status_code == 200
    # READ is not READ_ACP; and the current version keeps its own (private) ACL.
    assert denied(anon(gateway, "GET", f"/{bucket}/k?acl&versionId={v1}"))
    assert denied(anon(gateway, "GET", f"/{bucket}/k"))
    assert denied(anon(gateway, "GET", f"/{bucket}/k?versionId={v2}"))

    # A delete marker on top changes nothing for the versions below it.
    s3.delete_object(Bucket=bucket, Key="k")
    again = anon(gateway, "GET", f"/{bucket}/k?versionId={v1}")
    assert again.status_code == 200 and again.content == b"one"
    assert denied(anon(gateway, "GET", f"/{bucket}/k?versionId={v2}"))
    assert denied(anon(gateway, "GET", f"/{bucket}/k"))  # absent, but anonymous may not list


def test_bucket_writer_cannot_reach_another_accounts_old_version(s3: Any,
                                                                 s3_other: Any) -> None:
    bucket = versioned_bucket(s3)
    s3.put_bucket_acl(Bucket=bucket, GrantFullControl=f"id={OWNER1}", GrantWrite=f"id={OWNER2}")
    v1 = s3.put_object(Bucket=bucket, Key="k", Body=b"account 1 secret",
                       Tagging="owner=bart")["VersionId"]
    # Account 2 may write: it puts its own version on top, and so owns the current one.
    v2 = s3_other.put_object(Bucket=bucket, Key="k", Body=b"account 2 data")["VersionId"]
    assert s3_other.get_object(Bucket=bucket, Key="k")["Body"].read() == b"account 2 data"

    for call, extra in ((s3_other.get_object, {}), (s3_other.get_object_acl, {}),
                        (s3_other.get_object_tagging, {}),
                        (s3_other.put_object_acl, {"ACL": "public-read"}),
                        (s3_other.put_object_tagging,
                         {"Tagging": {"TagSet": [{"Key": "pwned", "Value": "yes"}]}})):
        assert client_status(call, Bucket=bucket, Key="k", VersionId=v1, **extra) == (
            403, "AccessDenied"), call
    with pytest.raises(ClientError) as exc:
        s3_other.head_object(Bucket=bucket, Key="k", VersionId=v1)
    assert status(exc) == 403

    # Nor by copying it: CopyObject and UploadPartCopy read the source version named.
    source = {"Bucket": bucket, "Key": "k", "VersionId": v1}
    assert client_status(s3_other.copy_object, Bucket=bucket, Key="stolen",
                         CopySource=source) == (403, "AccessDenied")
    assert client_status(s3.head_object, Bucket=bucket, Key="stolen")[0] == 404
    upload = s3_other.create_multipart_upload(Bucket=bucket, Key="stolen-mpu")["UploadId"]
    assert client_status(s3_other.upload_part_copy, Bucket=bucket, Key="stolen-mpu",
                         UploadId=upload, PartNumber=1, CopySource=source) == (
        403, "AccessDenied")
    assert s3_other.list_parts(Bucket=bucket, Key="stolen-mpu", UploadId=upload).get(
        "Parts", []) == []
    s3_other.abort_multipart_upload(Bucket=bucket, Key="stolen-mpu", UploadId=upload)

    # Its own version it may copy; a marker of its own on top opens nothing either.
    s3_other.copy_object(Bucket=bucket, Key="mine", CopySource={**source, "VersionId": v2})
    assert s3.get_object(Bucket=bucket, Key="mine")["Body"].read() == b"account 2 data"
    s3_other.delete_object(Bucket=bucket, Key="k")
    assert client_status(s3_other.get_object, Bucket=bucket, Key="k", VersionId=v1) == (
        403, "AccessDenied")
    assert grants_of(s3.get_object_acl(Bucket=bucket, Key="k", VersionId=v1)) == {
        (OWNER1, "FULL_CONTROL")}
    assert tags_of(s3, bucket, "k", v1) == {"owner": "bart"}


def test_anonymous_copy_of_private_old_version_is_denied(gateway: Any, s3: Any) -> None:
    bucket = versioned_bucket(s3, acl="public-read-write")  # anonymous may write and list
    v1 = s3.put_object(Bucket=bucket, Key="k", Body=b"secret")["VersionId"]
    v2 = s3.put_object(Bucket=bucket, Key="k", Body=b"public", ACL="public-read")["VersionId"]

    stolen = anon(gateway, "PUT", f"/{bucket}/dest",
                  headers={"x-amz-copy-source": f"/{bucket}/k?versionId={v1}"})
    assert denied(stolen)
    assert client_status(s3.head_object, Bucket=bucket, Key="dest")[0] == 404
    copied = anon(gateway, "PUT", f"/{bucket}/dest",
                  headers={"x-amz-copy-source": f"/{bucket}/k?versionId={v2}"})
    assert copied.status_code == 200
    assert s3.get_object(Bucket=bucket, Key="dest")["Body"].read() == b"public"

    s3.delete_object(Bucket=bucket, Key="k")  # a current marker opens nothing
    assert denied(anon(gateway, "PUT", f"/{bucket}/dest2",
                       headers={"x-amz-copy-source": f"/{bucket}/k?versionId={v1}"}))
    assert client_status(s3.head_object, Bucket=bucket, Key="dest2")[0] == 404


def test_missing_version_answers_404_only_to_listers(gateway: Any, s3: Any,
                                                     s3_other: Any) -> None:
    private = versioned_bucket(s3)
    v1 = s3.put_object(Bucket=private, Key="k", Body=b"open", ACL="public-read")["VersionId"]
    assert anon(gateway, "GET", f"/{private}/k?versionId={v1}").status_code == 200
    assert denied(anon(gateway, "GET", f"/{private}/k?versionId={MISSING_VERSION}"))
    assert denied(anon(gateway, "GET", f"/{private}/nokey?versionId={MISSING_VERSION}"))

    listable = versioned_bucket(s3, acl="public-read")
    s3.put_object(Bucket=listable, Key="k", Body=b"x")
    missing = anon(gateway, "GET", f"/{listable}/k?versionId={MISSING_VERSION}")
    assert missing.status_code == 404 and b"<Code>NoSuchVersion</Code>" in missing.content

    # s3:ListBucketVersions, not s3:GetObjectVersion, is what reveals a missing version.
    grant_read = {"Effect": "Allow", "Principal": {"AWS": ACCOUNT2},
                  "Action": "s3:GetObjectVersion", "Resource": f"arn:aws:s3:::{private}/*"}
    s3.put_bucket_policy(Bucket=private, Policy=policy(grant_read))
    assert s3_other.get_object(Bucket=private, Key="k", VersionId=v1)["Body"].read() == b"open"
    assert client_status(s3_other.get_object, Bucket=private, Key="k",
                         VersionId=MISSING_VERSION) == (403, "AccessDenied")
    s3.put_bucket_policy(Bucket=private, Policy=policy(grant_read, {
        "Effect": "Allow", "Principal": {"AWS": ACCOUNT2}, "Action": "s3:ListBucketVersions",
        "Resource": f"arn:aws:s3:::{private}"}))
    assert client_status(s3_other.get_object, Bucket=private, Key="k",
                         VersionId=MISSING_VERSION) == (404, "NoSuchVersion")


def test_policy_is_evaluated_with_per_version_actions(gateway: Any, s3: Any) -> None:
    bucket = versioned_bucket(s3)
    v1 = s3.put_object(Bucket=bucket, Key="k", Body=b"one", Tagging="t=1")["VersionId"]
    v2 = s3.put_object(Bucket=bucket, Key="k", Body=b"two", Tagging="t=2")["VersionId"]
    objects = f"arn:aws:s3:::{bucket}/*"
    s3.put_bucket_policy(Bucket=bucket, Policy=policy(
        {"Effect": "Allow", "Principal": "*", "Action": ["s3:GetObject", "s3:GetObjectTagging"],
         "Resource": objects}))
    current = anon(gateway, "GET", f"/{bucket}/k")
    assert current.status_code == 200 and current.content == b"two"
    assert anon(gateway, "GET", f"/{bucket}/k?tagging").status_code == 200
    # Naming a version, even the current one, is s3:GetObjectVersion(Tagging).
    assert denied(anon(gateway, "GET", f"/{bucket}/k?versionId={v2}"))
    assert denied(anon(gateway, "GET", f"/{bucket}/k?tagging&versionId={v1}"))

    s3.put_bucket_policy(Bucket=bucket, Policy=policy(
        {"Effect": "Allow", "Principal": "*", "Action": "s3:GetObjectVersion",
         "Resource": objects, "Condition": {"StringEquals": {"s3:VersionId": v1}}}))
    old = anon(gateway, "GET", f"/{bucket}/k?versionId={v1}")
    assert old.status_code == 200 and old.content == b"one"
    assert denied(anon(gateway, "GET", f"/{bucket}/k?versionId={v2}"))
    # The copy source's own version id is what s3:VersionId is matched against.
    writable = versioned_bucket(s3, acl="public-read-write")
    assert anon(gateway, "PUT", f"/{writable}/c1", headers={
        "x-amz-copy-source": f"/{bucket}/k?versionId={v1}"}).status_code == 200
    assert denied(anon(gateway, "PUT", f"/{writable}/c2", headers={
        "x-amz-copy-source": f"/{bucket}/k?versionId={v2}"}))

    # An explicit Deny on one version beats that version's public ACL, the owner included.
    s3.put_object_acl(Bucket=bucket, Key="k", VersionId=v1, ACL="public-read")
    s3.put_bucket_policy(Bucket=bucket, Policy=policy(
        {"Effect": "Deny", "Principal": "*", "Action": "s3:GetObjectVersion",
         "Resource": objects, "Condition": {"StringEquals": {"s3:VersionId": v1}}}))
    assert denied(anon(gateway, "GET", f"/{bucket}/k?versionId={v1}"))
    assert client_status(s3.get_object, Bucket=bucket, Key="k", VersionId=v1) == (
        403, "AccessDenied")
    assert s3.get_object(Bucket=bucket, Key="k", VersionId=v2)["Body"].read() == b"two"
    s3.delete_bucket_policy(Bucket=bucket)
    assert anon(gateway, "GET", f"/{bucket}/k?versionId={v1}").content == b"one"
