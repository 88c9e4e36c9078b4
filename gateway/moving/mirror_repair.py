"""Repairs of mirror locations (gateway/translators/mirror.py): copy a piece to the members
that lack it.

A write that left members behind (mode `quorum` with a member down, every `primary+async`
write) queues a "mirror.repair" job on the job runner (gateway/jobs/), kept in the metadata
store so a restarted gateway still runs it. The job streams the piece from a member that has
it to each member that lacks it (or holds another size), at the mirror key, then reads the copy
back and compares its MD5 with the source's: a repair is verified byte for byte. While a member
(or every source) is down, the job is queued again after a back-off (2 s doubling to 30 s), so
it runs within 30 s of the member coming back, without holding a job slot meanwhile. If the
piece is gone meanwhile (the object was deleted and collected), the job does nothing, and a
copy that raced such a delete is removed again.

`python -m gateway fsck` reports members of a mirror that differ from its first holder
(missing, or another size); `--repair` queues these repairs (gateway/objects/fsck.py).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from gateway.metadata.base import JobRecord, MetadataStore
from gateway.translators.base import NotFound, ObjectMeta, Stored, TranslatorError
from gateway.translators.mirror import MirrorTranslator

if TYPE_CHECKING:
    from gateway.jobs import JobRunner
    from gateway.locations import Location, Locations

log = logging.getLogger("gateway.moving")

KIND = "mirror.repair"
FIRST_DELAY = 1.0  # s: a write's repair runs after its commit in the usual case
MAX_WAIT = 30.0  # s between two tries while a member is down


class MemberDown(Exception):
    """A member the repair needs cannot be reached now: try again later."""


async def enqueue(metadata: MetadataStore, mirror: str, stored: Stored, members: list[str],
                  *, delay: float = FIRST_DELAY, waits: int = 0) -> int | None:
    """Queue the repair of `stored` on `members` (one pending job per piece and try)."""
    job_key = f"{mirror}:{stored.key}" + (f"#{waits}" if waits else "")
    data = {"location": mirror, "piece": stored.to_dict(), "members": members, "waits": waits}
    return await metadata.enqueue_job(KIND, job_key, mirror, data, time.time() + delay)


class MirrorRepairs:
    """Registers the repair job kind and gives every mirror location its repair queue."""

    def __init__(self, locations: Locations, jobs: JobRunner) -> None:
        self.locations = locations
        self.jobs = jobs
        self.repaired = 0  # member copies made by this gateway
        jobs.register(KIND, self._job)
        for location in locations:
            if isinstance(location.translator, MirrorTranslator):
                location.translator.repairs = self.enqueue

    async def enqueue(self, mirror: str, stored: Stored, members: list[str]) -> None:
        await enqueue(self.jobs.metadata, mirror, stored, members)
        self.jobs.wake()

    async def _job(self, job: JobRecord) -> None:
        data = job.data
        location = self.locations[data["location"]] if data["location"] in self.locations \
            else None
        if location is None or not isinstance(location.translator, MirrorTranslator):
            return  # the mirror was removed from the configuration: nothing to repair
        stored = Stored.from_dict(data["piece"])
        try:
            self.repaired += await repair_piece(location.translator, stored, data["members"])
        except MemberDown as exc:
            waits = int(data.get("waits", 0)) + 1
            delay = min(MAX_WAIT, 2.0 * 2 ** (waits - 1))
            log.info("mirror %s: repair of %s waits %.0fs: %s", location.name, stored.key,
                     delay, exc)
            await enqueue(self.jobs.metadata, location.name, stored, data["members"],
                          delay=delay, waits=waits)


async def _hashed(stream: AsyncIterator[bytes], digest: Any) -> AsyncIterator[bytes]:
    async for chunk in stream:
        digest.update(chunk)
        yield chunk


async def _md5(stream: AsyncIterator[bytes]) -> str:
    digest = hashlib.md5()
    async for chunk in stream:
        digest.update(chunk)
    return digest.hexdigest()


async def _size_or_none(mirror: MirrorTranslator, member: Location, stored: Stored) -> int | None:
    try:
        return await mirror.member_size(member, stored)
    except NotFound:
        return None


async def repair_piece(mirror: MirrorTranslator, stored: Stored, members: list[str]) -> int:
    """Copy `stored` to each of `members` that lacks it (or holds another size), verified;
    how many copies were made. MemberDown while a target or every source is unreachable."""
    todo: list[Location] = []
    try:
        for name in members:
            member = mirror.by_member.get(name)
            if member is None:
                continue  # no longer a member
            if await _size_or_none(mirror, member, stored) != stored.size:
                todo.append(member)
    except TranslatorError as exc:
        raise MemberDown(str(exc)) from exc
    if not todo:
        return 0
    source = None
    for member in mirror.read_order():
        if member in todo:
            continue
        try:
            if await _size_or_none(mirror, member, stored) == stored.size:
                source = member
                break
        except TranslatorError:
            continue
    if source is None:
        if all(m.health.state != "down" for m in mirror.members if m not in todo):
            log.warning("mirror %s: no member holds %s any more: nothing to repair", mirror.name,
                        stored.key)
            return 0  # deleted meanwhile (or lost everywhere: fsck reports it)
        raise MemberDown(f"no member that holds {stored.key} can be read now")
    made = 0
    for target in todo:
        copy = Stored(target.name, stored.key, stored.size)
        try:
            await target.store.delete(copy)  # another size: replaced (unpinned: every version)
            digest = hashlib.md5()
            source_stream = await mirror._member_stream(source, stored, 0, None)
            await target.store.put(stored.key, _hashed(source_stream, digest), stored.size,
                                   ObjectMeta())
            written = await _md5(await target.store.get(copy))
        except TranslatorError as exc:
            if isinstance(exc, NotFound):
                return made  # the source went away meanwhile
            raise MemberDown(f"{target.name}: {exc}") from exc
        if written != digest.hexdigest():
            await target.store.delete(copy)
            raise RuntimeError(f"mirror {mirror.name}: the copy of {stored.key} on {target.name} "
                               "reads back different bytes")
        # A delete of the object may have raced the copy: then the copy must go too.
        if await _size_or_none(mirror, source, stored) is None:
            await target.store.delete(copy)
            return made
        made += 1
        log.info("mirror %s: repaired %s on %s (%d bytes, verified)", mirror.name, stored.key,
                 target.name, stored.size)
    return made


async def differences(mirror: MirrorTranslator, stored: Stored) -> list[tuple[str, str]]:
    """For fsck: (member, what differs) for each member whose copy of `stored` is missing or
    of another size than recorded. A member that cannot be read is reported as such."""
    found = []
    for member in mirror.members:
        try:
            size = await _size_or_none(mirror, member, stored)
        except TranslatorError as exc:
            found.append((member.name, f"cannot read: {exc}"[:200]))
            continue
        if size is None:
            found.append((member.name, "missing"))
        elif size != stored.size:
            found.append((member.name, f"stored {size} bytes, recorded {stored.size}"))
    return found


async def check_mirror(location: Location, metadata: MetadataStore, repair: bool) -> Any:
    """fsck of a mirror location: every piece its records reference, on every member
    (members' own listings are checked as locations of their own, with the mirror's pieces
    counted as referenced there). Parts of open uploads are left out: in `primary+async` mode
    only the primary takes them, by design. With `repair`, lacking members get a repair job."""
    from gateway.objects.fsck import LocationReport

    mirror = location.translator
    assert isinstance(mirror, MirrorTranslator)
    report = LocationReport(location.name)
    async for what, piece in metadata.referenced_pieces():
        if piece.location != location.name or what.startswith("part "):
            continue
        report.referenced += 1
        found = await differences(mirror, piece)
        if found and len(found) == len(mirror.members) \
                and all(problem == "missing" for _, problem in found):
            report.missing.append(f"{what}: {piece.key} (on no member)")
            continue
        for member, problem in found:
            report.differs.append(f"{what}: {piece.key} on {member}: {problem}")
        lacking = [member for member, problem in found if not problem.startswith("cannot")]
        if repair and lacking:
            await enqueue(metadata, location.name, piece, lacking, delay=0.0)
            report.repairs_queued += 1
    return report
