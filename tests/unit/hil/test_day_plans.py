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
    sample_deadline_day,
)
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
        left = (START + job.deadline_h * HOUR - first.aos) / settings.time_scale
        assert int(values["deadline"]) == math.ceil(left)
