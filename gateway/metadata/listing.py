"""The listing algorithms shared by every metadata store, free of I/O.

A store asks `KeyWalk.query()` for the next range to read (rows in key order, and for versions
newest first within a key), runs it its own way (SQLite in a thread, PostgreSQL with asyncpg),
and feeds the rows back with `feed()`. The walk rolls keys sharing a prefix up to the delimiter
into one common prefix, counted once, and then seeks past every key beneath it instead of
reading them, so a page costs O(page size) rows however many keys sit under each prefix.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from gateway.metadata.base import ObjectRecord, VersionListing

T = TypeVar("T")


def prefix_end(prefix: str) -> str | None:
    """The smallest string greater than every string starting with `prefix` (None: no bound)."""
    while prefix:
        last = prefix[-1]
        if ord(last) < 0x10FFFF:
            return prefix[:-1] + chr(ord(last) + 1)
        prefix = prefix[:-1]
    return None


@dataclass(frozen=True)
class Range:
    """Rows to read next, in order: key >= floor (when no cursor), or strictly after the
    cursor: key > cursor_key, or, with cursor_seq, the same key's older versions
    (seq < cursor_seq) then greater keys; key < end when end is set; at most `limit` rows."""

    floor: str
    cursor_key: str | None
    cursor_seq: int | None
    end: str | None
    limit: int


class _Walk(Generic[T]):
    """What every listing page shares: entries in order, keys sharing a prefix up to the
    delimiter rolled into one common prefix (counted once) and then sought past, and a cursor
    (the last entry's position, whatever its shape) to read on from."""

    def __init__(self, prefix: str, delimiter: str | None, limit: int) -> None:
        self.prefix = prefix
        self.delimiter = delimiter
        self.limit = limit
        self.items: list[T] = []
        self.prefixes: list[str] = []
        self.truncated = False
        # The last entry returned: (key, cursor, item) or (common prefix, None, None).
        self.last: tuple[str, Any, T | None] | None = None
        self._end = prefix_end(prefix)
        self._floor = prefix
        self._cursor: tuple[Any, ...] | None = None
        self._done = False
        self._batch = 0

    def _skip_past(self, common: str) -> None:
        skip_to = prefix_end(common)
        if skip_to is None:
            self._done = True
        else:  # every key beneath `common` sorts before skip_to
            self._floor, self._cursor = max(self._floor, skip_to), None

    def _next_batch(self) -> bool:
        """Size the next read (one row more than the page still holds); False when done."""
        if self._done:
            return False
        self._batch = self.limit - len(self.items) - len(self.prefixes) + 1
        return True

    def _take(self, rows: Sequence[tuple[str, tuple[Any, ...], T]]) -> None:
        """Rows (key, cursor, item) of the last read, in order."""
        if not rows:
            self._done = True
            return
        for key, cursor, item in rows:
            if len(self.items) + len(self.prefixes) == self.limit:
                self.truncated = self._done = True  # one more row exists: the page is full
                return
            if self.delimiter:
                cut = key.find(self.delimiter, len(self.prefix))
                if cut >= 0:
                    common = key[: cut + len(self.delimiter)]
                    self.prefixes.append(common)
                    self.last = (common, None, None)
                    self._skip_past(common)
                    return  # read on from past the prefix
            self.items.append(item)
            self.last = (key, cursor, item)
            self._cursor = cursor
        if len(rows) < self._batch:
            self._done = True


class KeyWalk(_Walk[T]):
    """One listing page. Rows are (key, seq, item); seq may be None for plain listings."""

    def __init__(self, prefix: str, delimiter: str | None, limit: int,
                 after_key: str | None = None, after_seq: int | None = None) -> None:
        super().__init__(prefix, delimiter, limit)
        self._done = limit <= 0
        if after_key is not None and after_key >= prefix:
            self._cursor = (after_key, after_seq)
            if delimiter:
                cut = after_key.find(delimiter, len(prefix))
                if cut >= 0:  # the marker sits under a common prefix already returned
                    self._skip_past(after_key[: cut + len(delimiter)])

    def query(self) -> Range | None:
        """The next range to read, or None when the page is complete."""
        if not self._next_batch():
            return None
        cursor_key, cursor_seq = self._cursor if self._cursor else (None, None)
        return Range(self._floor, cursor_key, cursor_seq, self._end, self._batch)

    def feed(self, rows: Sequence[tuple[str, int | None, T]]) -> None:
        self._take([(key, (key, seq), item) for key, seq, item in rows])


def version_listing(walk: KeyWalk[Any], to_record: Callable[[Any], ObjectRecord]
                    ) -> VersionListing:
    """A finished walk over a store's version rows as a VersionListing."""
    next_key = next_version = None
    if walk.truncated and walk.last is not None:
        key, _, row = walk.last
        next_key = key
        if row is not None:
            next_version = to_record(row).version_id or "null"
    return VersionListing([to_record(row) for row in walk.items], walk.prefixes,
                          walk.truncated, next_key, next_version)


@dataclass(frozen=True)
class UploadRange:
    """Upload rows to read next, in (key, initiated, upload_id) order: key >= floor when there
    is no cursor, else strictly after the cursor row; key < end when set; at most `limit`."""

    floor: str
    cursor: tuple[str, float, str] | None
    end: str | None
    limit: int


class UploadWalk(_Walk[T]):
    """One page of ListMultipartUploads, rolled up and sought past as KeyWalk does. The store
    filters every range by the key/upload-id markers itself (they are not positions in this
    order); `start` (the key marker) only raises the first floor so the first read seeks
    there."""

    def __init__(self, prefix: str, delimiter: str | None, limit: int,
                 start: str | None = None) -> None:
        # limit 0 still reads one row: the page is then truncated when any upload exists.
        super().__init__(prefix, delimiter, max(limit, 0))
        if start is not None:
            self._floor = max(prefix, start)

    def query(self) -> UploadRange | None:
        if not self._next_batch():
            return None
        return UploadRange(self._floor, self._cursor, self._end, self._batch)  # type: ignore[arg-type]

    def feed(self, rows: Sequence[tuple[str, float, str, T]]) -> None:
        """Rows (key, initiated, upload_id, item) of the last query, in order."""
        self._take([(key, (key, initiated, upload_id), item)
                    for key, initiated, upload_id, item in rows])
