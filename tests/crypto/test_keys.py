"""Key management: the keyring file, wrapping, rotation, SSE-C keys; objects through the
Encryption service end to end (real AES, real files)."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import stat
from pathlib import Path

import pytest

from gateway.crypto.keys import (
    LocalKeyring,
    UnwrapError,
    blob_version,
    customer_key_hmac,
    customer_key_matches,
)
from gateway.crypto.sse import (
    SSE_C,
    SSE_KMS,
    SSE_S3,
    CustomerKey,
    Encryption,
    EncryptionRecord,
    SseRequest,
    response_headers,
    segment_from_stored,
)
from gateway.crypto.stream import CiphertextError, Segment, decrypt_segments
from gateway.errors import ConfigFileError, S3Error
from tests.crypto.helpers import collect, pieces, sliced


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_keyring_created_private_and_reloaded(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "keyring.json"
    old_umask = os.umask(0o022)  # a permissive umask must not leak into the keyring
    try:
        ring = LocalKeyring(path)
    finally:
        os.umask(old_umask)
    assert mode_of(path) == 0o600
    assert mode_of(path.parent) == 0o700
    assert [p.name for p in path.parent.iterdir()] == ["keyring.json"]  # no temp file left
    doc = json.loads(path.read_text())
    assert doc["default"] == ring.default_key_id
    assert len(base64.b64decode(doc["keys"][ring.default_key_id]["versions"][0])) == 32
    again = LocalKeyring(path)  # a restart reads the same keys, does not make new ones
    assert again.default_key_id == ring.default_key_id
    assert json.loads(path.read_text()) == doc


def test_keyring_readable_by_others_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "keyring.json"
    LocalKeyring(path)
    path.chmod(0o644)
    with pytest.raises(ConfigFileError) as caught:
        LocalKeyring(path)
    assert str(path) in str(caught.value) and "0644" in str(caught.value)
    path.chmod(0o600)
    path.write_text('{"format": 1, "default": "x", "keys": {"x": {"versions": ["AAAA"]}}}')
    with pytest.raises(ConfigFileError, match="32 bytes"):
        LocalKeyring(path)
    with pytest.raises(ConfigFileError, match="does not exist"):
        LocalKeyring(tmp_path / "missing.json", create=False)


async def test_wrap_binds_key_and_context(tmp_path: Path) -> None:
    ring = LocalKeyring(tmp_path / "k.json")
    data_key = os.urandom(32)
    ctx = {"aws:s3:arn": "arn:aws:s3:::b/k", "team": "a"}
    blob = await ring.wrap(ring.default_key_id, data_key, ctx)
    assert data_key not in blob
    assert await ring.unwrap(ring.default_key_id, blob, dict(reversed(ctx.items()))) == data_key
    with pytest.raises(UnwrapError):
        await ring.unwrap(ring.default_key_id, blob, {**ctx, "team": "b"})
    other = await ring.create_key("named-key")
    with pytest.raises(UnwrapError):
        await ring.unwrap(other, blob, ctx)
    damaged = bytearray(blob)
    damaged[-1] ^= 1
    with pytest.raises(UnwrapError):
        await ring.unwrap(ring.default_key_id, bytes(damaged), ctx)
    with pytest.raises(S3Error) as caught:
        await ring.wrap("no-such-key", data_key, ctx)
    assert (caught.value.code, caught.value.status) == ("KMS.NotFoundException", 400)
    assert ring.resolve("arn:aws:kms:us-east-1:000000000000:key/named-key") == "named-key"


async def test_rotation_keeps_old_versions(tmp_path: Path) -> None:
    path = tmp_path / "k.json"
    ring = LocalKeyring(path)
    stale = LocalKeyring(path)  # a second gateway that read the file before the rotation
    kid = ring.default_key_id
    data_key = os.urandom(32)
    old_blob = await ring.wrap(kid, data_key, {})
    assert await ring.rotate() == 2
    assert mode_of(path) == 0o600
    new_blob = await ring.wrap(kid, data_key, {})
    assert (blob_version(old_blob), blob_version(new_blob)) == (1, 2)
    assert await ring.unwrap(kid, old_blob, {}) == data_key
    assert await ring.unwrap(kid, new_blob, {}) == data_key
    assert await stale.unwrap(kid, new_blob, {}) == data_key  # re-reads the file
    assert await LocalKeyring(path).unwrap(kid, old_blob, {}) == data_key
    # A rotation by the stale instance keeps the version the other one added.
    assert await stale.rotate() == 3
    assert len(json.loads(path.read_text())["keys"][kid]["versions"]) == 3


def test_customer_key_hmac() -> None:
    key = os.urandom(32)
    salt, digest = customer_key_hmac(key)
    assert key not in salt + digest
    assert customer_key_matches(key, salt, digest)
    assert not customer_key_matches(os.urandom(32), salt, digest)
    assert customer_key_hmac(key)[1] != digest  # salted: the same key never looks the same


# --- objects through the Encryption service -----------------------------------------------

async def put(enc: Encryption, request: SseRequest, data: bytes, bucket: str = "b",
              key: str = "k", parts: int = 1) -> tuple[EncryptionRecord, list[bytes]]:
    """What a PUT (or a multipart upload of `parts` parts) leaves: the record, as it goes
    through JSON into metadata, and the stored pieces."""
    sealing = await enc.new_sealing(request, bucket, key)
    stored_parts = []
    size = -(-len(data) // parts)
    for start in range(0, max(len(data), 1), max(size, 1)):
        sealed, params = sealing.new_segment()
        stored = await collect(sealed.encrypt(pieces(data[start:start + size])))
        sealing.record.segments.append(segment_from_stored(params, len(stored)))
        stored_parts.append(stored)
    text = json.dumps(sealing.record.to_dict())
    return EncryptionRecord.from_dict(json.loads(text)), stored_parts


async def get(enc: Encryption, record: EncryptionRecord, stored_parts: list[bytes],
              offset: int, length: int, customer: CustomerKey | None = None,
              bucket: str = "b", key: str = "k") -> bytes:
    data_key = await enc.data_key(record, bucket, key, customer)

    async def fetch(item):
        return sliced(stored_parts[item.index], item.read.cipher_offset, item.read.cipher_length)

    return await collect(decrypt_segments(data_key, record.layout(), offset, length, fetch))


async def test_sse_s3_objects_survive_rotation(tmp_path: Path) -> None:
    ring = LocalKeyring(tmp_path / "k.json")
    enc = Encryption(ring)
    data = os.urandom(300_000)
    record, stored = await put(enc, SseRequest(SSE_S3), data)
    assert record.plain_size == len(data) and record.key_id == ring.default_key_id
    await ring.rotate()
    newer, newer_stored = await put(enc, SseRequest(SSE_S3), data, key="k2")
    assert blob_version(newer.wrapped_key) == 2
    restarted = Encryption(LocalKeyring(tmp_path / "k.json"))
    assert await get(restarted, record, stored, 0, len(data)) == data
    assert await get(restarted, newer, newer_stored, 5, 70_000, key="k2") == data[5:70_005]
    assert response_headers(record) == {"x-amz-server-side-encryption": "AES256"}
    # The record belongs to its object: pasted onto another key, it does not open.
    with pytest.raises(UnwrapError):
        await get(restarted, record, stored, 0, 1, key="other")


async def test_sse_kms_named_key_context_and_multipart(tmp_path: Path) -> None:
    ring = LocalKeyring(tmp_path / "k.json")
    kid = await ring.create_key()
    enc = Encryption(ring)
    data = os.urandom(400_000)
    request = SseRequest(SSE_KMS, f"arn:aws:kms:us-east-1:000000000000:key/{kid}",
                         {"project": "x"}, bucket_key=True)
    record, stored = await put(enc, request, data, parts=3)
    assert len(record.segments) == 3 and record.key_id == kid
    assert await get(enc, record, stored, 133_000, 200_000) == data[133_000:333_000]
    assert response_headers(record) == {
        "x-amz-server-side-encryption": "aws:kms",
        "x-amz-server-side-encryption-aws-kms-key-id":
            f"arn:aws:kms:us-east-1:123456789012:key/{kid}",
        "x-amz-server-side-encryption-bucket-key-enabled": "true"}
    with pytest.raises(S3Error) as caught:
        await enc.new_sealing(SseRequest(SSE_KMS, "missing"), "b", "k")
    assert caught.value.code == "KMS.NotFoundException"


async def test_sse_c_key_checked_never_stored(tmp_path: Path) -> None:
    enc = Encryption(LocalKeyring(tmp_path / "k.json"))
    customer = CustomerKey.from_bytes(os.urandom(32))
    data = os.urandom(100_000)
    record, stored = await put(enc, SseRequest(SSE_C, customer=customer), data)
    text = json.dumps(record.to_dict())
    assert base64.b64encode(customer.key).decode() not in text
    assert customer.md5 not in text
    assert base64.b64encode(hashlib.md5(customer.key).digest()).decode() == customer.md5
    assert await get(enc, record, stored, 10, 99_000, customer) == data[10:99_010]
    with pytest.raises(S3Error) as caught:
        await get(enc, record, stored, 0, 10, CustomerKey.from_bytes(os.urandom(32)))
    assert (caught.value.code, caught.value.status) == ("AccessDenied", 403)
    with pytest.raises(S3Error) as caught:
        await get(enc, record, stored, 0, 10, None)
    assert (caught.value.code, caught.value.status) == ("InvalidRequest", 400)
    assert response_headers(record, customer) == {
        "x-amz-server-side-encryption-customer-algorithm": "AES256",
        "x-amz-server-side-encryption-customer-key-MD5": customer.md5}
    plain, plain_stored = await put(enc, SseRequest(SSE_S3), data, key="p")
    with pytest.raises(S3Error, match="not applicable"):
        await get(enc, plain, plain_stored, 0, 1, customer, key="p")


async def test_copy_between_modes_rewraps_without_reencrypting(tmp_path: Path) -> None:
    ring = LocalKeyring(tmp_path / "k.json")
    enc = Encryption(ring)
    customer = CustomerKey.from_bytes(os.urandom(32))
    data = os.urandom(150_000)
    record, stored = await put(enc, SseRequest(SSE_C, customer=customer), data)
    data_key = await enc.data_key(record, "b", "k", customer)
    # SSE-C -> SSE-S3 under a new name: the same stored bytes, a new wrapping.
    copied = await enc.rewrap(record, data_key, SseRequest(SSE_S3), "b2", "copy")
    assert copied.mode == SSE_S3 and copied.customer_hmac is None
    assert await get(enc, copied, stored, 0, len(data), bucket="b2", key="copy") == data
    # Key rotation by self-copy: the copy is wrapped by the new current version.
    await ring.rotate()
    rotated = await enc.rewrap(copied, data_key, SseRequest(SSE_S3), "b2", "copy")
    assert blob_version(rotated.wrapped_key) == 2
    assert await get(enc, rotated, stored, 1, 10, bucket="b2", key="copy") == data[1:11]


async def test_record_and_stored_sizes_must_agree(tmp_path: Path) -> None:
    enc = Encryption(LocalKeyring(tmp_path / "k.json"))
    record, stored = await put(enc, SseRequest(SSE_S3), os.urandom(70_000))
    with pytest.raises(CiphertextError):  # a piece whose stored size is no stream's size
        segment_from_stored(record.segments[0].params, 32 + (64 * 1024 + 16) + 5)
    assert segment_from_stored(record.segments[0].params, len(stored[0])).plain_size == 70_000
    lying = EncryptionRecord.from_dict(record.to_dict())
    lying.segments = [Segment(lying.segments[0].params, 69_999)]
    with pytest.raises(CiphertextError):
        await get(enc, lying, stored, 0, 69_999)
