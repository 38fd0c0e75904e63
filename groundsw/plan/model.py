"""What a plan is made of: the jobs, the orbit's passes and eclipses, the payload's power and
thermal limits, the downlink, and the planning settings. Values only, checked when made.

Times are UNIX seconds of the orbit (the satellite's own clock; on a bench flying a compressed
orbit they map to the bench's clock only at the upload). Durations the payload or the line
spends in real time (compute, downlink, reading lag, lead) are given in the payload's seconds and
turned into orbit seconds by `PlanSettings.time_scale`: on a bench that flies the orbit k times
faster, one second of compute is k seconds of the orbit's, and of the battery's.
"""

from __future__ import annotations

import bisect
import enum
import itertools
import math
from dataclasses import dataclass, field

from orbit.interval import Interval, complement

MAX_PRIORITY = 255


class PlanInputError(ValueError):
    """Planning inputs that do not make sense together; one sentence for the operator."""


class Redundancy(enum.IntEnum):
    """The job's redundancy (dictionary enum Redundancy) and the runs it costs (flight's
    EXPECTED_RUNS: DMR's tie-breaking third run is the exception, not planned for)."""

    NONE = 0
    DMR = 1
    TMR = 2
    ABFT = 3

    @property
    def runs(self) -> int:
        return {Redundancy.NONE: 1, Redundancy.DMR: 2, Redundancy.TMR: 3, Redundancy.ABFT: 1}[self]


@dataclass(frozen=True, slots=True)
class PlanJob:
    """One job to plan. `compute_s` is the whole job's compute in the payload's seconds (runs
    included); `deadline` is when its result must be on the ground (None: by the horizon's end);
    `result_octets` its result's size, for the downlink."""

    name: str
    model: str
    input: str
    compute_s: float
    result_octets: int
    priority: int = 0
    redundancy: Redundancy = Redundancy.NONE
    version: int = 0
    deadline: float | None = None

    def __post_init__(self) -> None:
        if not self.name:
            raise PlanInputError("a job has an empty name")
        if not (math.isfinite(self.compute_s) and self.compute_s > 0):
            raise PlanInputError(
                f"job {self.name}: its compute time must be above 0 s, found {self.compute_s:g}"
            )
        if self.result_octets < 0:
            raise PlanInputError(f"job {self.name}: its result size must be 0 octets or more")
        if not 0 <= self.priority <= MAX_PRIORITY:
            raise PlanInputError(
                f"job {self.name}: priority {self.priority} is outside 0 to {MAX_PRIORITY}"
            )
        if self.deadline is not None and not math.isfinite(self.deadline):
            raise PlanInputError(f"job {self.name}: its deadline is not a time")


@dataclass(frozen=True, slots=True)
class OrbitWindows:
    """The passes over the station and the eclipses that overlap [start, end), each in time
    order and whole (the first may begin before `start`)."""

    start: float
    end: float
    passes: tuple[Interval, ...]
    eclipses: tuple[Interval, ...]
    _eclipse_starts: tuple[float, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.end > self.start:
            raise PlanInputError("the planning window ends before it begins")
        for name, spans in (("passes", self.passes), ("eclipses", self.eclipses)):
            if any(b.start < a.end for a, b in itertools.pairwise(spans)):
                raise PlanInputError(f"the {name} overlap or are out of order")
        object.__setattr__(self, "_eclipse_starts", tuple(e.start for e in self.eclipses))

    def sunlit(self, t: float) -> bool:
        i = bisect.bisect_right(self._eclipse_starts, t) - 1
        return not (i >= 0 and self.eclipses[i].contains(t))

    def next_sunlight_change(self, t: float) -> float:
        """The first time after `t` the light changes (math.inf when it does not)."""
        i = bisect.bisect_right(self._eclipse_starts, t) - 1
        if i >= 0 and self.eclipses[i].contains(t):
            return self.eclipses[i].end
        return self.eclipses[i + 1].start if i + 1 < len(self.eclipses) else math.inf

    def sunlit_spans(self, start: float, end: float) -> list[Interval]:
        """The sunlit parts of [start, end)."""
        return complement(self.eclipses, start, end)


@dataclass(frozen=True, slots=True)
class PowerModel:
    """The battery, the loads on it and the payload's power budget (docs/power.md): the bench
    model's and the ST[20] parameters' defaults. Watts, watt-hours, % of charge."""

    capacity_wh: float = 80.0
    initial_soc_pct: float = 80.0
    solar_w: float = 60.0
    bus_load_w: float = 10.0
    payload_idle_w: float = 8.0
    compute_w: float = 40.0
    floor_soc_pct: float = 20.0
    hold_soc_pct: float = 35.0
    slow_soc_pct: float = 50.0
    hysteresis_pct: float = 2.0
    slow_duty: float = 0.5
    hold_priority: int = 128
    eclipse_priority: int = 0
    reading_lag_s: float = 2.0

    def __post_init__(self) -> None:
        for name in ("capacity_wh",):
            _positive(name, getattr(self, name))
        for name in ("solar_w", "bus_load_w", "payload_idle_w", "compute_w", "reading_lag_s"):
            _non_negative(name, getattr(self, name))
        if not 0.0 <= self.initial_soc_pct <= 100.0:
            raise PlanInputError(
                f"the initial charge must be 0 to 100 %, found {self.initial_soc_pct:g}"
            )
        if not 0.0 <= self.floor_soc_pct < self.hold_soc_pct < self.slow_soc_pct <= 100.0:
            raise PlanInputError(
                f"the power levels must rise: floor {self.floor_soc_pct:g} % < hold "
                f"{self.hold_soc_pct:g} % < slow {self.slow_soc_pct:g} %"
            )
        _positive("hysteresis_pct", self.hysteresis_pct)
        if not 0.0 < self.slow_duty <= 1.0:
            raise PlanInputError("the slow duty must be above 0 and at most 100 %")
        for name in ("hold_priority", "eclipse_priority"):
            if not 0 <= getattr(self, name) <= MAX_PRIORITY:
                raise PlanInputError(f"{name} must be 0 to {MAX_PRIORITY}")

    def energy_wh(self, soc_pct: float) -> float:
        return self.capacity_wh * soc_pct / 100.0

    def soc_pct(self, energy_wh: float) -> float:
        return 100.0 * energy_wh / self.capacity_wh


@dataclass(frozen=True, slots=True)
class ThermalLimit:
    """The share of time the payload may compute for as long as a plan lasts: the duty the
    thermal governor settles at for the spacecraft's baseplate (docs/thermal.md: 1 at 20 C,
    0.31 at 50 C for the bench's model)."""

    duty: float = 1.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.duty) and 0.0 < self.duty <= 1.0):
            raise PlanInputError("the thermal duty must be above 0 and at most 100 %")


@dataclass(frozen=True, slots=True)
class LinkModel:
    """The downlink in a pass: `baud` of line rate; each result costs `result_overhead_s` of
    requests and reports besides its octets; the first and last `pass_margin_s` of a pass are
    spent acquiring and losing the signal."""

    baud: int = 115200
    result_overhead_s: float = 2.0
    pass_margin_s: float = 30.0

    def __post_init__(self) -> None:
        if self.baud <= 0:
            raise PlanInputError(f"the downlink's rate must be above 0 baud, found {self.baud}")
        _non_negative("result_overhead_s", self.result_overhead_s)
        _non_negative("pass_margin_s", self.pass_margin_s)


@dataclass(frozen=True, slots=True)
class PlanSettings:
    """`start`: the time of planning (the plan is uploaded at the first contact from then on);
    `horizon_s`: how far the plan looks; `lead_s`: the payload's seconds between the contact's
    start and the first release (the inputs' upload and the schedule's insertion); `reserve_pct`:
    charge kept above the floor for the model's errors; `time_scale`: orbit seconds per payload
    second (1 in flight; k on a bench flying the orbit k times faster)."""

    start: float
    horizon_s: float = 86400.0
    lead_s: float = 60.0
    reserve_pct: float = 5.0
    time_scale: float = 1.0

    def __post_init__(self) -> None:
        if not math.isfinite(self.start):
            raise PlanInputError("the planning start is not a time")
        _positive("horizon_s", self.horizon_s)
        _non_negative("lead_s", self.lead_s)
        _non_negative("reserve_pct", self.reserve_pct)
        _positive("time_scale", self.time_scale)

    @property
    def end(self) -> float:
        return self.start + self.horizon_s


def _positive(name: str, value: float) -> None:
    if not (math.isfinite(value) and value > 0):
        raise PlanInputError(f"{name} must be above 0, found {value:g}")


def _non_negative(name: str, value: float) -> None:
    if not (math.isfinite(value) and value >= 0):
        raise PlanInputError(f"{name} must be 0 or more, found {value:g}")
