"""Space packets, PUS-C TC/TM, CDS time, request IDs and verification reports (ICD 5, 7, 8)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import pytest
from hypothesis import assume, example, given
from hypothesis import strategies as st

from spacelink.cdstime import CdsTime
from spacelink.errors import DiscardReason, PacketError
from spacelink.pus import Stage, VerificationReport
from spacelink.spacepacket import (
    AckFlags,
    PacketType,
    PrimaryHeader,
    PusTc,
    PusTm,
    RequestId,
    SequenceFlags,
    idle_packet,
)
from tests.unit.spacelink.codec_strategies import (
    QUICK,
    REPORT_SUBTYPES,
    cds_times,
    crc16,
    flip_bits,
    primary_headers,
    pus_tcs,
    pus_tms,
    request_ids,
    reseal,
    verification_reports,
)

# ---------------------------------------------------------------------------------------------
# Round trips


@QUICK
@given(primary_headers)
def test_primary_header_round_trip(header: PrimaryHeader) -> None:
    packed = header.pack()
    assert len(packed) == 6
    assert PrimaryHeader.unpack(packed) == header
    assert int.from_bytes(packed[4:6], "big") == header.data_length
    assert header.packet_length == header.data_length + 7


def test_primary_header_bit_layout() -> None:
    # 000 1 1 00001100100: version 0, TC, secondary header, APID 100; 01 + count 5; length 6
    header = PrimaryHeader(PacketType.TC, 100, 5, 6, seq_flags=SequenceFlags.FIRST)
    assert header.pack() == bytes.fromhex("1864 4005 0006")
    # 101 0 0 11111111111: version 5, TM, no secondary header, APID 0x7FF; 10 + 0x3FFF
    odd = PrimaryHeader(PacketType.TM, 0x7FF, 0x3FFF, 0xFFFF, False, SequenceFlags.LAST, 5)
    assert odd.pack() == bytes.fromhex("a7ff bfff ffff")


@QUICK
@given(pus_tcs)
def test_pus_tc_round_trip(tc: PusTc) -> None:
    packed = tc.pack()
    assert len(packed) == 6 + 5 + len(tc.app_data) + 2
    assert int.from_bytes(packed[4:6], "big") == len(packed) - 7
    assert crc16(packed[:-2]) == int.from_bytes(packed[-2:], "big")
    assert PusTc.unpack(packed) == tc


@QUICK
@given(pus_tms)
def test_pus_tm_round_trip(tm: PusTm) -> None:
    packed = tm.pack()
    assert len(packed) == 6 + 14 + len(tm.source_data) + 2
    assert int.from_bytes(packed[4:6], "big") == len(packed) - 7
    assert packed[13:20] == tm.time.pack()
    assert crc16(packed[:-2]) == int.from_bytes(packed[-2:], "big")
    assert PusTm.unpack(packed) == tm


@QUICK
@given(pus_tcs)
def test_pus_tc_unpack_accepts_any_buffer_type(tc: PusTc) -> None:
    packed = tc.pack()
    assert PusTc.unpack(bytearray(packed)) == tc
    assert PusTc.unpack(memoryview(packed)) == tc


def test_tc_octets_match_the_icd() -> None:
    # 18 64: TC, sec. header, APID 100 | C0 2A: unsegmented, count 42 | 00 08: 9 data octets
    # 29: PUS 2, acks acceptance + completion | 11 01: TC[17,1] | 01 02: source 0x102 | 'hi'
    tc = PusTc(100, 17, 1, b"hi", 42, 0x102, AckFlags.ACCEPTANCE | AckFlags.COMPLETION)
    packed = tc.pack()
    assert packed[:-2] == bytes.fromhex("1864 c02a 0008 29 11 01 0102") + b"hi"
    assert packed[-2:] == crc16(packed[:-2]).to_bytes(2, "big")


def test_tm_octets_match_the_icd() -> None:
    # 08 64: TM, sec. header, APID 100 | C0 07 | 00 11: 18 data octets | 20: PUS 2, time ref 0
    # 03 19: TM[3,25] | 00 09: type counter | 00 03: destination | 40 5DC0 000003E8: CDS time
    tm = PusTm(100, 3, 25, b"\x00\x01", 7, 9, 3, CdsTime(24000, 1000))
    assert tm.pack().hex() == "0864c007001120031900090003405dc0000003e800013f74"


@QUICK
@given(cds_times)
def test_cds_time_round_trip(time: CdsTime) -> None:
    packed = time.pack()
    assert len(packed) == 7 and packed[0] == 0x40
    assert int.from_bytes(packed[1:3], "big") == time.days
    assert int.from_bytes(packed[3:7], "big") == time.ms_of_day
    assert CdsTime.unpack(packed) == time
    assert CdsTime.unpack(b"\xaa\xbb" + packed, offset=2) == time


@QUICK
@given(st.integers(0, 0xFFFF), st.integers(0, 86_399_999))
def test_cds_time_through_unix_time_and_back(days: int, ms: int) -> None:
    time = CdsTime(days, ms)
    assert CdsTime.from_unix(time.to_unix()) == time


@QUICK
@given(st.floats(min_value=-4383 * 86400, max_value=2.0**32, allow_nan=False))
def test_unix_time_through_cds_time_and_back(seconds: float) -> None:
    assert CdsTime.from_unix(seconds).to_unix() == pytest.approx(seconds, abs=0.0005 + 1e-6)


@QUICK
@given(st.integers(-4383 * 86_400_000, 2**42))
def test_whole_milliseconds_survive_unix_time_exactly(ms: int) -> None:
    time = CdsTime.from_unix(ms / 1000)
    assert (time.days - 4383) * 86_400_000 + time.ms_of_day == ms


@pytest.mark.parametrize(
    ("when", "days", "ms"),
    [
        (dt.datetime(1958, 1, 1, tzinfo=dt.UTC), 0, 0),
        (dt.datetime(1970, 1, 1, tzinfo=dt.UTC), 4383, 0),
        (dt.datetime(2000, 1, 1, 12, tzinfo=dt.UTC), 15340, 43_200_000),  # J2000
        (dt.datetime(2026, 11, 25, 1, 2, 3, 456_000, tzinfo=dt.UTC), 25165, 3_723_456),
    ],
)
def test_cds_time_of_known_dates(when: dt.datetime, days: int, ms: int) -> None:
    time = CdsTime.from_unix(when.timestamp())
    assert (time.days, time.ms_of_day) == (days, ms)
    assert time.to_datetime() == when
    assert time.to_unix() == pytest.approx(when.timestamp(), abs=1e-6)


def test_cds_time_range() -> None:
    CdsTime(0xFFFF, 86_400_999)  # the last day, in a leap second
    for days, ms in [(-1, 0), (0x10000, 0), (0, -1), (0, 86_401_000)]:
        with pytest.raises(ValueError):
            CdsTime(days, ms)


@QUICK
@given(request_ids)
def test_request_id_round_trip(rid: RequestId) -> None:
    packed = rid.pack()
    assert packed == rid.word0.to_bytes(2, "big") + rid.word1.to_bytes(2, "big")
    assert RequestId.unpack(packed) == rid
    assert RequestId.unpack(b"\x00" * 3 + packed, offset=3) == rid
    assert (rid.apid, rid.seq_count) == (rid.word0 & 0x7FF, rid.word1 & 0x3FFF)


@QUICK
@given(pus_tcs)
def test_request_id_of_a_tc_is_its_first_four_octets(tc: PusTc) -> None:
    packed = tc.pack()
    assert tc.request_id.pack() == packed[:4]
    assert RequestId.of_packet(packed) == tc.request_id
    assert (tc.request_id.apid, tc.request_id.seq_count) == (tc.apid, tc.seq_count)


@pytest.mark.parametrize("subtype", range(1, 9))
@QUICK
@given(data=st.data())
def test_verification_report_round_trip(subtype: int, data: st.DataObject) -> None:
    report = data.draw(verification_reports(subtype))
    assert report.subtype == subtype
    packed = report.pack()
    assert VerificationReport.unpack(subtype, packed) == report
    # ICD 8 layout: request ID [+ step u8] [+ failure code u16 + data]
    stage, success = REPORT_SUBTYPES[subtype]
    expected = report.request_id.pack()
    if stage is Stage.PROGRESS:
        expected += bytes([report.step or 0])
    if not success:
        expected += (report.failure_code or 0).to_bytes(2, "big") + report.failure_data
    assert packed == expected


@QUICK
@given(verification_reports(), cds_times)
def test_verification_report_inside_a_tm_packet(report: VerificationReport, when: CdsTime) -> None:
    tm = PusTm(100, 1, report.subtype, report.pack(), time=when)
    parsed = PusTm.unpack(tm.pack())
    assert (parsed.service, parsed.subtype) == (1, report.subtype)
    assert VerificationReport.unpack(parsed.subtype, parsed.source_data) == report


# ---------------------------------------------------------------------------------------------
# Error paths


def reason_of(parse: Callable[[bytes], object], data: bytes) -> DiscardReason:
    with pytest.raises(PacketError) as info:
        parse(data)
    return info.value.reason


def patched(packet: bytes, index: int, mask: int, value: int) -> bytes:
    """`packet` with the `mask` bits of octet `index` replaced by `value`, PEC recomputed."""
    raw = bytearray(packet)
    raw[index] = (raw[index] & ~mask & 0xFF) | (value & mask)
    return reseal(bytes(raw))


@QUICK
@given(st.one_of(pus_tcs, pus_tms), st.data())
def test_truncated_packets(packet: PusTc | PusTm, data: st.DataObject) -> None:
    packed = packet.pack()
    cut = data.draw(st.integers(0, len(packed) - 1))
    expected = DiscardReason.PACKET_TOO_SHORT if cut < 6 else DiscardReason.PACKET_LENGTH
    assert reason_of(type(packet).unpack, packed[:cut]) is expected


@QUICK
@given(st.one_of(pus_tcs, pus_tms), st.binary(min_size=1, max_size=10))
def test_packets_with_extra_octets(packet: PusTc | PusTm, extra: bytes) -> None:
    assert reason_of(type(packet).unpack, packet.pack() + extra) is DiscardReason.PACKET_LENGTH


@QUICK
@given(st.one_of(pus_tcs, pus_tms), st.integers(1, 0xFFFF))
def test_length_field_mismatch(packet: PusTc | PusTm, delta: int) -> None:
    raw = bytearray(packet.pack())
    length = (int.from_bytes(raw[4:6], "big") + delta) & 0xFFFF
    raw[4:6] = length.to_bytes(2, "big")
    assert reason_of(type(packet).unpack, reseal(bytes(raw))) is DiscardReason.PACKET_LENGTH


@QUICK
@given(st.one_of(pus_tcs, pus_tms), st.data())
def test_any_single_bit_error_is_detected(packet: PusTc | PusTm, data: st.DataObject) -> None:
    packed = packet.pack()
    bit = data.draw(st.integers(0, len(packed) * 8 - 1))
    reason = reason_of(type(packet).unpack, flip_bits(packed, bit))
    in_length_field = 32 <= bit < 48
    expected = DiscardReason.PACKET_LENGTH if in_length_field else DiscardReason.PACKET_CHECKSUM
    assert reason is expected


@QUICK
@given(st.one_of(pus_tcs, pus_tms), st.integers(0, 0xFFFF))
def test_wrong_packet_error_control(packet: PusTc | PusTm, pec: int) -> None:
    packed = packet.pack()
    assume(pec != int.from_bytes(packed[-2:], "big"))
    bad = packed[:-2] + pec.to_bytes(2, "big")
    assert reason_of(type(packet).unpack, bad) is DiscardReason.PACKET_CHECKSUM


@QUICK
@given(st.one_of(pus_tcs, pus_tms), st.integers(1, 7))
def test_wrong_packet_version(packet: PusTc | PusTm, version: int) -> None:
    bad = patched(packet.pack(), 0, 0xE0, version << 5)
    assert reason_of(type(packet).unpack, bad) is DiscardReason.PACKET_VERSION


@QUICK
@given(st.one_of(pus_tcs, pus_tms))
def test_wrong_packet_type(packet: PusTc | PusTm) -> None:
    packed = packet.pack()
    bad = patched(packed, 0, 0x10, ~packed[0])  # TC <-> TM
    assert reason_of(type(packet).unpack, bad) is DiscardReason.PACKET_TYPE


@QUICK
@given(st.one_of(pus_tcs, pus_tms))
def test_secondary_header_flag_zero(packet: PusTc | PusTm) -> None:
    bad = patched(packet.pack(), 0, 0x08, 0)
    assert reason_of(type(packet).unpack, bad) is DiscardReason.PACKET_SECONDARY_HEADER


@QUICK
@given(st.one_of(pus_tcs, pus_tms), st.integers(0, 15).filter(lambda v: v != 2))
def test_pus_version_other_than_2(packet: PusTc | PusTm, version: int) -> None:
    bad = patched(packet.pack(), 6, 0xF0, version << 4)
    assert reason_of(type(packet).unpack, bad) is DiscardReason.PACKET_PUS_VERSION


@QUICK
@given(st.one_of(pus_tcs, pus_tms), st.sampled_from([0b00, 0b01, 0b10]))
def test_segmented_sequence_flags(packet: PusTc | PusTm, flags: int) -> None:
    bad = patched(packet.pack(), 2, 0xC0, flags << 6)
    assert reason_of(type(packet).unpack, bad) is DiscardReason.PACKET_SEQUENCE_FLAGS


@QUICK
@given(pus_tms, st.integers(0, 0xFF).filter(lambda p: p != 0x40))
def test_bad_cds_p_field_in_a_tm(tm: PusTm, pfield: int) -> None:
    bad = patched(tm.pack(), 13, 0xFF, pfield)
    assert reason_of(PusTm.unpack, bad) is DiscardReason.PACKET_TIME


@QUICK
@given(pus_tms, st.integers(86_401_000, 0xFFFF_FFFF))
def test_milliseconds_of_day_out_of_range_in_a_tm(tm: PusTm, ms: int) -> None:
    raw = bytearray(tm.pack())
    raw[16:20] = ms.to_bytes(4, "big")
    assert reason_of(PusTm.unpack, reseal(bytes(raw))) is DiscardReason.PACKET_TIME


@QUICK
@given(cds_times, st.integers(0, 0xFF).filter(lambda p: p != 0x40))
@example(CdsTime(0, 0), 0x4C)  # CDS with a 24-bit day segment: not the ICD's short form
def test_bad_cds_p_field(time: CdsTime, pfield: int) -> None:
    bad = bytes([pfield]) + time.pack()[1:]
    assert reason_of(CdsTime.unpack, bad) is DiscardReason.PACKET_TIME


@pytest.mark.parametrize("length", range(7))
def test_truncated_cds_time(length: int) -> None:
    packed = CdsTime(21000, 5).pack()
    assert reason_of(CdsTime.unpack, packed[:length]) is DiscardReason.PACKET_TOO_SHORT


def test_self_consistent_packets_below_the_pus_minimum() -> None:
    tiny = bytes.fromhex("1864 c000 0000 00")  # a valid 7-octet space packet, no PUS header
    assert reason_of(PusTc.unpack, tiny) is DiscardReason.PACKET_TOO_SHORT
    short_tm = PusTc(100, 17, 1, bytes(8)).pack()  # 21 octets, one short of any PUS TM
    assert reason_of(PusTm.unpack, short_tm) is DiscardReason.PACKET_TOO_SHORT


@QUICK
@given(request_ids, st.data())
def test_truncated_request_id(rid: RequestId, data: st.DataObject) -> None:
    cut = data.draw(st.integers(0, 3))
    assert reason_of(RequestId.unpack, rid.pack()[:cut]) is DiscardReason.PACKET_TOO_SHORT


@pytest.mark.parametrize("subtype", range(1, 9))
def test_truncated_verification_reports(subtype: int) -> None:
    stage, success = REPORT_SUBTYPES[subtype]
    report = VerificationReport(
        stage,
        success,
        RequestId(0x1864, 0xC001),
        step=9 if stage is Stage.PROGRESS else None,
        failure_code=None if success else 6,
    )
    packed = report.pack()
    for cut in range(len(packed)):
        assert reason_of(lambda d: VerificationReport.unpack(subtype, d), packed[:cut]) is (
            DiscardReason.PACKET_TOO_SHORT
        )


@pytest.mark.parametrize("subtype", [0, 9, 255])
def test_verification_report_of_an_unknown_subtype(subtype: int) -> None:
    with pytest.raises(PacketError):
        VerificationReport.unpack(subtype, bytes(8))


@pytest.mark.parametrize("length", [7, 8, 100, 1103])
def test_idle_packet(length: int) -> None:
    packet = idle_packet(length, seq_count=3)
    assert len(packet) == length
    assert packet[:4] == bytes.fromhex("07ff c003")  # TM, no secondary header, APID 0x7FF
    assert int.from_bytes(packet[4:6], "big") == length - 7


def test_idle_packet_needs_seven_octets() -> None:
    with pytest.raises(ValueError):
        idle_packet(6)
