"""Stored.to_dict is written out by hand for speed (every metadata write and delete calls it):
it must stay exactly the dataclasses.asdict() form without the unset fields, the form stored
in the metadata and the garbage ledger."""

from __future__ import annotations

from dataclasses import asdict, fields
from typing import Any

import pytest

from gateway.translators.base import Stored


def asdict_form(piece: Stored) -> dict[str, Any]:
    return {k: v for k, v in asdict(piece).items() if v is not None}


def every_field_set() -> Stored:
    # Built from the dataclass's fields, so a field added later without to_dict knowing it
    # fails here.
    values: dict[str, Any] = {f.name: (7 if f.name == "size" else f"{f.name}-value")
                              for f in fields(Stored)}
    return Stored(**values)


@pytest.mark.parametrize("piece", [
    every_field_set(),
    Stored("us-east-1", "bucket/key~0123", 0),
    Stored("azure", "k", 5, etag="0x8D"),
    Stored("gcp", "k", 5, version_id="1700000000", encryption="AES256"),
], ids=["every-field", "minimal", "etag-only", "version-and-encryption"])
def test_to_dict_is_the_asdict_form(piece: Stored) -> None:
    data = piece.to_dict()
    assert data == asdict_form(piece)
    assert list(data) == list(asdict_form(piece))  # same order: the same JSON text is stored
    assert Stored.from_dict(data) == piece


def test_every_field_set_shows_every_field() -> None:
    assert set(every_field_set().to_dict()) == {f.name for f in fields(Stored)}
