"""The metadata store contract: the spec both stores satisfy, call for call (fixture `store`
runs every test on SQLite and on PostgreSQL). Listings are also checked against small pure
Python reference models over random key sets, page by page."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Awaitable
from dataclasses import replace
from typing import Any

import pytest

from gateway.metadata.base import (
    BucketGone,
    BucketRecord,
    ConditionFailed,
    GarbageRecord,
    LocationTaken,
    MetadataStore,
    ObjectRecord,
    PartRecord,
    UploadRecord,
)
from gateway.translators.base import Stored
from tests.metadata.conftest import StoreFactory

OWNER = "owner-1"
B = "bkt"
T0 = 1_700_000_000.25


def piece(tag: str, **extra: Any) -> Stored:
    return Stored(location="us-east-1", key=f"{tag[:2]}/{tag}", size=len(tag), **extra)


def rec(key: str, vid: str | None = None, *, bucket: str = B, marker: bool = False,
        tag: str | None = None, **fields: Any) -> ObjectRecord:
    """An object (or a delete marker) whose pieces are unique to it, as every write's are."""
    tag = tag or uuid.uuid4().hex
    return ObjectRecord(
        bucket=bucket, key=key, size=0 if marker else len(tag), etag="" if marker else f"md5{tag}",
        last_modified=T0, location="us-east-1", pieces=[] if marker else [piece(tag)],
        owner=OWNER, version_id=vid, delete_marker=marker, **fields)


def vid() -> str:
    return uuid.uuid4().hex


def upload(key: str, upload_id: str | None = None, *, bucket: str = B, initiated: float = T0,
           backend_key: str | None = None) -> UploadRecord:
    upload_id = upload_id or uuid.uuid4().hex
    return UploadRecord(upload_id=upload_id, bucket=bucket, key=key, initiated=initiated,
                        owner=OWNER, location="us-east-1",
                        backend_key=backend_key or f"{bucket}/{key}",
                        backend_upload_id=f"be-{upload_id}")


def part(upload_id: str, number: int, tag: str | None = None) -> PartRecord:
    tag = tag or uuid.uuid4().hex
    return PartRecord(upload_id=upload_id, number=number, size=5 * 1024 * 1024,
                      etag=f"md5{tag}", last_modified=T0 + number, stored=piece(tag))


async def make_bucket(store: MetadataStore, name: str = B, owner: str = OWNER) -> BucketRecord:
    record = BucketRecord(name=name, owner=owner, location="us-east-1", created=T0)
    assert await store.create_bucket(record) is None
    return record


def same(a: ObjectRecord | None, b: ObjectRecord | None, latest: bool | None = None) -> bool:
    """Equal as stored records (`latest` is what the store says, compared when given)."""
    if a is None or b is None:
        return a is b
    if latest is not None and a.latest != latest:
        return False
    return replace(a, latest=True) == replace(b, latest=True)


def ids(records: list[ObjectRecord]) -> list[tuple[str, str | None]]:
    return [(r.key, r.version_id) for r in records]


async def race(trial: int, first: Awaitable[Any], second: Awaitable[Any]) -> tuple[Any, Any]:
    """Run both at once, started in an order that alternates with `trial` (SQLite runs calls
    in the order they reach its thread), and return their results as (first, second)."""
    if trial % 2:
        b, a = await asyncio.gather(second, first)
    else:
        a, b = await asyncio.gather(first, second)
    return a, b


# buckets ----------------------------------------------------------------------------------
async def test_ping(store: MetadataStore) -> None:
    await store.ping()


async def test_bucket_roundtrip(store: MetadataStore) -> None:
    attrs = {"acl": {"owner": OWNER, "grants": [{"id": "x", "perm": "READ"}]},
             "versioning": "Enabled", "tags": {"é": "ü日本"}, "n": 3, "f": 1.5, "none": None}
    record = BucketRecord(name="b1", owner=OWNER, location="eu", created=T0 + 0.123456,
                          attrs=attrs)
    assert await store.create_bucket(record) is None
    assert await store.get_bucket("b1") == record
    assert await store.get_bucket("b2") is None


async def test_create_bucket_taken_returns_the_existing_one(store: MetadataStore) -> None:
    first = BucketRecord("b1", OWNER, "us-east-1", T0, {"x": 1})
    assert await store.create_bucket(first) is None
    assert await store.create_bucket(BucketRecord("b1", "other", "eu", T0 + 5)) == first
    assert await store.get_bucket("b1") == first


async def test_list_buckets_by_owner_in_name_order(store: MetadataStore) -> None:
    for name in ["zeta", "alpha", "mid-1", "Mid", "mid"]:
        await make_bucket(store, name)
    await make_bucket(store, "beta", owner="someone-else")
    assert [b.name for b in await store.list_buckets(OWNER)] == ["Mid", "alpha", "mid", "mid-1",
                                                                 "zeta"]
    assert [b.name for b in await store.list_buckets("someone-else")] == ["beta"]
    assert await store.list_buckets("nobody") == []


async def test_update_bucket_attrs_merges(store: MetadataStore) -> None:
    await make_bucket(store)
    assert await store.get_bucket(B) is not None  # cached (SQLite): updates must refresh it
    updated = await store.update_bucket_attrs(B, {"versioning": "Suspended",
                                                  "cors": [{"a": "é"}]})
    assert updated is not None and updated.attrs == {"versioning": "Suspended",
                                                     "cors": [{"a": "é"}]}
    assert await store.get_bucket(B) == updated
    # only the keys given change; None removes one; others stay
    updated = await store.update_bucket_attrs(B, {"policy": "{}", "cors": None})
    assert updated is not None and updated.attrs == {"versioning": "Suspended", "policy": "{}"}
    assert await store.get_bucket(B) == updated
    assert (await store.update_bucket_attrs(B, {})) == updated  # nothing to change
    assert (await store.update_bucket_attrs(B, {"absent": None})) == updated
    got = await store.get_bucket(B)
    assert got is not None and got.attrs == {"versioning": "Suspended", "policy": "{}"}
    assert got.owner == OWNER and got.created == T0 and got.location == "us-east-1"
    assert await store.update_bucket_attrs("missing", {"x": 1}) is None  # nothing created
    assert await store.get_bucket("missing") is None


async def test_delete_bucket(store: MetadataStore) -> None:
    await make_bucket(store)
    assert await store.delete_bucket(B) is True
    assert await store.get_bucket(B) is None
    assert await store.list_buckets(OWNER) == []
    assert await store.delete_bucket(B) is True  # absent: nothing to refuse
    await make_bucket(store)  # the name is free again


@pytest.mark.parametrize("content", ["object", "marker", "noncurrent", "completing"])
async def test_delete_bucket_refuses_non_empty(store: MetadataStore, content: str) -> None:
    await make_bucket(store)
    if content == "object":
        await store.put_object(rec("k"))
    elif content == "marker":  # a key whose only version is a delete marker still counts
        await store.put_object(rec("k", vid(), marker=True))
    elif content == "noncurrent":
        old = rec("k", vid())
        await store.put_object(old)
        await store.put_object(rec("k", vid(), marker=True))
        latest = await store.get_object(B, "k", markers=True)
        assert latest is not None and latest.delete_marker
    else:  # an upload being completed: its object is about to exist
        completing = upload("k")
        await store.create_upload(completing)
        assert await store.claim_upload(completing.upload_id) is not None
    assert await store.delete_bucket(B) is False
    assert await store.get_bucket(B) is not None
    # emptied, it goes
    if content == "completing":
        await store.release_upload(completing.upload_id)
        assert await store.finish_upload(completing.upload_id, None) == ([], None)
    else:
        versions = (await store.list_versions(B, "", None, None, None, 100)).versions
        for v in versions:
            assert await store.delete_object(B, v.key, v.version_id or "null") is not None
    assert await store.delete_bucket(B) is True


# objects ----------------------------------------------------------------------------------
async def test_object_roundtrip(store: MetadataStore) -> None:
    await make_bucket(store)
    obj = ObjectRecord(
        bucket=B, key="dir/naïve 日本 😀.txt", size=12345678901, etag="0123abcd-3",
        last_modified=T0 + 0.000123, location="aws-eu",
        pieces=[Stored("aws-eu", "bk/1", 5, version_id="v1", etag="e1", encryption="AES256"),
                Stored("aws-eu", "bk/2", 7)],
        owner=OWNER, headers={"content-type": "text/plain; charset=utf-8", "expires": "x"},
        user_meta={"name": "välue"}, tags={"t": "1", "é": ""},
        attrs={"acl": {"grants": [1, 2]}, "parts": 3, "sse": None})
    assert await store.put_object(obj) is None
    assert await store.get_object(B, obj.key) == obj
    assert await store.get_object(B, obj.key, "null") == obj
    assert await store.get_object(B, "dir/naïve") is None
    assert await store.get_object("other", obj.key) is None


async def test_unversioned_put_replaces_the_null_version(store: MetadataStore) -> None:
    await make_bucket(store)
    first, second = rec("k"), rec("k")
    assert await store.put_object(first) is None
    replaced = await store.put_object(second)
    assert same(replaced, first)
    assert same(await store.get_object(B, "k"), second, latest=True)
    listing = await store.list_versions(B, "", None, None, None, 10)
    assert len(listing.versions) == 1 and same(listing.versions[0], second, latest=True)


async def test_get_by_version(store: MetadataStore) -> None:
    await make_bucket(store)
    v1, v2 = rec("k", vid()), rec("k", vid())
    await store.put_object(v1)
    await store.put_object(v2)
    got1 = await store.get_object(B, "k", v1.version_id)
    assert same(got1, v1, latest=False)
    assert same(await store.get_object(B, "k", v2.version_id), v2, latest=True)
    assert same(await store.get_object(B, "k"), v2, latest=True)
    assert await store.get_object(B, "k", "null") is None  # no null version
    assert await store.get_object(B, "k", vid()) is None
    assert await store.get_object(B, "other", v1.version_id) is None


async def test_versioned_puts_keep_every_version(store: MetadataStore) -> None:
    await make_bucket(store)
    records = [rec("k", vid()) for _ in range(4)]
    for r in records:
        assert await store.put_object(r) is None
    listing = await store.list_versions(B, "", None, None, None, 10)
    assert ids(listing.versions) == ids(records[::-1])
    assert [v.latest for v in listing.versions] == [True, False, False, False]


async def test_suspended_write_replaces_only_the_null_version(store: MetadataStore) -> None:
    await make_bucket(store)
    null1 = rec("k")  # written before versioning was enabled
    va, vb = rec("k", vid()), rec("k", vid())
    for r in (null1, va, vb):
        await store.put_object(r)
    null2 = rec("k")  # suspended: a new null version, the newest, replacing the old null one
    assert same(await store.put_object(null2), null1)
    listing = await store.list_versions(B, "", None, None, None, 10)
    assert ids(listing.versions) == [("k", None), ("k", vb.version_id), ("k", va.version_id)]
    assert [v.latest for v in listing.versions] == [True, False, False]
    assert same(await store.get_object(B, "k"), null2)
    # a suspended delete: a null delete marker replacing null2
    marker = rec("k", marker=True)
    assert same(await store.put_object(marker), null2)
    assert await store.get_object(B, "k") is None
    got = await store.get_object(B, "k", markers=True)
    assert got is not None and got.delete_marker and got.version_id is None
    assert same(await store.get_object(B, "k", vb.version_id), vb, latest=False)


async def test_delete_marker_hides_the_key(store: MetadataStore) -> None:
    await make_bucket(store)
    v1 = rec("k", vid())
    marker = rec("k", vid(), marker=True)
    await store.put_object(v1)
    await store.put_object(marker)
    assert await store.get_object(B, "k") is None
    assert await store.get_object(B, "k", marker.version_id) is None  # markers=False
    got = await store.get_object(B, "k", markers=True)
    assert same(got, marker, latest=True)
    got = await store.get_object(B, "k", marker.version_id, markers=True)
    assert same(got, marker, latest=True)
    assert same(await store.get_object(B, "k", v1.version_id), v1, latest=False)
    assert (await store.list_objects(B, "", None, None, 10)).objects == []
    # removing the marker brings the object back
    assert same(await store.delete_object(B, "k", marker.version_id), marker, latest=True)
    assert same(await store.get_object(B, "k"), v1, latest=True)
    assert ids((await store.list_objects(B, "", None, None, 10)).objects) == [
        ("k", v1.version_id)]


async def test_delete_current_version_promotes_the_previous(store: MetadataStore) -> None:
    await make_bucket(store)
    v1, v2, v3 = rec("k", vid()), rec("k", vid()), rec("k", vid())
    for r in (v1, v2, v3):
        await store.put_object(r)
    assert same(await store.delete_object(B, "k", v3.version_id), v3, latest=True)
    assert same(await store.get_object(B, "k"), v2, latest=True)
    # deleting a non-current version leaves the current one alone
    assert same(await store.delete_object(B, "k", v1.version_id), v1, latest=False)
    assert same(await store.get_object(B, "k"), v2, latest=True)
    assert same(await store.delete_object(B, "k", v2.version_id), v2, latest=True)
    assert await store.get_object(B, "k") is None
    assert await store.get_object(B, "k", markers=True) is None
    assert (await store.list_versions(B, "", None, None, None, 10)).versions == []


async def test_delete_null_version(store: MetadataStore) -> None:
    await make_bucket(store)
    assert await store.delete_object(B, "k") is None  # nothing there
    v1, null = rec("k", vid()), rec("k")
    await store.put_object(v1)
    await store.put_object(null)
    assert await store.delete_object(B, "k", vid()) is None  # unknown version
    assert same(await store.delete_object(B, "k"), null, latest=True)  # None: the null one
    assert same(await store.get_object(B, "k"), v1, latest=True)
    assert await store.delete_object(B, "k", "null") is None
    await store.put_object(null)
    assert same(await store.delete_object(B, "k", ""), null)  # empty: the null version too
    await store.put_object(null)
    assert same(await store.delete_object(B, "k", "null"), null)
    assert await store.delete_object(B, "other") is None


async def test_update_object_compare_and_set(store: MetadataStore) -> None:
    await make_bucket(store)
    obj = rec("k", tags={"a": "1"})
    await store.put_object(obj)
    updated = await store.update_object(B, "k", obj.pieces, {"tags": {"b": "2"},
                                                            "attrs": {"acl": "x"}})
    assert updated is not None
    assert updated == replace(obj, tags={"b": "2"}, attrs={"acl": "x"})
    assert await store.get_object(B, "k") == updated
    # the pieces name the version: stale pieces no longer match
    assert await store.update_object(B, "k", [piece("nope")], {"tags": {}}) is None
    assert await store.update_object(B, "other", obj.pieces, {"tags": {}}) is None
    new_pieces = [piece(uuid.uuid4().hex)]
    moved = await store.update_object(B, "k", obj.pieces, {"pieces": new_pieces, "size": 9})
    assert moved is not None and moved.pieces == new_pieces and moved.size == 9
    assert await store.update_object(B, "k", obj.pieces, {"tags": {}}) is None
    assert await store.update_object(B, "k", new_pieces, {"tags": {"c": "3"}}) is not None
    # replaced by a new write: the old pieces are gone
    newer = rec("k")
    await store.put_object(newer)
    assert await store.update_object(B, "k", new_pieces, {"tags": {}}) is None
    assert await store.get_object(B, "k") == newer


async def test_update_object_on_versions(store: MetadataStore) -> None:
    await make_bucket(store)
    v1, v2 = rec("k", vid()), rec("k", vid())
    await store.put_object(v1)
    await store.put_object(v2)
    updated = await store.update_object(B, "k", v1.pieces, {"tags": {"old": "yes"}})
    assert updated is not None and not updated.latest and updated.tags == {"old": "yes"}
    assert same(await store.get_object(B, "k"), v2, latest=True)
    got = await store.get_object(B, "k", v1.version_id)
    assert got is not None and got.tags == {"old": "yes"} and not got.latest
    # a delete marker is never updated (it has no pieces to name it anyway)
    marker = rec("k", vid(), marker=True)
    await store.put_object(marker)
    assert await store.update_object(B, "k", [], {"tags": {"x": "y"}}) is None
    # a non-current version still can be
    assert await store.update_object(B, "k", v2.pieces, {"tags": {"n": "1"}}) is not None
    listing = await store.list_versions(B, "", None, None, None, 10)
    assert [v.latest for v in listing.versions] == [True, False, False]


# list_objects -----------------------------------------------------------------------------
def ref_list_objects(keys: list[str], prefix: str, delimiter: str | None, after: str | None,
                     limit: int) -> tuple[list[str], list[str], bool, str | None]:
    """S3 ListObjects over `keys`: (keys, common prefixes, truncated, next marker)."""
    entries: list[tuple[str, str]] = []
    for key in sorted(set(keys)):
        if not key.startswith(prefix) or (after is not None and key <= after):
            continue
        if delimiter:
            cut = key.find(delimiter, len(prefix))
            if cut >= 0:
                common = key[: cut + len(delimiter)]
                if (after is not None and common <= after) or (entries and entries[-1] == ("p", common)):
                    continue
                entries.append(("p", common))
                continue
        entries.append(("o", key))
    page = entries[:limit]
    truncated = len(entries) > limit
    return ([v for kind, v in page if kind == "o"], [v for kind, v in page if kind == "p"],
            truncated, page[-1][1] if truncated and page else None)


async def list_all(store: MetadataStore, prefix: str, delimiter: str | None,
                   limit: int) -> tuple[list[str], list[str]]:
    """Every page, following next_marker, as a client does."""
    keys: list[str] = []
    prefixes: list[str] = []
    after = None
    for _ in range(1000):
        page = await store.list_objects(B, prefix, delimiter, after, limit)
        assert len(page.objects) + len(page.prefixes) <= limit
        keys += [o.key for o in page.objects]
        prefixes += page.prefixes
        if not page.truncated:
            return keys, prefixes
        assert page.next_marker is not None
        after = page.next_marker
    raise AssertionError("listing never ends")


async def put_keys(store: MetadataStore, keys: list[str]) -> None:
    for key in keys:
        await store.put_object(rec(key))


async def check_listing(store: MetadataStore, keys: list[str], prefix: str,
                        delimiter: str | None, after: str | None, limit: int) -> None:
    page = await store.list_objects(B, prefix, delimiter, after, limit)
    got = ([o.key for o in page.objects], page.prefixes, page.truncated, page.next_marker)
    assert got == ref_list_objects(keys, prefix, delimiter, after, limit), (
        prefix, delimiter, after, limit)


async def test_list_objects_order_prefix_and_marker(store: MetadataStore) -> None:
    await make_bucket(store)
    keys = ["b", "a", "a/1", "a/2", "ab", "c/x/y", "c/z", "d"]
    await put_keys(store, keys)
    await make_bucket(store, "other-bucket")
    await store.put_object(rec("a/0", bucket="other-bucket"))
    page = await store.list_objects(B, "", None, None, 1000)
    assert [o.key for o in page.objects] == sorted(keys)
    assert (page.prefixes, page.truncated, page.next_marker) == ([], False, None)
    page = await store.list_objects(B, "a", None, None, 1000)
    assert [o.key for o in page.objects] == ["a", "a/1", "a/2", "ab"]
    page = await store.list_objects(B, "a", None, "a/1", 1000)
    assert [o.key for o in page.objects] == ["a/2", "ab"]
    page = await store.list_objects(B, "", None, "zzz", 1000)
    assert page.objects == [] and not page.truncated
    page = await store.list_objects(B, "nothing", None, None, 1000)
    assert page.objects == [] and not page.truncated
    for args in [("", None, None, 3), ("", None, "a/1", 2), ("", None, None, 8),
                 ("", None, None, 7), ("a", None, "0", 2), ("c", None, "d", 5)]:
        await check_listing(store, keys, *args)


async def test_list_objects_delimiter(store: MetadataStore) -> None:
    await make_bucket(store)
    keys = ["a", "a/1", "a/2", "a/3/x", "ab", "b/", "b/c", "c", "d/e/f", "d/g"]
    await put_keys(store, keys)
    page = await store.list_objects(B, "", "/", None, 1000)
    assert [o.key for o in page.objects] == ["a", "ab", "c"]
    assert page.prefixes == ["a/", "b/", "d/"]  # each counted once
    page = await store.list_objects(B, "", "/", None, 2)
    assert ([o.key for o in page.objects], page.prefixes) == (["a"], ["a/"])
    assert page.truncated and page.next_marker == "a/"
    # resuming at a common prefix skips every key under it
    page = await store.list_objects(B, "", "/", "a/", 2)
    assert ([o.key for o in page.objects], page.prefixes) == (["ab"], ["b/"])
    assert page.truncated and page.next_marker == "b/"
    # a marker inside a common prefix skips the rest of it as well
    page = await store.list_objects(B, "", "/", "a/2", 10)
    assert ([o.key for o in page.objects], page.prefixes) == (["ab", "c"], ["b/", "d/"])
    page = await store.list_objects(B, "a/", "/", None, 10)
    assert ([o.key for o in page.objects], page.prefixes) == (["a/1", "a/2"], ["a/3/"])
    page = await store.list_objects(B, "b/", "/", None, 10)
    assert [o.key for o in page.objects] == ["b/", "b/c"]  # the prefix itself is a key
    page = await store.list_objects(B, "d", "/", None, 10)
    assert (page.objects, page.prefixes) == ([], ["d/"])
    # a multi-character delimiter
    page = await store.list_objects(B, "", "/3/", None, 10)
    assert "a/3/" in page.prefixes and "a/3/x" not in [o.key for o in page.objects]
    # exactly `limit` entries: not truncated
    page = await store.list_objects(B, "", "/", None, 6)
    assert not page.truncated and page.next_marker is None
    page = await store.list_objects(B, "", "/", None, 5)
    assert page.truncated and page.next_marker == "c"


async def test_list_objects_many_keys_under_one_prefix(store: MetadataStore) -> None:
    await make_bucket(store)
    keys = [f"big/{i:04d}" for i in range(300)] + ["a", "zz", "big0", "big/"]
    await put_keys(store, keys)
    page = await store.list_objects(B, "", "/", None, 3)
    assert ([o.key for o in page.objects], page.prefixes, page.truncated) == (
        ["a", "big0"], ["big/"], True)
    assert page.next_marker == "big0"
    assert await list_all(store, "", None, 7) == (sorted(keys), [])
    assert await list_all(store, "", "/", 1) == (["a", "big0", "zz"], ["big/"])


NON_ASCII = ["a", "B", "Z", "b", "é", "e\u0301", "z", "ÿ", "Ā", "日本", "日", "😀", "\uffff",
             "~", "a b", "a-b", "a/b", "A", "0", "\u00a0", "ß", "ss", "İ", "i"]


async def test_list_objects_byte_order_with_non_ascii_keys(store: MetadataStore) -> None:
    await make_bucket(store)
    await put_keys(store, NON_ASCII)
    expected = sorted(NON_ASCII, key=lambda k: k.encode())
    assert expected == sorted(NON_ASCII)  # UTF-8 byte order is code point order
    page = await store.list_objects(B, "", None, None, 1000)
    assert [o.key for o in page.objects] == expected
    assert (await list_all(store, "", None, 3))[0] == expected
    page = await store.list_objects(B, "", None, "é", 1000)
    assert [o.key for o in page.objects] == [k for k in expected if k > "é"]
    page = await store.list_objects(B, "日", None, None, 1000)
    assert [o.key for o in page.objects] == ["日", "日本"]
    buckets = ["b-é", "b-B", "b-a"]  # bucket names are ASCII in S3; order is still bytes
    for name in buckets:
        await make_bucket(store, name)
    assert [b.name for b in await store.list_buckets(OWNER)] == sorted(buckets + [B])


async def test_list_objects_shows_only_current_visible_versions(store: MetadataStore) -> None:
    await make_bucket(store)
    v1, v2 = rec("k1", vid()), rec("k1", vid())
    await store.put_object(v1)
    await store.put_object(v2)
    await store.put_object(rec("k2", vid()))
    await store.put_object(rec("k2", vid(), marker=True))
    await store.put_object(rec("k3"))
    page = await store.list_objects(B, "", None, None, 10)
    assert ids(page.objects) == [("k1", v2.version_id), ("k3", None)]
    assert all(o.latest for o in page.objects)
    await store.delete_object(B, "k1", v2.version_id)
    page = await store.list_objects(B, "", None, None, 10)
    assert ids(page.objects) == [("k1", v1.version_id), ("k3", None)]


async def test_list_objects_matches_the_reference(store: MetadataStore) -> None:
    await make_bucket(store)
    rng = random.Random(7)
    alphabet = ["a", "b", "/", "-", "é", "日", "😀", "Z", "//"]
    keys = sorted({"".join(rng.choice(alphabet) for _ in range(rng.randint(1, 4)))
                   for _ in range(120)})
    await put_keys(store, keys)
    # hidden ones must not count
    await store.put_object(rec("a/hidden", vid()))
    await store.put_object(rec("a/hidden", vid(), marker=True))
    starts = ["", "a", "a/", "b", "é", "日", "/", "zz", "a/b"]
    for _ in range(150):
        prefix = rng.choice(["", "", "a", "a/", "b/", "é", "日", "/", "a-", "Z"])
        delimiter = rng.choice([None, None, "/", "-", "日", "//", "a"])
        after = rng.choice([None, None, rng.choice(keys), rng.choice(starts)])
        limit = rng.choice([1, 2, 3, 5, 10, 1000])
        await check_listing(store, keys, prefix, delimiter, after, limit)
    for prefix, delimiter in [("", "/"), ("", None), ("a", "/"), ("", "é")]:
        full = ref_list_objects(keys, prefix, delimiter, None, 10**6)
        for limit in (1, 2, 7):
            assert await list_all(store, prefix, delimiter, limit) == (full[0], full[1])


# list_versions ----------------------------------------------------------------------------
def ref_list_versions(versions: list[tuple[str, str | None]], prefix: str,
                      delimiter: str | None, key_marker: str | None,
                      version_id_marker: str | None, limit: int
                      ) -> tuple[list[tuple[str, str | None]], list[str], bool, str | None,
                                 str | None]:
    """S3 ListObjectVersions over (key, version id) pairs given newest last per key."""
    by_key: dict[str, list[str | None]] = {}
    for key, version in versions:
        by_key.setdefault(key, []).insert(0, version)
    flat: list[tuple[str, Any]] = []
    for key in sorted(by_key):
        if not key.startswith(prefix):
            continue
        common = None
        if delimiter:
            cut = key.find(delimiter, len(prefix))
            if cut >= 0:
                common = key[: cut + len(delimiter)]
        if common is not None:
            if not flat or flat[-1] != ("p", common):
                flat.append(("p", common))
        else:
            flat += [("v", (key, v)) for v in by_key[key]]
    start = 0
    marker = key_marker if key_marker and key_marker >= prefix else None
    if marker is not None:
        for i, (kind, value) in enumerate(flat):
            if kind == "p":
                if value <= marker:
                    start = i + 1
            elif value[0] < marker or (value[0] == marker and not version_id_marker):
                start = i + 1
            elif value[0] == marker:
                start = i + 1
                if value[1] == (None if version_id_marker == "null" else version_id_marker):
                    break
    rest = flat[start:]
    page = rest[:limit]
    truncated = len(rest) > limit
    next_key = next_vid = None
    if truncated:
        kind, value = page[-1]
        if kind == "p":
            next_key = value
        else:
            next_key, next_vid = value[0], value[1] or "null"
    return ([v for k, v in page if k == "v"], [v for k, v in page if k == "p"], truncated,
            next_key, next_vid)


async def test_list_versions_order_and_flags(store: MetadataStore) -> None:
    await make_bucket(store)
    a1, a2 = rec("a", vid()), rec("a", vid())
    m = rec("a", vid(), marker=True)
    b0 = rec("b")
    for r in (a1, b0, a2, m):
        await store.put_object(r)
    listing = await store.list_versions(B, "", None, None, None, 10)
    assert ids(listing.versions) == [("a", m.version_id), ("a", a2.version_id),
                                     ("a", a1.version_id), ("b", None)]
    assert [v.latest for v in listing.versions] == [True, False, False, True]
    assert [v.delete_marker for v in listing.versions] == [True, False, False, False]
    assert (listing.truncated, listing.next_key, listing.next_version_id) == (False, None, None)
    assert same(listing.versions[2], a1)


async def test_list_versions_pagination_and_markers(store: MetadataStore) -> None:
    await make_bucket(store)
    a1, a2, a3 = rec("a", vid()), rec("a", vid()), rec("a", vid())
    b0 = rec("b")
    c1 = rec("c", vid())
    for r in (a1, a2, a3, b0, c1):
        await store.put_object(r)
    page = await store.list_versions(B, "", None, None, None, 2)
    assert ids(page.versions) == [("a", a3.version_id), ("a", a2.version_id)]
    assert (page.truncated, page.next_key, page.next_version_id) == (True, "a", a2.version_id)
    page = await store.list_versions(B, "", None, "a", a2.version_id, 2)
    assert ids(page.versions) == [("a", a1.version_id), ("b", None)]
    assert (page.truncated, page.next_key, page.next_version_id) == (True, "b", "null")
    page = await store.list_versions(B, "", None, "b", "null", 2)
    assert ids(page.versions) == [("c", c1.version_id)] and not page.truncated
    # a key marker alone skips every version of that key
    page = await store.list_versions(B, "", None, "a", None, 10)
    assert ids(page.versions) == [("b", None), ("c", c1.version_id)]
    page = await store.list_versions(B, "", None, "a", "", 10)  # empty version marker: alone
    assert ids(page.versions) == [("b", None), ("c", c1.version_id)]
    # an unknown version marker
    with pytest.raises(LookupError):
        await store.list_versions(B, "", None, "a", vid(), 10)
    with pytest.raises(LookupError):
        await store.list_versions(B, "", None, "a", "null", 10)
    # a version marker is ignored without a key marker
    page = await store.list_versions(B, "", None, None, a2.version_id, 10)
    assert len(page.versions) == 5


async def test_list_versions_delimiter(store: MetadataStore) -> None:
    await make_bucket(store)
    for key in ["a/1", "a/1", "a/2", "b", "b", "c/x", "d"]:
        await store.put_object(rec(key, vid()))
    page = await store.list_versions(B, "", "/", None, None, 10)
    assert page.prefixes == ["a/", "c/"]
    assert [v.key for v in page.versions] == ["b", "b", "d"]
    page = await store.list_versions(B, "", "/", None, None, 1)
    assert (page.prefixes, page.versions, page.truncated) == (["a/"], [], True)
    assert (page.next_key, page.next_version_id) == ("a/", None)
    page = await store.list_versions(B, "", "/", "a/", None, 2)
    assert [v.key for v in page.versions] == ["b", "b"] and page.prefixes == []
    assert page.truncated and page.next_key == "b"
    page = await store.list_versions(B, "", "/", "a/1", None, 10)  # inside a prefix: skip it
    assert page.prefixes == ["c/"] and [v.key for v in page.versions] == ["b", "b", "d"]
    page = await store.list_versions(B, "a/", "/", None, None, 10)
    assert [v.key for v in page.versions] == ["a/1", "a/1", "a/2"]


async def test_list_versions_matches_the_reference(store: MetadataStore) -> None:
    await make_bucket(store)
    rng = random.Random(11)
    alphabet = ["a", "b", "/", "é", "😀"]
    keys = sorted({"".join(rng.choice(alphabet) for _ in range(rng.randint(1, 3)))
                   for _ in range(40)})
    written: list[tuple[str, str | None]] = []
    for _ in range(110):
        key = rng.choice(keys)
        version = None if rng.random() < 0.25 else vid()
        await store.put_object(rec(key, version, marker=rng.random() < 0.2))
        if version is None:  # the null version is replaced
            written = [(k, v) for k, v in written if not (k == key and v is None)]
        written.append((key, version))
    for _ in range(120):
        prefix = rng.choice(["", "", "a", "a/", "é", "b"])
        delimiter = rng.choice([None, "/", "é"])
        limit = rng.choice([1, 2, 3, 7, 1000])
        key_marker = version_marker = None
        if rng.random() < 0.6:
            key_marker, version_marker = rng.choice(written)
            version_marker = version_marker or "null"
            if rng.random() < 0.3:
                version_marker = None
        got = await store.list_versions(B, prefix, delimiter, key_marker, version_marker, limit)
        expected = ref_list_versions(written, prefix, delimiter, key_marker, version_marker,
                                     limit)
        assert (ids(got.versions), got.prefixes, got.truncated, got.next_key,
                got.next_version_id) == expected, (prefix, delimiter, key_marker,
                                                   version_marker, limit)
    # following the markers page by page gives the whole listing
    for delimiter in (None, "/"):
        full = ref_list_versions(written, "", delimiter, None, None, 10**6)
        for limit in (1, 3):
            seen: list[tuple[str, str | None]] = []
            prefixes: list[str] = []
            km = vm = None
            while True:
                page = await store.list_versions(B, "", delimiter, km, vm, limit)
                seen += ids(page.versions)
                prefixes += page.prefixes
                if not page.truncated:
                    break
                km, vm = page.next_key, page.next_version_id
            assert (seen, prefixes) == (full[0], full[1])


# multipart --------------------------------------------------------------------------------
async def test_upload_roundtrip(store: MetadataStore) -> None:
    await make_bucket(store)
    up = replace(upload("dir/ké"), headers={"content-type": "a/b"}, user_meta={"m": "é"},
                 tags={"t": "v"}, attrs={"acl": {"x": 1}})
    await store.create_upload(up)
    assert await store.get_upload(up.upload_id) == up
    assert await store.get_upload("missing") is None
    assert await store.count_uploads() == 1
    await store.create_upload(upload("other"))
    assert await store.count_uploads() == 2


def ref_list_uploads(ups: list[UploadRecord], prefix: str, delimiter: str | None,
                     key_marker: str | None, upload_id_marker: str | None, limit: int
                     ) -> tuple[list[str], list[str], bool]:
    rows = sorted((u for u in ups if u.key.startswith(prefix)),
                  key=lambda u: (u.key, u.initiated, u.upload_id))
    if key_marker:
        rows = [u for u in rows if u.key > key_marker or (
            upload_id_marker and u.key == key_marker and u.upload_id > upload_id_marker)]
    uploads: list[str] = []
    prefixes: list[str] = []
    for u in rows:
        if delimiter:
            cut = u.key.find(delimiter, len(prefix))
            if cut >= 0:
                common = u.key[: cut + len(delimiter)]
                if not prefixes or prefixes[-1] != common:
                    if len(uploads) + len(prefixes) == limit:
                        return uploads, prefixes, True
                    prefixes.append(common)
                continue
        if len(uploads) + len(prefixes) == limit:
            return uploads, prefixes, True
        uploads.append(u.upload_id)
    return uploads, prefixes, False


async def test_list_uploads(store: MetadataStore) -> None:
    await make_bucket(store)
    await make_bucket(store, "other-bucket")
    ups = [upload("a", "u3", initiated=T0 + 1), upload("a", "u1", initiated=T0 + 2),
           upload("a", "u2", initiated=T0 + 2), upload("b/1", "u4"), upload("b/2", "u5"),
           upload("c", "u6"), upload("é", "u7"), upload("B", "u8")]
    for up in ups:
        await store.create_upload(up)
    await store.create_upload(upload("a", "u9", bucket="other-bucket"))
    listing = await store.list_uploads(B, "", None, None, None, 100)
    # key order (bytes), then initiation time, then id
    assert [u.upload_id for u in listing.uploads] == ["u8", "u3", "u1", "u2", "u4", "u5", "u6",
                                                      "u7"]
    assert listing.uploads[1] == ups[0]
    listing = await store.list_uploads(B, "", "/", None, None, 100)
    assert listing.prefixes == ["b/"]
    assert [u.upload_id for u in listing.uploads] == ["u8", "u3", "u1", "u2", "u6", "u7"]
    listing = await store.list_uploads(B, "", "/", None, None, 5)
    assert ([u.upload_id for u in listing.uploads], listing.prefixes, listing.truncated) == (
        ["u8", "u3", "u1", "u2"], ["b/"], True)
    listing = await store.list_uploads(B, "", "/", None, None, 6)
    assert listing.truncated
    listing = await store.list_uploads(B, "b/", None, None, None, 100)
    assert [u.upload_id for u in listing.uploads] == ["u4", "u5"]
    listing = await store.list_uploads(B, "", None, "a", None, 100)
    assert [u.upload_id for u in listing.uploads] == ["u4", "u5", "u6", "u7"]
    listing = await store.list_uploads(B, "", None, "a", "u1", 100)
    assert [u.upload_id for u in listing.uploads] == ["u3", "u2", "u4", "u5", "u6", "u7"]
    listing = await store.list_uploads(B, "", None, None, None, 2)
    assert [u.upload_id for u in listing.uploads] == ["u8", "u3"] and listing.truncated
    listing = await store.list_uploads(B, "zz", None, None, None, 2)
    assert (listing.uploads, listing.prefixes, listing.truncated) == ([], [], False)
    rng = random.Random(5)
    for _ in range(60):
        args = (rng.choice(["", "a", "b", "b/"]), rng.choice([None, "/", "1"]),
                rng.choice([None, "a", "b/1", "B"]), rng.choice([None, "u2", "u5"]),
                rng.choice([1, 2, 3, 100]))
        got = await store.list_uploads(B, *args)
        assert ([u.upload_id for u in got.uploads], got.prefixes, got.truncated) == \
            ref_list_uploads(ups, *args), args


async def test_parts(store: MetadataStore) -> None:
    await make_bucket(store)
    up = upload("k")
    await store.create_upload(up)
    p1, p2, p3 = part(up.upload_id, 1), part(up.upload_id, 2), part(up.upload_id, 10000)
    for p in (p3, p1, p2):
        assert await store.put_part(p) is None
    p2b = part(up.upload_id, 2)
    assert await store.put_part(p2b) == p2  # the replaced part, so its bytes can go
    assert await store.list_parts(up.upload_id, 0, 1000) == [p1, p2b, p3]
    assert await store.list_parts(up.upload_id, 1, 1) == [p2b]
    assert await store.list_parts(up.upload_id, 2, 1000) == [p3]
    assert await store.list_parts(up.upload_id, 10000, 1000) == []
    assert await store.list_parts("missing", 0, 1000) == []
    # A part's flexible checksums are kept with it, and replaced with it.
    p3b = replace(part(up.upload_id, 10000), checksums={"CRC32": "AAAAAA==",
                                                         "CRC64NVME": "AAAAAAAAAAA="})
    assert await store.put_part(p3b) == p3
    assert await store.list_parts(up.upload_id, 2, 1000) == [p3b]
    p3c = replace(p3b, checksums={"SHA256": "x" * 44})
    assert await store.put_part(p3c) == p3b
    assert await store.list_parts(up.upload_id, 2, 1000) == [p3c]
    with pytest.raises(LookupError):
        await store.put_part(part("missing", 1))


async def test_finish_upload_completes(store: MetadataStore) -> None:
    await make_bucket(store)
    old = rec("k")
    await store.put_object(old)
    up = upload("k")
    await store.create_upload(up)
    parts = [part(up.upload_id, n) for n in (3, 1, 2)]
    for p in parts:
        await store.put_part(p)
    obj = rec("k", attrs={"parts": 3})
    assert await store.finish_upload(up.upload_id, obj) is None  # not claimed: refused
    assert await store.claim_upload(up.upload_id) is not None
    result = await store.finish_upload(up.upload_id, obj)
    assert result is not None
    removed, replaced = result
    assert removed == sorted(parts, key=lambda p: p.number)
    assert same(replaced, old)
    assert same(await store.get_object(B, "k"), obj, latest=True)
    assert await store.get_upload(up.upload_id) is None
    assert await store.list_parts(up.upload_id, 0, 1000) == []
    assert await store.count_uploads() == 0
    # gone: a second completion, an abort, a late part
    assert await store.finish_upload(up.upload_id, rec("k")) is None
    assert await store.finish_upload(up.upload_id, None) is None
    with pytest.raises(LookupError):
        await store.put_part(part(up.upload_id, 4))
    assert await store.list_parts(up.upload_id, 0, 1000) == []
    assert same(await store.get_object(B, "k"), obj)


async def test_finish_upload_versioned_keeps_versions(store: MetadataStore) -> None:
    await make_bucket(store)
    v1 = rec("k", vid())
    await store.put_object(v1)
    up = upload("k")
    await store.create_upload(up)
    obj = rec("k", vid())
    await store.claim_upload(up.upload_id)
    assert await store.finish_upload(up.upload_id, obj) == ([], None)
    listing = await store.list_versions(B, "", None, None, None, 10)
    assert ids(listing.versions) == [("k", obj.version_id), ("k", v1.version_id)]


async def test_finish_upload_aborts(store: MetadataStore) -> None:
    await make_bucket(store)
    up = upload("k")
    await store.create_upload(up)
    p = part(up.upload_id, 1)
    await store.put_part(p)
    assert await store.finish_upload(up.upload_id, None) == ([p], None)
    assert await store.get_object(B, "k") is None
    assert await store.get_upload(up.upload_id) is None
    with pytest.raises(LookupError):
        await store.put_part(part(up.upload_id, 2))


async def test_finish_upload_is_atomic(store: MetadataStore) -> None:
    await make_bucket(store)
    up = upload("k")
    await store.create_upload(up)
    p = part(up.upload_id, 1)
    await store.put_part(p)
    await store.claim_upload(up.upload_id)
    broken = rec("k", attrs={"bad": object()})  # fails while writing the object
    with pytest.raises(TypeError):
        await store.finish_upload(up.upload_id, broken)
    # nothing happened: still claimed, parts there, no object, no garbage
    assert await store.get_upload(up.upload_id) == replace(up, state="completing")
    assert await store.list_parts(up.upload_id, 0, 10) == [p]
    assert await store.get_object(B, "k") is None
    assert await store.count_garbage() == 0
    assert await store.finish_upload(up.upload_id, rec("k")) == ([p], None)


# concurrency: on PostgreSQL each writer below is its own store (pool), as separate gateway
# processes are; SQLite serializes them on its one connection ---------------------------------
async def test_concurrent_versioned_puts_keep_one_latest(make_store: StoreFactory) -> None:
    stores = [await make_store() for _ in range(3)]
    await make_bucket(stores[0])
    records = [rec("k", vid()) for _ in range(60)]
    await asyncio.gather(*(stores[i % 3].put_object(r) for i, r in enumerate(records)))
    listing = await stores[1].list_versions(B, "", None, None, None, 1000)
    assert sorted(ids(listing.versions)) == sorted(ids(records))
    assert [v.latest for v in listing.versions] == [True] + [False] * 59
    current = await stores[2].get_object(B, "k")
    assert current is not None and current.version_id == listing.versions[0].version_id
    page = await stores[0].list_objects(B, "", None, None, 10)
    assert ids(page.objects) == [("k", current.version_id)]


async def test_concurrent_null_puts_leave_one_whole_winner(make_store: StoreFactory) -> None:
    stores = [await make_store() for _ in range(3)]
    await make_bucket(stores[0])
    records = [rec("k") for _ in range(40)]
    replaced = await asyncio.gather(*(stores[i % 3].put_object(r)
                                      for i, r in enumerate(records)))
    gone = [r for r in replaced if r is not None]
    assert len(gone) == len(records) - 1  # each put but the first replaced exactly one
    gone_pieces = {r.pieces[0].key for r in gone}
    assert len(gone_pieces) == len(gone)
    listing = await stores[1].list_versions(B, "", None, None, None, 100)
    assert len(listing.versions) == 1 and listing.versions[0].latest
    winner = listing.versions[0]
    assert winner.pieces[0].key not in gone_pieces
    assert {r.pieces[0].key for r in records} == gone_pieces | {winner.pieces[0].key}


async def test_concurrent_create_bucket_one_winner(make_store: StoreFactory) -> None:
    stores = [await make_store() for _ in range(3)]
    candidates = [BucketRecord("race", f"owner-{i}", "us-east-1", T0 + i) for i in range(30)]
    results = await asyncio.gather(*(stores[i % 3].create_bucket(b)
                                     for i, b in enumerate(candidates)))
    winners = [b for b, r in zip(candidates, results, strict=True) if r is None]
    assert len(winners) == 1
    assert all(r == winners[0] for r in results if r is not None)
    assert await stores[0].get_bucket("race") == winners[0]


async def test_concurrent_update_object_one_succeeds(make_store: StoreFactory) -> None:
    stores = [await make_store() for _ in range(3)]
    await make_bucket(stores[0])
    obj = rec("k")
    await stores[0].put_object(obj)
    moves = [[piece(uuid.uuid4().hex)] for _ in range(20)]
    results = await asyncio.gather(*(stores[i % 3].update_object(B, "k", obj.pieces,
                                                                 {"pieces": m})
                                     for i, m in enumerate(moves)))
    done = [r for r in results if r is not None]
    assert len(done) == 1
    assert await stores[1].get_object(B, "k") == done[0]


async def test_concurrent_finish_upload_one_succeeds(make_store: StoreFactory) -> None:
    stores = [await make_store() for _ in range(3)]
    await make_bucket(stores[0])
    up = upload("k")
    await stores[0].create_upload(up)
    await stores[0].put_part(part(up.upload_id, 1))
    claims = await asyncio.gather(*(stores[i % 3].claim_upload(up.upload_id)
                                    for i in range(12)))
    assert sum(c is not None for c in claims) == 1
    results = await asyncio.gather(*(stores[i % 3].finish_upload(up.upload_id, rec("k"))
                                     for i in range(12)))
    assert sum(r is not None for r in results) == 1
    listing = await stores[2].list_versions(B, "", None, None, None, 100)
    assert len(listing.versions) == 1


async def test_put_part_racing_finish_upload(make_store: StoreFactory) -> None:
    stores = [await make_store() for _ in range(3)]
    await make_bucket(stores[0])
    for _ in range(5):
        up = upload("k")
        await stores[0].create_upload(up)
        parts = [part(up.upload_id, n) for n in range(1, 21)]

        async def put(p: PartRecord, s: MetadataStore) -> bool:
            try:
                await s.put_part(p)
                return True
            except LookupError:
                return False

        tasks = [put(p, stores[i % 3]) for i, p in enumerate(parts)]
        tasks.insert(10, stores[1].finish_upload(up.upload_id, None))  # type: ignore[arg-type]
        results = await asyncio.gather(*tasks)
        finished = results.pop(10)
        assert isinstance(finished, tuple)
        removed = {p.number for p in finished[0]}
        # every part that was accepted went with the upload; none was left behind
        assert removed == {p.number for p, ok in zip(parts, results, strict=True) if ok}
        assert await stores[2].list_parts(up.upload_id, 0, 1000) == []


async def test_concurrent_put_part_same_number(make_store: StoreFactory) -> None:
    stores = [await make_store() for _ in range(3)]
    await make_bucket(stores[0])
    up = upload("k")
    await stores[0].create_upload(up)
    parts = [part(up.upload_id, 7) for _ in range(20)]
    replaced = await asyncio.gather(*(stores[i % 3].put_part(p) for i, p in enumerate(parts)))
    gone = [r for r in replaced if r is not None]
    assert len(gone) == len(parts) - 1  # every part but the last written was replaced once
    final = await stores[1].list_parts(up.upload_id, 0, 10)
    assert len(final) == 1
    assert sorted(p.etag for p in gone + final) == sorted(p.etag for p in parts)


async def test_delete_bucket_racing_puts(make_store: StoreFactory) -> None:
    stores = [await make_store() for _ in range(2)]
    for i in range(10):
        name = f"race-{i}"
        await make_bucket(stores[0], name)
        deleted, _ = await asyncio.gather(stores[0].delete_bucket(name),
                                          stores[1].put_object(rec("k", bucket=name)))
        bucket = await stores[1].get_bucket(name)
        # refused: the object is there; deleted: the put came after and the bucket is gone
        assert (bucket is None) == deleted
        if not deleted:
            assert await stores[0].get_object(name, "k") is not None


# the garbage ledger -------------------------------------------------------------------------
EVERYTHING = 1e18  # a `now` by which every garbage row is due


async def all_garbage(store: MetadataStore) -> list[GarbageRecord]:
    return await store.due_garbage(EVERYTHING, 1_000_000)


def garbage_pieces(rows: list[GarbageRecord]) -> list[dict[str, Any]]:
    """Every piece the garbage rows stand for, whatever their kind."""
    found: list[dict[str, Any]] = []
    for row in rows:
        if row.kind == "piece":
            found.append(row.data)
        elif row.kind == "part":
            found.append(row.data["stored"])
        else:
            assert row.kind == "upload", row
            found += [p["stored"] for p in row.data["parts"]]
    return found


async def referenced(store: MetadataStore) -> list[dict[str, Any]]:
    return [p.to_dict() async for _, p in store.referenced_pieces()]


async def assert_nothing_referenced_is_garbage(store: MetadataStore) -> None:
    refs = await referenced(store)
    for piece_ in garbage_pieces(await all_garbage(store)):
        assert piece_ not in refs, piece_


def pieces_of(*records: ObjectRecord) -> list[dict[str, Any]]:
    return [p.to_dict() for r in records for p in r.pieces]


def multi(key: str, n: int = 2, vid_: str | None = None) -> ObjectRecord:
    """An object of `n` pieces."""
    obj = rec(key, vid_)
    return replace(obj, pieces=[piece(uuid.uuid4().hex) for _ in range(n)])


async def test_overwrite_moves_the_replaced_pieces_to_garbage(store: MetadataStore) -> None:
    await make_bucket(store)
    first = multi("k", 3)
    assert await store.put_object(first) is None
    assert await all_garbage(store) == []
    second = rec("k")
    await store.put_object(second)
    rows = await all_garbage(store)
    assert [(r.kind, r.location, r.data, r.attempts) for r in rows] == [
        ("piece", "us-east-1", p, 0) for p in pieces_of(first)]
    assert all(abs(r.added - time.time()) < 60 for r in rows)
    assert await store.count_garbage() == 3
    # versioned writes replace nothing; a null delete marker replaces the null version
    await store.put_object(rec("k", vid()))
    assert await store.count_garbage() == 3
    await store.put_object(rec("k", marker=True))
    assert garbage_pieces(await all_garbage(store)) == pieces_of(first, second)
    await assert_nothing_referenced_is_garbage(store)


async def test_pieces_still_referenced_are_never_garbage(store: MetadataStore) -> None:
    await make_bucket(store)
    old = multi("k", 3)
    old.pieces[0] = replace(old.pieces[0], version_id="v0")
    p0, p1, p2 = old.pieces
    await store.put_object(old)
    # the new version keeps p0 (same version), and p1 pinned to a version (the unpinned p1
    # may be those bytes): only p2 goes
    second = replace(rec("k"), pieces=[p0, replace(p1, version_id="v9")])
    await store.put_object(second)
    assert garbage_pieces(await all_garbage(store)) == [p2.to_dict()]
    # a piece pinned to a version is garbage when the new one names another version...
    pinned = replace(piece(uuid.uuid4().hex), version_id="v1")
    await store.put_object(replace(rec("k"), pieces=[pinned]))
    await store.put_object(replace(rec("k"), pieces=[replace(pinned, version_id="v2")]))
    # ...but not when the new one names its key without a version (every version there)
    await store.put_object(replace(rec("k"), pieces=[replace(pinned, version_id=None)]))
    assert garbage_pieces(await all_garbage(store)) == [p2.to_dict(), *pieces_of(second),
                                                        pinned.to_dict()]
    await assert_nothing_referenced_is_garbage(store)


async def test_delete_object_moves_its_pieces_to_garbage(store: MetadataStore) -> None:
    await make_bucket(store)
    v1, v2 = multi("k", 2, vid()), rec("k", vid())
    marker = rec("k", vid(), marker=True)
    for r in (v1, v2, marker):
        await store.put_object(r)
    assert same(await store.delete_object(B, "k", marker.version_id), marker)
    assert await all_garbage(store) == []  # a delete marker has no pieces
    await store.delete_object(B, "k", v1.version_id)
    assert garbage_pieces(await all_garbage(store)) == pieces_of(v1)
    await store.delete_object(B, "k", v2.version_id)
    assert garbage_pieces(await all_garbage(store)) == pieces_of(v1, v2)
    assert await store.delete_object(B, "k", v2.version_id) is None  # gone: nothing more
    assert await store.count_garbage() == 3


async def test_due_retry_and_drop_garbage(store: MetadataStore) -> None:
    await make_bucket(store)
    records = [rec(f"k{i}") for i in range(4)]
    for r in records:
        await store.put_object(r)
        await store.delete_object(B, r.key)
    now = time.time()
    rows = await store.due_garbage(now, 10)
    assert [r.data for r in rows] == pieces_of(*records)  # new rows are due at once, in order
    assert [r.data for r in await store.due_garbage(now, 2)] == pieces_of(*records[:2])
    assert await store.due_garbage(now, 0) == []
    # The collector's read grace: rows added after `added_before` wait.
    assert await store.due_garbage(now, 10, added_before=rows[0].added - 1) == []
    assert len(await store.due_garbage(now, 10, added_before=now)) == 4
    # a failed removal waits until not_before and counts the attempt
    await store.retry_garbage(rows[0].id, now + 100)
    assert [r.id for r in await store.due_garbage(now, 10)] == [r.id for r in rows[1:]]
    later = await store.due_garbage(now + 100, 10)
    assert [r.id for r in later] == [r.id for r in rows[1:]] + [rows[0].id]
    assert later[-1].attempts == 1
    await store.retry_garbage(rows[0].id, now + 200)
    assert (await store.due_garbage(now + 200, 10))[-1].attempts == 2
    await store.drop_garbage(rows[1].id)
    await store.drop_garbage(rows[1].id)  # already gone: fine
    assert await store.count_garbage() == 3
    assert [r.id for r in await all_garbage(store)] == [rows[2].id, rows[3].id, rows[0].id]
    # ids are never reused: a new row gets a new id even after the newest one was dropped
    await store.drop_garbage(rows[3].id)
    await store.put_object(rec("n"))
    await store.delete_object(B, "n")
    assert max(r.id for r in await all_garbage(store)) > rows[3].id


# bucket incarnations ------------------------------------------------------------------------
async def test_put_object_checks_the_bucket_incarnation(store: MetadataStore) -> None:
    bucket = await make_bucket(store)
    obj = rec("k")
    await store.put_object(obj, bucket_created=bucket.created)
    assert same(await store.get_object(B, "k"), obj)
    # deleted and created again (by someone else): the old incarnation is gone
    assert same(await store.delete_object(B, "k"), obj)
    assert await store.delete_bucket(B)
    await store.create_bucket(BucketRecord(B, "someone-else", "us-east-1", T0 + 1))
    intent = await store.add_intent("us-east-1", "bk/new")
    garbage = await store.count_garbage()
    with pytest.raises(BucketGone):
        await store.put_object(rec("k"), intent=intent, bucket_created=bucket.created)
    assert await store.get_object(B, "k", markers=True) is None  # nothing written...
    assert [i.id for i in await store.list_intents()] == [intent]  # ...nor taken
    assert await store.count_garbage() == garbage
    with pytest.raises(BucketGone):
        await store.put_object(rec("k", bucket="nope"), bucket_created=T0)
    assert await store.get_object("nope", "k") is None
    await store.put_object(rec("k"), bucket_created=T0 + 1)  # the new incarnation: fine


async def test_put_object_racing_delete_and_recreate_bucket(make_store: StoreFactory) -> None:
    stores = [await make_store() for _ in range(2)]
    outcomes: set[bool] = set()
    for trial in range(50):
        name = f"race-{trial}"
        old = await make_bucket(stores[0], name)
        obj = rec("k", bucket=name)

        async def put(obj: ObjectRecord, created: float) -> bool:
            try:
                await stores[1].put_object(obj, bucket_created=created)
                return True
            except BucketGone:
                return False

        async def recreate(new: BucketRecord) -> bool:
            if not await stores[0].delete_bucket(new.name):
                return False
            assert await stores[0].create_bucket(new) is None
            return True

        written, recreated = await race(
            trial, put(obj, old.created),
            recreate(BucketRecord(name, "someone-else", "us-east-1", old.created + 1)))
        outcomes.add(written)
        # exactly one wins, and an object never outlives its bucket's incarnation
        assert written != recreated
        bucket = await stores[1].get_bucket(name)
        assert bucket is not None
        assert bucket.created == (old.created if written else old.created + 1)
        got = await stores[0].get_object(name, "k", markers=True)
        assert (got is not None) == written
    assert outcomes == {True, False}  # both orders happened


# buckets: exclusive locations and attribute merges ------------------------------------------
async def test_create_bucket_exclusive_location(store: MetadataStore) -> None:
    b1 = BucketRecord("b1", OWNER, "loc-a", T0)
    assert await store.create_bucket(b1, exclusive_location=True) is None
    with pytest.raises(LocationTaken) as taken:
        await store.create_bucket(BucketRecord("b2", OWNER, "loc-a", T0),
                                  exclusive_location=True)
    assert taken.value.bucket == "b1"
    assert await store.get_bucket("b2") is None
    # the name check comes first: the bucket itself is no conflict
    assert await store.create_bucket(BucketRecord("b1", "x", "loc-a", T0 + 1),
                                     exclusive_location=True) == b1
    assert await store.create_bucket(BucketRecord("b2", OWNER, "loc-b", T0),
                                     exclusive_location=True) is None
    # without the flag a location may be shared
    assert await store.create_bucket(BucketRecord("b3", OWNER, "loc-b", T0)) is None
    assert await store.delete_bucket("b1")
    assert await store.create_bucket(BucketRecord("b4", OWNER, "loc-a", T0),
                                     exclusive_location=True) is None


async def test_create_bucket_exclusive_location_race(make_store: StoreFactory) -> None:
    stores = [await make_store() for _ in range(3)]
    for trial in range(50):
        location = f"loc-{trial}"
        names = [f"b{trial}-{i}" for i in range(6)]

        async def create(i: int, bucket: BucketRecord) -> str | None:
            try:
                await stores[i % 3].create_bucket(bucket, exclusive_location=True)
                return None
            except LocationTaken as e:
                return e.bucket

        results = await asyncio.gather(*(create(i, BucketRecord(n, OWNER, location, T0))
                                         for i, n in enumerate(names)))
        winners = [n for n, r in zip(names, results, strict=True) if r is None]
        assert len(winners) == 1, results
        assert all(r == winners[0] for r in results if r is not None)
        present = [n for n in names if await stores[0].get_bucket(n) is not None]
        assert present == winners


async def test_concurrent_update_bucket_attrs_keep_every_change(make_store: StoreFactory) -> None:
    stores = [await make_store() for _ in range(3)]
    await make_bucket(stores[0])
    keys = ["acl", "policy", "cors", "tags", "versioning"]
    for trial in range(50):
        results = await asyncio.gather(*(
            stores[i % 3].update_bucket_attrs(B, {k: f"{k}-{trial}"})
            for i, k in enumerate(keys)))
        assert all(r is not None for r in results)
        got = await stores[trial % 3].get_bucket(B)
        assert got is not None and got.attrs == {k: f"{k}-{trial}" for k in keys}
    # removals race with sets of other keys too
    await asyncio.gather(stores[0].update_bucket_attrs(B, {"policy": None}),
                         stores[1].update_bucket_attrs(B, {"cors": "new"}),
                         stores[2].update_bucket_attrs(B, {"tags": None, "x": 1}))
    got = await stores[0].get_bucket(B)
    assert got is not None and got.attrs == {"acl": "acl-49", "cors": "new",
                                             "versioning": "versioning-49", "x": 1}


# intents ------------------------------------------------------------------------------------
async def test_intents(store: MetadataStore) -> None:
    await make_bucket(store)
    before = time.time()
    a = await store.add_intent("us-east-1", "bk/a")
    b = await store.add_intent("eu", "bk/b")
    assert a != b
    intents = await store.list_intents()
    assert [(i.id, i.location, i.key) for i in intents] == [(a, "us-east-1", "bk/a"),
                                                            (b, "eu", "bk/b")]
    assert all(before - 1 <= i.created <= time.time() + 1 for i in intents)
    # the commit takes its intent, in the same transaction
    obj = replace(rec("k"), pieces=[Stored("us-east-1", "bk/a", 5)])
    await store.put_object(obj, intent=a)
    assert [i.id for i in await store.list_intents()] == [b]
    await store.abandon_intent(a)  # committed: nothing to do
    assert await all_garbage(store) == []
    # a failed write: its key is garbage (no version: every version there)
    await store.abandon_intent(b)
    await store.abandon_intent(b)  # once only
    rows = await all_garbage(store)
    assert [(r.kind, r.location, r.data) for r in rows] == [
        ("piece", "eu", {"location": "eu", "key": "bk/b", "size": 0})]
    assert await store.list_intents() == []
    await assert_nothing_referenced_is_garbage(store)


async def test_reclaim_intents_takes_only_old_ones(store: MetadataStore) -> None:
    await make_bucket(store)
    old = [await store.add_intent("us-east-1", f"bk/old{i}") for i in range(3)]
    await asyncio.sleep(0.02)
    cutoff = time.time()
    await asyncio.sleep(0.02)
    young = await store.add_intent("us-east-1", "bk/young")
    assert await store.reclaim_intents(cutoff) == 3
    assert [i.id for i in await store.list_intents()] == [young]
    assert sorted(r.data["key"] for r in await all_garbage(store)) == [
        "bk/old0", "bk/old1", "bk/old2"]
    assert await store.reclaim_intents(cutoff) == 0
    # a write whose intent was reclaimed meanwhile must not commit: its bytes are garbage
    obj = replace(rec("k"), pieces=[Stored("us-east-1", "bk/old0", 5)])
    with pytest.raises(LookupError):
        await store.put_object(obj, intent=old[0])
    assert await store.get_object(B, "k") is None
    assert await store.reclaim_intents(time.time() + 1) == 1
    assert await store.list_intents() == []
    assert await store.count_garbage() == 4


async def test_put_object_racing_abandon_intent(make_store: StoreFactory) -> None:
    stores = [await make_store() for _ in range(2)]
    await make_bucket(stores[0])
    outcomes: set[bool] = set()
    for trial in range(50):
        key = f"bk/{trial}"
        intent = await stores[0].add_intent("us-east-1", key)
        obj = replace(rec(f"k{trial}"), pieces=[Stored("us-east-1", key, 5)])

        async def put(obj: ObjectRecord, intent: int) -> bool:
            try:
                await stores[1].put_object(obj, intent=intent)
                return True
            except LookupError:
                return False

        reclaim = (stores[0].abandon_intent(intent) if trial % 4 < 2
                   else stores[0].reclaim_intents(time.time() + 10))
        written, _ = await race(trial, put(obj, intent), reclaim)
        outcomes.add(written)
        collected = [r for r in await all_garbage(stores[0]) if r.data["key"] == key]
        # either the record references the bytes, or they are garbage: never both, never none
        assert (await stores[0].get_object(B, obj.key) is not None) == written
        assert len(collected) == (0 if written else 1)
    assert await stores[0].list_intents() == []
    await assert_nothing_referenced_is_garbage(stores[0])
    assert outcomes == {True, False}


# multipart: states and garbage --------------------------------------------------------------
async def test_upload_states(store: MetadataStore) -> None:
    await make_bucket(store)
    up = upload("k")
    await store.create_upload(up)
    assert await store.get_upload(up.upload_id) == up and up.state == "open"
    p1 = part(up.upload_id, 1)
    await store.put_part(p1)
    claimed = await store.claim_upload(up.upload_id)
    assert claimed == replace(up, state="completing")
    assert await store.get_upload(up.upload_id) == claimed
    assert await store.claim_upload(up.upload_id) is None  # held already
    with pytest.raises(LookupError):
        await store.put_part(part(up.upload_id, 2))  # no part while completing
    assert await store.finish_upload(up.upload_id, None) is None  # nor an abort
    assert await store.list_parts(up.upload_id, 0, 10) == [p1]
    # a failed completion gives it back
    await store.release_upload(up.upload_id)
    assert await store.get_upload(up.upload_id) == up
    await store.release_upload(up.upload_id)  # open already: nothing changes
    assert await store.finish_upload(up.upload_id, rec("k")) is None  # not claimed
    p2 = part(up.upload_id, 2)
    assert await store.put_part(p2) is None
    assert await store.claim_upload("missing") is None
    await store.release_upload("missing")
    assert await store.count_garbage() == 0
    assert await store.finish_upload(up.upload_id, None) == ([p1, p2], None)
    assert await store.claim_upload(up.upload_id) is None


async def test_replaced_part_is_garbage(store: MetadataStore) -> None:
    await make_bucket(store)
    up = upload("k", backend_key="bk/staged")
    await store.create_upload(up)
    first = part(up.upload_id, 3)
    await store.put_part(first)
    second = part(up.upload_id, 3)
    assert await store.put_part(second) == first
    rows = await all_garbage(store)
    assert [(r.kind, r.location, r.data) for r in rows] == [
        ("part", up.location, {"backend_key": "bk/staged", "backend_upload_id": up.backend_upload_id,
                               "number": 3, "stored": first.stored.to_dict()})]
    # the same bytes recorded again (a retried request) replace nothing
    assert await store.put_part(replace(second, etag="again")) == second
    assert await store.count_garbage() == 1
    await assert_nothing_referenced_is_garbage(store)


async def test_completion_garbage_keeps_what_the_object_uses(store: MetadataStore) -> None:
    await make_bucket(store)
    old = multi("k", 2)
    await store.put_object(old)
    up = upload("k", backend_key="bk/staged")
    await store.create_upload(up)
    parts = [part(up.upload_id, n) for n in (1, 2, 3)]
    for p in parts:
        await store.put_part(p)
    # file/mem: the object is made of the listed parts themselves; part 2 was left out
    obj = replace(rec("k"), pieces=[parts[0].stored, parts[2].stored])
    await store.claim_upload(up.upload_id)
    finished = await store.finish_upload(up.upload_id, obj)
    assert finished is not None
    removed, replaced = finished
    assert removed == parts and same(replaced, old)
    rows = await all_garbage(store)
    assert [(r.kind, r.location, r.data) for r in rows if r.kind == "part"] == [
        ("part", up.location, {"backend_key": "bk/staged",
                               "backend_upload_id": up.backend_upload_id, "number": 2,
                               "stored": parts[1].stored.to_dict()})]
    assert [r.data for r in rows if r.kind == "piece"] == pieces_of(old)
    assert len(rows) == 3
    await assert_nothing_referenced_is_garbage(store)
    # clouds: the object is one new piece; every part's record goes
    up2 = upload("k2")
    await store.create_upload(up2)
    parts2 = [part(up2.upload_id, n) for n in (1, 2)]
    for p in parts2:
        await store.put_part(p)
    await store.claim_upload(up2.upload_id)
    await store.finish_upload(up2.upload_id, rec("k2"))
    rows = (await all_garbage(store))[3:]
    assert [(r.kind, r.data["number"], r.data["stored"]) for r in rows] == [
        ("part", p.number, p.stored.to_dict()) for p in parts2]


async def test_abort_is_one_upload_row(store: MetadataStore) -> None:
    await make_bucket(store)
    up = upload("k", backend_key="bk/staged")
    await store.create_upload(up)
    parts = [part(up.upload_id, n) for n in (2, 1)]
    for p in parts:
        await store.put_part(p)
    assert await store.finish_upload(up.upload_id, None) == (parts[::-1], None)
    rows = await all_garbage(store)
    assert [(r.kind, r.location, r.data) for r in rows] == [
        ("upload", up.location, {
            "backend_key": "bk/staged", "backend_upload_id": up.backend_upload_id,
            "parts": [{"number": p.number, "stored": p.stored.to_dict()}
                      for p in parts[::-1]]})]
    # an upload without parts still leaves its backend upload to abort
    empty = upload("e")
    await store.create_upload(empty)
    await store.finish_upload(empty.upload_id, None)
    assert (await all_garbage(store))[-1].data == {
        "backend_key": empty.backend_key, "backend_upload_id": empty.backend_upload_id,
        "parts": []}


async def test_completion_into_a_missing_bucket_is_refused(store: MetadataStore) -> None:
    await make_bucket(store)
    up = upload("k")
    await store.create_upload(up)
    p = part(up.upload_id, 1)
    await store.put_part(p)
    await store.claim_upload(up.upload_id)
    with pytest.raises(BucketGone):
        await store.finish_upload(up.upload_id, rec("k", bucket="gone"))
    assert await store.get_upload(up.upload_id) == replace(up, state="completing")
    assert await store.list_parts(up.upload_id, 0, 10) == [p]
    assert await store.count_garbage() == 0


async def test_claim_racing_abort_one_wins(make_store: StoreFactory) -> None:
    stores = [await make_store() for _ in range(2)]
    await make_bucket(stores[0])
    wins = {"claim": 0, "abort": 0}
    for trial in range(50):
        up = upload(f"k{trial}")
        await stores[0].create_upload(up)
        p = part(up.upload_id, 1)
        await stores[0].put_part(p)
        claimed, aborted = await race(trial, stores[0].claim_upload(up.upload_id),
                                      stores[1].finish_upload(up.upload_id, None))
        assert (claimed is None) != (aborted is None)
        current = await stores[1].get_upload(up.upload_id)
        if claimed is not None:
            wins["claim"] += 1
            assert current is not None and current.state == "completing"
            assert await stores[0].list_parts(up.upload_id, 0, 10) == [p]
            assert await stores[1].finish_upload(up.upload_id, rec(up.key)) == ([p], None)
        else:
            wins["abort"] += 1
            assert aborted == ([p], None) and current is None
    assert wins["claim"] + wins["abort"] == 50  # one winner each round (which one: timing)
    # every abort left one upload row; completions left none (the object uses a new piece,
    # so its parts are "part" rows)
    rows = await all_garbage(stores[0])
    assert sum(r.kind == "upload" for r in rows) == wins["abort"]
    assert sum(r.kind == "part" for r in rows) == wins["claim"]


async def test_put_part_racing_claim(make_store: StoreFactory) -> None:
    stores = [await make_store() for _ in range(3)]
    await make_bucket(stores[0])
    counts: set[int] = set()
    for trial in range(50):
        up = upload("k")
        await stores[0].create_upload(up)
        parts = [part(up.upload_id, n) for n in range(1, 6)]

        async def put(i: int, p: PartRecord) -> bool:
            try:
                await stores[i % 3].put_part(p)
                return True
            except LookupError:
                return False

        tasks: list[Awaitable[Any]] = [put(i, p) for i, p in enumerate(parts)]
        at = trial % (len(parts) + 1)
        tasks.insert(at, stores[1].claim_upload(up.upload_id))
        results = list(await asyncio.gather(*tasks))
        claim = results.pop(at)
        accepted = results
        assert claim is not None
        counts.add(sum(accepted))
        # what the completion reads after its claim is exactly the parts accepted
        seen = await stores[2].list_parts(up.upload_id, 0, 100)
        assert [p.number for p in seen] == [p.number for p, ok in zip(parts, accepted,
                                                                      strict=True) if ok]
        obj = replace(rec("k"), pieces=[p.stored for p in seen])
        finished = await stores[0].finish_upload(up.upload_id, obj)
        assert finished is not None and finished[0] == seen
    await assert_nothing_referenced_is_garbage(stores[0])
    assert 0 in counts and len(counts) > 1  # refused ones, accepted ones


async def test_concurrent_put_part_same_number_garbage(make_store: StoreFactory) -> None:
    stores = [await make_store() for _ in range(3)]
    await make_bucket(stores[0])
    up = upload("k")
    await stores[0].create_upload(up)
    parts = [part(up.upload_id, 7) for _ in range(20)]
    replaced = await asyncio.gather(*(stores[i % 3].put_part(p) for i, p in enumerate(parts)))
    gone = sorted(r.stored.key for r in replaced if r is not None)
    rows = await all_garbage(stores[0])
    assert sorted(r.data["stored"]["key"] for r in rows) == gone  # each exactly once
    final = await stores[1].list_parts(up.upload_id, 0, 10)
    assert final[0].stored.key not in gone


async def test_concurrent_deletes_of_one_version_garbage_once(make_store: StoreFactory) -> None:
    stores = [await make_store() for _ in range(3)]
    await make_bucket(stores[0])
    for trial in range(20):
        obj = multi(f"k{trial}", 2)
        await stores[0].put_object(obj)
        results = await asyncio.gather(*(stores[i % 3].delete_object(B, obj.key)
                                         for i in range(6)))
        assert sum(r is not None for r in results) == 1
    rows = await all_garbage(stores[0])
    assert len(rows) == 40 and len({r.data["key"] for r in rows}) == 40


# referenced_pieces --------------------------------------------------------------------------
async def test_referenced_pieces(store: MetadataStore, monkeypatch: pytest.MonkeyPatch) -> None:
    # Small pages, so the walk crosses many page boundaries.
    monkeypatch.setattr("gateway.metadata.sqlite.PAGE", 3)
    monkeypatch.setattr("gateway.metadata.postgres.PAGE", 3)
    await make_bucket(store)
    await make_bucket(store, "b2")
    objs = [multi(f"k{i}", i % 3 + 1) for i in range(7)]
    v1, v2 = multi("v", 2, vid()), rec("v", vid())
    objs += [v1, v2, rec("v", vid(), marker=True), rec("z", bucket="b2")]
    for o in objs:
        await store.put_object(o)
    ups = [upload(f"u{i}") for i in range(3)]
    parts = []
    for up in ups:
        await store.create_upload(up)
        for n in (1, 2, 3):
            parts.append(part(up.upload_id, n))
            await store.put_part(parts[-1])
    await store.claim_upload(ups[0].upload_id)  # completing: its parts still count
    got = [(what, p.to_dict()) async for what, p in store.referenced_pieces()]
    expected = [(f"object {o.bucket}/{o.key} v={o.version_id or 'null'}", p.to_dict())
                for o in objs for p in o.pieces]
    expected += [(f"part {p.upload_id} {p.number}", p.stored.to_dict()) for p in parts]
    assert sorted(got, key=repr) == sorted(expected, key=repr)
    assert len(got) == len(expected)


# every piece ever recorded ends in exactly one place ----------------------------------------
async def test_every_piece_is_referenced_or_garbage_exactly_once(store: MetadataStore) -> None:
    """A random run of every write: afterwards each piece ever recorded is either referenced
    by a record or held by the garbage ledger, exactly once (nothing leaks, nothing doubles)."""
    await make_bucket(store)
    rng = random.Random(11)
    written: list[dict[str, Any]] = []
    uploads: list[str] = []
    keys = ["a", "b", "c/d"]
    for _ in range(250):
        op = rng.choice(["put", "put", "version", "marker", "delete", "create", "part",
                         "complete", "abort"])
        key = rng.choice(keys)
        if op in ("put", "version"):
            obj = multi(key, rng.randint(1, 3), vid() if op == "version" else None)
            written += pieces_of(obj)
            await store.put_object(obj)
        elif op == "marker":
            await store.put_object(rec(key, rng.choice([None, vid()]), marker=True))
        elif op == "delete":
            versions = (await store.list_versions(B, key, None, None, None, 100)).versions
            mine = [v for v in versions if v.key == key]
            if mine:
                await store.delete_object(B, key, rng.choice(mine).version_id or "null")
        elif op == "create" or not uploads:
            up = upload(key)
            await store.create_upload(up)
            uploads.append(up.upload_id)
        elif op == "part":
            p = part(rng.choice(uploads), rng.randint(1, 4))
            written.append(p.stored.to_dict())
            await store.put_part(p)
        else:
            upload_id = uploads.pop(rng.randrange(len(uploads)))
            if op == "abort":
                assert await store.finish_upload(upload_id, None) is not None
                continue
            up = await store.claim_upload(upload_id)
            assert up is not None
            parts = await store.list_parts(upload_id, 0, 100)
            if rng.random() < 0.5:  # file/mem: some of the parts themselves
                obj = replace(rec(up.key), pieces=[p.stored for p in parts
                                                   if rng.random() < 0.7])
            else:  # cloud: one new piece
                obj = rec(up.key)
            written += pieces_of(obj)  # (listed parts twice: deduplicated below)
            await store.finish_upload(upload_id, obj)
    written = [dict(t) for t in {tuple(sorted(p.items())) for p in written}]  # reused parts
    found = await referenced(store) + garbage_pieces(await all_garbage(store))
    assert sorted(found, key=repr) == sorted(written, key=repr)


# list_uploads: limits and seeks -------------------------------------------------------------
async def test_list_uploads_limit_zero(store: MetadataStore) -> None:
    await make_bucket(store)
    empty = await store.list_uploads(B, "", None, None, None, 0)
    assert (empty.uploads, empty.prefixes, empty.truncated) == ([], [], False)
    await store.create_upload(upload("a/1"))
    for delimiter in (None, "/"):
        page = await store.list_uploads(B, "", delimiter, None, None, 0)
        assert (page.uploads, page.prefixes, page.truncated) == ([], [], True)
    page = await store.list_uploads(B, "b", None, None, None, 0)
    assert not page.truncated  # nothing under the prefix


async def test_list_uploads_seeks_past_common_prefixes(store: MetadataStore) -> None:
    await make_bucket(store)
    ups = [upload(f"d/{i:04d}", initiated=T0 + i % 3) for i in range(300)]
    ups += [upload("a"), upload("e/x"), upload("e/y"), upload("f"), upload("d0")]
    ups += [upload("a", initiated=T0 - 1), upload("f", initiated=T0 + 5)]
    for up in ups:
        await store.create_upload(up)
    rng = random.Random(3)
    for _ in range(60):
        args = (rng.choice(["", "d", "d/", "e"]), rng.choice([None, "/", "0"]),
                rng.choice([None, "a", "d/0150", "d/", "e/x"]), rng.choice([None, "zz"]),
                rng.choice([0, 1, 2, 3, 5, 1000]))
        got = await store.list_uploads(B, *args)
        assert ([u.upload_id for u in got.uploads], got.prefixes, got.truncated) == \
            ref_list_uploads(ups, *args), args


# conditional writes ------------------------------------------------------------------------
async def test_conditional_put_and_delete(store: MetadataStore) -> None:
    await make_bucket(store)
    first = rec("k")
    assert await store.put_object(first, expect="*") is None
    with pytest.raises(ConditionFailed) as failed:
        await store.put_object(rec("k"), expect="*")
    assert failed.value.reason == "exists"
    with pytest.raises(ConditionFailed) as failed:
        await store.put_object(rec("k"), expect="not-the-etag")
    assert failed.value.reason == "mismatch"
    with pytest.raises(ConditionFailed) as failed:
        await store.put_object(rec("absent"), expect="anything")
    assert failed.value.reason == "missing"
    assert same(await store.get_object(B, "k"), first)  # refusals changed nothing
    with pytest.raises(ConditionFailed):
        await store.delete_object(B, "k", expect="not-the-etag")
    assert await store.get_object(B, "k") is not None
    assert await store.delete_object(B, "k", expect=first.etag) is not None
    assert await store.put_object(rec("k"), expect="*") is None  # gone again: * holds


async def test_conditional_create_race_has_one_winner(make_store: StoreFactory) -> None:
    """20 trials of 6 concurrent If-None-Match: * commits of one key (on PostgreSQL through
    separate pools, as separate gateways): exactly one commits each time."""
    stores = [await make_store() for _ in range(3)]
    await make_bucket(stores[0])
    for trial in range(20):
        async def create(n: int, trial: int = trial) -> bool:
            try:
                await stores[n % 3].put_object(rec(f"race-{trial}"), expect="*")
                return True
            except ConditionFailed:
                return False

        outcomes = await asyncio.gather(*(create(n) for n in range(6)))
        assert outcomes.count(True) == 1


async def test_complete_keeps_the_parts_it_used(store: MetadataStore) -> None:
    """On clouds the completed object is one new piece and the listed parts live on inside it
    (a Swift SLO reads its segments): only parts the completion did not use become garbage."""
    await make_bucket(store)
    up = upload("k")
    await store.create_upload(up)
    used, unused = part(up.upload_id, 1), part(up.upload_id, 2)
    await store.put_part(used)
    await store.put_part(unused)
    assert await store.claim_upload(up.upload_id) is not None
    assembled = rec("k")  # one piece of its own, as a cloud's completion returns
    assert await store.finish_upload(up.upload_id, assembled, [1]) is not None
    rows = [r for r in await store.due_garbage(EVERYTHING, 1_000_000) if r.kind == "part"]
    assert [r.data["number"] for r in rows] == [2]


async def test_delete_bucket_aborts_open_uploads(store: MetadataStore) -> None:
    """As AWS: uploads in progress do not keep a bucket alive; deleting it aborts them, and
    their backend state goes to the garbage ledger in the same transaction."""
    await make_bucket(store)
    open_upload = upload("k")
    await store.create_upload(open_upload)
    staged = part(open_upload.upload_id, 1)
    await store.put_part(staged)
    assert await store.delete_bucket(B) is True
    assert await store.get_upload(open_upload.upload_id) is None
    rows = [r for r in await store.due_garbage(EVERYTHING, 1_000_000) if r.kind == "upload"]
    assert [r.data["backend_upload_id"] for r in rows] == [open_upload.backend_upload_id]
    assert [p["stored"] for p in rows[0].data["parts"]] == [staged.stored.to_dict()]
