"""Flexible checksums (x-amz-checksum-crc32, -crc32c, -crc64nvme, -sha1, -sha256): verified while
the body streams, on every path a body comes in (header, aws-chunked trailer unsigned and signed,
POST form field, UploadPart, the part checksums CompleteMultipartUpload lists), refused before
anything is stored; kept with the object and returned as AWS returns them.

A refused upload must leave everything as it was: the previous version still readable byte for
byte, the listing unchanged, and no new bytes left on the location (`unchanged`)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import random
import uuid
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from xml.etree import ElementTree

import botocore.exceptions
import botocore.httpchecksum
import pytest
import requests
from awscrt import checksums as crt
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError
from botocore.httpchecksum import (
    AwsChunkedWrapper,
    Crc32Checksum,
    CrtCrc32cChecksum,
    CrtCrc64NvmeChecksum,
    Sha1Checksum,
    Sha256Checksum,
)

from gateway import checksums
from gateway.errors import S3Error
from tests.gatewayproc import Gateway
from tests.s3.conftest import error_code, raw_request
from tests.s3.test_post_object import v2_fields

ALGORITHMS = ["CRC32", "CRC32C", "CRC64NVME", "SHA1", "SHA256"]
MiB = 1024 * 1024
ACCESS, SECRET = "accessKey1", "verySecretKey1"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
BOTOCORE_CLS = {"CRC32": Crc32Checksum, "CRC32C": CrtCrc32cChecksum,
                "CRC64NVME": CrtCrc64NvmeChecksum, "SHA1": Sha1Checksum,
                "SHA256": Sha256Checksum}


def raw_checksum(algorithm: str, data: bytes) -> bytes:
    """Computed here independently of the gateway's code."""
    if algorithm == "CRC32":
        return zlib.crc32(data).to_bytes(4, "big")
    if algorithm == "CRC32C":
        return crt.crc32c(data).to_bytes(4, "big")
    if algorithm == "CRC64NVME":
        return crt.crc64nvme(data).to_bytes(8, "big")
    return hashlib.new(algorithm.lower(), data).digest()


def b64(algorithm: str, data: bytes) -> str:
    return base64.b64encode(raw_checksum(algorithm, data)).decode()


def wrong(algorithm: str, data: bytes) -> str:
    """A well-formed value that is not the data's."""
    raw = bytearray(raw_checksum(algorithm, data))
    raw[0] ^= 0xFF
    return base64.b64encode(bytes(raw)).decode()


def data_of(size: int, seed: int = 1) -> bytes:
    return random.Random(seed).randbytes(size)


def xml_code(response: requests.Response) -> str:
    return ElementTree.fromstring(response.content).findtext("Code") or ""


def xml_message(response: requests.Response) -> str:
    return ElementTree.fromstring(response.content).findtext("Message") or ""


@pytest.fixture
def key() -> str:
    return f"obj-{uuid.uuid4().hex[:8]}"


@contextmanager
def unchanged(gateway: Gateway, s3: Any, bucket: str, key: str) -> Iterator[None]:
    """What a refused write must leave as it was: the key's bytes, the listing, the files."""
    gateway.settle()
    before_files = sorted(gateway.data_files())
    before_list = [(o["Key"], o["ETag"], o["Size"])
                   for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
    try:
        before_body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except ClientError:
        before_body = None
    yield
    after_list = [(o["Key"], o["ETag"], o["Size"])
                  for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
    assert after_list == before_list
    if before_body is not None:
        assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == before_body
    else:
        with pytest.raises(ClientError):
            s3.head_object(Bucket=bucket, Key=key)
    gateway.settle()
    assert sorted(gateway.data_files()) == before_files


def head_checksum(s3: Any, bucket: str, key: str) -> dict[str, str]:
    got = s3.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
    return {k: v for k, v in got.items() if k.startswith("Checksum")}


# --- aws-chunked bodies, framed as the SDKs frame them ------------------------------------------

def unsigned_trailer_body(data: bytes, trailer: str, value: str, chunk: int = 65536) -> bytes:
    out = bytearray()
    for start in range(0, len(data), chunk):
        piece = data[start:start + chunk]
        out += f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
    out += f"0\r\n{trailer}:{value}\r\n\r\n".encode()
    return bytes(out)


def signed_put(gateway: Gateway, path: str, data: bytes, trailer: str | None = None,
               value: str | None = None, *, trailer_signature: str | None = None,
               headers: dict[str, str] | None = None, chunk: int = 65536) -> requests.Response:
    """STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER (SigV4 chunk signatures, then the trailer and
    its signature), as the Java and Go SDKs send it; without a trailer, the older
    STREAMING-AWS4-HMAC-SHA256-PAYLOAD."""
    mode = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD" + ("-TRAILER" if trailer else "")
    url = gateway.endpoint + path
    all_headers = {"Content-Encoding": "aws-chunked", "x-amz-content-sha256": mode,
                   "x-amz-decoded-content-length": str(len(data)), **(headers or {})}
    if trailer:
        all_headers["x-amz-trailer"] = trailer
    request = AWSRequest(method="PUT", url=url, headers=all_headers)
    signer = S3SigV4Auth(Credentials(ACCESS, SECRET), "s3", "us-east-1")
    signer.payload = lambda _request: mode  # type: ignore[method-assign]
    signer.add_auth(request)
    sent = dict(request.headers.items())
    timestamp = sent["X-Amz-Date"]
    scope = f"{timestamp[:8]}/us-east-1/s3/aws4_request"
    key = ("AWS4" + SECRET).encode()
    for part in (timestamp[:8], "us-east-1", "s3", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    previous = sent["Authorization"].rsplit("Signature=", 1)[1]

    def sign(kind: str, digest: str) -> str:
        lines = [kind, timestamp, scope, previous]
        if kind == "AWS4-HMAC-SHA256-PAYLOAD":
            lines.append(EMPTY_SHA256)
        lines.append(digest)
        return hmac.new(key, "\n".join(lines).encode(), hashlib.sha256).hexdigest()

    body = bytearray()
    for piece in [data[i:i + chunk] for i in range(0, len(data), chunk)] + [b""]:
        previous = sign("AWS4-HMAC-SHA256-PAYLOAD", hashlib.sha256(piece).hexdigest())
        body += f"{len(piece):x};chunk-signature={previous}\r\n".encode() + piece
        if piece:
            body += b"\r\n"
    if trailer:
        canonical = f"{trailer}:{value}\n"
        signature = trailer_signature or sign("AWS4-HMAC-SHA256-TRAILER",
                                              hashlib.sha256(canonical.encode()).hexdigest())
        body += f"{trailer}:{value}\r\nx-amz-trailer-signature:{signature}\r\n".encode()
    body += b"\r\n"
    return requests.put(url, data=bytes(body), headers=sent, timeout=30)


def unsigned_put(gateway: Gateway, path: str, data: bytes, trailer: str, value: str | None,
                 ) -> requests.Response:
    """STREAMING-UNSIGNED-PAYLOAD-TRAILER; `value` None: framed by botocore's own wrapper (what
    boto3 >= 1.36 sends over TLS), with the true checksum."""
    if value is None:
        algorithm = trailer.removeprefix("x-amz-checksum-").upper()
        body = AwsChunkedWrapper(io.BytesIO(data), checksum_cls=BOTOCORE_CLS[algorithm],
                                 checksum_name=trailer, chunk_size=65536).read()
    else:
        body = unsigned_trailer_body(data, trailer, value)
    return raw_request(gateway, "PUT", path, body=body, headers={
        "x-amz-content-sha256": "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
        "Content-Encoding": "aws-chunked", "x-amz-trailer": trailer,
        "x-amz-decoded-content-length": str(len(data))})


# --- the library ---------------------------------------------------------------------------------

def test_known_values() -> None:
    # CRC check values of "123456789", and the CRC32C of AWS's streaming-trailer example.
    assert checksums.compute("CRC64NVME", b"123456789").hex() == "ae8b14860a799888"
    assert checksums.compute("CRC32C", b"123456789").hex() == "e3069283"
    assert checksums.compute("CRC32", b"123456789").hex() == "cbf43926"
    assert checksums.encode(checksums.compute("CRC32C", b"a" * 66560)) == "sOO8/Q=="


@pytest.mark.parametrize("algorithm", ["CRC32", "CRC32C", "CRC64NVME"])
def test_full_object_crc_combines_parts(algorithm: str) -> None:
    rng = random.Random(5)
    parts = [rng.randbytes(n) for n in (1, 5000, 0, 77777, 3)]
    combined = checksums.combine(algorithm, [(raw_checksum(algorithm, p), len(p)) for p in parts])
    assert combined == raw_checksum(algorithm, b"".join(parts))


def test_composite_is_checksum_of_part_checksums() -> None:
    parts = [b"x" * 10, b"y" * 20]
    raws = [raw_checksum("SHA256", p) for p in parts]
    assert checksums.composite("SHA256", raws) == (
        base64.b64encode(hashlib.sha256(b"".join(raws)).digest()).decode() + "-2")


@pytest.mark.parametrize(("headers", "message"), [
    ({"x-amz-checksum-crc32": "AAAAAA==", "x-amz-checksum-sha1": "A" * 27 + "="},
     "Multiple checksum Types"),
    ({"x-amz-checksum-crc32": "not base64!"}, "x-amz-checksum-crc32 header is invalid"),
    ({"x-amz-checksum-crc32": "AAAAAAAA"}, "x-amz-checksum-crc32 header is invalid"),
    ({"x-amz-checksum-md4": "AAAAAA=="}, "algorithm type you specified"),
    ({"x-amz-sdk-checksum-algorithm": "CRC32"}, "no corresponding"),
    ({"x-amz-checksum-crc32": "AAAAAA==", "x-amz-sdk-checksum-algorithm": "SHA1"},
     "x-amz-sdk-checksum-algorithm header is invalid"),
])
def test_request_judged_as_aws(headers: dict[str, str], message: str) -> None:
    with pytest.raises(S3Error) as caught:
        checksums.requested(headers, None, trailer_mode=False)
    assert caught.value.code == "InvalidRequest" and message in str(caught.value.message)


# --- PutObject ----------------------------------------------------------------------------------

def test_boto3_default_put_is_checked_and_returned(s3: Any, bucket: str, key: str) -> None:
    # boto3 >= 1.36 sends x-amz-checksum-crc32 (and x-amz-sdk-checksum-algorithm) by default.
    data = data_of(300_000)
    put = s3.put_object(Bucket=bucket, Key=key, Body=data)
    assert put["ChecksumCRC32"] == b64("CRC32", data)
    # GET asks for the checksum by default too (ChecksumMode), and botocore checks the body.
    got = s3.get_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
    assert got["ChecksumCRC32"] == b64("CRC32", data) and got["ChecksumType"] == "FULL_OBJECT"
    assert got["Body"].read() == data
    assert got["ResponseMetadata"]["HTTPHeaders"].get("x-amz-checksum-crc32")


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_put_each_algorithm(s3: Any, bucket: str, key: str, algorithm: str) -> None:
    data = data_of(2 * MiB + 11, seed=ALGORITHMS.index(algorithm))
    put = s3.put_object(Bucket=bucket, Key=key, Body=data, ChecksumAlgorithm=algorithm)
    assert put[f"Checksum{algorithm}"] == b64(algorithm, data)
    assert head_checksum(s3, bucket, key) == {f"Checksum{algorithm}": b64(algorithm, data),
                                               "ChecksumType": "FULL_OBJECT"}
    got = s3.get_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
    assert got["Body"].read() == data  # botocore verified it against the header


def test_put_without_checksum_gets_crc64nvme(gateway: Gateway, bucket: str, key: str) -> None:
    s3 = gateway.client(request_checksum_calculation="when_required")
    data = data_of(1000)
    s3.put_object(Bucket=bucket, Key=key, Body=data)
    assert head_checksum(s3, bucket, key) == {"ChecksumCRC64NVME": b64("CRC64NVME", data),
                                               "ChecksumType": "FULL_OBJECT"}


def test_checksum_only_when_asked_and_not_for_ranges(gateway: Gateway, s3: Any, bucket: str,
                                                     key: str) -> None:
    s3.put_object(Bucket=bucket, Key=key, Body=b"0123456789", ChecksumAlgorithm="SHA256")
    plain = raw_request(gateway, "HEAD", f"/{bucket}/{key}")
    assert not [h for h in plain.headers if h.lower().startswith("x-amz-checksum")]
    asked = raw_request(gateway, "GET", f"/{bucket}/{key}",
                        headers={"x-amz-checksum-mode": "ENABLED"})
    assert asked.headers["x-amz-checksum-sha256"] == b64("SHA256", b"0123456789")
    ranged = raw_request(gateway, "GET", f"/{bucket}/{key}",
                         headers={"x-amz-checksum-mode": "ENABLED", "Range": "bytes=2-4"})
    assert ranged.status_code == 206 and ranged.content == b"234"
    assert "x-amz-checksum-sha256" not in ranged.headers


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_wrong_header_is_refused_and_nothing_stored(gateway: Gateway, s3: Any, bucket: str,
                                                    key: str, algorithm: str) -> None:
    s3.put_object(Bucket=bucket, Key=key, Body=b"the previous version")
    data = data_of(3 * MiB + 5)
    with unchanged(gateway, s3, bucket, key):
        response = raw_request(gateway, "PUT", f"/{bucket}/{key}", body=data, headers={
            f"x-amz-checksum-{algorithm.lower()}": wrong(algorithm, data)})
        assert response.status_code == 400 and xml_code(response) == "BadDigest"
        assert xml_message(response) == (f"The {algorithm} you specified did not match the "
                                         "calculated checksum.")
    ok = raw_request(gateway, "PUT", f"/{bucket}/{key}", body=data,
                     headers={f"x-amz-checksum-{algorithm.lower()}": b64(algorithm, data)})
    assert ok.status_code == 200
    assert ok.headers[f"x-amz-checksum-{algorithm.lower()}"] == b64(algorithm, data)
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == data


@pytest.mark.parametrize(("headers", "message"), [
    ({"x-amz-checksum-crc32c": "AAAA"}, "Value for x-amz-checksum-crc32c header is invalid."),
    ({"x-amz-checksum-crc32": "AAAAAA==", "x-amz-checksum-crc32c": "AAAAAA=="},
     "Multiple checksum Types are not allowed."),
    ({"x-amz-sdk-checksum-algorithm": "CRC32C"}, "no corresponding"),
])
def test_malformed_checksum_requests(gateway: Gateway, s3: Any, bucket: str, key: str,
                                     headers: dict[str, str], message: str) -> None:
    s3.put_object(Bucket=bucket, Key=key, Body=b"kept")
    with unchanged(gateway, s3, bucket, key):
        response = raw_request(gateway, "PUT", f"/{bucket}/{key}", body=b"new", headers=headers)
        assert response.status_code == 400 and xml_code(response) == "InvalidRequest"
        assert message in xml_message(response)


# --- aws-chunked trailers -------------------------------------------------------------------------

@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_unsigned_trailer(gateway: Gateway, s3: Any, bucket: str, key: str,
                          algorithm: str) -> None:
    trailer = f"x-amz-checksum-{algorithm.lower()}"
    s3.put_object(Bucket=bucket, Key=key, Body=b"before")
    data = data_of(2 * MiB + 3, seed=7)
    with unchanged(gateway, s3, bucket, key):
        bad = unsigned_put(gateway, f"/{bucket}/{key}", data, trailer, wrong(algorithm, data))
        assert bad.status_code == 400 and xml_code(bad) == "BadDigest", bad.text
        malformed = unsigned_put(gateway, f"/{bucket}/{key}", data, trailer, "%%%")
        assert malformed.status_code == 400 and xml_code(malformed) == "InvalidRequest"
        assert "trailing header is invalid" in xml_message(malformed)
    ok = unsigned_put(gateway, f"/{bucket}/{key}", data, trailer, None)  # botocore's framing
    assert ok.status_code == 200, ok.text
    assert ok.headers[trailer] == b64(algorithm, data)
    assert head_checksum(s3, bucket, key)[f"Checksum{algorithm}"] == b64(algorithm, data)
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == data


def test_boto3_trailer_default_over_tls(gateway: Gateway, s3: Any, bucket: str, key: str,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    # boto3 >= 1.36 sends its default CRC32 in an unsigned trailer over TLS; the test gateway
    # speaks plain HTTP, so botocore is told the URL is https when it decides.
    real = botocore.httpchecksum.urlparse
    monkeypatch.setattr(botocore.httpchecksum, "urlparse",
                        lambda url: real(url.replace("http://", "https://", 1)))
    data = data_of(MiB + 1, seed=3)
    sent: dict[str, str] = {}
    s3.meta.events.register("before-send.s3.PutObject",
                            lambda request, **_: sent.update(
                                (k.lower(), v) for k, v in request.headers.items()))
    try:
        s3.put_object(Bucket=bucket, Key=key, Body=data)
        s3.upload_fileobj(io.BytesIO(data), bucket, key + "-2")
    finally:
        s3.meta.events.unregister("before-send.s3.PutObject")
    assert sent["x-amz-content-sha256"] == b"STREAMING-UNSIGNED-PAYLOAD-TRAILER"
    assert sent["x-amz-trailer"] == b"x-amz-checksum-crc32"
    for name in (key, key + "-2"):
        assert head_checksum(s3, bucket, name)["ChecksumCRC32"] == b64("CRC32", data)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_signed_trailer(gateway: Gateway, s3: Any, bucket: str, key: str,
                        algorithm: str) -> None:
    trailer = f"x-amz-checksum-{algorithm.lower()}"
    s3.put_object(Bucket=bucket, Key=key, Body=b"before")
    data = data_of(200_000, seed=9)
    path = f"/{bucket}/{key}"
    with unchanged(gateway, s3, bucket, key):
        bad = signed_put(gateway, path, data, trailer, wrong(algorithm, data))
        assert bad.status_code == 400 and xml_code(bad) == "BadDigest", bad.text
        forged = signed_put(gateway, path, data, trailer, b64(algorithm, data),
                            trailer_signature="0" * 64)
        assert forged.status_code == 403 and xml_code(forged) == "SignatureDoesNotMatch"
    ok = signed_put(gateway, path, data, trailer, b64(algorithm, data))
    assert ok.status_code == 200, ok.text
    assert head_checksum(s3, bucket, key)[f"Checksum{algorithm}"] == b64(algorithm, data)
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == data


def test_signed_streaming_without_trailer_still_works(gateway: Gateway, s3: Any, bucket: str,
                                                      key: str) -> None:
    data = data_of(150_000, seed=4)
    ok = signed_put(gateway, f"/{bucket}/{key}", data)
    assert ok.status_code == 200, ok.text
    assert head_checksum(s3, bucket, key)["ChecksumCRC64NVME"] == b64("CRC64NVME", data)


def test_trailer_and_header_together_are_refused(gateway: Gateway, s3: Any, bucket: str,
                                                 key: str) -> None:
    data = b"abc"
    response = raw_request(gateway, "PUT", f"/{bucket}/{key}",
                           body=unsigned_trailer_body(data, "x-amz-checksum-crc32",
                                                      b64("CRC32", data)),
                           headers={"x-amz-content-sha256": "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
                                    "Content-Encoding": "aws-chunked",
                                    "x-amz-trailer": "x-amz-checksum-crc32",
                                    "x-amz-checksum-crc32": b64("CRC32", data),
                                    "x-amz-decoded-content-length": "3"})
    assert response.status_code == 400 and xml_code(response) == "InvalidRequest"
    plain = raw_request(gateway, "PUT", f"/{bucket}/{key}", body=data,
                        headers={"x-amz-trailer": "x-amz-checksum-crc32"})
    assert plain.status_code == 400 and xml_code(plain) == "InvalidRequest"
    with pytest.raises(ClientError):
        s3.head_object(Bucket=bucket, Key=key)


# --- POST Object ----------------------------------------------------------------------------------

@pytest.mark.parametrize("algorithm", ["CRC32C", "SHA256"])
def test_post_form_checksum(gateway: Gateway, s3: Any, bucket: str, key: str,
                            algorithm: str) -> None:
    field = f"x-amz-checksum-{algorithm.lower()}"
    data = data_of(100_000, seed=2)
    s3.put_object(Bucket=bucket, Key=key, Body=b"before")

    def post(value: str) -> requests.Response:
        fields = v2_fields([{"bucket": bucket}, {"key": key}, ["starts-with", f"${field}", ""]],
                           {"key": key, field: value})
        return requests.post(f"{gateway.endpoint}/{bucket}", data=fields,
                             files={"file": ("f.bin", data)}, timeout=30)

    with unchanged(gateway, s3, bucket, key):
        bad = post(wrong(algorithm, data))
        assert bad.status_code == 400 and xml_code(bad) == "BadDigest"
        malformed = post("AAAA")
        assert malformed.status_code == 400 and xml_code(malformed) == "InvalidRequest"
    ok = post(b64(algorithm, data))
    assert ok.status_code == 204, ok.text
    assert ok.headers[field] == b64(algorithm, data)
    assert head_checksum(s3, bucket, key)[f"Checksum{algorithm}"] == b64(algorithm, data)
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == data


# --- multipart ------------------------------------------------------------------------------------

def make_parts(count: int, last: int = 1000, seed: int = 11) -> list[bytes]:
    rng = random.Random(seed)
    return [rng.randbytes(5 * MiB) for _ in range(count - 1)] + [rng.randbytes(last)]


def composite_of(algorithm: str, parts: list[bytes]) -> str:
    joined = b"".join(raw_checksum(algorithm, p) for p in parts)
    return f"{b64(algorithm, joined)}-{len(parts)}"


def test_composite_crc32c_multipart(s3: Any, bucket: str, key: str) -> None:
    parts = make_parts(3)
    created = s3.create_multipart_upload(Bucket=bucket, Key=key, ChecksumAlgorithm="CRC32C")
    assert created["ChecksumAlgorithm"] == "CRC32C" and created["ChecksumType"] == "COMPOSITE"
    upload_id = created["UploadId"]
    listed = []
    for number, data in enumerate(parts, 1):
        up = s3.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number,
                            Body=data, ChecksumAlgorithm="CRC32C")
        assert up["ChecksumCRC32C"] == b64("CRC32C", data)
        listed.append({"PartNumber": number, "ETag": up["ETag"],
                       "ChecksumCRC32C": up["ChecksumCRC32C"]})
    found = s3.list_parts(Bucket=bucket, Key=key, UploadId=upload_id)
    assert found["ChecksumAlgorithm"] == "CRC32C" and found["ChecksumType"] == "COMPOSITE"
    assert [p["ChecksumCRC32C"] for p in found["Parts"]] == [b64("CRC32C", p) for p in parts]
    uploads = s3.list_multipart_uploads(Bucket=bucket)["Uploads"]
    assert [(u["ChecksumAlgorithm"], u["ChecksumType"]) for u in uploads] == [
        ("CRC32C", "COMPOSITE")]
    done = s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id,
                                        MultipartUpload={"Parts": listed})
    expected = composite_of("CRC32C", parts)
    assert done["ChecksumCRC32C"] == expected and done["ChecksumType"] == "COMPOSITE"
    assert head_checksum(s3, bucket, key) == {"ChecksumCRC32C": expected,
                                               "ChecksumType": "COMPOSITE"}
    got = s3.get_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
    assert got["ChecksumCRC32C"] == expected and got["Body"].read() == b"".join(parts)


@pytest.mark.parametrize("algorithm", ["CRC32", "CRC32C", "CRC64NVME"])
def test_full_object_multipart(gateway: Gateway, s3: Any, bucket: str, key: str,
                               algorithm: str) -> None:
    parts = make_parts(2, last=12345, seed=ALGORITHMS.index(algorithm))
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key=key, ChecksumAlgorithm=algorithm,
                                           ChecksumType="FULL_OBJECT")["UploadId"]
    bare = gateway.client(request_checksum_calculation="when_required")
    listed = []
    for number, data in enumerate(parts, 1):
        # FULL_OBJECT parts may come without a checksum: the gateway computes it.
        if number == 1:
            up = s3.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number,
                                Body=data, ChecksumAlgorithm=algorithm)
        else:
            up = bare.upload_part(Bucket=bucket, Key=key, UploadId=upload_id,
                                  PartNumber=number, Body=data)
        assert up[f"Checksum{algorithm}"] == b64(algorithm, data)
        listed.append({"PartNumber": number, "ETag": up["ETag"]})
    whole = b"".join(parts)
    done = s3.complete_multipart_upload(
        Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": listed},
        ChecksumType="FULL_OBJECT", **{f"Checksum{algorithm}": b64(algorithm, whole)})
    assert done[f"Checksum{algorithm}"] == b64(algorithm, whole)
    assert done["ChecksumType"] == "FULL_OBJECT"
    got = s3.get_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
    assert got[f"Checksum{algorithm}"] == b64(algorithm, whole)
    assert got["Body"].read() == whole  # botocore checked the full-object CRC on the way


def test_default_multipart_gets_full_object_crc64nvme(s3: Any, bucket: str, key: str) -> None:
    # No algorithm at creation; boto3's default CRC32 on each part is checked, and the object
    # gets AWS's default checksum, CRC64NVME of the whole.
    parts = make_parts(2, seed=21)
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    listed = []
    for number, data in enumerate(parts, 1):
        up = s3.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number,
                            Body=data)
        assert up["ChecksumCRC32"] == b64("CRC32", data)
        listed.append({"PartNumber": number, "ETag": up["ETag"],
                       "ChecksumCRC32": up["ChecksumCRC32"]})
    s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id,
                                 MultipartUpload={"Parts": listed})
    assert head_checksum(s3, bucket, key) == {
        "ChecksumCRC64NVME": b64("CRC64NVME", b"".join(parts)), "ChecksumType": "FULL_OBJECT"}


def test_upload_file_multipart_default(s3: Any, bucket: str, key: str) -> None:
    # s3transfer (boto3's upload_file) creates the upload with CRC32 and lists each part's.
    from boto3.s3.transfer import TransferConfig
    data = data_of(11 * MiB, seed=13)
    s3.upload_fileobj(io.BytesIO(data), bucket, key,
                      Config=TransferConfig(multipart_threshold=5 * MiB,
                                            multipart_chunksize=5 * MiB))
    checksum = head_checksum(s3, bucket, key)
    assert checksum["ChecksumType"] == "COMPOSITE" and checksum["ChecksumCRC32"].endswith("-3")
    parts = [data[i:i + 5 * MiB] for i in range(0, len(data), 5 * MiB)]
    assert checksum["ChecksumCRC32"] == composite_of("CRC32", parts)


def test_wrong_part_checksum_is_refused(gateway: Gateway, s3: Any, bucket: str,
                                        key: str) -> None:
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key=key,
                                           ChecksumAlgorithm="SHA1")["UploadId"]
    data = data_of(MiB, seed=8)
    path = f"/{bucket}/{key}?partNumber=1&uploadId={upload_id}"
    bad = raw_request(gateway, "PUT", path, body=data,
                      headers={"x-amz-checksum-sha1": wrong("SHA1", data)})
    assert bad.status_code == 400 and xml_code(bad) == "BadDigest"
    bad_trailer = unsigned_put(gateway, path, data, "x-amz-checksum-sha1", wrong("SHA1", data))
    assert bad_trailer.status_code == 400 and xml_code(bad_trailer) == "BadDigest"
    bad_signed = signed_put(gateway, path, data, "x-amz-checksum-sha1", wrong("SHA1", data))
    assert bad_signed.status_code == 400 and xml_code(bad_signed) == "BadDigest"
    assert s3.list_parts(Bucket=bucket, Key=key, UploadId=upload_id).get("Parts", []) == []
    # A COMPOSITE upload's parts must state its algorithm, and no other.
    missing = raw_request(gateway, "PUT", path, body=data)
    assert missing.status_code == 400 and xml_code(missing) == "InvalidRequest"
    assert "expected checksum Type: sha1, actual checksum Type: null" in xml_message(missing)
    other = raw_request(gateway, "PUT", path, body=data,
                        headers={"x-amz-checksum-crc32": b64("CRC32", data)})
    assert other.status_code == 400 and "actual checksum Type: crc32" in xml_message(other)
    assert s3.list_parts(Bucket=bucket, Key=key, UploadId=upload_id).get("Parts", []) == []
    ok = raw_request(gateway, "PUT", path, body=data,
                     headers={"x-amz-checksum-sha1": b64("SHA1", data)})
    assert ok.status_code == 200 and ok.headers["x-amz-checksum-sha1"] == b64("SHA1", data)
    s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)


def test_complete_checks_listed_part_checksums(gateway: Gateway, s3: Any, bucket: str,
                                               key: str) -> None:
    s3.put_object(Bucket=bucket, Key=key, Body=b"the previous version")
    parts = make_parts(2, seed=31)
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key=key,
                                           ChecksumAlgorithm="CRC32")["UploadId"]
    listed = []
    for number, data in enumerate(parts, 1):
        up = s3.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number,
                            Body=data, ChecksumAlgorithm="CRC32")
        listed.append({"PartNumber": number, "ETag": up["ETag"],
                       "ChecksumCRC32": up["ChecksumCRC32"]})
    tampered = [dict(listed[0]), {**listed[1], "ChecksumCRC32": wrong("CRC32", parts[1])}]
    with unchanged(gateway, s3, bucket, key):
        with pytest.raises(ClientError) as caught:
            s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id,
                                         MultipartUpload={"Parts": tampered})
        assert error_code(caught) == "InvalidPart"
        without = [{k: v for k, v in p.items() if k != "ChecksumCRC32"} for p in listed]
        with pytest.raises(ClientError) as caught:
            s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id,
                                         MultipartUpload={"Parts": without})
        assert error_code(caught) == "InvalidRequest"
        assert "missing for part 1" in caught.value.response["Error"]["Message"]
        with pytest.raises(ClientError) as caught:  # the object checksum stated, wrong
            s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id,
                                         MultipartUpload={"Parts": listed},
                                         ChecksumCRC32=wrong("CRC32", b"x") + "-2")
        assert error_code(caught) == "BadDigest"
        with pytest.raises(ClientError) as caught:
            s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id,
                                         MultipartUpload={"Parts": listed},
                                         ChecksumType="FULL_OBJECT")
        assert error_code(caught) == "InvalidRequest"
    # The refusals released the upload: the right completion goes through.
    done = s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id,
                                        MultipartUpload={"Parts": listed},
                                        ChecksumCRC32=composite_of("CRC32", parts))
    assert done["ChecksumCRC32"] == composite_of("CRC32", parts)
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == b"".join(parts)


@pytest.mark.parametrize(("arguments", "message"), [
    ({"ChecksumAlgorithm": "SHA1", "ChecksumType": "FULL_OBJECT"},
     "The FULL_OBJECT checksum type cannot be used with the SHA1 checksum algorithm."),
    ({"ChecksumAlgorithm": "CRC64NVME", "ChecksumType": "COMPOSITE"},
     "The COMPOSITE checksum type cannot be used with the CRC64NVME checksum algorithm."),
    ({"ChecksumType": "COMPOSITE"}, "can only be used with the x-amz-checksum-algorithm"),
])
def test_create_upload_refuses_bad_modes(s3: Any, bucket: str, key: str,
                                         arguments: dict[str, str], message: str) -> None:
    with pytest.raises(ClientError) as caught:
        s3.create_multipart_upload(Bucket=bucket, Key=key, **arguments)
    assert error_code(caught) == "InvalidRequest"
    assert message in caught.value.response["Error"]["Message"]


def test_create_upload_refuses_unknown_algorithm(gateway: Gateway, bucket: str,
                                                 key: str) -> None:
    response = raw_request(gateway, "POST", f"/{bucket}/{key}?uploads",
                           headers={"x-amz-checksum-algorithm": "MD4"})
    assert response.status_code == 400 and xml_code(response) == "InvalidRequest"
    assert "Checksum algorithm provided is unsupported" in xml_message(response)


# --- copies ---------------------------------------------------------------------------------------

def test_copy_keeps_or_recomputes(s3: Any, bucket: str, key: str) -> None:
    data = data_of(70_000, seed=41)
    s3.put_object(Bucket=bucket, Key=key, Body=data, ChecksumAlgorithm="CRC32C")
    source = {"Bucket": bucket, "Key": key}
    kept = s3.copy_object(Bucket=bucket, Key=key + "-kept", CopySource=source)
    assert kept["CopyObjectResult"]["ChecksumCRC32C"] == b64("CRC32C", data)
    assert head_checksum(s3, bucket, key + "-kept")["ChecksumCRC32C"] == b64("CRC32C", data)
    redone = s3.copy_object(Bucket=bucket, Key=key + "-sha", CopySource=source,
                            ChecksumAlgorithm="SHA256")
    assert redone["CopyObjectResult"]["ChecksumSHA256"] == b64("SHA256", data)
    assert head_checksum(s3, bucket, key + "-sha") == {"ChecksumSHA256": b64("SHA256", data),
                                                        "ChecksumType": "FULL_OBJECT"}
    # Onto itself (metadata REPLACE) with a new algorithm: recomputed, bytes unchanged.
    s3.copy_object(Bucket=bucket, Key=key, CopySource=source, MetadataDirective="REPLACE",
                   ChecksumAlgorithm="CRC64NVME")
    assert head_checksum(s3, bucket, key)["ChecksumCRC64NVME"] == b64("CRC64NVME", data)
    s3.copy_object(Bucket=bucket, Key=key, CopySource=source, MetadataDirective="REPLACE",
                   Metadata={"a": "b"})
    assert head_checksum(s3, bucket, key)["ChecksumCRC64NVME"] == b64("CRC64NVME", data)
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == data


def test_copy_of_composite_object_is_whole(s3: Any, bucket: str, key: str) -> None:
    parts = make_parts(2, seed=51)
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key=key,
                                           ChecksumAlgorithm="SHA256")["UploadId"]
    listed = []
    for number, data in enumerate(parts, 1):
        up = s3.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number,
                            Body=data, ChecksumAlgorithm="SHA256")
        listed.append({"PartNumber": number, "ETag": up["ETag"],
                       "ChecksumSHA256": up["ChecksumSHA256"]})
    s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id,
                                 MultipartUpload={"Parts": listed})
    s3.copy_object(Bucket=bucket, Key=key + "-copy", CopySource={"Bucket": bucket, "Key": key})
    assert head_checksum(s3, bucket, key + "-copy") == {
        "ChecksumSHA256": b64("SHA256", b"".join(parts)), "ChecksumType": "FULL_OBJECT"}


def test_upload_part_copy_gets_the_upload_checksum(s3: Any, bucket: str, key: str) -> None:
    source = data_of(6 * MiB, seed=61)
    s3.put_object(Bucket=bucket, Key="src", Body=source)
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key=key,
                                           ChecksumAlgorithm="CRC32C")["UploadId"]
    copied = s3.upload_part_copy(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=1,
                                 CopySource={"Bucket": bucket, "Key": "src"},
                                 CopySourceRange=f"bytes=0-{5 * MiB - 1}")
    first = source[:5 * MiB]
    assert copied["CopyPartResult"]["ChecksumCRC32C"] == b64("CRC32C", first)
    tail = b"tail bytes"
    up = s3.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=2, Body=tail,
                        ChecksumAlgorithm="CRC32C")
    s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={
        "Parts": [{"PartNumber": 1, "ETag": copied["CopyPartResult"]["ETag"],
                   "ChecksumCRC32C": b64("CRC32C", first)},
                  {"PartNumber": 2, "ETag": up["ETag"], "ChecksumCRC32C": up["ChecksumCRC32C"]}]})
    assert head_checksum(s3, bucket, key)["ChecksumCRC32C"] == composite_of("CRC32C",
                                                                            [first, tail])


def test_corrupt_bytes_are_caught(gateway: Gateway, s3: Any, bucket: str, key: str) -> None:
    # Bytes changed on the location behind the gateway's back: a streamed copy of the whole
    # object checks them against the stored checksum and refuses, and a client reading with
    # ChecksumMode (boto3's default) detects them.
    data = data_of(400_000, seed=71)
    s3.put_object(Bucket=bucket, Key=key, Body=data, ChecksumAlgorithm="CRC32C")
    [path] = [p for p in gateway.data_files()
              if p.stat().st_size == len(data) and p.read_bytes() == data]
    raw = bytearray(path.read_bytes())
    raw[1000] ^= 0x01
    path.write_bytes(bytes(raw))
    elsewhere = f"mem-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=elsewhere, CreateBucketConfiguration={"LocationConstraint": "memloc"})
    with pytest.raises(ClientError) as caught:
        s3.copy_object(Bucket=elsewhere, Key=key, CopySource={"Bucket": bucket, "Key": key})
    assert error_code(caught) == "InternalError"
    with pytest.raises(ClientError):
        s3.head_object(Bucket=elsewhere, Key=key)
    with pytest.raises(botocore.exceptions.FlexibleChecksumError):
        s3.get_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")["Body"].read()
