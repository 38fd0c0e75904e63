"""`groundsw schedule`'s reading of what the operator typed (release times, request IDs,
offsets) and its cut of many activities into TC[11,4] requests that each fit in one packet."""

from __future__ import annotations

import pytest

from groundsw.schedule_commands import _requests, offset_ms, parse_request_id, release_at
from groundsw.transfer import GroundInputError
from spacelink.cdstime import CdsTime
from spacelink.pus_schedule import (
    MAX_ACTIVITIES_PER_REQUEST,
    SCHEDULE_SERVICE,
    ScheduleRequestId,
    Subtype,
    TimeTaggedTc,
    decode_insert,
    encode_activities,
)
from spacelink.spacepacket import PusTc

NOW = 1_800_000_000.0
APID = 100


@pytest.mark.parametrize(
    ("text", "at"),
    [
        ("+90s", NOW + 90),
        ("+1h30m", NOW + 5400),
        ("2027-01-15T08:01:00Z", NOW + 60),
        ("1800000100.25", NOW + 100.25),
    ],
)
def test_release_times_as_operators_give_them(text: str, at: float) -> None:
    assert release_at(text, NOW) == pytest.approx(at)


@pytest.mark.parametrize(
    ("text", "says"),
    [("90s", "is not a time"), ("+soon", "is not a time"), ("1799999999", "not in the future")],
)
def test_a_release_time_that_is_not_one_or_is_gone_is_refused(text: str, says: str) -> None:
    with pytest.raises(GroundInputError, match=says):
        release_at(text, NOW)


def test_request_ids_as_list_shows_them_or_as_their_parts() -> None:
    expected = ScheduleRequestId(1, 100, 5)
    assert parse_request_id("0x0000000100640005") == expected
    assert parse_request_id("1:100:5") == expected
    assert parse_request_id(str(expected.value)) == expected
    for wrong in ("1:2048:5", "0xC000", "five"):
        with pytest.raises(GroundInputError, match="is not a request ID"):
            parse_request_id(wrong)


def test_offsets_are_milliseconds_an_i32_holds() -> None:
    assert offset_ms("-60") == -60_000
    assert offset_ms("0.25") == 250
    with pytest.raises(GroundInputError, match=r"24\.8 days"):
        offset_ms("2200000")
    with pytest.raises(GroundInputError, match="not a number"):
        offset_ms("1m")


def activity(seq: int, octets: int) -> TimeTaggedTc:
    packet = PusTc(APID, 17, 1, bytes(octets), seq_count=seq, source_id=1).pack()
    return TimeTaggedTc(CdsTime.from_unix(NOW + 60 + seq), packet)


def test_activities_are_cut_into_requests_that_each_fit_a_packet() -> None:
    activities = [activity(i, 200) for i in range(30)]
    batches = _requests(activities, 1024, APID)
    assert [a for batch in batches for a in batch] == activities
    for batch in batches:
        data = encode_activities(batch)
        assert len(PusTc(APID, SCHEDULE_SERVICE, Subtype.INSERT, data).pack()) <= 1024
        assert decode_insert(data) == batch
    assert len(batches) > 1


def test_a_request_carries_no_more_activities_than_the_payload_takes() -> None:
    batches = _requests([activity(i, 0) for i in range(150)], 65536, APID)
    assert [len(batch) for batch in batches] == [MAX_ACTIVITIES_PER_REQUEST] * 2 + [22]


def test_an_activity_no_request_can_carry_is_refused() -> None:
    with pytest.raises(GroundInputError, match="does not fit in a TC"):
        _requests([activity(1, 1024)], 1024, APID)
