"""ST[17] test service: are-you-alive (ICD 8) and the mission's link tests (telemetry_defs)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from construct import ConstructError

from flight.commanding import BadApplicationData, CommandContext, CommandError
from flight.router import CommandRouter, Route
from spacelink.icd import TM_VCID_BULK, TM_VCID_REALTIME
from spacelink.pus import ARE_YOU_ALIVE, ARE_YOU_ALIVE_REPORT, TEST_SERVICE, FailureCode
from telemetry_defs import link_test as lt


def _decode_no_arguments(data: bytes) -> None:
    if data:
        raise BadApplicationData(f"TC[17,1] takes no application data, got {len(data)} octets")


def _are_you_alive(_: None, ctx: CommandContext) -> None:
    ctx.reply(TEST_SERVICE, ARE_YOU_ALIVE_REPORT)


def _parser(layout: Any) -> Any:
    def decode(data: bytes) -> Any:
        try:
            return layout.parse(data)
        except ConstructError as exc:
            raise BadApplicationData(f"cannot decode application data: {exc}") from None

    return decode


@dataclass
class SequenceCheck:
    """Counts TC[17,128] executions and whether their numbers came 0, 1, 2, ... in order."""

    executed: int = 0
    out_of_order: int = 0
    expected: int = 0

    def check(self, args: Any, ctx: CommandContext) -> None:
        self.executed += 1
        number = int(args.number)
        if number != self.expected:
            self.out_of_order += 1
            expected, self.expected = self.expected, (number + 1) & 0xFFFFFFFF
            raise CommandError(
                FailureCode.EXECUTION_FAILED,
                f"sequence check: expected {expected}, got {number}",
                lt.sequence_violation.build({"expected": expected, "got": number}),
            )
        self.expected = (number + 1) & 0xFFFFFFFF

    def report(self, args: Any, ctx: CommandContext) -> None:
        ctx.reply(
            TEST_SERVICE,
            lt.SEQUENCE_REPORT,
            lt.sequence_report.build(
                {
                    "executed": self.executed,
                    "out_of_order": self.out_of_order,
                    "next": self.expected,
                }
            ),
        )
        if args.reset:
            self.executed = self.out_of_order = self.expected = 0


def _decode_downlink_test(data: bytes) -> Any:
    args = _parser(lt.downlink_test)(data)
    if args.vcid not in (TM_VCID_REALTIME, TM_VCID_BULK):
        raise BadApplicationData(f"downlink test on VC {args.vcid}: VC 0 or 1")
    if args.size < lt.MIN_TEST_PACKET:
        raise BadApplicationData(f"test packets of {args.size} octets: at least 4")
    return args


def _check_downlink_test(args: Any) -> None:
    if args.count * args.size > lt.MAX_DOWNLINK_TEST_OCTETS:
        raise CommandError(
            FailureCode.RESOURCES_EXHAUSTED,
            f"{args.count} x {args.size} octets exceeds {lt.MAX_DOWNLINK_TEST_OCTETS}",
        )


def _downlink_test(args: Any, ctx: CommandContext) -> None:
    for index in range(args.count):
        ctx.tm.publish(
            TEST_SERVICE,
            lt.DOWNLINK_TEST_PACKET,
            lt.test_pattern(index, args.size),
            destination_id=ctx.tc.source_id,
            vcid=args.vcid,
        )


def register(router: CommandRouter) -> None:
    sequence = SequenceCheck()
    for route in (
        Route(TEST_SERVICE, ARE_YOU_ALIVE, "are-you-alive", _decode_no_arguments, _are_you_alive),
        Route(
            TEST_SERVICE,
            lt.SEQUENCE_CHECK,
            "sequence check",
            _parser(lt.sequence_check),
            sequence.check,
        ),
        Route(
            TEST_SERVICE,
            lt.SEQUENCE_REPORT_REQUEST,
            "sequence report",
            _parser(lt.sequence_report_request),
            sequence.report,
        ),
        Route(
            TEST_SERVICE,
            lt.DOWNLINK_TEST,
            "downlink test",
            _decode_downlink_test,
            _downlink_test,
            _check_downlink_test,
        ),
    ):
        router.register(route)
