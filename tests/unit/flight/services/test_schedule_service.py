"""ST[11] as the payload serves it, on a real router with a clock the test moves: insertion in
both forms, the checks at each stage with their failure codes, release into the router with the
released command's own reports and an event, enable/disable/reset, the time shifts, the reports,
and a restart: what came due while down released within the grace, else dropped."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from flight.counters import LinkCounters
from flight.protection.upsets import UpsetLog
from flight.router import CommandRouter
from flight.schedule import DropReason, Limits, ScheduleStore
from flight.schedule.config import ScheduleConfig
from flight.services import test as test_service
from flight.services.events import EventReporter
from flight.services.schedule import REPORT_OCTETS, ScheduleService
from flight.telemetry import TmPublisher
from spacelink.cdstime import CdsTime
from spacelink.pus import Stage, VerificationReport
from spacelink.pus_schedule import (
    ScheduleRequestId,
    TimeTaggedTc,
    decode_detail_report,
    decode_summary,
    encode_activities,
)
from spacelink.spacepacket import AckFlags, PusTc, PusTm, RequestId
from telemetry_defs.loader import default_dictionary
from tests.fake_clock import FakeClock

D = default_dictionary()
APID = 100
T0 = 1_800_000_000.0
CONFIG = ScheduleConfig(time_margin_s=1.0, missed_grace_s=60.0, max_activities=8)


class Board:
    """The schedule service on a router as the payload wires it (the test service beside it)."""

    def __init__(self, root: Path, clock: FakeClock) -> None:
        self.clock = clock
        self.root = root
        self.line: list[PusTm] = []
        self.tm = TmPublisher(APID, lambda vc, raw: self.line.append(PusTm.unpack(raw)), clock)
        self.router = CommandRouter(APID, self.tm, LinkCounters())
        test_service.register(self.router, D)
        self.service = ScheduleService(
            D, ScheduleStore(root, UpsetLog()), CONFIG, APID, EventReporter(D, self.tm), clock
        )
        self.service.register(self.router)
        self.seq = 0

    def send(self, name: str, data: bytes | None = None, /, **values: Any) -> RequestId:
        command = D.command(name)
        self.seq += 1
        tc = PusTc(APID, command.service, command.subtype,
                   command.encode(values) if data is None else data,
                   seq_count=self.seq, source_id=7, ack_flags=AckFlags.ALL)  # fmt: skip
        self.router.dispatch(tc.pack())
        return tc.request_id

    def reports(self, request: RequestId) -> list[VerificationReport]:
        found = [
            VerificationReport.unpack(t.subtype, t.source_data) for t in self.line if t.service == 1
        ]
        return [r for r in found if r.request_id == request]

    def failure(self, request: RequestId) -> tuple[str, Stage, dict[str, Any]] | None:
        failed = [r for r in self.reports(request) if not r.success]
        if not failed:
            return None
        failure = D.failure(failed[0].failure_code or 0)
        assert failure is not None and failure.layout is not None
        return failure.name, failed[0].stage, failure.layout.parse(failed[0].failure_data)

    def completed(self, request: RequestId) -> bool:
        return any(r.stage is Stage.COMPLETION and r.success for r in self.reports(request))

    def events(self, name: str) -> list[dict[str, Any]]:
        event = D.event(name)
        found = []
        for tm in self.line:
            if tm.service == 5 and int.from_bytes(tm.source_data[:2], "big") == event.id:
                found.append(D.decode_tm(5, tm.subtype, tm.source_data).values)
        return found

    def replies(self, subtype: int) -> list[bytes]:
        return [t.source_data for t in self.line if (t.service, t.subtype) == (11, subtype)]

    def tick(self) -> None:
        self.service.tick()


def ping(seq: int, ack: AckFlags = AckFlags.ALL, apid: int = APID, service: int = 17) -> bytes:
    return PusTc(apid, service, 1, seq_count=seq, source_id=9, ack_flags=ack).pack()


def at(offset_s: float, packet: bytes) -> TimeTaggedTc:
    return TimeTaggedTc(CdsTime.from_unix(T0 + offset_s), packet)


def rid(seq: int) -> int:
    return ScheduleRequestId(9, APID, seq).value


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
def board(tmp_path: Path, clock: FakeClock) -> Board:
    return Board(tmp_path, clock)


def test_a_released_tc_runs_as_a_ground_tc_with_its_own_reports(
    board: Board, clock: FakeClock
) -> None:
    insert = board.send("SCHEDULE_INSERT", encode_activities([at(5, ping(40))]))
    assert board.completed(insert)
    board.tick()
    clock.advance(4.999)
    board.tick()
    assert board.events("SCHEDULE_ACTIVITY_RELEASED") == []
    assert board.service.seconds_to_next() == pytest.approx(0.001, abs=1e-6)
    clock.advance(0.021)
    board.tick()
    [event] = board.events("SCHEDULE_ACTIVITY_RELEASED")
    assert event == {"request_id": rid(40), "service": 17, "subtype": 1, "late_ms": 20}
    released = RequestId(0x1800 | APID, 0xC000 | 40)
    assert [(r.stage, r.success) for r in board.reports(released)] == [
        (Stage.ACCEPTANCE, True),
        (Stage.START, True),
        (Stage.COMPLETION, True),
    ]
    [reply] = [t for t in board.line if (t.service, t.subtype) == (17, 2)]
    assert reply.destination_id == 9  # the inner TC's source, as for a TC from that ground
    assert board.service.seconds_to_next() is None
    assert board.service.getters()["SCHEDULE_RELEASED"]() == 1


def test_the_single_activity_form_is_taken(board: Board) -> None:
    single = CdsTime.from_unix(T0 + 10).pack() + ping(41)
    assert board.completed(board.send("SCHEDULE_INSERT", single))
    assert board.service.getters()["SCHEDULE_ACTIVITIES"]() == 1


@pytest.mark.parametrize(
    ("packet", "detail"),
    [
        (ping(1, service=11), "TC[11,1] is nested"),
        (ping(1, apid=101), "APID 101, not 100"),
        (ping(1)[:-1] + b"\x00", "packet error control"),
    ],
)
def test_activities_the_payload_would_not_take_are_refused_at_acceptance(
    board: Board, packet: bytes, detail: str
) -> None:
    good = at(5, ping(2))
    request = board.send("SCHEDULE_INSERT", encode_activities([good, at(6, packet)]))
    failure = board.failure(request)
    assert failure is not None
    name, stage, data = failure
    assert (name, stage, data["index"]) == ("SCHEDULE_ACTIVITY_INVALID", Stage.ACCEPTANCE, 1)
    assert detail in data["detail"]
    assert board.service.getters()["SCHEDULE_ACTIVITIES"]() == 0  # refused whole


def test_the_schedule_s_checks_fail_at_start_with_their_data(board: Board) -> None:
    early = board.send("SCHEDULE_INSERT", encode_activities([at(5, ping(1)), at(0.5, ping(2))]))
    assert board.failure(early) == (
        "SCHEDULE_TOO_EARLY",
        Stage.START,
        {
            "request_id": rid(2),
            "release_ms": int(T0 * 1000) + 500,
            "earliest_ms": int(T0 * 1000) + 1000,
        },
    )
    assert board.completed(board.send("SCHEDULE_INSERT", encode_activities([at(5, ping(1))])))
    twice = board.send("SCHEDULE_INSERT", encode_activities([at(9, ping(1))]))
    assert board.failure(twice) == (
        "SCHEDULE_DUPLICATE_REQUEST",
        Stage.START,
        {"request_id": rid(1)},
    )
    many = encode_activities([at(9, ping(100 + i)) for i in range(8)])
    assert board.failure(board.send("SCHEDULE_INSERT", many)) == (
        "SCHEDULE_FULL",
        Stage.START,
        {"scheduled": 1, "capacity": 8},
    )
    unknown = board.send("SCHEDULE_DELETE", request_ids=[rid(1), rid(3)])
    assert board.failure(unknown) == (
        "SCHEDULE_UNKNOWN_REQUEST",
        Stage.START,
        {"request_id": rid(3)},
    )
    shifted = board.send("SCHEDULE_SHIFT", offset_ms=-4500, request_ids=[rid(1)])
    assert board.failure(shifted)[0] == "SCHEDULE_TOO_EARLY"  # type: ignore[index]
    assert board.completed(board.send("SCHEDULE_DELETE", request_ids=[rid(1)]))
    assert board.service.getters()["SCHEDULE_ACTIVITIES"]() == 0


def test_shifts_and_reports(board: Board, clock: FakeClock) -> None:
    board.send(
        "SCHEDULE_INSERT", encode_activities([at(5, ping(1)), at(7, ping(2)), at(9, ping(3))])
    )
    assert board.completed(board.send("SCHEDULE_SHIFT", offset_ms=3000, request_ids=[rid(1)]))
    assert board.completed(board.send("SCHEDULE_SHIFT_ALL", offset_ms=-1000))
    board.send("SCHEDULE_SUMMARY_ALL")
    [summary] = board.replies(13)
    entries = decode_summary(summary)
    assert [(e.request_id.seq_count, e.release.to_unix() - T0) for e in entries] == [
        (2, 6.0), (1, 7.0), (3, 8.0),
    ]  # fmt: skip
    board.send("SCHEDULE_DETAIL", request_ids=[rid(3), rid(2)])
    [detail] = board.replies(10)
    assert [a.packet for a in decode_detail_report(detail)] == [ping(2), ping(3)]
    assert board.service.getters()["SCHEDULE_NEXT_RELEASE"]() == int(T0) + 6


def test_a_long_detail_report_is_cut_into_reports_of_whole_activities(
    tmp_path: Path, clock: FakeClock
) -> None:
    board = Board(tmp_path, clock)
    board.service.schedule.limits = Limits(margin_ms=1000, capacity=64)
    big = [PusTc(APID, 17, 1, bytes(900), seq_count=i, source_id=9).pack() for i in range(10)]
    for i, packet in enumerate(big):
        board.send("SCHEDULE_INSERT", encode_activities([at(10 + i, packet)]))
    request = board.send("SCHEDULE_DETAIL_ALL")
    parts = board.replies(10)
    assert len(parts) == 3 and all(len(p) <= REPORT_OCTETS for p in parts)
    assert [a.packet for p in parts for a in decode_detail_report(p)] == big
    # How many reports it sent, in a progress report before the completion report, and the
    # reports' message type counters one after the other: the ground can tell one was lost.
    assert [(r.stage, r.step) for r in board.reports(request)] == [
        (Stage.ACCEPTANCE, None), (Stage.START, None), (Stage.PROGRESS, 3),
        (Stage.COMPLETION, None),
    ]  # fmt: skip
    counters = [t.msg_type_counter for t in board.line if (t.service, t.subtype) == (11, 10)]
    assert counters == list(range(counters[0], counters[0] + 3))


def test_disable_drops_what_comes_due_and_reset_disables(board: Board, clock: FakeClock) -> None:
    board.send("SCHEDULE_INSERT", encode_activities([at(5, ping(1)), at(9, ping(2))]))
    board.send("SCHEDULE_DISABLE")
    clock.advance(6)
    board.tick()
    [dropped] = board.events("SCHEDULE_ACTIVITY_DROPPED")
    assert (dropped["request_id"], dropped["reason"]) == (rid(1), DropReason.DISABLED)
    assert board.events("SCHEDULE_ACTIVITY_RELEASED") == []
    board.send("SCHEDULE_ENABLE")
    board.send("SCHEDULE_RESET")
    assert board.service.getters()["SCHEDULE_ENABLED"]() is False
    assert board.service.getters()["SCHEDULE_ACTIVITIES"]() == 0


def test_a_restart_releases_within_the_grace_and_drops_older_misses(
    tmp_path: Path, clock: FakeClock
) -> None:
    board = Board(tmp_path, clock)
    board.send(
        "SCHEDULE_INSERT", encode_activities([at(5, ping(1)), at(100, ping(2)), at(500, ping(3))])
    )
    board.send("SCHEDULE_DISABLE")
    board.send("SCHEDULE_ENABLE")  # the last commanded state is what a restart finds
    # Down (no close: as kill -9 leaves it) from T0 + 1 until T0 + 130.
    clock.advance(130)
    again = Board(tmp_path, clock)
    again.tick()
    [dropped] = again.events("SCHEDULE_ACTIVITY_DROPPED")
    assert (dropped["request_id"], dropped["reason"], dropped["late_s"]) == (
        rid(1), DropReason.MISSED, 125,
    )  # fmt: skip
    [released] = again.events("SCHEDULE_ACTIVITY_RELEASED")
    assert (released["request_id"], released["late_ms"]) == (rid(2), 30_000)
    assert again.service.getters()["SCHEDULE_ACTIVITIES"]() == 1
    assert again.service.schedule.enabled is True


def test_a_scrub_pass_drops_a_record_beyond_repair_on_the_main_loop_s_next_pass(
    board: Board, clock: FakeClock
) -> None:
    board.send("SCHEDULE_INSERT", encode_activities([at(5, ping(1)), at(9, ping(2))]))
    board.tick()
    board.service.store.execute(
        "UPDATE activity SET release_ms = 1, copy = ? WHERE request_id = ?", (b"x" * 40, rid(1))
    )
    board.service.verify()  # from the scrubber's thread: nothing changes until the next pass
    assert board.service.getters()["SCHEDULE_ACTIVITIES"]() == 2
    board.tick()
    [dropped] = board.events("SCHEDULE_ACTIVITY_DROPPED")
    assert (dropped["request_id"], dropped["reason"]) == (rid(1), DropReason.DAMAGED)
    assert [a.request_id.value for a in board.service.schedule.activities()] == [rid(2)]
    clock.advance(10)
    board.tick()
    assert [e["request_id"] for e in board.events("SCHEDULE_ACTIVITY_RELEASED")] == [rid(2)]


def test_a_request_whose_own_layout_is_wrong_is_bad_application_data(board: Board) -> None:
    too_many = encode_activities([at(5, ping(i)) for i in range(65)])
    request = board.send("SCHEDULE_INSERT", too_many)
    failed = [r for r in board.reports(request) if not r.success]
    assert [(r.stage, r.failure_code) for r in failed] == [(Stage.ACCEPTANCE, 6)]
    assert b"65 activities in one request" in failed[0].failure_data
    cut = board.send("SCHEDULE_INSERT", encode_activities([at(5, ping(1))])[:-3])
    assert board.failure(cut)[:2] == ("SCHEDULE_ACTIVITY_INVALID", Stage.ACCEPTANCE)  # type: ignore[index]
