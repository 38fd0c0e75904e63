"""`groundsw tm gaps`: the gaps in the payload's archive that the ground station is repairing
(and, with --all, those it repaired or gave up on), read from the archive."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from groundsw.gaps import Gap, GapState
from groundsw.timespec import utc_text

if TYPE_CHECKING:
    from groundsw.history_commands import HistoryContext

STILL_OPEN = (GapState.OPEN, GapState.RETRIEVING)
COLUMNS = (6, 38, 54, 15)  # APID, counts, onboard times, state; then attempts
HEADER = (
    "".join(
        f"{title:<{width}}"
        for title, width in zip(
            ("APID", "missing sequence counts", "onboard time (UTC)", "state"), COLUMNS, strict=True
        )
    )
    + "attempts"
)


def add_gaps_command(tm_sub: argparse._SubParsersAction[Any]) -> None:
    gaps = tm_sub.add_parser(
        "gaps",
        help="gaps in the archive the ground station is recovering from the payload's store",
        description="Packets missing from the archive (sequence count jumps, payload restarts) "
        "that the ground station has the payload send again; --all adds those recovered and "
        "those given up on.",
    )
    gaps.add_argument(
        "--all", action="store_true", help="also the gaps recovered and those unrecoverable"
    )
    gaps.set_defaults(handler=run_gaps)


def run_gaps(args: argparse.Namespace, ctx: HistoryContext) -> int:
    found = ctx.archive.gaps(None if args.all else STILL_OPEN)
    if not found:
        ctx.out("no gap")
        return 0
    ctx.out(HEADER)
    for gap in found:
        ctx.out(format_gap(gap))
    return 0


def format_gap(gap: Gap) -> str:
    times = f"{utc_text(gap.start_time)} .. {utc_text(gap.end_time)}"
    apid, counts, span, state = COLUMNS
    line = (
        f"{gap.apid:<{apid}}{gap.counts_text():<{counts}}{times:<{span}}{gap.state:<{state}}"
        f"{gap.attempts}"
    )
    if gap.reason and gap.state is not GapState.RECOVERED:
        line += f"  ({gap.reason})"
    return line
