"""Encryption at rest, done by the gateway for every location type.

- gateway/crypto/stream.py: the on-backend format (version 1), a chunked AES-256-GCM stream with
  random access; its docstring is the format's specification. Encrypt/decrypt in bounded
  memory, plaintext ranges mapped to stored ranges, multipart objects as independently sealed
  segments.
- gateway/crypto/keys.py: envelope encryption. Kms (wrap/unwrap/default_key_id/rotate) and the
  embedded LocalKeyring file; SSE-C wrapping with the customer's key and its salted HMAC.
- gateway/crypto/sse.py: the S3 side. SSE request headers judged as AWS does, the record kept
  per object (EncryptionRecord, ObjectRecord.attrs["sse"]), and Encryption, the service the
  object engine calls.
- gateway/crypto/objects.py: the glue the object engine calls (seal a PUT's body, open the
  plaintext of a range of an encrypted record, response headers).

The package takes plain values (headers, byte streams, records, locations) and knows nothing of
HTTP or metadata stores. Only the `cryptography` package's AES-GCM and HKDF are used:
no cipher is written here.
"""

from gateway.crypto.keys import Kms, LocalKeyring, UnwrapError
from gateway.crypto.sse import (
    CustomerKey,
    Encryption,
    EncryptionRecord,
    Sealing,
    SseRequest,
    customer_key,
    response_headers,
    sse_request,
)
from gateway.crypto.stream import (
    CiphertextError,
    SealedStream,
    Segment,
    Segments,
    StreamParams,
    ciphertext_size,
    decrypt_segments,
    plaintext_size,
    plan_range,
)

__all__ = ["CiphertextError", "CustomerKey", "Encryption", "EncryptionRecord", "Kms",
           "LocalKeyring", "SealedStream", "Sealing", "Segment", "Segments", "SseRequest",
           "StreamParams", "UnwrapError", "ciphertext_size", "customer_key", "decrypt_segments",
           "plaintext_size", "plan_range", "response_headers", "sse_request"]
