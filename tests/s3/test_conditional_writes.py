"""Conditional writes: If-None-Match: * and If-Match on PutObject and CompleteMultipartUpload,
If-Match on DeleteObject; the check and the commit are one metadata step."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.s3.conftest import error_code, status

MIB = 1024 * 1024


def test_if_none_match_star(s3: Any, bucket: str) -> None:
    first = s3.put_object(Bucket=bucket, Key="k", Body=b"first", IfNoneMatch="*")
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=bucket, Key="k", Body=b"second", IfNoneMatch="*")
    assert (status(exc), error_code(exc)) == (412, "PreconditionFailed")
    got = s3.get_object(Bucket=bucket, Key="k")
    assert got["Body"].read() == b"first" and got["ETag"] == first["ETag"]


def test_if_match(s3: Any, bucket: str) -> None:
    with pytest.raises(ClientError) as exc:  # nothing to match
        s3.put_object(Bucket=bucket, Key="k", Body=b"x", IfMatch='"0123"')
    assert (status(exc), error_code(exc)) == (404, "NoSuchKey")
    etag = s3.put_object(Bucket=bucket, Key="k", Body=b"v1")["ETag"]
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=bucket, Key="k", Body=b"stale", IfMatch='"ffffffffffffffffffffffffffffffff"')
    assert (status(exc), error_code(exc)) == (412, "PreconditionFailed")
    s3.put_object(Bucket=bucket, Key="k", Body=b"v2", IfMatch=etag)
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"v2"


def test_if_none_match_race_has_one_winner(s3: Any, bucket: str) -> None:
    """Many writers create one key at once with If-None-Match: *: exactly one is acknowledged,
    the others get 412 (seen before writing) or 409 (lost at the commit), and the object holds
    the winner's bytes. 15 trials of 8 writers."""
    for trial in range(15):
        key = f"race-{trial}"

        def create(writer: int, key: str = key, trial: int = trial) -> tuple[int, bytes]:
            body = f"writer {writer} trial {trial}".encode() * 100
            try:
                s3.put_object(Bucket=bucket, Key=key, Body=body, IfNoneMatch="*")
                return 200, body
            except ClientError as exc:
                code = exc.response["Error"]["Code"]
                assert code in ("PreconditionFailed", "ConditionalRequestConflict")
                return exc.response["ResponseMetadata"]["HTTPStatusCode"], body

        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(create, range(8)))
        winners = [body for code, body in results if code == 200]
        assert len(winners) == 1, results
        assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == winners[0]


def test_delete_if_match(s3: Any, bucket: str) -> None:
    etag = s3.put_object(Bucket=bucket, Key="k", Body=b"keep me")["ETag"]
    with pytest.raises(ClientError) as exc:
        s3.delete_object(Bucket=bucket, Key="k", IfMatch='"ffffffffffffffffffffffffffffffff"')
    assert (status(exc), error_code(exc)) == (412, "PreconditionFailed")
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"keep me"
    s3.delete_object(Bucket=bucket, Key="k", IfMatch=etag)
    with pytest.raises(ClientError) as exc:
        s3.head_object(Bucket=bucket, Key="k")
    assert status(exc) == 404


def test_complete_if_none_match(s3: Any, bucket: str) -> None:
    upload = s3.create_multipart_upload(Bucket=bucket, Key="mp")["UploadId"]
    part = s3.upload_part(Bucket=bucket, Key="mp", UploadId=upload, PartNumber=1,
                          Body=b"p" * 10)["ETag"]
    parts = {"Parts": [{"PartNumber": 1, "ETag": part}]}
    s3.put_object(Bucket=bucket, Key="mp", Body=b"already here")
    with pytest.raises(ClientError) as exc:
        s3.complete_multipart_upload(Bucket=bucket, Key="mp", UploadId=upload,
                                     MultipartUpload=parts, IfNoneMatch="*")
    assert (status(exc), error_code(exc)) == (412, "PreconditionFailed")
    assert s3.get_object(Bucket=bucket, Key="mp")["Body"].read() == b"already here"
    # The refused completion changed nothing: the upload is still there and completes.
    s3.complete_multipart_upload(Bucket=bucket, Key="mp", UploadId=upload, MultipartUpload=parts)
    assert s3.get_object(Bucket=bucket, Key="mp")["Body"].read() == b"p" * 10


def test_if_none_match_other_than_star_is_not_implemented(s3: Any, bucket: str) -> None:
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=bucket, Key="k", Body=b"x", IfNoneMatch='"abc"')
    assert status(exc) == 501
