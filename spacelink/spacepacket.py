"""Space packets (CCSDS 133.0-B) with PUS-C TC/TM secondary headers and packet error control.

ICD sections 5, 7 and 8. Parsing is strict: every field the ICD fixes is checked, and a failure
raises `PacketError` with the `DiscardReason` a counter or a PUS failure code keys on.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass, field

from spacelink.cdstime import CDS_LENGTH, CdsTime
from spacelink.crc import crc16
from spacelink.errors import DiscardReason, PacketError
from spacelink.icd import IDLE_APID

PRIMARY_HEADER_LENGTH = 6
PEC_LENGTH = 2
TC_SECONDARY_HEADER_LENGTH = 5
TM_SECONDARY_HEADER_LENGTH = 7 + CDS_LENGTH  # 14
PUS_VERSION = 2
MAX_SEQUENCE_COUNT = 0x3FFF
MAX_PACKET_LENGTH = PRIMARY_HEADER_LENGTH + 0x10000

_PRIMARY = struct.Struct(">HHH")
_TC_SECONDARY = struct.Struct(">BBBH")
_TM_SECONDARY = struct.Struct(">BBBHH")
_PEC = struct.Struct(">H")
_TC_HEADERS = struct.Struct(">HHHBBBH")
_TC_DATA_OFFSET = PRIMARY_HEADER_LENGTH + TC_SECONDARY_HEADER_LENGTH
_TM_DATA_OFFSET = PRIMARY_HEADER_LENGTH + TM_SECONDARY_HEADER_LENGTH
_TM_TIME_OFFSET = _TM_DATA_OFFSET - CDS_LENGTH
_TM_HEADERS = struct.Struct(">HHHBBBHH")


class PacketType(enum.IntEnum):
    TM = 0
    TC = 1


class SequenceFlags(enum.IntEnum):
    CONTINUATION = 0
    FIRST = 1
    LAST = 2
    UNSEGMENTED = 3


class AckFlags(enum.IntFlag):
    """Acknowledgement flags of a PUS-C TC: which success reports the sender wants (ICD 5)."""

    NONE = 0
    ACCEPTANCE = 0b0001
    START = 0b0010
    PROGRESS = 0b0100
    COMPLETION = 0b1000
    ALL = 0b1111


@dataclass(frozen=True, slots=True)
class PrimaryHeader:
    """The 6-octet space packet primary header."""

    packet_type: PacketType
    apid: int
    seq_count: int
    data_length: int
    """Octets in the packet data field minus one."""
    sec_header_flag: bool = True
    seq_flags: SequenceFlags = SequenceFlags.UNSEGMENTED
    version: int = 0

    @property
    def packet_length(self) -> int:
        """Total octets of the packet this header starts."""
        return self.data_length + 1 + PRIMARY_HEADER_LENGTH

    def pack(self) -> bytes:
        return _PRIMARY.pack(
            (self.version << 13)
            | (self.packet_type << 12)
            | (self.sec_header_flag << 11)
            | self.apid,
            (self.seq_flags << 14) | self.seq_count,
            self.data_length,
        )

    @classmethod
    def unpack(cls, data: bytes | bytearray | memoryview) -> PrimaryHeader:
        if len(data) < PRIMARY_HEADER_LENGTH:
            raise PacketError(
                DiscardReason.PACKET_TOO_SHORT,
                f"a primary header needs 6 octets, got {len(data)}",
            )
        word0, word1, length = _PRIMARY.unpack_from(data)
        return cls(
            packet_type=PacketType((word0 >> 12) & 1),
            apid=word0 & 0x7FF,
            seq_count=word1 & 0x3FFF,
            data_length=length,
            sec_header_flag=bool((word0 >> 11) & 1),
            seq_flags=SequenceFlags(word1 >> 14),
            version=word0 >> 13,
        )


def packet_length_from_header(data: bytes | bytearray | memoryview, offset: int = 0) -> int:
    """Total length of the packet whose primary header starts at `offset` (6 octets needed)."""
    return ((data[offset + 4] << 8) | data[offset + 5]) + 1 + PRIMARY_HEADER_LENGTH


def apid_from_header(data: bytes | bytearray | memoryview, offset: int = 0) -> int:
    return ((data[offset] << 8) | data[offset + 1]) & 0x7FF


@dataclass(frozen=True, slots=True)
class RequestId:
    """PUS request ID (ICD 8): packet version, type, sec. header flag, APID, seq. flags, count."""

    word0: int
    word1: int

    @property
    def apid(self) -> int:
        return self.word0 & 0x7FF

    @property
    def seq_count(self) -> int:
        return self.word1 & 0x3FFF

    def pack(self) -> bytes:
        return _REQUEST_ID.pack(self.word0, self.word1)

    @classmethod
    def unpack(cls, data: bytes | bytearray | memoryview, offset: int = 0) -> RequestId:
        if len(data) - offset < REQUEST_ID_LENGTH:
            raise PacketError(
                DiscardReason.PACKET_TOO_SHORT,
                f"a request ID needs 4 octets, got {len(data) - offset}",
            )
        return cls(*_REQUEST_ID.unpack_from(data, offset))

    @classmethod
    def of_packet(cls, packet: bytes | bytearray | memoryview) -> RequestId:
        """The request ID of a TC from its first four octets, readable even when the rest is bad."""
        return cls.unpack(packet)

    def __str__(self) -> str:
        return f"APID {self.apid} seq {self.seq_count}"


_REQUEST_ID = struct.Struct(">HH")
REQUEST_ID_LENGTH = 4


def _check_pec(packet: bytes | bytearray | memoryview) -> None:
    if crc16(packet) != 0:
        # A CRC over data plus its own big-endian CRC is zero exactly when the CRC matches.
        (found,) = _PEC.unpack_from(packet, len(packet) - PEC_LENGTH)
        expected = crc16(packet[:-PEC_LENGTH])
        raise PacketError(
            DiscardReason.PACKET_CHECKSUM,
            f"packet error control 0x{found:04X}, computed 0x{expected:04X}",
        )


def _check_length(packet: bytes | bytearray | memoryview, minimum: int) -> None:
    if len(packet) < PRIMARY_HEADER_LENGTH:
        raise PacketError(
            DiscardReason.PACKET_TOO_SHORT, f"{len(packet)} octets, a packet needs at least 7"
        )
    declared = packet_length_from_header(packet)
    if declared != len(packet):
        raise PacketError(
            DiscardReason.PACKET_LENGTH,
            f"header declares {declared} octets, {len(packet)} present",
        )
    if len(packet) < minimum:
        raise PacketError(
            DiscardReason.PACKET_TOO_SHORT,
            f"{len(packet)} octets, this packet kind needs at least {minimum}",
        )


def _check_pus(
    packet: bytes | bytearray | memoryview,
    word0: int,
    word1: int,
    vflags: int,
    packet_type: PacketType,
) -> None:
    """Checks shared by TC and TM, in the order that names the most likely cause first."""
    _check_pec(packet)
    if word0 >> 13:
        raise PacketError(DiscardReason.PACKET_VERSION, f"packet version {word0 >> 13}, expected 0")
    if (word0 >> 12) & 1 != packet_type:
        raise PacketError(
            DiscardReason.PACKET_TYPE,
            f"packet type {(word0 >> 12) & 1}, expected {int(packet_type)} ({packet_type.name})",
        )
    if not (word0 >> 11) & 1:
        raise PacketError(
            DiscardReason.PACKET_SECONDARY_HEADER, "secondary header flag 0, PUS needs 1"
        )
    if word1 >> 14 != SequenceFlags.UNSEGMENTED:
        raise PacketError(
            DiscardReason.PACKET_SEQUENCE_FLAGS,
            f"sequence flags {word1 >> 14:02b}, only unsegmented (11) is used",
        )
    if vflags >> 4 != PUS_VERSION:
        raise PacketError(
            DiscardReason.PACKET_PUS_VERSION, f"PUS version {vflags >> 4}, expected {PUS_VERSION}"
        )


@dataclass(frozen=True, slots=True)
class PusTc:
    """A PUS-C telecommand packet."""

    apid: int
    service: int
    subtype: int
    app_data: bytes = b""
    seq_count: int = 0
    source_id: int = 0
    ack_flags: AckFlags = AckFlags.ALL

    def pack(self) -> bytes:
        data_length = TC_SECONDARY_HEADER_LENGTH + len(self.app_data) + PEC_LENGTH - 1
        body = (
            _TC_HEADERS.pack(
                0x1800 | self.apid,  # version 0, type TC, secondary header present
                0xC000 | self.seq_count,  # unsegmented
                data_length,
                (PUS_VERSION << 4) | self.ack_flags,
                self.service,
                self.subtype,
                self.source_id,
            )
            + self.app_data
        )
        return body + _PEC.pack(crc16(body))

    @property
    def request_id(self) -> RequestId:
        return RequestId(0x1800 | self.apid, 0xC000 | self.seq_count)

    @classmethod
    def unpack(cls, packet: bytes | bytearray | memoryview) -> PusTc:
        """Parse one whole TC packet; checks length, PEC, the fixed fields and the PUS version."""
        _check_length(packet, PRIMARY_HEADER_LENGTH + TC_SECONDARY_HEADER_LENGTH + PEC_LENGTH)
        word0, word1, _, vflags, service, subtype, source_id = _TC_HEADERS.unpack_from(packet)
        _check_pus(packet, word0, word1, vflags, PacketType.TC)
        return cls(
            apid=word0 & 0x7FF,
            service=service,
            subtype=subtype,
            app_data=bytes(packet[_TC_DATA_OFFSET:-PEC_LENGTH]),
            seq_count=word1 & 0x3FFF,
            source_id=source_id,
            ack_flags=AckFlags(vflags & 0xF),
        )


@dataclass(frozen=True, slots=True)
class PusTm:
    """A PUS-C telemetry packet."""

    apid: int
    service: int
    subtype: int
    source_data: bytes = b""
    seq_count: int = 0
    msg_type_counter: int = 0
    destination_id: int = 0
    time: CdsTime = field(default_factory=CdsTime.epoch)
    time_ref_status: int = 0

    def pack(self) -> bytes:
        data_length = TM_SECONDARY_HEADER_LENGTH + len(self.source_data) + PEC_LENGTH - 1
        body = (
            _TM_HEADERS.pack(
                0x0800 | self.apid,  # version 0, type TM, secondary header present
                0xC000 | self.seq_count,
                data_length,
                (PUS_VERSION << 4) | self.time_ref_status,
                self.service,
                self.subtype,
                self.msg_type_counter,
                self.destination_id,
            )
            + self.time.pack()
            + self.source_data
        )
        return body + _PEC.pack(crc16(body))

    @classmethod
    def unpack(cls, packet: bytes | bytearray | memoryview) -> PusTm:
        """Parse one whole TM packet; checks length, PEC, the fixed fields and the PUS version."""
        _check_length(packet, PRIMARY_HEADER_LENGTH + TM_SECONDARY_HEADER_LENGTH + PEC_LENGTH)
        word0, word1, _, vflags, service, subtype, counter, dest = _TM_HEADERS.unpack_from(packet)
        _check_pus(packet, word0, word1, vflags, PacketType.TM)
        return cls(
            apid=word0 & 0x7FF,
            service=service,
            subtype=subtype,
            source_data=bytes(packet[_TM_DATA_OFFSET:-PEC_LENGTH]),
            seq_count=word1 & 0x3FFF,
            msg_type_counter=counter,
            destination_id=dest,
            time=CdsTime.unpack(packet, _TM_TIME_OFFSET),
            time_ref_status=vflags & 0xF,
        )


def idle_packet(length: int, seq_count: int = 0) -> bytes:
    """An idle packet (APID 0x7FF, no secondary header) of exactly `length` octets (>= 7)."""
    if length < PRIMARY_HEADER_LENGTH + 1:
        raise ValueError(f"an idle packet needs at least 7 octets, asked for {length}")
    header = _PRIMARY.pack(IDLE_APID, 0xC000 | seq_count, length - PRIMARY_HEADER_LENGTH - 1)
    return header + IDLE_FILL * (length - PRIMARY_HEADER_LENGTH)


IDLE_FILL = b"\x55"
