"""S3 request authentication: SigV4 (header, presigned query, aws-chunked streaming with chunk
signatures, with or without a signed trailer, or unsigned with a checksum trailer) and SigV2
(header, query). Pure logic over the raw request line and headers; no aiohttp here.

`authenticate()` checks everything knowable before the body is read and returns an AuthResult;
`AuthResult.body()` then checks what depends on the body (payload SHA-256, chunk signatures)
while streaming it through. Data is yielded before its check completes (the check needs all of
it), but a failed check raises before the iterator ends, so a consumer that commits only after
the iterator finishes normally never stores unverified bytes.
"""

from __future__ import annotations

import asyncio
import base64
import calendar
import functools
import hashlib
import hmac
import re
import time
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote, unquote, unquote_plus

from gateway import checksums
from gateway.accounts import Account, AccountStore
from gateway.errors import S3Error

V4_ALGORITHM = "AWS4-HMAC-SHA256"
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
STREAMING_PAYLOAD = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
STREAMING_UNSIGNED_TRAILER = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
STREAMING_SIGNED_TRAILER = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"
STREAMING_MODES = (STREAMING_PAYLOAD, STREAMING_SIGNED_TRAILER, STREAMING_UNSIGNED_TRAILER)
TRAILER_SIGNATURE = "x-amz-trailer-signature"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
MAX_SKEW_SECONDS = 15 * 60
MAX_PRESIGN_SECONDS = 7 * 24 * 3600  # 604800, X-Amz-Expires' upper bound and SigV2's horizon
THREAD_HASH_THRESHOLD = 256 * 1024  # below this, a thread hop costs more than the hash
MAX_CHUNK_HEADER = 4096  # "<hex>;chunk-signature=<64 hex>\r\n" is ~90 bytes; more is garbage
MAX_TRAILER_BYTES = 16 * 1024  # a whole aws-chunked trailer section, as AWS bounds it
# x-amz-* headers a SigV4 request may carry without listing them in SignedHeaders, because the
# signature binds their value another way (see _check_headers_signed).
_UNSIGNED_OK_V4_HEADER = frozenset({"x-amz-content-sha256", "x-amz-date"})

# Query parameters that are part of SigV2's canonical resource (AWS's list, plus what botocore
# and s3cmd include: a client's signature only verifies if we pick the same ones).
V2_SUBRESOURCES = frozenset({
    "accelerate", "acl", "analytics", "cors", "defaultObjectAcl", "delete", "inventory",
    "lifecycle", "location", "logging", "metrics", "notification", "object-lock", "partNumber",
    "policy", "replication", "requestPayment", "restore", "select", "select-type", "storageClass",
    "tagging", "torrent", "uploadId", "uploads", "versionId", "versioning", "versions", "website",
    "response-content-type", "response-content-language", "response-expires",
    "response-cache-control", "response-content-disposition", "response-content-encoding",
})

_HEX64_RE = re.compile(r"^[0-9a-fA-F]{64}$")
_UINT_RE = re.compile(r"[0-9]{1,18}")  # ASCII digits only (str.isdigit takes "²"), < 2**63
_CHUNK_SIZE_RE = re.compile(rb"^[0-9a-fA-F]{1,16}$")
_SCOPE_DATE_RE = re.compile(r"^[0-9]{8}$")


# --- result and body verification -------------------------------------------------------------

@dataclass(frozen=True)
class _StreamingV4:
    """What verifying aws-chunked chunk signatures needs; repr hidden (holds the signing key).
    With `with_trailer` (STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER) trailers follow the final
    chunk, signed by x-amz-trailer-signature, chained from the final chunk's signature."""
    signing_key: bytes
    timestamp: str
    scope: str
    seed_signature: str
    with_trailer: bool = False
    trailer: str | None = None  # x-amz-trailer, e.g. "x-amz-checksum-crc32"


@dataclass(frozen=True)
class _UnsignedTrailer:
    """STREAMING-UNSIGNED-PAYLOAD-TRAILER: aws-chunked without signatures, a checksum trailer."""
    trailer: str | None  # x-amz-trailer, e.g. "x-amz-checksum-crc32"


@dataclass
class AuthResult:
    account: Account | None  # None = anonymous request
    access_key: str | None
    signature_version: int | None  # 2, 4 or None
    decoded_length: int | None  # x-amz-decoded-content-length for aws-chunked bodies
    # The body check authenticate() decided on: a hex SHA-256, or aws-chunked decoding.
    expected_sha256: str | None = field(default=None, repr=False)
    _chunked: _StreamingV4 | _UnsignedTrailer | None = field(default=None, repr=False,
                                                             compare=False)
    # The trailers of an aws-chunked body (lower-case names; the trailer signature left out),
    # filled in once body() has read them.
    trailers: dict[str, str] = field(default_factory=dict, repr=False, compare=False)

    @property
    def aws_chunked(self) -> bool:
        """True when the body is aws-chunked framing (body() decodes it)."""
        return self._chunked is not None

    @property
    def trailer_mode(self) -> bool:
        """True when the payload mode carries trailers after the body."""
        chunked = self._chunked
        return isinstance(chunked, _UnsignedTrailer) or (
            isinstance(chunked, _StreamingV4) and chunked.with_trailer)

    @property
    def trailer(self) -> str | None:
        """The trailer x-amz-trailer announces (lower case), when the payload mode has them."""
        return self._chunked.trailer if self.trailer_mode and self._chunked else None

    async def body(self, stream: AsyncIterator[bytes], *,
                   verify_trailer: bool = True) -> AsyncIterator[bytes]:
        """The verified, decoded request body (see the module docstring for when checks fire).
        An announced checksum trailer is verified here unless the caller computes and checks
        it itself (`verify_trailer=False`, ops/common.py HashedBody): its presence, and a
        signed trailer's signature, are checked either way."""
        if self._chunked is not None:
            async for data in _decode_aws_chunked(stream, self._chunked, self.decoded_length,
                                                  verify_trailer, self.trailers):
                yield data
        elif self.expected_sha256 is not None:
            digest = hashlib.sha256()
            async for piece in stream:
                await _hash_update(digest, piece)
                yield piece
            computed = digest.hexdigest()
            if not hmac.compare_digest(computed, self.expected_sha256.lower()):
                raise S3Error("XAmzContentSHA256Mismatch",
                              ClientComputedContentSHA256=self.expected_sha256,
                              S3ComputedContentSHA256=computed)
        else:
            async for piece in stream:
                yield piece


ANONYMOUS = AuthResult(account=None, access_key=None, signature_version=None, decoded_length=None)


async def _hash_update(digest: Any, data: bytes | memoryview) -> None:
    # hashlib (and zlib) release the GIL on big buffers: a worker thread keeps the loop moving.
    if len(data) >= THREAD_HASH_THRESHOLD:
        await asyncio.to_thread(digest.update, data)
    else:
        digest.update(data)


def _bad_framing(message: str) -> S3Error:
    return S3Error("InvalidArgument", f"Invalid aws-chunked body: {message}")


def _bad_trailer(message: str) -> S3Error:
    # AWS's code for trailers it cannot accept (not in S3_ERRORS' defaults: status given).
    return S3Error("MalformedTrailerError", "The request contained trailing data that was not "
                   f"well-formed or did not conform to our published schema: {message}.",
                   status=400)


async def _decode_aws_chunked(stream: AsyncIterator[bytes],
                              mode: _StreamingV4 | _UnsignedTrailer,
                              decoded_length: int | None, verify_trailer: bool = True,
                              trailers_out: dict[str, str] | None = None
                              ) -> AsyncIterator[bytes]:
    """Decode aws-chunked framing from arbitrarily split pieces.

    Signed:   `<hex>;chunk-signature=<sig>\r\n<data>\r\n` ... `0;chunk-signature=<sig>\r\n\r\n`,
              each signature chained from the previous one, starting at the seed signature.
    Signed with trailer: ... `0;chunk-signature=<sig>\r\n<name>:<value>\r\n...`
              `x-amz-trailer-signature:<sig>\r\n\r\n`.
    Unsigned: `<hex>\r\n<data>\r\n` ... `0\r\n<name>:<value>\r\n...\r\n` (trailers).
    The trailers found are put in `trailers_out`.
    """
    header, data, data_crlf, final_crlf, trailers, done = range(6)
    signed = mode if isinstance(mode, _StreamingV4) else None
    has_trailers = signed is None or signed.with_trailer
    phase = header
    pending = bytearray()  # a partial header/trailer line or CRLF; never chunk data
    previous_signature = signed.seed_signature if signed else ""
    chunk_signature = ""
    chunk_digest = hashlib.sha256()
    remaining = 0
    total = 0
    trailer_bytes = 0  # the trailer section is held in memory until the end: bounded
    trailer_values: dict[str, str] = {}
    trailer_signature: str | None = None
    trailer_name = mode.trailer if has_trailers else None
    algorithm = (trailer_name or "").removeprefix(checksums.PREFIX).upper()
    checksum = (checksums.hasher(algorithm) if verify_trailer and trailer_name
                and trailer_name.startswith(checksums.PREFIX) and algorithm in checksums.SIZES
                else None)

    def check_chunk_signature(chunk_hash: str) -> None:
        assert signed is not None
        string_to_sign = "\n".join((
            "AWS4-HMAC-SHA256-PAYLOAD", signed.timestamp, signed.scope,
            previous_signature, EMPTY_SHA256, chunk_hash))
        expected = hmac.new(signed.signing_key, string_to_sign.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, chunk_signature):
            raise S3Error("SignatureDoesNotMatch", "The chunk signature does not match.")

    async for piece in stream:
        view = memoryview(piece)
        pos, size = 0, len(view)
        while pos < size:
            if phase in (header, trailers):  # a line ending in CRLF
                newline = piece.find(b"\n", pos)
                end = size if newline < 0 else newline + 1
                if len(pending) + end - pos > MAX_CHUNK_HEADER:
                    if phase == trailers:
                        raise _bad_trailer("a trailer line is too long")
                    raise _bad_framing("chunk header or trailer too long")
                if phase == trailers:
                    trailer_bytes += end - pos
                    if trailer_bytes > MAX_TRAILER_BYTES:
                        raise _bad_trailer(f"the trailers exceed {MAX_TRAILER_BYTES} bytes")
                pending += view[pos:end]
                pos = end
                if newline < 0:
                    break
                line = bytes(pending)
                pending.clear()
                if phase == trailers:
                    if line == b"\r\n":
                        phase = done
                    else:
                        name, value = _parse_trailer(line)
                        if signed and name == TRAILER_SIGNATURE:
                            trailer_signature = value
                        elif trailer_signature is not None:
                            raise _bad_trailer("a trailer follows the trailer signature")
                        else:
                            trailer_values[name] = value
                    continue
                chunk_size, chunk_signature = _parse_chunk_header(line, signed=signed is not None)
                if chunk_size == 0:
                    if signed:
                        check_chunk_signature(EMPTY_SHA256)
                        previous_signature = chunk_signature  # the trailer's chain
                    if decoded_length is not None and total != decoded_length:
                        raise S3Error("IncompleteBody", f"The aws-chunked body holds {total} bytes; "
                                      f"x-amz-decoded-content-length says {decoded_length}.")
                    phase = trailers if has_trailers else final_crlf
                else:
                    if decoded_length is not None and total + chunk_size > decoded_length:
                        raise _bad_framing("chunks exceed x-amz-decoded-content-length")
                    phase, remaining, chunk_digest = data, chunk_size, hashlib.sha256()
            elif phase == data:
                take = min(remaining, size - pos)
                out = piece if (pos == 0 and take == size) else bytes(view[pos:pos + take])
                if signed:
                    await _hash_update(chunk_digest, out)
                if checksum is not None:
                    await _hash_update(checksum, out)
                pos += take
                remaining -= take
                total += take
                yield out
                if remaining == 0:
                    if signed:
                        check_chunk_signature(chunk_digest.hexdigest())
                        previous_signature = chunk_signature
                    phase = data_crlf
            elif phase in (data_crlf, final_crlf):  # exactly "\r\n"
                take = min(2 - len(pending), size - pos)
                pending += view[pos:pos + take]
                pos += take
                if not b"\r\n".startswith(pending):
                    raise _bad_framing("chunk data not followed by CRLF" if phase == data_crlf
                                       else "data after the final chunk")
                if len(pending) == 2:
                    pending.clear()
                    phase = header if phase == data_crlf else done
            else:
                raise _bad_framing("data after the final chunk")
    # A signed body's last CRLF is optional; everything before it is not.
    if not (phase == done or (phase == final_crlf and not pending)):
        raise S3Error("IncompleteBody", "The aws-chunked body ended before its final chunk.")
    if signed and signed.with_trailer:
        if trailer_signature is None:
            raise _bad_trailer(f"the {TRAILER_SIGNATURE} trailer is missing")
        canonical = "".join(f"{name}:{value}\n" for name, value in sorted(trailer_values.items()))
        string_to_sign = "\n".join((
            "AWS4-HMAC-SHA256-TRAILER", signed.timestamp, signed.scope, previous_signature,
            hashlib.sha256(canonical.encode("latin-1")).hexdigest()))
        expected = hmac.new(signed.signing_key, string_to_sign.encode(),
                            hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, trailer_signature.lower()):
            raise S3Error("SignatureDoesNotMatch", "The trailer signature does not match.")
    if trailers_out is not None:
        trailers_out.update(trailer_values)
    if trailer_name is not None:
        sent = trailer_values.get(trailer_name)
        if sent is None:
            raise S3Error("InvalidRequest", f"The {trailer_name} trailer announced by "
                          "x-amz-trailer is missing.")
        if checksum is not None:
            stated = checksums.decode(algorithm, sent, "trailing header")
            if not hmac.compare_digest(checksum.digest(), stated):
                raise checksums.bad_digest(algorithm)


def _parse_trailer(line: bytes) -> tuple[str, str]:
    name, sep, value = line[:-2].partition(b":")
    if not line.endswith(b"\r\n") or not sep or not name.strip():
        raise _bad_trailer("malformed trailer")
    return name.strip().lower().decode("latin-1"), value.strip().decode("latin-1")


def _parse_chunk_header(line: bytes, *, signed: bool) -> tuple[int, str]:
    if not line.endswith(b"\r\n"):
        raise _bad_framing("chunk header not terminated by CRLF")
    size_part, sep, extension = line[:-2].partition(b";")
    if not _CHUNK_SIZE_RE.fullmatch(size_part) or (signed and not sep):
        raise _bad_framing("malformed chunk header")
    if not signed:
        return int(size_part, 16), ""  # chunk extensions, if any, carry nothing we check
    name, sep, signature = extension.partition(b"=")
    if name != b"chunk-signature" or not _HEX64_RE.fullmatch(signature.decode("latin-1")):
        raise _bad_framing("malformed chunk signature")
    return int(size_part, 16), signature.decode("ascii").lower()


# --- dispatch ---------------------------------------------------------------------------------

def authenticate(method: str, raw_path: str, raw_query: str, headers: Mapping[str, str],
                 accounts: AccountStore, *, host_bucket: str | None = None,
                 now: float | None = None,
                 region: str | Sequence[str] | None = None) -> AuthResult:
    """Authenticate one request from its request line and headers; raise S3Error if it fails.
    `region`: the region(s) a SigV4 signature may be scoped to, the first named in the error
    (None or "*": any)."""
    now = time.time() if now is None else now
    if region == "*":
        region = None
    elif isinstance(region, str):
        region = (region,)
    query = _parse_query(raw_query)
    names = {name for name, _ in query}
    authorization = headers.get("Authorization")
    mechanisms = (authorization is not None) + ("X-Amz-Algorithm" in names) + ("Signature" in names)
    if mechanisms > 1:
        raise S3Error("InvalidArgument", "Only one auth mechanism allowed; only the X-Amz-Algorithm "
                      "query parameter, Signature query string parameter or the Authorization "
                      "header should be specified")
    if authorization is not None:
        if authorization.startswith(V4_ALGORITHM + " "):
            return _v4_header(method, raw_path, query, headers, authorization, accounts, now,
                              region)
        if authorization.startswith("AWS "):
            return _v2_header(method, raw_path, raw_query, query, headers, authorization,
                              accounts, now, host_bucket)
        raise S3Error("AccessDenied", "Unsupported Authorization Type")
    if "X-Amz-Algorithm" in names:
        return _v4_query(method, raw_path, query, headers, accounts, now, region)
    if "Signature" in names:
        return _v2_query(method, raw_path, raw_query, query, headers, accounts, now, host_bucket)
    return ANONYMOUS


# --- shared helpers ---------------------------------------------------------------------------

Query = list[tuple[str, str | None]]  # (decoded name, decoded value or None when no '=')


def _parse_query(raw_query: str) -> Query:
    # '+' decodes to a space, as the router's parse_qsl and CloudServer's querystring do.
    pairs: Query = []
    for item in raw_query.split("&"):
        if not item:
            continue
        name, sep, value = item.partition("=")
        pairs.append((unquote_plus(name, errors="surrogateescape"),
                      unquote_plus(value, errors="surrogateescape") if sep else None))
    return pairs


def _first(query: Query, name: str) -> str | None:
    for key, value in query:
        if key == name:
            return value if value is not None else ""
    return None


def _header_values(headers: Mapping[str, str], name: str) -> list[str]:
    getall = getattr(headers, "getall", None)
    if getall is not None:
        return list(getall(name, []))
    value = headers.get(name)
    return [] if value is None else [value]


def _utf8(text: str) -> bytes:
    # aiohttp decodes header bytes with surrogateescape; this gives the client's bytes back.
    return text.encode("utf-8", "surrogateescape")


def _aws_quote(text: str) -> str:
    return quote(text, safe="-_.~", encoding="utf-8", errors="surrogateescape")


def _lookup(accounts: AccountStore, access_key: str) -> tuple[Account, str]:
    found = accounts.lookup(access_key)
    if found is None:
        raise S3Error("InvalidAccessKeyId", AWSAccessKeyId=access_key)
    return found


# ASCII digits: \d also takes other scripts' digits, which int() then reads.
_ISO_BASIC_RE = re.compile(r"([0-9]{4})([0-9]{2})([0-9]{2})T([0-9]{2})([0-9]{2})([0-9]{2})Z")


def _parse_iso_basic(value: str) -> float | None:
    """Epoch seconds of "20130524T000000Z", else None. (strptime costs ~30 us a call; this
    runs on every signed request.)"""
    match = _ISO_BASIC_RE.fullmatch(value)
    if match is None:
        return None
    year, month, day, hour, minute, second = map(int, match.groups())
    if not (year >= 1 and 1 <= month <= 12 and 1 <= day <= 31 and hour < 24 and minute < 60
            and second < 61):  # (timegm raises on year 0)
        return None
    return float(calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0)))


def _parse_http_date(value: str) -> float | None:
    """Epoch seconds of an ISO 8601 basic ("20130524T000000Z") or RFC 1123 date, else None."""
    value = value.strip()
    basic = _parse_iso_basic(value)
    if basic is not None:
        return basic
    try:
        parsed = parsedate_to_datetime(value)
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return parsed.timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):  # e.g. a 30-digit year
        return None


def _iso_basic(epoch: float) -> str | None:
    """"20130524T000000Z" for `epoch`, or None when no calendar year 1..9999 holds it
    (a parsable but absurd date, such as 9999-12-31 at UTC-23:59, is year 10000 in UTC)."""
    try:
        d = datetime.fromtimestamp(epoch, UTC)
    except (ValueError, OverflowError, OSError):
        return None
    # Not strftime: glibc's %Y does not pad years before 1000 to four digits.
    return f"{d.year:04d}{d.month:02d}{d.day:02d}T{d.hour:02d}{d.minute:02d}{d.second:02d}Z"


def _check_skew(request_time: float, now: float, raw: str) -> None:
    if abs(request_time - now) > MAX_SKEW_SECONDS:
        raise _too_skewed(request_time, now, raw)


def _too_skewed(request_time: float, now: float, raw: str) -> S3Error:
    shown = _iso_basic(request_time)
    if shown is None:  # echo what was sent, if it is harmless text
        shown = raw.strip()[:64] if raw.isascii() and raw.isprintable() else ""
    return S3Error("RequestTimeTooSkewed", RequestTime=shown, ServerTime=_iso_basic(now) or "",
                   MaxAllowedSkewMilliseconds=str(MAX_SKEW_SECONDS * 1000))


def _payload_mode(value: str | None, *, allow_streaming: bool) -> str | None:
    """Validate x-amz-content-sha256: the hex hash to verify, or None when nothing to verify."""
    if value is None or value == UNSIGNED_PAYLOAD:
        return None
    if value in STREAMING_MODES and allow_streaming:
        return value
    if _HEX64_RE.fullmatch(value):
        return value.lower()
    if value.startswith("STREAMING-"):
        raise S3Error("InvalidArgument", f"Unsupported x-amz-content-sha256 mode {value}",
                      ArgumentName="x-amz-content-sha256", ArgumentValue=value)
    raise S3Error("InvalidArgument", "x-amz-content-sha256 must be UNSIGNED-PAYLOAD, "
                  "STREAMING-AWS4-HMAC-SHA256-PAYLOAD, STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER, "
                  "STREAMING-UNSIGNED-PAYLOAD-TRAILER, or a valid sha256 value.",
                  ArgumentName="x-amz-content-sha256", ArgumentValue=value)


# --- SigV4 ------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=256)
def _signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    # Four chained HMACs per (secret, day, region, service): worth caching across requests.
    key = ("AWS4" + secret).encode()
    for part in (date, region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


@dataclass(frozen=True)
class _Credential:
    access_key: str
    date: str
    region: str
    service: str

    @property
    def scope(self) -> str:
        return f"{self.date}/{self.region}/{self.service}/aws4_request"


def _parse_credential(credential: str, error: str) -> _Credential:
    parts = credential.rsplit("/", 4)
    if len(parts) != 5 or not parts[0] or not _SCOPE_DATE_RE.fullmatch(parts[1]) or not parts[2]:
        raise S3Error(error, "The authorization header is malformed; the Credential is mal-formed; "
                      "expecting \"<YOUR-AKID>/YYYYMMDD/REGION/SERVICE/aws4_request\".",
                      status=400)
    access_key, date, region, service, terminator = parts
    if service != "s3":
        raise S3Error(error, f"The authorization header is malformed; incorrect service "
                      f"\"{service}\". This endpoint belongs to \"s3\".", status=400)
    if terminator != "aws4_request":
        raise S3Error(error, f"The authorization header is malformed; incorrect terminal "
                      f"\"{terminator}\". This endpoint uses \"aws4_request\".", status=400)
    return _Credential(access_key, date, region, service)


def _check_region(credential: _Credential, expected: Sequence[str] | None, error: str,
                  preamble: str) -> None:
    """A signature scoped to a region the gateway does not answer for is refused as AWS
    refuses one for another bucket's region: naming the expected region (the first), which
    SDKs then sign for."""
    if expected is not None and credential.region not in expected:
        shown = credential.region if credential.region.isprintable() else "?"
        raise S3Error(error, f"{preamble} the region '{shown[:64]}' is wrong; expecting "
                      f"'{expected[0]}'", status=400, Region=expected[0])


def _v4_canonical_request(method: str, raw_path: str, query: Query, headers: Mapping[str, str],
                          signed_headers: list[str], payload_hash: str,
                          exclude: str | None = None) -> str:
    # S3 signs the path exactly as sent (no re-encoding, no dot-segment normalization).
    canonical_query = "&".join(
        f"{name}={value}" for name, value in sorted(
            (_aws_quote(name), _aws_quote(value or "")) for name, value in query if name != exclude))
    header_lines = []
    for name in signed_headers:
        values = _header_values(headers, name)
        if not values:
            raise S3Error("AccessDenied", f"Header {name} is signed but missing from the request")
        header_lines.append(f"{name}:{','.join(' '.join(v.split()) for v in values)}\n")
    return "\n".join((method.upper(), raw_path or "/", canonical_query, "".join(header_lines),
                      ";".join(signed_headers), payload_hash))


def _check_headers_signed(headers: Mapping[str, str], signed_headers: list[str],
                          bound: Iterable[str] = ()) -> None:
    """Refuse a SigV4 request whose `host`, or any x-amz-* header it carries, is not signed.

    The signature covers only what SignedHeaders lists: an x-amz-* header outside it (an ACL,
    a copy source, ...) could be added to a captured or presigned request and change what it
    does, and an unsigned Host lets a request meant for one virtual-hosted bucket be replayed
    on another. AWS refuses both with this error. `bound` names x-amz-* headers whose single
    value the signature binds anyway (the payload hash line, the string-to-sign timestamp)."""
    signed = set(signed_headers)
    exempt = {name for name in bound if len(_header_values(headers, name)) == 1}
    missing = sorted({name.lower() for name in headers.keys()
                      if name.lower().startswith("x-amz-") and name.lower() not in signed
                      and name.lower() not in exempt})
    if "host" not in signed:
        missing.insert(0, "host")
    if missing:
        raise S3Error("AccessDenied", "There were headers present in the request which were "
                      "not signed", HeadersNotSigned=", ".join(missing))


def _v4_verify(canonical_request: str, timestamp: str, credential: _Credential, secret: str,
               signature: str) -> bytes:
    """Check `signature`; return the signing key (aws-chunked bodies need it)."""
    string_to_sign = "\n".join((
        V4_ALGORITHM, timestamp, credential.scope,
        hashlib.sha256(_utf8(canonical_request)).hexdigest()))
    key = _signing_key(secret, credential.date, credential.region, credential.service)
    expected = hmac.new(key, _utf8(string_to_sign), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected.encode(), _utf8(signature.lower())):
        raise S3Error("SignatureDoesNotMatch", AWSAccessKeyId=credential.access_key,
                      StringToSign=string_to_sign, SignatureProvided=signature,
                      CanonicalRequest=canonical_request)
    return key


def _v4_timestamp(headers: Mapping[str, str], now: float) -> tuple[str, float, str]:
    """The string-to-sign timestamp (x-amz-date, else Date), its epoch seconds, and the
    header text it came from."""
    raw = headers.get("x-amz-date") or headers.get("Date")
    when = _parse_http_date(raw) if raw else None
    if raw is None or when is None:
        raise S3Error("AccessDenied", "AWS authentication requires a valid Date or x-amz-date header")
    if raw == headers.get("x-amz-date") and _ISO_BASIC_RE.fullmatch(raw):
        return raw, when, raw  # already in the string-to-sign's form
    timestamp = _iso_basic(when)
    if timestamp is None:  # no calendar holds it, so it is far from now
        raise _too_skewed(when, now, raw)
    return timestamp, when, raw


def _v4_header(method: str, raw_path: str, query: Query, headers: Mapping[str, str],
               authorization: str, accounts: AccountStore, now: float,
               region: Sequence[str] | None = None) -> AuthResult:
    fields: dict[str, str] = {}
    for item in authorization[len(V4_ALGORITHM):].split(","):
        name, sep, value = item.strip().partition("=")
        if not sep:
            raise S3Error("AuthorizationHeaderMalformed",
                          f"The authorization header is malformed; '{item.strip()}' is not name=value.")
        fields[name] = value.strip()
    for required in ("Credential", "SignedHeaders", "Signature"):
        if not fields.get(required):
            raise S3Error("AuthorizationHeaderMalformed",
                          f"The authorization header is malformed; missing {required}.")
    credential = _parse_credential(fields["Credential"], "AuthorizationHeaderMalformed")
    _check_region(credential, region, "AuthorizationHeaderMalformed",
                  "The authorization header is malformed;")
    signed_headers = fields["SignedHeaders"].lower().split(";")
    # x-amz-content-sha256 is the canonical request's payload line and x-amz-date (when
    # present, it is the timestamp) is in the string to sign: both are bound unlisted.
    _check_headers_signed(headers, signed_headers, _UNSIGNED_OK_V4_HEADER
                          if headers.get("x-amz-date") else ("x-amz-content-sha256",))

    content_sha256 = headers.get("x-amz-content-sha256")
    if content_sha256 is None:
        raise S3Error("MissingSecurityHeader", "Missing required header for this request: "
                      "x-amz-content-sha256", MissingHeaderName="x-amz-content-sha256")
    mode = _payload_mode(content_sha256, allow_streaming=True)

    timestamp, request_time, raw_date = _v4_timestamp(headers, now)
    if timestamp[:8] != credential.date:
        raise S3Error("AuthorizationHeaderMalformed", "The authorization header is malformed; "
                      "Invalid credential date. Date is not the same as X-Amz-Date.")
    _check_skew(request_time, now, raw_date)

    account, secret = _lookup(accounts, credential.access_key)
    canonical = _v4_canonical_request(method, raw_path, query, headers, signed_headers,
                                      content_sha256)
    key = _v4_verify(canonical, timestamp, credential, secret, fields["Signature"])

    result = AuthResult(account=account, access_key=credential.access_key, signature_version=4,
                        decoded_length=None)
    if mode in STREAMING_MODES:
        if method.upper() != "PUT":
            raise S3Error("InvalidArgument", "aws-chunked payloads are only supported with PUT")
        decoded = headers.get("x-amz-decoded-content-length")
        if decoded is not None and _UINT_RE.fullmatch(decoded.strip()):
            result.decoded_length = int(decoded)
        elif mode != STREAMING_UNSIGNED_TRAILER:
            raise S3Error("MissingSecurityHeader", "Missing required header for this request: "
                          "x-amz-decoded-content-length",
                          MissingHeaderName="x-amz-decoded-content-length")
        # (botocore omits the decoded length for trailer uploads of unknown size.)
        trailer_header = headers.get("x-amz-trailer")
        trailer = trailer_header.strip().lower() if trailer_header else None
        if mode == STREAMING_UNSIGNED_TRAILER:
            result._chunked = _UnsignedTrailer(trailer)
        else:
            with_trailer = mode == STREAMING_SIGNED_TRAILER
            result._chunked = _StreamingV4(key, timestamp, credential.scope,
                                           fields["Signature"].lower(), with_trailer,
                                           trailer if with_trailer else None)
    else:
        result.expected_sha256 = mode
    return result


def _v4_query(method: str, raw_path: str, query: Query, headers: Mapping[str, str],
              accounts: AccountStore, now: float,
              region: Sequence[str] | None = None) -> AuthResult:
    error = "AuthorizationQueryParametersError"
    params = {name: _first(query, name) for name in (
        "X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Date", "X-Amz-Expires",
        "X-Amz-SignedHeaders", "X-Amz-Signature")}
    if params["X-Amz-Algorithm"] != V4_ALGORITHM:
        raise S3Error(error, "X-Amz-Algorithm only supports \"AWS4-HMAC-SHA256\"", status=400)
    if not all(params.values()):
        raise S3Error(error, "Query-string authentication version 4 requires the X-Amz-Algorithm, "
                      "X-Amz-Credential, X-Amz-Signature, X-Amz-Date, X-Amz-SignedHeaders, and "
                      "X-Amz-Expires parameters.", status=400)
    expires_text = params["X-Amz-Expires"] or ""
    expires = _presign_expires(expires_text)
    credential = _parse_credential(params["X-Amz-Credential"] or "", error)
    _check_region(credential, region, error, "Error parsing the X-Amz-Credential parameter;")
    timestamp = params["X-Amz-Date"] or ""
    parsed = _parse_iso_basic(timestamp)
    if parsed is None:
        raise S3Error(error, "X-Amz-Date must be in the ISO8601 Long Format "
                      "\"yyyyMMdd'T'HHmmss'Z'\"", status=400)
    signed_at = parsed
    if timestamp[:8] != credential.date:
        raise S3Error(error, "Invalid credential date. Date is not the same as X-Amz-Date.",
                      status=400)
    if signed_at - now > MAX_SKEW_SECONDS:
        raise S3Error("AccessDenied", "Request is not valid yet")
    if expires == 0 or now > signed_at + expires:
        raise S3Error("AccessDenied", "Request has expired", **{"X-Amz-Expires": expires_text},
                      Expires=_iso_basic(signed_at + expires) or timestamp,
                      ServerTime=_iso_basic(now) or "")

    # A presigned URL's payload is unsigned unless the signer pinned one (query, then header).
    pinned = _first(query, "X-Amz-Content-Sha256")
    content_sha256 = pinned or headers.get("x-amz-content-sha256") or UNSIGNED_PAYLOAD
    signed_headers = (params["X-Amz-SignedHeaders"] or "").lower().split(";")
    # The header's value is the payload line only when the query pins none; x-amz-date is not
    # what a presigned request's timestamp comes from, so it must be signed like the rest.
    _check_headers_signed(headers, signed_headers, () if pinned else ("x-amz-content-sha256",))
    mode = _payload_mode(content_sha256, allow_streaming=False)
    account, secret = _lookup(accounts, credential.access_key)
    canonical = _v4_canonical_request(method, raw_path, query, headers, signed_headers,
                                      content_sha256, exclude="X-Amz-Signature")
    _v4_verify(canonical, timestamp, credential, secret, params["X-Amz-Signature"] or "")
    return AuthResult(account=account, access_key=credential.access_key, signature_version=4,
                      decoded_length=None, expected_sha256=mode)


def _presign_expires(text: str) -> int:
    """X-Amz-Expires as seconds (0 means already expired), or AWS's error for the value."""
    error = "AuthorizationQueryParametersError"
    if not re.fullmatch(r"-?[0-9]+", text):
        raise S3Error(error, "X-Amz-Expires should be a number", status=400)
    if text.startswith("-"):
        raise S3Error(error, "X-Amz-Expires must be non-negative", status=400)
    digits = text.lstrip("0") or "0"
    if len(digits) > 7 or int(digits) > MAX_PRESIGN_SECONDS:  # 7 digits: int() stays cheap
        raise S3Error(error, "X-Amz-Expires must be less than a week (in seconds) that is "
                      f"{MAX_PRESIGN_SECONDS}", status=400)
    return int(digits)


# --- SigV2 ------------------------------------------------------------------------------------

def _v2_string_to_sign(method: str, headers: Mapping[str, str], date_line: str,
                       resource: str) -> str:
    amz: dict[str, list[str]] = {}
    for name in headers.keys():
        lower = name.lower()
        if lower.startswith("x-amz-") and lower not in amz:
            amz[lower] = [v.strip() for v in _header_values(headers, lower)]
    lines = [method.upper(), (headers.get("Content-MD5") or "").strip(),
             (headers.get("Content-Type") or "").strip(), date_line]
    lines += [f"{name}:{','.join(amz[name])}" for name in sorted(amz)]
    lines.append(resource)
    return "\n".join(lines)


def _v2_resources(raw_path: str, query: Query, raw_query: str,
                  host_bucket: str | None) -> list[str]:
    """Candidate canonical resources: sub-resource values decoded (AWS, botocore) or as sent
    (s3cmd quotes them); both are tried so either client style verifies."""
    path = f"/{host_bucket}{raw_path or '/'}" if host_bucket else (raw_path or "/")

    def render(pairs: Iterable[tuple[str, str | None]]) -> str:
        chosen = sorted((p for p in pairs if p[0] in V2_SUBRESOURCES), key=lambda p: p[0])
        if not chosen:
            return path
        return path + "?" + "&".join(n if v is None else f"{n}={v}" for n, v in chosen)

    candidates = [render(query)]
    if raw_query:
        raw_pairs = []
        for item in raw_query.split("&"):
            if item:
                name, sep, value = item.partition("=")
                raw_pairs.append((unquote(name), value if sep else None))
        as_sent = render(raw_pairs)
        if as_sent not in candidates:
            candidates.append(as_sent)
    return candidates


def _v2_verify(method: str, headers: Mapping[str, str], date_lines: list[str],
               resources: list[str], secret: str, signature: str, access_key: str) -> None:
    if len(signature) == 28:
        digestmod = hashlib.sha1
    elif len(signature) == 44:
        digestmod = hashlib.sha256
    else:
        raise S3Error("InvalidArgument", "The V2 signature has an invalid length",
                      ArgumentName="Signature")
    provided = _utf8(signature)
    first = ""
    matched = False
    for date_line in date_lines:
        for resource in resources:
            string_to_sign = _v2_string_to_sign(method, headers, date_line, resource)
            first = first or string_to_sign
            digest = hmac.new(_utf8(secret), _utf8(string_to_sign), digestmod).digest()
            # Evaluate every candidate (no early exit) so timing does not reveal which matched.
            matched |= hmac.compare_digest(base64.b64encode(digest), provided)
    if not matched:
        raise S3Error("SignatureDoesNotMatch", AWSAccessKeyId=access_key, StringToSign=first,
                      SignatureProvided=signature)


def _v2_check_payload(headers: Mapping[str, str]) -> str | None:
    # aws-chunked framing is signed with SigV4 chunk signatures; it cannot come with SigV2.
    return _payload_mode(headers.get("x-amz-content-sha256"), allow_streaming=False)


def _v2_header(method: str, raw_path: str, raw_query: str, query: Query, headers: Mapping[str, str],
               authorization: str, accounts: AccountStore, now: float,
               host_bucket: str | None) -> AuthResult:
    access_key, sep, signature = authorization[len("AWS "):].strip().rpartition(":")
    if not sep or not access_key or not signature:
        raise S3Error("InvalidArgument", "AWS authorization header is invalid. "
                      "Expected AwsAccessKeyId:signature", ArgumentName="Authorization")
    amz_date, http_date = headers.get("x-amz-date"), headers.get("Date")
    raw_date = amz_date or http_date
    when = _parse_http_date(raw_date) if raw_date else None
    if raw_date is None or when is None:
        raise S3Error("AccessDenied", "AWS authentication requires a valid Date or x-amz-date header")
    _check_skew(when, now, raw_date)
    expected_sha256 = _v2_check_payload(headers)
    account, secret = _lookup(accounts, access_key)
    # AWS leaves the Date line empty when x-amz-date is present; CloudServer (and botocore,
    # which sends both) uses the Date header: accept either when both are present.
    date_lines = [(http_date or "").strip()]
    if amz_date and http_date:
        date_lines.append("")
    resources = _v2_resources(raw_path, query, raw_query, host_bucket)
    _v2_verify(method, headers, date_lines, resources, secret, signature, access_key)
    return AuthResult(account=account, access_key=access_key, signature_version=2,
                      decoded_length=None, expected_sha256=expected_sha256)


def _v2_query(method: str, raw_path: str, raw_query: str, query: Query, headers: Mapping[str, str],
              accounts: AccountStore, now: float, host_bucket: str | None) -> AuthResult:
    access_key = _first(query, "AWSAccessKeyId")
    signature = _first(query, "Signature")
    expires_text = _first(query, "Expires")
    if not access_key or not signature:
        raise S3Error("AccessDenied", "Query-string authentication requires the Signature, "
                      "Expires and AWSAccessKeyId parameters")
    if expires_text is None or not re.fullmatch(r"[0-9]+", expires_text.strip()):
        raise S3Error("MissingSecurityHeader", "Missing required header for this request: Expires",
                      MissingHeaderName="Expires")
    digits = expires_text.strip().lstrip("0") or "0"
    # Past 18 digits it is surely beyond the horizon (and int() of thousands of digits fails).
    if len(digits) > 18 or int(digits) > now + MAX_PRESIGN_SECONDS:
        raise S3Error("AccessDenied", "Presigned URLs may be valid for at most 7 days")
    if now > int(digits):
        raise S3Error("AccessDenied", "Request has expired", Expires=expires_text.strip())
    expected_sha256 = _v2_check_payload(headers)
    account, secret = _lookup(accounts, access_key)
    resources = _v2_resources(raw_path, query, raw_query, host_bucket)
    _v2_verify(method, headers, [expires_text.strip()], resources, secret, signature, access_key)
    return AuthResult(account=account, access_key=access_key, signature_version=2,
                      decoded_length=None, expected_sha256=expected_sha256)

