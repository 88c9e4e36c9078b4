"""relocate's check that the bytes it moved are the object: a multipart ETag is recomputed
from the recorded part sizes however the stream is chunked, so a one-piece cloud object is
checked as strictly as one whose parts are pieces."""

from __future__ import annotations

import hashlib
import os

import pytest

from gateway.objects.relocate import _Digests


def composite(parts: list[bytes]) -> str:
    digest = hashlib.md5(b"".join(hashlib.md5(p).digest() for p in parts)).hexdigest()
    return f"{digest}-{len(parts)}"


@pytest.mark.parametrize("chunk", [1, 7, 4096, 10**6])
def test_multipart_etag_from_part_sizes_whatever_the_chunking(chunk: int) -> None:
    parts = [os.urandom(5000), os.urandom(5003), b"tail"]
    data = b"".join(parts)
    digests = _Digests(part_sizes=[len(p) for p in parts])
    for start in range(0, len(data), chunk):
        digests.add(data[start:start + chunk])
    assert digests.size == len(data) and digests.multipart_etag() == composite(parts)


def test_a_changed_byte_changes_the_multipart_etag() -> None:
    parts = [os.urandom(5000), os.urandom(300)]
    data = bytearray(b"".join(parts))
    data[4999] ^= 1
    digests = _Digests(part_sizes=[len(p) for p in parts])
    digests.add(bytes(data))
    assert digests.multipart_etag() != composite(parts)
