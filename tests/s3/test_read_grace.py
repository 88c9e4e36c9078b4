"""storage.readGraceSeconds: replaced bytes outlive their record long enough for a GET that
read the old record to stream every piece of it, and are collected after."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.gatewayproc import Gateway, eventually, start_gateway

MIB = 1024 * 1024
GRACE = 3.0


@pytest.fixture(scope="module")
def graced(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    workdir: Path = tmp_path_factory.mktemp("grace")
    config = {"storage": {"collectInterval": 0.2, "readGraceSeconds": GRACE}}
    with start_gateway(workdir, config=config) as gw:
        yield gw


def test_a_read_in_progress_survives_an_overwrite(graced: Gateway) -> None:
    s3: Any = graced.client()
    s3.create_bucket(Bucket="grace")
    # Two pieces on the file location: the second is opened only once the first is sent.
    first, second = b"a" * (24 * MIB), b"b" * MIB
    upload = s3.create_multipart_upload(Bucket="grace", Key="k")["UploadId"]
    etags = [s3.upload_part(Bucket="grace", Key="k", UploadId=upload, PartNumber=n,
                            Body=body)["ETag"] for n, body in ((1, first), (2, second))]
    s3.complete_multipart_upload(Bucket="grace", Key="k", UploadId=upload, MultipartUpload={
        "Parts": [{"PartNumber": n, "ETag": e} for n, e in zip((1, 2), etags, strict=True)]})
    graced.settle()
    before = len(graced.data_files())

    body = s3.get_object(Bucket="grace", Key="k")["Body"]
    got = hashlib.md5(body.read(MIB))
    s3.put_object(Bucket="grace", Key="k", Body=b"new")  # the read's record is replaced
    time.sleep(1.0)  # several collector rounds (collectInterval 0.2 s) pass meanwhile
    assert len(graced.data_files()) == before + 1  # the old pieces are still there
    for chunk in iter(lambda: body.read(MIB), b""):
        got.update(chunk)
    assert got.hexdigest() == hashlib.md5(first + second).hexdigest()
    # ...and go once the grace is over.
    eventually(lambda: len(graced.data_files()) == 1, timeout=GRACE + 10)
    assert s3.get_object(Bucket="grace", Key="k")["Body"].read() == b"new"
