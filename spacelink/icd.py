"""The numbers of ICD v2 (../shared/ICD.md): mission defaults for both ends of the link.

Every other module takes these as defaults, so a mission configuration can override them in one
place; nothing else in the code base spells them out.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

SPACECRAFT_ID = 500
TC_VCID = 0
PAYLOAD_APID = 100
IDLE_APID = 0x7FF

# TC (ICD 3)
TC_MAX_FRAME_LENGTH = 1024
TC_HEADER_LENGTH = 5
TC_FECF_LENGTH = 2
TC_MAX_DATA_LENGTH = TC_MAX_FRAME_LENGTH - TC_HEADER_LENGTH - TC_FECF_LENGTH  # 1017

# COP-1 (ICD 4)
FARM_WINDOW_WIDTH = 32

# TM (ICD 6)
TM_FRAME_LENGTH = 1115
TM_HEADER_LENGTH = 6
TM_OCF_LENGTH = 4
TM_FECF_LENGTH = 2
TM_DATA_LENGTH = TM_FRAME_LENGTH - TM_HEADER_LENGTH - TM_OCF_LENGTH - TM_FECF_LENGTH  # 1103
TM_VCID_REALTIME = 0
TM_VCID_BULK = 1
TM_VCID_IDLE = 7
ATTACHED_SYNC_MARKER = bytes.fromhex("1ACFFC1D")

# TM channel coding (ICD 6a): Reed-Solomon (255,223) of CCSDS 131.0-B, E = 16, depth I = 5.
TM_RS_CORRECTABLE = 16  # E: symbol errors one codeword corrects
TM_RS_CHECK_SYMBOLS = 2 * TM_RS_CORRECTABLE  # 32 per codeword
TM_RS_CODEWORD_LENGTH = 255
TM_RS_DATA_SYMBOLS = TM_RS_CODEWORD_LENGTH - TM_RS_CHECK_SYMBOLS  # 223
TM_RS_INTERLEAVING = 5
TM_RS_FRAME_LENGTH = TM_RS_DATA_SYMBOLS * TM_RS_INTERLEAVING  # 1115: no virtual fill
TM_RS_CODEBLOCK_LENGTH = TM_RS_CODEWORD_LENGTH * TM_RS_INTERLEAVING  # 1275


class TmCoding(StrEnum):
    """TM channel coding of one end of the link (ICD 6a): Reed-Solomon, or none (ICD v1)."""

    RS = "rs"
    NONE = "none"


# Physical layer (ICD 1): 8N1, so ten line bits carry one octet.
DEFAULT_BAUD = 115200
LINE_BITS_PER_OCTET = 10

# Payload keeps the CLCW flowing at least this often (ICD 6).
IDLE_FRAME_INTERVAL_S = 1.0


@dataclass(frozen=True, slots=True)
class LinkParameters:
    """The mission's link configuration; the defaults are the ICD's."""

    scid: int = SPACECRAFT_ID
    tc_vcid: int = TC_VCID
    apid: int = PAYLOAD_APID
    tm_frame_length: int = TM_FRAME_LENGTH
    farm_window: int = FARM_WINDOW_WIDTH
    idle_interval_s: float = IDLE_FRAME_INTERVAL_S
    tm_coding: TmCoding = TmCoding.RS

    def __post_init__(self) -> None:
        if self.tm_coding == TmCoding.RS and self.tm_frame_length != TM_RS_FRAME_LENGTH:
            raise ValueError(
                f"Reed-Solomon coding needs {TM_RS_FRAME_LENGTH}-octet TM frames "
                f"(5 x 223), not {self.tm_frame_length}"
            )

    @property
    def tm_data_length(self) -> int:
        return self.tm_frame_length - TM_HEADER_LENGTH - TM_OCF_LENGTH - TM_FECF_LENGTH


def line_seconds(octets: int, baud: int) -> float:
    """Time an asynchronous 8N1 line needs to carry `octets`."""
    return octets * LINE_BITS_PER_OCTET / baud
