"""ListObjects v1 and v2: prefix, delimiter, markers, continuation, max-keys, url encoding."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.s3.conftest import error_code

KEYS = ["a/1", "a/2", "a/b/3", "b/1", "c", "d/x/y", "e%f", "photos/2024/jan.jpg",
        "photos/2024/feb.jpg", "photos/2025/mar.jpg", "z"]


@pytest.fixture(scope="module")
def listed_bucket(s3: Any) -> str:
    name = "listing-bucket"
    s3.create_bucket(Bucket=name)
    for key in KEYS:
        s3.put_object(Bucket=name, Key=key, Body=b"x")
    return name


def test_v2_all(s3: Any, listed_bucket: str) -> None:
    result = s3.list_objects_v2(Bucket=listed_bucket)
    assert [o["Key"] for o in result["Contents"]] == sorted(KEYS)
    assert result["KeyCount"] == len(KEYS) and not result["IsTruncated"]
    assert "Owner" not in result["Contents"][0]
    owned = s3.list_objects_v2(Bucket=listed_bucket, FetchOwner=True)
    assert owned["Contents"][0]["Owner"]["ID"]


def test_delimiter_and_prefix(s3: Any, listed_bucket: str) -> None:
    result = s3.list_objects_v2(Bucket=listed_bucket, Delimiter="/")
    assert [p["Prefix"] for p in result["CommonPrefixes"]] == ["a/", "b/", "d/", "photos/"]
    assert [o["Key"] for o in result["Contents"]] == ["c", "e%f", "z"]
    nested = s3.list_objects_v2(Bucket=listed_bucket, Delimiter="/", Prefix="photos/")
    assert [p["Prefix"] for p in nested["CommonPrefixes"]] == ["photos/2024/", "photos/2025/"]
    assert "Contents" not in nested
    under = s3.list_objects_v2(Bucket=listed_bucket, Prefix="a/")
    assert [o["Key"] for o in under["Contents"]] == ["a/1", "a/2", "a/b/3"]


def test_v2_pagination_counts_prefixes_once(s3: Any, listed_bucket: str) -> None:
    seen_keys: list[str] = []
    seen_prefixes: list[str] = []
    token = None
    pages = 0
    while True:
        kwargs: dict[str, Any] = {"Bucket": listed_bucket, "Delimiter": "/", "MaxKeys": 2}
        if token:
            kwargs["ContinuationToken"] = token
        page = s3.list_objects_v2(**kwargs)
        pages += 1
        seen_keys += [o["Key"] for o in page.get("Contents", [])]
        seen_prefixes += [p["Prefix"] for p in page.get("CommonPrefixes", [])]
        assert page["KeyCount"] <= 2
        if not page["IsTruncated"]:
            break
        token = page["NextContinuationToken"]
    assert seen_prefixes == ["a/", "b/", "d/", "photos/"]
    assert seen_keys == ["c", "e%f", "z"]
    assert pages == 4


def test_v1_markers(s3: Any, listed_bucket: str) -> None:
    page = s3.list_objects(Bucket=listed_bucket, MaxKeys=3)
    assert [o["Key"] for o in page["Contents"]] == ["a/1", "a/2", "a/b/3"]
    assert page["IsTruncated"]
    rest = s3.list_objects(Bucket=listed_bucket, Marker="a/b/3")
    assert [o["Key"] for o in rest["Contents"]] == sorted(KEYS)[3:]
    with_delim = s3.list_objects(Bucket=listed_bucket, Delimiter="/", MaxKeys=1)
    assert with_delim["NextMarker"] == "a/"
    after = s3.list_objects(Bucket=listed_bucket, Delimiter="/", Marker="a/", MaxKeys=1)
    assert [p["Prefix"] for p in after["CommonPrefixes"]] == ["b/"]


def test_start_after_and_max_keys(s3: Any, listed_bucket: str) -> None:
    result = s3.list_objects_v2(Bucket=listed_bucket, StartAfter="photos/")
    assert [o["Key"] for o in result["Contents"]] == [k for k in sorted(KEYS) if k > "photos/"]
    zero = s3.list_objects_v2(Bucket=listed_bucket, MaxKeys=0)
    assert zero["KeyCount"] == 0 and "Contents" not in zero
    big = s3.list_objects_v2(Bucket=listed_bucket, MaxKeys=5000)
    assert big["MaxKeys"] == 1000


def test_url_encoding(s3: Any, listed_bucket: str) -> None:
    # boto3 asks for encoding-type=url and decodes the answer itself.
    result = s3.list_objects_v2(Bucket=listed_bucket, Prefix="e")
    assert [o["Key"] for o in result["Contents"]] == ["e%f"]
    raw = s3.list_objects_v2(Bucket=listed_bucket, Prefix="e", EncodingType="url")
    assert raw["EncodingType"] == "url"


def test_bad_arguments(s3: Any, listed_bucket: str) -> None:
    with pytest.raises(ClientError) as exc:
        s3.list_objects_v2(Bucket=listed_bucket, ContinuationToken="!!notbase64!!")
    assert error_code(exc) == "InvalidArgument"


def test_many_keys_under_prefixes(s3: Any) -> None:
    name = "listing-many"
    s3.create_bucket(Bucket=name)
    for d in range(3):
        for i in range(40):
            s3.put_object(Bucket=name, Key=f"dir{d}/file{i:03d}", Body=b"")
    result = s3.list_objects_v2(Bucket=name, Delimiter="/", MaxKeys=2)
    assert [p["Prefix"] for p in result["CommonPrefixes"]] == ["dir0/", "dir1/"]
    assert result["IsTruncated"]
    page2 = s3.list_objects_v2(Bucket=name, Delimiter="/", MaxKeys=2,
                               ContinuationToken=result["NextContinuationToken"])
    assert [p["Prefix"] for p in page2["CommonPrefixes"]] == ["dir2/"]
    assert not page2["IsTruncated"]
