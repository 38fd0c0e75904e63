"""Functional-fault campaign: seeded trials of each functional fault (a worker crash or hang, a
run past its limit, a payload crash or hang, a full disk) through the real processes, with the
recovery time, the jobs lost and the link's answers during recovery, as a Markdown report.

Every trial queues TMR jobs of a small model on the payload under the bench's supervisor, over
the emulated link, and injects one fault with FAULT_INJECT (tools/functional_trials.py). The same
seed gives the same sequence of faults; which job a fault strikes, and when, is timing.

CLI:
    python -m tools.functional_campaign --trials N --seed S --out DIR [--only KIND ...]
        [--jobs-per-trial K] [--watchdog SECONDS]
"""

from __future__ import annotations

import argparse
import logging
import random
import shlex
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from hil.bench import BENCH_SUPERVISION
from hil.testapi import TestApiError
from spacelink.errors import LinkError
from tools.functional_trials import (
    BAUD,
    INPUT_SHAPE,
    KIND_BY_TARGET,
    KINDS,
    MODEL_SEED,
    TINY_WIDTHS,
    CampaignError,
    TrialPlan,
    TrialResult,
    available_kinds,
    payload_on_bench,
)

log = logging.getLogger(__name__)

REPORT_NAME = "functional_campaign.md"
LOG_NAME = "functional_campaign.log"
DEFAULT_JOBS = 3
MAX_JOBS = 50
DEFAULT_WATCHDOG_S = BENCH_SUPERVISION.watchdog_s or 30.0


# -- the plan -------------------------------------------------------------------------------------


def make_plan(kinds: Sequence[str], trials: int, seed: int, jobs: int) -> list[TrialPlan]:
    """`trials` trials of each kind in a seeded order, each with its FAULT_INJECT seed and the
    number of jobs submitted before the injection (at least one comes after it)."""
    rng = random.Random(seed)
    order = [kind for kind in kinds for _ in range(trials)]
    # Interleaved rather than kind after kind: payload restarts are spread over the run, and a
    # kind is not measured only on a fresh (or only on a tired) payload.
    rng.shuffle(order)
    return [
        TrialPlan(number, kind, rng.randrange(2**32), rng.randrange(jobs))
        for number, kind in enumerate(order, start=1)
    ]


# -- statistics -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Spread:
    """Median and maximum of the values seen (None: none seen)."""

    median: float | None
    maximum: float | None
    count: int

    def text(self, scale: float = 1.0, digits: int = 1) -> str:
        """'median / max', or an em dash when nothing was measured."""
        if self.median is None or self.maximum is None:
            return "—"
        return f"{self.median * scale:.{digits}f} / {self.maximum * scale:.{digits}f}"


def spread(values: Iterable[float | None]) -> Spread:
    seen = [v for v in values if v is not None]
    if not seen:
        return Spread(None, None, 0)
    return Spread(statistics.median(seen), max(seen), len(seen))


def tally(names: Iterable[str]) -> str:
    """'CRASH x3, WATCHDOG x1' in order of first appearance; an em dash for none."""
    counts = Counter(name for name in names if name)
    return ", ".join(f"{name} x{n}" for name, n in counts.items()) or "—"


@dataclass(frozen=True, slots=True)
class KindSummary:
    """One fault kind over its trials."""

    kind: str
    trials: int
    injected: int
    recovered: int
    struck: Spread
    back: Spread
    first_job: Spread
    accepted: int
    lost: int
    bit_exact: int
    requeued: int
    ping_ms: Spread
    restart_delay_ms: Spread
    reasons: str


def summarise(kind: str, results: Sequence[TrialResult]) -> KindSummary:
    mine = [r for r in results if r.plan.kind == kind]
    injected = [r for r in mine if not r.refused]
    return KindSummary(
        kind=kind,
        trials=len(mine),
        injected=len(injected),
        recovered=sum(r.recovered for r in injected),
        struck=spread(r.struck_s for r in injected),
        back=spread(r.back_s for r in injected),
        first_job=spread(r.first_job_s for r in injected),
        accepted=sum(r.accepted for r in mine),
        lost=sum(r.lost for r in mine),
        bit_exact=sum(r.bit_exact for r in mine),
        requeued=sum(r.requeued for r in mine),
        ping_ms=spread(p for r in injected for p in r.pings_ms),
        restart_delay_ms=spread(r.restart_delay_ms for r in injected),
        reasons=tally(r.reset_reason or r.loss_reason for r in injected),
    )


# -- the report -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RunInfo:
    """What the report says of the run itself."""

    command: str
    seed: int
    trials: int
    jobs: int
    watchdog_s: float
    seconds: float
    stopped: str = ""  # why the campaign stopped early; empty: it ran every trial


def _row(cells: Iterable[object]) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def _seconds(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


def render_report(info: RunInfo, kinds: Sequence[str], results: Sequence[TrialResult]) -> str:
    """The Markdown report: the run, a row per kind, what the columns mean, a row per trial."""
    widths = ", ".join(map(str, TINY_WIDTHS))
    lines = [
        "# Functional-fault campaign",
        "",
        f"Made by `{info.command}`.",
        "",
        f"- Seed: {info.seed}; trials per kind: {info.trials} ({len(results)} run in all); "
        f"{info.jobs} TMR jobs per trial. The same seed gives the same sequence of faults (kinds "
        "in order, FAULT_INJECT seeds, jobs submitted before each injection); which job a fault "
        "strikes, and when, is timing.",
        "- Payload: the real processes (payload-flight under the bench's supervisor, its "
        f"inference worker) over the emulated serial link at {BAUD} baud; supervisor watchdog "
        f"{info.watchdog_s:g} s, start limit lifted (the campaign restarts the payload on "
        "purpose).",
        f"- Model: `tools.model_gen.mlp(seed={MODEL_SEED}, widths=({widths}))`, input float32"
        f"{list(INPUT_SHAPE)}; golden outputs from `flight.jobs.executor.reference_session`.",
        f"- Run time: {info.seconds:.0f} s.",
    ]
    if info.stopped:
        lines.append(f"- Stopped early: {info.stopped}")
    lines += [
        "",
        "## Per kind",
        "",
        _row(
            [
                "Fault kind",
                "Trials",
                "Recovered",
                "Fault seen, s (median / max)",
                "Compute back, s",
                "First job done, s",
                "Jobs accepted",
                "Jobs lost",
                "Results bit-exact",
                "Jobs requeued",
                "Ping in recovery, ms",
                "Worker restart delay, ms",
                "Reasons seen",
            ]
        ),
        _row(["---"] * 13),
    ]
    for kind in kinds:
        s = summarise(kind, results)
        refused = f" ({s.trials - s.injected} refused)" if s.injected < s.trials else ""
        lines.append(
            _row(
                [
                    kind,
                    s.trials,
                    f"{s.recovered}/{s.injected}{refused}",
                    s.struck.text(digits=2),
                    s.back.text(digits=2),
                    s.first_job.text(digits=2),
                    s.accepted,
                    s.lost,
                    f"{s.bit_exact}/{s.accepted}",
                    s.requeued,
                    s.ping_ms.text(digits=0),
                    s.restart_delay_ms.text(digits=0),
                    s.reasons,
                ]
            )
        )
    lines += ["", "## What the columns mean", "", *_definitions(kinds), ""]
    lines += ["## Trials", "", *_trial_rows(results), ""]
    return "\n".join(lines)


def _definitions(kinds: Sequence[str]) -> list[str]:
    marks = []
    for target in kinds:
        kind = KIND_BY_TARGET[target]
        struck = kind.struck or "the process's end (the bench's supervisor)"
        back = kind.back + (" then a ping answered" if kind.restarts_payload else "")
        marks.append(f"{target}: {struck} → {back}")
    return [
        "Times are seconds from the FAULT_INJECT being sent (the payload acts on it about half "
        "a round trip later).",
        "",
        "- Fault seen: the fault's mark; compute back: the mark of the recovery; first job done: "
        "the first of the trial's jobs reported succeeded after the fault's mark. "
        + "; ".join(marks)
        + ".",
        "- Jobs lost: accepted jobs that did not end SUCCEEDED with a result bit for bit equal to "
        "the golden output (downloaded and compared). Requeued: jobs started more than once.",
        "- Ping in recovery: ARE_YOU_ALIVE's round trip sent as soon as the fault was seen "
        "(after a payload fault: the first ping after the restart, which ends the recovery).",
        "- Worker restart delay: WORKER_LOST's restart_in, how long the payload waits before it "
        "starts the next worker (its restart backoff).",
        "- Reasons seen: PAYLOAD_STARTED's reset reason after a payload fault, WORKER_LOST's "
        "reason after a worker fault.",
    ]


def _trial_rows(results: Sequence[TrialResult]) -> list[str]:
    rows = [
        _row(
            [
                "#",
                "Kind",
                "FAULT_INJECT seed",
                "Jobs before",
                "Fault seen, s",
                "Compute back, s",
                "First job done, s",
                "Accepted",
                "Lost",
                "Reason",
                "Note",
            ]
        ),
        _row(["---"] * 11),
    ]
    for r in results:
        note = f"refused: {r.refused}" if r.refused else r.note
        rows.append(
            _row(
                [
                    r.plan.number,
                    r.plan.kind,
                    r.plan.inject_seed,
                    r.jobs_before,
                    _seconds(r.struck_s),
                    _seconds(r.back_s),
                    _seconds(r.first_job_s),
                    r.accepted,
                    r.lost,
                    r.reset_reason or r.loss_reason or "—",
                    note.replace("|", "/") or "",
                ]
            )
        )
    return rows


# -- the command line -----------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    """Every bad flag: one plain sentence and exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"functional_campaign: {message.rstrip('.')}.\n")


def _number(kind: Callable[[str], float], least: float, what: str) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expects {what}, found {text!r}") from None
        if value < least:
            raise argparse.ArgumentTypeError(f"expects {what}, found {text}")
        return value

    return parse


def parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="python -m tools.functional_campaign",
        description="Functional-fault trials through the real processes; a Markdown report.",
    )
    p.add_argument("--trials", required=True, type=_number(int, 1, "a whole number of 1 or more"))
    p.add_argument("--seed", required=True, type=_number(int, 0, "a whole number of 0 or more"))
    p.add_argument("--out", required=True, type=Path, help="directory of the report and logs")
    p.add_argument(
        "--only",
        nargs="+",
        metavar="KIND",
        help="these fault kinds only: " + ", ".join(kind.target for kind in KINDS),
    )
    p.add_argument(
        "--jobs-per-trial",
        type=_number(int, 1, "a whole number of 1 or more"),
        default=DEFAULT_JOBS,
        help=f"TMR jobs queued around each fault (default {DEFAULT_JOBS})",
    )
    p.add_argument(
        "--watchdog",
        type=_number(float, 1.0, "seconds, 1 or more"),
        default=DEFAULT_WATCHDOG_S,
        help=f"the supervisor's watchdog (default {DEFAULT_WATCHDOG_S:g} s, as on a board)",
    )
    return p


def chosen_kinds(p: argparse.ArgumentParser, only: Sequence[str] | None) -> list[str]:
    """The kinds to run, in the table's order: --only's, or every kind the dictionary has."""
    present = available_kinds()
    if not only:
        return present
    for name in only:
        if name not in KIND_BY_TARGET:
            known = ", ".join(kind.target for kind in KINDS)
            p.error(f"--only expects fault kinds among {known}, found {name}")
        if name not in present:
            p.error(f"--only {name}: this payload's dictionary has no such FaultTarget yet")
    return [kind for kind in present if kind in only]


def run(
    plan: Sequence[TrialPlan], out: Path, jobs: int, watchdog_s: float
) -> tuple[list[TrialResult], str]:
    """Every trial of `plan` on one payload; the results, and why it stopped early (if so)."""
    results: list[TrialResult] = []
    try:
        with payload_on_bench(out, jobs, watchdog_s) as runner:
            for trial in plan:
                try:
                    result = runner.run(trial)
                except (TestApiError, LinkError) as exc:
                    # The link or the payload no longer answers as a trial needs: what was
                    # measured so far is still reported.
                    log.error("trial %d stopped the campaign: %s", trial.number, exc)
                    log.error("the link: %s", runner.diagnosis())
                    first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                    raise CampaignError(f"trial {trial.number} ({trial.kind}): {first}") from None
                results.append(result)
                print(f"trial {trial.number}/{len(plan)} {trial.kind}: {_progress(result)}")
    except CampaignError as exc:
        return results, str(exc)
    return results, ""


def _progress(r: TrialResult) -> str:
    if r.refused:
        return f"FAULT_INJECT refused ({r.refused})"
    back = "not recovered" if r.back_s is None else f"back after {r.back_s:.2f} s"
    note = f"; {r.note}" if r.note else ""
    return f"{back}, {r.lost} of {r.accepted} jobs lost{note}"


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = parser()
    args = p.parse_args(argv)
    kinds = chosen_kinds(p, args.only)
    if not kinds:
        p.error("this payload's dictionary has none of the functional fault kinds")
    out: Path = args.out
    if out.exists() and not out.is_dir():
        p.error(f"--out expects a directory, found a file at {out}")
    out.mkdir(parents=True, exist_ok=True)
    # Quiet: the tool prints a line per trial; the ground's and the bench's log go to a file,
    # the payload's to its own (payload.log).
    logging.basicConfig(
        filename=out / LOG_NAME,
        level=logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
        force=True,
    )
    plan = make_plan(kinds, args.trials, args.seed, args.jobs_per_trial)
    started = time.monotonic()
    try:
        results, stopped = run(plan, out, args.jobs_per_trial, args.watchdog)
    except KeyboardInterrupt:
        print("functional_campaign: interrupted; no report written.", file=sys.stderr)
        return 130
    info = RunInfo(
        command=shlex.join(["python", "-m", "tools.functional_campaign", *argv]),
        seed=args.seed,
        trials=args.trials,
        jobs=args.jobs_per_trial,
        watchdog_s=args.watchdog,
        seconds=time.monotonic() - started,
        stopped=stopped,
    )
    report = out / REPORT_NAME
    report.write_text(render_report(info, kinds, results))
    if stopped:
        print(f"functional_campaign: {stopped}; report of the trials run in {report}.")
        return 1
    print(f"report: {report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
