"""The planner on made-up skies: every job by its deadline through the earliest pass that can
take it, compute as late as fits before that pass and in sunlight, in eclipse only while the
battery stays high, never below the floor's reserve, the jobs that cannot fit reported with
their reason, the same plan for the same inputs."""

from __future__ import annotations

import itertools
import math
import random

import pytest

from groundsw.plan.model import LinkModel, PlanInputError, PlanSettings, PowerModel
from groundsw.plan.planner import Placement, Plan, Unfit, first_release, plan_jobs
from tests.unit.groundsw.plan.plan_samples import (
    FULL_DUTY,
    HOUR,
    NO_MARGIN,
    T0,
    job,
    made_up_sky,
    settings,
)

# An orbit of 1.6 h: 0.6 h of eclipse in each; passes in sunlight before each eclipse but the
# third, which is in the shadow.
ORBIT = made_up_sky(
    passes=[(0.0, 0.1), (1.8, 1.9), (3.4, 3.5), (5.9, 6.0), (6.6, 6.7), (8.2, 8.3)],
    eclipses=[(1.0, 1.6), (2.6, 3.2), (4.2, 4.8), (5.8, 6.4), (7.4, 8.0), (9.0, 9.6)],
)


def compute_spans(plan: Plan) -> list[tuple[float, float]]:
    spans = []
    for o in plan.evaluation.outcomes:
        assert o.started is not None and o.finished is not None
        spans.append((o.started, o.finished))
    return sorted(spans)


def test_every_job_goes_down_by_its_deadline_through_the_earliest_pass_that_can_take_it() -> None:
    jobs = [
        job("c", 900.0, deadline_h=6.5),
        job("a", 900.0, deadline_h=2.0),
        job("b", 1200.0, deadline_h=3.6),
        job("d", 600.0),  # no deadline: on the ground by the end
    ]
    plan = plan_jobs(jobs, ORBIT, PowerModel(), FULL_DUTY, NO_MARGIN, settings(lead_s=60.0))
    assert plan.unplanned == ()
    by_name = {o.job.name: o for o in plan.evaluation.outcomes}
    assert all(o.met_deadline for o in by_name.values())
    # The pass at 1.8 h can take every result: all are computed for it, the most urgent
    # nearest to it (in the sunlit arcs 0-1.0 h and 1.6-1.9 h).
    assert {o.pass_index for o in by_name.values()} == {1}
    assert [name for _, name in sorted((o.started, n) for n, o in by_name.items())] == [
        "d", "c", "b", "a",
    ]  # fmt: skip
    assert by_name["a"].finished == pytest.approx(T0 + 1.9 * HOUR - 1.0)
    assert by_name["b"].finished == pytest.approx(T0 + 1.0 * HOUR)
    assert all(p.placement is Placement.SUNLIT for p in plan.planned)
    # Released after the upload's contact and its lead; computing one at a time.
    assert min(r.at for r in plan.releases) >= T0 + 60.0
    spans = compute_spans(plan)
    assert all(a[1] <= b[0] + 1e-6 for a, b in itertools.pairwise(spans))
    # Every job runs where the plan said: released, started at once.
    assert all(o.started == o.release.at for o in plan.evaluation.outcomes)


def test_a_job_goes_to_a_later_pass_when_the_sunlight_before_the_earlier_is_taken() -> None:
    # More compute than the sunlight before the 1.8 h pass holds (1.0 h and 0.3 h), and a
    # battery below the slow level after the eclipse: the third job waits for the next pass.
    jobs = [job(f"j{i}", 1800.0, deadline_h=3.6) for i in range(3)]
    power = PowerModel(initial_soc_pct=55.0)
    plan = plan_jobs(jobs, ORBIT, power, FULL_DUTY, NO_MARGIN, settings())
    assert plan.unplanned == ()
    assert sorted(o.pass_index for o in plan.evaluation.outcomes) == [1, 1, 2]
    assert all(p.placement is Placement.SUNLIT for p in plan.planned)
    # With a full battery it computes in the eclipse for the earlier pass instead.
    full = plan_jobs(jobs, ORBIT, PowerModel(initial_soc_pct=100.0), FULL_DUTY, NO_MARGIN,
                     settings())  # fmt: skip
    assert sorted(o.pass_index for o in full.evaluation.outcomes) == [1, 1, 1]
    assert Placement.ECLIPSE in {p.placement for p in full.planned}
    late = next(o for o in plan.evaluation.outcomes if o.pass_index == 2)
    # After the eclipse, in the sunlit arc 1.6-2.6 h (room for it at the slow level's duty).
    assert late.started is not None and late.started >= T0 + 1.6 * HOUR


SHADOW = made_up_sky(
    passes=[(5.82, 5.85), (6.1, 6.2), (6.6, 6.7)], eclipses=[(5.8, 6.4), (7.4, 8.0)], hours=9
)
# The plan starts in the shadow (5.8-6.4 h) during a pass; the next pass is in the shadow too,
# the one after in sunlight (6.4-7.4 h).
IN_SHADOW = PlanSettings(T0 + 5.82 * HOUR, horizon_s=3.0 * HOUR, lead_s=0.0)


@pytest.mark.parametrize(
    ("soc", "deadline_h", "placement", "pass_index"),
    [
        (90.0, 6.2, Placement.ECLIPSE, 1),  # a full battery: in the shadow, before its pass
        (60.0, 6.8, Placement.SUNLIT, 2),  # less: in sunlight, for the next pass
        (60.0, 6.2, Placement.RESERVE, 1),  # only the shadowed pass in time: down to the reserve
    ],
)
def test_in_the_shadow_only_with_a_high_battery_else_sunlight_for_a_later_pass(
    soc: float, deadline_h: float, placement: Placement, pass_index: int
) -> None:
    plan = plan_jobs(
        [job("j", 450.0, deadline_h=deadline_h)],
        SHADOW,
        PowerModel(initial_soc_pct=soc),
        FULL_DUTY,
        NO_MARGIN,
        IN_SHADOW,
    )
    assert plan.unplanned == ()
    ((placed,), (o,)) = plan.planned, plan.evaluation.outcomes
    assert (placed.placement, o.pass_index) == (placement, pass_index)
    assert o.met_deadline
    if placement is Placement.SUNLIT:
        assert o.started is not None and o.started >= T0 + 6.4 * HOUR
    else:
        assert o.finished == pytest.approx(T0 + 6.2 * HOUR - 1.0)  # right up to the pass's end
    assert plan.evaluation.min_soc_pct >= 20.0 + IN_SHADOW.reserve_pct


def test_a_low_battery_and_only_a_shadowed_pass_leave_the_job_out_for_energy() -> None:
    # The idle loads alone take the battery from 35 % to 22 % by the end of the shadow; the job
    # would start (above the floor by its energy) but leave the battery lower still.
    plan = plan_jobs(
        [job("j", 450.0, deadline_h=6.2, priority=200)],
        SHADOW,
        PowerModel(initial_soc_pct=35.0),
        FULL_DUTY,
        NO_MARGIN,
        IN_SHADOW,
    )
    assert plan.planned == ()
    (left,) = plan.unplanned
    assert left.reason is Unfit.ENERGY
    assert "would take the battery down to" in left.detail


def test_the_battery_never_goes_below_the_floors_reserve() -> None:
    # Twenty jobs of 20 minutes each, all due by the end: more than the sunlight carries.
    jobs = [job(f"j{i:02d}", 1200.0, deadline_h=11.5) for i in range(20)]
    power = PowerModel(initial_soc_pct=40.0)
    plan = plan_jobs(jobs, ORBIT, power, FULL_DUTY, NO_MARGIN, settings())
    assert plan.evaluation.min_soc_pct >= power.floor_soc_pct + 5.0 - 1e-6
    assert len(plan.planned) + len(plan.unplanned) == len(jobs)
    assert plan.planned and plan.unplanned
    assert all(o.met_deadline for o in plan.evaluation.outcomes)
    reasons = {u.reason for u in plan.unplanned}
    assert reasons <= {Unfit.ENERGY, Unfit.NO_TIME, Unfit.LATE}


def test_jobs_that_cannot_fit_are_reported_each_with_its_reason() -> None:
    link = LinkModel(baud=115200, result_overhead_s=200.0, pass_margin_s=0.0)
    jobs = [
        job("gone", 60.0, deadline_h=-1.0),
        job("no-pass", 60.0, deadline_h=1.5),  # the contact at 0-0.1 h is the only one before
        job("too-long", 3 * HOUR, deadline_h=2.0),
        job("first-of-two", 60.0, deadline_h=2.0),
        job("second-of-two", 60.0, deadline_h=2.0),  # the 1.8 h pass carries one result
        job("fine", 60.0, deadline_h=4.0),
    ]
    plan = plan_jobs(jobs, ORBIT, PowerModel(), FULL_DUTY, link, settings(lead_s=600.0))
    reasons = {u.job.name: u.reason for u in plan.unplanned}
    assert reasons == {
        "gone": Unfit.PAST,
        "no-pass": Unfit.NO_PASS,
        "too-long": Unfit.NO_TIME,
        "second-of-two": Unfit.CONFLICT,  # ready first, it would go down first
    }
    assert sorted(p.release.job.name for p in plan.planned) == ["fine", "first-of-two"]
    assert all(u.detail for u in plan.unplanned)


def test_the_same_inputs_give_the_same_plan_whatever_their_order() -> None:
    jobs = [
        job(f"j{i}", 300.0 + 60 * i, deadline_h=2.0 + 1.1 * i, priority=i % 3) for i in range(8)
    ]
    first = plan_jobs(jobs, ORBIT, PowerModel(), FULL_DUTY, NO_MARGIN, settings())
    assert len(first.planned) == 8
    assert plan_jobs(jobs, ORBIT, PowerModel(), FULL_DUTY, NO_MARGIN, settings()) == first
    shuffled = list(jobs)
    random.Random(3).shuffle(shuffled)
    again = plan_jobs(shuffled, ORBIT, PowerModel(), FULL_DUTY, NO_MARGIN, settings())
    assert [(r.job.name, r.at) for r in again.releases] == [
        (r.job.name, r.at) for r in first.releases
    ]


def test_the_onboard_deadline_is_the_last_moment_a_pass_can_still_take_the_result() -> None:
    plan = plan_jobs(
        [job("a", 900.0, deadline_h=3.6), job("b", 900.0)],
        ORBIT, PowerModel(), FULL_DUTY, NO_MARGIN, settings(),
    )  # fmt: skip
    releases = {r.job.name: r for r in plan.releases}
    # "a" must end by the end of the 3.4-3.5 h pass; "b" has no deadline, nor one on board.
    assert releases["a"].deadline_s == math.ceil(T0 + 3.5 * HOUR - 1.0 - releases["a"].at)
    assert releases["b"].deadline_s is None


def test_on_a_faster_bench_the_compute_takes_k_times_the_orbits_seconds() -> None:
    plan = plan_jobs(
        [job("a", 90.0, deadline_h=3.6)], ORBIT, PowerModel(), FULL_DUTY, NO_MARGIN,
        settings(time_scale=10.0),
    )  # fmt: skip
    (o,) = plan.evaluation.outcomes
    assert o.finished is not None and o.finished - o.release.at == pytest.approx(900.0)
    # Its onboard deadline is in the bench's seconds.
    assert o.release.deadline_s == math.ceil((T0 + 3.5 * HOUR - 1.0 - o.release.at) / 10.0)


def test_refusals_of_the_inputs() -> None:
    with pytest.raises(PlanInputError, match="two jobs are named a"):
        plan_jobs([job("a", 1.0), job("a", 2.0)], ORBIT, PowerModel(), FULL_DUTY, NO_MARGIN,
                  settings())  # fmt: skip
    no_pass = made_up_sky([], [(1.0, 1.5)])
    with pytest.raises(PlanInputError, match="no pass over the station"):
        plan_jobs([job("a", 1.0)], no_pass, PowerModel(), FULL_DUTY, NO_MARGIN, settings())
    assert first_release(ORBIT, settings(lead_s=30.0)) == T0 + 30.0
