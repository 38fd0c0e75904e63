"""Space packets, PUS-C headers, CDS time, request IDs and verification reports (ICD 5, 7, 8)."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from spacelink.cdstime import CdsTime
from spacelink.crc import crc16_ccitt
from spacelink.errors import DiscardReason, PacketError
from spacelink.pus import Stage, VerificationReport
from spacelink.spacepacket import (
    PacketType,
    PrimaryHeader,
    PusTc,
    PusTm,
    RequestId,
    SequenceFlags,
    idle_packet,
)
from tests.unit.spacelink.strategies import apids, cds_times, pus_tcs, pus_tms, seq_counts


@given(
    st.builds(
        PrimaryHeader,
        packet_type=st.sampled_from(list(PacketType)),
        apid=st.integers(0, 0x7FF),
        seq_count=seq_counts,
        data_length=st.integers(0, 0xFFFF),
        sec_header_flag=st.booleans(),
        seq_flags=st.sampled_from(list(SequenceFlags)),
        version=st.integers(0, 7),
    )
)
def test_primary_header_round_trip(header: PrimaryHeader) -> None:
    packed = header.pack()
    assert len(packed) == 6
    assert PrimaryHeader.unpack(packed) == header


@given(pus_tcs)
def test_pus_tc_round_trip(tc: PusTc) -> None:
    assert PusTc.unpack(tc.pack()) == tc


@given(pus_tms)
def test_pus_tm_round_trip(tm: PusTm) -> None:
    assert PusTm.unpack(tm.pack()) == tm


@given(cds_times)
def test_cds_time_round_trip(time: CdsTime) -> None:
    packed = time.pack()
    assert len(packed) == 7 and packed[0] == 0x40
    assert CdsTime.unpack(packed) == time


@given(st.integers(0, 2**32 - 1))
def test_cds_time_from_unix_milliseconds(ms: int) -> None:
    assert CdsTime.from_unix(ms / 1000).to_unix() == pytest.approx(ms / 1000, abs=1e-6)


def test_cds_time_epoch_and_a_known_date() -> None:
    assert CdsTime.from_unix(0) == CdsTime(4383, 0)  # 1970-01-01 is day 4383 after 1958-01-01
    t = CdsTime.from_unix(dt.datetime(2026, 11, 24, 12, 0, 0, 500_000, dt.UTC).timestamp())
    assert t.to_datetime() == dt.datetime(2026, 11, 24, 12, 0, 0, 500_000, dt.UTC)
    assert str(t) == "2026-11-24T12:00:00.500Z"


@given(apids, seq_counts)
def test_request_id_is_the_first_four_octets_of_the_tc(apid: int, seq: int) -> None:
    tc = PusTc(apid, 17, 1, seq_count=seq)
    packed = tc.pack()
    assert tc.request_id.pack() == packed[:4]
    assert RequestId.of_packet(packed) == tc.request_id
    assert (tc.request_id.apid, tc.request_id.seq_count) == (apid, seq)


@st.composite
def reports(draw: st.DrawFn) -> VerificationReport:
    stage = draw(st.sampled_from(list(Stage)))
    success = draw(st.booleans())
    return VerificationReport(
        stage,
        success,
        RequestId(0x1800 | draw(apids), 0xC000 | draw(seq_counts)),
        step=draw(st.integers(0, 255)) if stage is Stage.PROGRESS else None,
        failure_code=None if success else draw(st.integers(0, 0xFFFF)),
        failure_data=b"" if success else draw(st.binary(max_size=20)),
    )


@given(reports())
def test_verification_report_round_trip_all_eight_subtypes(report: VerificationReport) -> None:
    assert report.subtype == int(report.stage) + (0 if report.success else 1)
    assert VerificationReport.unpack(report.subtype, report.pack()) == report


def test_verification_report_layout() -> None:
    rid = RequestId(0x1864, 0xC005)
    assert VerificationReport(Stage.ACCEPTANCE, True, rid).pack() == bytes.fromhex("1864c005")
    assert VerificationReport(Stage.PROGRESS, True, rid, step=3).pack().hex() == "1864c00503"
    failed = VerificationReport(Stage.COMPLETION, False, rid, failure_code=10, failure_data=b"x")
    assert failed.subtype == 8 and failed.pack() == bytes.fromhex("1864c005000a") + b"x"


def test_tc_layout_matches_the_icd() -> None:
    # 18 64: TC, sec. header, APID 100; C0 05: unsegmented, seq 5; 00 06: 7 data octets;
    # 2F: PUS 2, all acks; 11 01: TC[17,1]; 00 03: source 3; then the CRC
    packed = PusTc(100, 17, 1, seq_count=5, source_id=3).pack()
    assert packed[:11] == bytes.fromhex("1864c005 00062f 1101 0003")
    assert crc16_ccitt(packed) == 0


def test_idle_packet() -> None:
    packet = idle_packet(10)
    header = PrimaryHeader.unpack(packet)
    assert (header.apid, header.packet_length, header.sec_header_flag) == (0x7FF, 10, False)
    with pytest.raises(ValueError):
        idle_packet(6)


def corrupt(packet: bytes, index: int, value: int, *, fix_crc: bool = True) -> bytes:
    raw = bytearray(packet)
    raw[index] = value
    if fix_crc:
        raw[-2:] = crc16_ccitt(bytes(raw[:-2])).to_bytes(2, "big")
    return bytes(raw)


TC = PusTc(100, 17, 1, b"abc", seq_count=9).pack()
TM = PusTm(100, 3, 25, b"abc", seq_count=9).pack()


@pytest.mark.parametrize(
    ("packet", "reason"),
    [
        (TC[:5], DiscardReason.PACKET_TOO_SHORT),
        (TC[:-1], DiscardReason.PACKET_LENGTH),
        (TC + b"\x00", DiscardReason.PACKET_LENGTH),
        (corrupt(TC, 13, 0, fix_crc=False), DiscardReason.PACKET_CHECKSUM),
        (corrupt(TC, 0, 0x38), DiscardReason.PACKET_VERSION),  # version 1
        (corrupt(TC, 0, 0x08), DiscardReason.PACKET_TYPE),  # TM
        (corrupt(TC, 0, 0x10), DiscardReason.PACKET_SECONDARY_HEADER),
        (corrupt(TC, 2, 0x40), DiscardReason.PACKET_SEQUENCE_FLAGS),  # first segment
        (corrupt(TC, 6, 0x1F), DiscardReason.PACKET_PUS_VERSION),  # PUS-A
    ],
)
def test_tc_checks(packet: bytes, reason: DiscardReason) -> None:
    with pytest.raises(PacketError) as info:
        PusTc.unpack(packet)
    assert info.value.reason is reason


@pytest.mark.parametrize(
    ("packet", "reason"),
    [
        (TM[:-3], DiscardReason.PACKET_LENGTH),
        (corrupt(TM, 20, 0, fix_crc=False), DiscardReason.PACKET_CHECKSUM),
        (corrupt(TM, 0, 0x18), DiscardReason.PACKET_TYPE),
        (corrupt(TM, 13, 0x41), DiscardReason.PACKET_TIME),  # P-field
        (corrupt(TM, 6, 0x10), DiscardReason.PACKET_PUS_VERSION),
    ],
)
def test_tm_checks(packet: bytes, reason: DiscardReason) -> None:
    with pytest.raises(PacketError) as info:
        PusTm.unpack(packet)
    assert info.value.reason is reason


def test_a_too_short_tm_is_rejected() -> None:
    short = PusTc(100, 1, 1).pack()  # a valid packet, but shorter than any PUS TM
    with pytest.raises(PacketError) as info:
        PusTm.unpack(short)
    assert info.value.reason is DiscardReason.PACKET_TOO_SHORT
