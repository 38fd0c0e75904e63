"""The request and answer exchange every ground operation on models, jobs and files shares: a
command, its verification reports and its reply packets, asked again when a read's answer is
lost.
"""

from __future__ import annotations

import logging
import queue
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from itertools import pairwise
from typing import Any, TypeVar

from groundsw.payload_link import (
    CommandEvent,
    CommandRecord,
    EventKind,
    LinkTimeout,
    PayloadLink,
    ReceivedTm,
)
from groundsw.progress import Clock
from groundsw.send_command import describe_failure
from groundsw.verification import CommandFailed, drain
from spacelink.errors import LinkError
from spacelink.pus import EVENT_SERVICE, Stage, VerificationReport
from telemetry_defs.model import CodecError, Dictionary, TmPacket, UnknownName

log = logging.getLogger(__name__)

# A reply packet normally precedes the completion report on VC 0; allow for it to lag.
REPLY_GRACE_S = 2.0
# Requests of a read-only query within its timeout: at BER 1e-5 and 921600 baud one TM frame in
# twelve is lost, and with it a query's reports and reply now and then.
QUERY_ATTEMPTS = 3


def failure_code(exc: CommandFailed) -> int | None:
    """The failure code of the report that failed the command, if one did."""
    return exc.report.failure_code if exc.report is not None else None


_T = TypeVar("_T")
# A progress report's step is one octet: an answer in several packets is counted modulo 256.
_STEP_MODULO = 256


@dataclass(frozen=True, slots=True)
class _Reply:
    """A reply packet of a request: its arrival, its message type counter, its values."""

    order: int
    counter: int
    values: dict[str, Any]


class _Answer:
    """What one request heard: its replies, and (for an answer in several packets, as
    `Exchange.query_all` reads it) what tells whether every one of them came."""

    def __init__(self) -> None:
        self.replies: list[_Reply] = []
        # Arrival of this request's latest acceptance or start report: replies before it
        # answer an earlier request.
        self.since: int | None = None
        # The progress report's step (how many replies were sent) and its arrival.
        self.sent: tuple[int, int] | None = None

    def note(self, event: CommandEvent) -> None:
        report = event.report
        if report is None or not report.success:
            return
        if report.stage in (Stage.ACCEPTANCE, Stage.START):
            self.since = event.order
        elif report.stage is Stage.PROGRESS and report.step is not None:
            self.sent = (report.step, event.order)

    def _mine(self) -> list[_Reply]:
        if self.since is None or self.sent is None:
            return []
        since, (_, until) = self.since, self.sent
        return sorted((r for r in self.replies if since < r.order < until), key=lambda r: r.order)

    def whole(self) -> list[dict[str, Any]]:
        """Every reply of the answer, or none while one is missing."""
        mine = self._mine()
        if self.sent is None or not mine or len(mine) % _STEP_MODULO != self.sent[0]:
            return []
        if any((b.counter - a.counter) & 0xFFFF != 1 for a, b in pairwise(mine)):
            return []
        return [r.values for r in mine]

    def lost(self, command: str, reply: TmPacket, every: bool) -> str:
        """Why a completed request has no answer to return, in one sentence."""
        packet = reply.name
        if not every or not self.replies:
            return (
                f"{command} completed but its {packet} reply "
                f"(TM[{reply.service},{reply.subtype}]) was lost on the downlink"
            )
        if self.since is None:
            return f"{command} completed but its acceptance and start reports were lost"
        if self.sent is None:
            return (
                f"{command} completed but its progress report, which tells how many {packet} "
                "it sent, was lost on the downlink"
            )
        return (
            f"{command} completed but {len(self._mine())} of its {packet} replies came, not the "
            f"{self.sent[0]} (modulo {_STEP_MODULO}) it sent in a row: lost on the downlink"
        )


@dataclass
class Exchange:
    """Sends commands and waits for their reports and replies on one link."""

    link: PayloadLink
    dictionary: Dictionary
    timeout: float
    clock: Clock = time.monotonic

    def query(
        self,
        command: str,
        values: Mapping[str, Any] | None = None,
        *,
        reply: str,
        match: Callable[[dict[str, Any]], bool] | None = None,
        attempts: int = QUERY_ATTEMPTS,
    ) -> dict[str, Any]:
        """`request` for a command that only reads (asking twice changes nothing): asked again
        when its answer is lost, `attempts` times within the timeout in all."""

        def ask(timeout: float) -> dict[str, Any]:
            found = self.request(command, values, reply=reply, match=match, timeout=timeout)
            assert found is not None
            return found

        return self._asked_again(command, attempts, ask)

    def query_all(
        self,
        command: str,
        values: Mapping[str, Any] | None = None,
        *,
        reply: str,
        attempts: int = QUERY_ATTEMPTS,
    ) -> list[dict[str, Any]]:
        """Every `reply` packet of a command that only reads and answers in several, in the order
        they were sent; asked again, as `query` is, when any of them is lost.

        The payload tells how many it sent in a progress report (TM[1,5], its step the count
        modulo 256) before the completion report, and the replies' message type counters follow
        one another: the answer is whole when as many came between this request's acceptance
        (or start) report and that progress report, with no counter missing. A partial answer
        is never returned. While replies keep coming, an attempt waits on past its share of the
        timeout (a long answer on a slow downlink)."""
        return self._asked_again(
            command,
            attempts,
            lambda timeout: self._exchange(
                command, values, reply=reply, every=True, timeout=timeout
            ),
        )

    def _asked_again(self, command: str, attempts: int, ask: Callable[[float], _T]) -> _T:
        per_attempt = self.timeout / attempts
        for attempt in range(1, attempts + 1):
            try:
                return ask(per_attempt)
            except StillQueued:
                raise  # asked again, it would only wait in the same queue
            except LinkTimeout as exc:
                if attempt == attempts:
                    raise LinkTimeout(
                        f"no answer to {command} ({attempts} requests in {self.timeout:g} s; "
                        f"last: {exc})"
                    ) from None
                log.info("%s: %s; asking again", command, exc)
        raise AssertionError("unreachable: the last attempt returns or raises")

    def request(
        self,
        command: str,
        values: Mapping[str, Any] | None = None,
        *,
        reply: str | None = None,
        match: Callable[[dict[str, Any]], bool] | None = None,
        until_reply: bool = False,
        on_report: Callable[[VerificationReport, float], None] | None = None,
        timeout: float | None = None,
    ) -> dict[str, Any] | None:
        """Send `command` with every success report asked for; its `reply` packet's values.

        Waits for the completion report, or only for the reply with `until_reply`. Raises
        CommandFailed (one sentence naming the failure) or LinkTimeout.
        """
        found = self._exchange(
            command,
            values,
            reply=reply,
            match=match,
            until_reply=until_reply,
            on_report=on_report,
            timeout=timeout,
        )
        return found[0] if found else None

    def _exchange(
        self,
        command: str,
        values: Mapping[str, Any] | None,
        *,
        reply: str | None,
        match: Callable[[dict[str, Any]], bool] | None = None,
        until_reply: bool = False,
        on_report: Callable[[VerificationReport, float], None] | None = None,
        timeout: float | None = None,
        every: bool = False,
    ) -> list[dict[str, Any]]:
        """`request`'s exchange: the first matching reply, or with `every` every reply of a
        whole answer in several packets (`query_all`); none without `reply`."""
        cmd = self.dictionary.command(command)
        packet = self.dictionary.packets[reply] if reply is not None else None
        replies = self.link.subscribe() if packet is not None else None
        limit = self.timeout if timeout is None else timeout
        answer = _Answer()
        try:
            record = self.link.command(cmd.service, cmd.subtype, cmd.encode(values or {}))
            deadline = self.clock() + limit
            # A request the station holds for the link waits out the whole timeout, not an
            # attempt's share: no answer can be lost before it is sent.
            whole = deadline - limit + self.timeout
            completed_at: float | None = None
            while True:
                if replies is not None and packet is not None and (every or not answer.replies):
                    for item in drain(replies):
                        tm = item.tm
                        if (tm.service, tm.subtype) != (packet.service, packet.subtype):
                            continue
                        if tm.destination_id != self.link.source_id:
                            continue
                        try:
                            got = packet.layout.parse(tm.source_data)
                        except CodecError as exc:
                            log.warning("%s not decoded: %s", packet.name, exc)
                            continue
                        if match is None or match(got):
                            answer.replies.append(_Reply(item.order, tm.msg_type_counter, got))
                            if not every:
                                break
                            deadline = max(deadline, self.clock() + limit)
                found = answer.whole() if every else [r.values for r in answer.replies[:1]]
                if found and (until_reply or completed_at is not None):
                    # Reports that came with the reply are told before it is returned.
                    for event in drain(record.events):
                        self._take_report(command, event, record, on_report)
                    return found
                if completed_at is not None:
                    if packet is None:
                        return []
                    if self.clock() - completed_at > REPLY_GRACE_S:
                        raise LinkTimeout(answer.lost(command, packet, every))
                if self.link.error is not None:
                    raise LinkError(f"the serial port failed: {self.link.error}")
                if self.clock() > deadline:
                    if _still_queued(record):
                        if deadline < whole:
                            deadline = whole
                            continue
                        raise StillQueued(
                            f"no answer to {command} within {self.timeout:g} s: the link is down "
                            "and it waits in the ground station's queue (sent when the link is "
                            "back, unless it expires; groundsw queue --cancel drops it)"
                        )
                    raise LinkTimeout(f"no answer to {command} within {limit:g} s")
                try:
                    event = record.events.get(timeout=0.05)
                except queue.Empty:
                    continue
                answer.note(event)
                if self._take_report(command, event, record, on_report):
                    completed_at = self.clock()
        finally:
            if replies is not None:
                self.link.unsubscribe(replies)

    def _take_report(
        self,
        command: str,
        event: CommandEvent,
        record: CommandRecord,
        on_report: Callable[[VerificationReport, float], None] | None,
    ) -> bool:
        """Act on one event of a request: True at its completion; CommandFailed on a failure
        report, LinkTimeout when the uplink gave it up."""
        if event.kind is EventKind.DROPPED:
            raise LinkTimeout(f"the uplink gave up on {command}: {event.reason}")
        report = event.report
        if report is None:
            return False
        if not report.success:
            raise CommandFailed(
                f"{command} failed at {report.stage.name.lower()}: "
                f"{describe_failure(self.dictionary, report)}",
                report,
            )
        if on_report is not None:
            on_report(report, event.at - record.sent_at)
        return report.stage is Stage.COMPLETION


class StillQueued(LinkTimeout):
    """No answer because the request was never sent: the ground station holds it until the
    link is back."""


def _still_queued(record: CommandRecord) -> bool:
    return bool(record.history) and all(e.kind is EventKind.QUEUED for e in record.history)


def event_values(
    dictionary: Dictionary, item: ReceivedTm, names: Iterable[str]
) -> tuple[str, dict[str, Any]] | None:
    """(name, values) if the packet is one of the named events, else None."""
    tm = item.tm
    if tm.service != EVENT_SERVICE:
        return None
    try:
        decoded = dictionary.decode_tm(tm.service, tm.subtype, tm.source_data)
    except (CodecError, UnknownName):
        return None
    if decoded.name not in names:
        return None
    return decoded.name, decoded.values
