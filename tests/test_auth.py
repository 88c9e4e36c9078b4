"""gateway.s3.auth against real client signers (botocore, s3cmd) and AWS's aws-chunked example."""

from __future__ import annotations

import hashlib
import hmac
import io
import random
import re
import time
from collections.abc import AsyncIterator, Iterable
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlsplit

import pytest
from botocore.auth import (
    HmacV1Auth,
    HmacV1QueryAuth,
    S3SigV4Auth,
    S3SigV4QueryAuth,
    SigV4Auth,
)
from botocore.awsrequest import AWSPreparedRequest, AWSRequest
from botocore.credentials import Credentials
from botocore.httpchecksum import AwsChunkedWrapper, Crc32Checksum, Sha256Checksum
from botocore.utils import percent_encode_sequence
from multidict import CIMultiDict

from gateway.accounts import Account, AccountStore, load_accounts
from gateway.errors import S3Error
from gateway.s3 import auth
from gateway.s3.auth import AuthResult, authenticate

ACCOUNTS = load_accounts(Path(__file__).resolve().parent.parent / "conf" / "authdata.json", {})
BART = Credentials("accessKey1", "verySecretKey1")
LISA = Credentials("accessKey2", "verySecretKey2")
WRONG_SECRET = Credentials("accessKey1", "notTheSecret")
UNKNOWN_KEY = Credentials("noSuchKey", "verySecretKey1")
ENDPOINT = "http://127.0.0.1:8000"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
STREAMING = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"


# --- helpers: sign with botocore, hand the result to authenticate() as aiohttp would ----------

class Signed:
    """A signed request as the server sees it: request line pieces, headers, body."""

    def __init__(self, prepared: AWSPreparedRequest) -> None:
        split = urlsplit(prepared.url)
        self.method = prepared.method
        self.path = split.path
        self.query = split.query
        self.headers: CIMultiDict[str] = CIMultiDict()
        for name, value in prepared.headers.items():
            self.headers.add(name, value.decode() if isinstance(value, bytes) else value)
        body = prepared.body or b""
        self.body = body.encode() if isinstance(body, str) else body
        # What the HTTP client adds on the wire after signing.
        self.headers.setdefault("Host", split.netloc)
        if self.body:
            self.headers.setdefault("Content-Length", str(len(self.body)))

    def auth(self, **kwargs: Any) -> AuthResult:
        return authenticate(self.method, self.path, self.query, self.headers, ACCOUNTS, **kwargs)


def sign(signer: Any, method: str = "GET", path: str = "/bucket/key", *,
         params: dict[str, str] | None = None, headers: dict[str, str] | None = None,
         body: bytes = b"", host: str = ENDPOINT, auth_path: str | None = None,
         unsigned_payload: bool = False) -> Signed:
    # Like botocore's serializer: the query is in the URL (percent-encoded) before signing.
    query = "?" + percent_encode_sequence(params) if params else ""
    request = AWSRequest(method=method, url=host + path + query, headers=headers or {},
                         data=body)
    if auth_path is not None:
        request.auth_path = auth_path
    if unsigned_payload:
        request.context["client_config"] = SimpleNamespace(s3={"payload_signing_enabled": False})
    signer.add_auth(request)
    return Signed(request.prepare())


def v4(creds: Credentials = BART, region: str = "us-east-1", service: str = "s3") -> S3SigV4Auth:
    return S3SigV4Auth(creds, service, region)


def rejects(code: str, signed: Signed, **kwargs: Any) -> S3Error:
    with pytest.raises(S3Error) as caught:
        signed.auth(**kwargs)
    assert caught.value.code == code, caught.value
    return caught.value


async def feed(pieces: Iterable[bytes]) -> AsyncIterator[bytes]:
    for piece in pieces:
        yield piece


async def read_body(result: AuthResult, pieces: Iterable[bytes]) -> bytes:
    return b"".join([data async for data in result.body(feed(pieces))])


def random_split(data: bytes, rng: random.Random, max_piece: int) -> list[bytes]:
    pieces, pos = [], 0
    while pos < len(data):
        size = rng.randint(1, max_piece)
        pieces.append(data[pos:pos + size])
        pos += size
    return pieces


# --- anonymous and dispatch -------------------------------------------------------------------

def test_no_credentials_is_anonymous() -> None:
    result = authenticate("GET", "/bucket/key", "prefix=a", CIMultiDict(Host="x"), ACCOUNTS)
    assert (result.account, result.access_key, result.signature_version) == (None, None, None)


def test_unknown_authorization_scheme_is_access_denied() -> None:
    with pytest.raises(S3Error) as caught:
        authenticate("GET", "/", "", CIMultiDict(Authorization="Bearer abc"), ACCOUNTS)
    assert caught.value.code == "AccessDenied"


def test_header_and_query_auth_together_is_invalid() -> None:
    signed = sign(v4())
    signed.query = "X-Amz-Algorithm=AWS4-HMAC-SHA256"
    rejects("InvalidArgument", signed)


# --- SigV4 header -----------------------------------------------------------------------------

def test_v4_header_get_is_accepted() -> None:
    result = sign(v4()).auth()
    assert result.account is not None and result.account.name == "Bart"
    assert (result.access_key, result.signature_version, result.decoded_length) == (
        "accessKey1", 4, None)


def test_v4_second_account() -> None:
    result = sign(v4(LISA)).auth()
    assert result.account is not None and result.account.name == "Lisa"


async def test_v4_signed_payload_body_passes_through() -> None:
    body = bytes(range(256)) * 1000
    signed = sign(v4(), "PUT", headers={"Content-Type": "application/octet-stream",
                                        "x-amz-meta-color": "blue"}, body=body)
    assert re.fullmatch(r"[0-9a-f]{64}", signed.headers["x-amz-content-sha256"])
    result = signed.auth()
    pieces = random_split(body, random.Random(1), 70_000)
    assert await read_body(result, pieces) == body


async def test_v4_signed_payload_mismatch_raises_at_end_of_stream() -> None:
    body = b"x" * 300_000  # over the thread-hash threshold in one piece
    result = sign(v4(), "PUT", body=body).auth()
    seen = []
    with pytest.raises(S3Error) as caught:
        async for data in result.body(feed([body[:-1], b"y"])):
            seen.append(data)
    assert caught.value.code == "XAmzContentSHA256Mismatch"
    assert b"".join(seen) == body[:-1] + b"y"  # raised only after the last piece


def test_v4_unsigned_payload_is_accepted() -> None:
    signed = sign(v4(), "PUT", body=b"data", unsigned_payload=True)
    assert signed.headers["x-amz-content-sha256"] == "UNSIGNED-PAYLOAD"
    signed.auth()


async def test_v4_unsigned_payload_body_is_not_checked() -> None:
    result = sign(v4(), "PUT", body=b"data", unsigned_payload=True).auth()
    assert await read_body(result, [b"other", b" bytes"]) == b"other bytes"


def test_v4_query_and_encoded_path_are_signed_as_sent() -> None:
    params = {"list-type": "2", "prefix": "dir/a b+c", "delimiter": "/", "empty": "",
              "encoding-type": "url", "start-after": "caf\u00e9~*"}
    signed = sign(v4(), path="/bucket/caf%C3%A9%20%2B%20~x/y", params=params)
    assert "prefix=dir%2Fa%20b%2Bc" in signed.query
    signed.auth()
    # A form-encoded space ('+') decodes as a space too, as the router reads it.
    signed.query = signed.query.replace("a%20b", "a+b")
    signed.auth()


def test_v4_any_region_is_accepted() -> None:
    sign(v4(region="eu-west-3")).auth()
    sign(v4(region="us-west-2"), "PUT", body=b"x").auth()


def test_v4_generic_signer_needs_content_sha256_header() -> None:
    # Plain SigV4Auth (not S3's) sends no x-amz-content-sha256: S3 demands it.
    rejects("MissingSecurityHeader", sign(SigV4Auth(BART, "s3", "us-east-1")))
    signed = sign(SigV4Auth(BART, "s3", "us-east-1"), headers={
        "x-amz-content-sha256": EMPTY_SHA256})
    assert signed.auth().account is not None


@pytest.mark.parametrize("tamper", [
    "header", "path", "query", "method", "added-query", "signature", "header-case-of-value"])
def test_v4_tampered_request_is_rejected(tamper: str) -> None:
    signed = sign(v4(), "PUT", params={"tagging": ""},
                  headers={"x-amz-meta-color": "blue"}, body=b"payload")
    if tamper == "header":
        signed.headers["x-amz-meta-color"] = "red"
    elif tamper == "header-case-of-value":
        signed.headers["x-amz-meta-color"] = "Blue"
    elif tamper == "path":
        signed.path = "/bucket/other-key"
    elif tamper == "query":
        signed.query = "tagging=1"
    elif tamper == "added-query":
        signed.query += "&versionId=1"
    elif tamper == "method":
        signed.method = "POST"
    elif tamper == "signature":
        signed.headers["Authorization"] = signed.headers["Authorization"][:-4] + "0000"
    rejects("SignatureDoesNotMatch", signed)


def test_v4_unsigned_extra_header_is_ignored() -> None:
    signed = sign(v4())
    signed.headers["X-Forwarded-For"] = "10.0.0.1"
    signed.auth()


# --- SigV4: host and every x-amz-* header must be signed ----------------------------------------

def hand_signed_v4(method: str, path: str, headers: dict[str, str], signed_names: list[str], *,
                   creds: Credentials = BART, when: datetime | None = None,
                   payload: str = EMPTY_SHA256) -> Signed:
    """A SigV4 request signed by the test's own signer over exactly `signed_names`, so a
    request can leave out what botocore would sign (host, x-amz-date, ...)."""
    stamp = (when or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    all_headers: CIMultiDict[str] = CIMultiDict(headers)
    all_headers.setdefault("Host", "127.0.0.1:8000")
    canonical = "\n".join([method, path, "",
                           "".join(f"{n}:{all_headers[n].strip()}\n" for n in signed_names),
                           ";".join(signed_names), payload])
    scope = f"{stamp[:8]}/us-east-1/s3/aws4_request"
    string_to_sign = "\n".join(["AWS4-HMAC-SHA256", stamp, scope,
                                hashlib.sha256(canonical.encode()).hexdigest()])
    signature = hmac.new(_signing_key(creds.secret_key, stamp[:8]), string_to_sign.encode(),
                         hashlib.sha256).hexdigest()
    all_headers["Authorization"] = (f"AWS4-HMAC-SHA256 Credential={creds.access_key}/{scope}, "
                                    f"SignedHeaders={';'.join(signed_names)}, "
                                    f"Signature={signature}")
    signed = object.__new__(Signed)
    signed.method, signed.path, signed.query = method, path, ""
    signed.headers, signed.body = all_headers, b""
    return signed


def test_hand_signer_agrees_with_the_gateway() -> None:
    # The helper is right (so the refusals below are about SignedHeaders, not the signer).
    now = datetime.now(UTC)
    signed = hand_signed_v4("GET", "/bucket/key", {
        "x-amz-date": now.strftime("%Y%m%dT%H%M%SZ"), "x-amz-content-sha256": EMPTY_SHA256},
        ["host", "x-amz-content-sha256", "x-amz-date"], when=now)
    assert signed.auth().account is not None


@pytest.mark.parametrize("added", [
    {"x-amz-acl": "public-read"},
    {"x-amz-copy-source": "/bucket/private", "X-Amz-Acl": "public-read"},
    {"x-amz-meta-new": "1"},
    {"x-amz-grant-read": 'uri="http://acs.amazonaws.com/groups/global/AllUsers"'},
])
def test_v4_unsigned_amz_header_is_refused(added: dict[str, str]) -> None:
    # A captured signed PUT replayed with an added x-amz-* header: the signature still
    # verifies (it never covered the header), so the header must be refused outright.
    signed = sign(v4(), "PUT", body=b"payload")
    for name, value in added.items():
        signed.headers[name] = value
    err = rejects("AccessDenied", signed)
    assert err.status == 403
    assert err.message == "There were headers present in the request which were not signed"
    assert err.extra["HeadersNotSigned"] == ", ".join(sorted(n.lower() for n in added))


def test_v4_duplicate_of_a_signed_amz_header_is_refused() -> None:
    signed = sign(v4(), "PUT", headers={"x-amz-acl": "private"}, body=b"x")
    signed.headers.add("x-amz-acl", "public-read")  # the values joined differ: no match
    rejects("SignatureDoesNotMatch", signed)


def test_v4_host_must_be_signed() -> None:
    now = datetime.now(UTC)
    headers = {"x-amz-date": now.strftime("%Y%m%dT%H%M%SZ"), "x-amz-content-sha256": EMPTY_SHA256}
    signed = hand_signed_v4("GET", "/key", headers, ["x-amz-content-sha256", "x-amz-date"],
                            when=now)
    err = rejects("AccessDenied", signed, host_bucket="other-bucket")
    assert err.extra["HeadersNotSigned"] == "host"


def test_v4_bound_headers_may_be_left_unsigned() -> None:
    # x-amz-content-sha256 is the canonical request's last line and x-amz-date the string to
    # sign's timestamp: a signer may leave them out of SignedHeaders (AWS accepts that).
    now = datetime.now(UTC)
    headers = {"x-amz-date": now.strftime("%Y%m%dT%H%M%SZ"), "x-amz-content-sha256": EMPTY_SHA256}
    assert hand_signed_v4("GET", "/b/k", headers, ["host"], when=now).auth().account is not None
    # ... but their value is still bound: changing it breaks the signature.
    signed = hand_signed_v4("GET", "/b/k", headers, ["host"], when=now)
    signed.headers["x-amz-content-sha256"] = "UNSIGNED-PAYLOAD"
    rejects("SignatureDoesNotMatch", signed)
    # Twice, one value is not the bound one: it must be signed.
    signed = hand_signed_v4("GET", "/b/k", headers, ["host"], when=now)
    signed.headers.add("x-amz-content-sha256", "UNSIGNED-PAYLOAD")
    assert rejects("AccessDenied", signed).extra["HeadersNotSigned"] == "x-amz-content-sha256"


def test_v4_other_unsigned_headers_are_fine() -> None:
    signed = sign(v4())
    for name, value in (("X-Amzn-Trace-Id", "Root=1-abc"), ("User-Agent", "x"),
                        ("Content-Type", "text/plain"), ("x-forwarded-for", "10.0.0.1")):
        signed.headers[name] = value
    assert signed.auth().account is not None


@pytest.mark.parametrize("added", [
    {"x-amz-acl": "public-read"},
    {"x-amz-copy-source": "/bucket/private", "x-amz-acl": "public-read"},
    {"x-amz-date": "20300101T000000Z"},
    {"x-amz-metadata-directive": "REPLACE"},
])
def test_v4_presigned_unsigned_amz_header_is_refused(added: dict[str, str]) -> None:
    # A presigned-PUT holder adding a copy source and a public ACL.
    signed = presign(method="PUT")
    signed.headers.update(added)
    err = rejects("AccessDenied", signed)
    assert err.extra["HeadersNotSigned"] == ", ".join(sorted(added))


def test_v4_presigned_signed_amz_header_is_accepted() -> None:
    signed = presign(method="PUT", headers={"x-amz-acl": "public-read"})
    assert "x-amz-acl" in signed.query.lower()  # botocore lists it in X-Amz-SignedHeaders
    assert signed.auth().account is not None


def test_v4_presigned_content_sha256_header() -> None:
    # Unpinned in the query, the header is the payload line: bound, may stay unsigned.
    signed = presign(method="PUT")
    signed.headers["x-amz-content-sha256"] = "UNSIGNED-PAYLOAD"
    assert signed.auth().account is not None
    # Pinned in the query, a header is a second, unbound value: refused.
    signed = presign(method="PUT", params={"X-Amz-Content-Sha256": "UNSIGNED-PAYLOAD"})
    signed.auth()
    signed.headers["x-amz-content-sha256"] = EMPTY_SHA256
    assert rejects("AccessDenied", signed).extra["HeadersNotSigned"] == "x-amz-content-sha256"


def test_v4_presigned_host_must_be_signed() -> None:
    # A URL presigned (correctly) over a header other than host would work on any bucket
    # host; the test's own presigner builds one.
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    scope = f"{stamp[:8]}/us-east-1/s3/aws4_request"
    params = {"X-Amz-Algorithm": "AWS4-HMAC-SHA256", "X-Amz-Credential": f"accessKey1/{scope}",
              "X-Amz-Date": stamp, "X-Amz-Expires": "600", "X-Amz-SignedHeaders": "range"}
    query = "&".join(f"{k}={v.replace('/', '%2F')}" for k, v in sorted(params.items()))
    canonical = f"GET\n/key\n{query}\nrange:bytes=0-1\n\nrange\nUNSIGNED-PAYLOAD"
    string_to_sign = "\n".join(["AWS4-HMAC-SHA256", stamp, scope,
                                hashlib.sha256(canonical.encode()).hexdigest()])
    signature = hmac.new(_signing_key("verySecretKey1", stamp[:8]), string_to_sign.encode(),
                         hashlib.sha256).hexdigest()
    signed = object.__new__(Signed)
    signed.method, signed.path, signed.body = "GET", "/key", b""
    signed.query = f"{query}&X-Amz-Signature={signature}"
    signed.headers = CIMultiDict({"Host": "other-bucket.localhost:8000", "Range": "bytes=0-1"})
    err = rejects("AccessDenied", signed, host_bucket="other-bucket")
    assert err.extra["HeadersNotSigned"] == "host"


def test_v4_wrong_secret_does_not_leak_secrets() -> None:
    err = rejects("SignatureDoesNotMatch", sign(v4(WRONG_SECRET)))
    text = str(err) + repr(err.extra)
    assert "verySecretKey1" not in text and "notTheSecret" not in text


def test_v4_unknown_key() -> None:
    rejects("InvalidAccessKeyId", sign(v4(UNKNOWN_KEY)))


@pytest.mark.parametrize(("offset", "accepted"), [(14 * 60, True), (-14 * 60, True),
                                                  (16 * 60, False), (-16 * 60, False)])
def test_v4_clock_skew(offset: int, accepted: bool) -> None:
    signed = sign(v4())
    if accepted:
        signed.auth(now=time.time() + offset)
    else:
        rejects("RequestTimeTooSkewed", signed, now=time.time() + offset)


def test_v4_missing_date_is_access_denied() -> None:
    signed = sign(v4())
    del signed.headers["x-amz-date"]
    rejects("AccessDenied", signed)


@pytest.mark.parametrize("mangle", [
    lambda a: a.replace("Signature=", "Sig="),
    lambda a: re.sub(r"SignedHeaders=[^,]*,", "SignedHeaders,", a),
    lambda a: a.replace("/s3/", "/ec2/"),
    lambda a: a.replace("/aws4_request", "/aws5_request"),
    lambda a: re.sub(r"/(\d{8})/", "/19990101/", a),
    lambda a: re.sub(r"Credential=[^,]*", "Credential=accessKey1/us-east-1", a),
])
def test_v4_malformed_authorization(mangle: Any) -> None:
    signed = sign(v4())
    signed.headers["Authorization"] = mangle(signed.headers["Authorization"])
    err = rejects("AuthorizationHeaderMalformed", signed)
    assert err.status == 400


def test_v4_other_service_scope_is_malformed() -> None:
    rejects("AuthorizationHeaderMalformed", sign(v4(service="ec2")))


def test_v4_signed_header_missing_from_request() -> None:
    signed = sign(v4(), headers={"x-amz-meta-a": "1"})
    del signed.headers["x-amz-meta-a"]
    rejects("AccessDenied", signed)


def test_v4_bad_content_sha256_value() -> None:
    # Plain SigV4Auth signs whatever x-amz-content-sha256 it is given (S3SigV4Auth replaces it).
    signed = sign(SigV4Auth(BART, "s3", "us-east-1"), headers={"x-amz-content-sha256": "nope"})
    rejects("InvalidArgument", signed)


def test_v4_signing_keys_are_cached() -> None:
    auth._signing_key.cache_clear()
    sign(v4()).auth()
    sign(v4()).auth()
    info = auth._signing_key.cache_info()
    assert (info.misses, info.hits) == (1, 1)


def test_auth_result_repr_hides_keys() -> None:
    result = sign(v4(), "PUT", body=b"x").auth()
    assert "verySecretKey1" not in repr(result)


# --- SigV4 presigned query --------------------------------------------------------------------

def presign(creds: Credentials = BART, expires: int = 3600, **kwargs: Any) -> Signed:
    return sign(S3SigV4QueryAuth(creds, "s3", "us-east-1", expires=expires), **kwargs)


def test_v4_presigned_get_is_accepted() -> None:
    signed = presign(params={"response-content-type": "text/plain"})
    assert "X-Amz-Signature=" in signed.query and "Authorization" not in signed.headers
    result = signed.auth()
    assert result.account is not None and result.account.name == "Bart"
    assert result.signature_version == 4


async def test_v4_presigned_put_with_any_body() -> None:
    signed = presign(method="PUT")
    signed.headers["Content-Length"] = "5"
    assert await read_body(signed.auth(), [b"hel", b"lo"]) == b"hello"


def test_v4_presigned_week_long_is_accepted() -> None:
    presign(expires=604800).auth(now=time.time() + 604000)


def test_v4_presigned_expired() -> None:
    err = rejects("AccessDenied", presign(expires=60), now=time.time() + 120)
    assert err.message == "Request has expired"


def test_v4_presigned_not_yet_valid() -> None:
    rejects("AccessDenied", presign(), now=time.time() - 3600)


@pytest.mark.parametrize(("expires", "code", "message"), [
    ("0", "AccessDenied", "Request has expired"),
    ("604801", "AuthorizationQueryParametersError", "X-Amz-Expires must be less than a week"),
    pytest.param("9" * 5000, "AuthorizationQueryParametersError",
                 "X-Amz-Expires must be less than a week", id="5000-digits"),
    ("-5", "AuthorizationQueryParametersError", "X-Amz-Expires must be non-negative"),
    ("abc", "AuthorizationQueryParametersError", "X-Amz-Expires should be a number"),
    ("%C2%B2", "AuthorizationQueryParametersError", "X-Amz-Expires should be a number"),  # "²"
    ("", "AuthorizationQueryParametersError", "Query-string authentication version 4 requires"),
])
def test_v4_presigned_bad_expires(expires: str, code: str, message: str) -> None:
    # AWS's codes; "²" passes str.isdigit() and the 5000 digits exceed int()'s limit: no 500.
    signed = presign()
    signed.query = re.sub(r"X-Amz-Expires=\d+", f"X-Amz-Expires={expires}", signed.query)
    err = rejects(code, signed)
    assert err.message.startswith(message)
    assert err.status == (403 if code == "AccessDenied" else 400)


@pytest.mark.parametrize("tamper", ["path", "query", "signature", "signed-header"])
def test_v4_presigned_tampered(tamper: str) -> None:
    signed = presign(headers={"x-amz-meta-a": "1"})
    if tamper == "path":
        signed.path = "/bucket/other"
    elif tamper == "query":
        signed.query += "&versionId=3"
    elif tamper == "signature":
        signed.query = re.sub(r"X-Amz-Signature=\w{4}", "X-Amz-Signature=0000", signed.query)
    elif tamper == "signed-header":
        signed.headers["x-amz-meta-a"] = "2"
    rejects("SignatureDoesNotMatch", signed)


def test_v4_presigned_wrong_secret_and_unknown_key() -> None:
    rejects("SignatureDoesNotMatch", presign(WRONG_SECRET))
    rejects("InvalidAccessKeyId", presign(UNKNOWN_KEY))


def test_v4_presigned_missing_parameter() -> None:
    signed = presign()
    signed.query = re.sub(r"&?X-Amz-SignedHeaders=[^&]*", "", signed.query)
    err = rejects("AuthorizationQueryParametersError", signed)
    assert err.status == 400


# --- SigV2 header and query -------------------------------------------------------------------

def test_v2_header_is_accepted() -> None:
    signed = sign(HmacV1Auth(BART), "PUT", headers={
        "Content-Type": "text/plain", "Content-MD5": "XUFAKrxLKna5cZ2REBfFkg==",
        "x-amz-meta-b": "2", "X-Amz-Meta-A": " 1 "}, body=b"hello")
    assert signed.headers["Authorization"].startswith("AWS accessKey1:")
    result = signed.auth()
    assert result.account is not None and result.account.name == "Bart"
    assert result.signature_version == 2


def test_v2_sub_resources_are_signed() -> None:
    signed = sign(HmacV1Auth(LISA), "PUT", params={"uploadId": "abc/def", "partNumber": "2",
                                                    "ignored": "x"}, body=b"part")
    assert signed.auth().account.name == "Lisa"  # type: ignore[union-attr]
    signed.query = signed.query.replace("partNumber=2", "partNumber=3")
    rejects("SignatureDoesNotMatch", signed)


def test_v2_virtual_hosted_needs_bucket_in_resource() -> None:
    signed = sign(HmacV1Auth(BART), path="/key", host="http://bucket.localhost:8000",
                  auth_path="/bucket/key")
    signed.auth(host_bucket="bucket")
    rejects("SignatureDoesNotMatch", signed)  # without the bucket, the resource differs


@pytest.mark.parametrize("tamper", ["content-type", "path", "amz-header", "method"])
def test_v2_tampered_request_is_rejected(tamper: str) -> None:
    signed = sign(HmacV1Auth(BART), "PUT", headers={"Content-Type": "text/plain",
                                                    "x-amz-acl": "private"}, body=b"x")
    if tamper == "content-type":
        signed.headers["Content-Type"] = "text/html"
    elif tamper == "path":
        signed.path = "/bucket/other"
    elif tamper == "amz-header":
        signed.headers["x-amz-acl"] = "public-read"
    elif tamper == "method":
        signed.method = "DELETE"
    rejects("SignatureDoesNotMatch", signed)


def test_v2_wrong_secret_unknown_key_bad_length() -> None:
    rejects("SignatureDoesNotMatch", sign(HmacV1Auth(WRONG_SECRET)))
    rejects("InvalidAccessKeyId", sign(HmacV1Auth(UNKNOWN_KEY)))
    signed = sign(HmacV1Auth(BART))
    signed.headers["Authorization"] += "xyz"
    rejects("InvalidArgument", signed)


def test_v2_clock_skew_and_missing_date() -> None:
    rejects("RequestTimeTooSkewed", sign(HmacV1Auth(BART)), now=time.time() + 16 * 60)
    signed = sign(HmacV1Auth(BART))
    del signed.headers["Date"]
    rejects("AccessDenied", signed)


def test_v2_streaming_payload_is_invalid() -> None:
    signed = sign(HmacV1Auth(BART), "PUT", headers={"x-amz-content-sha256": STREAMING})
    rejects("InvalidArgument", signed)


def test_v2_query_is_accepted_and_expires() -> None:
    signed = sign(HmacV1QueryAuth(BART, expires=60), params={"acl": ""})
    assert "Signature=" in signed.query
    result = signed.auth()
    assert result.account is not None and result.signature_version == 2
    err = rejects("AccessDenied", signed, now=time.time() + 120)
    assert err.message == "Request has expired"


def test_v2_query_rejections() -> None:
    rejects("SignatureDoesNotMatch", sign(HmacV1QueryAuth(WRONG_SECRET)))
    rejects("InvalidAccessKeyId", sign(HmacV1QueryAuth(UNKNOWN_KEY)))
    signed = sign(HmacV1QueryAuth(BART))
    signed.path = "/bucket/other"
    rejects("SignatureDoesNotMatch", signed)
    signed = sign(HmacV1QueryAuth(BART))
    signed.query = re.sub(r"Expires=\d+", "Expires=soon", signed.query)
    rejects("MissingSecurityHeader", signed)
    # More than the 7-day horizon ahead.
    rejects("AccessDenied", sign(HmacV1QueryAuth(BART, expires=8 * 24 * 3600)))


def test_v2_added_amz_header_is_refused() -> None:
    # SigV2 signs every x-amz-* header present: adding one breaks the signature.
    for signer in (HmacV1Auth(BART), HmacV1QueryAuth(BART)):
        signed = sign(signer, "PUT", body=b"x")
        signed.auth()
        signed.headers["X-Amz-Acl"] = "public-read"
        rejects("SignatureDoesNotMatch", signed)
        signed = sign(signer, "PUT", headers={"x-amz-acl": "private"}, body=b"x")
        signed.headers.add("x-amz-acl", "public-read")  # a second value is signed too
        rejects("SignatureDoesNotMatch", signed)


@pytest.mark.parametrize("expires", ["9" * 5000, "99999999999999999999"])
def test_v2_query_absurd_expires_is_access_denied(expires: str) -> None:
    signed = sign(HmacV1QueryAuth(BART))
    signed.query = re.sub(r"Expires=\d+", f"Expires={expires}", signed.query)
    err = rejects("AccessDenied", signed)
    assert "7 days" in err.message


def test_v2_query_non_ascii_digit_expires() -> None:
    signed = sign(HmacV1QueryAuth(BART))
    signed.query = re.sub(r"Expires=\d+", "Expires=%C2%B2", signed.query)  # "²".isdigit()
    rejects("MissingSecurityHeader", signed)


# --- absurd dates: AWS's 403, never an exception of another kind ---------------------------------

ABSURD_HTTP_DATES = ["Fri, 31 Dec 9999 23:59:59 -2359", "Fri, 31 Dec 9999 23:59:59 GMT",
                     "Mon, 01 Jan 1000000000000000000000 00:00:00 GMT",
                     "Sat, 01 Jan 0000 00:00:00 GMT", "Mon, 01 Jan 1900 00:00:00 +2359",
                     "Thu, 01 Jan 1970 00:00:00 GMT"]


@pytest.mark.parametrize("date", ABSURD_HTTP_DATES)
def test_v2_absurd_date_is_skewed_or_invalid(date: str) -> None:
    signed = sign(HmacV1Auth(BART))
    signed.headers["Date"] = date
    with pytest.raises(S3Error) as caught:
        signed.auth()
    assert caught.value.code in ("RequestTimeTooSkewed", "AccessDenied")
    assert caught.value.status == 403


def test_v2_far_future_date_is_request_time_too_skewed() -> None:
    signed = sign(HmacV1Auth(BART))
    signed.headers["Date"] = "Fri, 31 Dec 9999 23:59:59 -2359"  # year 10000 in UTC
    err = rejects("RequestTimeTooSkewed", signed)
    assert err.extra["RequestTime"] == "Fri, 31 Dec 9999 23:59:59 -2359"
    signed.headers["x-amz-date"] = "99991231T235959Z"  # SigV2 takes x-amz-date first
    err = rejects("RequestTimeTooSkewed", signed)
    assert err.extra["RequestTime"] == "99991231T235959Z"


@pytest.mark.parametrize("date", ABSURD_HTTP_DATES)
def test_v4_absurd_date_header_is_skewed_or_invalid(date: str) -> None:
    signed = sign(v4())
    del signed.headers["x-amz-date"]  # the timestamp then comes from Date
    signed.headers["Date"] = date
    with pytest.raises(S3Error) as caught:
        signed.auth()
    assert caught.value.code in ("RequestTimeTooSkewed", "AccessDenied",
                                 "AuthorizationHeaderMalformed")
    assert caught.value.status in (400, 403)


def test_v4_far_future_date_header_is_request_time_too_skewed() -> None:
    signed = sign(v4())
    del signed.headers["x-amz-date"]
    signed.headers["Date"] = "Fri, 31 Dec 9999 23:59:59 -2359"
    rejects("RequestTimeTooSkewed", signed)


@pytest.mark.parametrize("stamp", ["00010101T000000Z", "99991231T235959Z"])
def test_v4_absurd_x_amz_date_is_request_time_too_skewed(stamp: str) -> None:
    # The credential's date agrees with x-amz-date, so the skew check is what refuses it.
    signed = sign(v4())
    signed.headers["x-amz-date"] = stamp
    signed.headers["Authorization"] = re.sub(r"/\d{8}/", f"/{stamp[:8]}/",
                                             signed.headers["Authorization"])
    err = rejects("RequestTimeTooSkewed", signed)
    assert err.extra["RequestTime"] == stamp


def test_v4_x_amz_date_of_year_zero_is_invalid() -> None:
    signed = sign(v4())
    signed.headers["x-amz-date"] = "00000101T000000Z"
    signed.headers["Authorization"] = re.sub(r"/\d{8}/", "/00000101/",
                                             signed.headers["Authorization"])
    rejects("AccessDenied", signed)


@pytest.mark.parametrize(("stamp", "code", "message"), [
    ("00010101T000000Z", "AccessDenied", "Request has expired"),
    ("99991231T235959Z", "AccessDenied", "Request is not valid yet"),
    ("00000101T000000Z", "AuthorizationQueryParametersError", "X-Amz-Date must be in the ISO8601"),
])
def test_v4_presigned_absurd_date(stamp: str, code: str, message: str) -> None:
    signed = presign()
    signed.query = re.sub(r"X-Amz-Date=\d{8}T\d{6}Z", f"X-Amz-Date={stamp}", signed.query)
    signed.query = re.sub(r"%2F\d{8}%2F", f"%2F{stamp[:8]}%2F", signed.query)
    assert rejects(code, signed).message.startswith(message)


def test_v4_decoded_length_must_be_ascii_digits() -> None:
    signed = sign(SigV4Auth(BART, "s3", "us-east-1"), "PUT", headers={
        "x-amz-content-sha256": STREAMING, "x-amz-decoded-content-length": "\u00b2"})
    rejects("MissingSecurityHeader", signed)


# --- s3cmd's own signers (x-amz-date only for V2; its own query encoding) ---------------------

@pytest.fixture
def s3cmd_config() -> Any:
    from S3.Config import Config
    config = Config()
    saved = (config.access_key, config.secret_key)
    config.access_key, config.secret_key = BART.access_key, BART.secret_key
    yield config
    config.access_key, config.secret_key = saved


def test_s3cmd_v2_signature(s3cmd_config: Any) -> None:
    from S3.Crypto import format_param_str, sign_request_v2
    from S3.SortedDict import SortedDict
    headers = SortedDict(ignore_case=True)
    headers["x-amz-date"] = datetime.now(UTC).strftime("%a, %d %b %Y %H:%M:%S GMT")
    headers["content-type"] = "text/plain"
    params = {"uploadId": "a/b c", "partNumber": "1"}
    signed = sign_request_v2("PUT", "/bucket/my key", params, headers)
    request_headers = CIMultiDict((k, v) for k, v in signed.items())
    result = authenticate("PUT", "/bucket/my%20key", format_param_str(params).lstrip("?"),
                          request_headers, ACCOUNTS)
    assert result.account is not None and result.signature_version == 2


def test_s3cmd_v4_signature(s3cmd_config: Any) -> None:
    from S3.Crypto import format_param_str, sign_request_v4
    from S3.SortedDict import SortedDict
    params = {"prefix": "a/b c", "list-type": "2", "delimiter": "/", "fetch-owner": None}
    signed = sign_request_v4("GET", "127.0.0.1:8000", "/bucket/", params,
                             cur_headers=SortedDict(ignore_case=True))
    request_headers = CIMultiDict((k, v) for k, v in signed.items())
    request_headers["Host"] = "127.0.0.1:8000"
    result = authenticate("GET", "/bucket/", format_param_str(params).lstrip("?"),
                          request_headers, ACCOUNTS)
    assert result.account is not None and result.signature_version == 4


# --- aws-chunked streaming (STREAMING-AWS4-HMAC-SHA256-PAYLOAD) ---------------------------------

# AWS's documented example ("Signature Calculations ... Transferring Payload in Multiple Chunks").
AWS_EXAMPLE_KEY = ("AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
AWS_EXAMPLE_SEED = "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9"
AWS_EXAMPLE_CHUNK_SIGNATURES = [
    "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648",
    "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497",
    "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9",
]
AWS_EXAMPLE_STORE = AccountStore([(Account("example", "example@example.com",
                                           "arn:aws:iam::111122223333:root", "e" * 64,
                                           "111122223333"), [AWS_EXAMPLE_KEY])])


def aws_example() -> tuple[CIMultiDict[str], bytes]:
    signed_headers = ("content-encoding;content-length;host;x-amz-content-sha256;x-amz-date;"
                      "x-amz-decoded-content-length;x-amz-storage-class")
    headers: CIMultiDict[str] = CIMultiDict({
        "Host": "s3.amazonaws.com", "x-amz-date": "20130524T000000Z",
        "x-amz-storage-class": "REDUCED_REDUNDANCY",
        "Authorization": f"AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/"
                         f"s3/aws4_request,SignedHeaders={signed_headers},"
                         f"Signature={AWS_EXAMPLE_SEED}",
        "x-amz-content-sha256": STREAMING, "Content-Encoding": "aws-chunked",
        "x-amz-decoded-content-length": "66560", "Content-Length": "66824"})
    sig1, sig2, sig3 = (s.encode() for s in AWS_EXAMPLE_CHUNK_SIGNATURES)
    body = (b"10000;chunk-signature=" + sig1 + b"\r\n" + b"a" * 65536 + b"\r\n"
            + b"400;chunk-signature=" + sig2 + b"\r\n" + b"a" * 1024 + b"\r\n"
            + b"0;chunk-signature=" + sig3 + b"\r\n\r\n")
    return headers, body


AWS_EXAMPLE_NOW = datetime(2013, 5, 24, 0, 5, tzinfo=UTC).timestamp()


def aws_example_auth(headers: CIMultiDict[str]) -> AuthResult:
    return authenticate("PUT", "/examplebucket/chunkObject.txt", "", headers, AWS_EXAMPLE_STORE,
                        now=AWS_EXAMPLE_NOW)


async def test_aws_chunked_documented_example() -> None:
    headers, body = aws_example()
    assert len(body) == 66824
    result = aws_example_auth(headers)
    assert result.decoded_length == 66560 and result.signature_version == 4
    assert await read_body(result, [body]) == b"a" * 66560


async def test_aws_chunked_documented_example_any_split() -> None:
    headers, body = aws_example()
    rng = random.Random(7)
    for max_piece in (1, 3, 89, 1000, 70_000):
        pieces = random_split(body, rng, max_piece)
        assert await read_body(aws_example_auth(headers), pieces) == b"a" * 66560


def test_aws_chunked_documented_example_seed_tampered() -> None:
    headers, _ = aws_example()
    headers["x-amz-storage-class"] = "STANDARD"
    with pytest.raises(S3Error) as caught:
        aws_example_auth(headers)
    assert caught.value.code == "SignatureDoesNotMatch"


@pytest.mark.parametrize("position", [0, 1, 2])
async def test_aws_chunked_chunk_signature_tampered(position: int) -> None:
    headers, body = aws_example()
    signature = AWS_EXAMPLE_CHUNK_SIGNATURES[position].encode()
    body = body.replace(signature, signature[:-1] + (b"0" if signature[-1:] != b"0" else b"1"))
    with pytest.raises(S3Error) as caught:
        await read_body(aws_example_auth(headers), [body])
    assert caught.value.code == "SignatureDoesNotMatch"


async def test_aws_chunked_data_tampered() -> None:
    headers, body = aws_example()
    index = body.index(b"aaaa") + 1000
    body = body[:index] + b"b" + body[index + 1:]
    with pytest.raises(S3Error) as caught:
        await read_body(aws_example_auth(headers), [body])
    assert caught.value.code == "SignatureDoesNotMatch"


def _signing_key(secret: str, date: str, region: str = "us-east-1") -> bytes:
    """The test's own SigV4 key derivation, independent of the module under test."""
    key = ("AWS4" + secret).encode()
    for part in (date, region, "s3", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def streaming_put(chunks: list[bytes], creds: Credentials = BART, *,
                  decoded_length: int | None = None) -> tuple[Signed, bytes]:
    """Seed-sign with botocore, then frame and chunk-sign with the test's own signer."""
    total = sum(len(c) for c in chunks) if decoded_length is None else decoded_length
    signed = sign(SigV4Auth(creds, "s3", "us-east-1"), "PUT", headers={
        "x-amz-content-sha256": STREAMING, "Content-Encoding": "aws-chunked",
        "x-amz-decoded-content-length": str(total)})
    timestamp = signed.headers["x-amz-date"]
    scope = f"{timestamp[:8]}/us-east-1/s3/aws4_request"
    previous = signed.headers["Authorization"].rsplit("Signature=", 1)[1]
    key = _signing_key(creds.secret_key, timestamp[:8])
    framed = bytearray()
    for chunk in [*chunks, b""]:
        string_to_sign = "\n".join(["AWS4-HMAC-SHA256-PAYLOAD", timestamp, scope, previous,
                                    EMPTY_SHA256, hashlib.sha256(chunk).hexdigest()])
        previous = hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()
        framed += f"{len(chunk):x};chunk-signature={previous}\r\n".encode() + chunk + b"\r\n"
    return signed, bytes(framed)


async def test_aws_chunked_own_signer_random_rechunking() -> None:
    rng = random.Random(42)
    chunks = [rng.randbytes(n) for n in (65536, 300_000, 17, 1)]
    data = b"".join(chunks)
    signed, framed = streaming_put(chunks)
    for max_piece in (2, 100, 5000, 400_000, len(framed)):
        pieces = random_split(framed, rng, max_piece)
        result = signed.auth()
        assert result.decoded_length == len(data)
        assert await read_body(result, pieces) == data


async def test_aws_chunked_memory_is_bounded_by_incoming_pieces() -> None:
    # A 1 MiB chunk fed in 4 KiB pieces comes out in pieces no bigger than what came in.
    chunk = random.Random(3).randbytes(1 << 20)
    signed, framed = streaming_put([chunk])
    pieces = [framed[i:i + 4096] for i in range(0, len(framed), 4096)]
    sizes = [len(data) async for data in signed.auth().body(feed(pieces))]
    assert sum(sizes) == len(chunk) and max(sizes) <= 4096


async def test_aws_chunked_big_piece_hashed_off_loop() -> None:
    chunk = b"z" * (1 << 20)
    signed, framed = streaming_put([chunk, chunk])
    assert await read_body(signed.auth(), [framed]) == chunk * 2


async def test_aws_chunked_wrong_secret_fails_at_seed() -> None:
    with pytest.raises(S3Error) as caught:
        streaming_put([b"abc"], WRONG_SECRET)[0].auth()
    assert caught.value.code == "SignatureDoesNotMatch"


@pytest.mark.parametrize(("mangle", "code"), [
    (lambda b: b[:-10], "IncompleteBody"),                         # cut inside the final chunk
    (lambda b: b[:200], "IncompleteBody"),                          # cut inside the data
    (lambda b: b[:-2], None),                                       # final CRLF omitted: fine
    (lambda b: b + b"junk", "InvalidArgument"),                     # data after the final chunk
    (lambda b: b.replace(b"\r\n", b"\n", 1), "InvalidArgument"),    # header without CRLF
    (lambda b: b"zz" + b[b.index(b";"):], "InvalidArgument"),       # size not hex
    (lambda b: b.replace(b";chunk-signature=", b";chunk-sig=", 1), "InvalidArgument"),
    (lambda b: b[:b.index(b"\r\n") + 2 + 1000] + b"XX" + b[b.index(b"\r\n") + 1004:],
     "InvalidArgument"),                                            # data not followed by CRLF
    (lambda b: b"1" * 5000, "InvalidArgument"),                     # endless header line
])
async def test_aws_chunked_bad_framing(mangle: Any, code: str | None) -> None:
    signed, framed = streaming_put([b"q" * 1000])
    body = mangle(framed)
    if code is None:
        assert await read_body(signed.auth(), [body]) == b"q" * 1000
        return
    with pytest.raises(S3Error) as caught:
        await read_body(signed.auth(), random_split(body, random.Random(5), 300))
    assert caught.value.code == code


@pytest.mark.parametrize("declared", [999, 1001])
async def test_aws_chunked_decoded_length_must_match(declared: int) -> None:
    signed, framed = streaming_put([b"q" * 1000], decoded_length=declared)
    with pytest.raises(S3Error) as caught:
        await read_body(signed.auth(), [framed])
    assert caught.value.code in ("IncompleteBody", "InvalidArgument")


def test_aws_chunked_needs_decoded_length() -> None:
    signed = sign(SigV4Auth(BART, "s3", "us-east-1"), "PUT",
                  headers={"x-amz-content-sha256": STREAMING})
    rejects("MissingSecurityHeader", signed)


def test_aws_chunked_only_for_put() -> None:
    signed = sign(SigV4Auth(BART, "s3", "us-east-1"), "POST", headers={
        "x-amz-content-sha256": STREAMING,
                                         "x-amz-decoded-content-length": "1"})
    rejects("InvalidArgument", signed)


# --- aws-chunked with an unsigned checksum trailer (botocore's default over TLS) ----------------

TRAILER_MODE = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"


def trailer_put(data: bytes, checksum_cls: Any = Crc32Checksum,
                trailer: str = "x-amz-checksum-crc32", *,
                with_length: bool = True) -> tuple[Signed, bytes]:
    headers = {"x-amz-content-sha256": TRAILER_MODE, "Content-Encoding": "aws-chunked",
               "x-amz-trailer": trailer}
    if with_length:
        headers["x-amz-decoded-content-length"] = str(len(data))
    signed = sign(SigV4Auth(BART, "s3", "us-east-1"), "PUT", headers=headers)
    framed = AwsChunkedWrapper(io.BytesIO(data), checksum_cls=checksum_cls,
                               checksum_name=trailer, chunk_size=65536).read()
    return signed, framed


@pytest.mark.parametrize(("checksum_cls", "trailer"), [
    (Crc32Checksum, "x-amz-checksum-crc32"), (Sha256Checksum, "x-amz-checksum-sha256")])
async def test_unsigned_trailer_decodes_any_split(checksum_cls: Any, trailer: str) -> None:
    data = random.Random(11).randbytes(200_000)
    signed, framed = trailer_put(data, checksum_cls, trailer)
    assert framed.endswith(b"\r\n\r\n") and trailer.encode() in framed
    rng = random.Random(12)
    for max_piece in (1, 50, 70_000, len(framed)):
        result = signed.auth()
        assert result.aws_chunked and result.decoded_length == len(data)
        assert await read_body(result, random_split(framed, rng, max_piece)) == data


async def test_unsigned_trailer_without_decoded_length() -> None:
    signed, framed = trailer_put(b"abc" * 1000, with_length=False)
    result = signed.auth()
    assert result.decoded_length is None
    assert await read_body(result, [framed]) == b"abc" * 1000


@pytest.mark.parametrize(("mangle", "code"), [
    (lambda b: b.replace(b"a" * 10, b"b" * 10, 1), "BadDigest"),
    (lambda b: re.sub(rb"x-amz-checksum-crc32:[^\r]*\r\n", b"", b), "InvalidRequest"),
    (lambda b: b[:-2], "IncompleteBody"),
    (lambda b: b[:1000], "IncompleteBody"),
])
async def test_unsigned_trailer_rejections(mangle: Any, code: str) -> None:
    signed, framed = trailer_put(b"a" * 100_000)
    with pytest.raises(S3Error) as caught:
        await read_body(signed.auth(), [mangle(framed)])
    assert caught.value.code == code


async def test_unsigned_trailer_section_is_bounded() -> None:
    # 100 MB of trailers must not be held: the decoder refuses them once past 16 KiB,
    # long before the stream ends.
    signed, framed = trailer_put(b"abc")
    head = framed[:framed.index(b"0\r\n") + 3]
    fed = 0

    async def endless() -> AsyncIterator[bytes]:
        nonlocal fed
        yield head
        for n in range(100_000):  # ~100 MB of distinct, well-formed trailer lines
            line = f"x-amz-meta-t{n}: {'v' * 1000}\r\n".encode()
            fed += len(line)
            yield line

    with pytest.raises(S3Error) as caught:
        async for _ in signed.auth().body(endless()):
            pass
    assert caught.value.code == "MalformedTrailerError" and caught.value.status == 400
    assert fed <= auth.MAX_TRAILER_BYTES + 2048


async def test_unsigned_trailer_within_bound_is_accepted() -> None:
    # Real trailers are tiny; a few extra ones well under the bound still decode.
    signed, framed = trailer_put(b"abc" * 100)
    extra = b"".join(f"x-amz-meta-{n}: {'v' * 100}\r\n".encode() for n in range(50))
    body = framed[:-2] + extra + b"\r\n"
    assert await read_body(signed.auth(), [body]) == b"abc" * 100


@pytest.mark.parametrize("line", [b"no colon here\r\n", b": empty name\r\n",
                                  b"x-amz-meta-a: " + b"v" * 5000 + b"\r\n"])
async def test_unsigned_trailer_malformed_line(line: bytes) -> None:
    signed, framed = trailer_put(b"abc")
    with pytest.raises(S3Error) as caught:
        await read_body(signed.auth(), [framed[:-2] + line + b"\r\n"])
    assert caught.value.code == "MalformedTrailerError" and caught.value.status == 400


# --- STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER: AWS's own example (sigv4-streaming-trailers) ----

DOC_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
DOC_TRAILER_SIGNATURE = "d81f82fc3505edab99d459891051a732e8730629a2e4a59689829ca17fe2e435"


def doc_signed_trailer(**changes: Any) -> tuple[AuthResult, bytes]:
    """The PUT of AWS's example: 64 KiB + 1 KiB of 'a', chunk signatures chained from the seed,
    then the CRC32C trailer and its signature."""
    result = AuthResult(account=None, access_key="AKIAIOSFODNN7EXAMPLE", signature_version=4,
                        decoded_length=66560)
    result._chunked = auth._StreamingV4(
        _signing_key(DOC_SECRET, "20130524"), "20130524T000000Z",
        "20130524/us-east-1/s3/aws4_request",
        "106e2a8a18243abcf37539882f36619c00e2dfc72633413f02d3b74544bfeb8e",
        True, "x-amz-checksum-crc32c")
    body = (b"10000;chunk-signature=b474d8862b1487a5145d686f57f013e54db672cee1c953b3010fb58501ef5aa2"
            b"\r\n" + b"a" * 65536 + b"\r\n"
            b"400;chunk-signature=1c1344b170168f8e65b41376b44b20fe354e373826ccbbe2c1d40a8cae51e5c7"
            b"\r\n" + b"a" * 1024 + b"\r\n"
            b"0;chunk-signature=2ca2aba2005185cf7159c6277faf83795951dd77a3a99e6e65d5c9f85863f992"
            b"\r\n" + changes.get("trailer", b"x-amz-checksum-crc32c:sOO8/Q==\r\n") +
            b"x-amz-trailer-signature:" + changes.get("signature", DOC_TRAILER_SIGNATURE).encode()
            + b"\r\n\r\n")
    return result, body


async def test_signed_trailer_aws_example() -> None:
    rng = random.Random(21)
    for max_piece in (1, 100, 70_000):
        result, body = doc_signed_trailer()
        assert result.trailer_mode and result.trailer == "x-amz-checksum-crc32c"
        assert await read_body(result, random_split(body, rng, max_piece)) == b"a" * 66560
        assert result.trailers == {"x-amz-checksum-crc32c": "sOO8/Q=="}


@pytest.mark.parametrize(("changes", "code"), [
    ({"signature": "0" * 64}, "SignatureDoesNotMatch"),
    # Another value changes what the trailer signature covers.
    ({"trailer": b"x-amz-checksum-crc32c:AAAAAA==\r\n"}, "SignatureDoesNotMatch"),
    ({"trailer": b""}, "SignatureDoesNotMatch"),
])
async def test_signed_trailer_rejections(changes: dict[str, Any], code: str) -> None:
    result, body = doc_signed_trailer(**changes)
    with pytest.raises(S3Error) as caught:
        await read_body(result, [body])
    assert caught.value.code == code


async def test_signed_trailer_signature_is_required() -> None:
    result, body = doc_signed_trailer()
    cut = body[:body.index(b"x-amz-trailer-signature")] + b"\r\n"
    with pytest.raises(S3Error) as caught:
        await read_body(result, [cut])
    assert caught.value.code == "MalformedTrailerError"


@pytest.mark.parametrize(("algorithm", "trailer"), [
    ("crc32c", "x-amz-checksum-crc32c"), ("crc64nvme", "x-amz-checksum-crc64nvme"),
    ("sha1", "x-amz-checksum-sha1")])
async def test_unsigned_trailer_checks_every_algorithm(algorithm: str, trailer: str) -> None:
    from botocore.httpchecksum import CrtCrc32cChecksum, CrtCrc64NvmeChecksum, Sha1Checksum
    cls = {"crc32c": CrtCrc32cChecksum, "crc64nvme": CrtCrc64NvmeChecksum,
           "sha1": Sha1Checksum}[algorithm]
    data = random.Random(3).randbytes(100_000)
    signed, framed = trailer_put(data, cls, trailer)
    assert await read_body(signed.auth(), [framed]) == data
    with pytest.raises(S3Error) as caught:  # a flipped byte of data: the trailer's value fails
        await read_body(signed.auth(), [framed.replace(data[:50], bytes(50), 1)])
    assert caught.value.code == "BadDigest"
