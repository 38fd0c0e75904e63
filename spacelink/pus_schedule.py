"""ST[11] time-based scheduling (ECSS-E-ST-70-41C 6.11, 8.11): the request identifier and the
layouts of TC[11,4], TM[11,10] and TM[11,13] as this mission reads them (docs/schedule.md).

Release times are the ICD's TM time code (CDS short, 7 octets, UTC). TC[11,4] carries N (u16),
then N times a release time and a whole TC packet; the single-activity form without N (release
time first) that tmtccmd and sat-rs build is read too: its first octet is the CDS P-field 0x40,
which N, capped far below 0x4000, never starts with.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Sequence
from dataclasses import dataclass

from spacelink.cdstime import CDS_LENGTH, P_FIELD, CdsTime
from spacelink.errors import LinkError, PacketError
from spacelink.spacepacket import (
    PEC_LENGTH,
    PRIMARY_HEADER_LENGTH,
    TC_SECONDARY_HEADER_LENGTH,
    RequestId,
    packet_length_from_header,
)

SCHEDULE_SERVICE = 11
REQUEST_ID_LENGTH = 8
SUMMARY_ENTRY_OCTETS = 7 + REQUEST_ID_LENGTH  # release time, request ID
# Activities in one TC[11,4] at most: far below 0x4000, so that N never starts with 0x40.
MAX_ACTIVITIES_PER_REQUEST = 64
_COUNT = struct.Struct(">H")
_REQUEST_ID = struct.Struct(">Q")
# In a TC packet, the PUS-C secondary header after the primary one: version and flags, service,
# subtype, source ID (u16).
_SERVICE_OFFSET = PRIMARY_HEADER_LENGTH + 1
_SOURCE_ID_OFFSET = PRIMARY_HEADER_LENGTH + 3
_TC_MINIMUM = PRIMARY_HEADER_LENGTH + TC_SECONDARY_HEADER_LENGTH + PEC_LENGTH


class Subtype(enum.IntEnum):
    """The ST[11] message subtypes this payload serves (no sub-schedules, no groups)."""

    ENABLE = 1
    DISABLE = 2
    RESET = 3
    INSERT = 4
    DELETE = 5
    TIME_SHIFT = 7
    DETAIL_BY_ID = 9
    DETAIL_REPORT = 10
    SUMMARY_BY_ID = 12
    SUMMARY_REPORT = 13
    TIME_SHIFT_ALL = 15
    DETAIL_ALL = 16
    SUMMARY_ALL = 17


class ScheduleCodecError(LinkError):
    """ST[11] application data that does not decode; `index` is the activity at fault, if one."""

    def __init__(self, message: str, index: int | None = None) -> None:
        super().__init__(message)
        self.index = index


@dataclass(frozen=True, slots=True, order=True)
class ScheduleRequestId:
    """ECSS-E-ST-70-41C 5.4.11.2 request identifier of a scheduled TC, packed as one u64:
    source ID << 32 | APID << 16 | sequence count (as tmtccmd's TcSchedReqId and sat-rs)."""

    source_id: int
    apid: int
    seq_count: int

    def __post_init__(self) -> None:
        if not (0 <= self.source_id <= 0xFFFF and 0 <= self.apid <= 0x7FF):
            raise ValueError(f"request ID {self.source_id}:{self.apid} out of range")
        if not 0 <= self.seq_count <= 0x3FFF:
            raise ValueError(f"request ID sequence count {self.seq_count} out of range")

    @property
    def value(self) -> int:
        return (self.source_id << 32) | (self.apid << 16) | self.seq_count

    @classmethod
    def from_value(cls, value: int) -> ScheduleRequestId:
        """ValueError when the u64 has bits no request ID has (spare bits of APID or count)."""
        if not 0 <= value < 1 << 48 or (value >> 16) & 0xF800 or value & 0xC000:
            raise ValueError(f"0x{value:016X} is not a request ID")
        return cls(value >> 32, (value >> 16) & 0x7FF, value & 0x3FFF)

    def pack(self) -> bytes:
        return _REQUEST_ID.pack(self.value)

    @classmethod
    def of_packet(cls, packet: bytes | bytearray | memoryview) -> ScheduleRequestId:
        """The request ID of a TC packet (its APID, count and source ID), read from its headers."""
        if len(packet) < _SOURCE_ID_OFFSET + 2:
            raise ScheduleCodecError(f"a TC packet of {len(packet)} octets has no source ID")
        header = RequestId.of_packet(packet)
        source = int.from_bytes(packet[_SOURCE_ID_OFFSET : _SOURCE_ID_OFFSET + 2], "big")
        return cls(source, header.apid, header.seq_count)

    def __str__(self) -> str:
        return f"0x{self.value:016X}"


def tc_type(packet: bytes) -> tuple[int, int]:
    """The service type and subtype a TC packet's headers name; (0, 0) when it is too short to
    have them (a damaged record's packet)."""
    if len(packet) < _SERVICE_OFFSET + 2:
        return 0, 0
    return packet[_SERVICE_OFFSET], packet[_SERVICE_OFFSET + 1]


@dataclass(frozen=True, slots=True)
class TimeTaggedTc:
    """One activity: a whole TC packet (PEC included) and the time to release it."""

    release: CdsTime
    packet: bytes

    @property
    def request_id(self) -> ScheduleRequestId:
        return ScheduleRequestId.of_packet(self.packet)


@dataclass(frozen=True, slots=True)
class SummaryEntry:
    """One line of TM[11,13]."""

    release: CdsTime
    request_id: ScheduleRequestId


def encode_activities(activities: Sequence[TimeTaggedTc]) -> bytes:
    """N u16, then N (release time, TC packet): TC[11,4] and TM[11,10] alike."""
    if len(activities) > 0xFFFF:
        raise ValueError(f"{len(activities)} activities do not fit a u16 count")
    parts = [_COUNT.pack(len(activities))]
    for activity in activities:
        parts += [activity.release.pack(), activity.packet]
    return b"".join(parts)


def decode_insert(
    data: bytes, max_activities: int = MAX_ACTIVITIES_PER_REQUEST
) -> list[TimeTaggedTc]:
    """TC[11,4]'s activities, counted or single (see the module's note)."""
    if not data:
        raise ScheduleCodecError("TC[11,4] without activities")
    if data[0] == P_FIELD:
        activity, end = _read_activity(data, 0, 0)
        if end != len(data):
            raise ScheduleCodecError(f"{len(data) - end} octets after the activity's packet", 0)
        return [activity]
    activities = _read_counted(data)
    if not 1 <= len(activities) <= max_activities:
        raise ScheduleCodecError(
            f"{len(activities)} activities in one request: 1 to {max_activities} allowed"
        )
    return activities


def decode_detail_report(data: bytes) -> list[TimeTaggedTc]:
    """TM[11,10]'s activities."""
    return _read_counted(data)


def encode_summary(entries: Sequence[SummaryEntry]) -> bytes:
    """TM[11,13]: N u16, then N (release time, request ID)."""
    if len(entries) > 0xFFFF:
        raise ValueError(f"{len(entries)} entries do not fit a u16 count")
    parts = [_COUNT.pack(len(entries))]
    for entry in entries:
        parts += [entry.release.pack(), entry.request_id.pack()]
    return b"".join(parts)


def decode_summary(data: bytes) -> list[SummaryEntry]:
    count = _count(data)
    size = SUMMARY_ENTRY_OCTETS
    if len(data) != _COUNT.size + count * size:
        raise ScheduleCodecError(
            f"TM[11,13] of {len(data)} octets for {count} entries of {size} octets"
        )
    entries = []
    for i in range(count):
        offset = _COUNT.size + i * size
        release = _time(data, offset, i)
        (value,) = _REQUEST_ID.unpack_from(data, offset + CDS_LENGTH)
        try:
            request_id = ScheduleRequestId.from_value(value)
        except ValueError as exc:
            raise ScheduleCodecError(str(exc), i) from None
        entries.append(SummaryEntry(release, request_id))
    return entries


def _count(data: bytes) -> int:
    if len(data) < _COUNT.size:
        raise ScheduleCodecError(f"{len(data)} octets: too short for the count N")
    (count,) = _COUNT.unpack_from(data)
    return int(count)


def _read_counted(data: bytes) -> list[TimeTaggedTc]:
    count = _count(data)
    offset = _COUNT.size
    activities = []
    for i in range(count):
        activity, offset = _read_activity(data, offset, i)
        activities.append(activity)
    if offset != len(data):
        raise ScheduleCodecError(f"{len(data) - offset} octets after activity {count - 1}")
    return activities


def _time(data: bytes, offset: int, index: int) -> CdsTime:
    try:
        return CdsTime.unpack(data, offset)
    except PacketError as exc:
        raise ScheduleCodecError(f"activity {index}: release time: {exc.detail}", index) from None


def _read_activity(data: bytes, offset: int, index: int) -> tuple[TimeTaggedTc, int]:
    release = _time(data, offset, index)
    start = offset + CDS_LENGTH
    if len(data) - start < _TC_MINIMUM:
        raise ScheduleCodecError(
            f"activity {index}: {len(data) - start} octets, too short for a TC packet", index
        )
    end = start + packet_length_from_header(data, start)
    if end > len(data):
        raise ScheduleCodecError(
            f"activity {index}: its packet announces {end - start} octets, "
            f"{len(data) - start} follow",
            index,
        )
    return TimeTaggedTc(release, bytes(data[start:end])), end
