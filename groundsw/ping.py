"""`groundsw ping`: TC[17,1] are-you-alive, each verification stage shown as it arrives."""

from __future__ import annotations

import queue
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from groundsw.session import (
    CommandEvent,
    CommandRecord,
    EventKind,
    LinkSession,
    LinkTimeout,
    ReceivedTm,
)
from spacelink.pus import ARE_YOU_ALIVE, ARE_YOU_ALIVE_REPORT, TEST_SERVICE, Stage, failure_name

Print = Callable[[str], None]


class CommandFailed(Exception):
    """The payload answered with a failure report."""


@dataclass
class PingResult:
    round_trips: list[float]
    failures: int


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:8.1f} ms"


def ping_once(session: LinkSession, number: int, timeout: float, out: Print) -> float:
    """Send one TC[17,1]; print each stage; the round-trip time to the completion report."""
    replies = session.subscribe()
    try:
        record = session.command(TEST_SERVICE, ARE_YOU_ALIVE)
        out(f"ping {number}: TC[17,1] {record.request_id} sent")
        return _follow(record, replies, timeout, out)
    finally:
        session.unsubscribe(replies)


def _follow(
    record: CommandRecord, replies: queue.Queue[ReceivedTm], timeout: float, out: Print
) -> float:
    deadline = record.sent_at + timeout
    got_reply = False
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            if any(e.kind is EventKind.FRAME_ACKNOWLEDGED for e in record.history):
                raise LinkTimeout(
                    f"the payload took TC[17,1] {record.request_id} (its CLCW acknowledged the "
                    f"frame) but no completion report came within {timeout:g} s: "
                    "telemetry lost on the downlink?"
                )
            raise LinkTimeout(f"no answer to TC[17,1] {record.request_id} within {timeout:g} s")
        try:
            first = record.events.get(timeout=min(remaining, 0.1))
        except queue.Empty:
            continue
        # Replies and reports arrive on one link: show them in the order they came.
        items: list[CommandEvent | ReceivedTm] = [first, *_drain(record.events), *_drain(replies)]
        for item in sorted(items, key=lambda i: i.order):
            if isinstance(item, ReceivedTm):
                if (item.tm.service, item.tm.subtype) == (TEST_SERVICE, ARE_YOU_ALIVE_REPORT):
                    got_reply = True
                    out(f"  {'TM[17,2] reply':<20}{_ms(item.received_at - record.sent_at)}")
                continue
            elapsed = item.at - record.sent_at
            if item.kind is EventKind.FRAME_ACKNOWLEDGED:
                out(f"  {'frame acknowledged':<20}{_ms(elapsed)}")
            elif item.kind is EventKind.DROPPED:
                raise LinkTimeout(f"the uplink gave up on {record.request_id}: {item.reason}")
            elif item.report is not None:
                report = item.report
                code = report.failure_code or 0
                if not report.success:
                    out(
                        f"  {report.stage.label + ' FAILED':<20}{_ms(elapsed)}"
                        f"  code {code} ({failure_name(code)})"
                    )
                    raise CommandFailed(
                        f"TC[17,1] {record.request_id} failed at {report.stage.name.lower()}: "
                        f"code {code} ({failure_name(code)})"
                    )
                out(f"  {report.stage.label:<20}{_ms(elapsed)}")
                if report.stage is Stage.COMPLETION:
                    if not got_reply:
                        raise CommandFailed(
                            f"TC[17,1] {record.request_id} completed without a TM[17,2] reply"
                        )
                    out(f"  round trip {elapsed * 1000:.1f} ms")
                    return elapsed


_T = TypeVar("_T")


def _drain(q: queue.Queue[_T]) -> list[_T]:
    items = []
    while True:
        try:
            items.append(q.get_nowait())
        except queue.Empty:
            return items


def run_ping(
    session: LinkSession, count: int, interval: float, timeout: float, out: Print
) -> PingResult:
    round_trips: list[float] = []
    for number in range(1, count + 1):
        if number > 1 and interval > 0:
            time.sleep(interval)
        round_trips.append(ping_once(session, number, timeout, out))
    if count > 1:
        out(
            f"{count} pings, {len(round_trips)} completed; round trip min/avg/max ="
            f" {min(round_trips) * 1000:.1f}/{statistics.fmean(round_trips) * 1000:.1f}/"
            f"{max(round_trips) * 1000:.1f} ms"
        )
    return PingResult(round_trips, 0)
