"""Bucket versioning on the file and mem locations: versions, delete markers, null versions."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.s3.conftest import error_code, status


@pytest.fixture(params=["us-east-1", "memloc"])
def vbucket(s3: Any, request: pytest.FixtureRequest) -> str:
    name = f"ver-{uuid.uuid4().hex[:12]}"
    config = {} if request.param == "us-east-1" else {
        "CreateBucketConfiguration": {"LocationConstraint": request.param}}
    s3.create_bucket(Bucket=name, **config)
    s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    return name


def test_get_put_versioning(s3: Any, bucket: str) -> None:
    assert "Status" not in s3.get_bucket_versioning(Bucket=bucket)
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Suspended"})
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Suspended"


def test_malformed_versioning(gateway: Any, bucket: str) -> None:
    from tests.s3.conftest import raw_request

    bad = raw_request(gateway, "PUT", f"/{bucket}?versioning",
                      body=b"<VersioningConfiguration><Status>On</Status></VersioningConfiguration>")
    assert bad.status_code == 400 and b"MalformedXML" in bad.content


def test_versions_kept_and_readable(s3: Any, vbucket: str) -> None:
    v1 = s3.put_object(Bucket=vbucket, Key="doc", Body=b"one")["VersionId"]
    v2 = s3.put_object(Bucket=vbucket, Key="doc", Body=b"two")["VersionId"]
    assert v1 != v2 and v1 != "null"
    assert s3.get_object(Bucket=vbucket, Key="doc")["Body"].read() == b"two"
    old = s3.get_object(Bucket=vbucket, Key="doc", VersionId=v1)
    assert old["Body"].read() == b"one" and old["VersionId"] == v1
    assert s3.head_object(Bucket=vbucket, Key="doc", VersionId=v2)["ContentLength"] == 3
    listing = s3.list_object_versions(Bucket=vbucket)
    assert [(v["VersionId"], v["IsLatest"]) for v in listing["Versions"]] == [(v2, True), (v1, False)]
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=vbucket, Key="doc", VersionId="0" * 32)
    assert error_code(exc) == "NoSuchVersion"


def test_delete_marker_and_undelete(s3: Any, vbucket: str) -> None:
    v1 = s3.put_object(Bucket=vbucket, Key="k", Body=b"data")["VersionId"]
    deleted = s3.delete_object(Bucket=vbucket, Key="k")
    assert deleted["DeleteMarker"] is True
    marker = deleted["VersionId"]
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=vbucket, Key="k")
    assert error_code(exc) == "NoSuchKey"
    assert exc.value.response["ResponseMetadata"]["HTTPHeaders"]["x-amz-delete-marker"] == "true"
    with pytest.raises(ClientError) as exc:
        s3.head_object(Bucket=vbucket, Key="k", VersionId=marker)
    assert status(exc) == 405
    assert "Contents" not in s3.list_objects_v2(Bucket=vbucket)
    listing = s3.list_object_versions(Bucket=vbucket)
    assert [m["VersionId"] for m in listing["DeleteMarkers"]] == [marker]
    assert listing["DeleteMarkers"][0]["IsLatest"] is True
    assert s3.get_object(Bucket=vbucket, Key="k", VersionId=v1)["Body"].read() == b"data"
    # Deleting the marker brings the object back.
    s3.delete_object(Bucket=vbucket, Key="k", VersionId=marker)
    assert s3.get_object(Bucket=vbucket, Key="k")["Body"].read() == b"data"


def test_delete_version_removes_its_bytes(gateway: Any, s3: Any, bucket: str) -> None:
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    def count() -> int:  # bytes are removed by the background collector: wait for it
        gateway.settle()
        return len(gateway.data_files())

    before = count()
    v1 = s3.put_object(Bucket=bucket, Key="k", Body=b"1")["VersionId"]
    v2 = s3.put_object(Bucket=bucket, Key="k", Body=b"2")["VersionId"]
    assert count() == before + 2
    s3.delete_object(Bucket=bucket, Key="k", VersionId=v2)
    assert count() == before + 1
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"1"  # v1 is current again
    s3.delete_object(Bucket=bucket, Key="k", VersionId=v1)
    assert count() == before
    assert "Versions" not in s3.list_object_versions(Bucket=bucket)


def test_suspended_writes_null_versions(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"before")  # pre-versioning: the null version
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    v1 = s3.put_object(Bucket=bucket, Key="k", Body=b"enabled")["VersionId"]
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Suspended"})
    put = s3.put_object(Bucket=bucket, Key="k", Body=b"suspended")
    assert put["VersionId"] == "null"
    versions = s3.list_object_versions(Bucket=bucket)["Versions"]
    # The suspended write replaced the old null version; the enabled one stays.
    assert [v["VersionId"] for v in versions] == ["null", v1]
    assert s3.get_object(Bucket=bucket, Key="k", VersionId="null")["Body"].read() == b"suspended"
    marker = s3.delete_object(Bucket=bucket, Key="k")
    assert marker["DeleteMarker"] is True and marker["VersionId"] == "null"
    listing = s3.list_object_versions(Bucket=bucket)
    assert [v["VersionId"] for v in listing["Versions"]] == [v1]
    assert [m["VersionId"] for m in listing["DeleteMarkers"]] == ["null"]


def test_list_versions_pagination_and_prefixes(s3: Any, vbucket: str) -> None:
    ids = {key: [s3.put_object(Bucket=vbucket, Key=key, Body=b"x")["VersionId"] for _ in range(3)]
           for key in ("a", "b/1", "b/2", "c")}
    seen: list[tuple[str, str]] = []
    kwargs: dict[str, Any] = {"Bucket": vbucket, "MaxKeys": 2}
    while True:
        page = s3.list_object_versions(**kwargs)
        seen += [(v["Key"], v["VersionId"]) for v in page.get("Versions", [])]
        if not page["IsTruncated"]:
            break
        kwargs["KeyMarker"] = page["NextKeyMarker"]
        kwargs["VersionIdMarker"] = page["NextVersionIdMarker"]
    assert seen == [(k, v) for k in ("a", "b/1", "b/2", "c") for v in reversed(ids[k])]
    grouped = s3.list_object_versions(Bucket=vbucket, Delimiter="/")
    assert [p["Prefix"] for p in grouped["CommonPrefixes"]] == ["b/"]
    assert {v["Key"] for v in grouped["Versions"]} == {"a", "c"}
    only_b = s3.list_object_versions(Bucket=vbucket, Prefix="b/2")
    assert [v["VersionId"] for v in only_b["Versions"]] == list(reversed(ids["b/2"]))


def test_copy_tagging_and_batch_delete_by_version(s3: Any, vbucket: str) -> None:
    v1 = s3.put_object(Bucket=vbucket, Key="src", Body=b"first")["VersionId"]
    s3.put_object(Bucket=vbucket, Key="src", Body=b"second")
    copied = s3.copy_object(Bucket=vbucket, Key="dst",
                            CopySource={"Bucket": vbucket, "Key": "src", "VersionId": v1})
    assert copied["CopySourceVersionId"] == v1 and copied["VersionId"] not in (None, "null")
    assert s3.get_object(Bucket=vbucket, Key="dst")["Body"].read() == b"first"
    s3.put_object_tagging(Bucket=vbucket, Key="src", VersionId=v1,
                          Tagging={"TagSet": [{"Key": "old", "Value": "yes"}]})
    assert s3.get_object_tagging(Bucket=vbucket, Key="src", VersionId=v1)["TagSet"] == [
        {"Key": "old", "Value": "yes"}]
    assert s3.get_object_tagging(Bucket=vbucket, Key="src")["TagSet"] == []
    result = s3.delete_objects(Bucket=vbucket, Delete={"Objects": [
        {"Key": "src", "VersionId": v1}, {"Key": "dst"}]})
    by_key = {d["Key"]: d for d in result["Deleted"]}
    assert by_key["src"]["VersionId"] == v1
    assert by_key["dst"]["DeleteMarker"] is True
    assert [v["VersionId"] for v in s3.list_object_versions(Bucket=vbucket, Prefix="src")
            ["Versions"]] != [v1]


def test_versioned_multipart(s3: Any, vbucket: str) -> None:
    upload = s3.create_multipart_upload(Bucket=vbucket, Key="mp")["UploadId"]
    etag = s3.upload_part(Bucket=vbucket, Key="mp", UploadId=upload, PartNumber=1,
                          Body=b"part")["ETag"]
    done = s3.complete_multipart_upload(Bucket=vbucket, Key="mp", UploadId=upload,
                                        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]})
    assert done["VersionId"] not in (None, "null")
    assert s3.get_object(Bucket=vbucket, Key="mp", VersionId=done["VersionId"])["Body"].read() == b"part"


def test_bucket_with_versions_is_not_empty(s3: Any, vbucket: str) -> None:
    s3.put_object(Bucket=vbucket, Key="k", Body=b"x")
    s3.delete_object(Bucket=vbucket, Key="k")
    with pytest.raises(ClientError) as exc:
        s3.delete_bucket(Bucket=vbucket)
    assert error_code(exc) == "BucketNotEmpty"


def test_object_acl_by_version(s3: Any, vbucket: str) -> None:
    v1 = s3.put_object(Bucket=vbucket, Key="acl", Body=b"one")["VersionId"]
    s3.put_object(Bucket=vbucket, Key="acl", Body=b"two")
    s3.put_object_acl(Bucket=vbucket, Key="acl", VersionId=v1, ACL="public-read")
    old = s3.get_object_acl(Bucket=vbucket, Key="acl", VersionId=v1)["Grants"]
    current = s3.get_object_acl(Bucket=vbucket, Key="acl")["Grants"]
    public = "http://acs.amazonaws.com/groups/global/AllUsers"
    assert any(g["Grantee"].get("URI") == public for g in old)
    assert not any(g["Grantee"].get("URI") == public for g in current)
