"""`groundsw tm query`, `groundsw tm plot`, `groundsw tm gaps` (in `gap_commands`) and
`groundsw events`: the archive, read back.

Handlers raise HistoryError, TimeSpecError, PlotError, ArchiveError or the dictionary's
UnknownName, each with a one-sentence message; the CLI prints it and exits 2.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from groundsw.archive import ArchiveStore, EventRecord, Sample
from groundsw.export import (
    EVENT_COLUMNS,
    FORMATS,
    SAMPLE_COLUMNS,
    event_record,
    sample_record,
    write_records,
)
from groundsw.gap_commands import add_gaps_command
from groundsw.plot import plot_parameters
from groundsw.timespec import parse_time, utc_text
from telemetry_defs.model import Dictionary, Parameter, Severity

__all__ = ["EventRecord", "HistoryContext", "HistoryError", "add_events_command", "add_tm_commands"]


class HistoryError(Exception):
    """A request on the archive that cannot be answered; one sentence."""


@dataclass
class HistoryContext:
    """What a history handler works with."""

    archive: ArchiveStore
    dictionary: Dictionary
    out: Callable[[str], None]
    live_events: Callable[[], Iterator[EventRecord]] | None
    now: Callable[[], float]


def add_tm_commands(tm_sub: argparse._SubParsersAction[Any]) -> None:
    query = tm_sub.add_parser("query", help="a parameter's archived values")
    query.add_argument("parameter")
    query.add_argument("--since", default="1h", help="duration before now or ISO time (1h)")
    query.add_argument("--until", help="duration before now or ISO time (default: now)")
    query.add_argument("--limit", type=int, default=0, help="only the last N samples")
    _add_format(query)
    query.set_defaults(handler=run_query)
    plot = tm_sub.add_parser("plot", help="plot archived parameters to an image file")
    plot.add_argument("parameters", nargs="+", metavar="PARAMETER")
    plot.add_argument("--out", type=Path, required=True, help="image file (.png, .svg, .pdf)")
    plot.add_argument("--since", default="1h")
    plot.add_argument("--until")
    plot.set_defaults(handler=run_plot)
    add_gaps_command(tm_sub)


def add_events_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    events = sub.add_parser("events", help="archived events; --follow for new ones as they come")
    events.add_argument("--since", default="1h")
    events.add_argument(
        "--severity",
        choices=[s.name.lower() for s in Severity],
        default="info",
        help="lowest severity shown",
    )
    events.add_argument("--follow", action="store_true", help="then show new events live")
    _add_format(events)
    events.set_defaults(handler=run_events)


def _add_format(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--format",
        default="text",
        help="text for reading (default), csv or json for other tools; each record has its "
        "ground receipt and onboard generation times",
    )


def _format(args: argparse.Namespace) -> str:
    # Checked here rather than by argparse `choices`: its refusal is a usage block.
    if args.format not in FORMATS:
        raise HistoryError(f"unknown format {args.format!r}: use text, csv or json")
    return str(args.format)


def _span(args: argparse.Namespace, ctx: HistoryContext) -> tuple[float, float | None]:
    now = ctx.now()
    since = parse_time(args.since, now)
    until_text = getattr(args, "until", None)
    until = parse_time(until_text, now) if until_text else None
    return since, until


# The two times of every record, as the text output's header names them.
TIMES_HEADER = f"{'received (ground)':<26}{'generated (onboard)':<26}"


def _times(received: float, onboard: float | None) -> str:
    return f"{utc_text(received):<26}{utc_text(onboard) if onboard is not None else '-':<26}"


def format_sample(parameter: Parameter, sample: Sample) -> str:
    value = parameter.to_text(sample.raw)
    raw = f"  (raw {sample.raw})" if parameter.calibration is not None else ""
    state = "" if sample.limit_state == "nominal" else f"  {sample.limit_state.upper()}"
    return f"{_times(sample.received_at, sample.onboard_time)}{value}{raw}{state}"


def run_query(args: argparse.Namespace, ctx: HistoryContext) -> int:
    parameter = ctx.dictionary.parameter(args.parameter)
    since, until = _span(args, ctx)
    samples = ctx.archive.parameter_samples(parameter.name, since, until)
    if args.limit > 0:
        samples = samples[-args.limit :]
    fmt = _format(args)
    if fmt != "text":
        records = (sample_record(parameter, s) for s in samples)
        write_records(fmt, SAMPLE_COLUMNS, records, ctx.out)
        return 0
    if not samples:
        ctx.out(f"no samples of {parameter.name} since {utc_text(since)}")
        return 0
    ctx.out(f"{parameter.name}: {len(samples)} samples since {utc_text(since)}")
    ctx.out(f"{TIMES_HEADER}value")
    for sample in samples:
        ctx.out(format_sample(parameter, sample))
    return 0


def run_plot(args: argparse.Namespace, ctx: HistoryContext) -> int:
    since, until = _span(args, ctx)
    names = [ctx.dictionary.parameter(n).name for n in args.parameters]
    samples = {n: ctx.archive.parameter_samples(n, since, until) for n in names}
    plot_parameters(samples, ctx.dictionary, args.out)
    counts = ", ".join(f"{len(s)} of {n}" for n, s in samples.items())
    ctx.out(f"wrote {args.out}: {counts}")
    return 0


def format_event(event: EventRecord) -> str:
    severity = Severity(event.severity).name
    times = _times(event.received_at, event.onboard_time)
    return f"{times}{severity:<6} {event.name}  {event.text}".rstrip()


def run_events(args: argparse.Namespace, ctx: HistoryContext) -> int:
    since, _ = _span(args, ctx)
    lowest = Severity[args.severity.upper()]
    fmt = _format(args)
    if fmt != "text" and args.follow:
        # A live view has no end for a document to close, and the link's own lines would mix
        # with the records: an export is of the archive.
        raise HistoryError(
            f"--follow shows events as text: --format {fmt} exports the archive only"
        )
    archived = ctx.archive.events(since, int(lowest))
    if fmt != "text":
        write_records(fmt, EVENT_COLUMNS, map(event_record, archived), ctx.out)
        return 0
    ctx.out(f"{TIMES_HEADER}event")
    for event in archived:
        ctx.out(format_event(event))
    if args.follow:
        if ctx.live_events is None:
            raise HistoryError("--follow needs the link: give --port")
        for event in ctx.live_events():
            if event.severity >= lowest:
                ctx.out(format_event(event))
    return 0
