"""gateway.accounts: the shipped authdata.json, the SCALITY_* override, and bad-file messages."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from gateway.accounts import Account, load_accounts
from gateway.errors import ConfigFileError

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
