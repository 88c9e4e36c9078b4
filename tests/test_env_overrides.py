"""Environment overrides a CloudServer user knows: S3BACKEND, ENDPOINT, SCALITY_* keys, LOG_LEVEL."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests
from botocore.exceptions import ClientError

from tests.gatewayproc import start_gateway


def data_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


def test_s3backend_mem_keeps_bytes_off_disk(tmp_path: Path) -> None:
    with start_gateway(tmp_path, env={"S3BACKEND": "mem"}) as gw:
        s3 = gw.client()
        s3.create_bucket(Bucket="in-memory")
        s3.put_object(Bucket="in-memory", Key="k", Body=b"x" * 10_000)
        assert s3.get_object(Bucket="in-memory", Key="k")["Body"].read() == b"x" * 10_000
        assert data_files(Path(gw.env["S3DATAPATH"])) == []


def test_endpoint_adds_a_virtual_host(tmp_path: Path) -> None:
    with start_gateway(tmp_path, env={"ENDPOINT": "s3.gateway.test"}) as gw:
        s3 = gw.client()
        s3.create_bucket(Bucket="vhost-bucket")
        s3.put_object(Bucket="vhost-bucket", Key="hello.txt", Body=b"hi")
        # Anonymous, so it stops at authorization: the error's Resource shows the bucket came
        # from the Host header.
        anonymous = requests.get(f"{gw.endpoint}/hello.txt",
                                 headers={"Host": f"vhost-bucket.s3.gateway.test:{gw.port}"},
                                 timeout=10)
        assert anonymous.status_code == 403
        assert b"<Resource>/vhost-bucket/hello.txt</Resource>" in anonymous.content


def test_scality_keys_replace_the_accounts(tmp_path: Path) -> None:
    env = {"SCALITY_ACCESS_KEY_ID": "envAccessKey", "SCALITY_SECRET_ACCESS_KEY": "envSecret1234"}
    with start_gateway(tmp_path, env=env) as gw:
        gw.client("envAccessKey", "envSecret1234").create_bucket(Bucket="env-account")
        with pytest.raises(ClientError) as exc:
            gw.client().list_buckets()  # accessKey1 from the file no longer exists
        assert exc.value.response["Error"]["Code"] == "InvalidAccessKeyId"
        assert "envSecret1234" not in gw.log()


def test_log_level_quietens_the_access_log(tmp_path: Path) -> None:
    with start_gateway(tmp_path, env={"LOG_LEVEL": "warning"}) as gw:
        gw.client().list_buckets()
        assert "gateway.access" not in gw.log()
