"""Accounts and their access keys.

The seed is conf/authdata.json (or, replacing it, the one account of SCALITY_ACCESS_KEY_ID and
SCALITY_SECRET_ACCESS_KEY). Accounts and keys added at runtime live in the metadata store
(`python -m gateway accounts ...`, main() below), so every gateway sharing the store sees them;
each gateway polls the store's change counter and reloads within accounts.refreshSeconds.

Secrets at rest: SigV4 and SigV2 need the plain secret to check a signature, so it cannot be
hashed. Each secret in the store is sealed with AES-256-GCM under a master key kept in its own
file (accounts.masterKeyFile / S3_MASTER_KEY_FILE, default localKeys/master.key beside the
metadata folder, i.e. ./localKeys/master.key; created
mode 0600 on first use), with the access key id as associated data (a sealed secret moved to
another key's row does not open). A copy of the metadata (the SQLite file, a PostgreSQL dump)
alone gives no secret away; whoever holds the master key file as well can open them all.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import logging
import os
import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.errors import ConfigFileError, MetadataUnavailable
from gateway.metadata.base import AccessKeyRow, AccountRow, MetadataStore

log = logging.getLogger("gateway.accounts")

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
    """Lookups over the accounts: the seed (authdata.json, or the SCALITY_* account) merged
    with the accounts and keys kept in the metadata store, reloaded when the store's change
    counter moves (start() polls it every accounts.refreshSeconds, off the request path).

    Every lookup is a dict read: a refresh builds new dicts and swaps them in one step."""

    def __init__(self, entries: list[tuple[Account, list[tuple[str, str]]]],
                 source: str = "file") -> None:
        self.seed = entries
        self.seed_source = source  # "file" (authdata.json) or "env" (SCALITY_*)
        self.version = -1  # the store's change counter last loaded (-1: none)
        self.key_rows: list[AccessKeyRow] = []
        self.store_accounts: list[Account] = []
        self._store: MetadataStore | None = None
        self._master: MasterKey | None = None
        self._task: asyncio.Task[None] | None = None
        self._unsealable: set[str] = set()
        self._build([], [])

    def _build(self, rows: list[AccountRow], keys: list[AccessKeyRow]) -> None:
        accounts = [account for account, _ in self.seed]
        by_name = {a.name: a for a in accounts}
        taken_ids = {a.canonical_id for a in accounts}
        store_accounts: list[Account] = []
        for row in rows:
            if row.name in by_name or row.canonical_id in taken_ids:
                continue  # the seed wins; the CLI never adds such a row
            account = Account(name=row.name, email=row.email, arn=row.arn,
                              canonical_id=row.canonical_id, shortid=row.shortid)
            by_name[row.name] = account
            store_accounts.append(account)
        by_access: dict[str, tuple[Account, str]] = {}
        for account, seed_keys in self.seed:
            for access, secret in seed_keys:
                by_access[access] = (account, secret)
        for key in keys:
            if not key.enabled:
                by_access.pop(key.access, None)  # a disabled key (of the store or the seed)
                continue
            owner = by_name.get(key.account)
            if key.secret is None or owner is None:
                continue
            secret = self._unseal(key)
            if secret is not None:
                by_access[key.access] = (owner, secret)
        # Swapped in last, each in one assignment: a request sees the old or the new set.
        self.store_accounts = store_accounts
        self.key_rows = keys
        self.accounts: list[Account] = accounts + store_accounts
        self._by_access_key = by_access
        self._by_canonical_id = {a.canonical_id: a for a in self.accounts}
        self._by_email = {a.email.lower(): a for a in self.accounts}

    def _unseal(self, key: AccessKeyRow) -> str | None:
        assert key.secret is not None
        if self._master is None:
            return None
        try:
            return self._master.unseal(key.access, key.secret)
        except ValueError as exc:
            if key.access not in self._unsealable:
                self._unsealable.add(key.access)
                log.warning("access key %s is refused: %s", key.access, exc)
            return None

    def lookup(self, access_key: str) -> tuple[Account, str] | None:
        """The account owning `access_key` and the key's secret, or None."""
        return self._by_access_key.get(access_key)

    def by_canonical_id(self, canonical_id: str) -> Account | None:
        return self._by_canonical_id.get(canonical_id)

    def by_email(self, email: str) -> Account | None:
        # Emails compare case-insensitively, as S3 grants by email do.
        return self._by_email.get(email.lower())

    def by_name(self, name: str) -> Account | None:
        return next((a for a in self.accounts if a.name == name), None)

    def seed_keys(self) -> dict[str, Account]:
        return {access: account for account, keys in self.seed for access, _ in keys}

    # --- the metadata store's accounts ---------------------------------------------------
    async def start(self, store: MetadataStore, master: MasterKey, interval: float) -> None:
        """Load the store's accounts, then poll its change counter every `interval` s."""
        self._store, self._master = store, master
        await self.refresh()
        self._task = asyncio.create_task(self._poll(interval), name="accounts-refresh")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def refresh(self) -> bool:
        """Reload when the change counter moved; True when it did."""
        assert self._store is not None
        if await self._store.accounts_version() == self.version:
            return False
        version, rows, keys = await self._store.load_accounts()
        self._build(rows, keys)
        self.version = version
        return True

    async def _poll(self, interval: float) -> None:
        failing = False
        while True:
            await asyncio.sleep(interval)
            try:
                await self.refresh()
                failing = False
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the store is down: keep the last known accounts
                if not failing:
                    log.warning("accounts: cannot read the metadata store (%s); keeping the "
                                "accounts last read", " ".join(str(exc).split())[:200])
                failing = True

    def __repr__(self) -> str:  # never show secrets
        return f"AccountStore({[a.name for a in self.accounts]!r})"


def load_accounts(path: Path, env: Mapping[str, str]) -> AccountStore:
    """Load `path`, unless env defines both SCALITY_* keys: then they alone make one account.
    This is the seed; AccountStore.start() adds the metadata store's accounts."""
    access, secret = env.get(ENV_ACCESS_KEY), env.get(ENV_SECRET_KEY)
    if access and secret:
        return AccountStore([(_custom_account(access), [(access, secret)])], source="env")
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


# --- secrets at rest: the master key file ---------------------------------------------------
MASTER_KEY_BYTES = 32
SEALED_PREFIX = "v1"


class MasterKey:
    """AES-256-GCM over each secret, keyed by the master key file; the access key id is the
    associated data. Sealed form: v1:<key id>:<base64(nonce | ciphertext | tag)>, where the
    key id (8 hex digits of the key's SHA-256) tells which master key sealed it."""

    def __init__(self, key: bytes, path: Path) -> None:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        self._aead = AESGCM(key)
        self.path = path
        self.key_id = hashlib.sha256(key).hexdigest()[:8]

    def seal(self, access: str, secret: str) -> str:
        nonce = secrets.token_bytes(12)
        sealed = self._aead.encrypt(nonce, secret.encode(), access.encode())
        return f"{SEALED_PREFIX}:{self.key_id}:{base64.b64encode(nonce + sealed).decode()}"

    def unseal(self, access: str, sealed: str) -> str:
        from cryptography.exceptions import InvalidTag

        parts = sealed.split(":", 2)
        if len(parts) != 3 or parts[0] != SEALED_PREFIX:
            raise ValueError("its secret is not sealed in a form this gateway knows")
        _, key_id, data = parts
        if key_id != self.key_id:
            raise ValueError(f"its secret was sealed with master key {key_id}, not with "
                             f"{self.path} (key {self.key_id})")
        try:
            raw = base64.b64decode(data, validate=True)
            return self._aead.decrypt(raw[:12], raw[12:], access.encode()).decode()
        except (ValueError, InvalidTag):
            raise ValueError("its sealed secret does not open (altered, or moved from "
                             "another key's row)") from None

    def __repr__(self) -> str:
        return f"MasterKey({str(self.path)!r}, id={self.key_id})"


def load_master_key(path: Path) -> MasterKey:
    """Read the master key file, creating it (mode 0600, in a 0700 folder) when missing.
    Several processes creating it at once agree on one key: each writes a temporary file and
    links it into place, which only the first link does."""
    def fail(message: str) -> ConfigFileError:
        return ConfigFileError(str(path), "", f"{message} (the accounts' master key: "
                               "accounts.masterKeyFile in config.json or S3_MASTER_KEY_FILE)")

    try:
        if not path.exists():
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            temp = path.with_name(f".{path.name}.{secrets.token_hex(6)}")
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                os.write(fd, secrets.token_hex(MASTER_KEY_BYTES).encode() + b"\n")
                os.fsync(fd)
            finally:
                os.close(fd)
            try:
                os.link(temp, path)
                log.warning("created the accounts' master key %s (mode 0600): keep it, and "
                            "keep it apart from metadata backups; every gateway sharing the "
                            "metadata store needs the same file", path)
            except FileExistsError:
                pass  # another process made it first: use theirs
            finally:
                os.unlink(temp)
        text = path.read_text().strip()
        mode = path.stat().st_mode & 0o077
    except OSError as exc:
        raise fail(f"cannot read or create it: {exc.strerror or exc}") from None
    if not re.fullmatch(r"[0-9a-fA-F]{64}", text):
        raise fail("must hold 64 hex digits (a 256-bit key)")
    if mode:
        log.warning("the accounts' master key %s can be read by other users: chmod 600 it",
                    path)
    return MasterKey(bytes.fromhex(text), path)


# --- python -m gateway accounts ... ---------------------------------------------------------
ACCESS_KEY_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@+=,-]{0,63}$")


def new_access_key() -> str:
    return "GW" + "".join(secrets.choice(ACCESS_KEY_ALPHABET) for _ in range(18))


def new_secret_key() -> str:
    return secrets.token_urlsafe(30)  # 40 characters, 240 bits


class CommandError(Exception):
    """A refused accounts command: the message is the one line to print."""


def _key_rows(store: AccountStore) -> list[dict[str, Any]]:
    """Every account with each of its keys (never a secret), for `accounts list`."""
    stored = {row.access: row for row in store.key_rows}
    seeded = store.seed_keys()
    rows: list[dict[str, Any]] = []
    for account in store.accounts:
        source = store.seed_source if account not in store.store_accounts else "store"
        keys: list[dict[str, Any]] = []
        for access, owner in seeded.items():
            if owner == account:
                row = stored.get(access)
                keys.append({"accessKey": access, "source": store.seed_source,
                             "enabled": row is None or row.enabled})
        for row in store.key_rows:
            if row.account == account.name and row.access not in seeded:
                usable = store.lookup(row.access) is not None
                keys.append({"accessKey": row.access, "source": "store",
                             "enabled": row.enabled, **({} if usable or not row.enabled
                                                        else {"problem": "cannot be unsealed"})})
        rows.append({"name": account.name, "email": account.email,
                     "canonicalId": account.canonical_id, "arn": account.arn,
                     "source": source, "keys": keys})
    return rows


def _metadata_store(settings: Any) -> MetadataStore:
    # As gateway.server.make_metadata, without importing the whole server (a quicker CLI).
    if settings.metadata_backend == "postgres":
        from gateway.metadata.postgres import PostgresStore

        return PostgresStore(settings.postgres_dsn, min_size=1, max_size=2)
    from gateway.metadata.sqlite import SQLiteStore

    return SQLiteStore(settings.metadata_path, durable=settings.storage.durability == "durable")


async def _run_command(args: Any, settings: Any) -> dict[str, Any]:
    store = load_accounts(settings.authdata_path, settings.env)
    master = load_master_key(settings.master_key_path)
    metadata = _metadata_store(settings)
    await metadata.open()
    try:
        await store.start(metadata, master, 3600)
        await store.stop()
        return await _apply(args, store, metadata, master)
    finally:
        await metadata.close()


async def _apply(args: Any, store: AccountStore, metadata: MetadataStore,
                 master: MasterKey) -> dict[str, Any]:
    import time

    now = time.time()
    seed_where = ("the SCALITY_* environment variables" if store.seed_source == "env"
                  else "the accounts file")
    if args.action == "list":
        return {"accounts": _key_rows(store)}
    if args.action == "add":
        if not _NAME_RE.fullmatch(args.name):
            raise CommandError(f"account name {args.name!r}: 1 to 64 letters, digits or "
                               "_.@+=,- (starting with a letter or digit)")
        if store.by_name(args.name) is not None:
            raise CommandError(f"account {args.name!r} already exists")
        email = args.email or f"{args.name.lower()}@gateway.local"
        if "@" not in email:
            raise CommandError(f"not an email address: {email!r}")
        if store.by_email(email) is not None:
            raise CommandError(f"email {email!r} is already used by another account")
        taken = {a.shortid for a in store.accounts}
        shortid = next(s for s in (f"{secrets.randbelow(10**12):012d}" for _ in range(100))
                       if s not in taken)
        row = AccountRow(name=args.name, email=email, arn=f"arn:aws:iam::{shortid}:root",
                         canonical_id=secrets.token_hex(32), shortid=shortid, created=now)
        access, secret = new_access_key(), new_secret_key()
        key = AccessKeyRow(access, args.name, master.seal(access, secret), True, now)
        try:
            await metadata.add_account(row, key)
        except Exception as exc:
            if type(exc).__name__ == "AccountConflict":
                raise CommandError(f"account {args.name!r} or its email is taken") from None
            raise
        return {"account": args.name, "canonicalId": row.canonical_id, "arn": row.arn,
                "email": email, "accessKey": access, "secretKey": secret}
    if args.action == "add-key":
        account = store.by_name(args.name)
        if account is None:
            raise CommandError(f"no account {args.name!r} (python -m gateway accounts list)")
        access, secret = new_access_key(), new_secret_key()
        await metadata.put_access_key(
            AccessKeyRow(access, account.name, master.seal(access, secret), True, now))
        return {"account": account.name, "accessKey": access, "secretKey": secret}
    if args.action in ("disable-key", "enable-key", "remove-key"):
        enable = args.action == "enable-key"
        row = next((r for r in store.key_rows if r.access == args.access_key), None)
        seeded = store.seed_keys().get(args.access_key)
        if row is None and seeded is None:
            raise CommandError(f"no access key {args.access_key!r}")
        if seeded is not None:
            if args.action == "remove-key":
                raise CommandError(f"access key {args.access_key!r} comes from {seed_where}: "
                                   "remove it there (or disable-key it)")
            # The seed's keys are turned off by a row without a secret; on again by its removal.
            if enable:
                await metadata.remove_access_key(args.access_key)
            else:
                await metadata.put_access_key(
                    AccessKeyRow(args.access_key, seeded.name, None, False, now), replace=True)
            return {"accessKey": args.access_key, "enabled": enable}
        assert row is not None
        if args.action == "remove-key":
            await metadata.remove_access_key(args.access_key)
            return {"accessKey": args.access_key, "removed": True}
        await metadata.put_access_key(AccessKeyRow(row.access, row.account, row.secret, enable,
                                                   row.created), replace=True)
        return {"accessKey": args.access_key, "enabled": enable}
    if args.action == "remove":
        account = store.by_name(args.name)
        if account is None:
            raise CommandError(f"no account {args.name!r}")
        if account not in store.store_accounts:
            raise CommandError(f"account {args.name!r} comes from {seed_where}: remove it "
                               "there and restart (or disable-key its keys)")
        buckets = await metadata.list_buckets(account.canonical_id)
        if buckets:
            names = ", ".join(b.name for b in buckets[:5]) + (", ..." if len(buckets) > 5 else "")
            raise CommandError(f"account {args.name!r} owns {len(buckets)} bucket(s) ({names}): "
                               "empty and delete them first")
        await metadata.remove_account(account.name)
        return {"account": account.name, "removed": True}
    raise CommandError(f"unknown action {args.action!r}")


ACCOUNTS_HELP = ("add, list, disable and remove accounts and access keys (kept in the "
                 "metadata store: live on every gateway sharing it, no restart)")


def build_parser() -> Any:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m gateway accounts",
        description="Accounts and access keys kept in the metadata store (with the gateway's "
        "config.json and environment). Changes reach every running gateway sharing the store "
        "within accounts.refreshSeconds (1 s by default), without a restart. A new secret is "
        "printed once, never again. Keys of authdata.json (or SCALITY_*) stay the seed: they "
        "can be disabled here, and edited only in their file.")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    add = actions.add_parser("add", help="add an account with one access key")
    add.add_argument("name")
    add.add_argument("--email", help="default: NAME@gateway.local")
    actions.add_parser("list", help="every account and access key (never a secret)")
    actions.add_parser("add-key", help="give an account another access key").add_argument("name")
    for action, what in (("disable-key", "refuse this key from now on (also a key of "
                          "authdata.json)"), ("enable-key", "accept a disabled key again"),
                         ("remove-key", "forget a key added at runtime")):
        actions.add_parser(action, help=what).add_argument("access_key")
    actions.add_parser("remove", help="remove an account added at runtime (it must own no "
                       "bucket)").add_argument("name")
    for sub in actions.choices.values():
        sub.add_argument("--json", action="store_true", help="print JSON")
    return parser


def main(argv: list[str]) -> int:
    """Run `python -m gateway accounts ACTION`; exit status 0, or 1 when refused."""
    import sys

    from gateway.config import load_settings

    args = build_parser().parse_args(argv)
    settings = load_settings(os.environ)
    try:
        result = asyncio.run(_run_command(args, settings))
    except CommandError as err:
        print(f"gateway accounts: {err}", file=sys.stderr)
        return 1
    except Exception as err:  # the store is unreachable: one line, not a traceback
        if not isinstance(err, (OSError, MetadataUnavailable)) and not type(
            err
        ).__module__.startswith("asyncpg"):
            raise
        where = (settings.metadata_backend if settings.metadata_backend == "postgres"
                 else settings.metadata_path)
        print(f"gateway accounts: cannot use the metadata store ({where}): "
              f"{' '.join(str(err).split()) or type(err).__name__}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    if args.action == "list":
        table = [["ACCOUNT", "SOURCE", "CANONICAL ID", "ACCESS KEY", "KEY"]]
        for account in result["accounts"]:
            keys = account["keys"] or [{"accessKey": "-", "enabled": None, "source": ""}]
            for key in keys:
                state = ("-" if key["enabled"] is None else
                         key.get("problem") or ("enabled" if key["enabled"] else "disabled"))
                table.append([account["name"], account["source"], account["canonicalId"],
                              key["accessKey"], state])
        widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
        for row in table:
            print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
        return 0
    if "secretKey" in result:
        print(f"account:    {result['account']}")
        if "canonicalId" in result:
            print(f"canonical:  {result['canonicalId']}")
        print(f"access key: {result['accessKey']}")
        print(f"secret key: {result['secretKey']}")
        print("The secret is shown only this once: store it now.")
    elif result.get("removed"):
        print(f"removed {result.get('account') or result.get('accessKey')}")
    else:
        print(f"access key {result['accessKey']}: {'enabled' if result['enabled'] else 'disabled'}")
    print(f"Running gateways sharing this metadata store apply it within "
          f"{settings.accounts_refresh:g} s.")
    return 0
