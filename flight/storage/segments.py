"""Segment files of a packet store: the record and footer format, the scan that finds every intact
record (past damage), and the in-memory index of one segment.

A segment is named `<first>-<limit>.seg` (20 digits each): it holds records numbered from
`first` and below `limit`, a range reserved when it is created, so that numbers handed out
before a power cut are never handed out again. Its content, big-endian:

    record  sync D5 2B | CRC-32 u32 | packet length u32 | record number u64 | time f64 | packet
    footer  "PKS1" | count u32 | first, last, next record number u64 | live start u32
            | data end u32 | first, last, min, max time f64 | CRC-32 u32  (written when sealed)

The footer describes the live records (from `start`, those not deleted), not all it holds.

A record's CRC covers everything after it (length, number, time, packet), so a torn or damaged
record is never taken for a packet; the sync marker lets a scan find the next record after one.
Records are appended only; a segment is sealed (footer written, fsynced) when it is full, when the
store closes, and when it is recovered after a crash, so that a sealed segment opens without a
scan: its footer says what it holds.
"""

from __future__ import annotations

import math
import os
import re
import struct
import zlib
from array import array
from bisect import bisect_right
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

SYNC = b"\xd5\x2b"  # neither 00 nor FF, the octets of zeroed or erased storage
RECORD = struct.Struct(">2sIIQd")
RECORD_OVERHEAD = RECORD.size
_BODY = struct.Struct(">IQd")
_PREFIX = struct.Struct(">2sI")
_CRC_FROM = _PREFIX.size  # the CRC covers the record from its length field on
MAX_PACKET_OCTETS = 65542  # a space packet: 6-octet primary header + up to 65536 octets
FOOTER = struct.Struct(">4sIQQQIIddddI")
FOOTER_MAGIC = b"PKS1"
MAX_SEGMENT_OCTETS = 1 << 31  # offsets are u32 in the footer
# Records an index block covers: the index costs 32 octets per block (about 0.5 octet a record),
# and a lookup scans one block at most.
BLOCK_RECORDS = 64
READ_CHUNK = 64 * 1024
_NAME = re.compile(r"(\d{20})-(\d{20})\.seg")


def segment_name(first: int, limit: int) -> str:
    """The file name of the segment reserving record numbers first..limit-1."""
    return f"{first:020d}-{limit:020d}.seg"


def parse_segment_name(name: str) -> tuple[int, int] | None:
    """(first, limit) of a segment file name, or None when the name is not a segment's."""
    match = _NAME.fullmatch(name)
    if match is None:
        return None
    first, limit = int(match[1]), int(match[2])
    return (first, limit) if first < limit else None


def records_per_segment(segment_octets: int) -> int:
    """Record numbers a segment reserves: as many as its smallest records could fill, + 1 for a
    record larger than a segment, which gets one to itself."""
    return segment_octets // (RECORD_OVERHEAD + 1) + 1


def encode_record(record_no: int, time: float, packet: bytes) -> bytes:
    """One record, ready to append."""
    body = _BODY.pack(len(packet), record_no, time)
    return _PREFIX.pack(SYNC, zlib.crc32(packet, zlib.crc32(body))) + body + packet


class BlockIndex:
    """Where each run of BLOCK_RECORDS intact records starts (record number, offset) and the span
    of their times, so a read by number or time scans one block rather than a whole segment."""

    __slots__ = ("filled", "maxs", "mins", "nos", "offsets")

    def __init__(self) -> None:
        self.nos = array("Q")
        self.offsets = array("Q")
        self.mins = array("d")
        self.maxs = array("d")
        self.filled = BLOCK_RECORDS  # records in the last block

    def add(self, record_no: int, offset: int, time: float) -> None:
        """Index the next intact record (in storage order)."""
        if self.filled == BLOCK_RECORDS:
            self.nos.append(record_no)
            self.offsets.append(offset)
            self.mins.append(time)
            self.maxs.append(time)
            self.filled = 1
            return
        self.filled += 1
        if time < self.mins[-1]:
            self.mins[-1] = time
        if time > self.maxs[-1]:
            self.maxs[-1] = time

    def block_of(self, record_no: int) -> int:
        """The block that holds `record_no` or would, 0 when it lies before the first."""
        return max(0, bisect_right(self.nos, record_no) - 1)

    def __len__(self) -> int:
        return len(self.nos)


@dataclass(slots=True, eq=False)
class Segment:
    """One segment file and what the store knows of it: its live records (those not deleted)
    lie between `start` and `end`, the footer (when sealed) after `end`."""

    path: Path
    first: int
    limit: int
    start: int = 0
    end: int = 0
    count: int = 0
    first_no: int = 0
    last_no: int = 0
    first_time: float = math.nan
    last_time: float = math.nan
    min_time: float = math.inf
    max_time: float = -math.inf
    next_no: int = 0  # the record number after it (its footer's), the store's next at least
    sealed: bool = False
    dropped: bool = False
    index: BlockIndex | None = None
    # Offsets of the damaged spans already counted, so that a read passing one again does not.
    damage: set[int] = field(default_factory=set)

    def note(self, record_no: int, offset: int, time: float) -> None:
        """Account for one more intact record, appended at `offset`."""
        self.account(record_no, time)
        if self.index is not None:
            self.index.add(record_no, offset, time)

    def account(self, record_no: int, time: float) -> None:
        """Count one more live record (in storage order) in the segment's summary."""
        if self.count == 0:
            self.first_no, self.first_time = record_no, time
        self.last_no, self.last_time = record_no, time
        self.count += 1
        if time < self.min_time:
            self.min_time = time
        if time > self.max_time:
            self.max_time = time

    def footer(self) -> bytes:
        """The footer that seals this segment as it is now."""
        body = FOOTER.pack(
            FOOTER_MAGIC,
            self.count,
            self.first_no,
            self.last_no,
            self.next_no,
            self.start,
            self.end,
            self.first_time,
            self.last_time,
            self.min_time,
            self.max_time,
            0,
        )[:-4]
        return body + struct.pack(">I", zlib.crc32(body))

    def load_footer(self, data: bytes, size: int) -> bool:
        """Take what a footer read from the file's last FOOTER.size octets says; False (and
        nothing taken) when it is not an intact footer of this segment."""
        if len(data) != FOOTER.size:
            return False
        magic, count, first_no, last_no, next_no, start, end, *times, crc = FOOTER.unpack(data)
        if magic != FOOTER_MAGIC or zlib.crc32(data[:-4]) != crc or end != size - FOOTER.size:
            return False
        if start > end:
            return False
        if next_no < self.first or (count and not self.first <= first_no <= last_no < self.limit):
            return False
        self.start, self.end, self.count, self.next_no = start, end, count, next_no
        self.first_no, self.last_no = first_no, last_no
        self.first_time, self.last_time, self.min_time, self.max_time = times
        self.sealed = True
        return True


def scan(fd: int, segment: Segment, start: int) -> Iterator[tuple[int, int, float, memoryview]]:
    """(offset, record number, time, packet) of every intact record from offset `start`, in
    storage order, past damaged or torn spans; reads up to the segment's end as it grows, and
    stops when the segment is dropped. The packet view is only valid until the next record."""
    buf = b""
    view = memoryview(buf)
    base = start
    pos = start
    first, limit = segment.first, segment.limit
    while not segment.dropped:
        end = segment.end
        if pos + RECORD_OVERHEAD > end:
            return
        rel = pos - base
        if rel + RECORD_OVERHEAD > len(buf):
            buf = os.pread(fd, min(READ_CHUNK, end - pos), pos)
            view, base, rel = memoryview(buf), pos, 0
            if len(buf) < RECORD_OVERHEAD:
                return  # the file is shorter than the store thought: nothing more to read
        sync, crc, length, record_no, time = RECORD.unpack_from(buf, rel)
        stop = rel + RECORD_OVERHEAD + length
        if (
            sync == SYNC
            and 0 < length <= MAX_PACKET_OCTETS
            and first <= record_no < limit
            and pos + RECORD_OVERHEAD + length <= end
        ):
            if stop > len(buf):
                buf = os.pread(fd, min(max(READ_CHUNK, stop - rel), end - pos), pos)
                view, base, stop, rel = memoryview(buf), pos, stop - rel, 0
            if stop <= len(buf) and zlib.crc32(view[rel + _CRC_FROM : stop]) == crc:
                yield pos, record_no, time, view[rel + RECORD_OVERHEAD : stop]
                pos += RECORD_OVERHEAD + length
                continue
        # No intact record here: the next one starts at a later sync marker, if any.
        found = buf.find(SYNC, rel + 1)
        # Not found: go on from the buffer's last octet, which may begin a marker cut in two.
        pos = base + found if found >= 0 else max(pos + 1, base + len(buf) - 1)


def build_index(fd: int, segment: Segment, *, recovering: bool) -> tuple[int, bool]:
    """Scan the whole segment into a fresh index, and count again its live records (those from
    `start` on); (records lost to damage newly found, whether a torn tail was cut).
    `recovering`: the segment was not sealed (a crash left it), so what follows its last intact
    record is a torn write, not damage, and `end` moves back to that record's end."""
    expected_last = segment.last_no if segment.count else segment.first - 1
    segment.index = index = BlockIndex()
    segment.count = 0
    segment.min_time, segment.max_time = math.inf, -math.inf
    live_from = segment.start
    lost = 0
    prev_no = segment.first - 1
    expected = 0
    for offset, record_no, time, packet in scan(fd, segment, 0):
        if offset != expected and expected >= live_from:
            lost += note_damage(segment, expected, record_no - prev_no - 1)
        index.add(record_no, offset, time)
        if offset >= live_from:
            segment.account(record_no, time)
        prev_no = record_no
        expected = offset + RECORD_OVERHEAD + len(packet)
    torn = False
    if expected < segment.end:
        if recovering:
            torn = True
            segment.end = max(expected, live_from)
        elif expected >= live_from:
            lost += note_damage(segment, expected, expected_last - prev_no)
    return lost, torn


def note_damage(segment: Segment, offset: int, gap: int) -> int:
    """Records newly lost to a damaged span at `offset` that hid `gap` record numbers; 0 when
    that span was already counted."""
    if offset in segment.damage:
        return 0
    segment.damage.add(offset)
    # Numbers run on without a hole inside a segment, so the gap says how many records the
    # damaged span held; a span that hid none (damage between records) still counts once.
    return max(1, gap)
