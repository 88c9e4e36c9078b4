"""The metadata store's accounts and access keys (gateway/accounts.py's runtime accounts), the
same contract on SQLite and PostgreSQL: conflicts refused, every change bumps the counter."""

from __future__ import annotations

import pytest

from gateway.metadata.base import AccessKeyRow, AccountConflict, AccountRow, MetadataStore
from gateway.metadata.postgres import PostgresStore


def account(name: str, n: int) -> AccountRow:
    return AccountRow(name=name, email=f"{name}@example.com", arn=f"arn:aws:iam::{n:012d}:root",
                      canonical_id=f"{n:064x}", shortid=f"{n:012d}", created=float(n))


def key(access: str, owner: str, enabled: bool = True, secret: str | None = "v1:x:sealed") \
        -> AccessKeyRow:
    return AccessKeyRow(access=access, account=owner, secret=secret, enabled=enabled,
                        created=1.0)


async def test_accounts_keys_and_the_change_counter(store: MetadataStore) -> None:
    if isinstance(store, PostgresStore):  # the contract database is shared by the session
        await store.pool.execute("TRUNCATE accounts, access_keys")
    start = await store.accounts_version()
    await store.add_account(account("ann", 1), key("AK1", "ann"))
    with pytest.raises(AccountConflict):  # same name
        await store.add_account(account("ann", 2), None)
    with pytest.raises(AccountConflict):  # another name, same email and ids
        await store.add_account(AccountRow("ann2", "ann@example.com", "a", "b", "c", 0), None)
    with pytest.raises(AccountConflict):  # a key id already taken: nothing of it stays
        await store.add_account(account("ben", 3), key("AK1", "ben"))
    with pytest.raises(AccountConflict):
        await store.put_access_key(key("AK1", "ann"))
    await store.put_access_key(key("AK2", "ann"))
    await store.put_access_key(key("AK2", "ann", enabled=False), replace=True)
    await store.put_access_key(key("seedKey", "Bart", enabled=False, secret=None), replace=True)
    version, accounts, keys = await store.load_accounts()
    assert version == start + 4 == await store.accounts_version()
    assert [a.name for a in accounts] == ["ann"] and accounts[0] == account("ann", 1)
    assert {(k.access, k.enabled, k.secret) for k in keys} == {
        ("AK1", True, "v1:x:sealed"), ("AK2", False, "v1:x:sealed"), ("seedKey", False, None)}

    assert await store.remove_access_key("seedKey")
    assert not await store.remove_access_key("seedKey")
    assert await store.remove_account("ann")  # and its keys
    assert not await store.remove_account("ann")
    version, accounts, keys = await store.load_accounts()
    assert (accounts, keys) == ([], [])
    assert version == start + 6
