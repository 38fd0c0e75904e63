"""What a command sees and raises: its execution context and the PUS-coded errors."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flight.telemetry import TmPublisher
from spacelink.pus import VERIFICATION_SERVICE, FailureCode, Stage, VerificationReport
from spacelink.spacepacket import AckFlags, PusTc, RequestId
from telemetry_defs.model import Dictionary, TmPacket

DEFERRED = object()
"""Returned by `execute` when the command completes later and reports completion itself."""


class CommandError(Exception):
    """A command that cannot be carried out; the router turns it into a failure report."""

    def __init__(self, code: int, message: str, data: bytes = b"") -> None:
        super().__init__(message)
        self.code = code
        self.data = data


# Failure data of code 6 is the reason in words (telemetry_defs failures.toml), kept short
# enough for one TM frame.
MAX_DETAIL_OCTETS = 200


def detail_octets(message: str) -> bytes:
    """A reason in words as failure data: UTF-8, cut on a character boundary."""
    return message.encode()[:MAX_DETAIL_OCTETS].decode(errors="ignore").encode()


class BadApplicationData(CommandError):
    """The application data does not decode or is out of range (code 6); data: why, in words."""

    def __init__(self, message: str) -> None:
        super().__init__(FailureCode.BAD_APPLICATION_DATA, message, detail_octets(message))


def named_failure(dictionary: Dictionary, name: str, message: str, **data: Any) -> CommandError:
    """A mission failure code by its dictionary name; its data the `data` given, in the layout the
    dictionary defines for it, else the reason in words."""
    failure = dictionary.failure_named(name)
    if data and failure.layout is not None:
        return CommandError(failure.code, message, failure.layout.build(data))
    return CommandError(failure.code, message, detail_octets(message))


_STAGE_FLAG = {
    Stage.ACCEPTANCE: AckFlags.ACCEPTANCE,
    Stage.START: AckFlags.START,
    Stage.PROGRESS: AckFlags.PROGRESS,
    Stage.COMPLETION: AckFlags.COMPLETION,
}


@dataclass
class VerificationReporter:
    """Emits TM[1,x] for one request, honouring its acknowledgement flags (ICD 5, 8)."""

    tm: TmPublisher
    request_id: RequestId
    source_id: int
    ack_flags: AckFlags

    @classmethod
    def for_tc(cls, tm: TmPublisher, tc: PusTc) -> VerificationReporter:
        return cls(tm, tc.request_id, tc.source_id, tc.ack_flags)

    @classmethod
    def for_request(
        cls, tm: TmPublisher, request_id: RequestId, source_id: int
    ) -> VerificationReporter:
        """For a packet that did not parse: failure reports only."""
        return cls(tm, request_id, source_id, AckFlags.NONE)

    def _send(self, report: VerificationReport) -> None:
        self.tm.publish(
            VERIFICATION_SERVICE, report.subtype, report.pack(), destination_id=self.source_id
        )

    def success(self, stage: Stage, step: int | None = None) -> None:
        if self.ack_flags & _STAGE_FLAG[stage]:
            self._send(VerificationReport(stage, True, self.request_id, step))

    def failure(self, stage: Stage, code: int, data: bytes = b"", step: int | None = None) -> None:
        self._send(VerificationReport(stage, False, self.request_id, step, int(code), data))


@dataclass
class CommandContext:
    """Handed to a command's `execute`: the command, its reports, and the TM publisher."""

    tc: PusTc
    tm: TmPublisher
    reports: VerificationReporter
    now: float  # monotonic seconds when the command arrived

    def progress(self, step: int) -> None:
        self.reports.success(Stage.PROGRESS, step)

    def reply(self, service: int, subtype: int, data: bytes = b"") -> None:
        """A TM packet answering this command (destination ID = the command's source ID)."""
        self.tm.publish(service, subtype, data, destination_id=self.tc.source_id)

    def reply_packet(self, packet: TmPacket, values: dict[str, Any]) -> None:
        """A dictionary packet answering this command."""
        self.reply(packet.service, packet.subtype, packet.layout.build(values))


Execute = Callable[[Any, CommandContext], object]


def translating(
    execute: Execute,
    errors: tuple[type[Exception], ...],
    translate: Callable[[Exception], CommandError],
) -> Execute:
    """`execute`, with `errors` from the layer below reported as the failure `translate` gives."""

    def run(args: Any, ctx: CommandContext) -> object:
        try:
            return execute(args, ctx)
        except errors as exc:
            raise translate(exc) from None

    return run
