"""TC transfer frames (CCSDS 232.0-B, ICD section 3) and the COP-1 control commands."""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

from spacelink.crc import crc16
from spacelink.errors import DiscardReason, FrameError
from spacelink.icd import (
    TC_FECF_LENGTH,
    TC_HEADER_LENGTH,
    TC_MAX_DATA_LENGTH,
    TC_MAX_FRAME_LENGTH,
)

_HEADER = struct.Struct(">HHB")
_FECF = struct.Struct(">H")
MIN_FRAME_LENGTH = TC_HEADER_LENGTH + 1 + TC_FECF_LENGTH


def frame_length_from_header(header: bytes | bytearray | memoryview) -> int | None:
    """The frame length the first octets of a frame declare; None before its primary header."""
    if len(header) < TC_HEADER_LENGTH:
        return None
    return ((header[2] & 0x03) << 8 | header[3]) + 1


class FrameType(enum.Enum):
    """The three kinds of TC frame: (bypass flag, control command flag)."""

    AD = (False, False)  # sequence-controlled data, through FARM-1
    BD = (True, False)  # expedited data
    BC = (True, True)  # expedited control command for FARM-1


@dataclass(frozen=True, slots=True)
class TcFrame:
    """One TC transfer frame; `data` is its data field (whole space packets, or a command)."""

    scid: int
    vcid: int
    seq: int
    data: bytes
    bypass: bool = False
    control: bool = False

    @property
    def frame_type(self) -> FrameType:
        return FrameType((self.bypass, self.control))

    def primary_header(self, data_length: int) -> bytes:
        """The 5-octet primary header of this frame with a data field of `data_length` octets."""
        length = TC_HEADER_LENGTH + data_length + TC_FECF_LENGTH
        return _HEADER.pack(
            (self.bypass << 13) | (self.control << 12) | self.scid,
            (self.vcid << 10) | (length - 1),
            self.seq,
        )

    def pack(self) -> bytes:
        if not 1 <= len(self.data) <= TC_MAX_DATA_LENGTH:
            raise ValueError(f"TC frame data field of {len(self.data)} octets, 1..1017 allowed")
        body = self.primary_header(len(self.data)) + self.data
        return body + _FECF.pack(crc16(body))

    @classmethod
    def unpack(cls, data: bytes | bytearray | memoryview) -> TcFrame:
        """Parse the frame at the start of `data`; octets past its declared length are CLTU fill.

        Checks version, length and FECF. SCID and VCID are the receiver's to check.
        """
        if len(data) < MIN_FRAME_LENGTH:
            raise FrameError(
                DiscardReason.FRAME_TOO_SHORT,
                f"{len(data)} octets, a TC frame has at least {MIN_FRAME_LENGTH}",
            )
        word0, word1, seq = _HEADER.unpack_from(data)
        length = (word1 & 0x3FF) + 1
        if length < MIN_FRAME_LENGTH or length > len(data):
            raise FrameError(
                DiscardReason.FRAME_LENGTH,
                f"frame length field says {length} octets, {len(data)} received",
            )
        frame = data[:length]
        if crc16(frame) != 0:
            raise FrameError(DiscardReason.FRAME_FECF, "frame error control does not match")
        if word0 >> 14:
            raise FrameError(
                DiscardReason.FRAME_VERSION, f"transfer frame version {word0 >> 14}, expected 0"
            )
        bypass = bool((word0 >> 13) & 1)
        control = bool((word0 >> 12) & 1)
        if control and not bypass:
            raise FrameError(DiscardReason.FRAME_TYPE, "control command flag set on a type-A frame")
        return cls(
            scid=word0 & 0x3FF,
            vcid=word1 >> 10,
            seq=seq,
            data=bytes(frame[TC_HEADER_LENGTH:-TC_FECF_LENGTH]),
            bypass=bypass,
            control=control,
        )


assert TC_HEADER_LENGTH + TC_MAX_DATA_LENGTH + TC_FECF_LENGTH == TC_MAX_FRAME_LENGTH


@dataclass(frozen=True, slots=True)
class Unlock:
    """COP-1 control command Unlock (`00`)."""

    def pack(self) -> bytes:
        return b"\x00"


@dataclass(frozen=True, slots=True)
class SetVr:
    """COP-1 control command Set V(R) (`82 00 XX`)."""

    value: int

    def pack(self) -> bytes:
        return bytes((0x82, 0x00, self.value))


ControlCommand = Unlock | SetVr


def parse_control_command(data: bytes) -> ControlCommand:
    """Decode the data field of a BC frame (ICD 4)."""
    if data == b"\x00":
        return Unlock()
    if len(data) == 3 and data[0] == 0x82 and data[1] == 0x00:
        return SetVr(data[2])
    raise FrameError(
        DiscardReason.CONTROL_COMMAND,
        f"control command {data.hex(' ')} is neither Unlock (00) nor Set V(R) (82 00 XX)",
    )
