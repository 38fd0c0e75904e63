"""An upload's journal: the octet ranges received, one self-checking record per range, appended
only once the data they name is fsynced.

Each record is offset, length (u64 each) and the CRC-32 of the two, big-endian: a torn or
bit-flipped record is recognised and skipped, as each stands alone.
"""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Iterable
from pathlib import Path

from flight.durable import replace_atomically, write_all
from flight.files.regular_files import open_regular
from spacelink.ranges import RangeSet

# offset, length, CRC-32 of the two: the format of journals already on board, never changed.
_RECORD = struct.Struct(">QQI")
_RECORD_BODY = struct.Struct(">QQ")
# Scattered chunks add one journal record per range at each sync; once the journal holds this
# many records more than the merged ranges need, it is rewritten so it cannot grow unbounded.
_JOURNAL_SLACK = 256


def _encode_ranges(ranges: Iterable[tuple[int, int]]) -> bytes:
    """The journal records of `ranges`, in order."""
    out = bytearray()
    for offset, length in ranges:
        body = _RECORD_BODY.pack(offset, length)
        out += body + zlib.crc32(body).to_bytes(4, "big")
    return bytes(out)


def decode_journal(raw: bytes, size: int) -> tuple[RangeSet, int, bool]:
    """(ranges, valid records, damaged): bad records are skipped, as each stands alone."""
    ranges, valid = RangeSet(), 0
    for pos in range(0, len(raw) - _RECORD.size + 1, _RECORD.size):
        offset, length, crc = _RECORD.unpack_from(raw, pos)
        if crc != zlib.crc32(raw[pos : pos + _RECORD_BODY.size]) or not 0 < length <= size - offset:
            continue
        ranges.add(offset, length)
        valid += 1
    return ranges, valid, valid * _RECORD.size != len(raw)


def needs_rewrite(records: int, adding: int, ranges: int) -> bool:
    """Whether a journal of `records` records, `adding` more, has outgrown the `ranges` merged
    ranges it names by more than the slack, and should be rewritten from them instead."""
    return records + adding > 2 * ranges + _JOURNAL_SLACK


def append_ranges(path: Path, ranges: Iterable[tuple[int, int]]) -> None:
    """Append the records of `ranges` to the journal at `path` and fsync it."""
    fd = open_regular(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        write_all(fd, _encode_ranges(ranges))
        os.fsync(fd)
    finally:
        os.close(fd)


def rewrite_journal(path: Path, ranges: Iterable[tuple[int, int]]) -> None:
    """Replace the journal at `path`, atomically, by the records of `ranges`."""
    replace_atomically(path, _encode_ranges(ranges))


def empty_journal(path: Path) -> None:
    """Truncate the journal at `path` to nothing, durably."""
    fd = open_regular(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
