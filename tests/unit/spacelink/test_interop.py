"""Interoperability with `spacepackets`, an independent CCSDS/PUS implementation (ICD preamble)."""

from __future__ import annotations

import fastcrc
from hypothesis import given
from hypothesis import strategies as st
from spacepackets.ccsds.tm_frame import TmTransferFrame
from spacepackets.ecss.req_id import RequestId as TheirRequestId
from spacepackets.ecss.tc import PusTc as TheirTc
from spacepackets.ecss.tm import PusTm as TheirTm

from spacelink.crc import crc16_ccitt
from spacelink.icd import TM_DATA_LENGTH, TM_FRAME_LENGTH
from spacelink.spacepacket import AckFlags, PusTc, PusTm
from spacelink.tmframe import TmFrame
from tests.unit.spacelink.strategies import apids, pus_tcs, pus_tms, seq_counts, u8, u16


@given(pus_tcs)
def test_our_tc_parses_in_spacepackets(tc: PusTc) -> None:
    theirs = TheirTc.unpack(tc.pack())
    assert (theirs.apid, theirs.seq_count, theirs.service, theirs.message_subtype) == (
        tc.apid,
        tc.seq_count,
        tc.service,
        tc.subtype,
    )
    assert (theirs.source_id, theirs.pus_tc_sec_header.ack_flags, theirs.app_data) == (
        tc.source_id,
        int(tc.ack_flags),
        tc.app_data,
    )


@given(apids, seq_counts, u8, u8, u16, st.integers(0, 15), st.binary(max_size=300))
def test_spacepackets_tc_parses_in_ours(
    apid: int, seq: int, service: int, subtype: int, source: int, ack: int, data: bytes
) -> None:
    raw = TheirTc(
        service=service,
        message_subtype=subtype,
        apid=apid,
        seq_count=seq,
        source_id=source,
        ack_flags=ack,
        app_data=data,
    ).pack()
    ours = PusTc.unpack(raw)
    assert ours == PusTc(apid, service, subtype, data, seq, source, AckFlags(ack))
    assert ours.pack() == raw


@given(pus_tms)
def test_our_tm_parses_in_spacepackets(tm: PusTm) -> None:
    theirs = TheirTm.unpack(tm.pack(), timestamp_len=7)
    header = theirs.pus_tm_sec_header
    assert (theirs.apid, theirs.seq_count, theirs.service, theirs.message_subtype) == (
        tm.apid,
        tm.seq_count,
        tm.service,
        tm.subtype,
    )
    assert (header.message_counter, header.dest_id, header.spacecraft_time_ref) == (
        tm.msg_type_counter,
        tm.destination_id,
        tm.time_ref_status,
    )
    assert theirs.timestamp == tm.time.pack() and theirs.source_data == tm.source_data


@given(pus_tms)
def test_spacepackets_tm_parses_in_ours(tm: PusTm) -> None:
    raw = TheirTm(
        service=tm.service,
        message_subtype=tm.subtype,
        timestamp=tm.time.pack(),
        source_data=tm.source_data,
        apid=tm.apid,
        seq_count=tm.seq_count,
        message_counter=tm.msg_type_counter,
        destination_id=tm.destination_id,
    ).pack()
    assert PusTm.unpack(raw) == PusTm(
        tm.apid,
        tm.service,
        tm.subtype,
        tm.source_data,
        tm.seq_count,
        tm.msg_type_counter,
        tm.destination_id,
        tm.time,
    )


@given(apids, seq_counts)
def test_request_ids_agree(apid: int, seq: int) -> None:
    tc = PusTc(apid, 17, 1, seq_count=seq)
    theirs = TheirRequestId.unpack(tc.pack())
    assert theirs.pack() == tc.request_id.pack()
    assert (theirs.tc_packet_id.apid, theirs.tc_psc.seq_count) == (apid, seq)


@given(st.binary(max_size=2000))
def test_crc_agrees_with_an_independent_implementation(data: bytes) -> None:
    assert crc16_ccitt(data) == fastcrc.crc16.ibm_3740(data)


@given(
    st.builds(
        TmFrame,
        scid=st.just(500),
        vcid=st.integers(0, 7),
        mc_count=u8,
        vc_count=u8,
        fhp=st.integers(0, 0x7FF),
        data=st.binary(min_size=TM_DATA_LENGTH, max_size=TM_DATA_LENGTH),
        ocf=st.integers(0, 2**32 - 1),
    )
)
def test_our_tm_frames_unpack_in_spacepackets(frame: TmFrame) -> None:
    theirs = TmTransferFrame.unpack(frame.pack(), TM_FRAME_LENGTH, has_error_control_field=True)
    header = theirs.primary_header
    status = header.frame_datafield_status
    assert (
        header.master_channel_id.transfer_frame_version,
        header.master_channel_id.spacecraft_id,
    ) == (0, frame.scid)
    assert (header.vc_id, header.ocf_flag, header.master_ch_frame_count, header.vc_frame_count) == (
        frame.vcid,
        True,
        frame.mc_count,
        frame.vc_count,
    )
    assert (
        status.secondary_header_flag,
        status.sync_flag,
        status.packet_order_flag,
        status.segment_len_id,
        status.first_header_pointer,
    ) == (False, False, False, 0b11, frame.fhp)
    assert theirs.data_field == frame.data
    assert theirs.op_ctrl_field == frame.ocf.to_bytes(4, "big")
    assert theirs.pack() == frame.pack()
