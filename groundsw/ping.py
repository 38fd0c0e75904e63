"""`groundsw ping`: TC[17,1] are-you-alive, each verification stage shown as it arrives."""

from __future__ import annotations

import queue
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

from groundsw.session import CommandRecord, LinkSession, ReceivedTm
from groundsw.verification import CommandFailed, follow, ms
from spacelink.pus import ARE_YOU_ALIVE, ARE_YOU_ALIVE_REPORT, TEST_SERVICE

Print = Callable[[str], None]


@dataclass
class PingResult:
    round_trips: list[float]
    failures: int


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
    got_reply = False

    def on_reply(item: ReceivedTm, elapsed: float) -> None:
        nonlocal got_reply
        if (item.tm.service, item.tm.subtype) == (TEST_SERVICE, ARE_YOU_ALIVE_REPORT):
            got_reply = True
            out(f"  {'TM[17,2] reply':<20}{ms(elapsed)}")

    elapsed = follow(record, replies, timeout, out, name="TC[17,1]", on_reply=on_reply)
    if not got_reply:
        raise CommandFailed(
            f"TC[17,1] {record.request_id} completed without a TM[17,2] reply", None
        )
    out(f"  round trip {elapsed * 1000:.1f} ms")
    return elapsed


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
