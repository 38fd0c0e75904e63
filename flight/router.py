"""Routes TC packets by APID, service and subtype, with the acceptance checks of PUS-C.

Every packet for the payload's APID ends in verification reports: a failure report with the
ICD's code when it is refused (always sent), success reports as its acknowledgement flags ask.
A command runs in three steps, each tied to a stage: `decode` its application data
(acceptance), `check_start` (start of execution), `execute` (completion, or later for commands
that finish in the background).
"""

from __future__ import annotations

import logging
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flight.commanding import (
    DEFERRED,
    BadApplicationData,
    CommandContext,
    CommandError,
    VerificationReporter,
)
from flight.counters import LinkCounters
from flight.telemetry import TmPublisher
from spacelink.errors import DiscardReason, PacketError
from spacelink.pus import FailureCode, Stage
from spacelink.spacepacket import (
    PRIMARY_HEADER_LENGTH,
    PusTc,
    RequestId,
    apid_from_header,
    packet_length_from_header,
)
from telemetry_defs.model import CodecError, Command
from telemetry_defs.valuetypes import DictionaryValueError

log = logging.getLogger(__name__)

# Packet checks answered with a failure report, and their codes. The other checks (packet
# version, TM type, no secondary header) mean the octets are not a PUS TC at all: those are
# only counted, as packets for another APID are (ICD 5).
_REPORTED = {
    DiscardReason.PACKET_LENGTH: FailureCode.BAD_PACKET_LENGTH,
    DiscardReason.PACKET_TOO_SHORT: FailureCode.BAD_PACKET_LENGTH,
    DiscardReason.PACKET_SEQUENCE_FLAGS: FailureCode.BAD_PACKET_LENGTH,
    DiscardReason.PACKET_CHECKSUM: FailureCode.BAD_PACKET_CHECKSUM,
    DiscardReason.PACKET_PUS_VERSION: FailureCode.BAD_APPLICATION_DATA,
}
_U16_PAIR = struct.Struct(">HH")
_SOURCE_ID_OFFSET = 9


@dataclass(frozen=True)
class Route:
    """One command: its name and the three steps the router runs."""

    service: int
    subtype: int
    name: str
    decode: Callable[[bytes], Any]
    execute: Callable[[Any, CommandContext], object]
    check_start: Callable[[Any], None] | None = None


class CommandRouter:
    """Dispatches TC packets to their commands and reports each stage."""

    def __init__(
        self,
        apid: int,
        tm: TmPublisher,
        counters: LinkCounters,
        clock: Callable[[], float] = time.monotonic,
        on_crash: Callable[[int, int], None] | None = None,
    ) -> None:
        """`on_crash(service, subtype)`: told when a command raises an unexpected error."""
        self._apid = apid
        self._tm = tm
        self._counters = counters
        self._clock = clock
        self._on_crash = on_crash
        self._routes: dict[tuple[int, int], Route] = {}
        self._services: set[int] = set()

    def register(self, route: Route) -> None:
        key = (route.service, route.subtype)
        if key in self._routes:
            raise ValueError(f"TC{list(key)} is already routed to {self._routes[key].name}")
        self._routes[key] = route
        self._services.add(route.service)

    def register_command(
        self,
        command: Command,
        execute: Callable[[Any, CommandContext], object],
        validate: Callable[[Any], Any] | None = None,
        check_start: Callable[[Any], None] | None = None,
    ) -> None:
        """Route a dictionary command: its arguments decoded and range-checked by the
        dictionary, then `validate(args)` (its own acceptance checks; returns what `execute`
        gets), all at acceptance, where a failure is reported with code 6."""

        def decode(data: bytes) -> Any:
            try:
                args = command.decode(data)
            except (CodecError, DictionaryValueError) as exc:
                raise BadApplicationData(str(exc)) from None
            return validate(args) if validate is not None else args

        self.register(
            Route(command.service, command.subtype, command.name, decode, execute, check_start)
        )

    def dispatch(self, packet: bytes) -> None:
        if len(packet) >= PRIMARY_HEADER_LENGTH and apid_from_header(packet) != self._apid:
            self._counters.discard(DiscardReason.PACKET_APID)
            return
        try:
            tc = PusTc.unpack(packet)
        except PacketError as exc:
            self._refuse_packet(packet, exc)
            return
        self._counters.packets_accepted += 1
        reports = VerificationReporter.for_tc(self._tm, tc)
        route = self._routes.get((tc.service, tc.subtype))
        if route is None:
            if tc.service not in self._services:
                reports.failure(Stage.ACCEPTANCE, FailureCode.UNKNOWN_SERVICE, bytes([tc.service]))
            else:
                reports.failure(
                    Stage.ACCEPTANCE, FailureCode.UNKNOWN_SUBTYPE, bytes([tc.service, tc.subtype])
                )
            log.info("TC[%d,%d] refused: no such command", tc.service, tc.subtype)
            return
        self._run(route, tc, reports)

    def _run(self, route: Route, tc: PusTc, reports: VerificationReporter) -> None:
        stage = Stage.ACCEPTANCE
        try:
            args = route.decode(tc.app_data)
            reports.success(Stage.ACCEPTANCE)
            stage = Stage.START
            if route.check_start is not None:
                route.check_start(args)
            reports.success(Stage.START)
            stage = Stage.COMPLETION
            outcome = route.execute(args, CommandContext(tc, self._tm, reports, self._clock()))
        except CommandError as exc:
            reports.failure(stage, exc.code, exc.data)
            log.info("%s refused at %s: %s", route.name, stage.name.lower(), exc)
            return
        except Exception as exc:  # a bug in one command must not take the payload down
            log.exception("%s crashed at %s", route.name, stage.name.lower())
            reports.failure(stage, FailureCode.EXECUTION_FAILED, repr(exc).encode()[:64])
            if self._on_crash is not None:
                self._on_crash(tc.service, tc.subtype)
            return
        if outcome is not DEFERRED:
            reports.success(Stage.COMPLETION)

    def _refuse_packet(self, packet: bytes, exc: PacketError) -> None:
        self._counters.discard(exc.reason)
        code = _REPORTED.get(exc.reason)
        if code is None or len(packet) < 4:
            log.info("packet discarded: %s", exc)
            return
        request_id = RequestId.of_packet(packet)
        data = b""
        if code is FailureCode.BAD_PACKET_LENGTH and len(packet) >= PRIMARY_HEADER_LENGTH:
            declared = packet_length_from_header(packet)
            data = _U16_PAIR.pack(min(declared, 0xFFFF), min(len(packet), 0xFFFF))
        source_id = 0
        if len(packet) >= _SOURCE_ID_OFFSET + 2:
            source_id = int.from_bytes(packet[_SOURCE_ID_OFFSET : _SOURCE_ID_OFFSET + 2], "big")
        VerificationReporter.for_request(self._tm, request_id, source_id).failure(
            Stage.ACCEPTANCE, code, data
        )
        log.info("TC %s refused: %s", request_id, exc)
