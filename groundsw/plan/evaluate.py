"""The simulated day: what the payload does with a set of time-tagged job submissions, by the
same rules as on board, and when each result reaches the ground. The planner predicts its plan
with it, and the naive plan is judged by it, so that both are measured by one model.

The model (docs/planning.md):
- The battery, as the bench's (flight/power/battery_model.py): dE/dt = solar (while sunlit) -
  bus - payload idle - duty x compute, between empty and full (a full battery sheds the rest).
- The queue, as the payload's: a JOB_SUBMIT released enters it; one job computes at a time, the
  highest priority first, then the first released; the best queued job is held, and every job
  behind it, while the power budget refuses it (flight/power/governor.py: the level, eclipse
  and energy rules, here groundsw/plan/onboard.py); a job queued or running at its onboard
  deadline is timed out.
- A job computes `compute_s` of the payload's seconds spread at the duty the stricter of the
  thermal limit and the power level allows (none at the floor: it waits there).
- The results go down as groundsw/plan/downlink.py says.

It is exact for this model: between two events (a release, a change of light, a job's end, a
deadline, the charge crossing a level or the energy a held job needs) every rate is constant,
so the charge is linear and each crossing is solved for, not sampled.
"""

from __future__ import annotations

import enum
import itertools
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from groundsw.plan.downlink import Ready, deliveries
from groundsw.plan.model import (
    LinkModel,
    OrbitWindows,
    PlanJob,
    PlanSettings,
    PowerModel,
    ThermalLimit,
)
from groundsw.plan.onboard import (
    Hold,
    Level,
    energy_drop_pct,
    level_duty,
    level_thresholds,
    next_level,
    refusal,
)

# Past a crossing the charge is put this share of the capacity beyond it, so that the next
# decision sees it crossed (floating point would leave it a hair short as often as not).
_NUDGE = 1e-9
_TIME_EPS = 1e-6
# A day is a few hundred events; this many means the model is stuck (a fault, not a plan).
_MAX_EVENTS = 1_000_000


class SimulationError(RuntimeError):
    """The simulation made no progress: a fault in the model, never a property of a plan."""


@dataclass(frozen=True, slots=True)
class Release:
    """A JOB_SUBMIT released on board at `at` (orbit time), with its onboard deadline in the
    payload's seconds from then (None: none, JOB_SUBMIT's 0)."""

    job: PlanJob
    at: float
    deadline_s: float | None = None

    def deadline_at(self, time_scale: float) -> float | None:
        return None if self.deadline_s is None else self.at + self.deadline_s * time_scale


class Fate(enum.Enum):
    """Where a job stands at the end of the simulated window."""

    ON_GROUND = "on the ground"
    ON_BOARD = "result on board"
    TIMED_OUT = "timed out on board"
    RUNNING = "still computing"
    QUEUED = "still queued"
    NOT_RELEASED = "not released"


@dataclass(frozen=True, slots=True)
class JobOutcome:
    """What became of one released job. `held_s`: time it waited queued while the budget held
    the queue, for `holds`."""

    release: Release
    started: float | None
    finished: float | None
    timed_out: float | None
    held_s: float
    holds: frozenset[Hold]
    downlinked: float | None
    pass_index: int | None
    fate: Fate

    @property
    def job(self) -> PlanJob:
        return self.release.job

    @property
    def met_deadline(self) -> bool:
        """Its result was on the ground by its deadline (a job without one: by the end)."""
        deadline = self.job.deadline
        return self.downlinked is not None and (deadline is None or self.downlinked <= deadline)


@dataclass(frozen=True, slots=True)
class Evaluation:
    """The simulated window: each job's outcome (in the order of the releases given), the
    battery's charge as a polyline of (time, SoC %), its lowest point, and the time spent at or
    below the floor and with the queue held by the budget."""

    outcomes: tuple[JobOutcome, ...]
    curve: tuple[tuple[float, float], ...]
    min_soc_pct: float
    min_soc_at: float
    floor_s: float
    held_s: float

    @property
    def by_deadline(self) -> int:
        return sum(o.met_deadline for o in self.outcomes)

    @property
    def on_ground(self) -> int:
        return sum(o.downlinked is not None for o in self.outcomes)

    @property
    def timed_out(self) -> int:
        return sum(o.timed_out is not None for o in self.outcomes)

    @property
    def held_jobs(self) -> int:
        return sum(o.held_s > 0 for o in self.outcomes)

    def soc_at(self, t: float) -> float:
        """The charge at `t`, from the polyline."""
        points = self.curve
        if t <= points[0][0]:
            return points[0][1]
        for (t0, s0), (t1, s1) in itertools.pairwise(points):
            if t <= t1:
                return s0 if t1 == t0 else s0 + (s1 - s0) * (t - t0) / (t1 - t0)
        return points[-1][1]


def evaluate(
    releases: Sequence[Release],
    windows: OrbitWindows,
    power: PowerModel,
    thermal: ThermalLimit,
    link: LinkModel,
    settings: PlanSettings,
) -> Evaluation:
    """Simulate [settings.start, settings.end) with these releases (see the module)."""
    run = _Run(releases, windows, power, thermal, settings)
    run.simulate()
    k = settings.time_scale
    ready = [Ready(r.job, run.finished[i], i) for i, r in enumerate(releases) if i in run.finished]
    down = deliveries(ready, windows, link, k)
    outcomes = []
    for i, r in enumerate(releases):
        delivery = down.get(i)
        outcomes.append(
            JobOutcome(
                release=r,
                started=run.started.get(i),
                finished=run.finished.get(i),
                timed_out=run.timed_out.get(i),
                held_s=run.held_s.get(i, 0.0),
                holds=frozenset(run.holds.get(i, ())),
                downlinked=None if delivery is None else delivery.at,
                pass_index=None if delivery is None else delivery.pass_index,
                fate=_fate(run, i, delivery is not None),
            )
        )
    low = min(run.curve, key=lambda point: point[1])
    return Evaluation(
        outcomes=tuple(outcomes),
        curve=tuple(run.curve),
        min_soc_pct=low[1],
        min_soc_at=low[0],
        floor_s=run.floor_s,
        held_s=run.queue_held_s,
    )


def _fate(run: _Run, i: int, down: bool) -> Fate:
    if down:
        return Fate.ON_GROUND
    if i in run.finished:
        return Fate.ON_BOARD
    if i in run.timed_out:
        return Fate.TIMED_OUT
    if i == run.running:
        return Fate.RUNNING
    if i in run.queue:
        return Fate.QUEUED
    return Fate.NOT_RELEASED


class _Run:
    """One simulation's state, advanced event by event."""

    def __init__(
        self,
        releases: Sequence[Release],
        windows: OrbitWindows,
        power: PowerModel,
        thermal: ThermalLimit,
        settings: PlanSettings,
    ) -> None:
        self.releases = releases
        self.windows = windows
        self.power = power
        self.thermal = thermal
        self.k = settings.time_scale
        self.start, self.end = settings.start, settings.end
        self.pending = deque(sorted(range(len(releases)), key=lambda i: (releases[i].at, i)))
        self.queue: list[int] = []
        self.running: int | None = None
        self.remaining = 0.0  # orbit seconds of compute at full duty
        self.energy = power.energy_wh(power.initial_soc_pct)
        self.level = next_level(Level.NOMINAL, power.initial_soc_pct, power)
        self.started: dict[int, float] = {}
        self.finished: dict[int, float] = {}
        self.timed_out: dict[int, float] = {}
        self.held_s: dict[int, float] = {}
        self.holds: dict[int, set[Hold]] = {}
        self.curve: list[tuple[float, float]] = [(self.start, power.initial_soc_pct)]
        self.floor_s = 0.0
        self.queue_held_s = 0.0

    @property
    def soc(self) -> float:
        return self.power.soc_pct(self.energy)

    def simulate(self) -> None:
        t = self.start
        for _ in range(_MAX_EVENTS):
            hold = self._decide(t)
            if t >= self.end:
                return
            t = self._advance(t, hold)
        raise SimulationError(f"the simulation made no progress past {t:.3f}")

    def _decide(self, t: float) -> tuple[Hold, PlanJob] | None:
        """Releases, timeouts, the end of a job, the level and the start of the next job at
        `t`; the hold on the best queued job, if the budget refuses it."""
        while self.pending and self.releases[self.pending[0]].at <= t:
            self.queue.append(self.pending.popleft())
        # A job that ends at its deadline has ended in time (the payload times out a job only
        # once its deadline is past).
        if self.running is not None and self.remaining <= _TIME_EPS:
            self.finished[self.running] = t
            self.running = None
        for i in [*self.queue, *([self.running] if self.running is not None else [])]:
            deadline = self.releases[i].deadline_at(self.k)
            if deadline is not None and t >= deadline - _TIME_EPS:
                self.timed_out[i] = t
                if i == self.running:
                    self.running = None
                else:
                    self.queue.remove(i)
        self.level = next_level(self.level, self.soc, self.power)
        if self.running is not None or not self.queue:
            return None
        best = min(self.queue, key=self._queue_order)
        job = self.releases[best].job
        sunlit = self.windows.sunlit(t)
        discharge = max(0.0, -self._battery_w(sunlit, 0.0))
        reason = refusal(
            self.level, self.soc, sunlit, job.priority, job.compute_s, discharge, self.power, self.k
        )
        if reason is not None:
            return reason, job
        self.queue.remove(best)
        self.running = best
        self.remaining = job.compute_s * self.k
        self.started[best] = t
        return None

    def _queue_order(self, i: int) -> tuple[int, float, int]:
        """The payload's: the highest priority, then the first released."""
        return (-self.releases[i].job.priority, self.releases[i].at, i)

    def _duty(self) -> float:
        if self.running is None:
            return 0.0
        return min(self.thermal.duty, level_duty(self.level, self.power))

    def _net_w(self, sunlit: bool, duty: float) -> float:
        p = self.power
        solar = p.solar_w if sunlit else 0.0
        return solar - p.bus_load_w - p.payload_idle_w - duty * p.compute_w

    def _battery_w(self, sunlit: bool, duty: float) -> float:
        """Power into the battery: a full one takes no more, an empty one gives nothing."""
        net = self._net_w(sunlit, duty)
        full = self.energy >= self.power.capacity_wh
        if (net > 0 and full) or (net < 0 and self.energy <= 0):
            return 0.0
        return net

    def _advance(self, t: float, hold: tuple[Hold, PlanJob] | None) -> float:
        """Run to the next event after `t`; its time."""
        p = self.power
        sunlit = self.windows.sunlit(t)
        duty = self._duty()
        rate = self._battery_w(sunlit, duty)
        nxt = min(self.end, self.windows.next_sunlight_change(t))
        if self.pending:
            nxt = min(nxt, self.releases[self.pending[0]].at)
        if self.running is not None and duty > 0:
            nxt = min(nxt, t + self.remaining / duty)
        for i in [*self.queue, *([self.running] if self.running is not None else [])]:
            deadline = self.releases[i].deadline_at(self.k)
            if deadline is not None and deadline > t:
                nxt = min(nxt, deadline)
        targets = [*level_thresholds(self.level, p), (100.0, True), (0.0, False)]
        if hold is not None and hold[0] is Hold.ENERGY and rate >= 0:
            # Charging, the discharge the payload reckons with is none: the job starts once
            # the charge is above the floor by the job's own energy.
            need = p.floor_soc_pct + energy_drop_pct(hold[1].compute_s, 0.0, p, self.k)
            targets.append((need, True))
        crossing: tuple[float, bool] | None = None
        for soc, rising in targets:
            goal = p.energy_wh(soc)
            if rising and rate > 0 and self.energy < goal:
                when = t + (goal - self.energy) * 3600.0 / rate
            elif not rising and rate < 0 and self.energy > goal:
                when = t + (self.energy - goal) * 3600.0 / -rate
            else:
                continue
            if when < nxt:
                nxt, crossing = when, (goal, rising)
        dt = nxt - t
        before = self.soc
        self.energy = min(max(self.energy + rate * dt / 3600.0, 0.0), p.capacity_wh)
        if crossing is not None:
            goal, rising = crossing
            nudge = _NUDGE * p.capacity_wh
            self.energy = min(max(goal + (nudge if rising else -nudge), 0.0), p.capacity_wh)
        if self.running is not None:
            self.remaining -= duty * dt
        if hold is not None:
            self.queue_held_s += dt
            for i in self.queue:
                self.held_s[i] = self.held_s.get(i, 0.0) + dt
                self.holds.setdefault(i, set()).add(hold[0])
        self.floor_s += _time_at_or_below(before, self.soc, dt, p.floor_soc_pct)
        self.curve.append((nxt, self.soc))
        return nxt


def _time_at_or_below(before: float, after: float, dt: float, floor: float) -> float:
    """The part of a linear segment from `before` to `after` over `dt` at or below `floor`."""
    if before <= floor and after <= floor:
        return dt
    if before > floor and after > floor:
        return 0.0
    # One end above the floor, the other at or below it: the two differ.
    return dt * (floor - min(before, after)) / abs(after - before)
