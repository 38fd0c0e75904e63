"""PUS-C standard services of ICD section 8: failure codes and verification reports.

Mission services (128 and up) and their failure codes (256 and up) live in `telemetry_defs/`.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

from spacelink.errors import DiscardReason, PacketError
from spacelink.spacepacket import REQUEST_ID_LENGTH, RequestId

VERIFICATION_SERVICE = 1
HOUSEKEEPING_SERVICE = 3
EVENT_SERVICE = 5
TEST_SERVICE = 17
PARAMETER_SERVICE = 20

ARE_YOU_ALIVE = 1
ARE_YOU_ALIVE_REPORT = 2


class FailureCode(enum.IntEnum):
    """Failure codes of ICD section 8 (u16 in every failure report)."""

    ILLEGAL_APID = 1
    BAD_PACKET_LENGTH = 2
    BAD_PACKET_CHECKSUM = 3
    UNKNOWN_SERVICE = 4
    UNKNOWN_SUBTYPE = 5
    BAD_APPLICATION_DATA = 6
    NOT_AUTHORISED = 7
    RESOURCES_EXHAUSTED = 8
    NOT_ALLOWED_IN_MODE = 9
    EXECUTION_FAILED = 10


def failure_name(code: int) -> str:
    """A readable name for a failure code (standard codes; mission codes by number)."""
    try:
        return FailureCode(code).name.lower().replace("_", " ")
    except ValueError:
        return f"code {code}"


class Stage(enum.IntEnum):
    """Verification stage; the value is the subtype of its success report (failure is +1)."""

    ACCEPTANCE = 1
    START = 3
    PROGRESS = 5
    COMPLETION = 7

    @property
    def label(self) -> str:
        return {1: "accepted", 3: "started", 5: "progress", 7: "completed"}[self.value]


_CODE = struct.Struct(">H")


@dataclass(frozen=True, slots=True)
class VerificationReport:
    """The source data of one TM[1,x] report (ICD 8)."""

    stage: Stage
    success: bool
    request_id: RequestId
    step: int | None = None
    failure_code: int | None = None
    failure_data: bytes = b""

    @property
    def subtype(self) -> int:
        return int(self.stage) + (0 if self.success else 1)

    def pack(self) -> bytes:
        out = self.request_id.pack()
        if self.stage is Stage.PROGRESS:
            out += bytes([self.step or 0])
        if not self.success:
            out += _CODE.pack(self.failure_code or 0) + self.failure_data
        return out

    @classmethod
    def unpack(cls, subtype: int, data: bytes) -> VerificationReport:
        if not 1 <= subtype <= 8:
            raise PacketError(DiscardReason.PACKET_LENGTH, f"TM[1,{subtype}] is not a report")
        stage = Stage(subtype - (0 if subtype % 2 else 1))
        success = bool(subtype % 2)
        request_id = RequestId.unpack(data)
        pos = REQUEST_ID_LENGTH
        step = None
        if stage is Stage.PROGRESS:
            if len(data) < pos + 1:
                raise PacketError(DiscardReason.PACKET_TOO_SHORT, "progress report without step")
            step = data[pos]
            pos += 1
        code = None
        extra = b""
        if not success:
            if len(data) < pos + 2:
                raise PacketError(DiscardReason.PACKET_TOO_SHORT, "failure report without code")
            (code,) = _CODE.unpack_from(data, pos)
            extra = bytes(data[pos + 2 :])
        return cls(stage, success, request_id, step, code, extra)
