"""Interoperability with `spacepackets` 0.32, an independent CCSDS/PUS implementation."""

from __future__ import annotations

import datetime as dt

import fastcrc
from hypothesis import given
from hypothesis import strategies as st
from spacepackets.ccsds.spacepacket import (
    PacketId,
    PacketSeqCtrl,
    SpacePacketHeader,
)
from spacepackets.ccsds.spacepacket import PacketType as TheirPacketType
from spacepackets.ccsds.spacepacket import SequenceFlags as TheirSequenceFlags
from spacepackets.ccsds.time import CdsShortTimestamp
from spacepackets.ccsds.tm_frame import (
    MasterChannelId,
    TmFramePrimaryHeader,
    TmTransferFrame,
    TransferFrameDataFieldStatus,
)
from spacepackets.ecss.fields import PacketFieldU8, PacketFieldU16
from spacepackets.ecss.pus_1_verification import (
    FailureNotice,
    ManagedParamsVerification,
    Service1Tm,
    VerificationParams,
)
from spacepackets.ecss.req_id import RequestId as TheirRequestId
from spacepackets.ecss.tc import PusTc as TheirTc
from spacepackets.ecss.tc import generate_packet_crc
from spacepackets.ecss.tm import ManagedParams, MiscParams
from spacepackets.ecss.tm import PusTm as TheirTm

from spacelink.cdstime import CdsTime
from spacelink.crc import crc16_ccitt
from spacelink.icd import TM_DATA_LENGTH, TM_FRAME_LENGTH
from spacelink.pus import VerificationReport
from spacelink.spacepacket import AckFlags, PrimaryHeader, PusTc, PusTm, RequestId
from spacelink.tmframe import TmFrame
from tests.unit.spacelink.codec_strategies import (
    QUICK,
    apids,
    cds_times,
    primary_headers,
    pus_tcs,
    pus_tms,
    seq_counts,
    tm_frames,
    u8,
    u16,
    u32,
    verification_reports,
)

# ---------------------------------------------------------------------------------------------
# Space packet primary header


@QUICK
@given(primary_headers)
def test_our_primary_header_parses_in_spacepackets(header: PrimaryHeader) -> None:
    theirs = SpacePacketHeader.unpack(header.pack())
    assert (theirs.ccsds_version, int(theirs.packet_type), theirs.sec_header_flag) == (
        header.version,
        int(header.packet_type),
        header.sec_header_flag,
    )
    assert (theirs.apid, int(theirs.seq_flags), theirs.seq_count, theirs.data_len) == (
        header.apid,
        int(header.seq_flags),
        header.seq_count,
        header.data_length,
    )


@QUICK
@given(primary_headers)
def test_spacepackets_primary_header_parses_in_ours(header: PrimaryHeader) -> None:
    theirs = SpacePacketHeader(
        packet_type=TheirPacketType(int(header.packet_type)),
        apid=header.apid,
        seq_count=header.seq_count,
        data_len=header.data_length,
        sec_header_flag=header.sec_header_flag,
        seq_flags=TheirSequenceFlags(int(header.seq_flags)),
        ccsds_version=header.version,
    )
    assert PrimaryHeader.unpack(theirs.pack()) == header


# ---------------------------------------------------------------------------------------------
# PUS-C telecommands


@QUICK
@given(pus_tcs)
def test_our_tc_parses_in_spacepackets(tc: PusTc) -> None:
    packed = tc.pack()
    theirs = TheirTc.unpack(packed)  # also checks the CRC
    assert (theirs.ccsds_version, theirs.sp_header.packet_type) == (0, TheirPacketType.TC)
    assert theirs.sp_header.sec_header_flag is True
    assert theirs.sp_header.seq_flags == TheirSequenceFlags.UNSEGMENTED
    assert (theirs.apid, theirs.seq_count) == (tc.apid, tc.seq_count)
    assert (theirs.service, theirs.message_subtype) == (tc.service, tc.subtype)
    assert theirs.pus_tc_sec_header.pus_version == 2
    assert (theirs.source_id, theirs.pus_tc_sec_header.ack_flags) == (tc.source_id, tc.ack_flags)
    assert theirs.app_data == tc.app_data
    assert theirs.crc16 == packed[-2:]
    assert bytes(theirs.pack()) == packed


@QUICK
@given(apids, seq_counts, u8, u8, u16, st.integers(0, 15), st.binary(max_size=400))
def test_spacepackets_tc_parses_in_ours(
    apid: int, seq: int, service: int, subtype: int, source: int, ack: int, app_data: bytes
) -> None:
    theirs = TheirTc(
        service=service,
        message_subtype=subtype,
        apid=apid,
        seq_count=seq,
        source_id=source,
        ack_flags=ack,
        app_data=app_data,
    )
    raw = bytes(theirs.pack())
    ours = PusTc.unpack(raw)
    assert ours == PusTc(apid, service, subtype, app_data, seq, source, AckFlags(ack))
    assert ours.pack() == raw


# ---------------------------------------------------------------------------------------------
# PUS-C telemetry


@QUICK
@given(pus_tms)
def test_our_tm_parses_in_spacepackets(tm: PusTm) -> None:
    packed = tm.pack()
    theirs = TheirTm.unpack(packed, timestamp_len=7)  # also checks the CRC
    header = theirs.pus_tm_sec_header
    assert (theirs.ccsds_version, theirs.sp_header.packet_type) == (0, TheirPacketType.TM)
    assert theirs.sp_header.sec_header_flag is True
    assert theirs.seq_flags == TheirSequenceFlags.UNSEGMENTED
    assert (theirs.apid, theirs.seq_count) == (tm.apid, tm.seq_count)
    assert (theirs.service, theirs.message_subtype) == (tm.service, tm.subtype)
    assert (header.pus_version, header.spacecraft_time_ref) == (2, tm.time_ref_status)
    assert (header.message_counter, header.dest_id) == (tm.msg_type_counter, tm.destination_id)
    assert theirs.timestamp == tm.time.pack()
    stamp = CdsShortTimestamp.unpack(theirs.timestamp)
    assert (stamp.ccsds_days, stamp.ms_of_day) == (tm.time.days, tm.time.ms_of_day)
    assert theirs.source_data == tm.source_data
    assert bytes(theirs.pack()) == packed


@QUICK
@given(pus_tms)
def test_spacepackets_tm_parses_in_ours(tm: PusTm) -> None:
    theirs = TheirTm(
        service=tm.service,
        message_subtype=tm.subtype,
        timestamp=CdsShortTimestamp(tm.time.days, tm.time.ms_of_day).pack(),
        source_data=tm.source_data,
        apid=tm.apid,
        seq_count=tm.seq_count,
        message_counter=tm.msg_type_counter,
        destination_id=tm.destination_id,
        misc_params=MiscParams(spacecraft_time_ref=tm.time_ref_status),
    )
    raw = bytes(theirs.pack())
    assert PusTm.unpack(raw) == tm
    assert tm.pack() == raw


@QUICK
@given(st.integers(4383, 0xFFFF), st.integers(0, 86_399_999))
def test_cds_time_agrees_with_spacepackets(days: int, ms: int) -> None:
    ours, theirs = CdsTime(days, ms), CdsShortTimestamp(days, ms)
    assert ours.pack() == theirs.pack()
    assert ours.to_unix() == theirs.as_unix_seconds()
    # spacepackets goes through a float of Unix seconds: allow its rounding to the microsecond
    assert abs(ours.to_datetime() - theirs.as_datetime()) <= dt.timedelta(microseconds=1)


# ---------------------------------------------------------------------------------------------
# Request IDs and verification reports


@QUICK
@given(pus_tcs)
def test_request_ids_agree(tc: PusTc) -> None:
    packed = tc.pack()
    theirs = TheirRequestId.from_pus_tc(TheirTc.unpack(packed))
    assert theirs.pack() == tc.request_id.pack()
    parsed = TheirRequestId.unpack(tc.request_id.pack())
    assert (parsed.tc_packet_id.apid, parsed.tc_psc.seq_count) == (tc.apid, tc.seq_count)
    built = TheirRequestId(
        PacketId(TheirPacketType.TC, True, tc.apid),
        PacketSeqCtrl(TheirSequenceFlags.UNSEGMENTED, tc.seq_count),
    )
    assert RequestId.unpack(built.pack()) == tc.request_id


MANAGED = ManagedParams(timestamp_len=7)
VERIF = ManagedParamsVerification(bytes_step_id=1, bytes_err_code=2)  # ICD 8: u8 step, u16 code


@QUICK
@given(verification_reports(), cds_times)
def test_our_verification_reports_parse_in_spacepackets(
    report: VerificationReport, when: CdsTime
) -> None:
    packet = PusTm(100, 1, report.subtype, report.pack(), time=when).pack()
    theirs = Service1Tm.unpack(packet, MANAGED, VERIF)
    assert theirs.message_subtype == report.subtype
    assert theirs.tc_req_id.pack() == report.request_id.pack()
    step = theirs.step_id.val if theirs.step_id is not None else None
    assert step == report.step
    if report.success:
        assert not theirs.has_failure_notice
    else:
        assert theirs.failure_notice is not None
        assert theirs.failure_notice.code.val == report.failure_code
        assert theirs.failure_notice.data == report.failure_data


@QUICK
@given(verification_reports(), cds_times)
def test_spacepackets_verification_reports_parse_in_ours(
    report: VerificationReport, when: CdsTime
) -> None:
    rid = TheirRequestId.unpack(report.request_id.pack())
    params = VerificationParams(
        req_id=rid,
        step_id=None if report.step is None else PacketFieldU8(report.step),
        failure_notice=None
        if report.success
        else FailureNotice(PacketFieldU16(report.failure_code or 0), report.failure_data),
    )
    raw = bytes(
        Service1Tm(
            apid=100,
            message_subtype=report.subtype,
            timestamp=when.pack(),
            verif_params=params,
        ).pack()
    )
    ours = PusTm.unpack(raw)
    assert (ours.service, ours.subtype, ours.time) == (1, report.subtype, when)
    assert VerificationReport.unpack(ours.subtype, ours.source_data) == report


# ---------------------------------------------------------------------------------------------
# TM transfer frames


@QUICK
@given(tm_frames(scid=st.just(500)))
def test_our_tm_frames_unpack_in_spacepackets(frame: TmFrame) -> None:
    packed = frame.pack()
    theirs = TmTransferFrame.unpack(packed, TM_FRAME_LENGTH, has_error_control_field=True)
    header = theirs.primary_header
    status = header.frame_datafield_status
    assert header.master_channel_id == MasterChannelId(0, 500)
    assert (header.vc_id, header.ocf_flag) == (frame.vcid, True)
    assert (header.master_ch_frame_count, header.vc_frame_count) == (
        frame.mc_count,
        frame.vc_count,
    )
    assert status == TransferFrameDataFieldStatus(False, False, False, 0b11, frame.fhp)
    assert theirs.secondary_header is None
    assert theirs.data_field == frame.data
    assert theirs.op_ctrl_field == frame.ocf.to_bytes(4, "big")
    assert theirs.frame_error_control == packed[-2:]
    assert theirs.pack() == packed


@QUICK
@given(
    st.integers(0, 7),
    u8,
    u8,
    st.integers(0, 0x7FF),
    st.binary(min_size=TM_DATA_LENGTH, max_size=TM_DATA_LENGTH),
    u32,
)
def test_spacepackets_tm_frames_unpack_in_ours(
    vcid: int, mc: int, vc: int, fhp: int, data: bytes, ocf: int
) -> None:
    header = TmFramePrimaryHeader(
        MasterChannelId(0, 500),
        vcid,
        True,
        mc,
        vc,
        TransferFrameDataFieldStatus(False, False, False, 0b11, fhp),
    )
    body = header.pack() + data + ocf.to_bytes(4, "big")
    fecf = fastcrc.crc16.ibm_3740(body).to_bytes(2, "big")
    raw = TmTransferFrame(TM_FRAME_LENGTH, header, None, data, ocf.to_bytes(4, "big"), fecf).pack()
    assert TmFrame.unpack(raw) == TmFrame(500, vcid, mc, vc, fhp, data, ocf)


# ---------------------------------------------------------------------------------------------
# CRC


@QUICK
@given(st.binary(max_size=2000))
def test_crc_agrees_with_spacepackets(data: bytes) -> None:
    # spacepackets seals a packet in place: the last two octets become the CRC of the rest.
    sealed = generate_packet_crc(bytearray(data + b"\x00\x00"))
    assert sealed[-2:] == crc16_ccitt(data).to_bytes(2, "big")
    assert crc16_ccitt(data) == fastcrc.crc16.ibm_3740(data)
