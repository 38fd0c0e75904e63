"""CCSDS day segmented time code (CCSDS 301.0-B), the short form of ICD section 7.

P-field 0x40 (CDS, epoch 1958-01-01, 16-bit day, no sub-millisecond field), then the day count
and the milliseconds of the day: 7 octets in all. The ICD keeps the time in UTC.
"""

from __future__ import annotations

import datetime as dt
import struct
from dataclasses import dataclass

from spacelink.errors import DiscardReason, PacketError

P_FIELD = 0x40
CDS_LENGTH = 7
MS_PER_DAY = 86_400_000
EPOCH = dt.datetime(1958, 1, 1, tzinfo=dt.UTC)
_UNIX_EPOCH_DAYS = (dt.date(1970, 1, 1) - EPOCH.date()).days  # 4383
_CDS = struct.Struct(">BHI")


@dataclass(frozen=True, slots=True, order=True)
class CdsTime:
    """Days since 1958-01-01 and milliseconds of that day (UTC)."""

    days: int
    ms_of_day: int

    def __post_init__(self) -> None:
        if not 0 <= self.days <= 0xFFFF:
            raise ValueError(f"CDS day {self.days} outside 0..65535")
        # 86 400 999 allows a leap second, as CCSDS 301.0-B does.
        if not 0 <= self.ms_of_day < MS_PER_DAY + 1000:
            raise ValueError(f"CDS milliseconds of day {self.ms_of_day} outside 0..86400999")

    @classmethod
    def epoch(cls) -> CdsTime:
        return cls(0, 0)

    @classmethod
    def from_unix(cls, seconds: float) -> CdsTime:
        ms = round(seconds * 1000)
        days, ms_of_day = divmod(ms, MS_PER_DAY)
        return cls(days + _UNIX_EPOCH_DAYS, ms_of_day)

    def to_unix(self) -> float:
        return (self.days - _UNIX_EPOCH_DAYS) * 86_400 + self.ms_of_day / 1000

    def to_datetime(self) -> dt.datetime:
        return EPOCH + dt.timedelta(days=self.days, milliseconds=self.ms_of_day)

    def pack(self) -> bytes:
        return _CDS.pack(P_FIELD, self.days, self.ms_of_day)

    @classmethod
    def unpack(cls, data: bytes | bytearray | memoryview, offset: int = 0) -> CdsTime:
        if len(data) - offset < CDS_LENGTH:
            raise PacketError(
                DiscardReason.PACKET_TOO_SHORT,
                f"a CDS time needs 7 octets, got {len(data) - offset}",
            )
        pfield, days, ms = _CDS.unpack_from(data, offset)
        if pfield != P_FIELD:
            raise PacketError(
                DiscardReason.PACKET_TIME, f"CDS P-field 0x{pfield:02X}, expected 0x40"
            )
        try:
            return cls(days, ms)
        except ValueError as exc:
            raise PacketError(DiscardReason.PACKET_TIME, str(exc)) from None

    def __str__(self) -> str:
        return self.to_datetime().strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
