"""ACLs: canned and grant headers, Get/PutBucketAcl, Get/PutObjectAcl, anonymous access."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
import requests
from botocore.exceptions import ClientError

from tests.s3.conftest import error_code, raw_request, status

OWNER1 = "79a59df900b949e55d96a1e698fbacedfd6e09d98eacf8f8d5218e7cd47ef2be"
OWNER2 = "79a59df900b949e55d96a1e698fbacedfd6e09d98eacf8f8d5218e7cd47ef2bf"
ALL_USERS = "http://acs.amazonaws.com/groups/global/AllUsers"
AUTH_USERS = "http://acs.amazonaws.com/groups/global/AuthenticatedUsers"
LOCATIONS = ["file", "memloc"]


def new_bucket(s3: Any, where: str, **kwargs: Any) -> str:
    name = f"acl-{uuid.uuid4().hex[:12]}"
    if where == "memloc":
        kwargs["CreateBucketConfiguration"] = {"LocationConstraint": "memloc"}
    s3.create_bucket(Bucket=name, **kwargs)
    return name


def grants_of(acl: dict[str, Any]) -> set[tuple[str, str]]:
    return {(g["Grantee"].get("ID") or g["Grantee"].get("URI"), g["Permission"])
            for g in acl["Grants"]}


def anon(gateway: Any, method: str, path: str, data: bytes = b"") -> requests.Response:
    return requests.request(method, gateway.endpoint + path, data=data, timeout=10)


@pytest.mark.parametrize("where", LOCATIONS)
def test_default_acls_are_owner_full_control(s3: Any, where: str) -> None:
    bucket = new_bucket(s3, where)
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    for acl in (s3.get_bucket_acl(Bucket=bucket), s3.get_object_acl(Bucket=bucket, Key="k")):
        assert acl["Owner"]["ID"] == OWNER1
        assert acl["Owner"]["DisplayName"] == "Bart"
        assert grants_of(acl) == {(OWNER1, "FULL_CONTROL")}
        assert acl["Grants"][0]["Grantee"]["Type"] == "CanonicalUser"


@pytest.mark.parametrize("where", LOCATIONS)
def test_public_read_object_lets_anonymous_get_and_head(gateway: Any, s3: Any,
                                                       where: str) -> None:
    bucket = new_bucket(s3, where)
    s3.put_object(Bucket=bucket, Key="public", Body=b"for all", ACL="public-read")
    s3.put_object(Bucket=bucket, Key="private", Body=b"secret")
    got = anon(gateway, "GET", f"/{bucket}/public")
    assert got.status_code == 200 and got.content == b"for all"
    assert anon(gateway, "HEAD", f"/{bucket}/public").status_code == 200
    denied = anon(gateway, "GET", f"/{bucket}/private")
    assert denied.status_code == 403 and b"<Code>AccessDenied</Code>" in denied.content
    # Anonymous may neither list nor write a private bucket, nor learn which keys exist.
    assert anon(gateway, "GET", f"/{bucket}").status_code == 403
    assert anon(gateway, "GET", f"/{bucket}/missing").status_code == 403
    assert anon(gateway, "PUT", f"/{bucket}/new", b"x").status_code == 403
    acl = s3.get_object_acl(Bucket=bucket, Key="public")
    assert grants_of(acl) == {(OWNER1, "FULL_CONTROL"), (ALL_USERS, "READ")}


@pytest.mark.parametrize("where", LOCATIONS)
def test_public_read_write_bucket_lets_anonymous_put_and_list(gateway: Any, s3: Any,
                                                             where: str) -> None:
    bucket = new_bucket(s3, where, ACL="public-read-write")
    assert grants_of(s3.get_bucket_acl(Bucket=bucket)) == {
        (OWNER1, "FULL_CONTROL"), (ALL_USERS, "READ"), (ALL_USERS, "WRITE")}
    put = anon(gateway, "PUT", f"/{bucket}/from-anon", b"anonymous data")
    assert put.status_code == 200
    listing = anon(gateway, "GET", f"/{bucket}")
    assert listing.status_code == 200 and b"<Key>from-anon</Key>" in listing.content
    # The bucket owner still reads it; the anonymous writer cannot read it back (private).
    assert s3.get_object(Bucket=bucket, Key="from-anon")["Body"].read() == b"anonymous data"
    assert anon(gateway, "GET", f"/{bucket}/from-anon").status_code == 403
    # Missing keys answer 404 to those who may list.
    assert anon(gateway, "GET", f"/{bucket}/nothing").status_code == 404
    # Bucket-owner operations stay the owner's.
    assert anon(gateway, "DELETE", f"/{bucket}").status_code == 403
    assert anon(gateway, "GET", f"/{bucket}?acl").status_code == 403


def test_authenticated_read_and_other_account(s3: Any, s3_other: Any) -> None:
    bucket = new_bucket(s3, "file")
    s3.put_object(Bucket=bucket, Key="shared", Body=b"s", ACL="authenticated-read")
    s3.put_object(Bucket=bucket, Key="mine", Body=b"m")
    assert s3_other.get_object(Bucket=bucket, Key="shared")["Body"].read() == b"s"
    with pytest.raises(ClientError) as exc:
        s3_other.get_object(Bucket=bucket, Key="mine")
    assert error_code(exc) == "AccessDenied" and status(exc) == 403
    with pytest.raises(ClientError) as exc:
        s3_other.put_object(Bucket=bucket, Key="intruder", Body=b"x")
    assert error_code(exc) == "AccessDenied"


@pytest.mark.parametrize("where", LOCATIONS)
def test_grant_headers_on_put_and_create(s3: Any, s3_other: Any, where: str) -> None:
    bucket = new_bucket(s3, where, GrantRead=f'id="{OWNER2}"')
    assert (OWNER2, "READ") in grants_of(s3.get_bucket_acl(Bucket=bucket))
    assert s3_other.list_objects_v2(Bucket=bucket)["KeyCount"] == 0
    s3.put_object(Bucket=bucket, Key="g", Body=b"granted",
                  GrantRead="emailAddress=sampleaccount2@sampling.com",
                  GrantReadACP=f"uri={AUTH_USERS}")
    acl = s3.get_object_acl(Bucket=bucket, Key="g")
    assert grants_of(acl) == {(OWNER2, "READ"), (AUTH_USERS, "READ_ACP")}
    assert s3_other.get_object(Bucket=bucket, Key="g")["Body"].read() == b"granted"
    assert s3_other.get_object_acl(Bucket=bucket, Key="g")["Owner"]["ID"] == OWNER1
    # The owner keeps full control although the grants do not name it.
    s3.put_object_acl(Bucket=bucket, Key="g", ACL="private")
    with pytest.raises(ClientError) as exc:
        s3_other.get_object(Bucket=bucket, Key="g")
    assert error_code(exc) == "AccessDenied"


def test_multipart_upload_keeps_its_acl(gateway: Any, s3: Any) -> None:
    bucket = new_bucket(s3, "memloc")
    upload = s3.create_multipart_upload(Bucket=bucket, Key="mp", ACL="public-read")
    part = s3.upload_part(Bucket=bucket, Key="mp", UploadId=upload["UploadId"], PartNumber=1,
                          Body=b"multi")
    s3.complete_multipart_upload(Bucket=bucket, Key="mp", UploadId=upload["UploadId"],
                                 MultipartUpload={"Parts": [{"PartNumber": 1,
                                                             "ETag": part["ETag"]}]})
    assert anon(gateway, "GET", f"/{bucket}/mp").content == b"multi"


@pytest.mark.parametrize("where", LOCATIONS)
def test_put_bucket_and_object_acl_with_xml_body(gateway: Any, s3: Any, s3_other: Any,
                                                 where: str) -> None:
    bucket = new_bucket(s3, where)
    s3.put_object(Bucket=bucket, Key="k", Body=b"data")
    policy = {"Owner": {"ID": OWNER1}, "Grants": [
        {"Grantee": {"Type": "CanonicalUser", "ID": OWNER1}, "Permission": "FULL_CONTROL"},
        {"Grantee": {"Type": "Group", "URI": ALL_USERS}, "Permission": "READ"},
        {"Grantee": {"Type": "AmazonCustomerByEmail",
                     "EmailAddress": "sampleaccount2@sampling.com"}, "Permission": "WRITE"}]}
    s3.put_bucket_acl(Bucket=bucket, AccessControlPolicy=policy)
    assert grants_of(s3.get_bucket_acl(Bucket=bucket)) == {
        (OWNER1, "FULL_CONTROL"), (ALL_USERS, "READ"), (OWNER2, "WRITE")}
    assert anon(gateway, "GET", f"/{bucket}?list-type=2").status_code == 200
    s3_other.put_object(Bucket=bucket, Key="by-other", Body=b"o")
    # The other account owns what it wrote.
    assert s3_other.get_object_acl(Bucket=bucket, Key="by-other")["Owner"]["ID"] == OWNER2
    s3.put_object_acl(Bucket=bucket, Key="k", AccessControlPolicy={
        "Owner": {"ID": OWNER1}, "Grants": [
            {"Grantee": {"Type": "Group", "URI": ALL_USERS}, "Permission": "READ"}]})
    assert anon(gateway, "GET", f"/{bucket}/k").content == b"data"
    # The object is unchanged by the ACL update.
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"data"
    # Canned header on PutObjectAcl.
    s3.put_object_acl(Bucket=bucket, Key="k", ACL="private")
    assert anon(gateway, "GET", f"/{bucket}/k").status_code == 403


def test_acl_errors(gateway: Any, s3: Any, s3_other: Any) -> None:
    bucket = new_bucket(s3, "file")
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    before = s3.get_bucket_acl(Bucket=bucket)["Grants"]
    with pytest.raises(ClientError) as exc:
        s3.put_bucket_acl(Bucket=bucket, ACL="not-a-canned-acl")  # type: ignore[arg-type]
    assert error_code(exc) == "InvalidArgument" and status(exc) == 400
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=bucket, Key="both", Body=b"x", ACL="public-read",
                      GrantRead=f'id="{OWNER2}"')
    assert error_code(exc) == "InvalidRequest"
    with pytest.raises(ClientError) as exc:
        s3.put_bucket_acl(Bucket=bucket, GrantRead="emailAddress=nobody@example.com")
    assert error_code(exc) == "UnresolvableGrantByEmailAddress"
    with pytest.raises(ClientError) as exc:
        s3.put_bucket_acl(Bucket=bucket, GrantRead='id="not-a-known-id"')
    assert error_code(exc) == "InvalidArgument"
    with pytest.raises(ClientError) as exc:
        s3.put_bucket_acl(Bucket=bucket, AccessControlPolicy={"Owner": {"ID": OWNER1}, "Grants": [
            {"Grantee": {"Type": "CanonicalUser", "ID": OWNER1}, "Permission": "EVERYTHING"}]})
    assert error_code(exc) == "MalformedACLError"
    with pytest.raises(ClientError) as exc:  # the owner in the document must be the owner
        s3.put_bucket_acl(Bucket=bucket, AccessControlPolicy={"Owner": {"ID": OWNER2}, "Grants": []})
    assert error_code(exc) == "AccessDenied"
    bad_xml = raw_request(gateway, "PUT", f"/{bucket}?acl", body=b"<AccessControlPolicy><Oops")
    assert bad_xml.status_code == 400 and b"MalformedXML" in bad_xml.content
    wrong_root = raw_request(gateway, "PUT", f"/{bucket}?acl", body=b"<Other/>")
    assert wrong_root.status_code == 400 and b"MalformedACLError" in wrong_root.content
    empty = raw_request(gateway, "PUT", f"/{bucket}?acl")
    assert empty.status_code == 400 and b"MalformedACLError" in empty.content
    with pytest.raises(ClientError) as exc:  # another account cannot change the ACL
        s3_other.put_bucket_acl(Bucket=bucket, ACL="public-read")
    assert error_code(exc) == "AccessDenied"
    with pytest.raises(ClientError) as exc:
        s3_other.get_bucket_acl(Bucket=bucket)
    assert error_code(exc) == "AccessDenied"
    with pytest.raises(ClientError) as exc:
        s3.get_object_acl(Bucket=bucket, Key="missing")
    assert error_code(exc) == "NoSuchKey"
    with pytest.raises(ClientError) as exc:
        s3.get_bucket_acl(Bucket="no-such-bucket-acl")
    assert error_code(exc) == "NoSuchBucket"
    # Nothing changed and nothing was written.
    assert s3.get_bucket_acl(Bucket=bucket)["Grants"] == before
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == ["k"]
