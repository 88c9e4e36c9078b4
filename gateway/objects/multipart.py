"""Multipart rules the engine applies: which checksum each part keeps, which parts a completion
assembles (AWS's InvalidPart / EntityTooSmall / checksum rules), the object checksum made from
them, and the part boundaries kept with the object (GET ?partNumber, GetObjectAttributes)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gateway import checksums
from gateway.errors import S3Error
from gateway.metadata.base import ObjectRecord, PartRecord, UploadRecord
from gateway.objects.options import MIN_PART_SIZE, ListedPart


def upload_mode(upload: UploadRecord) -> dict[str, str] | None:
    """The upload's {"algorithm", "type"} (CreateMultipartUpload), or None."""
    return upload.attrs.get("checksum")


def part_algorithms(upload: UploadRecord, stated: str | None) -> tuple[str, ...]:
    """The checksum(s) kept with a part (besides the one it states, always verified): the
    upload's algorithm, which a COMPOSITE upload's parts must state, and no other; for an
    upload without one, AWS's default (CRC64NVME), which its full-object checksum combines."""
    mode = upload_mode(upload)
    if mode is None:
        return (checksums.DEFAULT_ALGORITHM,)
    algorithm = mode["algorithm"]
    if (stated is None and mode["type"] == checksums.COMPOSITE) or (
            stated is not None and stated != algorithm):
        actual = stated.lower() if stated else "null"
        raise S3Error("InvalidRequest", "Checksum Type mismatch occurred, expected checksum "
                      f"Type: {algorithm.lower()}, actual checksum Type: {actual}")
    return (algorithm,)


def choose_parts(upload: UploadRecord, listed: list[ListedPart],
                 stored: list[PartRecord]) -> list[PartRecord]:
    """The uploaded parts a completion lists, checked as AWS does (InvalidPart, EntityTooSmall),
    with the checksums it lists for them (InvalidPart unless each is the one the part kept; a
    COMPOSITE upload's completion must list its algorithm's for every part)."""
    by_number = {p.number: p for p in stored}
    chosen: list[PartRecord] = []
    mode = upload_mode(upload)
    for index, entry in enumerate(listed):
        part = by_number.get(entry.number)
        if part is None or part.etag != entry.etag or any(
                part.checksums.get(algorithm) != value
                for algorithm, value in entry.checksums.items()):
            raise S3Error("InvalidPart", UploadId=upload.upload_id, PartNumber=str(entry.number),
                          ETag=entry.etag)
        if mode and mode["type"] == checksums.COMPOSITE and mode["algorithm"] not in entry.checksums:
            raise S3Error("InvalidRequest", f"The upload was created using a "
                          f"{mode['algorithm'].lower()} checksum. The complete request must "
                          "include the checksum for each part. It was missing for part "
                          f"{entry.number} in the request.")
        if index < len(listed) - 1 and part.size < MIN_PART_SIZE:
            raise S3Error("EntityTooSmall", ProposedSize=str(part.size),
                          MinSizeAllowed=str(MIN_PART_SIZE), PartNumber=str(entry.number),
                          ETag=part.etag)
        chosen.append(part)
    return chosen


def completed_checksum(mode: dict[str, str] | None,
                       chosen: list[PartRecord]) -> dict[str, str] | None:
    """The object checksum of a completion, from its parts' checksums alone: the upload's
    algorithm and type; without one, AWS's default FULL_OBJECT CRC64NVME (when every part
    has it: a part copied server-side may not)."""
    algorithm = mode["algorithm"] if mode else checksums.DEFAULT_ALGORITHM
    kind = mode["type"] if mode else checksums.FULL_OBJECT
    if any(algorithm not in p.checksums for p in chosen):
        return None
    value = checksums.object_checksum(algorithm, kind,
                                      [(p.checksums[algorithm], p.size) for p in chosen])
    return {"algorithm": algorithm, "value": value, "type": kind}


# --- part boundaries -----------------------------------------------------------------------------
# ObjectRecord.attrs of a completed upload:
#   "parts_count": N
#   "parts": [[size, run], ...]  part sizes, run-length encoded (all but the last part usually
#            share one size, so 10,000 parts cost a few bytes)
#   "part_checksums": [base64, ...]  each part's checksum of the object's algorithm, when
#            every part has it


def part_layout(chosen: list[PartRecord]) -> list[list[int]]:
    runs: list[list[int]] = []
    for part in chosen:
        if runs and runs[-1][0] == part.size:
            runs[-1][1] += 1
        else:
            runs.append([part.size, 1])
    return runs


def part_attrs(chosen: list[PartRecord], checksum: dict[str, str] | None) -> dict[str, Any]:
    attrs: dict[str, Any] = {"parts_count": len(chosen), "parts": part_layout(chosen)}
    if checksum is not None and all(checksum["algorithm"] in p.checksums for p in chosen):
        attrs["part_checksums"] = [p.checksums[checksum["algorithm"]] for p in chosen]
    return attrs


def part_sizes(obj: ObjectRecord) -> list[int] | None:
    """Each part's size, in order; None when the object was not assembled from parts (or
    completed before boundaries were kept, and its pieces are not its parts)."""
    runs = obj.attrs.get("parts")
    if runs:
        return [size for size, run in runs for _ in range(run)]
    count = obj.attrs.get("parts_count")
    if count and len(obj.pieces) == count:  # file/mem: one piece per part
        return [p.size for p in obj.pieces]
    return None


def parts_count(obj: ObjectRecord) -> int | None:
    return obj.attrs.get("parts_count") or None


def part_range(obj: ObjectRecord, number: int) -> tuple[int, int]:
    """(first, last) inclusive bytes of part `number` (1-based). A single-part object has
    one part, itself. Out of range: InvalidPartNumber (416)."""
    count = parts_count(obj)
    if count is None:
        if number != 1:
            raise invalid_part_number()
        return 0, obj.size - 1
    if not 1 <= number <= count:
        raise invalid_part_number()
    sizes = part_sizes(obj)
    if sizes is None:
        raise S3Error("InvalidRequest", "This object's part boundaries were not recorded "
                      "when it was completed.")
    first = sum(sizes[:number - 1])
    return first, first + sizes[number - 1] - 1


def part_checksum(obj: ObjectRecord, number: int) -> dict[str, str] | None:
    """The checksum of one part of a multipart object (as GET ?partNumber returns it)."""
    values = obj.attrs.get("part_checksums")
    checksum = obj.attrs.get("checksum")
    if not values or not checksum or not 1 <= number <= len(values):
        return None
    return {"algorithm": checksum["algorithm"], "value": values[number - 1],
            "type": checksum["type"]}


def invalid_part_number() -> S3Error:
    return S3Error("InvalidPartNumber", "The requested partnumber is not satisfiable",
                   status=416)


@dataclass
class ObjectPart:
    number: int
    size: int
    checksum: dict[str, str] | None  # {"algorithm", "value"} of the part, when kept


@dataclass
class ObjectParts:
    """A page of the parts an object was assembled from (GetObjectAttributes ObjectParts)."""

    count: int
    parts: list[ObjectPart]
    truncated: bool
    next_marker: int


def object_parts(obj: ObjectRecord, marker: int, max_parts: int) -> ObjectParts | None:
    """The parts after part number `marker`, at most `max_parts`; None for an object that was
    not assembled from parts."""
    count = parts_count(obj)
    if count is None:
        return None
    sizes = part_sizes(obj) or []
    values = obj.attrs.get("part_checksums") or []
    checksum = obj.attrs.get("checksum")
    page: list[ObjectPart] = []
    for number in range(marker + 1, min(len(sizes), marker + max_parts) + 1):
        value = values[number - 1] if number <= len(values) and checksum else None
        page.append(ObjectPart(number, sizes[number - 1], {
            "algorithm": checksum["algorithm"], "value": value} if value and checksum else None))
    truncated = marker + len(page) < len(sizes) and max_parts > 0
    return ObjectParts(count, page, truncated, page[-1].number if page else marker)
