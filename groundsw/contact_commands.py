"""`groundsw contacts` and `groundsw results`: what the ground station did pass by pass, and the
job results it fetched, read from its pass log (`<data dir>/<payload>/passes.sqlite`), whether
or not it runs. (`groundsw passes` predicts passes from a TLE; these are the passes lived.)"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from groundsw.history_commands import HistoryContext, HistoryError
from groundsw.station.config import payload_data_dir
from groundsw.station.pass_log import PASS_LOG_FILE, Contact, JobRecord, PassLog, PassLogError
from groundsw.text_table import table_lines
from groundsw.timespec import utc_text

CONTACT_HEADER = (
    "PASS", "AOS (UTC)", "LOS (UTC)", "LENGTH", "COMMANDS", "PACKETS", "RESULTS", "OCTETS",
    "GAPS OPEN",
)  # fmt: skip
RESULT_HEADER = ("JOB", "STATE", "RESULT", "OCTETS", "SHA-256", "FETCHED (UTC)", "PASS", "PATH")
T = TypeVar("T")


def add_contact_commands(sub: argparse._SubParsersAction[Any]) -> None:
    contacts = sub.add_parser(
        "contacts",
        help="the passes the ground station lived: AOS, LOS, what each carried",
    )
    contacts.add_argument("--limit", type=int, default=0, help="only the last N passes")
    contacts.set_defaults(handler=run_contacts)
    results = sub.add_parser(
        "results",
        help="the jobs the ground station heard of and the results it fetched, pass by pass",
    )
    results.add_argument(
        "--missing", action="store_true", help="only the results not on the ground yet"
    )
    results.set_defaults(handler=run_results)


def _read(args: argparse.Namespace, what: Callable[[PassLog], T]) -> T:
    """`what` of the payload's pass log; HistoryError without one or when it cannot be read."""
    path = payload_data_dir(args.data_dir, args.payload_name) / PASS_LOG_FILE
    if not path.exists():
        raise HistoryError(
            f"no pass log for {args.payload_name} in {args.data_dir}: a ground station "
            "(groundsw serve) keeps one"
        )
    try:
        with PassLog(path) as log:
            return what(log)
    except PassLogError as exc:
        raise HistoryError(str(exc)) from None


def run_contacts(args: argparse.Namespace, ctx: HistoryContext) -> int:
    if args.limit < 0:
        raise HistoryError(f"--limit {args.limit}: expected 0 or more")
    for line in contact_lines(_read(args, lambda log: log.contacts(args.limit))):
        ctx.out(line)
    return 0


def run_results(args: argparse.Namespace, ctx: HistoryContext) -> int:
    for line in result_lines(_read(args, PassLog.jobs), only_missing=args.missing):
        ctx.out(line)
    return 0


def contact_lines(contacts: Sequence[Contact]) -> list[str]:
    """The passes as a table, with a line of totals."""
    if not contacts:
        return ["no pass yet"]
    rows: list[tuple[str, ...]] = [CONTACT_HEADER]
    for c in contacts:
        duration = c.duration_s
        rows.append((
            str(c.number), utc_text(c.aos), "under way" if c.los is None else utc_text(c.los),
            "-" if duration is None else f"{duration:.1f} s", str(c.commands_sent),
            str(c.packets), str(c.results), str(c.result_octets),
            "-" if c.open_gaps is None else str(c.open_gaps),
        ))  # fmt: skip
    results = sum(c.results for c in contacts)
    octets = sum(c.result_octets for c in contacts)
    return [*table_lines(rows, right={0, 3, 4, 5, 6, 7, 8}),
            f"{len(contacts)} passes, {results} results fetched ({octets} octets)"]  # fmt: skip


def result_lines(jobs: Sequence[JobRecord], only_missing: bool = False) -> list[str]:
    """The jobs as a table, with a line that says how many results are on the ground."""
    fetched = [j for j in jobs if j.path is not None]
    wanted = [j for j in jobs if j.wanted]
    shown = wanted if only_missing else jobs
    lines: list[str] = []
    if shown:
        rows: list[tuple[str, ...]] = [RESULT_HEADER]
        for j in shown:
            rows.append((
                str(j.job_id), j.state, j.result or "-", str(j.size) if j.result else "-",
                j.sha256[:16] or "-", "-" if j.fetched_at is None else utc_text(j.fetched_at),
                "-" if j.contact is None else str(j.contact),
                j.path or (f"not fetched: {j.last_error}" if j.last_error else "-"),
            ))  # fmt: skip
        lines = table_lines(rows, right={0, 3, 6})
    unsettled = sum(1 for j in jobs if not j.final)
    lines.append(
        f"{len(jobs)} jobs heard of: {len(fetched)} results on the ground, {len(wanted)} to "
        f"fetch, {unsettled} not finished when last heard of"
    )
    return lines
