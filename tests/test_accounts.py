"""gateway.accounts: the shipped authdata.json, the SCALITY_* override, bad-file messages, and
accounts at runtime (`python -m gateway accounts`) on a running gateway (SQLite) and on two
gateways sharing PostgreSQL, with secrets sealed under the master key file."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from gateway.accounts import Account, load_accounts
from gateway.errors import ConfigFileError
from tests.gatewayproc import REPO, Gateway, start_gateway

SHIPPED = Path(__file__).resolve().parent.parent / "conf" / "authdata.json"

BART_ID = "79a59df900b949e55d96a1e698fbacedfd6e09d98eacf8f8d5218e7cd47ef2be"
LISA_ID = "79a59df900b949e55d96a1e698fbacedfd6e09d98eacf8f8d5218e7cd47ef2bf"


def test_shipped_file_loads_bart_and_lisa() -> None:
    store = load_accounts(SHIPPED, {})
    assert [a.name for a in store.accounts] == ["Bart", "Lisa"]
    bart = Account(name="Bart", email="sampleaccount1@sampling.com",
                   arn="arn:aws:iam::123456789012:root", canonical_id=BART_ID,
                   shortid="123456789012")
    lisa = Account(name="Lisa", email="sampleaccount2@sampling.com",
                   arn="arn:aws:iam::123456789013:root", canonical_id=LISA_ID,
                   shortid="123456789013")
    assert store.lookup("accessKey1") == (bart, "verySecretKey1")
    assert store.lookup("accessKey2") == (lisa, "verySecretKey2")
    assert store.lookup("accessKey3") is None
    assert store.by_canonical_id(LISA_ID) == lisa
    assert store.by_canonical_id("0" * 64) is None
    assert store.by_email("SampleAccount1@sampling.com") == bart
    assert store.by_email("nobody@sampling.com") is None
    assert "verySecretKey" not in repr(store)


def test_env_keys_replace_the_file(tmp_path: Path) -> None:
    env = {"SCALITY_ACCESS_KEY_ID": "envAccess", "SCALITY_SECRET_ACCESS_KEY": "envSecret"}
    # The file is not even read: a missing one is fine.
    store = load_accounts(tmp_path / "missing.json", env)
    assert len(store.accounts) == 1
    account, secret = store.lookup("envAccess") or (None, None)
    assert account is not None and secret == "envSecret"
    assert account.name == "CustomAccount"
    assert re.fullmatch(r"[0-9a-f]{64}", account.canonical_id)
    assert re.fullmatch(r"arn:aws:iam::[0-9]{12}:root", account.arn)
    assert store.lookup("accessKey1") is None
    # Same key, same owner id across restarts; another key, another id.
    assert load_accounts(SHIPPED, env).accounts[0].canonical_id == account.canonical_id
    other = load_accounts(SHIPPED, {**env, "SCALITY_ACCESS_KEY_ID": "otherAccess"})
    assert other.accounts[0].canonical_id != account.canonical_id


@pytest.mark.parametrize("env", [{"SCALITY_ACCESS_KEY_ID": "only"},
                                 {"SCALITY_SECRET_ACCESS_KEY": "only"}])
def test_one_env_key_alone_keeps_the_file(env: dict[str, str]) -> None:
    store = load_accounts(SHIPPED, env)
    assert [a.name for a in store.accounts] == ["Bart", "Lisa"]


def _shipped() -> dict[str, Any]:
    return json.loads(SHIPPED.read_text())


def _mutate(change: Any) -> dict[str, Any]:
    data = _shipped()
    change(data)
    return data


BAD_FILES = [
    ("no accounts list", {"accounts": {}}, "accounts"),
    ("empty accounts", {"accounts": []}, "accounts"),
    ("not an object", _mutate(lambda d: d["accounts"].__setitem__(1, "Lisa")), "accounts[1]"),
    ("missing email", _mutate(lambda d: d["accounts"][1].pop("email")), "accounts[1].email"),
    ("duplicate name", _mutate(lambda d: d["accounts"][1].__setitem__("name", "Bart")),
     "accounts[1].name"),
    ("duplicate email", _mutate(lambda d: d["accounts"][1].__setitem__(
        "email", "SAMPLEACCOUNT1@sampling.com")), "accounts[1].email"),
    ("duplicate arn", _mutate(lambda d: d["accounts"][1].__setitem__(
        "arn", "arn:aws:iam::123456789012:root")), "accounts[1].arn"),
    ("duplicate canonicalID", _mutate(lambda d: d["accounts"][1].__setitem__(
        "canonicalID", BART_ID)), "accounts[1].canonicalID"),
    ("bad arn", _mutate(lambda d: d["accounts"][0].__setitem__(
        "arn", "aws::123456789012:root")), "accounts[0].arn"),
    ("bad shortid", _mutate(lambda d: d["accounts"][0].__setitem__("shortid", "12")),
     "accounts[0].shortid"),
    ("users are rejected", _mutate(lambda d: d["accounts"][0].__setitem__("users", [])),
     "accounts[0].users"),
    ("keys not a list", _mutate(lambda d: d["accounts"][0].__setitem__("keys", "k")),
     "accounts[0].keys"),
    ("empty secret", _mutate(lambda d: d["accounts"][1]["keys"][0].__setitem__("secret", "")),
     "accounts[1].keys[0].secret"),
    ("secret not a string", _mutate(lambda d: d["accounts"][1]["keys"][0].__setitem__(
        "secret", 42)), "accounts[1].keys[0].secret"),
    ("missing access", _mutate(lambda d: d["accounts"][1]["keys"][0].pop("access")),
     "accounts[1].keys[0].access"),
    ("duplicate access key", _mutate(lambda d: d["accounts"][1]["keys"][0].__setitem__(
        "access", "accessKey1")), "accounts[1].keys[0].access"),
]


@pytest.mark.parametrize(("content", "where"), [(c, w) for _, c, w in BAD_FILES],
                         ids=[name for name, _, _ in BAD_FILES])
def test_bad_file_names_file_and_key(tmp_path: Path, content: Any, where: str) -> None:
    path = tmp_path / "authdata.json"
    path.write_text(json.dumps(content, indent=2))
    with pytest.raises(ConfigFileError) as caught:
        load_accounts(path, {})
    err = caught.value
    assert err.file == str(path)
    assert err.where == where
    message = str(err)
    assert message.startswith(f"{path}: {where}: ")
    assert "\n" not in message
    assert "verySecretKey" not in message


def test_invalid_json_gives_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "authdata.json"
    path.write_text('{\n  "accounts": [\n    {"name": "Bart",}\n  ]\n}\n')
    with pytest.raises(ConfigFileError) as caught:
        load_accounts(path, {})
    assert caught.value.where == "line 3 column 21"
    assert str(caught.value).startswith(f"{path}: line 3 column 21: invalid JSON")


def test_missing_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "nope.json"
    with pytest.raises(ConfigFileError) as caught:
        load_accounts(path, {})
    assert caught.value.file == str(path)
    assert "cannot read" in str(caught.value)


# --- accounts at runtime ------------------------------------------------------------------

def accounts_cli(env: dict[str, str], *args: str, ok: bool = True) -> Any:
    """Run `python -m gateway accounts ARGS --json` with a gateway's config and environment."""
    result = subprocess.run([sys.executable, "-m", "gateway", "accounts", *args, "--json"],
                            cwd=REPO, env={**os.environ, **env}, capture_output=True, text=True,
                            timeout=60)
    if not ok:
        assert result.returncode == 1, result.stdout + result.stderr
        return result.stderr
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def works(gw: Gateway, access: str, secret: str) -> bool | None:
    """True when the key is accepted, False when refused as unknown, None otherwise."""
    try:
        gw.client(access, secret).list_buckets()
        return True
    except ClientError as err:
        return False if err.response["Error"]["Code"] == "InvalidAccessKeyId" else None


def within(seconds: float, check: Callable[[], bool]) -> float:
    """How long `check()` took to come true; fails past `seconds`."""
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < seconds, f"not true within {seconds} s"
        time.sleep(0.05)
    return time.monotonic() - started


# The documented bound: accounts.refreshSeconds (1 s) plus a request's own time.
BOUND = 3.0


@pytest.fixture(scope="module")
def sqlite_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    # A shorter poll than the default 1 s keeps the test quick; PostgreSQL below keeps 1 s.
    with start_gateway(tmp_path_factory.mktemp("accounts"),
                       config={"accounts": {"refreshSeconds": 0.2}}) as gw:
        yield gw


def test_cli_manages_accounts_on_a_running_gateway(sqlite_gateway: Gateway) -> None:
    gw, env = sqlite_gateway, sqlite_gateway.env
    alice = accounts_cli(env, "add", "alice", "--email", "alice@example.com")
    assert alice["accessKey"].startswith("GW") and len(alice["secretKey"]) >= 40
    within(BOUND, lambda: works(gw, alice["accessKey"], alice["secretKey"]) is True)
    s3 = gw.client(alice["accessKey"], alice["secretKey"])
    s3.create_bucket(Bucket="alice-bucket")
    s3.put_object(Bucket="alice-bucket", Key="k", Body=b"mine")
    assert "alice-bucket" not in [b["Name"] for b in gw.client().list_buckets()["Buckets"]]

    listed = {a["name"]: a for a in accounts_cli(env, "list")["accounts"]}
    assert listed["alice"]["source"] == "store" and listed["Bart"]["source"] == "file"
    assert listed["alice"]["canonicalId"] == alice["canonicalId"]
    assert [k["accessKey"] for k in listed["alice"]["keys"]] == [alice["accessKey"]]
    assert alice["secretKey"] not in json.dumps(listed)  # a secret is shown once, only

    second = accounts_cli(env, "add-key", "alice")
    within(BOUND, lambda: works(gw, second["accessKey"], second["secretKey"]) is True)
    assert gw.client(second["accessKey"], second["secretKey"]).get_object(
        Bucket="alice-bucket", Key="k")["Body"].read() == b"mine"

    accounts_cli(env, "disable-key", alice["accessKey"])
    within(BOUND, lambda: works(gw, alice["accessKey"], alice["secretKey"]) is False)
    assert works(gw, second["accessKey"], second["secretKey"]) is True
    accounts_cli(env, "enable-key", alice["accessKey"])
    within(BOUND, lambda: works(gw, alice["accessKey"], alice["secretKey"]) is True)

    # The seed's keys can be turned off (and on) too; the seed account itself stays.
    accounts_cli(env, "disable-key", "accessKey2")
    within(BOUND, lambda: works(gw, "accessKey2", "verySecretKey2") is False)
    accounts_cli(env, "enable-key", "accessKey2")
    within(BOUND, lambda: works(gw, "accessKey2", "verySecretKey2") is True)
    assert "comes from the accounts file" in accounts_cli(env, "remove", "Bart", ok=False)
    assert "already exists" in accounts_cli(env, "add", "alice", ok=False)

    # An account that owns a bucket stays; once the bucket is gone, it goes with its keys.
    assert "owns 1 bucket(s) (alice-bucket)" in accounts_cli(env, "remove", "alice", ok=False)
    s3.delete_object(Bucket="alice-bucket", Key="k")
    s3.delete_bucket(Bucket="alice-bucket")
    assert accounts_cli(env, "remove", "alice")["removed"]
    within(BOUND, lambda: works(gw, second["accessKey"], second["secretKey"]) is False)
    assert works(gw, alice["accessKey"], alice["secretKey"]) is False
    assert "alice" not in {a["name"] for a in accounts_cli(env, "list")["accounts"]}


def test_secrets_are_sealed_under_the_master_key(sqlite_gateway: Gateway) -> None:
    gw, env = sqlite_gateway, sqlite_gateway.env
    bob = accounts_cli(env, "add", "bob")
    master = gw.workdir / "localKeys" / "master.key"
    assert stat.S_IMODE(master.stat().st_mode) == 0o600
    within(BOUND, lambda: works(gw, bob["accessKey"], bob["secretKey"]) is True)
    # Neither the metadata file nor its WAL holds the secret in clear.
    stored = b"".join(p.read_bytes() for p in (gw.workdir / "metadata").iterdir() if p.is_file())
    assert bob["accessKey"].encode() in stored
    assert bob["secretKey"].encode() not in stored
    # Another master key cannot open it: that key is refused, the seed keeps working.
    other = gw.workdir / "other.key"
    other.write_text("ab" * 32)
    other.chmod(0o600)
    listed = accounts_cli({**env, "S3_MASTER_KEY_FILE": str(other)}, "list")["accounts"]
    key = next(a for a in listed if a["name"] == "bob")["keys"][0]
    assert key["problem"] == "cannot be unsealed"
    accounts_cli(env, "remove", "bob")


@pytest.mark.postgres
def test_two_gateways_on_postgres_share_accounts(postgres_server: Any,
                                                 tmp_path: Path) -> None:
    dsn = postgres_server.create_database("accounts_two_gateways")
    env = {"S3_MASTER_KEY_FILE": str(tmp_path / "shared" / "master.key"),
           "S3DATAPATH": str(tmp_path / "shared-data")}
    config = {"metadata": {"backend": "postgres", "dsn": dsn}}
    with start_gateway(tmp_path / "a", config=config, env=env) as one, \
            start_gateway(tmp_path / "b", config=config, env=env) as two:
        carol = accounts_cli(one.env, "add", "carol")  # through the first one's config
        for gw in (one, two):
            within(BOUND, lambda gw=gw: works(gw, carol["accessKey"], carol["secretKey"]) is True)
        one.client(carol["accessKey"], carol["secretKey"]).create_bucket(Bucket="carol-bucket")
        names = [b["Name"] for b in two.client(carol["accessKey"],
                                               carol["secretKey"]).list_buckets()["Buckets"]]
        assert names == ["carol-bucket"]
        accounts_cli(two.env, "disable-key", carol["accessKey"])
        took = [within(BOUND, lambda gw=gw: works(gw, carol["accessKey"],
                                                  carol["secretKey"]) is False)
                for gw in (one, two)]
        print(f"disabled key refused on both gateways within {max(took):.2f} s")
        assert works(one, "accessKey1", "verySecretKey1") is True
