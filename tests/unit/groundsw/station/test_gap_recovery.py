"""The station repairs the gaps in its archive by itself (groundsw.station.gap_recovery),
against a fake payload that keeps every real-time packet it made and answers
STORE_RETRIEVE_RANGE from them on VC 1, at once. Time is a fake clock; the recovery's steps
are taken by the test, across passes too (the end of a pass told by the station)."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from groundsw.archive import Archive
from groundsw.gaps import Gap, GapState
from groundsw.session import CommandEvent, CommandRecord, EventKind
from groundsw.station import gap_recovery as gr
from groundsw.station.gap_recovery import GapRecovery, RecoveryTiming
from spacelink.cdstime import CdsTime
from spacelink.pus import Stage, VerificationReport
from spacelink.spacepacket import PusTc, PusTm
from telemetry_defs.loader import default_dictionary
from tests.fake_clock import FakeClock

D = default_dictionary()
STATUS = D.housekeeping["PAYLOAD_STATUS"]
T0 = 1_795_600_800.0
RETRIEVE = D.command("STORE_RETRIEVE_RANGE")


class StorePayload:
    """The payload's side: its packets, made one a second, kept in its ALL store; what the
    ground hears of them live is up to the test."""

    def __init__(self, archive: Archive, clock: FakeClock) -> None:
        self.archive = archive
        self.clock = clock
        self.recovery: GapRecovery | None = None
        self.made: list[PusTm] = []
        self.seq = 0
        self.t = T0
        self.retrievals: list[dict[str, Any]] = []
        self.failures: list[str] = []  # the next retrievals' answers, by failure name
        self.lose_in_retrieval: set[int] = set()  # counts whose VC 1 frames are lost, once
        self.forget: set[int] = set()  # counts the store no longer holds
        self.silent = False  # no answer at all
        self.vc_counts = {0: 0, 1: 0}
        self.tc_seq = 0

    def make(self, n: int = 1, started: bool = False, heard: bool = True) -> list[PusTm]:
        made = []
        for _ in range(n):
            if started:
                severity, data = D.encode_event(
                    "PAYLOAD_STARTED",
                    {
                        "boot_count": 2,
                        "dictionary_hash": D.hash32,
                        "reset_reason": 5,
                        "board_uptime": 60,
                        "previous": "",
                    },
                )
                service, subtype = 5, int(severity)
                started = False
            else:
                values = {p.name: 0 for p in STATUS.parameters}
                values["UPTIME"] = self.seq
                service, subtype = 3, 25
                data = D.encode_housekeeping(STATUS.sid, values)
            tm = PusTm(D.apid, service, subtype, data, self.seq, time=CdsTime.from_unix(self.t))
            self.seq = (self.seq + 1) % 16384
            self.t += 1.0
            self.made.append(tm)
            made.append(tm)
            if heard:
                self.deliver(tm, 0)
        return made

    def make_gap(self, before: int, lost: int, after: int) -> None:
        """`before` packets heard, `lost` lost on the link, then `after` heard (the first of
        which shows the gap)."""
        self.make(before)
        self.make(lost, heard=False)
        self.make(after)

    def restart(self) -> None:
        self.seq = 0
        self.make(started=True)

    def deliver(self, tm: PusTm, vcid: int, lose_frame: bool = False) -> None:
        """`tm` in a frame of its own on `vcid` (the frame before it lost when asked)."""
        assert self.recovery is not None
        if lose_frame:
            self.vc_counts[vcid] += 1
        self.recovery.on_frame(vcid, self.vc_counts[vcid] % 256)
        self.vc_counts[vcid] += 1
        self.archive.store(tm, tm.pack(), self.clock(), vcid)
        self.recovery.on_packet(tm, vcid)

    # what the recovery sends through the link
    def send(self, service: int, subtype: int, data: bytes) -> CommandRecord:
        assert (service, subtype) == (RETRIEVE.service, RETRIEVE.subtype)
        args = RETRIEVE.decode(data)
        self.retrievals.append(args)
        self.tc_seq += 1
        record = CommandRecord(PusTc(D.apid, service, subtype, data, self.tc_seq), self.clock())
        if self.silent:
            return record
        if self.failures:
            failure = D.failure_named(self.failures.pop(0))
            self._report(record, failure.code)
            return record
        lost = False
        for tm in self.made:
            if not args["start"] <= math.floor(tm.time.to_unix()) <= args["end"]:
                continue
            if tm.seq_count in self.forget:
                continue
            if tm.seq_count in self.lose_in_retrieval:
                self.lose_in_retrieval.discard(tm.seq_count)
                lost = True
                continue
            self.deliver(tm, 1, lose_frame=lost)
            lost = False
        self._report(record, None)
        return record

    def _report(self, record: CommandRecord, code: int | None) -> None:
        report = VerificationReport(Stage.COMPLETION, code is None, record.request_id, None, code)
        record._add(CommandEvent(EventKind.REPORT, self.clock(), 0, report))


class Ground:
    def __init__(self, tmp_path: Path) -> None:
        self.clock = FakeClock(1000.0)
        self.wall = FakeClock(1000.0)
        self.archive = Archive(tmp_path, D)
        self.payload = StorePayload(self.archive, self.clock)
        self.link_up = True
        self.recovery = self.new_recovery()

    def new_recovery(self) -> GapRecovery:
        self.recovery = GapRecovery(
            "fm1",
            self.archive,
            D,
            send=self.payload.send,
            takes_commands=lambda: self.link_up,
            clock=self.clock,
            wall=self.wall,
        )
        self.payload.recovery = self.recovery
        return self.recovery

    def step(self, seconds: float = gr.STEP_S) -> None:
        """One step of the recovery's thread, `seconds` after the last."""
        self.clock.advance(seconds)
        self.wall.advance(seconds)
        self.recovery.step()

    def run(self, seconds: float) -> None:
        """The recovery's thread for `seconds`."""
        end = self.clock.now + seconds
        while self.clock.now < end:
            self.step()

    def state(self) -> list[tuple[GapState, int]]:
        return [(g.state, g.attempts) for g in self.archive.gaps()]


@pytest.fixture
def ground(tmp_path: Path) -> Iterator[Ground]:
    g = Ground(tmp_path)
    yield g
    g.recovery.close()
    g.archive.close()


def seqs(archive: Archive) -> list[int]:
    return sorted(PusTm.unpack(r.raw).seq_count for r in archive.packets())


def test_a_gap_is_retrieved_once_by_its_time_range_and_closed(
    ground: Ground, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=gr.__name__)
    p = ground.payload
    p.make_gap(4, 3, 3)  # 0..3, 4..6 lost on the link, 7..9

    ground.run(2 * (gr.SETTLE_S + 1))  # kept once VC 1 is quiet; retrieved; checked likewise

    assert p.retrievals == [{"store": 1, "start": int(T0) + 3, "end": int(T0) + 7}]
    assert ground.state() == [(GapState.RECOVERED, 1)]
    (gap,) = ground.archive.gaps()
    assert (gap.first_missing, gap.missing, gap.start_time, gap.end_time) == (4, 3, T0 + 3, T0 + 7)
    # Every packet once, the retrieved ones as retrieved; the ones either side not twice.
    assert seqs(ground.archive) == list(range(10))
    assert {PusTm.unpack(r.raw).seq_count: r.vcid for r in ground.archive.packets()}[5] == 1
    logged = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert any("gap found: APID 100 sequence counts 4..6 (3)" in m for m in logged)
    assert any(
        "gap recovered: APID 100 sequence counts 4..6 (3) (1 retrievals)" in m for m in logged
    )
    ground.run(60)
    assert len(p.retrievals) == 1  # and quiet after


def test_no_gap_no_command_and_nothing_logged(
    ground: Ground, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger=gr.__name__)
    ground.payload.make(20)
    ground.run(60)
    assert ground.payload.retrievals == []
    assert ground.archive.gaps() == []
    assert caplog.records == []


def test_no_command_while_the_link_is_down(ground: Ground) -> None:
    p = ground.payload
    p.make_gap(2, 2, 1)
    ground.link_up = False
    ground.run(120)
    assert p.retrievals == []
    assert ground.state() == [(GapState.OPEN, 0)]  # found and kept meanwhile
    ground.link_up = True
    ground.run(gr.SETTLE_S + 1)
    assert len(p.retrievals) == 1
    assert ground.state() == [(GapState.RECOVERED, 1)]


def test_counts_taken_by_bulk_packets_are_no_gap(
    ground: Ground, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=gr.__name__)
    p = ground.payload
    p.make(2)
    bulk = p.make(3, heard=False)  # say file data: VC 1, behind the real-time packets
    p.make(1)
    ground.run(1)
    for tm in bulk:
        p.deliver(tm, 1)
    ground.run(gr.MAX_SETTLE_S + 5)
    assert ground.archive.gaps() == []
    assert p.retrievals == []
    assert caplog.records == []


def test_a_failed_retrieval_is_asked_again_then_the_gap_is_unrecoverable(
    ground: Ground,
) -> None:
    p = ground.payload
    p.failures = ["EXECUTION_FAILED"] * 5
    p.make_gap(2, 1, 1)
    ground.run(gr.SETTLE_S + 1)
    assert len(p.retrievals) == 1
    assert ground.state() == [(GapState.OPEN, 1)]
    ground.run(gr.RETRY_S * 3)
    assert len(p.retrievals) == gr.MAX_ATTEMPTS == 3
    (gap,) = ground.archive.gaps()
    assert (gap.state, gap.attempts) == (GapState.UNRECOVERABLE, 3)
    assert gap.reason is not None and "EXECUTION_FAILED (code 10)" in gap.reason
    assert "after 3 retrievals" in gap.reason
    ground.run(120)
    assert len(p.retrievals) == 3


def test_a_definite_failure_makes_the_gap_unrecoverable_at_once(ground: Ground) -> None:
    p = ground.payload
    p.failures = ["STORE_BAD_TIME_RANGE"]
    p.make_gap(2, 1, 1)
    ground.run(60)
    assert len(p.retrievals) == 1
    (gap,) = ground.archive.gaps()
    assert (gap.state, gap.attempts) == (GapState.UNRECOVERABLE, 1)
    assert gap.reason is not None and gap.reason.startswith("retrieval failed: STORE_BAD_TIME")


def test_a_store_busy_with_another_retrieval_is_not_an_attempt(ground: Ground) -> None:
    p = ground.payload
    p.failures = ["STORE_RANGE_IN_PROGRESS"]
    p.make_gap(2, 1, 1)
    ground.run(gr.SETTLE_S + 1)
    assert len(p.retrievals) == 1 and ground.state() == [(GapState.OPEN, 0)]
    ground.run(gr.BUSY_RETRY_S - 2)
    assert len(p.retrievals) == 1
    ground.run(3 + gr.SETTLE_S)
    assert len(p.retrievals) == 2 and ground.state() == [(GapState.RECOVERED, 1)]


def test_packets_the_store_no_longer_holds_make_it_unrecoverable_after_three(
    ground: Ground,
) -> None:
    p = ground.payload
    p.make_gap(2, 3, 1)  # 2..4 lost
    p.forget = {3}
    ground.run(60)
    assert len(p.retrievals) == 3
    # From the second on, only the hole left: between 2 and 4.
    assert p.retrievals[1] == {"store": 1, "start": int(T0) + 2, "end": int(T0) + 4}
    (gap,) = ground.archive.gaps()
    assert (gap.state, gap.attempts) == (GapState.UNRECOVERABLE, 3)
    assert gap.reason == "1 packets still missing after 3 retrievals"
    assert seqs(ground.archive) == [0, 1, 2, 4, 5]


def test_a_retrieval_that_loses_packets_is_asked_again_for_the_rest(ground: Ground) -> None:
    p = ground.payload
    p.make_gap(2, 6, 1)  # 2..7 lost, 8 heard
    p.lose_in_retrieval = {5}
    ground.run(3 * (gr.SETTLE_S + 1))
    assert p.retrievals == [
        {"store": 1, "start": int(T0) + 1, "end": int(T0) + 8},
        {"store": 1, "start": int(T0) + 4, "end": int(T0) + 6},
    ]
    assert ground.state() == [(GapState.RECOVERED, 2)]
    assert seqs(ground.archive) == list(range(9))


def test_a_payload_restart_is_a_gap_closed_by_a_completed_retrieval(ground: Ground) -> None:
    p = ground.payload
    p.make(5)  # 0..4
    p.make(2, heard=False)  # 5, 6: the last before the restart
    p.restart()  # PAYLOAD_STARTED, count 0
    p.make(2)
    ground.run(gr.SETTLE_S + 1)
    assert p.retrievals == [{"store": 1, "start": int(T0) + 4, "end": int(T0) + 7}]
    (gap,) = ground.archive.gaps()
    assert gap.restart and gap.first_missing == 5
    ground.run(gr.SETTLE_S + 1)  # what was queued before the completion report has come
    assert ground.state() == [(GapState.RECOVERED, 1)]
    assert len(ground.archive.packets()) == 10


def test_a_restart_retrieval_that_lost_a_frame_is_asked_again(ground: Ground) -> None:
    p = ground.payload
    p.make(3)
    p.make(3, heard=False)  # 3..5
    p.restart()
    p.lose_in_retrieval = {5}  # the last before the restart: nothing tells it is missing
    ground.run(3 * (gr.SETTLE_S + 1))
    assert len(p.retrievals) == 2
    assert ground.state() == [(GapState.RECOVERED, 2)]
    assert len(ground.archive.packets()) == 7


def test_a_retrieval_without_answer_is_asked_again_without_counting(ground: Ground) -> None:
    p = ground.payload
    p.silent = True
    p.make_gap(2, 1, 1)
    ground.run(gr.SETTLE_S + 1)
    assert len(p.retrievals) == 1
    assert ground.state() == [(GapState.RETRIEVING, 0)]
    p.silent = False
    ground.run(gr.STALL_S + gr.RETRY_S + gr.SETTLE_S)
    assert len(p.retrievals) == 2
    assert ground.state() == [(GapState.RECOVERED, 1)]


def test_a_restarted_station_resumes_its_gaps_and_finds_the_one_across_its_stop(
    ground: Ground,
) -> None:
    p = ground.payload
    p.silent = True
    p.make_gap(2, 1, 1)  # 2 lost, 3 heard
    ground.run(gr.SETTLE_S + 1)
    assert ground.state() == [(GapState.RETRIEVING, 0)]
    ground.recovery.close()  # the station stops
    assert ground.state() == [(GapState.OPEN, 0)]
    p.make(2, heard=False)  # 4, 5 while it was stopped
    p.silent = False

    ground.new_recovery()
    assert [g.first_missing for g in ground.recovery.open_gaps()] == [2]
    p.make(1)  # 6
    ground.run(3 * (gr.SETTLE_S + 1))

    assert [(g.first_missing, g.missing, g.state) for g in ground.archive.gaps()] == [
        (2, 1, GapState.RECOVERED),
        (4, 2, GapState.RECOVERED),
    ]
    assert seqs(ground.archive) == list(range(7))


def test_a_gap_whose_times_cannot_be_asked_for_is_given_up(ground: Ground) -> None:
    """A payload clock not set yet stamps packets before 1970: no u32 time range holds them."""
    ground.archive.add_gap(Gap(D.apid, 5, 2, 7, -100.0, -90.0))
    ground.new_recovery()
    ground.run(1)
    assert ground.payload.retrievals == []
    (gap,) = ground.archive.gaps()
    assert gap.state is GapState.UNRECOVERABLE
    assert gap.reason is not None and gap.reason.startswith("its time range cannot be asked for")


# -- across passes: the end of a pass, for a retrieval out and the gaps just found, and the start
# of the next -----------------------------------------------------------------------------------


def test_a_retrieval_cut_by_the_end_of_a_pass_is_no_attempt_and_goes_again_at_the_next(
    ground: Ground,
) -> None:
    p = ground.payload
    p.make_gap(3, 2, 2)
    p.silent = True  # the pass ends before the answer comes
    ground.run(5)
    assert ground.state() == [(GapState.RETRIEVING, 0)]
    ground.link_up = False
    ground.recovery.contact_changed(False)
    ground.step(0.1)
    (gap,) = ground.archive.gaps()
    assert (gap.state, gap.attempts) == (GapState.OPEN, 0)
    assert gap.reason == "the pass ended before the retrieval did"
    ground.step(30.0)  # between passes: nothing is sent
    assert len(p.retrievals) == 1
    p.silent = False
    ground.link_up = True
    ground.recovery.contact_changed(True)
    ground.step(0.1)  # at once, not after a retry's wait
    assert len(p.retrievals) == 2
    ground.run(5)
    assert ground.state() == [(GapState.RECOVERED, 1)]


def test_gaps_found_are_kept_at_the_end_of_a_pass_without_waiting_for_the_bulk_channel(
    ground: Ground,
) -> None:
    p = ground.payload
    p.make_gap(2, 1, 1)  # the gap is found; the bulk channel's settle time has not passed
    ground.link_up = False
    ground.step(0.1)
    assert ground.state() == []
    ground.recovery.contact_changed(False)
    ground.step(0.1)
    assert ground.state() == [(GapState.OPEN, 0)]


def test_the_waits_are_the_timings(ground: Ground) -> None:
    assert ground.recovery.timing == RecoveryTiming()
    ground.recovery.timing = RecoveryTiming(step_s=0.1, settle_s=0.3, max_settle_s=1.0)
    p = ground.payload
    p.make_gap(2, 1, 1)
    ground.step(0.4)  # kept 0.4 s after it was found (the default waits 2 s), and asked for
    assert ground.state() == [(GapState.RETRIEVING, 0)]
    with pytest.raises(ValueError, match="settle_s must be above 0"):
        RecoveryTiming(settle_s=0.0)
