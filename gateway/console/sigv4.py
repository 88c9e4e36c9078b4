"""A small SigV4 signer for the console's own S3 requests and the presigned URLs it hands out.

The console never decides who may do what: it signs a real S3 request with the logged-in
account's key and sends it to the gateway's own S3 listener, where gateway/s3/auth.py and
gateway/s3/access.py judge it exactly as any client's.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from urllib.parse import quote

ALGORITHM = "AWS4-HMAC-SHA256"
REGION = "us-east-1"  # the gateway accepts any region name; this is the one clients default to
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"


def aws_quote(text: str, safe: str = "-_.~") -> str:
    return quote(text, safe=safe, encoding="utf-8")


def object_path(bucket: str | None, key: str | None = None) -> str:
    """The path-style request path, encoded as SigV4 wants it (and as it is sent)."""
    if not bucket:
        return "/"
    path = "/" + aws_quote(bucket)
    if key is not None:
        path += "/" + aws_quote(key, safe="-_.~/")
    return path


def canonical_query(params: dict[str, str]) -> str:
    return "&".join(f"{aws_quote(k)}={aws_quote(v)}" for k, v in sorted(params.items()))


def _signing_key(secret: str, date: str) -> bytes:
    key = ("AWS4" + secret).encode()
    for part in (date, REGION, "s3", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def _signature(secret: str, timestamp: str, canonical_request: str) -> str:
    scope = f"{timestamp[:8]}/{REGION}/s3/aws4_request"
    string_to_sign = "\n".join((ALGORITHM, timestamp, scope,
                                hashlib.sha256(canonical_request.encode()).hexdigest()))
    return hmac.new(_signing_key(secret, timestamp[:8]), string_to_sign.encode(),
                    hashlib.sha256).hexdigest()


def _timestamp(now: float | None) -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time() if now is None else now))


def sign_headers(method: str, host: str, path: str, params: dict[str, str],
                 headers: dict[str, str], body: bytes, access_key: str, secret: str,
                 now: float | None = None) -> dict[str, str]:
    """`headers` plus Host, x-amz-date, x-amz-content-sha256 and Authorization."""
    timestamp = _timestamp(now)
    payload = hashlib.sha256(body).hexdigest()
    signed = {k.lower(): " ".join(v.split()) for k, v in headers.items()}
    signed.update({"host": host, "x-amz-date": timestamp, "x-amz-content-sha256": payload})
    names = sorted(signed)
    canonical = "\n".join((method, path, canonical_query(params),
                           "".join(f"{n}:{signed[n]}\n" for n in names), ";".join(names),
                           payload))
    signature = _signature(secret, timestamp, canonical)
    credential = f"{access_key}/{timestamp[:8]}/{REGION}/s3/aws4_request"
    out = {**headers, "Host": host, "x-amz-date": timestamp, "x-amz-content-sha256": payload}
    out["Authorization"] = (f"{ALGORITHM} Credential={credential}, "
                            f"SignedHeaders={';'.join(names)}, Signature={signature}")
    return out


def presign(method: str, host: str, path: str, params: dict[str, str], expires: int,
            access_key: str, secret: str, now: float | None = None) -> str:
    """The query string (with X-Amz-Signature) of a presigned request; only Host is signed."""
    timestamp = _timestamp(now)
    query = {**params,
             "X-Amz-Algorithm": ALGORITHM,
             "X-Amz-Credential": f"{access_key}/{timestamp[:8]}/{REGION}/s3/aws4_request",
             "X-Amz-Date": timestamp,
             "X-Amz-Expires": str(expires),
             "X-Amz-SignedHeaders": "host"}
    canonical = "\n".join((method, path, canonical_query(query), f"host:{host}\n", "host",
                           UNSIGNED_PAYLOAD))
    return canonical_query(query) + "&X-Amz-Signature=" + _signature(secret, timestamp, canonical)
