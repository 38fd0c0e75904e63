"""A planned day against a naive one on the bench (issue 20): the same jobs with deadlines,
flown twice through the same orbit from the same charge, once planned by `groundsw plan
--upload` (time-tagged JOB_SUBMITs in the payload's schedule, uploaded before flight) and once
submitted as an operator would without a planner (every job at the first contact, each with its
deadline as seconds from then), and judged the same way: which results were on the ground by
their deadlines, the battery's lowest charge, what the power budget did.

The jobs are those of docs/planning.md's example (wildfire, flood, ships, crops and ice jobs of
four customers, priorities that are not their urgency), computed by two convolution stacks of
tools/model_gen that run about 1.2 s and 2.9 s a run on the bench's CPU: at 200x, 4 and 10
minutes of orbit, as the example's jobs. The plan takes the runs' times measured on the ground
before flight (the operator's estimate), not the example's."""

from __future__ import annotations

import hashlib
import json
import math
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from flight.jobs.executor import reference_session
from groundsw.job_commands import input_file_name
from groundsw.plan.baseline import typed_deadline_s
from groundsw.timespec import utc_second
from hil.day_ground import DayError
from hil.day_report import DayReport, DayResult
from hil.day_workload import JobSpec, Workload, npy
from hil.simulated_day import DayContext, DaySettings, Say
from orbit import read_tle
from tools import model_gen

HOUR = 3600.0
# The bench's seconds before the flight begins that the plan's upload and the payload's restart
# take at most (some 3 s at 921600 baud, then 2 s).
PLAN_AHEAD_S = 12.0
# The plan's link on the bench, in bench seconds (the planner counts each K times): a result's
# requests and reports, and the ends of a pass the station does not count on (it sees a pass
# begin within an idle interval, 0.14 s, and calls it down a second after its last frame).
RESULT_OVERHEAD_S = 0.2
PASS_MARGIN_S = 0.5
LEAD_S = 0.3  # from the first contact's start to the first release: a minute of orbit at 200x
RESULT_OCTETS = 200  # a stack's result: one float32 in a .npy (132 octets), rounded up
# The estimate's margin over the ground's own run: the payload's runs are in a worker beside
# the link, the station and the bench on the same two cores (at 1.25 the day's TMR jobs took
# 1.1 to 1.9 times the plan's time when other tests ran beside it, and spilled into eclipses).
RUN_MARGIN = 1.4
# The compute duty the thermal governor allows in the day: hours of compute at 200x heat the
# bench's board to its 70 C throttle level, where the governor holds it at about this duty.
THERMAL_DUTY_PCT = 85.0


@dataclass(frozen=True, slots=True)
class DeadlineJob:
    """One job of the day: its model, its input (the onboard name), what it asks and when its
    result is due on the ground (hours from the day's start)."""

    name: str
    model: str
    input: str
    priority: int
    redundancy: str
    deadline_h: float


@dataclass(frozen=True)
class DeadlineDay:
    """The jobs and the workload that carries their models and inputs; `run_s`: a run's
    seconds on the bench of each model, as the plan reckons it."""

    jobs: tuple[DeadlineJob, ...]
    workload: Workload
    run_s: dict[str, float]

    def deadline(self, job: DeadlineJob, start: float) -> float:
        """The job's deadline in orbit time for a day beginning at `start`."""
        return start + job.deadline_h * HOUR


# name, model, priority, redundancy, deadline (hours): docs/planning.md's example.
SAMPLE_JOBS = (
    ("wildfire-1", "stack-4m", 0, "TMR", 2.5),
    ("wildfire-2", "stack-4m", 0, "TMR", 2.5),
    ("flood-1", "stack-4m", 10, "TMR", 4.0),
    ("flood-2", "stack-4m", 10, "TMR", 4.0),
    ("ships-1", "stack-10m", 200, "NONE", 5.5),
    ("ships-2", "stack-10m", 200, "NONE", 7.0),
    ("crops-1", "stack-4m", 100, "TMR", 7.0),
    ("crops-2", "stack-4m", 100, "TMR", 8.5),
    ("ice-1", "stack-4m", 50, "DMR", 8.5),
    ("ice-2", "stack-4m", 50, "DMR", 10.0),
)
MODEL_LAYERS = {"stack-4m": 48, "stack-10m": 120}


def sample_deadline_day(run_s: dict[str, float] | None = None) -> DeadlineDay:
    """The example's ten jobs (see the module's docstring), each on an input of its own; the
    runs' times as given, or measured here and now."""
    models = {
        name: model_gen.model_bytes(model_gen.slow_model(seed=3, layers=layers))
        for name, layers in MODEL_LAYERS.items()
    }
    inputs: dict[str, bytes] = {}
    jobs = []
    for n, (name, model, priority, redundancy, hours) in enumerate(SAMPLE_JOBS):
        octets = npy(np.array([[0.5 + 0.25 * n]], dtype=np.float32))
        onboard = input_file_name(hashlib.sha256(octets).digest())
        inputs[onboard] = octets
        jobs.append(DeadlineJob(name, model, onboard, priority, redundancy, hours))
    specs = [JobSpec(j.model, j.input, j.priority, j.redundancy) for j in jobs]
    if run_s is None:
        run_s = {name: RUN_MARGIN * run_seconds(octets) for name, octets in models.items()}
    return DeadlineDay(tuple(jobs), Workload(models, inputs, specs), run_s)


def run_seconds(model: bytes, runs: int = 2) -> float:
    """A run's seconds of `model` on this machine, one thread, the fastest of `runs` after a
    first (the slow model takes a [1,1] input)."""
    session = reference_session(model, intra_op_num_threads=1)
    feed = {session.get_inputs()[0].name: np.array([[1.0]], dtype=np.float32)}
    session.run(None, feed)
    best = math.inf
    for _ in range(runs):
        t = time.perf_counter()
        session.run(None, feed)
        best = min(best, time.perf_counter() - t)
    return best


class NaiveAtFirstContact:
    """Without a planner: every job sent when the flight begins, so that the station sends it
    at the first contact, each with its deadline as seconds from that contact's start, by the
    naive plan's rule (groundsw/plan/baseline.py); the payload runs them as it can."""

    name = "naive: every job at the first contact"

    def __init__(self, day: DeadlineDay) -> None:
        self.day = day

    def before_flight(self, ctx: DayContext) -> None:
        return None

    def at_orbit_start(self, ctx: DayContext) -> None:
        assert ctx.clock is not None
        first = ctx.timeline.next_pass(ctx.orbit_start)
        if first is None:
            raise DayError("no pass in the day for the naive submission")
        for job in self.day.jobs:
            due = self.day.deadline(job, ctx.orbit_start)
            seconds = typed_deadline_s(due, first.aos, ctx.settings.time_scale)
            spec = JobSpec(job.model, job.input, job.priority, job.redundancy, seconds)
            ctx.ground.send("JOB_SUBMIT", *spec.arguments())
        ctx.say(f"{len(self.day.jobs)} JOB_SUBMITs queued for the first contact")


class PlannedUpload:
    """`groundsw plan --upload` on the free link before flight: the plan from the day's start
    over its orbit, released on the bench's clock of a flight that begins PLAN_AHEAD_S later;
    the plan's table is kept in `output`."""

    name = "planned: groundsw plan --upload"

    def __init__(self, day: DeadlineDay, workdir: Path) -> None:
        self.day = day
        self.workdir = workdir
        self.output = ""

    def before_flight(self, ctx: DayContext) -> None:
        settings = ctx.settings
        jobs_file, power_file = self.write_files(ctx.orbit_start, settings)
        hours = math.ceil(settings.orbits * read_tle(settings.tle).period_s / HOUR)
        flight_start = time.time() + PLAN_AHEAD_S
        done = subprocess.run(
            [
                sys.executable, "-m", "groundsw", "--data-dir", str(ctx.data_dir),
                "--baud", str(settings.baud), "plan", "--jobs", str(jobs_file),
                "--tle", str(settings.tle), "--station", settings.station,
                "--min-elevation", str(settings.min_elevation_deg),
                "--power", str(power_file), "--from", str(ctx.orbit_start),
                "--horizon", str(hours),
                "--time-scale", str(settings.time_scale), "--orbit-start", str(ctx.orbit_start),
                "--bench-start", str(flight_start), "--compare", "--upload",
            ],
            capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=PLAN_AHEAD_S,
        )  # fmt: skip
        self.output = done.stdout
        if done.returncode != 0:
            raise DayError(f"groundsw plan --upload failed: {done.stderr.strip()}")
        ctx.flight_start = flight_start
        ctx.say(f"plan uploaded; the flight begins at {flight_start:.1f}")

    def at_orbit_start(self, ctx: DayContext) -> None:
        return None

    def write_files(self, start: float, settings: DaySettings) -> tuple[Path, Path]:
        """The job file (its inputs beside it) and the power file of the plan, in JSON (which
        groundsw plan reads as it reads TOML): written by json, not quoted by hand."""
        folder = self.workdir / "plan"
        folder.mkdir(parents=True, exist_ok=True)
        jobs = []
        for job in self.day.jobs:
            (folder / job.input).write_bytes(self.day.workload.inputs[job.input])
            jobs.append(
                {
                    "name": job.name,
                    "model": job.model,
                    "input": job.input,
                    "priority": job.priority,
                    "redundancy": job.redundancy.lower(),
                    "run_s": self.day.run_s[job.model],
                    "deadline": self.day.deadline(job, start),
                    "result_octets": RESULT_OCTETS,
                }
            )
        power: dict[str, dict[str, float]] = {
            "link": {
                "baud": settings.baud,
                "result_overhead_s": RESULT_OVERHEAD_S,
                "pass_margin_s": PASS_MARGIN_S,
            },
            "plan": {"lead_s": LEAD_S},
            "thermal": {"duty_pct": THERMAL_DUTY_PCT},
        }
        if settings.initial_soc_pct is not None:
            power["battery"] = {"initial_soc_pct": settings.initial_soc_pct}
        jobs_file, power_file = folder / "jobs.json", folder / "power.json"
        jobs_file.write_text(json.dumps({"jobs": jobs}, indent=1))
        power_file.write_text(json.dumps(power, indent=1))
        return jobs_file, power_file


@dataclass(frozen=True)
class JobOutcome:
    """One job of a day flown: its result as the station has it, and whether it was on the
    ground by the deadline."""

    job: DeadlineJob
    result: DayResult | None
    down: float | None  # orbit time its result was on the ground
    deadline: float  # orbit time

    @property
    def met(self) -> bool:
        return self.down is not None and self.down <= self.deadline


def outcomes(day: DeadlineDay, report: DayReport, start: float) -> list[JobOutcome]:
    """Each job's outcome in a day flown from orbit time `start` (a job's result is known by
    its input, which is the job's own)."""
    by_input = {r.input: r for r in report.results}
    found = []
    for job in day.jobs:
        result = by_input.get(job.input)
        down = None
        if result is not None and result.fetched_at is not None and result.exact:
            down = report.clock.to_orbit(result.fetched_at)
        found.append(JobOutcome(job, result, down, day.deadline(job, start)))
    return found


def comparison_lines(
    day: DeadlineDay, planned: DayReport, naive: DayReport, start: float
) -> list[str]:
    """The two days side by side: each job, then the totals."""
    mine, theirs = outcomes(day, planned, start), outcomes(day, naive, start)

    def cell(outcome: JobOutcome) -> str:
        if outcome.down is None:
            state = outcome.result.state if outcome.result else "never submitted"
            return f"MISSED ({state})"
        slack = (outcome.deadline - outcome.down) / 60
        return f"{'met' if outcome.met else 'LATE'} {slack:+.0f} min"

    lines = [f"{'JOB':<11} {'DEADLINE':<21} {'PLANNED':<18} NAIVE"]
    for a, b in zip(mine, theirs, strict=True):
        lines.append(f"{a.job.name:<11} {utc_second(a.deadline):<21} {cell(a):<18} {cell(b)}")
    labels = (
        "jobs on the ground by their deadline",
        "results on the ground, bit-exact",
        "lowest battery charge",
        "queue held by the budget (events)",
        "job states",
        "peak temperature",
        "wall time",
    )
    lines.append("")
    lines.append(f"{'':<38} {'PLANNED':<18} NAIVE")
    totals = zip(labels, _totals(planned, mine), _totals(naive, theirs), strict=True)
    lines += [f"{label:<38} {a:<18} {b}" for label, a, b in totals]
    return lines


def _totals(report: DayReport, found: Sequence[JobOutcome]) -> list[str]:
    return [
        f"{sum(o.met for o in found)} of {len(found)}",
        str(sum(o.down is not None for o in found)),
        f"{report.min_soc_pct:.1f} %",
        str(report.events.get("POWER_JOBS_HELD", 0)),
        ", ".join(f"{k} {v}" for k, v in sorted(report.job_states.items())),
        f"{report.peak_temp_c:.1f} C",
        f"{report.times['wall_s']:.0f} s",
    ]


# The example's day: the sample orbit over Munich from 2026-11-30T23:00Z (the first pass at
# 23:13), a 10-degree mask, the battery at 55 %; 15 orbits at 200x as the day.
COMPARISON_START = 1_796_079_600.0  # 2026-11-30T23:00:00Z
COMPARISON_SETTINGS = DaySettings(
    start=COMPARISON_START, min_elevation_deg=10.0, initial_soc_pct=55.0
)


def fly_both(
    workdir: Path, day: DeadlineDay, settings: DaySettings = COMPARISON_SETTINGS, say: Say = print
) -> tuple[DayReport, DayReport, PlannedUpload]:
    """The day flown planned (in workdir/planned), then naive (workdir/naive), each on a fresh
    bench and ground; both reports, and the planned submission (its plan's table)."""
    from hil.simulated_day import fly_day

    planned = PlannedUpload(day, workdir / "planned")
    first = fly_day(workdir / "planned", planned, day.workload, settings, say)
    second = fly_day(workdir / "naive", NaiveAtFirstContact(day), day.workload, settings, say)
    return first, second, planned


def main() -> int:
    """`python -m hil.day_plans [WORKDIR]`: fly both days and print them side by side."""
    import tempfile

    workdir = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="day-"))
    day = sample_deadline_day()
    print("runs (bench seconds, with the margin): "
          + ", ".join(f"{k} {v:.2f}" for k, v in day.run_s.items()))  # fmt: skip
    planned, naive, submission = fly_both(workdir, day)
    print(submission.output)
    for report in (planned, naive):
        print("\n".join(report.lines()))
    start = COMPARISON_SETTINGS.start
    assert start is not None
    print("\n".join(comparison_lines(day, planned, naive, start)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
