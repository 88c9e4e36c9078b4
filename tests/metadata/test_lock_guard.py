"""The guards Object Lock relies on (MetadataStore.delete_object / update_object `guard`), on
SQLite and PostgreSQL: a guard that raises changes nothing, and a lock set by update_object
racing a guarded delete never ends with the locked version deleted."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from gateway.errors import S3Error
from gateway.metadata.base import MetadataStore, ObjectRecord
from gateway.objects import lock
from tests.metadata.conftest import StoreFactory
from tests.metadata.test_store_contract import B, make_bucket, rec, vid


async def test_guard_refuses_a_delete_and_changes_nothing(store: MetadataStore) -> None:
    await make_bucket(store)
    version = vid()
    obj = rec("k", version, attrs={lock.ATTR: {"hold": True}})
    await store.put_object(obj)
    garbage = await store.count_garbage()
    with pytest.raises(S3Error) as exc:
        await store.delete_object(B, "k", version, guard=lock.delete_guard(False))
    assert exc.value.code == "AccessDenied"
    assert (await store.get_object(B, "k", version)) is not None
    assert await store.count_garbage() == garbage  # no piece handed to the collector
    # Unprotected: the same guarded call deletes.
    free = vid()
    await store.put_object(rec("k", free))
    assert (await store.delete_object(B, "k", free, guard=lock.delete_guard(False))) is not None
    assert await store.get_object(B, "k", free) is None


async def test_guard_refuses_an_update(store: MetadataStore) -> None:
    await make_bucket(store)
    obj = rec("k", vid())
    await store.put_object(obj)

    def refuse(_: object) -> None:
        raise S3Error("AccessDenied")

    with pytest.raises(S3Error):
        await store.update_object(B, "k", obj.pieces, {"attrs": {"x": 1}}, guard=refuse)
    assert (await store.get_object(B, "k")).attrs == {}


@pytest.mark.parametrize("trial", range(6))
async def test_lock_racing_delete(make_store: StoreFactory, trial: int) -> None:
    """Two stores (two gateways on PostgreSQL): one sets a legal hold by compare-and-set, the
    other deletes the version with the Object Lock guard. Either the hold landed and the
    delete was refused, or the delete came first and the hold found nothing."""
    first, second = await make_store(), await make_store()
    await make_bucket(first)  # each test starts from an empty store
    for _ in range(10):
        key, version = f"k-{uuid.uuid4().hex[:8]}", vid()
        obj = rec(key, version)
        await first.put_object(obj)

        async def hold(key: str = key, obj: ObjectRecord = obj) -> bool:
            updated = await first.update_object(
                B, key, obj.pieces, {"attrs": {lock.ATTR: {"hold": True}}})
            return updated is not None

        async def delete(key: str = key, version: str = version) -> str:
            try:
                gone = await second.delete_object(B, key, version,
                                                  guard=lock.delete_guard(False))
            except S3Error as err:
                return err.code
            return "deleted" if gone is not None else "absent"

        if trial % 2:
            deleted, held = await asyncio.gather(delete(), hold())
        else:
            held, deleted = await asyncio.gather(hold(), delete())
        stored = await first.get_object(B, key, version)
        if held:
            assert deleted == "AccessDenied" and stored is not None
        else:
            assert deleted == "deleted" and stored is None
