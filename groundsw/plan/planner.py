"""The planner: when to release each job on board so that its result is on the ground by its
deadline, the battery never near the floor, compute in sunlight where it can be.

Greedy, earliest deadline first (docs/planning.md says why that is good enough and where it is
not optimal). The jobs are taken by deadline (then the higher priority, then the file's order);
each is given the first acceptable of these places, every one "as late as fits" before a pass
that can still take its result down by the deadline, so that results go down soon after they
are computed:

1. before the earliest such pass, in sunlight (the array carries the compute: at the bench's
   loads the battery barely moves);
   in eclipse there only if the battery stays above the slow level (the payload would slow
   itself below it);
2. then the same for each later pass;
3. last, in eclipse before the earliest pass that allows it, down to the floor plus a reserve.

A place is acceptable when the whole plan with it, simulated as the payload would run it
(groundsw/plan/evaluate.py), has this job's result on the ground by its deadline, every job
placed before still on time, and the battery no lower than the floor plus the reserve (or no
lower than it went without the job). A job no place suits is reported with the reason.
"""

from __future__ import annotations

import enum
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from groundsw.plan.downlink import result_seconds, usable_passes
from groundsw.plan.evaluate import Evaluation, Release, evaluate
from groundsw.plan.model import (
    LinkModel,
    OrbitWindows,
    PlanInputError,
    PlanJob,
    PlanSettings,
    PowerModel,
    ThermalLimit,
)
from groundsw.timespec import utc_text
from orbit.interval import Interval, complement

# The charge a placement may lower the lowest point by and still count as "not lower".
_SOC_EPS = 1e-6
_TIME_EPS = 1e-6
# A result is planned ready this long before the pass must start taking it down: an edge in
# floating point is no margin.
_READY_SLACK_S = 1.0


class Placement(enum.Enum):
    """Why a job computes where it does."""

    SUNLIT = "in sunlight"
    ECLIPSE = "in eclipse, battery above the slow level"
    RESERVE = "in eclipse, battery above the floor's reserve"


class Unfit(enum.Enum):
    """Why a job is not in the plan."""

    PAST = "its deadline is before the plan's first release"
    NO_PASS = "no pass can take its result down by its deadline"
    NO_TIME = "no free compute time before a pass that meets its deadline"
    LATE = "its result would not be down by its deadline"
    CONFLICT = "it would make a job planned before it late"
    ENERGY = "it would take the battery below the floor's reserve"


@dataclass(frozen=True, slots=True)
class PlannedJob:
    release: Release
    placement: Placement


@dataclass(frozen=True, slots=True)
class Unplanned:
    """A job left out, why, and what was tried (one sentence)."""

    job: PlanJob
    reason: Unfit
    detail: str


@dataclass(frozen=True, slots=True)
class Plan:
    """The releases in time order (with where each computes), the jobs left out, the plan's
    simulated window, and the contact at which it is uploaded."""

    planned: tuple[PlannedJob, ...]
    unplanned: tuple[Unplanned, ...]
    evaluation: Evaluation
    contact: Interval
    first_release: float

    @property
    def releases(self) -> tuple[Release, ...]:
        return tuple(p.release for p in self.planned)


def upload_contact(windows: OrbitWindows, settings: PlanSettings) -> Interval:
    """The pass under way at the start, else the next one: when the plan goes up."""
    for p in windows.passes:
        if p.end > settings.start:
            return p
    raise PlanInputError(
        "no pass over the station in the planning window: a plan could be neither uploaded "
        "nor its results taken down"
    )


def first_release(windows: OrbitWindows, settings: PlanSettings) -> float:
    """The earliest a released job may be: the upload's contact, plus the lead."""
    contact = upload_contact(windows, settings)
    return max(settings.start, contact.start) + settings.lead_s * settings.time_scale


def plan_jobs(
    jobs: Sequence[PlanJob],
    windows: OrbitWindows,
    power: PowerModel,
    thermal: ThermalLimit,
    link: LinkModel,
    settings: PlanSettings,
) -> Plan:
    """The plan for `jobs` (see the module). Deterministic: the same inputs, the same plan."""
    _check_names(jobs)
    contact = upload_contact(windows, settings)
    planner = _Planner(windows, power, thermal, link, settings, first_release(windows, settings))
    order = sorted(range(len(jobs)), key=lambda i: _edf(jobs[i], i))
    unplanned: list[Unplanned] = []
    for i in order:
        refused = planner.place(jobs[i])
        if refused is not None:
            unplanned.append(refused)
    placed = sorted(planner.placed, key=lambda p: (p.release.at, p.release.job.name))
    final = planner.simulate([p.release for p in placed])
    return Plan(tuple(placed), tuple(unplanned), final, contact, planner.earliest)


def _edf(job: PlanJob, index: int) -> tuple[float, int, int]:
    return (job.deadline if job.deadline is not None else math.inf, -job.priority, index)


def _check_names(jobs: Sequence[PlanJob]) -> None:
    seen: set[str] = set()
    for job in jobs:
        if job.name in seen:
            raise PlanInputError(f"two jobs are named {job.name}: each needs its own name")
        seen.add(job.name)


@dataclass(frozen=True, slots=True)
class _Candidate:
    at: float
    placement: Placement
    floor: float  # the lowest charge this placement may leave (unless no lower than before)


class _Planner:
    def __init__(
        self,
        windows: OrbitWindows,
        power: PowerModel,
        thermal: ThermalLimit,
        link: LinkModel,
        settings: PlanSettings,
        earliest: float,
    ) -> None:
        self.windows = windows
        self.power = power
        self.thermal = thermal
        self.link = link
        self.settings = settings
        self.earliest = earliest
        self.placed: list[PlannedJob] = []
        self.current = self.simulate([])

    def simulate(self, releases: Sequence[Release]) -> Evaluation:
        return evaluate(releases, self.windows, self.power, self.thermal, self.link, self.settings)

    def place(self, job: PlanJob) -> Unplanned | None:
        k = self.settings.time_scale
        deadline = job.deadline if job.deadline is not None else self.settings.end
        if deadline <= self.earliest:
            return Unplanned(
                job,
                Unfit.PAST,
                f"{utc_text(deadline)}; the first release is at {utc_text(self.earliest)}",
            )
        down = result_seconds(job, self.link, k)
        # For each pass that can take the result by the deadline, when it must be ready.
        cuts = [
            min(span.end, deadline) - down - _READY_SLACK_S
            for _, span in usable_passes(self.windows, self.link, k)
            if span.start < deadline
        ]
        cuts = [cut for cut in cuts if cut > self.earliest]
        if not cuts:
            return Unplanned(job, Unfit.NO_PASS, self._no_pass_detail(deadline, down))
        last_useful = cuts[-1]
        candidates = self._candidates(job, cuts)
        if not candidates:
            return Unplanned(job, Unfit.NO_TIME, self._no_time_detail(job))
        failures: list[tuple[Unfit, str | float]] = []
        for candidate in candidates:
            onboard = None
            if job.deadline is not None:
                # The last moment its compute can still end in time for a pass: later, the
                # payload times it out rather than spend energy on a result that is too late.
                onboard = float(math.ceil((last_useful - candidate.at) / k))
            release = Release(job, candidate.at, onboard)
            trial = self.simulate([*(p.release for p in self.placed), release])
            failure = self._judge(trial, candidate)
            if failure is None:
                self.placed.append(PlannedJob(release, self._placement(trial, candidate)))
                self.current = trial
                return None
            failures.append(failure)
        return _refusal(job, failures)

    def _candidates(self, job: PlanJob, cuts: list[float]) -> list[_Candidate]:
        """The places to try, in order of preference (see the module)."""
        p = self.power
        reserve = p.floor_soc_pct + self.settings.reserve_pct
        busy = self._busy()
        first: list[_Candidate] = []
        last: list[_Candidate] = []
        for cut in cuts:
            free = complement(busy, self.earliest, cut)
            sunlit = [s for f in free for s in self.windows.sunlit_spans(f.start, f.end)]
            for wall in self._walls(job, cut):
                sunny = _latest(sunlit, wall)
                if sunny is not None:
                    first.append(_Candidate(sunny, Placement.SUNLIT, reserve))
                anywhere = _latest(free, wall)
                if anywhere is not None and not self._all_sunlit(anywhere, wall):
                    first.append(_Candidate(anywhere, Placement.ECLIPSE, p.slow_soc_pct))
                    last.append(_Candidate(anywhere, Placement.RESERVE, reserve))
        seen: set[tuple[float, float]] = set()
        ordered = []
        for candidate in [*first, *last]:
            key = (candidate.at, candidate.floor)
            if key not in seen:
                seen.add(key)
                ordered.append(candidate)
        return ordered

    def _walls(self, job: PlanJob, cut: float) -> list[float]:
        """The times the job's compute may spread over, ending at `cut`: at the thermal duty,
        then at the slow level's in case the job takes the battery below that level; only the
        slow one where the plan so far has the battery below it already."""
        p, k = self.power, self.settings.time_scale
        fast = job.compute_s * k / self.thermal.duty
        slow = job.compute_s * k / min(self.thermal.duty, p.slow_duty)
        if slow == fast:
            return [fast]
        if self.current.soc_at(cut) < p.slow_soc_pct:
            return [slow]
        return [fast, slow]

    def _placement(self, trial: Evaluation, candidate: _Candidate) -> Placement:
        """Where the job computes in the trial (the slower duty a candidate allowed for may
        not have come), named by the rule that let it in the shadow if it is there."""
        o = trial.outcomes[-1]
        if (
            o.started is not None
            and o.finished is not None
            and self._all_sunlit(o.started, o.finished - o.started)
        ):
            return Placement.SUNLIT
        return candidate.placement

    def _all_sunlit(self, at: float, wall: float) -> bool:
        spans = self.windows.sunlit_spans(at, at + wall)
        return len(spans) == 1 and spans[0].duration_s >= wall - _TIME_EPS

    def _busy(self) -> list[Interval]:
        """When the plan so far computes: from each job's start to its end (or timeout)."""
        spans = []
        for o in self.current.outcomes:
            if o.started is None:
                continue
            end = o.finished if o.finished is not None else o.timed_out
            spans.append(Interval(o.started, end if end is not None else self.settings.end))
        return sorted(spans, key=lambda w: w.start)

    def _judge(self, trial: Evaluation, candidate: _Candidate) -> tuple[Unfit, str | float] | None:
        """None when the trial plan (the new job last) is acceptable; else why not: LATE, a
        job made late (CONFLICT, its name), or the lowest charge (ENERGY)."""
        outcome = trial.outcomes[-1]
        if not outcome.met_deadline:
            return Unfit.LATE, ""
        for before in trial.outcomes[:-1]:
            if not before.met_deadline:
                return Unfit.CONFLICT, before.job.name
        allowed = min(candidate.floor, self.current.min_soc_pct - _SOC_EPS)
        if trial.min_soc_pct < allowed:
            return Unfit.ENERGY, trial.min_soc_pct
        return None

    def _no_pass_detail(self, deadline: float, down: float) -> str:
        return (
            f"from the first release at {utc_text(self.earliest)} to {utc_text(deadline)}, "
            f"none with the {down:.0f} s its result takes"
        )

    def _no_time_detail(self, job: PlanJob) -> str:
        wall = job.compute_s * self.settings.time_scale / self.thermal.duty
        return (
            f"its {wall:.0f} s of compute do not fit in the time left free before the last "
            "pass that meets its deadline"
        )


def _refusal(job: PlanJob, failures: list[tuple[Unfit, str | float]]) -> Unplanned:
    """The reason most of the places tried failed for, and what each kind of failure was."""
    counts = Counter(unfit for unfit, _ in failures)
    reason = max(counts, key=lambda u: (counts[u], -list(Unfit).index(u)))
    parts = []
    for unfit in sorted(counts, key=list(Unfit).index):
        details = [d for u, d in failures if u is unfit]
        if unfit is Unfit.CONFLICT:
            names = ", ".join(sorted({str(d) for d in details}))
            parts.append(f"{counts[unfit]} would make {names} late")
        elif unfit is Unfit.ENERGY:
            lowest = min(float(d) for d in details)
            parts.append(f"{counts[unfit]} would take the battery down to {lowest:.1f} %")
        else:
            parts.append(f"{counts[unfit]} would have its result down after its deadline")
    tried = len(failures)
    return Unplanned(
        job, reason, f"{tried} place{'s' if tried != 1 else ''} tried: " + "; ".join(parts)
    )


def _latest(spans: Sequence[Interval], wall: float) -> float | None:
    """The latest start of `wall` seconds inside one of `spans` (time order), if any."""
    for span in reversed(spans):
        if span.duration_s >= wall - _TIME_EPS:
            return max(span.end - wall, span.start)
    return None
