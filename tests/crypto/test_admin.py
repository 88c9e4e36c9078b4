"""python -m gateway keys: list, create, rotate the keyring; a running gateway wraps new
objects with the rotated version while objects of the old one still read."""

from __future__ import annotations

import base64
import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from tests.gatewayproc import REPO, start_gateway


def keys_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway", "keys", *args], cwd=REPO,
                          env={**os.environ, **env}, capture_output=True, text=True, timeout=60)


def wrapped_versions(workdir: Path) -> dict[str, int]:
    """key -> master key version of each object's wrapped data key, read from the metadata."""
    found: dict[str, int] = {}
    for db in (workdir / "metadata").glob("*.sqlite3"):
        with sqlite3.connect(db) as conn:
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
            if "objects" not in tables:
                continue
            for key, attrs in conn.execute("SELECT key, attrs FROM objects"):
                sse = json.loads(attrs or "{}").get("sse")
                if sse:
                    found[key] = int.from_bytes(base64.b64decode(sse["wrappedKey"])[1:5], "big")
    return found


def test_keys_command_and_live_rotation(tmp_path: Path) -> None:
    with start_gateway(tmp_path) as gw:
        listed = keys_cli(gw.env, "list")
        assert listed.returncode == 0, listed.stderr
        ring = json.loads((tmp_path / "localKeys" / "sse-keyring.json").read_text())
        assert ring["default"] in listed.stdout and "versions 1" in listed.stdout
        secret = ring["keys"][ring["default"]]["versions"][0]
        assert secret not in listed.stdout  # never the key material
        created = keys_cli(gw.env, "create", "team-key")
        assert created.stdout.strip() == "team-key"
        s3 = gw.client()
        s3.create_bucket(Bucket="rot")
        s3.put_object(Bucket="rot", Key="old", Body=b"before", ServerSideEncryption="AES256")
        rotated = keys_cli(gw.env, "rotate")
        assert rotated.returncode == 0 and "version 2 is now current" in rotated.stdout
        time.sleep(1.1)  # the gateway looks at the keyring file at most once a second
        s3.put_object(Bucket="rot", Key="new", Body=b"after", ServerSideEncryption="AES256")
        s3.put_object(Bucket="rot", Key="kms", Body=b"team", ServerSideEncryption="aws:kms",
                      SSEKMSKeyId="team-key")
        assert s3.get_object(Bucket="rot", Key="old")["Body"].read() == b"before"
        assert s3.get_object(Bucket="rot", Key="new")["Body"].read() == b"after"
        assert s3.get_object(Bucket="rot", Key="kms")["Body"].read() == b"team"
        versions = wrapped_versions(tmp_path)
        assert versions["old"] == 1 and versions["new"] == 2 and versions["kms"] == 1
        missing = keys_cli(gw.env, "rotate", "no-such-key")
        assert missing.returncode == 1 and "no key" in missing.stderr
