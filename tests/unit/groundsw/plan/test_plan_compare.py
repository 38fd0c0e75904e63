"""The plan against the naive plan on the sample orbit over Munich, the day of
docs/planning.md: by the same model, the plan has more results on the ground by their deadlines
and keeps the battery higher; the naive plan's jobs are held by the payload's power budget and
time out on board."""

from __future__ import annotations

import math

import pytest

from groundsw.plan.baseline import compare, naive_releases
from groundsw.plan.evaluate import Fate
from groundsw.plan.model import LinkModel, PlanSettings, ThermalLimit
from groundsw.plan.onboard import Hold
from groundsw.plan.planner import first_release
from tests.unit.groundsw.plan.plan_samples import (
    SAMPLE_POWER,
    SAMPLE_START,
    sample_day_jobs,
    sample_windows,
)

SETTINGS = PlanSettings(SAMPLE_START)


def test_the_plan_meets_more_deadlines_and_keeps_more_charge_than_the_naive_plan() -> None:
    jobs = sample_day_jobs()
    c = compare(jobs, sample_windows(), SAMPLE_POWER, ThermalLimit(), LinkModel(), SETTINGS)
    planned, naive = c.planned, c.naive
    assert c.plan.unplanned == ()
    assert (planned.by_deadline, naive.by_deadline) == (10, 8)
    assert planned.on_ground == 10
    assert planned.min_soc_pct == pytest.approx(37.9, abs=0.05)
    assert naive.min_soc_pct == pytest.approx(30.2, abs=0.05)
    floor = SAMPLE_POWER.floor_soc_pct
    assert planned.min_soc_pct >= floor + SETTINGS.reserve_pct
    # The plan's jobs start when released; the naive plan's wait on the budget (LOW: priority
    # below 128 under 35 %; ENERGY), and the wildfire jobs time out on board.
    assert planned.held_s == 0.0 and planned.timed_out == 0
    assert naive.held_s > 1000.0
    late = {o.job.name: o for o in naive.outcomes if not o.met_deadline}
    assert set(late) == {"wildfire-1", "wildfire-2"}
    assert all(o.fate is Fate.TIMED_OUT and Hold.LOW in o.holds for o in late.values())
    # Neither reaches the floor: the budget holds jobs before it would.
    assert planned.floor_s == naive.floor_s == 0.0


def test_the_naive_plan_submits_everything_at_the_first_contact() -> None:
    jobs = sample_day_jobs()
    releases = naive_releases(jobs, sample_windows(), SETTINGS)
    at = first_release(sample_windows(), SETTINGS)
    assert {r.at for r in releases} == {at}
    # The first contact is the pass at 23:13:39 UTC; the lead is a minute.
    assert at == pytest.approx(sample_windows().passes[0].start + 60.0)
    # Each with its own deadline as seconds from submission, as `job submit --deadline` takes it.
    wildfire = releases[0]
    assert wildfire.job.deadline is not None
    assert wildfire.deadline_s == math.ceil(wildfire.job.deadline - at)
