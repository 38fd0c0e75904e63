"""`groundsw ping --count N` as ping(8): lost pings are reported and counted, the run goes on,
and it fails only when no ping was answered."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from groundsw.ping import PingResult, run_ping, summary_text
from groundsw.session import CommandEvent, CommandRecord, EventKind, LinkTimeout
from groundsw.verification import CommandFailed
from spacelink.icd import PAYLOAD_APID
from spacelink.pus import ARE_YOU_ALIVE_REPORT, TEST_SERVICE, Stage, VerificationReport
from spacelink.spacepacket import AckFlags, PusTc, PusTm
from tests.unit.groundsw.fakes import FakeTelemetry

TIMEOUT = 0.05


class FakePinged(FakeTelemetry):
    """Answers each TC[17,1] as `fates` says: "answer", "lose" (nothing comes back) or
    "refuse" (a completion failure report)."""

    def __init__(self, fates: list[str]) -> None:
        super().__init__()
        self.source_id = 1
        self.error: BaseException | None = None
        self.max_packet_octets = 1017
        self._fates: Iterator[str] = iter(fates)
        self._order = 0

    def command(
        self, service: int, subtype: int, data: bytes = b"", ack: AckFlags = AckFlags.ALL
    ) -> CommandRecord:
        self._order += 10
        tc = PusTc(PAYLOAD_APID, service, subtype, data, self._order, self.source_id, ack)
        record = CommandRecord(tc, time.monotonic())
        fate = next(self._fates)
        if fate == "lose":
            return record
        at = record.sent_at + 0.01
        self._report(record, Stage.ACCEPTANCE, at, 1)
        if fate == "refuse":
            self._report(record, Stage.COMPLETION, at, 2, code=10)
            return record
        reply = PusTm(PAYLOAD_APID, TEST_SERVICE, ARE_YOU_ALIVE_REPORT, b"", 0, 1, 0)
        self.publish(reply, self._order + 2)
        self._report(record, Stage.COMPLETION, at, 3)
        return record

    def _report(
        self, record: CommandRecord, stage: Stage, at: float, step: int, code: int | None = None
    ) -> None:
        report = VerificationReport(stage, code is None, record.request_id, None, code, b"")
        record._add(CommandEvent(EventKind.REPORT, at, self._order + step, report))


def pings(fates: list[str]) -> tuple[list[str], PingResult | BaseException]:
    lines: list[str] = []
    try:
        return lines, run_ping(FakePinged(fates), len(fates), 0.0, TIMEOUT, lines.append)
    except (LinkTimeout, CommandFailed) as exc:
        return lines, exc


def test_a_lost_ping_is_reported_and_the_run_goes_on() -> None:
    lines, result = pings(["answer", "lose", "answer"])
    assert isinstance(result, PingResult)  # one answer is enough: exit 0, as ping(8)
    assert (result.sent, len(result.round_trips), result.lost) == (3, 2, 1)
    lost = [line for line in lines if line.startswith("ping 2: lost: ")]
    assert len(lost) == 1 and "no answer to TC[17,1]" in lost[0]
    assert lines[-1].startswith("3 pings sent, 2 answered, 1 lost (33%); round trip min/avg/max")
    assert sum(line.startswith("  round trip ") for line in lines) == 2


def test_no_answer_at_all_is_a_timeout_with_the_summary() -> None:
    lines, result = pings(["lose", "lose"])
    assert isinstance(result, LinkTimeout)  # exit 3
    assert str(result).startswith("2 pings sent, 0 answered, 2 lost (100%): no answer to")
    assert [line[:14] for line in lines if ": lost: " in line] == [
        "ping 1: lost: ",
        "ping 2: lost: ",
    ]
    assert lines[-1] == "2 pings sent, 0 answered, 2 lost (100%)"


def test_a_single_lost_ping_fails_with_its_own_sentence() -> None:
    lines, result = pings(["lose"])
    assert isinstance(result, LinkTimeout)
    assert str(result).startswith("no answer to TC[17,1]")
    assert not any(line.startswith("1 pings sent") for line in lines)  # no summary for one


def test_refusals_are_counted_apart_and_all_refused_is_a_failure() -> None:
    lines, result = pings(["refuse", "answer"])
    assert isinstance(result, PingResult) and result.refused == 1 and result.lost == 0
    assert "2 pings sent, 1 answered, 0 lost (0%), 1 refused" in lines[-1]
    _, result = pings(["refuse", "refuse"])
    assert isinstance(result, CommandFailed)  # exit 1: the payload answered, with a refusal


def test_the_summary_of_nothing_sent() -> None:
    assert summary_text(PingResult()) == "0 pings sent, 0 answered, 0 lost (0%)"


@pytest.mark.parametrize("fates", [["answer"], ["answer", "answer"]])
def test_every_ping_answered(fates: list[str]) -> None:
    lines, result = pings(fates)
    assert isinstance(result, PingResult) and result.lost == 0
    assert not any("lost:" in line for line in lines)
