"""What commands, transfers and views need of a link to the payload, and what it tells them: the
`PayloadLink` protocol, the record of a command sent, the TM packets received.

A `LinkSession` on a serial port, a client's end of a link the ground station owns and a remote
station client all speak it; its errors are the link's, raised by any of them.
"""

from __future__ import annotations

import enum
import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from spacelink.errors import LinkError
from spacelink.pus import Stage, VerificationReport
from spacelink.spacepacket import AckFlags, PusTc, PusTm, RequestId

log = logging.getLogger(__name__)


class PacketTooLong(LinkError):
    """A TC packet longer than a frame's data field can carry."""


class LinkTimeout(LinkError):
    """Nothing (or not the expected answer) came back within the allowed time."""


class EventKind(enum.Enum):
    """What the link can tell of a command sent."""

    QUEUED = "queued"  # held by the ground station until the link is up
    FRAME_ACKNOWLEDGED = "frame acknowledged"
    REPORT = "report"
    DROPPED = "dropped"


@dataclass(frozen=True)
class CommandEvent:
    """One thing the link told of a command, with when and in what order it arrived."""

    kind: EventKind
    at: float
    order: int
    """Arrival index, shared with `ReceivedTm.order`: sorts events and TM into link order."""
    report: VerificationReport | None = None
    reason: str = ""


@dataclass
class CommandRecord:
    """One command sent: its packet, when, and everything the link has said about it since."""

    tc: PusTc
    sent_at: float
    events: queue.Queue[CommandEvent] = field(default_factory=queue.Queue)
    history: list[CommandEvent] = field(default_factory=list)
    finished: threading.Event = field(default_factory=threading.Event)
    failure: VerificationReport | None = None
    # Told of every event as it is added (the station's history, a client's stream).
    listeners: list[Callable[[CommandRecord, CommandEvent], None]] = field(default_factory=list)

    @property
    def request_id(self) -> RequestId:
        return self.tc.request_id

    def _add(self, event: CommandEvent) -> None:
        self.history.append(event)
        self.events.put(event)
        for listener in self.listeners:
            try:
                listener(self, event)
            except Exception:  # a listener must not take the link down
                log.exception("command listener failed")
        report = event.report
        if event.kind is EventKind.DROPPED:
            self.finished.set()
        elif report is not None:
            if not report.success:
                self.failure = report
                self.finished.set()
            elif report.stage is Stage.COMPLETION:
                self.finished.set()


@dataclass(frozen=True)
class ReceivedTm:
    """A TM packet as the ground received it."""

    tm: PusTm
    raw: bytes
    received_at: float
    order: int
    # The virtual channel it came on: 0 real time; 1 bulk (file data, or a packet the payload
    # kept and sent again: old values, not the latest).
    vcid: int = 0


TmListener = Callable[[ReceivedTm], None]
TmFilter = Callable[[PusTm], bool]


class PayloadLink(Protocol):
    """What commands, transfers and views need of a link: a `LinkSession`, or a client's end
    of a link the ground station owns (in this process or in `groundsw serve`)."""

    source_id: int

    @property
    def error(self) -> BaseException | None: ...

    @property
    def max_packet_octets(self) -> int: ...

    def command(
        self, service: int, subtype: int, data: bytes = b"", ack: AckFlags = AckFlags.ALL
    ) -> CommandRecord: ...

    def subscribe(self) -> queue.Queue[ReceivedTm]: ...

    def unsubscribe(self, handle: object) -> None: ...
