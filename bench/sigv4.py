"""A small SigV4 signer for the load generator: UNSIGNED-PAYLOAD, the signing key cached per
day and the timestamp per second, so signing costs one SHA-256 and one HMAC per request."""

from __future__ import annotations

import hashlib
import hmac
import time
from urllib.parse import quote

_SAFE = "-_.~"


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def canonical_query(query: dict[str, str] | None) -> str:
    if not query:
        return ""
    return "&".join(f"{quote(k, safe=_SAFE)}={quote(v, safe=_SAFE)}"
                    for k, v in sorted(query.items()))


class Signer:
    def __init__(self, access: str, secret: str, region: str = "us-east-1") -> None:
        self.access = access
        self.secret = secret
        self.region = region
        self._day = ""
        self._key = b""
        self._second = -1
        self._amzdate = ""

    def _signing_key(self, day: str) -> bytes:
        if day != self._day:
            key = _hmac(("AWS4" + self.secret).encode(), day)
            key = _hmac(key, self.region)
            key = _hmac(key, "s3")
            self._key = _hmac(key, "aws4_request")
            self._day = day
        return self._key

    def _now(self) -> str:
        second = int(time.time())
        if second != self._second:
            self._second = second
            self._amzdate = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(second))
        return self._amzdate

    def headers(self, method: str, host: str, path: str, query: str = "",
                signed: dict[str, str] | None = None) -> dict[str, str]:
        """Headers for a request; `path` is already URI-encoded, `query` from canonical_query;
        `signed`: further headers to send and sign (x-amz-* headers must be signed)."""
        amzdate = self._now()
        day = amzdate[:8]
        scope = f"{day}/{self.region}/s3/aws4_request"
        canonical = {"host": host, "x-amz-content-sha256": "UNSIGNED-PAYLOAD",
                     "x-amz-date": amzdate}
        for name, value in (signed or {}).items():
            canonical[name.lower()] = value.strip()
        names = ";".join(sorted(canonical))
        lines = "".join(f"{name}:{canonical[name]}\n" for name in sorted(canonical))
        creq = f"{method}\n{path}\n{query}\n{lines}\n{names}\nUNSIGNED-PAYLOAD"
        sts = (f"AWS4-HMAC-SHA256\n{amzdate}\n{scope}\n"
               + hashlib.sha256(creq.encode()).hexdigest())
        sig = hmac.new(self._signing_key(day), sts.encode(), hashlib.sha256).hexdigest()
        return {
            "Host": host,
            "x-amz-date": amzdate,
            "x-amz-content-sha256": "UNSIGNED-PAYLOAD",
            **(signed or {}),
            "Authorization": (f"AWS4-HMAC-SHA256 Credential={self.access}/{scope}, "
                              f"SignedHeaders={names}, Signature={sig}"),
        }
