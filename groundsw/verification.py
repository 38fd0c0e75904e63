"""Following one command through its verification stages, with its replies, as they arrive."""

from __future__ import annotations

import queue
import time
from collections.abc import Callable
from typing import TypeVar

from groundsw.session import CommandEvent, CommandRecord, EventKind, LinkTimeout, ReceivedTm
from spacelink.pus import Stage, VerificationReport, failure_name

Print = Callable[[str], None]
# Told of every TM packet that arrives while the command is followed (other than reports).
OnReply = Callable[[ReceivedTm, float], None]
# A readable line for a failure report's code and data.
DescribeFailure = Callable[[VerificationReport], str]
# Asks the payload to send again, from its packet store (ST[15]), what it kept from `since`
# (its own time, UNIX s) to `until`: the reports the downlink lost come back on VC 1.
Retrieve = Callable[[float, float], None]
# How much longer a command's end is waited for once its stored reports are asked for.
RETRIEVAL_WAIT_S = 30.0
# Asked from this long before the command went (the payload's clock against ours, known to a
# second from the telemetry, and the time the command took to go up).
RETRIEVAL_MARGIN_S = 5.0


class CommandFailed(Exception):
    """The payload answered with a failure report."""

    def __init__(self, message: str, report: VerificationReport | None) -> None:
        super().__init__(message)
        self.report = report


def ms(seconds: float) -> str:
    return f"{seconds * 1000:8.1f} ms"


def default_failure_text(report: VerificationReport) -> str:
    code = report.failure_code or 0
    return f"code {code} ({failure_name(code)})"


def follow(
    record: CommandRecord,
    replies: queue.Queue[ReceivedTm],
    timeout: float,
    out: Print,
    *,
    name: str,
    on_reply: OnReply | None = None,
    describe_failure: DescribeFailure = default_failure_text,
    retrieve: Retrieve | None = None,
) -> float:
    """Print each stage as it arrives until completion; the time to the completion report.

    When the payload took the command (its CLCW acknowledged the frame) but no completion came
    in time, and `retrieve` is given, its reports are asked for again from the payload's store
    and waited for a while longer. CommandFailed on a failure report, LinkTimeout when the
    completion does not come in time.
    """
    deadline = record.sent_at + timeout
    # The payload's clock minus ours, from the telemetry that comes meanwhile.
    onboard_offset: float | None = None
    retrieved = False
    seen: set[tuple[Stage, int | None]] = set()
    while True:
        remaining = deadline - time.monotonic()
        taken = any(e.kind is EventKind.FRAME_ACKNOWLEDGED for e in record.history)
        if remaining <= 0 and taken and retrieve is not None and not retrieved:
            retrieved = True
            now = time.time()
            sent = now - (time.monotonic() - record.sent_at)
            offset = onboard_offset or 0.0
            out(
                f"  {'no report yet':<20}{ms(time.monotonic() - record.sent_at)}  the downlink "
                "may have lost it: asking the payload for its stored copy"
            )
            retrieve(sent + offset - RETRIEVAL_MARGIN_S, now + offset + RETRIEVAL_MARGIN_S)
            deadline = time.monotonic() + RETRIEVAL_WAIT_S
            continue
        if remaining <= 0:
            if taken:
                stored = (
                    f", nor its stored copy within {RETRIEVAL_WAIT_S:g} s more" if retrieved else ""
                )
                raise LinkTimeout(
                    f"the payload took {name} {record.request_id} (its CLCW acknowledged the "
                    f"frame) but no completion report came within {timeout:g} s{stored}: "
                    "telemetry lost on the downlink?"
                )
            if record.history and record.history[-1].kind is EventKind.QUEUED:
                raise LinkTimeout(
                    f"no answer to {name} {record.request_id} within {timeout:g} s: the link is "
                    "down and it was not sent (a ground station keeps it queued until the link "
                    "is back or it expires: groundsw queue lists it, --cancel drops it)"
                )
            raise LinkTimeout(f"no answer to {name} {record.request_id} within {timeout:g} s")
        try:
            first = record.events.get(timeout=min(remaining, 0.1))
        except queue.Empty:
            continue
        # Replies and reports arrive on one link: show them in the order they came.
        items: list[CommandEvent | ReceivedTm] = [first, *drain(record.events), *drain(replies)]
        for item in sorted(items, key=lambda i: i.order):
            if isinstance(item, ReceivedTm):
                if item.vcid == 0:
                    onboard_offset = item.tm.time.to_unix() - time.time()
                if on_reply is not None:
                    on_reply(item, item.received_at - record.sent_at)
                continue
            elapsed = item.at - record.sent_at
            if item.kind is EventKind.QUEUED:
                out(f"  {'queued':<20}{ms(elapsed)}  {item.reason}: sent when the link is back")
            elif item.kind is EventKind.FRAME_ACKNOWLEDGED:
                out(f"  {'frame acknowledged':<20}{ms(elapsed)}")
            elif item.kind is EventKind.DROPPED:
                raise LinkTimeout(f"the uplink gave up on {record.request_id}: {item.reason}")
            elif item.report is not None:
                report = item.report
                if (report.stage, report.step) in seen:
                    continue  # heard live, and again from the payload's store
                seen.add((report.stage, report.step))
                if not report.success:
                    text = describe_failure(report)
                    out(f"  {report.stage.label + ' FAILED':<20}{ms(elapsed)}  {text}")
                    raise CommandFailed(
                        f"{name} {record.request_id} failed at {report.stage.name.lower()}: {text}",
                        report,
                    )
                step = f" step {report.step}" if report.stage is Stage.PROGRESS else ""
                out(f"  {report.stage.label + step:<20}{ms(elapsed)}")
                if report.stage is Stage.COMPLETION:
                    # Replies sent before the completion report are in the queue by now.
                    for late in drain(replies):
                        if on_reply is not None:
                            on_reply(late, late.received_at - record.sent_at)
                    return elapsed


_T = TypeVar("_T")


def drain(q: queue.Queue[_T]) -> list[_T]:
    items = []
    while True:
        try:
            items.append(q.get_nowait())
        except queue.Empty:
            return items
