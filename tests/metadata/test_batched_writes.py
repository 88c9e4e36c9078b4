"""Writes done in batches: MetadataStore.delete_objects (DeleteObjects; both stores) and
SQLite's group commit (writes waiting for the writer thread committed together, each still
all or nothing)."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from gateway.metadata.base import ConditionFailed, MetadataStore, ObjectRecord
from gateway.metadata.sqlite import SQLiteStore
from tests.metadata.test_store_contract import (
    B,
    all_garbage,
    garbage_pieces,
    make_bucket,
    pieces_of,
    rec,
    same,
    vid,
)


class Refused(Exception):
    pass


def allow(_: ObjectRecord) -> None:
    return None


def refuse(_: ObjectRecord) -> None:
    raise Refused("locked")


async def test_delete_objects_each_as_delete_object(store: MetadataStore) -> None:
    await make_bucket(store)
    plain = [rec(f"k{i}") for i in range(5)]
    old, new = rec("v", vid()), rec("v", vid())
    locked = rec("locked")
    for record in (*plain, old, new, locked):
        await store.put_object(record)
    results = await store.delete_objects(B, [
        *((r.key, None, allow) for r in plain),  # None: the current version
        ("absent", None, allow),
        ("v", new.version_id, allow),  # the current version: the older one becomes current
        ("v", "0" * 32, allow),  # a version that never was
        ("locked", None, refuse),
    ])
    assert [same(got, want) for got, want in zip(results[:5], plain, strict=True)] == [True] * 5
    assert results[5] is None and results[7] is None
    assert same(results[6], new)
    assert isinstance(results[8], Refused)
    for r in plain:
        assert await store.get_object(B, r.key) is None
    assert same(await store.get_object(B, "v"), old, latest=True)
    assert same(await store.get_object(B, "locked"), locked)  # refused: untouched
    assert sorted(map(str, garbage_pieces(await all_garbage(store)))) == \
        sorted(map(str, pieces_of(*plain, new)))


async def test_delete_objects_current_marker(store: MetadataStore) -> None:
    await make_bucket(store)
    v1, marker = rec("m", vid()), rec("m", vid(), marker=True)
    await store.put_object(v1)
    await store.put_object(marker)
    (removed,) = await store.delete_objects(B, [("m", None, allow)])
    assert same(removed, marker)  # the current version is the marker
    assert same(await store.get_object(B, "m"), v1, latest=True)


async def test_delete_objects_same_key_again_sees_the_entries_before(
        store: MetadataStore) -> None:
    """A key named again in one call is deleted as if each entry ran after the previous
    (SQLite reads a key's first entry with the others in one SELECT, the rest one by one)."""
    await make_bucket(store)
    d1, d2 = rec("d", vid()), rec("d", vid())
    e1, e2 = rec("e", vid()), rec("e", vid())
    f = rec("f")
    for record in (d1, d2, e1, e2, f):
        await store.put_object(record)
    results = await store.delete_objects(B, [
        ("d", None, allow), ("d", None, allow), ("d", None, allow),  # d2, then d1, then none
        ("e", e2.version_id, allow), ("e", None, allow),  # e2 by id, then e1 became current
        ("f", None, refuse), ("f", None, allow),  # refused changes nothing; the next goes on
    ])
    assert isinstance(results[5], Refused)
    assert [same(got, want) for got, want in zip(
        results[:5] + results[6:], [d2, d1, None, e2, e1, f], strict=True)] == [True] * 6
    for key in ("d", "e", "f"):
        assert await store.get_object(B, key, markers=True) is None
    assert sorted(map(str, garbage_pieces(await all_garbage(store)))) == \
        sorted(map(str, pieces_of(d1, d2, e1, e2, f)))


async def test_delete_objects_over_several_transactions(store: MetadataStore) -> None:
    """More entries than SQLite puts in one transaction: every one removed, its pieces
    garbage once, refusals anywhere in the list still only their own."""
    await make_bucket(store)
    records = [rec(f"many/{i:04d}") for i in range(2 * SQLiteStore.DELETE_BATCH + 7)]
    await asyncio.gather(*(store.put_object(r) for r in records))
    locked = {3, SQLiteStore.DELETE_BATCH, len(records) - 1}
    results = await store.delete_objects(B, [
        (r.key, None, refuse if i in locked else allow) for i, r in enumerate(records)])
    gone = [r for i, r in enumerate(records) if i not in locked]
    for i, (record, result) in enumerate(zip(records, results, strict=True)):
        if i in locked:
            assert isinstance(result, Refused)
            assert same(await store.get_object(B, record.key), record)
        else:
            assert same(result, record)
            assert await store.get_object(B, record.key) is None
    assert sorted(map(str, garbage_pieces(await all_garbage(store)))) == \
        sorted(map(str, pieces_of(*gone)))


class CountingStore(SQLiteStore):
    """Records the size of every group it commits."""

    groups: list[int]

    @classmethod
    def _commit_group(cls, db: sqlite3.Connection, group: list[Any]) -> list[tuple[bool, Any]]:
        cls.groups.append(len(group))
        return super()._commit_group(db, group)


@pytest.mark.parametrize("durable", [True, False])
async def test_group_commit_keeps_each_write_all_or_nothing(tmp_path: Path,
                                                             durable: bool) -> None:
    CountingStore.groups = []
    store = CountingStore(tmp_path, durable=durable)
    await store.open()
    try:
        await make_bucket(store)
        contenders = [rec("one") for _ in range(20)]  # only the first to commit may create it
        others = [rec(f"k{i}") for i in range(40)]
        writes = [store.put_object(r, expect="*") for r in contenders]
        writes += [store.put_object(r) for r in others]
        results = await asyncio.gather(*writes, return_exceptions=True)
        assert max(CountingStore.groups) > 1  # writes did wait and commit together
        refused = [r for r in results[:20] if isinstance(r, ConditionFailed)]
        assert len(refused) == 19
        winner = contenders[results[:20].index(None)]
        assert same(await store.get_object(B, "one"), winner)
        assert results[20:] == [None] * 40
        for record in others:
            assert same(await store.get_object(B, record.key), record)
        assert await all_garbage(store) == []  # the refused writes left nothing behind
    finally:
        await store.close()
    reopened = SQLiteStore(tmp_path)  # everything acknowledged is in the file
    await reopened.open()
    try:
        assert same(await reopened.get_object(B, "one"), winner)
        assert len((await reopened.list_objects(B, "", None, None, 1000)).objects) == 41
    finally:
        await reopened.close()
