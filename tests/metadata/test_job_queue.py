"""The job queue and the relocation swap in the metadata store (MetadataStore.enqueue_job ...
relocate_version): the contract both stores keep (SQLite and PostgreSQL), and on PostgreSQL
several stores (one per gateway process) racing to claim one queue: no job is claimed twice."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest

from gateway.jobs.runner import JobRunner, JobSettings
from gateway.metadata.base import BucketRecord, JobRecord, MetadataStore, ObjectRecord
from gateway.metadata.postgres import PostgresStore
from gateway.translators.base import Stored
from tests.metadata.conftest import StoreFactory

OWNER = "owner-1"
LEASE = 30.0


@pytest.fixture
async def queue(make_store: StoreFactory) -> MetadataStore:
    store = await make_store()
    if isinstance(store, PostgresStore):  # the shared fixture does not know these tables
        await store.pool.execute("TRUNCATE jobs, job_totals")
    return store


async def test_enqueue_deduplicates_per_kind_and_key(queue: MetadataStore) -> None:
    first = await queue.enqueue_job("expire", "b/k", "b", {"n": 1})
    assert first is not None
    assert await queue.enqueue_job("expire", "b/k", "b", {"n": 2}) is None  # already pending
    assert await queue.enqueue_job("transition", "b/k", "b", {}) is not None  # another kind
    [claimed] = [j for j in await queue.claim_jobs("w1", 10, LEASE) if j.kind == "expire"]
    assert claimed.id == first and claimed.data == {"n": 1} and claimed.attempts == 1
    assert await queue.enqueue_job("expire", "b/k", "b", {}) is None  # running counts too
    assert await queue.complete_job(first, "w1")
    assert await queue.get_job(first) is None
    assert await queue.enqueue_job("expire", "b/k", "b", {}) is not None  # done: a new one


async def test_claims_are_leased_and_fenced(queue: MetadataStore) -> None:
    job_id = await queue.enqueue_job("k", "one", "b", {})
    assert job_id is not None
    now = time.time()
    [job] = await queue.claim_jobs("w1", 5, LEASE, now)
    assert job.worker == "w1" and job.state == "running" and job.lease_until == now + LEASE
    assert await queue.claim_jobs("w2", 5, LEASE, now + 1) == []  # held
    assert await queue.extend_job(job_id, "w1", now + 2 * LEASE)
    assert await queue.claim_jobs("w2", 5, LEASE, now + LEASE + 1) == []  # renewed
    # w1 dies (no more renewals): once its lease ran out, w2 claims the job.
    [again] = await queue.claim_jobs("w2", 5, LEASE, now + 2 * LEASE + 1)
    assert again.id == job_id and again.worker == "w2" and again.attempts == 2
    # The late w1 can neither renew, finish nor fail it: the claim is w2's.
    assert not await queue.extend_job(job_id, "w1", now + 10 * LEASE)
    assert not await queue.complete_job(job_id, "w1")
    assert not await queue.fail_job(job_id, "w1", "late", None)
    assert await queue.complete_job(job_id, "w2")
    assert (await queue.job_counts())["k"] == {"pending": 0, "running": 0, "failed": 0,
                                               "done": 1}


async def test_retry_backoff_then_give_up(queue: MetadataStore) -> None:
    job_id = await queue.enqueue_job("k", "flaky", "b", {"x": 1})
    assert job_id is not None
    now = time.time()
    await queue.claim_jobs("w1", 1, LEASE, now)
    assert await queue.fail_job(job_id, "w1", "boom", now + 100)
    failed_once = await queue.get_job(job_id)
    assert failed_once is not None and failed_once.state == "pending"
    assert failed_once.error == "boom" and failed_once.worker is None
    assert await queue.claim_jobs("w1", 1, LEASE, now + 50) == []  # backing off
    [retry] = await queue.claim_jobs("w1", 1, LEASE, now + 101)
    assert retry.attempts == 2
    assert await queue.fail_job(job_id, "w1", "still broken", None)  # give up
    gone = await queue.get_job(job_id)
    assert gone is not None and gone.state == "failed" and gone.error == "still broken"
    assert await queue.claim_jobs("w1", 1, LEASE, now + 10_000) == []
    assert (await queue.job_counts())["k"]["failed"] == 1
    # A later scan may try the object again: the failed row makes way for the new job.
    fresh = await queue.enqueue_job("k", "flaky", "b", {"x": 2})
    assert fresh is not None and await queue.get_job(job_id) is None


async def test_claim_order_limit_and_not_before(queue: MetadataStore) -> None:
    now = time.time()
    later = await queue.enqueue_job("k", "later", "b", {}, not_before=now + 60)
    ids = [await queue.enqueue_job("k", f"j{i}", "b", {}) for i in range(5)]
    first = await queue.claim_jobs("w", 3, 1000, now)
    assert [j.id for j in first] == ids[:3]
    rest = await queue.claim_jobs("w", 10, 1000, now)
    assert [j.id for j in rest] == ids[3:]
    assert [j.id for j in await queue.claim_jobs("w", 10, LEASE, now + 61)] == [later]
    counts = (await queue.job_counts())["k"]
    assert counts["running"] == 6 and counts["pending"] == 0


async def test_release_jobs_gives_running_jobs_back(queue: MetadataStore) -> None:
    now = time.time()
    held = await queue.enqueue_job("k", "held", "b", {})
    later = await queue.enqueue_job("k", "later", "b", {}, not_before=now + 600)
    [job] = await queue.claim_jobs("crashed", 5, 1000, now)
    assert job.id == held
    assert await queue.release_jobs() == 1
    [again] = await queue.claim_jobs("restarted", 5, 1000, now)  # due at once, lease or not
    assert again.id == held and again.attempts == 2
    assert not await queue.complete_job(held, "crashed")
    assert (await queue.get_job(later)).state == "pending"  # type: ignore[union-attr]


def _obj(key: str, tag: str, version_id: str | None = None) -> ObjectRecord:
    return ObjectRecord(bucket="rb", key=key, size=5, etag="e" + tag, last_modified=1.0,
                        location="us-east-1",
                        pieces=[Stored("us-east-1", f"rb/{key}~{tag}", 5)], owner=OWNER,
                        attrs={"checksum": {"algorithm": "CRC32", "value": "x"}},
                        version_id=version_id)


async def test_relocate_version_swaps_only_the_version_it_copied(queue: MetadataStore) -> None:
    store = queue
    await store.create_bucket(BucketRecord("rb", OWNER, "us-east-1", 1.0))
    v1, v2 = uuid.uuid4().hex, uuid.uuid4().hex
    old = _obj("k", "a", v1)
    await store.put_object(old)
    await store.put_object(_obj("k", "b", v2))  # v1 is now noncurrent
    garbage_before = await store.count_garbage()
    intent = await store.add_intent("cold", "rb/k~new")
    new = Stored("cold", "rb/k~new", 5, version_id="gen1")
    moved = await store.relocate_version("rb", "k", v1, old.pieces, [new], "cold",
                                         {"storage_class": "GLACIER"}, [intent])
    assert moved is not None and moved.pieces == [new] and moved.location == "cold"
    assert moved.attrs == {"checksum": {"algorithm": "CRC32", "value": "x"},
                           "storage_class": "GLACIER"}
    stored = await store.get_object("rb", "k", v1)
    assert stored is not None and stored.pieces == [new] and not stored.latest
    assert stored.attrs["storage_class"] == "GLACIER"
    current = await store.get_object("rb", "k")
    assert current is not None and current.version_id == v2  # untouched, still current
    assert await store.list_intents() == []  # taken by the swap
    assert await store.count_garbage() == garbage_before + 1  # the old piece
    rows = await store.due_garbage(time.time() + 1, 100)
    assert old.pieces[0].to_dict() in [r.data for r in rows]
    # A second move from the stale pieces (a concurrent mover lost) changes nothing.
    intent2 = await store.add_intent("cold", "rb/k~newer")
    assert await store.relocate_version("rb", "k", v1, old.pieces,
                                        [Stored("cold", "rb/k~newer", 5)], "cold", {},
                                        [intent2]) is None
    assert [i.id for i in await store.list_intents()] == [intent2]  # left to its writer
    assert (await store.get_object("rb", "k", v1)).pieces == [new]  # type: ignore[union-attr]
    # The null version, and a gone intent.
    null = _obj("n", "c")
    await store.put_object(null)
    await store.abandon_intent(intent2)
    intent3 = await store.add_intent("cold", "rb/n~x")
    with pytest.raises(LookupError):  # one of two intents gone: nothing changes
        await store.relocate_version("rb", "n", None, null.pieces, [new], "cold", {},
                                     [intent3, intent2])
    assert (await store.get_object("rb", "n", "null")).pieces == null.pieces  # type: ignore[union-attr]
    assert [i.id for i in await store.list_intents()] == [intent3]  # not taken either
    done = await store.relocate_version("rb", "n", None, null.pieces,
                                        [Stored("cold", "rb/n~x", 5)], "cold",
                                        {"storage_class": None, "checksum": None}, [intent3])
    assert done is not None and done.attrs == {} and done.version_id is None


@pytest.mark.postgres
async def test_two_gateways_racing_never_claim_one_job_twice(
        backend: str, make_store: StoreFactory) -> None:
    if backend == "sqlite":
        pytest.skip("SQLite has one writer process")
    a = await make_store()
    b = await make_store()  # another pool, as another gateway process has
    assert isinstance(a, PostgresStore)
    await a.pool.execute("TRUNCATE jobs, job_totals")
    total = 300
    for i in range(total):
        await a.enqueue_job("race", f"obj-{i}", "b", {"i": i})
    seen: dict[str, list[int]] = {}

    async def worker(store: MetadataStore, name: str) -> None:
        mine = seen.setdefault(name, [])
        while True:
            jobs = await store.claim_jobs(name, 7, LEASE)
            if not jobs:
                return
            for job in jobs:
                mine.append(job.id)
                assert await store.complete_job(job.id, name)  # only its claimant finishes it

    await asyncio.gather(*(worker(s, f"{tag}{n}") for s, tag in ((a, "a"), (b, "b"))
                           for n in range(4)))
    claimed = [job_id for ids in seen.values() for job_id in ids]
    assert len(claimed) == total and len(set(claimed)) == total  # each exactly once
    assert sum(1 for name, ids in seen.items() if name.startswith("b") and ids) >= 1
    assert (await a.job_counts())["race"]["done"] == total


async def test_a_job_whose_claim_is_taken_over_stops_running(queue: MetadataStore) -> None:
    """A worker that lost its lease (e.g. stalled past it) and sees another worker holding the
    job stops its own run at the next heartbeat: one job never runs twice at once."""
    runner = JobRunner(queue, JobSettings(lease=0.3))
    started, stopped = asyncio.Event(), asyncio.Event()

    async def slow(job: JobRecord) -> None:
        started.set()
        try:
            await asyncio.sleep(5)
        except asyncio.CancelledError:
            stopped.set()
            raise

    runner.register("slow", slow)
    job_id = await queue.enqueue_job("slow", "one", "b", {})
    [job] = await queue.claim_jobs(runner.worker, 1, 0.3)
    run = asyncio.create_task(runner.run_job(job))
    await asyncio.wait_for(started.wait(), 5)
    # The lease runs out under the runner (as if stalled), and another worker claims the job.
    assert await queue.extend_job(job_id, runner.worker, time.time() - 1)
    [taken] = await queue.claim_jobs("w2", 1, 60)
    assert taken.id == job_id
    await asyncio.wait_for(run, 5)  # the heartbeat stopped the stale run
    assert stopped.is_set() and runner.finished["slow"] == {"lost": 1}
    assert (await queue.get_job(job_id)).worker == "w2"  # still w2's, untouched
