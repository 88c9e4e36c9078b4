"""Server-side encryption as S3 asks for it: the request headers (judged as AWS judges them),
what an object's record keeps (EncryptionRecord, in ObjectRecord.attrs["sse"]), and the
service the object engine calls to seal new bytes and open stored ones (Encryption).

Modes (ObjectRecord.attrs["sse"]["mode"]):
- "AES256"  SSE-S3: the data key is wrapped by the gateway's own key (Kms.default_key_id).
- "aws:kms" SSE-KMS: wrapped by the named key id (or the default key), bound to the
  request's encryption context (x-amz-server-side-encryption-context) plus the object's ARN.
- "SSE-C"   the data key is wrapped by the customer's key, which is never stored: only a
  salted HMAC-SHA256 of it, to refuse a wrong key with AWS's AccessDenied before any data.
In every mode the backend receives only the format of gateway/crypto/stream.py; the client
sees the plaintext's size, ETag and checksums.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from gateway.crypto.keys import (
    Kms,
    customer_key_hmac,
    customer_key_matches,
    new_data_key,
    unwrap_with,
    wrap_with,
)
from gateway.crypto.stream import (
    DEFAULT_CHUNK_SIZE,
    FORMAT_VERSION,
    SealedStream,
    Segment,
    Segments,
    StreamParams,
    plaintext_size,
)
from gateway.errors import S3Error

SSE_S3 = "AES256"
SSE_KMS = "aws:kms"
SSE_C = "SSE-C"
MODES = (SSE_S3, SSE_KMS, SSE_C)

H_SSE = "x-amz-server-side-encryption"
H_KMS_KEY = "x-amz-server-side-encryption-aws-kms-key-id"
H_CONTEXT = "x-amz-server-side-encryption-context"
H_BUCKET_KEY = "x-amz-server-side-encryption-bucket-key-enabled"
H_C_ALGORITHM = "x-amz-server-side-encryption-customer-algorithm"
H_C_KEY = "x-amz-server-side-encryption-customer-key"
H_C_MD5 = "x-amz-server-side-encryption-customer-key-md5"
COPY_SOURCE_PREFIX = "x-amz-copy-source-"
# The key id SSE-C blobs are bound to (the wrapping key is the customer's).
_SSE_C_KEY_ID = "sse-c"


# --- request headers ----------------------------------------------------------------------

def _invalid(message: str, name: str = H_SSE, value: str | None = None) -> S3Error:
    extra = {"ArgumentName": name}
    if value is not None:
        extra["ArgumentValue"] = value
    return S3Error("InvalidArgument", message, **extra)


@dataclass(frozen=True)
class CustomerKey:
    """An SSE-C key as a request carries it (checked: AES256, 32 bytes, its MD5)."""

    key: bytes = field(repr=False)
    md5: str  # base64, as sent: echoed in responses

    @classmethod
    def from_bytes(cls, key: bytes) -> CustomerKey:
        return cls(key, base64.b64encode(hashlib.md5(key).digest()).decode())


def customer_key(headers: Mapping[str, str], *, copy_source: bool = False) -> CustomerKey | None:
    """The SSE-C key of a request (or its x-amz-copy-source-... variant), validated in AWS's
    order; None when the request carries none of the three headers."""
    def name(header: str) -> str:  # x-amz-copy-source-server-side-encryption-customer-...
        return COPY_SOURCE_PREFIX + header.removeprefix("x-amz-") if copy_source else header

    algorithm = headers.get(name(H_C_ALGORITHM))
    key_text = headers.get(name(H_C_KEY))
    md5_text = headers.get(name(H_C_MD5))
    if algorithm is None and key_text is None and md5_text is None:
        return None
    if algorithm is None:
        raise _invalid("Requests specifying Server Side Encryption with Customer provided keys "
                       "must provide a valid encryption algorithm.")
    if key_text is None:
        raise _invalid("Requests specifying Server Side Encryption with Customer provided keys "
                       "must provide an appropriate secret key.")
    if algorithm != "AES256":
        raise S3Error("InvalidEncryptionAlgorithmError", "The Encryption request you specified "
                      "is not valid. Supported value: AES256.", status=400,
                      ArgumentName=H_SSE, ArgumentValue=algorithm)
    if md5_text is None:
        raise _invalid("Requests specifying Server Side Encryption with Customer provided keys "
                       "must provide the client calculated MD5 of the secret key.")
    try:
        key = base64.b64decode(key_text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise _invalid("The secret key was invalid for the specified algorithm.") from None
    # AWS compares the MD5 before the key's length (a 24-byte key with a wrong MD5 gets this).
    if base64.b64encode(hashlib.md5(key).digest()).decode() != md5_text.strip():
        raise _invalid("The calculated MD5 hash of the key did not match the hash that was "
                       "provided.")
    if len(key) != 32:
        raise _invalid("The secret key was invalid for the specified algorithm.")
    return CustomerKey(key, md5_text.strip())


def require_secure(customer: CustomerKey | None, secure: bool, allow_plain_http: bool) -> None:
    """AWS takes SSE-C keys only over TLS; the operator may allow plain http (tests, a TLS
    terminating proxy in front)."""
    if customer is not None and not secure and not allow_plain_http:
        raise S3Error("InvalidRequest", "Requests specifying Server Side Encryption with "
                      "Customer provided keys must be made over a secure connection.")


def _context(text: str) -> dict[str, str]:
    try:
        value = json.loads(base64.b64decode(text.strip(), validate=True).decode("utf-8"))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        value = None
    if not isinstance(value, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise _invalid(f"The header '{H_CONTEXT}' shall be Base64-encoded UTF-8 string "
                       "holding JSON which represents a string-string map", H_CONTEXT)
    return value


@dataclass(frozen=True)
class SseRequest:
    """What a write (PUT, copy destination, CreateMultipartUpload) asks for."""

    mode: str
    key_id: str | None = None  # aws:kms: as named in the request (None: the default key)
    context: dict[str, str] = field(default_factory=dict)  # aws:kms: the client's context
    bucket_key: bool = False
    customer: CustomerKey | None = None


def sse_request(headers: Mapping[str, str]) -> SseRequest | None:
    """The encryption a write's headers ask for (None: none; the bucket default applies).
    Raises S3Errors with AWS's codes and messages."""
    method = headers.get(H_SSE)
    key_id = headers.get(H_KMS_KEY)
    context = headers.get(H_CONTEXT)
    bucket_key = headers.get(H_BUCKET_KEY)
    customer = customer_key(headers)
    if customer is not None:
        if method is not None:
            raise _invalid("Server Side Encryption with Customer provided key is incompatible "
                           "with the encryption method specified", H_SSE, method)
        return SseRequest(SSE_C, customer=customer)
    if method is None:
        if key_id is not None or context is not None:
            raise _invalid("Server Side Encryption with AWS KMS managed key requires HTTP "
                           f"header {H_SSE} : aws:kms", H_KMS_KEY if key_id else H_CONTEXT)
        return None
    if method not in (SSE_S3, SSE_KMS):
        raise _invalid("The encryption method specified is not supported", H_SSE, method)
    if method == SSE_S3 and (key_id is not None or context is not None):
        raise _invalid("Server Side Encryption with AWS KMS managed key requires HTTP header "
                       f"{H_SSE} : aws:kms", H_KMS_KEY if key_id else H_CONTEXT)
    flag = False
    if bucket_key is not None:
        if bucket_key.strip().lower() not in ("true", "false"):
            raise _invalid(f"The header '{H_BUCKET_KEY}' must be true or false", H_BUCKET_KEY,
                           bucket_key)
        flag = bucket_key.strip().lower() == "true"
    if method == SSE_S3:
        return SseRequest(SSE_S3, bucket_key=flag)
    if key_id is not None and not key_id.strip():
        raise _invalid("KMS key id must not be empty", H_KMS_KEY, key_id)
    return SseRequest(SSE_KMS, key_id.strip() if key_id else None,
                      _context(context) if context is not None else {}, flag)


# --- what a record keeps -------------------------------------------------------------------

def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(text: str) -> bytes:
    return base64.b64decode(text, validate=True)


@dataclass
class EncryptionRecord:
    """The encryption of one object (ObjectRecord.attrs["sse"], to_dict()) or of a multipart
    upload in progress (UploadRecord.attrs["sse"], segments empty; each part's segment goes
    with its part record and is listed here at completion, in part order).

    Everything needed to read a range with one backend request: the wrapped data key and,
    per segment, its stream header (nonce prefix, key salt, chunk size, version) and
    plaintext size. Nothing here is secret."""

    mode: str
    wrapped_key: bytes
    key_id: str | None  # the KMS key id the data key is wrapped by (None for SSE-C)
    # SSE-KMS: the client's encryption context. The wrap is bound to it plus the object's ARN
    # ("aws:s3:arn"), which is not stored but recomputed from the object read: a record
    # pasted onto another object does not open there.
    context: dict[str, str]
    bucket_key: bool = False
    customer_salt: bytes | None = None  # SSE-C: HMAC-SHA256(salt, customer key)
    customer_hmac: bytes | None = None
    format_version: int = FORMAT_VERSION
    chunk_size: int = DEFAULT_CHUNK_SIZE
    segments: list[Segment] = field(default_factory=list)

    @property
    def plain_size(self) -> int:
        return sum(s.plain_size for s in self.segments)

    def layout(self) -> Segments:
        return Segments(self.segments)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"mode": self.mode, "wrappedKey": _b64(self.wrapped_key),
                                "version": self.format_version, "chunkSize": self.chunk_size,
                                "segments": [segment_to_dict(s) for s in self.segments]}
        if self.key_id is not None:
            data["keyId"] = self.key_id
        if self.context:
            data["context"] = dict(self.context)
        if self.bucket_key:
            data["bucketKey"] = True
        if self.customer_hmac is not None and self.customer_salt is not None:
            data["customerKeySalt"] = _b64(self.customer_salt)
            data["customerKeyHmac"] = _b64(self.customer_hmac)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EncryptionRecord:
        record = cls(
            mode=data["mode"], wrapped_key=_unb64(data["wrappedKey"]), key_id=data.get("keyId"),
            context=dict(data.get("context", {})), bucket_key=bool(data.get("bucketKey")),
            customer_salt=_unb64(data["customerKeySalt"]) if "customerKeySalt" in data else None,
            customer_hmac=_unb64(data["customerKeyHmac"]) if "customerKeyHmac" in data else None,
            format_version=int(data.get("version", FORMAT_VERSION)),
            chunk_size=int(data.get("chunkSize", DEFAULT_CHUNK_SIZE)),
            segments=[segment_from_dict(s) for s in data.get("segments", [])])
        for segment in record.segments:
            if (segment.params.version, segment.params.chunk_size) != (
                    record.format_version, record.chunk_size):
                raise ValueError("segment header disagrees with its record")
        return record


def segment_to_dict(segment: Segment) -> dict[str, Any]:
    """One part's (or a PUT's) stream, as a part record may keep it: {"header", "size"}."""
    return {"header": _b64(segment.params.header()), "size": segment.plain_size}


def segment_from_dict(data: Mapping[str, Any]) -> Segment:
    return Segment(StreamParams.from_header(_unb64(data["header"])), int(data["size"]))


def object_arn(bucket: str, key: str) -> str:
    return f"arn:aws:s3:::{bucket}/{key}"


def _binding(record_context: Mapping[str, str], bucket: str, key: str) -> dict[str, str]:
    return {**record_context, "aws:s3:arn": object_arn(bucket, key)}


def check_customer(record: EncryptionRecord | None, customer: CustomerKey | None) -> None:
    """A read's SSE-C key against the object (`record` None: a plaintext object), as AWS
    answers: an SSE-C object without the key is InvalidRequest, with another key AccessDenied
    (checked against the salted HMAC, before any data is touched); SSE-C headers on an object
    that is not SSE-C are InvalidRequest."""
    if record is not None and record.mode == SSE_C:
        if customer is None:
            raise S3Error("InvalidRequest", "The object was stored using a form of Server "
                          "Side Encryption. The correct parameters must be provided to "
                          "retrieve the object.")
        assert record.customer_salt is not None and record.customer_hmac is not None
        if not customer_key_matches(customer.key, record.customer_salt, record.customer_hmac):
            raise S3Error("AccessDenied", "Requests specifying Server Side Encryption with "
                          "Customer provided keys must provide the correct secret key.")
    elif customer is not None:
        raise S3Error("InvalidRequest", "The encryption parameters are not applicable to this "
                      "object.")


# --- the service ---------------------------------------------------------------------------

@dataclass
class Sealing:
    """A new object's (or upload's) data key, open, with its record (no segments yet)."""

    data_key: bytes = field(repr=False)
    record: EncryptionRecord

    def new_segment(self) -> tuple[SealedStream, StreamParams]:
        """A fresh stream for the next bytes (the PUT's, or one part's): encrypt with
        sealed.encrypt(body), then record Segment(params, plaintext size)."""
        params = StreamParams.new(self.record.chunk_size)
        return SealedStream(self.data_key, params), params


class Encryption:
    """What the object engine calls: new data keys for writes, data keys back for reads."""

    def __init__(self, kms: Kms, chunk_size: int = DEFAULT_CHUNK_SIZE) -> None:
        self.kms = kms
        self.chunk_size = chunk_size

    async def new_sealing(self, request: SseRequest, bucket: str, key: str) -> Sealing:
        """A random data key for a new object bucket/key, wrapped as `request` asks.
        An unknown KMS key id raises KMS.NotFoundException (before any byte is stored)."""
        data_key = new_data_key()
        return Sealing(data_key, await self._wrap(request, data_key, bucket, key))

    async def _wrap(self, request: SseRequest, data_key: bytes, bucket: str,
                    key: str) -> EncryptionRecord:
        if request.mode == SSE_C:
            assert request.customer is not None
            salt, digest = customer_key_hmac(request.customer.key)
            blob = wrap_with(request.customer.key, 1, _SSE_C_KEY_ID, data_key,
                             _binding({}, bucket, key))
            return EncryptionRecord(SSE_C, blob, None, {}, customer_salt=salt,
                                    customer_hmac=digest, chunk_size=self.chunk_size)
        if request.mode == SSE_KMS and request.key_id is not None:
            key_id = self.kms.resolve(request.key_id)
        else:
            key_id = self.kms.default_key_id
        context = request.context if request.mode == SSE_KMS else {}
        blob = await self.kms.wrap(key_id, data_key, _binding(context, bucket, key))
        return EncryptionRecord(request.mode, blob, key_id, context,
                                bucket_key=request.bucket_key, chunk_size=self.chunk_size)

    async def data_key(self, record: EncryptionRecord, bucket: str, key: str,
                       customer: CustomerKey | None) -> bytes:
        """The data key of object bucket/key, for reading it (or adding parts to its upload).
        The SSE-C key is checked first (check_customer)."""
        check_customer(record, customer)
        if record.mode == SSE_C:
            assert customer is not None
            return unwrap_with(customer.key, _SSE_C_KEY_ID, record.wrapped_key,
                               _binding({}, bucket, key))
        assert record.key_id is not None
        return await self.kms.unwrap(record.key_id, record.wrapped_key,
                                     _binding(record.context, bucket, key))

    async def rewrap(self, record: EncryptionRecord, data_key: bytes, request: SseRequest,
                     bucket: str, key: str) -> EncryptionRecord:
        """The record of the same ciphertext under another object name and/or another
        wrapping (a server-side copy between modes or keys, key rotation by self-copy):
        only the data key is wrapped anew, no byte is re-encrypted. `data_key` comes from
        data_key(record, ...), which checked the source's SSE-C key."""
        fresh = await self._wrap(request, data_key, bucket, key)
        fresh.chunk_size = record.chunk_size
        fresh.format_version = record.format_version
        fresh.segments = list(record.segments)
        return fresh


def segment_from_stored(params: StreamParams, stored_size: int) -> Segment:
    """A segment from what a translator reports stored (Stored.size is the ciphertext's
    size); CiphertextError when that size is no stream's."""
    return Segment(params, plaintext_size(stored_size, params.chunk_size))


# The region and account of the KMS key ARNs answered (AWS answers the full ARN in
# x-amz-server-side-encryption-aws-kms-key-id; requests may name a key either way).
# set_arn_region() is for a gateway configured with a region of its own.
ARN_ACCOUNT = "123456789012"  # gateway.accounts.CUSTOM_ACCOUNT_SHORTID
_arn_region = "us-east-1"


def set_arn_region(region: str) -> None:
    global _arn_region
    if region and region != "*":
        _arn_region = region


def kms_key_arn(key_id: str) -> str:
    """arn:aws:kms:<region>:<account>:key/<id> of a key id (an ARN is kept as it is)."""
    if key_id.startswith("arn:"):
        return key_id
    return f"arn:aws:kms:{_arn_region}:{ARN_ACCOUNT}:key/{key_id}"


def response_headers(record: EncryptionRecord, customer: CustomerKey | None = None
                     ) -> dict[str, str]:
    """The x-amz-server-side-encryption* headers of PUT/GET/HEAD/copy/multipart answers."""
    if record.mode == SSE_C:
        headers = {H_C_ALGORITHM: "AES256"}
        if customer is not None:
            headers["x-amz-server-side-encryption-customer-key-MD5"] = customer.md5
        return headers
    headers = {H_SSE: record.mode}
    if record.mode == SSE_KMS and record.key_id is not None:
        headers[H_KMS_KEY] = kms_key_arn(record.key_id)
    if record.bucket_key:
        headers[H_BUCKET_KEY] = "true"
    return headers


__all__ = ["MODES", "SSE_C", "SSE_KMS", "SSE_S3", "CustomerKey", "Encryption",
           "EncryptionRecord", "Sealing", "SseRequest", "check_customer", "customer_key",
           "kms_key_arn", "object_arn", "set_arn_region",
           "require_secure", "response_headers", "segment_from_dict", "segment_from_stored",
           "segment_to_dict", "sse_request"]
