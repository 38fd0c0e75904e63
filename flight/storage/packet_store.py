"""A packet store (ST[15]): TM packets with their on-board times, kept on disk in storage order,
bounded, and read back by record number or by time.

One store per directory: a lock, the floor ("deleted before record N") and segments, oldest
first (flight.storage.store_directory, flight.storage.segments).

Appends go to the newest segment with one write(2) each, so a record whose append returned
survives `kill -9`; `flush()` (fdatasync) makes it survive a power cut. After a crash the newest
segment's torn tail is cut and the segment sealed; a record damaged in place (an upset, bit rot)
costs that record only and is counted. Record numbers are never reused, across restarts,
deletions and power cuts: a segment reserves its range of numbers when it is created, and after
a crash numbering goes on after the range of the segment the crash left unsealed.

Memory: per segment, its summary and, once read, an index of one entry per 64 records (about
half an octet a record: 1.7 MB measured for a full 256 MiB store of 60-octet packets).
Not thread-safe: one owner calls it, and one PacketStore at a time may open a directory.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
from bisect import bisect_right
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from flight.durable import fsync_directory, open_regular_file, write_all
from flight.storage.segments import (
    MAX_PACKET_OCTETS,
    MAX_SEGMENT_OCTETS,
    RECORD_OVERHEAD,
    BlockIndex,
    Segment,
    build_index,
    encode_record,
    note_damage,
    records_per_segment,
    scan,
    segment_name,
)
from flight.storage.store_directory import lock_directory, open_segments, read_floor, write_floor

__all__ = [
    "MAX_PACKET_OCTETS",
    "RECORD_OVERHEAD",
    "InvalidPacket",
    "InvalidTime",
    "PacketStore",
    "PacketStoreBusy",
    "PacketStoreClosed",
    "PacketStoreError",
    "PacketStoreFull",
    "StoreSummary",
    "StoredPacket",
]

log = logging.getLogger(__name__)

MIN_SEGMENT_OCTETS = 128
# A wrap drops one whole segment: at most this share of the capacity.
_SEGMENTS_PER_CAPACITY = 8


class PacketStoreError(Exception):
    """Base of the packet store's errors (disk failures stay OSError)."""


class PacketStoreFull(PacketStoreError):
    """A bounded (not circular) store has no room for the packet: it was not stored."""


class InvalidPacket(PacketStoreError, ValueError):
    """The packet is empty, longer than a space packet, or larger than the whole store."""


class InvalidTime(PacketStoreError, ValueError):
    """A time is NaN (or, for a packet's own time, infinite)."""


class PacketStoreBusy(PacketStoreError):
    """Another PacketStore (in this process or another) has the directory open."""


class PacketStoreClosed(PacketStoreError):
    """The store was closed."""


@dataclass(frozen=True, slots=True)
class StoredPacket:
    """One stored packet: its record number, its on-board time (UNIX s) and its octets."""

    record_no: int
    time: float
    packet: bytes


@dataclass(frozen=True, slots=True)
class StoreSummary:
    """What a store holds. Oldest and newest are by storage order (times may go back after a
    time set); they are None when the store is empty. Counters run since the store was opened."""

    packets: int
    octets: int  # held by live records, headers included: what the capacity bounds
    capacity_octets: int
    fill: float  # octets / capacity_octets
    oldest_time: float | None
    newest_time: float | None
    oldest_record: int | None
    newest_record: int | None
    next_record: int
    appends_refused: int  # because a bounded store was full
    corrupt_records: int  # found damaged and skipped
    torn_tails: int  # torn tails cut after a crash: a write no append or close had returned from


class PacketStore:
    """The packet store kept in `directory` (created when missing), opened by the constructor.

    `circular`: a full store drops its oldest segment to make room; otherwise an append to a
    full store raises PacketStoreFull. Segments are `segment_octets` long at most, and no more
    than an eighth of the capacity, so that a wrap drops at most an eighth of what is held.
    """

    def __init__(
        self,
        directory: Path,
        capacity_octets: int,
        circular: bool = True,
        segment_octets: int = 1 << 20,
    ) -> None:
        segment_octets = min(segment_octets, capacity_octets // _SEGMENTS_PER_CAPACITY)
        segment_octets = min(max(segment_octets, MIN_SEGMENT_OCTETS), MAX_SEGMENT_OCTETS)
        if capacity_octets < segment_octets:
            raise ValueError(
                f"capacity of {capacity_octets} octets: expected {segment_octets} at least"
            )
        self.directory = directory
        self.capacity_octets = capacity_octets
        self.circular = circular
        self.segment_octets = segment_octets
        self._segments: list[Segment] = []  # oldest first
        self._active: Segment | None = None  # the newest, open for appends
        self._fd = -1  # the active segment's, for appends
        self._next = 0
        self._floor = 0  # every record below it is deleted
        self._held = 0  # octets of live records (and damaged spans among them)
        self._refused = 0
        self._corrupt = 0
        self._torn = 0
        self._dirty = False
        self._directory_dirty = False
        self._closed = True
        try:
            self._lock_fd = lock_directory(directory)
        except BlockingIOError:
            raise PacketStoreBusy(f"packet store {directory} is open elsewhere") from None
        try:
            self._load()
        except BaseException:
            os.close(self._lock_fd)
            raise
        self._closed = False

    # -- opening ------------------------------------------------------------------------------

    def _load(self) -> None:
        self._floor = read_floor(self.directory)
        opened = open_segments(self.directory)
        self._corrupt, self._torn = opened.corrupt, opened.torn
        self._segments = found = opened.segments
        self._next = max(
            [self._floor] + [s.next_no for s in found] + [s.last_no + 1 for s in found if s.count]
        )
        self._held = sum(s.end - s.start for s in found)
        for segment in list(found):
            if segment.count and segment.last_no >= self._floor:
                if segment.first_no < self._floor:
                    self._cut(segment, *self._first_kept(segment, lambda no, t: no >= self._floor))
            elif segment is not found[-1]:
                self._remove(segment)
            else:  # the newest is kept, even empty: its name and footer keep the numbering
                self._cut(segment, segment.end, 0, math.nan, segment.count)
        if self.circular:
            while self._held > self.capacity_octets and len(self._segments) > 1:
                self._remove(self._segments[0])
        if self._directory_dirty:
            fsync_directory(self.directory)
            self._directory_dirty = False

    # -- appending ----------------------------------------------------------------------------

    def append(self, packet: bytes, time: float) -> int:
        """Store `packet` with its on-board `time` (UNIX s); its record number."""
        if self._closed:
            raise PacketStoreClosed(f"packet store {self.directory} is closed")
        length = len(packet)
        if not 0 < length <= MAX_PACKET_OCTETS:
            raise InvalidPacket(f"packet of {length} octets: expected 1..{MAX_PACKET_OCTETS}")
        if not math.isfinite(time):
            raise InvalidTime(f"packet time {time}: expected a finite UNIX time")
        time = float(time)
        size = RECORD_OVERHEAD + length
        if self._held + size > self.capacity_octets:
            if size > self.capacity_octets:
                raise InvalidPacket(
                    f"record of {size} octets: the store holds {self.capacity_octets} at most"
                )
            if not self.circular:
                self._refused += 1
                raise PacketStoreFull(
                    f"packet store {self.directory.name} full: {size} octets needed, "
                    f"{self._held} of {self.capacity_octets} held"
                )
        segment = self._active
        if (
            segment is None
            or (segment.end and segment.end + size > self.segment_octets)
            or self._next >= segment.limit
        ):
            segment = self._roll()
        while self._held + size > self.capacity_octets and len(self._segments) > 1:
            self._remove(self._segments[0])
        record_no = self._next
        # A number picked is used up, even by an append that fails: never handed out twice.
        self._next = record_no + 1
        try:
            write_all(self._fd, encode_record(record_no, time, packet))
        except OSError:
            # A partial record would sit under the next ones: cut it (O_APPEND writes at the end).
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, segment.end)
            raise
        segment.note(record_no, segment.end, time)
        segment.end += size
        self._held += size
        self._dirty = True
        return record_no

    def _roll(self) -> Segment:
        """Seal the active segment and start the next one."""
        if self._active is not None:
            self._seal()
        # Dead segments (everything in them deleted) need not wait for a wrap or a reopen.
        while self._segments and self._segments[0].count == 0:
            self._remove(self._segments[0])
        first = self._next
        path = self.directory / segment_name(
            first, first + records_per_segment(self.segment_octets)
        )
        self._fd = open_regular_file(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL)
        segment = Segment(path, first, first + records_per_segment(self.segment_octets))
        segment.index = BlockIndex()
        self._segments.append(segment)
        self._active = segment
        fsync_directory(self.directory)
        self._directory_dirty = False
        return segment

    def _seal(self) -> None:
        segment = self._active
        assert segment is not None
        segment.next_no = self._next
        try:
            write_all(self._fd, segment.footer())
            os.fsync(self._fd)
        except OSError:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, segment.end)
            raise
        segment.sealed = True
        os.close(self._fd)
        self._fd = -1
        self._active = None
        self._dirty = False

    def flush(self) -> None:
        """Make every record appended so far survive a power cut."""
        if self._dirty:
            os.fdatasync(self._fd)
            self._dirty = False
        if self._directory_dirty:
            fsync_directory(self.directory)
            self._directory_dirty = False

    def close(self) -> None:
        """Seal the active segment and release the directory; closing again does nothing."""
        if self._closed:
            return
        self._closed = True
        try:
            if self._active is not None:
                self._seal()
            if self._directory_dirty:
                fsync_directory(self.directory)
        finally:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1
            os.close(self._lock_fd)

    def __enter__(self) -> PacketStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def closed(self) -> bool:
        """True once close() was called."""
        return self._closed

    # -- deleting -----------------------------------------------------------------------------

    def delete_up_to(self, time: float) -> int:
        """Delete the records before the first whose time is after `time` (all of them when
        none is), i.e. those up to `time` at the start of the store (ST[15,11]); how many."""
        self._check_open()
        if math.isnan(time):
            raise InvalidTime("deletion time NaN")
        whole: list[Segment] = []
        cut: tuple[Segment, int, int, float, int] | None = None
        for segment in self._segments:
            if segment.count == 0:
                continue
            if segment.max_time <= time:
                whole.append(segment)
                continue
            offset, first_no, first_time, deleted = self._first_kept(
                segment, lambda no, t: t > time
            )
            if offset < segment.end:
                cut = (segment, offset, first_no, first_time, deleted)
                break
            whole.append(segment)  # its one later time was a damaged record's
        floor = cut[2] if cut is not None else self._next
        count = sum(s.count for s in whole) + (cut[4] if cut is not None else 0)
        if count == 0 or floor <= self._floor:
            return 0
        # The floor first: a crash before the files go leaves them, marked deleted.
        write_floor(self.directory, floor)
        self._floor = floor
        for segment in whole:
            if segment is self._segments[-1]:
                self._cut(segment, segment.end, 0, math.nan, segment.count)
            else:
                self._remove(segment)
        if cut is not None:
            self._cut(*cut)
        if self._directory_dirty:
            fsync_directory(self.directory)
            self._directory_dirty = False
        return count

    def _first_kept(
        self, segment: Segment, keep: Callable[[int, float], bool]
    ) -> tuple[int, int, float, int]:
        """(offset, number, time) of the first live record of `segment` that `keep`s, and how
        many live records come before it; offset is the segment's end when none does."""
        deleted = 0
        fd = open_regular_file(segment.path)
        try:
            for offset, record_no, time, _ in scan(fd, segment, segment.start):
                if keep(record_no, time):
                    return offset, record_no, time, deleted
                deleted += 1
        finally:
            os.close(fd)
        return segment.end, 0, math.nan, deleted

    def _cut(self, segment: Segment, offset: int, first_no: int, first_time: float, n: int) -> None:
        """Move the segment's live records to start at `offset`, n fewer."""
        self._held -= offset - segment.start
        segment.start = offset
        segment.count = max(0, segment.count - n) if offset < segment.end else 0
        segment.first_no, segment.first_time = first_no, first_time

    def _remove(self, segment: Segment) -> None:
        """Drop a whole segment (never the active one)."""
        assert segment is not self._active
        self._segments.remove(segment)
        segment.dropped = True
        self._held -= segment.end - segment.start
        with contextlib.suppress(FileNotFoundError):
            os.unlink(segment.path)
        self._directory_dirty = True

    # -- reading ------------------------------------------------------------------------------

    def records_from(self, record_no: int) -> Iterator[StoredPacket]:
        """The records from `record_no` on (from the oldest held when it is gone), in storage
        order, including those appended while the iterator is in use."""
        self._check_open()
        return self._stored(self._records(record_no, -math.inf, math.inf))

    def between(self, start: float, end: float) -> Iterator[StoredPacket]:
        """The records whose time t has start <= t <= end, in storage order."""
        self._check_open()
        if math.isnan(start) or math.isnan(end):
            raise InvalidTime(f"time range {start}..{end}")
        if start > end:
            return iter(())
        return self._stored(self._records(0, start, end))

    def first_record_at_or_after(self, time: float) -> int | None:
        """The number of the first record, in storage order, whose time is at or after `time`;
        None when there is none. After on-board time went back, a record before the jump wins
        over an earlier-timed one after it: storage order decides, as for a retrieval."""
        self._check_open()
        if math.isnan(time):
            raise InvalidTime("time NaN")
        for record_no, _, _ in self._records(0, time, math.inf):
            return record_no
        return None

    def octets_from(self, record_no: int) -> int:
        """Octets held (as summary().octets counts them) by the records from `record_no` on:
        what an open retrieval from there has left to send, without reading it."""
        self._check_open()
        record_no = max(record_no, self._floor)
        segment = self._segment_holding(record_no)
        if segment is None:
            return 0
        later = self._segments[self._segments.index(segment) + 1 :]
        offset = segment.start
        if record_no > segment.first_no:
            index = self._index(segment)
            block = index.block_of(record_no)
            fd = open_regular_file(segment.path)
            try:
                start = max(index.offsets[block], segment.start)
                offset = segment.end
                for found, number, _, _ in scan(fd, segment, start):
                    if number >= record_no:
                        offset = found
                        break
            finally:
                os.close(fd)
        return segment.end - offset + sum(s.end - s.start for s in later)

    @staticmethod
    def _stored(records: Iterator[tuple[int, float, memoryview]]) -> Iterator[StoredPacket]:
        for record_no, time, packet in records:
            yield StoredPacket(record_no, time, bytes(packet))

    def _records(
        self, cursor: int, lo: float, hi: float
    ) -> Iterator[tuple[int, float, memoryview]]:
        """(number, time, packet) of the live records from `cursor` on with lo <= time <= hi.

        Whole segments and index blocks whose times all lie outside the range are skipped. The
        store may change between two records (appends, a wrap, a deletion): each step starts
        again from the store as it is, after the last record returned."""
        while not self._closed:
            cursor = max(cursor, self._floor)
            segment = self._segment_holding(cursor)
            if segment is None:
                return
            if segment.max_time < lo or segment.min_time > hi:
                cursor = segment.last_no + 1
                continue
            index = self._index(segment)
            block = index.block_of(cursor)
            while block < len(index) and (index.maxs[block] < lo or index.mins[block] > hi):
                block += 1
            if block == len(index) or segment.count == 0:
                cursor = max(cursor, segment.last_no + 1)
                continue
            cursor = max(cursor, index.nos[block])
            next_block_no = index.nos[block + 1] if block + 1 < len(index) else math.inf
            fd = open_regular_file(segment.path)
            try:
                expected = -1
                prev_no = cursor - 1
                for offset, record_no, time, packet in scan(
                    fd, segment, max(index.offsets[block], segment.start)
                ):
                    if offset != expected and expected >= 0:
                        self._damaged(segment, expected, record_no - prev_no - 1)
                    expected, prev_no = offset + RECORD_OVERHEAD + len(packet), record_no
                    if record_no >= next_block_no:
                        while record_no >= next_block_no:
                            block += 1
                            next_block_no = (
                                index.nos[block + 1] if block + 1 < len(index) else math.inf
                            )
                        if index.maxs[block] < lo or index.mins[block] > hi:
                            cursor = max(cursor, record_no)
                            break  # look the next block up again
                    if record_no < cursor:
                        continue
                    cursor = record_no + 1
                    if lo <= time <= hi:
                        yield record_no, time, packet
                        if self._floor > cursor or self._closed:
                            break  # deleted (or closed) meanwhile: look the store up again
                else:
                    if 0 <= expected < segment.end and not segment.dropped:
                        self._damaged(segment, expected, segment.last_no - prev_no)
                        segment.last_no = prev_no
                    cursor = max(cursor, segment.last_no + 1)
            finally:
                os.close(fd)

    def _segment_holding(self, record_no: int) -> Segment | None:
        """The first segment with live records numbered `record_no` or later."""
        i = max(0, bisect_right(self._segments, record_no, key=lambda s: s.first) - 1)
        for segment in self._segments[i:]:
            if segment.count and segment.last_no >= record_no:
                return segment
        return None

    def _index(self, segment: Segment) -> BlockIndex:
        if segment.index is None:
            fd = open_regular_file(segment.path)
            try:
                lost, _ = build_index(fd, segment, recovering=False)
            finally:
                os.close(fd)
            self._corrupt += lost
            assert segment.index is not None
        return segment.index

    def _damaged(self, segment: Segment, offset: int, gap: int) -> None:
        lost = note_damage(segment, offset, gap)
        if lost:
            log.warning("%s: damaged record(s) at offset %d skipped", segment.path, offset)
            self._corrupt += lost
            segment.count = max(0, segment.count - lost)

    # -- summary ------------------------------------------------------------------------------

    def summary(self) -> StoreSummary:
        """What the store holds now."""
        live = [s for s in self._segments if s.count]
        oldest = live[0] if live else None
        newest = live[-1] if live else None
        return StoreSummary(
            packets=sum(s.count for s in live),
            octets=self._held,
            capacity_octets=self.capacity_octets,
            fill=self._held / self.capacity_octets,
            oldest_time=oldest.first_time if oldest else None,
            newest_time=newest.last_time if newest else None,
            oldest_record=oldest.first_no if oldest else None,
            newest_record=newest.last_no if newest else None,
            next_record=self._next,
            appends_refused=self._refused,
            corrupt_records=self._corrupt,
            torn_tails=self._torn,
        )

    def _check_open(self) -> None:
        if self._closed:
            raise PacketStoreClosed(f"packet store {self.directory} is closed")
