"""What the object engine calls for encrypted objects (the glue to gateway/objects/engine.py).

ObjectRecord.attrs["sse"] holds the object's EncryptionRecord (gateway/crypto/sse.py): its
presence is what makes a record encrypted. The record's size, ETag and checksum stay the
plaintext's; its pieces hold ciphertext (Stored.size is the stored, ciphertext size).

Wired so far: SSE-S3 (x-amz-server-side-encryption: AES256), SSE-KMS (aws:kms, with key id,
encryption context, bucket-key flag) and SSE-C (the customer key checked against its salted
HMAC, never stored) on PutObject, CopyObject (between any modes, source SSE-C key included),
GetObject (ranges and partNumber 1 included) and HeadObject, on every location type.
Multipart uploads: CreateMultipartUpload wraps one data key for the upload, every UploadPart
is sealed as a stream of its own, CompleteMultipartUpload lists the parts' streams in the
object's record. UploadPartCopy from an encrypted object decrypts the source range; into an
encrypted upload it seals the part as UploadPart does.
Bucket default encryption (bucket.attrs["encryption"], gateway/s3/ops/bucket_encryption.py)
applies to writes without SSE headers (write_encryption).
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
from collections.abc import AsyncIterable, AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

from gateway.crypto.sse import (
    SSE_C,
    SSE_S3,
    CustomerKey,
    Encryption,
    EncryptionRecord,
    Sealing,
    SseRequest,
    check_customer,
    customer_key,
    require_secure,
    segment_from_dict,
    segment_to_dict,
    sse_request,
)
from gateway.crypto.sse import response_headers as _sse_headers
from gateway.crypto.stream import (
    CiphertextError,
    SealedStream,
    Segment,
    SegmentRead,
    StreamParams,
    ciphertext_size,
)
from gateway.errors import S3Error

ATTR = "sse"


def is_encrypted(record: Any) -> bool:
    """Whether a record's (ObjectRecord, UploadRecord) bytes are the gateway's ciphertext."""
    return ATTR in record.attrs


def not_yet(what: str) -> S3Error:
    return S3Error("NotImplemented", f"{what} is not available on this gateway yet.")


def _customer_options(customer: CustomerKey | None, prefix: str = "") -> dict[str, str]:
    if customer is None:
        return {}
    return {f"{prefix}customerKey": base64.b64encode(customer.key).decode(),
            f"{prefix}customerKeyMD5": customer.md5}


def customer_of(options: Mapping[str, str] | None, prefix: str = "") -> CustomerKey | None:
    """The SSE-C key an options dict carries (in memory only: never stored, never logged)."""
    if not options or f"{prefix}customerKey" not in options:
        return None
    return CustomerKey(base64.b64decode(options[f"{prefix}customerKey"]),
                       options[f"{prefix}customerKeyMD5"])


def put_encryption(headers: Mapping[str, str], *, secure: bool = True,
                   allow_http: bool = False) -> dict[str, str] | None:
    """PutOptions.encryption (also CopyOptions') for a write's headers: None when none asked,
    else {"mode": "AES256" | "aws:kms" | "SSE-C", "keyId", "context" (JSON), "bucketKey",
    "customerKey", "customerKeyMD5", and for a copy the source's SSE-C key as
    "sourceCustomerKey", "sourceCustomerKeyMD5"}. AWS's errors for malformed SSE headers;
    SSE-C keys only over TLS (`secure`) unless the operator allows plain http."""
    request = sse_request(headers)
    source = customer_key(headers, copy_source=True)
    require_secure(request.customer if request else None, secure, allow_http)
    require_secure(source, secure, allow_http)
    options = _customer_options(source, "source")
    if request is not None:
        options["mode"] = request.mode
        if request.key_id is not None:
            options["keyId"] = request.key_id
        if request.context:
            options["context"] = json.dumps(request.context, sort_keys=True)
        if request.bucket_key:
            options["bucketKey"] = "true"
        options.update(_customer_options(request.customer))
    return options or None


def read_encryption(headers: Mapping[str, str], *, secure: bool = True,
                    allow_http: bool = False) -> dict[str, str] | None:
    """GetOptions.encryption for a GET or HEAD: the SSE-C key it carries, if any."""
    customer = customer_key(headers)
    require_secure(customer, secure, allow_http)
    return _customer_options(customer) or None


def check_read_key(record: Any, options: Mapping[str, str] | None, prefix: str = "") -> None:
    """Before anything of `record` is answered (GET, HEAD, copy source): its SSE-C key."""
    sse = EncryptionRecord.from_dict(record.attrs[ATTR]) if is_encrypted(record) else None
    check_customer(sse, customer_of(options, prefix))


# --- bucket default encryption (Put/Get/DeleteBucketEncryption) ---------------------------
BUCKET_ATTR = "encryption"  # BucketRecord.attrs: {"algorithm", "kmsKeyId"?, "bucketKey", "blocked"}


def write_encryption(bucket: Any, requested: Mapping[str, str] | None
                     ) -> dict[str, str] | None:
    """The encryption a write gets in `bucket`: what the request asks for (SSE-C refused when
    the bucket blocks it, as AWS: 403 AccessDenied), else the bucket's default, else none.
    Entries of a copy's source SSE-C key are kept as they are."""
    config = bucket.attrs.get(BUCKET_ATTR) or {}
    if requested and "mode" in requested:
        if requested["mode"] == SSE_C and "SSE-C" in config.get("blocked", []):
            raise S3Error("AccessDenied", "This bucket has blocked upload requests that "
                          "specify Server Side Encryption with Customer provided keys (SSE-C). "
                          "Please specify a different server-side encryption type")
        return dict(requested)
    algorithm = config.get("algorithm")
    if algorithm is None:
        return dict(requested) if requested else None
    default = {**(requested or {}), "mode": algorithm}
    if config.get("kmsKeyId"):
        default["keyId"] = config["kmsKeyId"]
    if config.get("bucketKey"):
        default["bucketKey"] = "true"
    return default


def _request(options: Mapping[str, str]) -> SseRequest:
    return SseRequest(options["mode"], options.get("keyId"),
                      json.loads(options["context"]) if "context" in options else {},
                      options.get("bucketKey") == "true", customer_of(options))


def copy_encryption(source: Any, requested: Mapping[str, str] | None) -> dict[str, str] | None:
    """What a copy's destination is encrypted with: what the request asks for, else SSE-S3
    when the source was encrypted (AWS applies the bucket default, SSE-S3 unless configured:
    a copy never silently turns an encrypted object into plaintext), else nothing."""
    if requested and "mode" in requested:
        return {k: v for k, v in requested.items() if not k.startswith("source")}
    return {"mode": SSE_S3} if is_encrypted(source) else None


@dataclass
class SealedBody:
    """A PUT's body on its way to the location, encrypted."""

    sealing: Sealing
    params: StreamParams
    stream: AsyncIterator[bytes]  # the ciphertext, for Location.put
    size: int  # the ciphertext's size (what the location stores)
    plain_size: int

    def attrs(self) -> dict[str, Any]:
        """ObjectRecord.attrs["sse"] once the stream is stored."""
        self.sealing.record.segments = [Segment(self.params, self.plain_size)]
        return self.sealing.record.to_dict()


async def seal_body(encryption: Encryption | None, options: Mapping[str, str], bucket: str,
                    key: str, body: AsyncIterable[bytes], size: int) -> SealedBody:
    """Encrypt a PUT's (verified) body with a fresh data key, as PutOptions.encryption asks.
    The final chunk is sealed only once `body` has ended, so a body refused at its end (bad
    digest, short) never leaves a complete stream on the location."""
    if encryption is None:
        raise S3Error("InternalError", "Encryption at rest is not set up on this gateway.")
    sealing = await encryption.new_sealing(_request(options), bucket, key)
    sealed, params = sealing.new_segment()
    return SealedBody(sealing, params, sealed.encrypt(body), ciphertext_size(size, params.chunk_size),
                      size)


# --- multipart: one stream per part, sealed under the upload's data key -------------------
# Where a part's stream header waits for the completion: PartRecord.attrs["sse"]. Parts
# stored before part records had attrs kept it in PartRecord.checksums under PART_SEGMENT
# (never an algorithm's name); part_segment still reads it there.
PART_SEGMENT = "sse-stream"


async def new_upload_sealing(encryption: Encryption | None, options: Mapping[str, str],
                             bucket: str, key: str) -> dict[str, Any]:
    """UploadRecord.attrs["sse"] of a new encrypted upload: its data key, wrapped (no
    segments yet; each part adds one)."""
    if encryption is None:
        raise S3Error("InternalError", "Encryption at rest is not set up on this gateway.")
    sealing = await encryption.new_sealing(_request(options), bucket, key)
    return sealing.record.to_dict()


async def seal_part(encryption: Encryption | None, upload: Any,
                    options: Mapping[str, str] | None, body: AsyncIterable[bytes],
                    size: int) -> SealedBody:
    """One part's body, encrypted as a stream of its own (fresh salt and nonce prefix) under
    the upload's data key. SSE-C uploads need the same key on every part (AccessDenied for
    another, InvalidRequest for none); SSE-C headers on another upload are refused."""
    if encryption is None:
        raise S3Error("InternalError", "Encryption at rest is not set up on this gateway.")
    record = EncryptionRecord.from_dict(upload.attrs[ATTR])
    try:
        data_key = await encryption.data_key(record, upload.bucket, upload.key,
                                             customer_of(options))
    except S3Error as err:  # AWS's answers for parts (not those of reads)
        if err.code == "InvalidRequest":
            raise _part_parameters() from None
        if err.code == "AccessDenied":
            raise S3Error("InvalidRequest", "The provided encryption parameters did not match "
                          "the ones used originally.") from None
        raise
    sealing = Sealing(data_key, record)
    sealed, params = sealing.new_segment()
    return SealedBody(sealing, params, sealed.encrypt(body),
                      ciphertext_size(size, params.chunk_size), size)


def refuse_unencrypted_part_options(upload: Any, options: Mapping[str, str] | None) -> None:
    """SSE-C headers on a part of an upload that is not encrypted (AWS: InvalidRequest)."""
    if not is_encrypted(upload) and customer_of(options) is not None:
        raise _part_parameters()


def _part_parameters() -> S3Error:
    return S3Error("InvalidRequest", "The multipart upload initiate requested encryption. "
                   "Subsequent part requests must include the appropriate encryption "
                   "parameters.")


def keep_part_segment(part: Any, sealed: SealedBody) -> None:
    """Record a stored part's stream header with its part record."""
    part.attrs[ATTR] = segment_to_dict(Segment(sealed.params, sealed.plain_size))["header"]


def part_segment(part: Any) -> Segment:
    header = part.attrs.get(ATTR) or part.checksums.get(PART_SEGMENT)
    if header is None:
        raise CiphertextError(f"part {part.number} of an encrypted upload has no stream record")
    return segment_from_dict({"header": header, "size": part.size})


def completed_attrs(upload: Any, chosen: list[Any]) -> dict[str, Any]:
    """The completed object's attrs["sse"]: the upload's key and each chosen part's stream, in
    part order (the pieces hold them end to end, or one piece per part)."""
    record = EncryptionRecord.from_dict(upload.attrs[ATTR])
    record.segments = [part_segment(part) for part in chosen]
    return record.to_dict()


def response_headers(record: Any, request_headers: Mapping[str, str] | None = None
                     ) -> dict[str, str]:
    """x-amz-server-side-encryption* of an answer about an encrypted record: the mode, KMS key
    id and bucket-key flag, or for SSE-C the algorithm and the MD5 of the request's key."""
    if not is_encrypted(record):
        return {}
    customer = None
    if request_headers is not None and record.attrs[ATTR].get("mode") == SSE_C:
        customer = customer_key(request_headers)
    return _sse_headers(EncryptionRecord.from_dict(record.attrs[ATTR]), customer)


async def open_plaintext(encryption: Encryption | None, locations: Any, record: Any,
                         first: int, last: int, customer: CustomerKey | None = None
                         ) -> AsyncIterator[bytes]:
    """Plaintext bytes first..last (inclusive) of an encrypted record: only the chunks they
    need are fetched and authenticated. The first backend stream is opened before this
    returns (NotFound/OSError surface here, as for plaintext reads); later failures, and
    CiphertextError for tampered data, surface while iterating."""
    if encryption is None:
        raise S3Error("InternalError", "Encryption at rest is not set up on this gateway.")
    sse = EncryptionRecord.from_dict(record.attrs[ATTR])
    layout = sse.layout()
    pieces = record.pieces
    if layout.plain_size != record.size:
        raise CiphertextError("encryption record and object disagree on the size")
    per_piece = len(pieces) == len(layout.segments)  # file/mem: a piece per part (or PUT)
    if per_piece:
        if any(p.size != s.cipher_size for p, s in zip(pieces, layout.segments, strict=True)):
            raise CiphertextError("stored sizes do not match the encryption record")
    elif len(pieces) != 1 or pieces[0].size != layout.cipher_size:
        raise CiphertextError("stored pieces do not match the encryption record")
    data_key = await encryption.data_key(sse, record.bucket, record.key, customer)
    reads = layout.plan(first, last - first + 1) if last >= first else []

    async def fetch(item: SegmentRead) -> AsyncIterator[bytes]:
        if per_piece:
            piece, offset = pieces[item.index], item.read.cipher_offset
        else:  # one backend object holding every segment end to end (clouds' multipart)
            piece, offset = pieces[0], item.absolute_offset
        return await locations[piece.location].get(piece, offset, item.read.cipher_length)

    opened = await fetch(reads[0]) if reads else None

    async def plaintext() -> AsyncIterator[bytes]:
        for number, item in enumerate(reads):
            stream = opened if number == 0 and opened is not None else await fetch(item)
            sealed = SealedStream(data_key, layout.segments[item.index].params)
            async for chunk in sealed.decrypt(item.read, stream):
                yield chunk

    return plaintext()


async def verify_copy(encryption: Encryption | None, locations: Any, record: Any,
                      pieces: list[Any], source_md5s: list[bytes]) -> None:
    """Check a relocated copy of encrypted `record` (its ciphertext, moved as it is onto
    `pieces`) by reading the copy back: for SSE-S3/SSE-KMS every AEAD chunk of it opens with
    the object's data key, and the plaintext's size and (single-PUT) MD5 are the record's; for
    SSE-C (whose key the gateway never has) each new piece's MD5 is that of the bytes read from
    the old piece (`source_md5s`, in piece order). Raises CiphertextError otherwise."""
    copy = dataclasses.replace(record, pieces=list(pieces))
    if record.attrs[ATTR].get("mode") != SSE_C:
        md5 = hashlib.md5()
        seen = 0
        stream = await open_plaintext(encryption, locations, copy, 0, record.size - 1)
        async for chunk in stream:
            md5.update(chunk)
            seen += len(chunk)
        if seen != record.size:
            raise CiphertextError(f"the copy opens to {seen} bytes, not {record.size}")
        if "-" not in record.etag and md5.hexdigest() != record.etag:
            raise CiphertextError(f"the copy's plaintext MD5 {md5.hexdigest()} is not the ETag")
        return
    if len(source_md5s) != len(pieces):
        raise CiphertextError("the copy has another number of pieces than the source")
    for piece, expected in zip(pieces, source_md5s, strict=True):
        md5 = hashlib.md5()
        async for chunk in await locations[piece.location].get(piece):
            md5.update(chunk)
        if md5.digest() != expected:
            raise CiphertextError(f"the copy of piece {piece.key} differs from its source")


__all__ = ["ATTR", "BUCKET_ATTR", "PART_SEGMENT", "SealedBody", "check_read_key",
           "completed_attrs", "copy_encryption", "customer_of", "is_encrypted",
           "keep_part_segment", "new_upload_sealing", "open_plaintext", "part_segment",
           "put_encryption", "read_encryption", "refuse_unencrypted_part_options", "response_headers",
           "seal_body", "seal_part", "verify_copy", "write_encryption"]
