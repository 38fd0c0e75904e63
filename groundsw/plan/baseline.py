"""The naive plan the planner is compared with: every job submitted at once at the first
contact (the time the plan would have been uploaded), each with its deadline as an operator
types it (`groundsw job submit --deadline`: seconds from submission), run by the payload as it
comes; results taken down at the next contact after they are ready."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from groundsw.plan.evaluate import Evaluation, Release, evaluate
from groundsw.plan.model import (
    LinkModel,
    OrbitWindows,
    PlanJob,
    PlanSettings,
    PowerModel,
    ThermalLimit,
)
from groundsw.plan.planner import Plan, first_release, plan_jobs


def naive_releases(
    jobs: Sequence[PlanJob], windows: OrbitWindows, settings: PlanSettings
) -> tuple[Release, ...]:
    """Every job released at the first release the plan could have (the first contact plus the
    lead), in the job file's order."""
    at = first_release(windows, settings)
    return tuple(Release(job, at, _deadline_s(job, at, settings.time_scale)) for job in jobs)


def _deadline_s(job: PlanJob, at: float, time_scale: float) -> float | None:
    return None if job.deadline is None else float(typed_deadline_s(job.deadline, at, time_scale))


def typed_deadline_s(deadline: float, at: float, time_scale: float = 1.0) -> int:
    """JOB_SUBMIT's deadline as an operator types it for a job submitted at orbit time `at`
    and due at `deadline`: the payload's whole seconds from then (orbit seconds over the
    bench's time scale)."""
    # 0 means none: a deadline already gone is 1 s.
    return max(1, math.ceil((deadline - at) / time_scale))


@dataclass(frozen=True, slots=True)
class Comparison:
    """The plan and the naive plan of the same jobs, over the same simulated window."""

    plan: Plan
    naive: Evaluation

    @property
    def planned(self) -> Evaluation:
        return self.plan.evaluation


def compare(
    jobs: Sequence[PlanJob],
    windows: OrbitWindows,
    power: PowerModel,
    thermal: ThermalLimit,
    link: LinkModel,
    settings: PlanSettings,
) -> Comparison:
    """Plan the jobs, and simulate the naive plan of the same jobs by the same model."""
    plan = plan_jobs(jobs, windows, power, thermal, link, settings)
    naive = evaluate(
        naive_releases(jobs, windows, settings), windows, power, thermal, link, settings
    )
    return Comparison(plan, naive)
