"""`groundsw schedule`'s reading of what the operator typed (release times, request IDs,
offsets), its cut of many activities into TC[11,4] requests that each fit in one packet, and its
reading of a long schedule's reports, which come in several packets."""

from __future__ import annotations

import argparse
from typing import Any

import pytest

from groundsw.schedule_commands import (
    _requests,
    offset_ms,
    parse_request_id,
    release_at,
    run_list,
    run_summary,
)
from groundsw.session import CommandRecord, LinkTimeout
from groundsw.transfer import GroundInputError, OperationContext
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
from spacelink.spacepacket import AckFlags, PusTc
from tests.unit.groundsw.fake_payload import D, FakePayload
from tests.unit.groundsw.fakes import FastClock

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


# -- list and summary: every report of one request, or none ---------------------------------------


def scheduled(count: int) -> FakePayload:
    """A payload with `count` pings scheduled a second apart, three to a report."""
    payload = FakePayload()
    payload.scheduled = [activity(i, 0) for i in range(count)]
    return payload


def run(payload: FakePayload, operation: Any) -> list[str]:
    lines: list[str] = []
    ctx = OperationContext(payload, D, 30.0, 115200, lines.append, lines.append, clock=FastClock())
    assert operation(argparse.Namespace(), ctx) == 0
    return lines


def listed(payload: FakePayload) -> list[str]:
    """The request IDs `schedule list` shows, in the order it shows them."""
    lines = run(payload, run_list)
    assert lines[0] == f"{len(lines) - 1} scheduled"
    assert all(line.endswith("TC[17,1] ARE_YOU_ALIVE") for line in lines[1:]), lines
    return [line.split()[1] for line in lines[1:]]


def ids(payload: FakePayload) -> list[str]:
    return [str(a.request_id) for a in payload.scheduled]


def test_list_and_summary_show_every_report_of_a_long_schedule_in_release_order() -> None:
    payload = scheduled(10)  # four reports: 3 + 3 + 3 + 1
    assert listed(payload) == ids(payload)
    lines = run(payload, run_summary)
    assert lines[0] == "10 scheduled"
    assert [line.split()[1] for line in lines[1:]] == ids(payload)
    assert [name for name, _ in payload.sent] == ["SCHEDULE_DETAIL_ALL", "SCHEDULE_SUMMARY_ALL"]


def test_an_empty_schedule_is_one_empty_report() -> None:
    assert run(FakePayload(), run_list) == ["0 scheduled"]


def lose_once(target: str, index: int) -> Any:
    """Loses the `index`th `target` packet (or progress report) the payload sends, once."""
    seen = [0]

    def lose(name: str) -> bool:
        if name != target:
            return False
        seen[0] += 1
        return seen[0] == index + 1

    return lose


@pytest.mark.parametrize(
    ("target", "index"),
    [
        ("SCHEDULE_DETAIL_REPORT", 0),  # the first
        ("SCHEDULE_DETAIL_REPORT", 1),  # one between others
        ("SCHEDULE_DETAIL_REPORT", 3),  # the last, right before the completion report
        ("PROGRESS", 0),  # what tells how many were sent
    ],
)
def test_an_answer_with_a_report_lost_is_never_shown_and_is_asked_for_again(
    target: str, index: int
) -> None:
    payload = scheduled(10)
    payload.lose_tm = lose_once(target, index)
    assert listed(payload) == ids(payload)
    assert [name for name, _ in payload.sent] == ["SCHEDULE_DETAIL_ALL"] * 2


def test_a_report_lost_at_every_request_ends_in_a_timeout_with_nothing_shown() -> None:
    payload = scheduled(10)
    sent = [0]

    def every_other_report(name: str) -> bool:
        sent[0] += name == "SCHEDULE_SUMMARY_REPORT"
        return name == "SCHEDULE_SUMMARY_REPORT" and sent[0] % 2 == 0

    payload.lose_tm = every_other_report
    lines: list[str] = []
    ctx = OperationContext(payload, D, 30.0, 115200, lines.append, lines.append, clock=FastClock())
    with pytest.raises(LinkTimeout, match=r"3 requests .*2 of its SCHEDULE_SUMMARY_REPORT"):
        run_summary(argparse.Namespace(), ctx)
    assert lines == []


class LatePayload(FakePayload):
    """Reports of an earlier request still on their way when the next one is sent."""

    def command(
        self, service: int, subtype: int, data: bytes = b"", ack: AckFlags = AckFlags.ALL
    ) -> CommandRecord:
        self.tm("SCHEDULE_DETAIL_REPORT", {"activities": encode_activities(self.scheduled[:3])})
        return super().command(service, subtype, data, ack)


def test_reports_that_came_before_the_request_was_accepted_are_not_its_answer() -> None:
    payload = LatePayload()
    payload.scheduled = [activity(i, 0) for i in range(5)]
    assert listed(payload) == ids(payload)
