"""ST[17] test service: are-you-alive (ICD 8) and the mission's link tests (the dictionary)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flight.commanding import BadApplicationData, CommandContext, CommandError, named_failure
from flight.router import CommandRouter
from spacelink.pus import FailureCode
from telemetry_defs import link_test
from telemetry_defs.model import CodecError, Dictionary
from telemetry_defs.valuetypes import DictionaryValueError

SEQUENCE_OUT_OF_ORDER = "SEQUENCE_OUT_OF_ORDER"


@dataclass
class SequenceCheck:
    """Counts TC[17,128] executions and whether their numbers came 0, 1, 2, ... in order."""

    dictionary: Dictionary
    executed: int = 0
    out_of_order: int = 0
    expected: int = 0

    def check(self, args: dict[str, Any], ctx: CommandContext) -> None:
        self.executed += 1
        number = args["number"]
        if number != self.expected:
            self.out_of_order += 1
            expected, self.expected = self.expected, (number + 1) & 0xFFFFFFFF
            raise named_failure(
                self.dictionary,
                SEQUENCE_OUT_OF_ORDER,
                f"sequence check: expected {expected}, got {number}",
                expected=expected,
                got=number,
            )
        self.expected = (number + 1) & 0xFFFFFFFF

    def report(self, args: dict[str, Any], ctx: CommandContext) -> None:
        ctx.reply_packet(
            self.dictionary.packets["LINK_SEQUENCE_COUNTERS"],
            {"executed": self.executed, "out_of_order": self.out_of_order, "next": self.expected},
        )
        if args["reset"]:
            self.executed = self.out_of_order = self.expected = 0


def _check_downlink_test(args: dict[str, Any]) -> None:
    if args["count"] * args["size"] > link_test.MAX_DOWNLINK_TEST_OCTETS:
        raise CommandError(
            FailureCode.RESOURCES_EXHAUSTED,
            f"{args['count']} x {args['size']} octets exceeds {link_test.MAX_DOWNLINK_TEST_OCTETS}",
        )


@dataclass
class DictionaryEcho:
    """TC[17,133]: decode octets with one of our layouts and send the values back encoded."""

    dictionary: Dictionary

    def check(self, args: dict[str, Any]) -> dict[str, Any]:
        kind = self.dictionary.enums["DefinitionKind"].to_text(args["kind"])
        layout = self.dictionary.layout_for(kind, args["key"])
        if layout is None:
            raise BadApplicationData(f"no {kind} definition with key {args['key']}")
        try:
            values = layout.parse(args["data"])
        except (CodecError, DictionaryValueError) as exc:
            raise BadApplicationData(str(exc)) from None
        return {**args, "data": layout.build(values)}

    def reply(self, args: dict[str, Any], ctx: CommandContext) -> None:
        ctx.reply_packet(self.dictionary.packets["DICTIONARY_ECHO_REPLY"], args)


def register(router: CommandRouter, dictionary: Dictionary) -> None:
    sequence = SequenceCheck(dictionary)
    alive_report = dictionary.packets["ARE_YOU_ALIVE_REPORT"]
    test_packet = dictionary.packets["LINK_DOWNLINK_TEST_PACKET"]

    def are_you_alive(_: dict[str, Any], ctx: CommandContext) -> None:
        ctx.reply_packet(alive_report, {})

    def downlink_test(args: dict[str, Any], ctx: CommandContext) -> None:
        for index in range(args["count"]):
            ctx.tm.publish(
                test_packet.service,
                test_packet.subtype,
                link_test.test_pattern(index, args["size"]),
                destination_id=ctx.tc.source_id,
                vcid=args["vcid"],
            )

    router.register_command(dictionary.command("ARE_YOU_ALIVE"), are_you_alive)
    router.register_command(dictionary.command("LINK_SEQUENCE_CHECK"), sequence.check)
    router.register_command(dictionary.command("LINK_SEQUENCE_REPORT"), sequence.report)
    router.register_command(
        dictionary.command("LINK_DOWNLINK_TEST"), downlink_test, check_start=_check_downlink_test
    )
    echo = DictionaryEcho(dictionary)
    router.register_command(dictionary.command("DICTIONARY_ECHO"), echo.reply, echo.check)
