"""A job's stored record: its fields, their canonical form (what the CRC covers and the copy
holds), and the vote of fields, copy and CRC that finds and repairs damage."""

from __future__ import annotations

import itertools
import json
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from flight.jobs.redundancy import Redundancy
from flight.jobs.store.errors import JobStoreError
from flight.jobs.store.job import Job, JobState

# Every stored field of a record, in the order of its canonical form, with the Python type of
# its values and whether it may be NULL. deadline_at is stored (not derived on read) so that
# expiry can use an index. A field added later goes at the end (see LAYOUT_2).
FIELD_TYPES: dict[str, tuple[type, bool]] = {
    "job_id": (int, False),
    "model": (str, False),
    "input_file": (str, False),
    "priority": (int, False),
    "redundancy": (int, False),
    "deadline_s": (float, True),
    "deadline_at": (float, True),
    "submitted_at": (float, False),
    "state": (int, False),
    "attempts": (int, False),
    "started_at": (float, True),
    "finished_at": (float, True),
    "result_file": (str, True),
    "result_sha256": (bytes, True),
    "failure_code": (int, True),
    "failure_text": (str, True),
    "progress": (int, False),
    "model_version": (int, False),
    "request": (bytes, False),
    "runs": (int, False),
    "disagreements": (int, False),
    "result_size": (int, True),
    "losses": (int, False),
}
FIELDS = tuple(FIELD_TYPES)
COLUMNS = ", ".join(FIELDS)
# Fields fault injection may change: all but the job id, which is the b-tree's key (damage to
# it is damage to the file's structure, which the integrity check finds).
FAULT_COLUMNS = (*FIELDS[1:], "crc", "copy")

Values = tuple[Any, ...]

_encode_json = json.JSONEncoder(separators=(",", ":"), ensure_ascii=True).encode


@dataclass(frozen=True, slots=True)
class Verdict:
    """A record's fields as they should be (None: beyond repair), and what was repaired:
    "fields" (restored from the copy), "copy" or "checksum"; "" when the record is intact."""

    values: Values | None
    repaired: str = ""


class RecordLayout:
    """The fields of one schema version's records: their canonical form and its check."""

    def __init__(self, field_types: dict[str, tuple[type, bool]]) -> None:
        self.fields = tuple(field_types)
        self._types = tuple(field_types.values())
        # Every sequence of value types a record may have (a nullable field: its type or None).
        self._record_types = frozenset(
            itertools.product(
                *[(kind, type(None)) if nullable else (kind,) for kind, nullable in self._types]
            )
        )
        self._blob_fields = tuple(i for i, (kind, _) in enumerate(self._types) if kind is bytes)

    def encode(self, values: Sequence[object]) -> bytes | None:
        """The canonical form of a record's fields (what its CRC covers and its copy holds);
        None when a field is not of its column's type, which only damage does."""
        if tuple(map(type, values)) not in self._record_types:
            return None
        out = list(values)
        for i in self._blob_fields:
            blob = out[i]
            if isinstance(blob, bytes):
                out[i] = blob.hex()
        return _encode_json(out).encode("ascii")

    def decode(self, copy: bytes) -> Values | None:
        """The fields held by a record's copy; None when it is not a record's canonical form."""
        try:
            items = json.loads(copy)
        except ValueError:
            return None
        if not isinstance(items, list) or len(items) != len(self.fields):
            return None
        values: list[object] = []
        for item, (kind, _) in zip(items, self._types, strict=True):
            if kind is bytes and isinstance(item, str):
                try:
                    item = bytes.fromhex(item)
                except ValueError:
                    return None
            values.append(item)
        result = tuple(values)
        return result if self.encode(result) == copy else None

    def check(self, row: Sequence[Any]) -> Verdict:
        """Vote the three parts of a stored record (fields, copy, CRC): two that agree win."""
        n = len(self.fields)
        values, crc, copy = tuple(row[:n]), row[n], row[n + 1]
        encoded = self.encode(values)
        copy = copy if type(copy) is bytes else None

        def crc_holds(data: bytes | None) -> bool:
            return data is not None and type(crc) is int and zlib.crc32(data) == crc

        if encoded is not None and encoded == copy and crc_holds(encoded):
            return Verdict(values)
        if crc_holds(encoded):
            return Verdict(values, "copy")
        if crc_holds(copy) and (restored := self.decode(copy or b"")) is not None:
            return Verdict(restored, "fields")
        if encoded is not None and encoded == copy:
            return Verdict(values, "checksum")
        return Verdict(None)


LAYOUT = RecordLayout(FIELD_TYPES)
# Schema versions 1 and 2: without `losses`, which version 3 added (0 for their records).
LAYOUT_2 = RecordLayout({name: kind for name, kind in FIELD_TYPES.items() if name != "losses"})


def from_layout_2(values: Values) -> Values:
    """A record of schema version 1 or 2 in this version's layout."""
    return (*values, 0)


def encode_fields(values: Sequence[object]) -> bytes | None:
    """The canonical form of a record's fields; None when a field is not of its type."""
    return LAYOUT.encode(values)


def decode_fields(copy: bytes) -> Values | None:
    """The fields held by a record's copy; None when it is not a record's canonical form."""
    return LAYOUT.decode(copy)


def check_record(row: Sequence[Any]) -> Verdict:
    """Vote the three parts of a stored record (fields, copy, CRC): two that agree win."""
    return LAYOUT.check(row)


def check_salvaged(row: Sequence[Any], checksummed: bool) -> Verdict:
    """A record read from a damaged file of any schema version, in this version's layout: its
    fields and checksums voted by its own version's layout; without checksums (version 1),
    its fields as read when they are of their types."""
    if not checksummed:
        fields = tuple(row)
        if len(fields) == len(LAYOUT_2.fields) and LAYOUT_2.encode(fields) is not None:
            return Verdict(from_layout_2(fields))
        return Verdict(fields if LAYOUT.encode(fields) is not None else None)
    n = len(row) - 2
    if n == len(LAYOUT.fields):
        verdict = LAYOUT.check(row)
        if verdict.values is not None or row[n - 1] != 0:
            return verdict
        # Perhaps a record of version 2 read through this version's schema, which gives the
        # column it lacks, `losses`, its default: voted as the record it is.
        row = (*row[: n - 1], *row[n:])
    elif n != len(LAYOUT_2.fields):
        return Verdict(None)
    verdict = LAYOUT_2.check(row)
    if verdict.values is None:
        return verdict
    return Verdict(from_layout_2(verdict.values), verdict.repaired)


def stored(values: Values) -> tuple[Any, ...]:
    """The parameters that store `values` (fields, CRC, copy)."""
    encoded = LAYOUT.encode(values)
    if encoded is None:
        raise JobStoreError(f"job {values[0]}: a field is not of its column's type: {values}")
    return (*values, zlib.crc32(encoded), encoded)


def _real(value: float | None) -> float | None:
    return None if value is None else float(value)


def _integer(value: int | None) -> int | None:
    return None if value is None else int(value)


def values_of(job: Job) -> Values:
    """A job's fields as stored (ints, floats and bytes of the exact types the CRC covers)."""
    submitted_at = float(job.submitted_at)
    deadline_s = _real(job.deadline_s)
    return (
        int(job.job_id),
        job.model,
        job.input_file,
        int(job.priority),
        int(job.redundancy),
        deadline_s,
        None if deadline_s is None else submitted_at + deadline_s,
        submitted_at,
        int(job.state),
        int(job.attempts),
        _real(job.started_at),
        _real(job.finished_at),
        job.result_file,
        None if job.result_sha256 is None else bytes(job.result_sha256),
        _integer(job.failure_code),
        job.failure_text,
        int(job.progress),
        int(job.model_version),
        bytes(job.request),
        int(job.runs),
        int(job.disagreements),
        _integer(job.result_size),
        int(job.losses),
    )


def job_from(values: Values) -> Job:
    return Job(
        job_id=values[0],
        model=values[1],
        input_file=values[2],
        priority=values[3],
        redundancy=Redundancy(values[4]),
        deadline_s=values[5],
        submitted_at=values[7],
        state=JobState(values[8]),
        attempts=values[9],
        started_at=values[10],
        finished_at=values[11],
        result_file=values[12],
        result_sha256=values[13],
        failure_code=values[14],
        failure_text=values[15],
        progress=values[16],
        model_version=values[17],
        request=values[18],
        runs=values[19],
        disagreements=values[20],
        result_size=values[21],
        losses=values[22],
    )


def dump(row: Sequence[object]) -> bytes:
    """A damaged record as the ground can read it."""
    return repr(tuple(row)).encode("ascii", "backslashreplace")


def field_octets(value: object) -> bytes:
    if isinstance(value, int):
        return value.to_bytes(8, "big", signed=True)
    if isinstance(value, float):
        return struct.pack(">d", value)
    if isinstance(value, str):
        return value.encode("utf-8", "surrogateescape")
    if isinstance(value, bytes):
        return value
    raise ValueError(f"expected a stored field, found {value!r}")


@dataclass(frozen=True, slots=True)
class RecordSite:
    """One stored field of one record, as fault injection sees it."""

    job_id: int
    column: str
    octets: int

    def describe(self) -> str:
        return f"job {self.job_id} {self.column}"
