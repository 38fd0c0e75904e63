"""Hypothesis strategies and small helpers shared by the codec, link and interop tests.

The helpers deliberately avoid spacelink's own CRC: checksums are recomputed with `fastcrc`
(an independent CRC-16/CCITT-FALSE), so a broken `spacelink.crc` cannot hide in a fixture.
"""

from __future__ import annotations

import itertools
import struct

import fastcrc
from hypothesis import settings
from hypothesis import strategies as st

from spacelink.cdstime import CdsTime
from spacelink.icd import ATTACHED_SYNC_MARKER, TM_DATA_LENGTH
from spacelink.pus import Stage, VerificationReport
from spacelink.spacepacket import (
    AckFlags,
    PacketType,
    PrimaryHeader,
    PusTc,
    PusTm,
    RequestId,
    SequenceFlags,
)
from spacelink.tcframe import FrameType, TcFrame
from spacelink.tmframe import TmFrame

# Example budgets: the whole folder has to stay well under a minute on two cores.
QUICK = settings(max_examples=150, deadline=None)
MEDIUM = settings(max_examples=100, deadline=None)
HEAVY = settings(max_examples=50, deadline=None)

u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFF_FFFF)
scids = st.integers(0, 0x3FF)
apids = st.integers(0, 0x7FE)  # 0x7FF is the idle APID (ICD 5)
seq_counts = st.integers(0, 0x3FFF)
cds_times = st.builds(CdsTime, days=u16, ms_of_day=st.integers(0, 86_400_999))  # leap second
ack_flags = st.integers(0, 0xF).map(AckFlags)

primary_headers = st.builds(
    PrimaryHeader,
    packet_type=st.sampled_from(PacketType),
    apid=st.integers(0, 0x7FF),
    seq_count=seq_counts,
    data_length=u16,
    sec_header_flag=st.booleans(),
    seq_flags=st.sampled_from(SequenceFlags),
    version=st.integers(0, 7),
)

pus_tcs = st.builds(
    PusTc,
    apid=apids,
    service=u8,
    subtype=u8,
    app_data=st.binary(max_size=400),
    seq_count=seq_counts,
    source_id=u16,
    ack_flags=ack_flags,
)

pus_tms = st.builds(
    PusTm,
    apid=apids,
    service=u8,
    subtype=u8,
    source_data=st.binary(max_size=400),
    seq_count=seq_counts,
    msg_type_counter=u16,
    destination_id=u16,
    time=cds_times,
    time_ref_status=st.integers(0, 0xF),
)

request_ids = st.builds(RequestId, u16, u16)

# ICD 8: TM[1,1..8] = (stage, success); written out rather than derived from the code's formula.
REPORT_SUBTYPES: dict[int, tuple[Stage, bool]] = {
    1: (Stage.ACCEPTANCE, True),
    2: (Stage.ACCEPTANCE, False),
    3: (Stage.START, True),
    4: (Stage.START, False),
    5: (Stage.PROGRESS, True),
    6: (Stage.PROGRESS, False),
    7: (Stage.COMPLETION, True),
    8: (Stage.COMPLETION, False),
}


@st.composite
def verification_reports(draw: st.DrawFn, subtype: int | None = None) -> VerificationReport:
    if subtype is None:
        subtype = draw(st.integers(1, 8))
    stage, success = REPORT_SUBTYPES[subtype]
    return VerificationReport(
        stage=stage,
        success=success,
        request_id=draw(request_ids),
        step=draw(u8) if stage is Stage.PROGRESS else None,
        failure_code=None if success else draw(u16),
        failure_data=b"" if success else draw(st.binary(max_size=40)),
    )


# (bypass flag, control command flag) of each TC frame type, from ICD 3.
FRAME_FLAGS: dict[FrameType, tuple[bool, bool]] = {
    FrameType.AD: (False, False),
    FrameType.BD: (True, False),
    FrameType.BC: (True, True),
}


@st.composite
def tc_frames(
    draw: st.DrawFn, frame_type: FrameType | None = None, max_data: int = 1017
) -> TcFrame:
    kind = draw(st.sampled_from(FrameType)) if frame_type is None else frame_type
    bypass, control = FRAME_FLAGS[kind]
    return TcFrame(
        scid=draw(scids),
        vcid=draw(st.integers(0, 63)),
        seq=draw(u8) if kind is FrameType.AD else 0,
        data=draw(st.binary(min_size=1, max_size=max_data)),
        bypass=bypass,
        control=control,
    )


def tm_frames(scid: st.SearchStrategy[int] = scids) -> st.SearchStrategy[TmFrame]:
    return st.builds(
        TmFrame,
        scid=scid,
        vcid=st.integers(0, 7),
        mc_count=u8,
        vc_count=u8,
        fhp=st.integers(0, 0x7FF),
        data=st.binary(min_size=TM_DATA_LENGTH, max_size=TM_DATA_LENGTH),
        ocf=u32,
    )


@st.composite
def chunked(draw: st.DrawFn, data: bytes, max_cuts: int = 20) -> list[bytes]:
    """`data` cut at arbitrary points (empty pieces included)."""
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=max_cuts)))
    bounds = [0, *cuts, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


# Line noise that cannot contain a CLTU start sequence (it never holds the octet EB).
cltu_garbage = st.binary(max_size=60).map(lambda g: bytes(b for b in g if b != 0xEB))


def bit_distance(a: bytes, b: bytes) -> int:
    return sum((x ^ y).bit_count() for x, y in zip(a, b, strict=True))


def _no_marker_lookalike(garbage: bytes) -> bool:
    # No window starting in the garbage (running into the next marker) is within 3 bits of the
    # marker, so neither the search nor the locked tolerance can mistake garbage for a marker.
    padded = garbage + ATTACHED_SYNC_MARKER
    return all(
        bit_distance(padded[i : i + 4], ATTACHED_SYNC_MARKER) > 3 for i in range(len(garbage))
    )


tm_garbage = st.binary(max_size=300).filter(_no_marker_lookalike)


def flip_bits(data: bytes, *bits: int) -> bytes:
    """`data` with the given bit positions (0 = MSB of the first octet) inverted."""
    out = bytearray(data)
    for bit in bits:
        out[bit // 8] ^= 0x80 >> (bit % 8)
    return bytes(out)


def crc16(data: bytes) -> int:
    """CRC-16/CCITT-FALSE from an independent implementation."""
    return fastcrc.crc16.ibm_3740(bytes(data))


def reseal(packet_or_frame: bytes) -> bytes:
    """Replace the last two octets (PEC or FECF) with the right CRC of everything before them."""
    body = bytes(packet_or_frame[:-2])
    return body + crc16(body).to_bytes(2, "big")


def space_packet(number: int, size: int, apid: int = 100) -> bytes:
    """A TM space packet of exactly `size` octets (>= 7), told apart by `number`."""
    assert 7 <= size <= 0x10006 and apid != 0x7FF
    # version 000, type TM, secondary header 1, APID; unsegmented, count; data length - 1
    header = struct.pack(">HHH", 0x0800 | apid, 0xC000 | (number & 0x3FFF), size - 7)
    body = bytes((number * 31 + i) & 0xFF for i in range(size - 6))
    return header + body
