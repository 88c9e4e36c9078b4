"""What an operation receives: the parsed S3 request and the gateway's services."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from aiohttp import web

from gateway.errors import S3Error

if TYPE_CHECKING:
    from gateway.accounts import Account
    from gateway.s3.auth import AuthResult
    from gateway.server import Gateway


# Values kept on the aiohttp request for the response hooks (request id, CORS headers).
REQUEST_ID = web.RequestKey("request_id", str)
BUCKET_RECORD = web.RequestKey("bucket_record", object)


def resource_of(bucket: str | None, key: str | None) -> str:
    """The <Resource> of an error: /, /bucket or /bucket/key."""
    if bucket is None:
        return "/"
    return f"/{bucket}/{key}" if key else f"/{bucket}"


@dataclass
class S3Request:
    http: web.Request
    gateway: Gateway
    request_id: str
    bucket: str | None
    key: str | None
    query: dict[str, str]
    auth: AuthResult
    host: str | None
    extra_log: dict[str, object] = field(default_factory=dict)

    @property
    def account(self) -> Account | None:
        return self.auth.account

    @property
    def headers(self):  # noqa: ANN201 - aiohttp's CIMultiDictProxy
        return self.http.headers

    @property
    def resource(self) -> str:
        return resource_of(self.bucket, self.key)

    def require_account(self) -> Account:
        if self.auth.account is None:
            raise S3Error("AccessDenied")
        return self.auth.account
