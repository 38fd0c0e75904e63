"""ST[11] codecs against independent implementations: tmtccmd's time-tagged TC[11,4] and request
ID, spacepackets' CDS short time; both forms of TC[11,4]; the reports round trip; what does not
decode says which activity is at fault."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st
from spacepackets.ccsds.time import CdsShortTimestamp
from spacepackets.ecss import PusTelecommand
from tmtccmd.pus.s11_tc_sched import TcSchedReqId
from tmtccmd.pus.tc.s11_tc_sched import create_time_tagged_cmd

from spacelink.cdstime import CdsTime
from spacelink.pus_schedule import (
    MAX_ACTIVITIES_PER_REQUEST,
    ScheduleCodecError,
    ScheduleRequestId,
    SummaryEntry,
    TimeTaggedTc,
    decode_detail_report,
    decode_insert,
    decode_summary,
    encode_activities,
    encode_summary,
    tc_type,
)
from spacelink.spacepacket import PusTc

AT = dt.datetime(2026, 12, 7, 10, 0, 0, 123000, tzinfo=dt.UTC)


def ping(seq: int = 5, source: int = 3) -> bytes:
    return PusTc(100, 17, 1, seq_count=seq, source_id=source).pack()


def test_tmtccmd_single_activity_form_is_read() -> None:
    inner = PusTelecommand(service=17, message_subtype=1, apid=100, seq_count=42, source_id=9)
    stamp = CdsShortTimestamp(ccsds_days=25_000, ms_of_day=36_000_123)
    outer = create_time_tagged_cmd(stamp.pack(), inner, apid=100)
    [activity] = decode_insert(bytes(outer.app_data))
    assert activity.packet == inner.pack()
    assert activity.release == CdsTime(25_000, 36_000_123)
    assert activity.release.to_unix() == pytest.approx(stamp.as_unix_seconds(), abs=1e-6)
    expected = TcSchedReqId(apid=100, seq_cnt=42, src_id=9)
    assert activity.request_id.pack() == expected.pack()
    assert activity.request_id.value == expected.id_u64


def test_counted_form_holds_several_activities_in_order() -> None:
    one = TimeTaggedTc(CdsTime.from_unix(AT.timestamp()), ping(1))
    two = TimeTaggedTc(
        CdsTime.from_unix(AT.timestamp() + 60), PusTc(100, 3, 27, b"\x01\x00\x01").pack()
    )
    data = encode_activities([one, two])
    assert data[:2] == b"\x00\x02"
    assert decode_insert(data) == [one, two]
    assert decode_detail_report(data) == [one, two]


def test_forms_are_told_apart_by_the_first_octet() -> None:
    single = CdsTime.from_unix(AT.timestamp()).pack() + ping()
    assert single[0] == 0x40
    # The largest N allowed cannot start with 0x40.
    assert MAX_ACTIVITIES_PER_REQUEST < 0x4000
    assert len(decode_insert(single)) == 1


@pytest.mark.parametrize(
    ("data", "message", "index"),
    [
        (b"", "without activities", None),
        (b"\x00\x00", "0 activities", None),
        ((MAX_ACTIVITIES_PER_REQUEST + 1).to_bytes(2, "big"), "activity 0", 0),
        (b"\x00\x01" + b"\x41" + bytes(6) + ping(), "P-field 0x41", 0),
        (
            b"\x00\x01" + CdsTime(1, 0).pack() + PusTc(100, 8, 1, b"abc").pack()[:-1],
            "announces 16 octets, 15 follow",
            0,
        ),
        (CdsTime(1, 0).pack() + ping() + b"\x00", "1 octets after", 0),
        (b"\x00\x01" + CdsTime(1, 0).pack() + ping() + b"\x00", "1 octets after activity 0", None),
        (b"\x00\x01" + CdsTime(1, 0).pack() + ping()[:8], "too short for a TC packet", 0),
    ],
)
def test_what_does_not_decode_names_the_activity(
    data: bytes, message: str, index: int | None
) -> None:
    with pytest.raises(ScheduleCodecError, match=message) as caught:
        decode_insert(data)
    assert caught.value.index == index


def test_more_activities_than_allowed_are_refused() -> None:
    many = [TimeTaggedTc(CdsTime(1, i), ping(i)) for i in range(MAX_ACTIVITIES_PER_REQUEST + 1)]
    with pytest.raises(ScheduleCodecError, match="65 activities in one request"):
        decode_insert(encode_activities(many))
    assert len(decode_insert(encode_activities(many[:-1]))) == MAX_ACTIVITIES_PER_REQUEST


@given(st.integers(0, 0xFFFF), st.integers(0, 0x7FF), st.integers(0, 0x3FFF))
def test_request_id_is_tmtccmd_s_u64(source: int, apid: int, seq: int) -> None:
    ours = ScheduleRequestId(source, apid, seq)
    theirs = TcSchedReqId(apid=apid, seq_cnt=seq, src_id=source)
    assert ours.pack() == theirs.pack()
    assert ScheduleRequestId.from_value(theirs.id_u64) == ours
    assert (
        ScheduleRequestId.of_packet(PusTc(apid, 17, 1, seq_count=seq, source_id=source).pack())
        == ours
    )


@pytest.mark.parametrize("value", [1 << 48, 0x0000_F800_0000, 0xC000, -1])
def test_values_no_request_id_has_are_refused(value: int) -> None:
    with pytest.raises(ValueError, match="not a request ID"):
        ScheduleRequestId.from_value(value)


def test_summary_round_trips_and_checks_its_length() -> None:
    entries = [
        SummaryEntry(CdsTime.from_unix(AT.timestamp() + i), ScheduleRequestId(1, 100, i))
        for i in range(3)
    ]
    data = encode_summary(entries)
    assert len(data) == 2 + 3 * 15
    assert decode_summary(data) == entries
    assert decode_summary(encode_summary([])) == []
    with pytest.raises(ScheduleCodecError, match="for 3 entries"):
        decode_summary(data[:-1])


def test_tc_type_reads_the_secondary_header_of_what_has_one() -> None:
    assert tc_type(PusTc(100, 3, 27, b"\x01").pack()) == (3, 27)
    assert tc_type(ping()[:8]) == (0, 0)  # a damaged record's packet, cut short
