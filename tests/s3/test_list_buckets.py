"""ListBuckets pagination as AWS: max-buckets, continuation-token, prefix, bucket-region."""

from __future__ import annotations

import json
import os
import subprocess
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.gatewayproc import Gateway
from tests.s3.conftest import error_code, raw_request, status

# The second account owns these, so nothing else in this module changes its listing.
NAMES = [f"lb-{letter}-{n}" for letter in "abc" for n in range(3)]


@pytest.fixture(scope="module")
def listed(s3_other: Any) -> list[str]:
    for i, name in enumerate(NAMES):
        config = {"CreateBucketConfiguration": {"LocationConstraint": "us-east-2"}} \
            if i % 3 == 0 else {}
        s3_other.create_bucket(Bucket=name, **config)
    return NAMES


def test_without_parameters_every_bucket_and_no_token(s3_other: Any, listed: list[str]) -> None:
    answer = s3_other.list_buckets()
    assert [b["Name"] for b in answer["Buckets"]] == sorted(listed)
    assert "ContinuationToken" not in answer and "Prefix" not in answer
    regions = {b["Name"]: b["BucketRegion"] for b in answer["Buckets"]}
    assert regions["lb-a-0"] == "us-east-2" and regions["lb-a-1"] == "us-east-1"


def test_pages_with_max_buckets_and_token(s3_other: Any, listed: list[str]) -> None:
    seen: list[str] = []
    pages = 0
    kwargs: dict[str, Any] = {"MaxBuckets": 4}
    while True:
        answer = s3_other.list_buckets(**kwargs)
        pages += 1
        assert len(answer["Buckets"]) <= 4
        seen += [b["Name"] for b in answer["Buckets"]]
        if "ContinuationToken" not in answer:
            break
        kwargs["ContinuationToken"] = answer["ContinuationToken"]
    assert seen == sorted(listed) and pages == 3
    # The paginator boto3 ships follows the same tokens.
    paginator = s3_other.get_paginator("list_buckets")
    names = [b["Name"] for page in paginator.paginate(PaginationConfig={"PageSize": 2})
             for b in page["Buckets"]]
    assert names == sorted(listed)


def test_prefix_and_region_filters(s3_other: Any, listed: list[str]) -> None:
    answer = s3_other.list_buckets(Prefix="lb-b-")
    assert [b["Name"] for b in answer["Buckets"]] == ["lb-b-0", "lb-b-1", "lb-b-2"]
    assert answer["Prefix"] == "lb-b-"
    first = s3_other.list_buckets(Prefix="lb-b-", MaxBuckets=2)
    assert [b["Name"] for b in first["Buckets"]] == ["lb-b-0", "lb-b-1"]
    rest = s3_other.list_buckets(Prefix="lb-b-", MaxBuckets=2,
                                 ContinuationToken=first["ContinuationToken"])
    assert [b["Name"] for b in rest["Buckets"]] == ["lb-b-2"] and "ContinuationToken" not in rest
    east2 = s3_other.list_buckets(BucketRegion="us-east-2")
    assert [b["Name"] for b in east2["Buckets"]] == ["lb-a-0", "lb-b-0", "lb-c-0"]
    assert s3_other.list_buckets(Prefix="nothing-")["Buckets"] == []


@pytest.mark.parametrize("value", ["0", "10001", "-1", "ten", ""])
def test_max_buckets_out_of_range(gateway: Gateway, value: str) -> None:
    response = raw_request(gateway, "GET", f"/?max-buckets={value}")
    assert response.status_code == 400
    assert b"<Code>InvalidArgument</Code>" in response.content
    assert b"max-buckets" in response.content


def test_bad_continuation_token(s3_other: Any, listed: list[str]) -> None:
    with pytest.raises(ClientError) as exc:
        s3_other.list_buckets(ContinuationToken="%%%not-base64")
    assert error_code(exc) == "InvalidArgument" and status(exc) == 400


def test_aws_cli_lists_pages(gateway: Gateway, listed: list[str], tmp_path: Any) -> None:
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "accessKey2",
           "AWS_SECRET_ACCESS_KEY": "verySecretKey2", "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_CONFIG_FILE": str(tmp_path / "none"),
           "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none")}
    out = subprocess.run(["aws", "--endpoint-url", gateway.endpoint, "s3api", "list-buckets",
                          "--prefix", "lb-c-", "--max-items", "2", "--page-size", "1",
                          "--output", "json"],
                         env=env, capture_output=True, timeout=60, check=True)
    answer = json.loads(out.stdout)
    assert [b["Name"] for b in answer["Buckets"]] == ["lb-c-0", "lb-c-1"]
    assert answer.get("NextToken")  # the cli's own token over ours: more to come
