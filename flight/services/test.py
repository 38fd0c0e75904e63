"""ST[17] test service: the are-you-alive connection test (ICD 8)."""

from __future__ import annotations

from flight.commanding import BadApplicationData, CommandContext
from flight.router import CommandRouter, Route
from spacelink.pus import ARE_YOU_ALIVE, ARE_YOU_ALIVE_REPORT, TEST_SERVICE


def _decode_no_arguments(data: bytes) -> None:
    if data:
        raise BadApplicationData(f"TC[17,1] takes no application data, got {len(data)} octets")


def _are_you_alive(_: None, ctx: CommandContext) -> None:
    ctx.reply(TEST_SERVICE, ARE_YOU_ALIVE_REPORT)


def register(router: CommandRouter) -> None:
    router.register(
        Route(TEST_SERVICE, ARE_YOU_ALIVE, "are-you-alive", _decode_no_arguments, _are_you_alive)
    )
