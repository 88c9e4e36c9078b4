"""SQLite metadata whose write lock another process holds past the store's busy_timeout (10 s;
a worker, the accounts CLI, an operator's sqlite3 shell): the write answers 503
ServiceUnavailable with Retry-After, as a PostgreSQL outage does (test_postgres_outage.py), not
500; it changed nothing; reads go on meanwhile (WAL), and writes succeed once the lock is gone."""

from __future__ import annotations

import sqlite3
import time
import uuid
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from tests.gatewayproc import start_gateway


def test_a_write_locked_out_past_busy_timeout_answers_503(tmp_path: Path) -> None:
    with start_gateway(tmp_path / "gw") as gateway:
        s3 = gateway.client(read_timeout=60)
        bucket = f"locked-{uuid.uuid4().hex[:8]}"
        s3.create_bucket(Bucket=bucket)
        s3.put_object(Bucket=bucket, Key="before", Body=b"before the lock")

        holder = sqlite3.connect(tmp_path / "gw" / "metadata" / "metadata.sqlite3",
                                 isolation_level=None)
        try:
            holder.execute("BEGIN IMMEDIATE")  # the write lock, held past busy_timeout
            started = time.monotonic()
            with pytest.raises(ClientError) as caught:
                s3.put_object(Bucket=bucket, Key="during", Body=b"refused")
            waited = time.monotonic() - started
            response = caught.value.response
            assert response["ResponseMetadata"]["HTTPStatusCode"] == 503, response
            assert response["Error"]["Code"] == "ServiceUnavailable"
            assert response["ResponseMetadata"]["HTTPHeaders"]["retry-after"].isdigit()
            assert waited >= 5, waited  # it did wait for the lock first
            # Reads do not need the lock.
            assert s3.get_object(Bucket=bucket, Key="before")["Body"].read() == b"before the lock"
        finally:
            holder.rollback()
            holder.close()

        s3.put_object(Bucket=bucket, Key="after", Body=b"after the lock")
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]]
        assert keys == ["after", "before"]  # the refused write left no object
        log = gateway.log()
        assert "metadata store unavailable" in log and "Traceback" not in log, log[-3000:]
        gateway.settle()  # nor bytes: only the two objects' remain
        assert len(gateway.data_files()) == 2, gateway.data_files()
