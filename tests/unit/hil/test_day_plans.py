"""The planned and naive submissions of hil/day_plans.py, without a bench: the files the plan is
made from, read by groundsw plan's own parsers as meant, and the naive deadlines counted from
the first contact. Flown: tests/hil/test_orbit_day.py (slow)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from groundsw.plan.job_file import parse_jobs
from groundsw.plan.model import Redundancy
from groundsw.plan.power_file import parse_limits
from groundsw.plan_commands import read_document
from hil.day_plans import (
    COMPARISON_SETTINGS,
    HOUR,
    LEAD_S,
    PASS_MARGIN_S,
    RESULT_OVERHEAD_S,
    THERMAL_DUTY_PCT,
    NaiveAtFirstContact,
    PlannedUpload,
    comparison_lines,
    outcomes,
    sample_deadline_day,
)
from hil.day_report import DayReport, DayResult
from hil.simulated_day import DayContext
from orbit import OrbitClock, OrbitTimeline, parse_station, read_tle

RUN_S = {"stack-4m": 1.5, "stack-10m": 3.5}
START = COMPARISON_SETTINGS.start
assert START is not None


def test_the_plan_files_say_what_the_day_means_to_groundsw_plan(tmp_path: Path) -> None:
    day = sample_deadline_day(RUN_S)
    jobs_file, power_file = PlannedUpload(day, tmp_path).write_files(START, COMPARISON_SETTINGS)
    jobs = parse_jobs(read_document(jobs_file, "job file"), jobs_file.parent, START)
    assert [j.name for j in jobs] == [j.name for j in day.jobs]
    for planned, job in zip(jobs, day.jobs, strict=True):
        runs = Redundancy[job.redundancy].runs
        assert planned.compute_s == pytest.approx(RUN_S[job.model] * runs)
        assert planned.deadline == START + job.deadline_h * HOUR
        assert (planned.model, planned.priority) == (job.model, job.priority)
        # The input beside the job file is the workload's, under its onboard name.
        assert Path(planned.input).read_bytes() == day.workload.inputs[job.input]
    limits = parse_limits(read_document(power_file, "power file"), baud=115200, overrides={})
    assert limits.power.initial_soc_pct == COMPARISON_SETTINGS.initial_soc_pct
    assert limits.link.baud == COMPARISON_SETTINGS.baud
    assert (limits.link.result_overhead_s, limits.link.pass_margin_s) == (
        RESULT_OVERHEAD_S,
        PASS_MARGIN_S,
    )
    assert limits.lead_s == LEAD_S and limits.thermal.duty == THERMAL_DUTY_PCT / 100


@dataclass
class Ground:
    sent: list[tuple[str, tuple[str, ...]]] = field(default_factory=list)

    def send(self, command: str, *arguments: str) -> str:
        self.sent.append((command, arguments))
        return str(len(self.sent))


def test_the_naive_deadlines_are_bench_seconds_from_the_first_contact(tmp_path: Path) -> None:
    day = sample_deadline_day(RUN_S)
    settings = COMPARISON_SETTINGS
    timeline = OrbitTimeline(
        read_tle(settings.tle), parse_station(settings.station, settings.min_elevation_deg), START
    )
    ground = Ground()
    ctx = DayContext(
        ground,  # type: ignore[arg-type]
        day.workload, settings, timeline, START, tmp_path,
        clock=OrbitClock(START, 1_000.0, settings.time_scale), say=lambda _: None,
    )  # fmt: skip
    NaiveAtFirstContact(day).at_orbit_start(ctx)
    first = timeline.next_pass(START)
    assert first is not None
    assert len(ground.sent) == len(day.jobs)
    for (command, arguments), job in zip(ground.sent, day.jobs, strict=True):
        values: dict[str, Any] = dict(a.split("=", 1) for a in arguments)
        assert command == "JOB_SUBMIT" and values["input"] == job.input
        due = START + job.deadline_h * HOUR
        assert int(values["deadline"]) == math.ceil((due - first.aos) / settings.time_scale)


def test_a_job_meets_its_deadline_only_with_a_bit_exact_result_down_by_then() -> None:
    day = sample_deadline_day(RUN_S)
    clock = OrbitClock(START, 1_000.0, 200.0)
    wildfire, flood, ships = day.jobs[0], day.jobs[2], day.jobs[4]
    due = [day.deadline(j, START) for j in (wildfire, flood, ships)]
    results = [
        DayResult(1, wildfire.model, wildfire.input, "SUCCEEDED", clock.to_bench(due[0]), True),
        DayResult(2, flood.model, flood.input, "SUCCEEDED", clock.to_bench(due[1] + 60), True),
        DayResult(3, ships.model, ships.input, "SUCCEEDED", clock.to_bench(due[2] - 60), False),
        DayResult(4, "stack-4m", day.jobs[1].input, "TIMED_OUT", None, False),
    ]
    report = DayReport(
        "t", 1.0, 200.0, clock, START, [], 0, len(day.jobs), 1, 0, [3], 8, {}, 0, 50.0, 20.0,
        40.0, {}, {}, 0, {"wall_s": 1.0}, results,
    )  # fmt: skip
    found = {o.job.name: o for o in outcomes(day, report, START)}
    assert found["wildfire-1"].met  # down exactly at its deadline
    assert not found["flood-1"].met and found["flood-1"].down == pytest.approx(due[1] + 60)
    assert not found["ships-1"].met and found["ships-1"].down is None  # not bit-exact
    assert found["wildfire-2"].result is not None and found["wildfire-2"].down is None
    assert found["crops-1"].result is None
    lines = comparison_lines(day, report, report, START)
    assert "MISSED (TIMED_OUT)" in lines[2] and "LATE -1 min" in lines[3]
    assert any(line.startswith("jobs on the ground by their deadline") and "1 of 10" in line
               for line in lines)  # fmt: skip
