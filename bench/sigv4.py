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

    def headers(self, method: str, host: str, path: str, query: str = "") -> dict[str, str]:
        """Headers for a request; `path` is already URI-encoded, `query` from canonical_query."""
        amzdate = self._now()
        day = amzdate[:8]
        scope = f"{day}/{self.region}/s3/aws4_request"
        creq = (f"{method}\n{path}\n{query}\nhost:{host}\nx-amz-content-sha256:UNSIGNED-PAYLOAD\n"
                f"x-amz-date:{amzdate}\n\nhost;x-amz-content-sha256;x-amz-date\nUNSIGNED-PAYLOAD")
        sts = (f"AWS4-HMAC-SHA256\n{amzdate}\n{scope}\n"
               + hashlib.sha256(creq.encode()).hexdigest())
        sig = hmac.new(self._signing_key(day), sts.encode(), hashlib.sha256).hexdigest()
        return {
            "Host": host,
            "x-amz-date": amzdate,
            "x-amz-content-sha256": "UNSIGNED-PAYLOAD",
            "Authorization": (f"AWS4-HMAC-SHA256 Credential={self.access}/{scope}, "
                              f"SignedHeaders=host;x-amz-content-sha256;x-amz-date, "
                              f"Signature={sig}"),
        }
