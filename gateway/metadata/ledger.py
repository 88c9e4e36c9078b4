"""Pure helpers both metadata stores share for the garbage ledger and bucket attributes:
which pieces a change stops referencing, and what each kind of garbage row carries (see
GarbageRecord in base.py). No I/O here: the stores call these inside their transactions."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from gateway.metadata.base import PartRecord
from gateway.translators.base import Stored


def same_bytes(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether two pieces (Stored.to_dict()) may name the same bytes: same location and key,
    and the same version or either without one (a piece without a version stands for every
    version at its key, and the collector deletes it so). Looser than equality on purpose: a
    piece that may still be referenced never becomes garbage."""
    if a["location"] != b["location"] or a["key"] != b["key"]:
        return False
    va, vb = a.get("version_id"), b.get("version_id")
    return va is None or vb is None or va == vb


def dropped_pieces(old: Iterable[dict[str, Any]], kept: list[dict[str, Any]]
                   ) -> list[dict[str, Any]]:
    """The pieces of `old` (to_dict() form) that no piece of `kept` may still name."""
    return [p for p in old if not any(same_bytes(p, k) for k in kept)]


def part_garbage(backend_key: str, backend_upload_id: str, part: PartRecord) -> dict[str, Any]:
    """A "part" row's data: a part replaced by a newer one of its number or left out at
    completion."""
    return {"backend_key": backend_key, "backend_upload_id": backend_upload_id,
            "number": part.number, "stored": part.stored.to_dict()}


def upload_garbage(backend_key: str, backend_upload_id: str,
                   parts: list[PartRecord]) -> dict[str, Any]:
    """An "upload" row's data: an aborted upload and every part recorded for it."""
    return {"backend_key": backend_key, "backend_upload_id": backend_upload_id,
            "parts": [{"number": p.number, "stored": p.stored.to_dict()} for p in parts]}


def intent_garbage(location: str, key: str) -> dict[str, Any]:
    """A "piece" row for an abandoned intent: no version, so every version at its key goes
    (the key was that write's alone)."""
    return Stored(location, key, size=0).to_dict()


def merge_attrs(attrs: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """`attrs` with `changes` applied: a key set to None is removed, others are set."""
    merged = dict(attrs)
    for name, value in changes.items():
        if value is None:
            merged.pop(name, None)
        else:
            merged[name] = value
    return merged
