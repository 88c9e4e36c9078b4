"""Accounts and their access keys, loaded from authdata.json (or replaced by SCALITY_* env)."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.errors import ConfigFileError

ENV_ACCESS_KEY = "SCALITY_ACCESS_KEY_ID"
ENV_SECRET_KEY = "SCALITY_SECRET_ACCESS_KEY"
# What CloudServer's in-memory builder gives the env-defined account.
CUSTOM_ACCOUNT_NAME = "CustomAccount"
CUSTOM_ACCOUNT_EMAIL = "customaccount1@setbyenv.com"
CUSTOM_ACCOUNT_SHORTID = "123456789012"

_SHORTID_RE = re.compile(r"^[0-9]{12}$")
_ARN_RE = re.compile(r"^arn:aws:iam::([0-9]{12}):root$")


@dataclass(frozen=True)
class Account:
    name: str
    email: str
    arn: str
    canonical_id: str
    shortid: str


class AccountStore:
    """Read-only lookups over the loaded accounts (built once at start-up)."""

    def __init__(self, entries: list[tuple[Account, list[tuple[str, str]]]]) -> None:
        self.accounts: list[Account] = [account for account, _ in entries]
        self._by_access_key: dict[str, tuple[Account, str]] = {}
        for account, keys in entries:
            for access, secret in keys:
                self._by_access_key[access] = (account, secret)
        self._by_canonical_id = {a.canonical_id: a for a in self.accounts}
        self._by_email = {a.email.lower(): a for a in self.accounts}

    def lookup(self, access_key: str) -> tuple[Account, str] | None:
        """The account owning `access_key` and the key's secret, or None."""
        return self._by_access_key.get(access_key)

    def by_canonical_id(self, canonical_id: str) -> Account | None:
        return self._by_canonical_id.get(canonical_id)

    def by_email(self, email: str) -> Account | None:
        # Emails compare case-insensitively, as S3 grants by email do.
        return self._by_email.get(email.lower())

    def __repr__(self) -> str:  # never show secrets
        return f"AccountStore({[a.name for a in self.accounts]!r})"


def load_accounts(path: Path, env: Mapping[str, str]) -> AccountStore:
    """Load `path`, unless env defines both SCALITY_* keys: then they alone make one account."""
    access, secret = env.get(ENV_ACCESS_KEY), env.get(ENV_SECRET_KEY)
    if access and secret:
        return AccountStore([(_custom_account(access), [(access, secret)])])
    return AccountStore(_parse_file(path))


def _custom_account(access_key: str) -> Account:
    # Deterministic so that buckets created under the env account keep their owner across restarts.
    canonical_id = hashlib.sha256(b"scality-env-account:" + access_key.encode()).hexdigest()
    return Account(
        name=CUSTOM_ACCOUNT_NAME,
        email=CUSTOM_ACCOUNT_EMAIL,
        arn=f"arn:aws:iam::{CUSTOM_ACCOUNT_SHORTID}:root",
        canonical_id=canonical_id,
        shortid=CUSTOM_ACCOUNT_SHORTID,
    )


def _parse_file(path: Path) -> list[tuple[Account, list[tuple[str, str]]]]:
    file = str(path)

    def fail(where: str, message: str) -> ConfigFileError:
        return ConfigFileError(file=file, where=where, message=message)

    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise fail("", f"cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise fail("", "not UTF-8 text") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise fail(f"line {exc.lineno} column {exc.colno}", f"invalid JSON: {exc.msg}") from None

    if not isinstance(data, dict):
        raise fail("", "must be a JSON object with an \"accounts\" list")
    raw_accounts = data.get("accounts")
    if not isinstance(raw_accounts, list):
        raise fail("accounts", "must be a list of accounts")
    if not raw_accounts:
        raise fail("accounts", "must hold at least one account")

    entries: list[tuple[Account, list[tuple[str, str]]]] = []
    seen: dict[str, dict[str, str]] = {"name": {}, "email": {}, "arn": {}, "canonicalID": {}}
    access_keys_seen: dict[str, str] = {}
    for index, raw in enumerate(raw_accounts):
        where = f"accounts[{index}]"
        if not isinstance(raw, dict):
            raise fail(where, "must be an object")
        if "users" in raw:
            # CloudServer rejects the legacy per-account user lists.
            raise fail(f"{where}.users", "IAM users are not supported; give the account its own keys")
        fields: dict[str, str] = {}
        for key in ("name", "email", "arn", "canonicalID", "shortid"):
            fields[key] = _required_string(raw, key, f"{where}.{key}", fail)
        if "@" not in fields["email"]:
            raise fail(f"{where}.email", f"not an email address: {fields['email']!r}")
        if not _SHORTID_RE.fullmatch(fields["shortid"]):
            raise fail(f"{where}.shortid", "must be 12 digits")
        if not _ARN_RE.fullmatch(fields["arn"]):
            raise fail(f"{where}.arn", f"must look like arn:aws:iam::<12 digits>:root, got {fields['arn']!r}")
        for key, values in seen.items():
            value = fields[key].lower() if key == "email" else fields[key]
            if value in values:
                raise fail(f"{where}.{key}", f"{fields[key]!r} already used by {values[value]}")
            values[value] = where

        raw_keys = raw.get("keys", [])
        if not isinstance(raw_keys, list):
            raise fail(f"{where}.keys", "must be a list of {\"access\", \"secret\"} objects")
        keys: list[tuple[str, str]] = []
        for key_index, raw_key in enumerate(raw_keys):
            key_where = f"{where}.keys[{key_index}]"
            if not isinstance(raw_key, dict):
                raise fail(key_where, "must be an object with \"access\" and \"secret\"")
            access = _required_string(raw_key, "access", f"{key_where}.access", fail)
            secret = _required_string(raw_key, "secret", f"{key_where}.secret", fail)
            if access in access_keys_seen:
                raise fail(f"{key_where}.access", f"access key {access!r} already used by {access_keys_seen[access]}")
            access_keys_seen[access] = key_where
            keys.append((access, secret))

        account = Account(
            name=fields["name"],
            email=fields["email"],
            arn=fields["arn"],
            canonical_id=fields["canonicalID"],
            shortid=fields["shortid"],
        )
        entries.append((account, keys))
    return entries


def _required_string(raw: dict[str, Any], key: str, where: str,
                     fail: Callable[[str, str], ConfigFileError]) -> str:
    value = raw.get(key)
    if value is None:
        raise fail(where, "missing")
    # Never echo the value: this may be a secret.
    if not isinstance(value, str) or not value.strip():
        raise fail(where, "must be a non-empty string")
    return value
