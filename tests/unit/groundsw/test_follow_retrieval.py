"""follow() when a command's reports were lost: the payload took it (CLCW) but no report came
in time, so its stored copy is asked for once, over the payload's time since just before the
command went; reports heard twice (live and retrieved) are shown once; without a way to ask,
or when nothing comes, the operator gets the plain timeout."""

from __future__ import annotations

import queue
import time

import pytest

from groundsw.session import CommandEvent, CommandRecord, EventKind, LinkTimeout, ReceivedTm
from groundsw.verification import RETRIEVAL_MARGIN_S, follow
from spacelink.pus import Stage, VerificationReport
from spacelink.spacepacket import PusTc

TC = PusTc(100, 17, 129, b"\x00", seq_count=5)


def record_taken() -> CommandRecord:
    record = CommandRecord(TC, time.monotonic())
    record._add(CommandEvent(EventKind.FRAME_ACKNOWLEDGED, time.monotonic(), 1))
    return record


def report(stage: Stage, order: int) -> CommandEvent:
    return CommandEvent(
        EventKind.REPORT, time.monotonic(), order, VerificationReport(stage, True, TC.request_id)
    )


def test_lost_reports_are_asked_for_once_and_shown_once() -> None:
    record = record_taken()
    record._add(report(Stage.ACCEPTANCE, 2))  # heard live; the rest was lost
    asked: list[tuple[float, float]] = []

    def retrieve(since: float, until: float) -> None:
        asked.append((since, until))
        for n, stage in enumerate((Stage.ACCEPTANCE, Stage.START, Stage.COMPLETION)):
            record._add(report(stage, 10 + n))

    lines: list[str] = []
    replies: queue.Queue[ReceivedTm] = queue.Queue()
    follow(record, replies, 0.3, lines.append, name="TEST", retrieve=retrieve)
    assert len(asked) == 1
    since, until = asked[0]
    assert since <= time.time() - RETRIEVAL_MARGIN_S and until >= time.time()
    stages = [line.split()[0] for line in lines]
    assert stages == ["frame", "accepted", "no", "started", "completed"]


def test_without_an_answer_the_timeout_says_the_stored_copy_did_not_come(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("groundsw.verification.RETRIEVAL_WAIT_S", 0.2)
    with pytest.raises(LinkTimeout, match="nor its stored copy"):
        follow(
            record_taken(), queue.Queue(), 0.2, lambda _: None, name="T", retrieve=lambda *_: None
        )
    with pytest.raises(LinkTimeout, match="telemetry lost on the downlink"):
        follow(record_taken(), queue.Queue(), 0.2, lambda _: None, name="T")
