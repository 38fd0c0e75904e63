"""Errors of the link layer, each carrying a reason that counters and failure reports key on."""

from __future__ import annotations

import enum


class DiscardReason(enum.Enum):
    """Why a codeblock, CLTU, frame or packet was dropped; one counter per member."""

    # CLTU (ICD 2)
    CODEBLOCK_UNCORRECTABLE = "codeblock_uncorrectable"
    CLTU_TOO_LONG = "cltu_too_long"
    # TC frames (ICD 3, 4)
    FRAME_TOO_SHORT = "frame_too_short"
    FRAME_LENGTH = "frame_length"
    FRAME_FECF = "frame_fecf"
    FRAME_VERSION = "frame_version"
    FRAME_SCID = "frame_scid"
    FRAME_VCID = "frame_vcid"
    FRAME_TYPE = "frame_type"
    CONTROL_COMMAND = "control_command"
    FARM_RETRANSMIT = "farm_retransmit"
    FARM_NEGATIVE_WINDOW = "farm_negative_window"
    FARM_LOCKOUT = "farm_lockout"
    FARM_WAIT = "farm_wait"
    # Security processing of TC frames (docs/security.md), between the frame checks and FARM-1
    AUTH_TOO_SHORT = "auth_too_short"
    AUTH_UNKNOWN_SPI = "auth_unknown_spi"
    AUTH_BAD_MAC = "auth_bad_mac"
    AUTH_REPLAY = "auth_replay"
    # TM frames (ICD 6), on the ground
    TM_FRAME_FECF = "tm_frame_fecf"
    TM_FRAME_HEADER = "tm_frame_header"
    TM_PACKET_GAP = "tm_packet_gap"
    TM_FHP_MISMATCH = "tm_fhp_mismatch"
    # Space packets (ICD 5)
    PACKET_TOO_SHORT = "packet_too_short"
    PACKET_LENGTH = "packet_length"
    PACKET_CHECKSUM = "packet_checksum"
    PACKET_VERSION = "packet_version"
    PACKET_TYPE = "packet_type"
    PACKET_SECONDARY_HEADER = "packet_secondary_header"
    PACKET_APID = "packet_apid"
    PACKET_PUS_VERSION = "packet_pus_version"
    PACKET_SEQUENCE_FLAGS = "packet_sequence_flags"
    PACKET_TIME = "packet_time"


class LinkError(Exception):
    """Base of every error raised by spacelink."""


class DecodeError(LinkError):
    """Bytes that do not decode; `reason` says which check failed."""

    def __init__(self, reason: DiscardReason, detail: str) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail


class FrameError(DecodeError):
    """A transfer frame that fails a check of ICD sections 3, 4 or 6."""


class PacketError(DecodeError):
    """A space packet that fails a check of ICD sections 5 or 7."""


class Cop1Error(LinkError):
    """COP-1 could not deliver: the FOP gave up (alert) or refused a request."""
