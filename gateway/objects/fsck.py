"""fsck: check metadata against the data on every location, what an operator runs after a crash.

    python -m gateway fsck [--repair] [--location NAME]

For each location it lists what is stored there first, and only then reads what metadata
references (object versions, parts of open uploads), what is being written (intents) and what
waits for the collector (garbage). A write always records its intent before its bytes exist, so
anything listed that none of those name afterwards is truly unreferenced, even on a live
gateway. It reports:
- missing: referenced pieces the location does not have (confirmed by a HEAD);
- size mismatch: referenced pieces whose stored size differs from the record;
- unreferenced: stored pieces nothing names (only keys the gateway wrote: `~<token>` keys,
  or everything on locations that list only their own pieces, such as `file`).
With --repair, unreferenced pieces are deleted (pinned to the listed version) and the garbage
ledger is collected now; missing data cannot be repaired and stays reported.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from gateway.errors import S3Error
from gateway.locations import PIECE_TOKEN
from gateway.metadata.base import MetadataStore
from gateway.translators.base import NotFound, Stored

if TYPE_CHECKING:
    from gateway.locations import Location, Locations
    from gateway.objects.collector import Collector


@dataclass
class LocationReport:
    name: str
    listed: int = 0
    referenced: int = 0
    missing: list[str] = field(default_factory=list)
    size_mismatch: list[str] = field(default_factory=list)
    unreferenced: list[Stored] = field(default_factory=list)
    repaired: int = 0
    error: str = ""
    # Mirror locations (gateway/moving/mirror_repair.py): members whose copy differs.
    differs: list[str] = field(default_factory=list)
    repairs_queued: int = 0
    # Imported objects (gateway/moving/importer.py) overwritten on the backend since.
    changed: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not (self.missing or self.size_mismatch or self.unreferenced or self.error
                    or self.differs or self.changed)

    def line(self) -> str:
        if self.error:
            return f"{self.name}: cannot check: {self.error}"
        return (f"{self.name}: {self.listed} stored, {self.referenced} referenced, "
                f"{len(self.missing)} missing, {len(self.size_mismatch)} size mismatch, "
                f"{len(self.unreferenced)} unreferenced"
                + (f", {len(self.changed)} changed on the backend" if self.changed else "")
                + (f", {self.repaired} removed" if self.repaired else "")
                + (f", {len(self.differs)} member copies differ" if self.differs else "")
                + (f", {self.repairs_queued} repairs queued" if self.repairs_queued else ""))


async def check_location(group: list[Location], metadata: MetadataStore,
                         repair: bool,
                         expand: Callable[[Stored], list[Stored]] | None = None
                         ) -> LocationReport:
    """Check the locations of one storage (usually one location; several file locations may
    share a data path), listing it once. `expand`: the pieces on other locations a piece
    stands for (a mirror's, on its members), referenced there too."""
    location = group[0]
    if location.translator.composite:  # a mirror: its members' copies are compared
        from gateway.moving.mirror_repair import check_mirror

        return await check_mirror(location, metadata, repair)
    expand = expand or (lambda piece: [])
    names = {member.name for member in group}
    report = LocationReport(", ".join(sorted(names)))
    listed: dict[str, Stored] = {}
    try:
        async for piece in location.list_pieces():
            listed[location.piece_id(piece)] = piece
    except NotImplementedError as exc:
        report.error = str(exc)
    except Exception as exc:  # the location is down: say so, check the others
        report.error = f"{type(exc).__name__}: {exc}"[:300]
    if report.error:
        return report
    report.listed = len(listed)
    # Read after listing (see the module doc): what is named now covers everything listed.
    named: set[str] = set()
    async for what, piece in metadata.referenced_pieces():
        if piece.location not in names:
            named.update(location.piece_id(sub) for sub in expand(piece)
                         if sub.location in names)
            continue
        report.referenced += 1
        pid = location.piece_id(piece)
        named.add(pid)
        found = listed.get(pid)
        # A piece the gateway did not write (imported), pinned by etag alone: compare etags too.
        foreign = bool(piece.etag) and not piece.version_id and not PIECE_TOKEN.search(piece.key)
        if found is not None and (found.size == piece.size or piece.size == 0) and not (
                foreign and found.etag != piece.etag):
            continue
        try:  # not listed (written after the listing?) or a different size: ask directly
            head = await location.head(piece)
        except NotFound:
            report.missing.append(f"{what}: {piece.key}")
            continue
        except S3Error as err:
            report.missing.append(f"{what}: {piece.key} (cannot read: {err.message})")
            continue
        if head.size != piece.size:
            report.size_mismatch.append(f"{what}: {piece.key} stored {head.size} bytes, "
                                        f"recorded {piece.size}")
        elif foreign and head.etag != piece.etag:
            report.changed.append(f"{what}: {piece.key} etag {head.etag}, recorded {piece.etag}")
    for intent in await metadata.list_intents():
        if intent.location in names:
            named.add(location.piece_id(Stored(location.name, intent.key, 0)))
        named.update(location.piece_id(sub) for sub in
                     expand(Stored(intent.location, intent.key, 0)) if sub.location in names)
    for row in await metadata.due_garbage(float("inf"), 1_000_000):
        if row.location in names and row.kind == "piece":
            named.add(location.piece_id(Stored.from_dict(row.data)))
        elif row.kind == "piece":
            named.update(location.piece_id(sub) for sub in expand(Stored.from_dict(row.data))
                         if sub.location in names)
    own_only = location.translator.lists_only_own_pieces
    for pid, piece in sorted(listed.items()):
        if pid in named or pid.split("?")[0] in named:
            continue
        if own_only or PIECE_TOKEN.search(piece.key):
            report.unreferenced.append(piece)
    if repair:
        for piece in report.unreferenced:
            try:
                await location.delete(piece)
                report.repaired += 1
            except S3Error as err:
                report.error = f"repair failed: {err.message}"
    return report


async def fsck(metadata: MetadataStore, locations: Locations, collector: Collector,
               *, repair: bool, only: str | None = None,
               read_grace: float | None = None) -> list[LocationReport]:
    if repair:  # what the ledger already names first, so it is not reported
        # No GET of a stopped gateway (SQLite) can still be reading: no read grace then.
        await collector.run(read_grace=read_grace)
    groups: dict[str, list[Location]] = {}
    for location in locations:
        groups.setdefault(location.translator.storage_id(), []).append(location)
    reports = []
    def expand(piece: Stored) -> list[Stored]:  # a mirror's pieces are its members' too
        if piece.location not in locations:
            return []
        return locations[piece.location].member_pieces(piece)

    for group in groups.values():
        if only is None or any(member.name == only for member in group):
            reports.append(await check_location(group, metadata, repair, expand))
    return reports


async def run_fsck(repair: bool, only: str | None, as_json: bool) -> int:
    """The `python -m gateway fsck` command: exit 0 when everything is consistent."""
    import os

    from gateway.config import load_settings
    from gateway.server import Gateway

    settings = load_settings(os.environ)
    gateway = Gateway(settings)
    await gateway.metadata.open()
    await gateway.locations.open()
    try:
        started = time.monotonic()
        if repair:
            # Writes of a crashed gateway: with SQLite nobody else writes the file (the gateway
            # must be stopped to repair); with PostgreSQL only intents past the grace period.
            grace = 0.0 if settings.metadata_backend == "sqlite" else settings.storage.intent_grace
            await gateway.metadata.reclaim_intents(time.time() - grace)
        reports = await fsck(gateway.metadata, gateway.locations, gateway.engine.collector,
                             repair=repair, only=only,
                             read_grace=0.0 if settings.metadata_backend == "sqlite" else None)
        pending = await gateway.metadata.count_garbage()
        seconds = time.monotonic() - started
    finally:
        await gateway.locations.close()
        await gateway.metadata.close()
    if as_json:
        print(json.dumps({"locations": [
            {"name": r.name, "listed": r.listed, "referenced": r.referenced,
             "missing": r.missing, "sizeMismatch": r.size_mismatch,
             "unreferenced": [p.key for p in r.unreferenced], "removed": r.repaired,
             "error": r.error, "membersDiffer": r.differs, "repairsQueued": r.repairs_queued,
             "changed": r.changed}
            for r in reports], "garbagePending": pending}, indent=2))
    else:
        for report in reports:
            print(report.line())
            for line in report.missing[:20]:
                print(f"  missing: {line}")
            for line in report.size_mismatch[:20]:
                print(f"  size mismatch: {line}")
            for line in report.changed[:20]:
                print(f"  changed on the backend: {line}")
            for piece in report.unreferenced[:20]:
                print(f"  unreferenced: {piece.key}" + (" (removed)" if repair else ""))
            for line in report.differs[:20]:
                print(f"  member differs: {line}" + (" (repair queued)" if repair else ""))
        print(f"garbage waiting for the collector: {pending}; checked in {seconds:.1f}s")
    problems = [r for r in reports if r.missing or r.size_mismatch or r.error or r.changed
                or ((r.unreferenced or r.differs) and not repair)]
    return 1 if problems else 0


def main(argv: list[str]) -> int:
    repair = "--repair" in argv
    as_json = "--json" in argv
    only = None
    if "--location" in argv:
        index = argv.index("--location")
        if index + 1 >= len(argv):
            print("usage: python -m gateway fsck [--repair] [--json] [--location NAME]",
                  file=sys.stderr)
            return 2
        only = argv[index + 1]
    return asyncio.run(run_fsck(repair, only, as_json))
