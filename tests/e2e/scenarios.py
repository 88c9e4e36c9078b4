"""The end-to-end scenarios every cloud's gateway test runs, as plain functions.

Each takes a boto3 client on the gateway, bucket names, and small per-cloud callables that look
at the backend natively (or stop it); the cloud's own test file keeps its fixtures and its
cloud-specific checks, and passes them in.
"""

from __future__ import annotations

import hashlib
import random
import re
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import pytest
from botocore.exceptions import ClientError

MiB = 1024 * 1024


def new_bucket(s3: Any, location: str, prefix: str = "gw") -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": location})
    return name



class Buckets:
    """S3 buckets for the tests of one gateway: a new one per call, except on a bucketMatch
    location, which holds a single S3 bucket (its objects sit under their bare keys, so the
    gateway refuses a second bucket there): its tests share that bucket, each with keys of
    its own."""

    def __init__(self, s3: Any, prefix: str, bucket_match: Iterable[str]) -> None:
        self.s3 = s3
        self.prefix = prefix
        self.bucket_match = set(bucket_match)
        self.shared: dict[str, str] = {}

    def __call__(self, location: str) -> str:
        if location not in self.bucket_match:
            return new_bucket(self.s3, location, self.prefix)
        if location not in self.shared:
            self.shared[location] = new_bucket(self.s3, location, self.prefix)
        return self.shared[location]

def backend_name(bucket: str, key: str, bucket_match: bool) -> str:
    """The natural name of an object on the cloud: `<key>` with bucketMatch, else
    `<bucket>/<key>`. Every write stores at this name plus `~<token>` (a key of its own, so no
    write ever overwrites bytes another record references): look natively with
    `native_names(listed, ...)`."""
    return key if bucket_match else f"{bucket}/{key}"


NATIVE_SUFFIX = re.compile(r"~[0-9a-f]{24}$")


def native_names(names: Iterable[str], bucket: str, key: str, bucket_match: bool) -> list[str]:
    """The backend names, among `names` (a native listing), that hold writes of this S3 key."""
    natural = backend_name(bucket, key, bucket_match)
    return [n for n in names if n.startswith(natural + "~") and NATIVE_SUFFIX.search(n)
            and len(n) == len(natural) + 25]


def error_code(exc: pytest.ExceptionInfo[ClientError]) -> str:
    return exc.value.response["Error"]["Code"]


def part_bytes(number: int, size: int) -> bytes:
    """Part `number` of a multipart upload: different for every part, so a misplaced one shows."""
    return random.Random(number).randbytes(size)


def skip_if_not_implemented(call: Callable[[], Any], what: str) -> Any:
    """Run `call`; skip (not fail) while the core answers NotImplemented for it."""
    try:
        return call()
    except ClientError as exc:
        if exc.response["Error"]["Code"] == "NotImplemented":
            pytest.skip(f"the core gateway does not implement {what} yet")
        raise


def object_round_trip(s3: Any, bucket: str, key: str, data: bytes, *,
                      metadata: Mapping[str, str], content_type: str, tagging: str,
                      byte_range: tuple[int, int], check_native: Callable[[], None],
                      native_gone: Callable[[], bool],
                      check_overwrite: Callable[[bytes], None] | None = None,
                      **put_extra: Any) -> None:
    """PUT with metadata and tags, GET whole and ranged, HEAD, look natively, optionally
    overwrite in place, DELETE (twice: idempotent), and see it gone on both sides."""
    etag = f'"{hashlib.md5(data).hexdigest()}"'
    put = s3.put_object(Bucket=bucket, Key=key, Body=data, ContentType=content_type,
                        Metadata=dict(metadata), Tagging=tagging, **put_extra)
    assert put["ETag"] == etag

    got = s3.get_object(Bucket=bucket, Key=key)
    assert got["Body"].read() == data and got["ETag"] == etag
    assert got["Metadata"] == metadata and got["ContentType"] == content_type
    first, last = byte_range
    ranged = s3.get_object(Bucket=bucket, Key=key, Range=f"bytes={first}-{last}")
    assert ranged["Body"].read() == data[first:last + 1]
    assert ranged["ContentRange"] == f"bytes {first}-{last}/{len(data)}"
    head = s3.head_object(Bucket=bucket, Key=key)
    assert head["ContentLength"] == len(data) and head["ETag"] == etag

    check_native()

    if check_overwrite is not None:  # overwrite in place
        second = b"second version"
        s3.put_object(Bucket=bucket, Key=key, Body=second)
        assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == second
        check_overwrite(second)

    s3.delete_object(Bucket=bucket, Key=key)
    s3.delete_object(Bucket=bucket, Key=key)  # idempotent
    with pytest.raises(ClientError) as caught:
        s3.get_object(Bucket=bucket, Key=key)
    assert error_code(caught) == "NoSuchKey"
    assert native_gone()


def multipart_upload(s3: Any, bucket: str, key: str, *, part_size: int, count: int,
                     boundary: int = 1, margin: int = 10,
                     before_parts: Callable[[str], None] | None = None,
                     before_complete: Callable[[str], None] | None = None,
                     **create_args: Any) -> None:
    """A multipart upload of `count` parts of `part_size` (one part in memory at a time), read
    back whole and with a range `margin` bytes either side of the end of part `boundary`."""
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key=key, **create_args)["UploadId"]
    if before_parts is not None:
        before_parts(upload_id)
    started = time.monotonic()
    parts = []
    whole = hashlib.md5()
    for number in range(1, count + 1):
        chunk = part_bytes(number, part_size)
        whole.update(chunk)
        etag = s3.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number,
                              Body=chunk)["ETag"]
        parts.append({"PartNumber": number, "ETag": etag})
        del chunk
    if before_complete is not None:
        before_complete(upload_id)
    done = s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id,
                                        MultipartUpload={"Parts": parts})
    upload_seconds = time.monotonic() - started
    assert done["ETag"].strip('"').endswith(f"-{count}")

    started = time.monotonic()
    body = s3.get_object(Bucket=bucket, Key=key)["Body"]
    digest, size = hashlib.md5(), 0
    for piece in body.iter_chunks(MiB):
        digest.update(piece)
        size += len(piece)
    download_seconds = time.monotonic() - started
    assert (digest.hexdigest(), size) == (whole.hexdigest(), count * part_size)
    end = boundary * part_size
    across = s3.get_object(Bucket=bucket, Key=key, Range=f"bytes={end - margin}-{end + margin - 1}")
    assert across["Body"].read() == (part_bytes(boundary, part_size)[-margin:]
                                     + part_bytes(boundary + 1, part_size)[:margin])
    print(f"{count * part_size // MiB} MiB through the gateway: multipart upload "
          f"{upload_seconds:.2f}s, download {download_seconds:.2f}s")


def reupload_and_complete(s3: Any, bucket: str, key: str, *, unlisted_part: bool) -> None:
    """Part 1 uploaded twice (the second wins), optionally a part 2 left out of the listing,
    then a short last part; the object is 5 MiB of b"b" and b"tail"."""
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    s3.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=1, Body=b"a" * 5 * MiB)
    first = s3.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=1,
                           Body=b"b" * 5 * MiB)["ETag"]  # re-uploaded
    last_number = 2
    if unlisted_part:
        s3.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=2, Body=b"unlisted")
        last_number = 3
    last = s3.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=last_number,
                          Body=b"tail")["ETag"]
    s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={
        "Parts": [{"PartNumber": 1, "ETag": first}, {"PartNumber": last_number, "ETag": last}]})
    ranged = s3.get_object(Bucket=bucket, Key=key, Range=f"bytes={5 * MiB - 2}-{5 * MiB + 1}")
    assert ranged["Body"].read() == b"bbta"


def abort_upload(s3: Any, bucket: str, key: str, staged: Callable[[], int]) -> None:
    """A one-part upload, aborted: `staged()` (what the cloud holds for open uploads) grows by
    the part and shrinks back, and the upload is gone."""
    before = staged()
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    s3.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=1, Body=b"x")
    assert staged() == before + 1
    s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
    assert staged() == before
    with pytest.raises(ClientError) as caught:
        s3.list_parts(Bucket=bucket, Key=key, UploadId=upload_id)
    assert error_code(caught) == "NoSuchUpload"


def copy_object(s3: Any, bucket: str, data: bytes, metadata: Mapping[str, str],
                replace: Mapping[str, str] | None = None) -> None:
    """PUT `src`, CopyObject to `dst` (with `replace` as new metadata, else the source's), and
    read `dst` back."""
    s3.put_object(Bucket=bucket, Key="src", Body=data, Metadata=dict(metadata))
    extra: dict[str, Any] = {}
    if replace is not None:
        extra = {"MetadataDirective": "REPLACE", "Metadata": dict(replace)}
    skip_if_not_implemented(lambda: s3.copy_object(
        Bucket=bucket, Key="dst", CopySource={"Bucket": bucket, "Key": "src"}, **extra),
        "CopyObject")
    got = s3.get_object(Bucket=bucket, Key="dst")
    assert got["Body"].read() == data
    assert got["Metadata"] == (metadata if replace is None else replace)


def stopped_is_503(s3: Any, bucket: str, location: str, stop: Callable[[], object],
                   within: float | None = None) -> None:
    """With an object written, the cloud stops: GET and PUT answer 503 ServiceUnavailable
    naming the location (within `within` seconds, when given: no long retries)."""
    s3.put_object(Bucket=bucket, Key="k", Body=b"before")
    stop()
    started = time.monotonic()
    for call in (lambda: s3.get_object(Bucket=bucket, Key="k"),
                 lambda: s3.put_object(Bucket=bucket, Key="k2", Body=b"after")):
        with pytest.raises(ClientError) as caught:
            call()
        assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
        assert error_code(caught) == "ServiceUnavailable"
        assert location in caught.value.response["Error"]["Message"]
    if within is not None:
        assert time.monotonic() - started < within
