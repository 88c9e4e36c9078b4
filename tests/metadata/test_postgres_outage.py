"""A gateway whose PostgreSQL goes away: every request answers 503 ServiceUnavailable (S3 XML,
Retry-After), which every S3 SDK retries, not 500 InternalError; a request that failed changed
nothing; and once the server is back the gateway serves again by itself (its pool reconnects).

The server here is the test's own (tests/clouds/postgres.py start_postgres), not the session's:
it is stopped as a lost machine would stop it (SIGQUIT: PostgreSQL's immediate shutdown, no
checkpoint, backends dropped mid-query) and started again on the same data and port.
"""

from __future__ import annotations

import shlex
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
from botocore.exceptions import ClientError

from tests.clouds.postgres import PostgresServer, start_postgres
from tests.gatewayproc import Gateway, start_gateway

pytestmark = pytest.mark.postgres


def stop_immediately(server: PostgresServer) -> None:
    """`pg_ctl stop -m immediate`: the postmaster drops every backend at once."""
    assert server.process is not None
    server.process.send_signal(signal.SIGQUIT)
    server.process.wait(30)


def start_again(server: PostgresServer, timeout: float = 30) -> None:
    """The same postmaster command line again (PostgreSQL wrote it to postmaster.opts)."""
    command = shlex.split((server.root / "data" / "postmaster.opts").read_text())
    with open(server.log_path, "ab") as log:
        server.process = subprocess.Popen(command, cwd=server.root, stdout=log,
                                          stderr=subprocess.STDOUT, **server.run_as)
    deadline = time.monotonic() + timeout
    while True:
        try:
            server.sql("SELECT 1")
            return
        except Exception:  # still recovering from the immediate stop
            assert server.process.poll() is None, server.log_path.read_text()[-2000:]
            assert time.monotonic() < deadline, "postgres did not start again"
            time.sleep(0.1)


@pytest.fixture(scope="module")
def server() -> Iterator[PostgresServer]:
    started = start_postgres()
    yield started
    started.stop()


@pytest.fixture(scope="module")
def gateway(server: PostgresServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    dsn = server.create_database("outage")
    # The test server commits asynchronously (tests/clouds/postgres.py): an immediate stop would
    # lose the last commits. This database's commits are durable, as a real deployment's.
    server.sql("ALTER DATABASE outage SET synchronous_commit = on")
    config = {"metadata": {"backend": "postgres", "dsn": dsn}}
    with start_gateway(tmp_path_factory.mktemp("gw"), config=config) as gw:
        yield gw


def unavailable(call: Callable[[], Any]) -> ClientError:
    """`call` fails with the S3 answer for "try again": 503 ServiceUnavailable, Retry-After."""
    with pytest.raises(ClientError) as caught:
        call()
    response = caught.value.response
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 503, response
    assert response["ResponseMetadata"]["HTTPHeaders"].get("retry-after"), response
    return caught.value


def test_requests_get_503_while_postgres_is_down_and_succeed_after(
        server: PostgresServer, gateway: Gateway) -> None:
    s3 = gateway.client()
    bucket = f"outage-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="before", Body=b"written before the outage")

    stop_immediately(server)
    try:
        for call in (
            lambda: s3.put_object(Bucket=bucket, Key="during", Body=b"x" * 1000),
            lambda: s3.get_object(Bucket=bucket, Key="before"),
            lambda: s3.head_object(Bucket=bucket, Key="before"),
            lambda: s3.list_objects_v2(Bucket=bucket),
            lambda: s3.delete_object(Bucket=bucket, Key="before"),
            lambda: s3.create_bucket(Bucket=f"{bucket}-new"),
            lambda: s3.create_multipart_upload(Bucket=bucket, Key="mpu"),
            lambda: s3.list_buckets(),
        ):
            error = unavailable(call)
            if error.operation_name != "HeadObject":  # HEAD answers carry no body
                assert error.response["Error"]["Code"] == "ServiceUnavailable", error.response
        # The body is S3's XML error, as AWS sends it.
        url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "before"})
        raw = requests.get(url, timeout=10)
        assert raw.status_code == 503
        assert raw.headers["Content-Type"] == "application/xml"
        assert raw.headers["Retry-After"].isdigit()
        assert raw.content.startswith(b"<?xml")
        assert b"<Code>ServiceUnavailable</Code>" in raw.content
        assert str(server.port).encode() not in raw.content  # why is for the log, not clients
    finally:
        start_again(server)

    # Serving again by itself: the pool replaces the connections the stop broke.
    deadline = time.monotonic() + 20
    while True:
        try:
            s3.put_object(Bucket=bucket, Key="after", Body=b"written after the outage")
            break
        except ClientError as exc:
            assert exc.response["ResponseMetadata"]["HTTPStatusCode"] == 503, exc.response
            assert time.monotonic() < deadline, "the gateway did not serve again"
            time.sleep(0.2)
    assert s3.get_object(Bucket=bucket, Key="before")["Body"].read() == \
        b"written before the outage"
    assert s3.get_object(Bucket=bucket, Key="after")["Body"].read() == b"written after the outage"
    # What failed changed nothing: no object, no bucket, no upload, the object not deleted.
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]]
    assert keys == ["after", "before"]
    assert f"{bucket}-new" not in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    log = gateway.log()
    assert "Traceback" not in log, log[-3000:]
    assert "metadata store unavailable" in log, log[-3000:]  # the operator is told, once a while
    gateway.settle()  # and no bytes were left behind: only the two objects' remain
    assert len(gateway.data_files()) == 2, gateway.data_files()
