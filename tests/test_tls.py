"""TLS on the S3 and health/metrics listeners (config.json certFilePaths, S3_TLS_*_FILE): a CA
and a server certificate made at test time; boto3 and the aws cli over https, verifying them."""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import ssl
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest
from botocore.config import Config
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from gateway.config import load_settings
from tests.gatewayproc import (
    ACCESS_KEY,
    SECRET_KEY,
    Gateway,
    eventually,
    free_port,
    start_gateway,
    write_config,
)
from tests.test_quickstart import aws_lines


@dataclass
class Pki:
    ca: Path  # the CA certificate clients trust
    cert: Path  # the server's certificate (127.0.0.1, localhost), signed by the CA
    key: Path
    other_ca: Path  # a CA that signed nothing here


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _ca(directory: Path, name: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(_name(name)).issuer_name(_name(name))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False,
                                         encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False)
            .sign(key, hashes.SHA256()))
    path = directory / f"{name}.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key, cert, path


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    directory = tmp_path_factory.mktemp("pki")
    ca_key, ca_cert, ca_path = _ca(directory, "test-ca")
    _, _, other_path = _ca(directory, "other-ca")
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(_name("gateway.test")).issuer_name(ca_cert.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([
                x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    cert_path, key_path = directory / "server.crt", directory / "server.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_path.chmod(0o600)
    return Pki(ca=ca_path, cert=cert_path, key=key_path, other_ca=other_path)


@pytest.fixture(scope="module")
def tls_gateway(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    metrics_port, console_port = free_port(), free_port()
    # CloudServer's certFilePaths, with "ca": the chain is completed from it.
    config = {"certFilePaths": {"key": str(pki.key), "cert": str(pki.cert), "ca": str(pki.ca)},
              "metricsPort": metrics_port, "console": {"port": console_port}}
    with start_gateway(tmp_path_factory.mktemp("tls"), config=config) as gw:
        gw.endpoint = f"https://127.0.0.1:{gw.port}"
        gw.extra["metrics"] = f"https://127.0.0.1:{metrics_port}"
        gw.extra["console"] = f"https://127.0.0.1:{console_port}/_/console/"
        yield gw


def https_client(gw: Gateway, verify: str | bool) -> object:
    return boto3.client("s3", endpoint_url=gw.endpoint, aws_access_key_id=ACCESS_KEY,
                        aws_secret_access_key=SECRET_KEY, region_name="us-east-1", verify=verify,
                        config=Config(s3={"addressing_style": "path"},
                                      retries={"total_max_attempts": 1, "mode": "standard"}))


def test_boto3_over_https_verifying_the_ca(tls_gateway: Gateway, pki: Pki) -> None:
    s3 = https_client(tls_gateway, str(pki.ca))
    s3.create_bucket(Bucket="tls-boto3")  # type: ignore[attr-defined]
    s3.put_object(Bucket="tls-boto3", Key="dir/k.txt", Body=b"over TLS")  # type: ignore[attr-defined]
    got = s3.get_object(Bucket="tls-boto3", Key="dir/k.txt")  # type: ignore[attr-defined]
    assert got["Body"].read() == b"over TLS"
    listed = s3.list_objects_v2(Bucket="tls-boto3")  # type: ignore[attr-defined]
    assert [o["Key"] for o in listed["Contents"]] == ["dir/k.txt"]
    # Bucket policies see the TLS: aws:SecureTransport is true (this Deny bites over https).
    s3.put_bucket_policy(Bucket="tls-boto3", Policy=json.dumps({  # type: ignore[attr-defined]
        "Version": "2012-10-17", "Statement": [{
            "Effect": "Deny", "Principal": "*", "Action": "s3:GetObject",
            "Resource": "arn:aws:s3:::tls-boto3/*",
            "Condition": {"Bool": {"aws:SecureTransport": "true"}}}]}))
    from botocore.exceptions import ClientError

    with pytest.raises(ClientError) as caught:
        s3.get_object(Bucket="tls-boto3", Key="dir/k.txt")  # type: ignore[attr-defined]
    assert caught.value.response["Error"]["Code"] == "AccessDenied"
    s3.delete_bucket_policy(Bucket="tls-boto3")  # type: ignore[attr-defined]
    # A client trusting another CA refuses the gateway's certificate.
    from botocore.exceptions import SSLError

    with pytest.raises(SSLError):
        https_client(tls_gateway, str(pki.other_ca)).list_buckets()  # type: ignore[attr-defined]
    assert SECRET_KEY not in tls_gateway.log()


def test_aws_cli_over_https_with_ca_bundle(tls_gateway: Gateway, pki: Pki,
                                           tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY,
               AWS_DEFAULT_REGION="us-east-1", AWS_CONFIG_FILE=str(tmp_path / "none"),
               AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"), HOME=str(tmp_path),
               AWS_EC2_METADATA_DISABLED="true")
    (tmp_path / "hello.txt").write_bytes(b"hello over https\n")
    cli = f"aws --endpoint-url {tls_gateway.endpoint} --ca-bundle {pki.ca}"
    made, _, listed, _, head = aws_lines([
        f"{cli} s3 mb s3://tls-cli",
        f"{cli} s3 cp --only-show-errors hello.txt s3://tls-cli/hello.txt",
        f"{cli} s3 ls s3://tls-cli/",
        f"{cli} s3 cp --only-show-errors s3://tls-cli/hello.txt back.txt",
        f"{cli} s3api head-object --bucket tls-cli --key hello.txt"], env, tmp_path)
    assert "make_bucket: tls-cli" in made and "hello.txt" in listed
    assert (tmp_path / "back.txt").read_bytes() == b"hello over https\n"
    assert json.loads(head)["ContentLength"] == len(b"hello over https\n")


def test_metrics_and_console_listeners_are_https_too(tls_gateway: Gateway, pki: Pki) -> None:
    context = ssl.create_default_context(cafile=str(pki.ca))
    with urllib.request.urlopen(f"{tls_gateway.extra['metrics']}/healthcheck", timeout=10,
                                context=context) as answer:
        assert answer.status == 200
    with urllib.request.urlopen(tls_gateway.extra["console"], timeout=10,
                                context=context) as answer:
        assert answer.status == 200 and "text/html" in answer.headers["Content-Type"]
    banner = (f"console on {tls_gateway.extra['console']}",
              f"S3 on https://127.0.0.1:{tls_gateway.port}",
              f"health and metrics on {tls_gateway.extra['metrics']}")
    # The log is written by a listener thread (batched): wait for the banner.
    eventually(lambda: all(line in tls_gateway.log() for line in banner), 5)
    # Plain http to the TLS port gets no S3 answer.
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{tls_gateway.port}/", timeout=10).read()


def test_env_overrides_name_the_files(tmp_path: Path, pki: Pki) -> None:
    env = write_config(tmp_path, free_port(), None,
                       {"certFilePaths": {"key": "nope.key", "cert": "nope.crt"}})
    # Relative paths in config.json are taken from config.json's folder, as CloudServer does.
    with pytest.raises(Exception) as caught:
        load_settings(env)
    assert 'key "certFilePaths.key"' in str(caught.value)
    assert str(tmp_path / "nope.key") in str(caught.value)
    settings = load_settings({**env, "S3_TLS_KEY_FILE": str(pki.key),
                              "S3_TLS_CERT_FILE": str(pki.cert), "S3_TLS_CA_FILE": str(pki.ca)})
    assert settings.tls is not None
    assert (settings.tls.key, settings.tls.cert, settings.tls.ca) == (pki.key, pki.cert, pki.ca)
    plain = write_config(tmp_path / "plain", free_port(), None, None)
    assert load_settings(plain).tls is None  # http stays the default
