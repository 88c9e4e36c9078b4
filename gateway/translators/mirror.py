"""A location of type `mirror`: every piece kept on two or more other locations (its members).

    "replicated": {"type": "mirror", "details": {"members": ["azure-a", "gcp-b"],
                   "read": "primary-fallback", "write": "quorum"}}

Modes (README, "Moving data"):
- read  `primary`: only the first member. `primary-fallback` (default): the first member that
  is not down; the next one when it fails, also in the middle of a GET (resumed at the byte
  where the failed one stopped), so a client sees no error while one member still has the
  piece. `fastest`: every member at once, the first to send a byte wins, the others are
  cancelled.
- write `all` (default): acknowledged once every member has the bytes; refused (503) while a
  member is down. `quorum`: acknowledged once a majority has them; the others get a repair
  job. `primary+async`: acknowledged once the first member has them; a repair job copies them
  to the others (gateway/moving/mirror_repair.py).

The mirror implements the whole Translator interface over its members' Locations (their
wrapped stores: their breakers fail fast while a member is down), so nothing above the
translators knows a mirror from any other location. A mirror piece is one `Stored` whose key
is the same on every member (the key the placement layer gave); `version_id` records what each
member stored, as `mirror1:` + compact JSON {member: entry}, entry `{"v": version, "e": etag}`
(the member's pin; empty when it has none), `{"k": key, ...}` when the member's key differs (a
multipart part) or `{"p": [[key, size, version, etag], ...]}` when the member keeps the piece
as several (file/mem multipart objects are their parts). A member absent from the map did not
acknowledge the write: it holds the piece (if a repair copied it) at the mirror key, unpinned.
Metadata keeps `Stored` as it is (a string column), so nothing else changes.

Deleting a mirror piece deletes, on every member, every version at the mirror key and at each
key its entry names: idempotent, and a down member makes it fail (Unavailable) so the
collector retries it later. A write refused in mode `all` deletes what the other members took;
the engine's intent on the mirror key covers every member's bytes anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from gateway.translators.base import (
    ByteStream,
    ConfigError,
    ForeignObject,
    Health,
    NotFound,
    ObjectMeta,
    Part,
    Stored,
    Translator,
    TranslatorError,
    Unavailable,
    refuse_unknown,
)

if TYPE_CHECKING:
    from gateway.locations import Location

log = logging.getLogger("gateway.locations")
T = TypeVar("T")

READ_MODES = ("primary", "primary-fallback", "fastest")
WRITE_MODES = ("all", "quorum", "primary+async")
PIN_PREFIX = "mirror1:"
_END = object()

# Called with (mirror name, piece, members that lack it) when a write left members behind.
RepairQueue = Callable[[str, Stored, list[str]], Awaitable[None]]


class _BodyFailed:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


def encode_pins(entries: Mapping[str, Mapping[str, Any]]) -> str:
    return PIN_PREFIX + json.dumps(entries, separators=(",", ":"), sort_keys=True)


def decode_pins(version_id: str | None) -> dict[str, dict[str, Any]]:
    if not version_id or not version_id.startswith(PIN_PREFIX):
        return {}
    return json.loads(version_id[len(PIN_PREFIX):])


def _entry(key: str, pieces: list[Stored]) -> dict[str, Any]:
    if len(pieces) == 1:
        piece = pieces[0]
        entry: dict[str, Any] = {}
        if piece.key != key:
            entry["k"] = piece.key
        if piece.version_id:
            entry["v"] = piece.version_id
        if piece.etag:
            entry["e"] = piece.etag
        return entry
    return {"p": [[p.key, p.size, p.version_id, p.etag] for p in pieces]}


def _named(member: str, exc: BaseException) -> BaseException:
    """`exc` naming the member it came from (the client's 503 then says which one)."""
    if isinstance(exc, Unavailable) and not str(exc).startswith("member "):
        return Unavailable(f"member {member}: {exc}", kind=exc.kind)
    return exc


def _first_error(errors: list[BaseException]) -> BaseException:
    """What a failed mirror call raises: NotFound only when every member said so."""
    if errors and all(isinstance(e, NotFound) for e in errors):
        return errors[0]
    for error in errors:
        if not isinstance(error, NotFound):
            return error
    return Unavailable("no mirror member answered")


class MirrorTranslator(Translator):
    type_name = "mirror"
    composite = True

    def __init__(self, name: str, details: Mapping[str, Any], env: Mapping[str, str]) -> None:
        super().__init__(name, details, env)
        refuse_unknown(self.type_name, details, ("members", "read", "write"))
        names = details.get("members")
        if (not isinstance(names, list) or len(names) < 2
                or not all(isinstance(n, str) and n for n in names)):
            raise ConfigError("members", "must be a list of two or more location names")
        if len(set(names)) != len(names):
            raise ConfigError("members", "names a location twice")
        self.member_names: list[str] = list(names)
        self.read_mode = self._mode(details, "read", READ_MODES, "primary-fallback")
        self.write_mode = self._mode(details, "write", WRITE_MODES, "all")
        self.members: list[Location] = []
        self.by_member: dict[str, Location] = {}
        self.repairs: RepairQueue | None = None  # set by gateway/moving/mirror_repair.py

    @staticmethod
    def _mode(details: Mapping[str, Any], key: str, modes: tuple[str, ...], default: str) -> str:
        value = details.get(key, default)
        if value not in modes:
            raise ConfigError(key, f"must be one of {', '.join(modes)}, got {value!r}")
        return value

    def bind(self, locations: Mapping[str, Any]) -> None:
        for name in self.member_names:
            if name == self.name:
                raise ConfigError("members", "cannot name the mirror itself")
            if name not in locations:
                raise ConfigError("members", f'names no configured location "{name}"')
            if locations[name].translator.composite:
                raise ConfigError("members", f'"{name}" is a mirror itself: mirrors do not nest')
        self.members = [locations[name] for name in self.member_names]
        self.by_member = {member.name: member for member in self.members}

    @property
    def quorum(self) -> int:
        return len(self.members) // 2 + 1

    # --- pieces on members --------------------------------------------------------------------
    def pieces_on(self, member: str, stored: Stored) -> list[Stored]:
        """Where `member` keeps the mirror piece `stored` (see the module doc)."""
        entry = decode_pins(stored.version_id).get(member)
        if entry is None:
            return [Stored(member, stored.key, stored.size)]
        if "p" in entry:
            return [Stored(member, k, size, v, e) for k, size, v, e in entry["p"]]
        return [Stored(member, entry.get("k", stored.key), stored.size, entry.get("v"),
                       entry.get("e"))]

    def holders(self, stored: Stored) -> list[str]:
        """Members that acknowledged the write of `stored`."""
        pins = decode_pins(stored.version_id)
        return [name for name in self.member_names if name in pins]

    def member_pieces(self, stored: Stored) -> list[Stored]:
        found = []
        for member in self.member_names:
            keys = {piece.key for piece in self.pieces_on(member, stored)} | {stored.key}
            found.extend(Stored(member, key, 0) for key in sorted(keys))
        return found

    def _combine(self, key: str, size: int, results: Mapping[str, list[Stored]]) -> Stored:
        entries = {name: _entry(key, pieces) for name, pieces in results.items()}
        return Stored(self.name, key, size, encode_pins(entries))

    # --- reads --------------------------------------------------------------------------------
    def read_order(self) -> list[Location]:
        """Members to read from, in order: down ones last (their breakers fail fast)."""
        if self.read_mode == "primary":
            return self.members[:1]
        up = [m for m in self.members if m.health.state != "down"]
        return up + [m for m in self.members if m.health.state == "down"]

    async def _member_stream(self, member: Location, stored: Stored, offset: int,
                             length: int | None) -> ByteStream:
        """Open `stored` on one member, as one stream, from `offset`."""
        pieces = self.pieces_on(member.name, stored)
        if len(pieces) == 1:
            piece = pieces[0]
            try:
                return await member.store.get(piece, offset, length)
            except NotFound:
                if piece.version_id is None and piece.etag is None:
                    raise
                # A repair replaced the member's copy: same key, another version.
                return await member.store.get(Stored(member.name, piece.key, piece.size),
                                              offset, length)
        return self._spans(member, pieces, offset, length)

    async def _spans(self, member: Location, pieces: list[Stored], offset: int,
                     length: int | None) -> ByteStream:
        end = None if length is None else offset + length
        start = 0
        for piece in pieces:
            first, last = max(offset, start), start + piece.size
            if end is not None:
                last = min(last, end)
            if last > first or (piece.size == 0 and first == start and end is None):
                stream = await member.store.get(piece, first - start, last - first)
                try:
                    async for chunk in stream:
                        yield chunk
                finally:
                    await _close(stream)
            start += piece.size

    async def _open(self, member: Location, stored: Stored, offset: int,
                    length: int | None) -> tuple[bytes, ByteStream]:
        """Open on `member` and wait for its first chunk: a member that fails before sending
        anything (missing piece, down) is skipped without the client noticing."""
        stream = await self._member_stream(member, stored, offset, length)
        try:
            first = await anext(aiter(stream), b"")
        except BaseException:
            await _close(stream)
            raise
        return first, stream

    async def get(self, stored: Stored, offset: int = 0, length: int | None = None) -> ByteStream:
        order = self.read_order()
        errors: list[BaseException] = []
        if self.read_mode == "fastest" and len(order) > 1:
            winner = await self._fastest(order, stored, offset, length, errors)
        else:
            winner = None
            while order and winner is None:
                member = order.pop(0)
                try:
                    winner = (member, *await self._open(member, stored, offset, length))
                except TranslatorError as exc:
                    errors.append(_named(member.name, exc))
        if winner is None:
            raise _first_error(errors)
        member, first, stream = winner
        return self._resuming(stored, offset, length, member, first, stream, order)

    async def _fastest(self, order: list[Location], stored: Stored, offset: int,
                       length: int | None, errors: list[BaseException]
                       ) -> tuple[Location, bytes, ByteStream] | None:
        tasks = {asyncio.ensure_future(self._open(m, stored, offset, length)): m for m in order}
        order.clear()
        winner = None
        try:
            pending = set(tasks)
            while pending and winner is None:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    exc = task.exception()
                    if exc is not None:
                        errors.append(_named(tasks[task].name, exc))
                    elif winner is None:
                        winner = (tasks[task], *task.result())
                    else:  # two answered at once: close the slower
                        await _close(task.result()[1])
        finally:
            for task in tasks:
                if not task.done():
                    task.cancel()
            for task in tasks:
                if winner is not None and task.done() and not task.cancelled() \
                        and task.exception() is None and task.result()[1] is not winner[2]:
                    await _close(task.result()[1])
                elif not task.done() or task.cancelled():
                    with contextlib.suppress(BaseException):
                        await task
        if winner is not None:  # the others, in the usual order, if the winner fails midway
            order.extend(m for m in self.read_order() if m is not winner[0])
        return winner

    async def _resuming(self, stored: Stored, offset: int, length: int | None,
                        member: Location, first: bytes, stream: ByteStream,
                        others: list[Location]) -> ByteStream:
        """Yield from `stream`; when its member fails midway, go on from the next member at
        the byte where it stopped (primary mode: no other member)."""
        sent = 0
        try:
            if first:
                sent += len(first)
                yield first
            while True:
                try:
                    async for chunk in stream:
                        sent += len(chunk)
                        yield chunk
                    return
                except TranslatorError as exc:
                    await _close(stream)
                    if self.read_mode == "primary":
                        raise
                    log.warning("mirror %s: member %s failed mid-read (%s), going on from "
                                "another member", self.name, member.name, exc)
                    rest = None if length is None else length - sent
                    stream = None  # type: ignore[assignment]
                    while others and stream is None:
                        member = others.pop(0)
                        try:
                            stream = await self._member_stream(member, stored, offset + sent,
                                                               rest)
                        except TranslatorError:
                            continue
                    if stream is None:
                        raise
        finally:
            if stream is not None:
                await _close(stream)

    async def head(self, stored: Stored) -> Stored:
        errors: list[BaseException] = []
        for member in self.read_order():
            try:
                size = await self.member_size(member, stored)
            except TranslatorError as exc:
                errors.append(exc)
                continue
            return Stored(self.name, stored.key, size, stored.version_id, stored.etag,
                          stored.encryption)
        raise _first_error(errors)

    async def member_size(self, member: Location, stored: Stored) -> int:
        """The size of `stored` on `member` (NotFound when it lacks it)."""
        pieces = self.pieces_on(member.name, stored)
        if len(pieces) == 1:
            try:
                return (await member.store.head(pieces[0])).size
            except NotFound:
                if pieces[0].version_id is None and pieces[0].etag is None:
                    raise
                return (await member.store.head(Stored(member.name, pieces[0].key, 0))).size
        return sum([(await member.store.head(piece)).size for piece in pieces])

    # --- writes -------------------------------------------------------------------------------
    def write_targets(self, candidates: list[Location] | None = None) -> list[Location]:
        """Members a write goes to now; Unavailable when the mode cannot be met."""
        if self.write_mode == "primary+async":
            members = self.members[:1]
        else:
            members = candidates if candidates is not None else self.members
        down = [m.name for m in members if m.health.state == "down"]
        if self.write_mode == "quorum":
            up = [m for m in members if m.health.state != "down"]
            if len(up) < self.quorum:
                raise Unavailable(f"mirror {self.name}: members {', '.join(down)} are down, "
                                  f"fewer than a quorum of {self.quorum} can write", kind="down")
            return up
        if down:
            raise Unavailable(f"mirror {self.name}: member {', '.join(down)} is down; write mode "
                              f"{self.write_mode} refuses writes until it is back", kind="down")
        return members

    def _needed(self, targets: int) -> int:
        return {"all": targets, "quorum": self.quorum}.get(self.write_mode, 1)

    async def _fan_out(self, targets: list[Location], body: ByteStream,
                       call: Callable[[Location, ByteStream], Awaitable[T]]
                       ) -> tuple[dict[str, T], list[BaseException]]:
        """Send one body to every target at once (bounded: two chunks queued per target, the
        slowest sets the pace); each target's result or error."""
        queues: list[asyncio.Queue[Any]] = [asyncio.Queue(maxsize=2) for _ in targets]
        finished = [False] * len(targets)
        body_error: list[BaseException] = []

        async def pump() -> None:
            item: Any = _END
            try:
                async for chunk in body:
                    for i, queue in enumerate(queues):
                        if not finished[i]:
                            await queue.put(chunk)
            except Exception as exc:  # the client's body failed: every target fails with it
                body_error.append(exc)
                item = _BodyFailed(exc)
            for i, queue in enumerate(queues):
                if not finished[i]:
                    await queue.put(item)

        async def feed(i: int) -> ByteStream:
            while True:
                item = await queues[i].get()
                if item is _END:
                    return
                if isinstance(item, _BodyFailed):
                    raise item.exc
                yield item

        async def run(i: int) -> T:
            try:
                return await call(targets[i], feed(i))
            finally:
                finished[i] = True
                while not queues[i].empty():  # unblock the pump
                    queues[i].get_nowait()

        if len(targets) == 1:
            pumping = None
            outcomes: list[Any] = await asyncio.gather(call(targets[0], body),
                                                       return_exceptions=True)
        else:
            pumping = asyncio.ensure_future(pump())
            try:
                outcomes = await asyncio.gather(*(run(i) for i in range(len(targets))),
                                                return_exceptions=True)
            finally:
                if not pumping.done():
                    pumping.cancel()
                with contextlib.suppress(BaseException):
                    await pumping
        results: dict[str, T] = {}
        errors: list[BaseException] = []
        for target, outcome in zip(targets, outcomes, strict=True):
            if isinstance(outcome, asyncio.CancelledError):
                raise outcome
            if isinstance(outcome, BaseException):
                if not isinstance(outcome, TranslatorError):
                    body_error.append(outcome)  # not a backend's answer: the client's body
                else:
                    log.warning("mirror %s: member %s failed a write: %s", self.name,
                                target.name, outcome)
                errors.append(_named(target.name, outcome))
            else:
                results[target.name] = outcome
        if body_error:
            errors.insert(0, body_error[0])
        return results, errors

    async def _undo(self, pieces: list[Stored]) -> None:
        """Best effort (the engine's intent covers them anyway): drop what a refused write
        left on the members that took it."""
        for piece in pieces:
            member = self.by_member[piece.location]
            try:
                await member.store.delete(Stored(member.name, piece.key, 0))
            except TranslatorError as exc:
                log.warning("mirror %s: dropping %s on %s failed: %s (the collector retries)",
                            self.name, piece.key, member.name, exc)

    async def _repair_later(self, stored: Stored, missing: list[str]) -> None:
        if not missing:
            return
        if self.repairs is None:
            log.warning("mirror %s: %s lacks %s and no repair queue runs here (fsck --repair "
                        "finds it)", self.name, ", ".join(missing), stored.key)
            return
        try:
            await self.repairs(self.name, stored, missing)
        except Exception as exc:  # the metadata store is down: fsck finds it later
            log.warning("mirror %s: queueing the repair of %s failed: %s", self.name,
                        stored.key, exc)

    async def put(self, key: str, body: ByteStream, size: int, meta: ObjectMeta) -> Stored:
        targets = self.write_targets()
        results, errors = await self._fan_out(
            targets, body, lambda member, feed: member.store.put(key, feed, size, meta))
        if errors and not isinstance(errors[0], TranslatorError):
            await self._undo(list(results.values()))
            raise errors[0]
        if len(results) < self._needed(len(targets)):
            await self._undo(list(results.values()))
            raise _first_error(errors)
        stored = self._combine(key, size, {name: [piece] for name, piece in results.items()})
        await self._repair_later(stored, [n for n in self.member_names if n not in results])
        return stored

    async def delete(self, stored: Stored) -> None:
        """Every version at every key the piece has on every member: idempotent."""
        targets = self.member_pieces(stored)
        outcomes = await asyncio.gather(*(self.by_member[p.location].store.delete(p)
                                          for p in targets), return_exceptions=True)
        errors = [_named(p.location, e) for p, e in zip(targets, outcomes, strict=True)
                  if isinstance(e, BaseException)]
        if errors:
            raise _first_error(errors)

    # copy/copy_part: None (the caller streams through put/upload_part, which mirror).

    async def update_meta(self, stored: Stored, meta: ObjectMeta) -> Stored:
        """Best effort on each member that acknowledged the piece (the gateway's metadata is
        the truth; a member that cannot keeps its old native metadata)."""
        for member in self.members:
            pieces = self.pieces_on(member.name, stored)
            if member.name in self.holders(stored) and len(pieces) == 1:
                try:
                    await member.store.update_meta(pieces[0], meta)
                except NotFound:
                    raise
                except TranslatorError as exc:
                    log.warning("mirror %s: metadata of %s on %s not updated: %s", self.name,
                                stored.key, member.name, exc)
        return stored

    # --- multipart ----------------------------------------------------------------------------
    # The mirror's upload id maps each member taking part to its own upload id; a mirror part
    # is a Stored like any mirror piece. primary+async: only the primary takes part, and the
    # completed object is repaired to the others.
    async def create_upload(self, key: str, meta: ObjectMeta) -> str:
        targets = self.write_targets()
        outcomes = await asyncio.gather(*(m.store.create_upload(key, meta) for m in targets),
                                        return_exceptions=True)
        ids = {m.name: o for m, o in zip(targets, outcomes, strict=True) if isinstance(o, str)}
        errors = [o for o in outcomes if isinstance(o, BaseException)]
        if len(ids) < self._needed(len(targets)):
            for name, upload_id in ids.items():
                with contextlib.suppress(TranslatorError):
                    await self.by_member[name].store.abort_upload(key, upload_id, [])
            raise _first_error(errors)
        return encode_pins(ids)

    def _uploads(self, upload_id: str) -> dict[str, str]:
        uploads = decode_pins(upload_id)
        if not uploads:
            raise NotFound(f"not a mirror upload id: {upload_id[:60]}")
        return {name: uploads[name] for name in self.member_names if name in uploads}

    def _member_part(self, member: str, part: Part) -> Part | None:
        if member not in decode_pins(part.stored.version_id):
            return None
        return Part(part.number, self.pieces_on(member, part.stored)[0])

    async def upload_part(self, key: str, upload_id: str, number: int, body: ByteStream,
                          size: int) -> Stored:
        uploads = self._uploads(upload_id)
        targets = self.write_targets([self.by_member[name] for name in uploads])
        results, errors = await self._fan_out(
            targets, body, lambda member, feed: member.store.upload_part(
                key, uploads[member.name], number, feed, size))
        if errors and not isinstance(errors[0], TranslatorError):
            raise errors[0]  # the parts staged are the upload's: abort removes them
        if len(results) < self._needed(len(targets)):
            raise _first_error(errors)
        first = next(name for name in self.member_names if name in results)
        return self._combine(results[first].key, size,
                             {name: [piece] for name, piece in results.items()})

    async def discard_part(self, key: str, upload_id: str, part: Part) -> None:
        uploads = self._uploads(upload_id)
        calls = []
        for name, member_upload in uploads.items():
            member_part = self._member_part(name, part)
            if member_part is not None:
                calls.append(self.by_member[name].store.discard_part(key, member_upload,
                                                                     member_part))
        errors = [e for e in await asyncio.gather(*calls, return_exceptions=True)
                  if isinstance(e, BaseException)]
        if errors:
            raise _first_error(errors)

    async def complete_upload(self, key: str, upload_id: str, parts: list[Part],
                              meta: ObjectMeta) -> list[Stored]:
        uploads = self._uploads(upload_id)
        able: dict[str, list[Part]] = {}
        for name in uploads:
            member_parts = [self._member_part(name, part) for part in parts]
            if all(p is not None for p in member_parts):
                able[name] = [p for p in member_parts if p is not None]
        names = list(able)
        outcomes = await asyncio.gather(
            *(self.by_member[n].store.complete_upload(key, uploads[n], able[n], meta)
              for n in names), return_exceptions=True)
        results = {n: o for n, o in zip(names, outcomes, strict=True) if isinstance(o, list)}
        errors = [o for o in outcomes if isinstance(o, BaseException)]
        if len(results) < self._needed(len(uploads)):
            raise _first_error(errors or [Unavailable("too few members have every part")])
        for name in uploads:  # members that missed a part: their staged parts go now
            if name not in results:
                with contextlib.suppress(TranslatorError):
                    await self.by_member[name].store.abort_upload(
                        key, uploads[name], [p for p in (self._member_part(name, part)
                                                         for part in parts) if p is not None])
        stored = self._combine(key, sum(part.stored.size for part in parts), results)
        await self._repair_later(stored, [n for n in self.member_names if n not in results])
        return [stored]

    async def abort_upload(self, key: str, upload_id: str, parts: list[Part]) -> None:
        uploads = self._uploads(upload_id)
        calls = [self.by_member[name].store.abort_upload(
            key, member_upload, [p for p in (self._member_part(name, part) for part in parts)
                                 if p is not None])
            for name, member_upload in uploads.items()]
        errors = [e for e in await asyncio.gather(*calls, return_exceptions=True)
                  if isinstance(e, BaseException)]
        if errors:
            raise _first_error(errors)

    # --- listing, identity, health ------------------------------------------------------------
    async def list_pieces(self, prefix: str = "") -> AsyncIterator[Stored]:
        """The primary's pieces, as mirror pieces (fsck checks each member on its own)."""
        primary = self.members[0]
        async for piece in primary.store.list_pieces(prefix):
            yield Stored(self.name, piece.key, piece.size)

    def piece_id(self, stored: Stored) -> str:
        return stored.key

    def storage_id(self) -> str:
        return f"mirror:{self.name}"

    def _foreign(self, member: Location, found: ForeignObject) -> ForeignObject:
        stored = self._combine(found.key, found.size, {member.name: [found.stored]})
        return ForeignObject(found.key, found.size, stored, found.s3_etag, found.meta,
                             found.last_modified, found.detailed)

    async def list_objects(self, prefix: str = "", start_after: str = "",
                           details: bool = True) -> AsyncIterator[ForeignObject]:
        """The read member's objects (import, read-through), pinned to that member."""
        member = self.read_order()[0]
        async for found in member.store.list_objects(prefix, start_after, details):
            yield self._foreign(member, found)

    async def describe(self, key: str) -> ForeignObject | None:
        member = self.read_order()[0]
        found = await member.store.describe(key)
        return None if found is None else self._foreign(member, found)

    async def check(self) -> Health:
        """Up while a member can serve reads (members are probed on their own; their states
        are read here, no I/O)."""
        states = {m.name: m.health.state for m in self.members}
        down = [name for name, state in states.items() if state == "down"]
        readable = [m for m in self.read_order() if m.health.state != "down"]
        if not readable:
            return Health(ok=False, message=f"no member can serve reads ({', '.join(down)} down)")
        if down:
            return Health(ok=True, message=f"degraded: {', '.join(down)} down")
        return Health(ok=True, message="OK")


async def _close(stream: Any) -> None:
    aclose = getattr(stream, "aclose", None)
    if aclose is not None:
        with contextlib.suppress(Exception):
            await aclose()
