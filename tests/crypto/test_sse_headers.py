"""SSE request headers judged as AWS judges them (codes and messages)."""

from __future__ import annotations

import base64
import hashlib
import json
import os

import pytest

from gateway.crypto.sse import (
    SSE_C,
    SSE_KMS,
    SSE_S3,
    customer_key,
    require_secure,
    sse_request,
)
from gateway.errors import S3Error

KEY = os.urandom(32)
KEY_B64 = base64.b64encode(KEY).decode()
MD5_B64 = base64.b64encode(hashlib.md5(KEY).digest()).decode()
ALG = "x-amz-server-side-encryption-customer-algorithm"
CKEY = "x-amz-server-side-encryption-customer-key"
CMD5 = "x-amz-server-side-encryption-customer-key-md5"


def refused(headers: dict[str, str], **kwargs: bool) -> S3Error:
    with pytest.raises(S3Error) as caught:
        if kwargs:
            customer_key(headers, **kwargs)
        else:
            sse_request(headers)
    return caught.value


def test_plain_and_sse_s3_and_kms() -> None:
    assert sse_request({}) is None
    assert sse_request({"x-amz-server-side-encryption": "AES256"}).mode == SSE_S3
    context = base64.b64encode(json.dumps({"a": "b"}).encode()).decode()
    kms = sse_request({"x-amz-server-side-encryption": "aws:kms",
                       "x-amz-server-side-encryption-aws-kms-key-id": " kid ",
                       "x-amz-server-side-encryption-context": context,
                       "x-amz-server-side-encryption-bucket-key-enabled": "TRUE"})
    assert (kms.mode, kms.key_id, kms.context, kms.bucket_key) == (SSE_KMS, "kid", {"a": "b"},
                                                                   True)
    assert sse_request({"x-amz-server-side-encryption": "aws:kms"}).key_id is None


@pytest.mark.parametrize("headers,message", [
    ({"x-amz-server-side-encryption": "AES128"}, "The encryption method specified is not "
     "supported"),
    ({"x-amz-server-side-encryption-aws-kms-key-id": "k"}, "requires HTTP header "
     "x-amz-server-side-encryption : aws:kms"),
    ({"x-amz-server-side-encryption": "AES256",
      "x-amz-server-side-encryption-aws-kms-key-id": "k"}, "requires HTTP header"),
    ({"x-amz-server-side-encryption": "aws:kms",
      "x-amz-server-side-encryption-context": "not base64!"}, "string-string map"),
    ({"x-amz-server-side-encryption": "aws:kms",
      "x-amz-server-side-encryption-context": base64.b64encode(b'{"a": 1}').decode()},
     "string-string map"),
    ({"x-amz-server-side-encryption": "aws:kms",
      "x-amz-server-side-encryption-bucket-key-enabled": "yes"}, "true or false"),
    ({"x-amz-server-side-encryption": "AES256", ALG: "AES256", CKEY: KEY_B64, CMD5: MD5_B64},
     "Server Side Encryption with Customer provided key is incompatible with the encryption "
     "method specified"),
])
def test_invalid_sse_headers(headers: dict[str, str], message: str) -> None:
    error = refused(headers)
    assert (error.code, error.status) == ("InvalidArgument", 400)
    assert message in error.message


def test_sse_c_valid() -> None:
    request = sse_request({ALG: "AES256", CKEY: KEY_B64, CMD5: MD5_B64})
    assert request.mode == SSE_C and request.customer.key == KEY
    assert request.customer.md5 == MD5_B64
    source = customer_key({
        "x-amz-copy-source-server-side-encryption-customer-algorithm": "AES256",
        "x-amz-copy-source-server-side-encryption-customer-key": KEY_B64,
        "x-amz-copy-source-server-side-encryption-customer-key-md5": MD5_B64}, copy_source=True)
    assert source.key == KEY
    assert customer_key({ALG: "AES256", CKEY: KEY_B64, CMD5: MD5_B64}, copy_source=True) is None


def test_sse_c_refusals_in_aws_order() -> None:
    short = os.urandom(24)
    short_b64 = base64.b64encode(short).decode()
    short_md5 = base64.b64encode(hashlib.md5(short).digest()).decode()
    cases = [
        ({CKEY: KEY_B64, CMD5: MD5_B64}, "InvalidArgument", "must provide a valid encryption "
         "algorithm."),
        ({ALG: "AES256"}, "InvalidArgument", "must provide an appropriate secret key."),
        ({ALG: "aws:kms", CKEY: KEY_B64, CMD5: MD5_B64}, "InvalidEncryptionAlgorithmError",
         "The Encryption request you specified is not valid. Supported value: AES256."),
        ({ALG: "AES256", CKEY: KEY_B64}, "InvalidArgument", "the client calculated MD5"),
        ({ALG: "AES256", CKEY: KEY_B64, CMD5: short_md5}, "InvalidArgument",
         "The calculated MD5 hash of the key did not match the hash that was provided."),
        # MD5 before length: a 24-byte key with a wrong MD5 is an MD5 mismatch...
        ({ALG: "AES256", CKEY: short_b64, CMD5: MD5_B64}, "InvalidArgument",
         "The calculated MD5 hash"),
        # ...and with its own MD5, a bad key.
        ({ALG: "AES256", CKEY: short_b64, CMD5: short_md5}, "InvalidArgument",
         "The secret key was invalid for the specified algorithm."),
    ]
    for headers, code, message in cases:
        error = refused(headers, copy_source=False)
        assert (error.code, error.status) == (code, 400), headers
        assert message in error.message, headers


def test_sse_c_needs_tls_unless_allowed() -> None:
    key = customer_key({ALG: "AES256", CKEY: KEY_B64, CMD5: MD5_B64})
    with pytest.raises(S3Error, match="secure connection"):
        require_secure(key, secure=False, allow_plain_http=False)
    require_secure(key, secure=True, allow_plain_http=False)
    require_secure(key, secure=False, allow_plain_http=True)
    require_secure(None, secure=False, allow_plain_http=False)
