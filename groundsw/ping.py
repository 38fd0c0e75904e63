"""`groundsw ping`: TC[17,1] are-you-alive, each verification stage shown as it arrives.

As ping(8): a lost ping is reported and the next one goes out; several pings end with the
count sent, answered and lost. Exit: 0 when any was answered, 3 when none (1 when the payload
refused them all).
"""

from __future__ import annotations

import queue
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from groundsw.session import CommandRecord, LinkTimeout, PayloadLink, ReceivedTm
from groundsw.verification import CommandFailed, follow, ms
from spacelink.pus import ARE_YOU_ALIVE, ARE_YOU_ALIVE_REPORT, TEST_SERVICE

Print = Callable[[str], None]


@dataclass
class PingResult:
    """How a run of pings went: round trips of those answered, failure reports."""

    sent: int = 0
    round_trips: list[float] = field(default_factory=list)
    refused: int = 0

    @property
    def lost(self) -> int:
        return self.sent - len(self.round_trips) - self.refused


def ping_once(session: PayloadLink, number: int, timeout: float, out: Print) -> float:
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


def summary_text(result: PingResult) -> str:
    """`3 pings sent, 2 answered, 1 lost (33%); round trip min/avg/max = ...`, as ping(8)."""
    text = (
        f"{result.sent} pings sent, {len(result.round_trips)} answered, {result.lost} lost"
        f" ({round(100 * result.lost / result.sent) if result.sent else 0}%)"
    )
    if result.refused:
        text += f", {result.refused} refused"
    trips = result.round_trips
    if trips:
        text += (
            f"; round trip min/avg/max = {min(trips) * 1000:.1f}/"
            f"{statistics.fmean(trips) * 1000:.1f}/{max(trips) * 1000:.1f} ms"
        )
    return text


def run_ping(
    session: PayloadLink, count: int, interval: float, timeout: float, out: Print
) -> PingResult:
    """`count` pings, going on after a lost one. Returns when any was answered; raises the
    last error (LinkTimeout, or CommandFailed when the payload refused them all) otherwise."""
    result = PingResult()
    last: LinkTimeout | CommandFailed | None = None
    try:
        for number in range(1, count + 1):
            if number > 1 and interval > 0:
                time.sleep(interval)
            try:
                trip = ping_once(session, number, timeout, out)
            except CommandFailed as exc:
                out(f"ping {number}: refused: {exc}")
                result.refused += 1
                last = exc
            except LinkTimeout as exc:
                # Other link errors (the port, COP-1 given up) end the run: no later ping.
                out(f"ping {number}: lost: {exc}")
                last = exc
            else:
                result.round_trips.append(trip)
            result.sent += 1  # counted once its fate is known
    except KeyboardInterrupt:
        # As ping(8): Ctrl-C still shows what the pings that ended found.
        if result.sent:
            out(summary_text(result))
        raise
    if count > 1:
        out(summary_text(result))
    if result.round_trips or last is None:
        return result
    if count == 1:
        raise last
    said = f"{summary_text(result)}: {last}"
    if result.refused == result.sent:
        raise CommandFailed(said, None)
    raise LinkTimeout(said)
