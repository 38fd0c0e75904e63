"""Orbit time and the payload's clock. In flight they are one. A bench flying a compressed
orbit (`hil-bench run --tle --station --time-scale K`) maps orbit time T to its clock as
t0 + (T - T0) / K, T0 the orbit time it started at and t0 its clock then: a plan made in orbit
time is released on the bench's clock, and its onboard durations shrink by K."""

from __future__ import annotations

import math
from dataclasses import dataclass

from groundsw.plan.model import PlanInputError


@dataclass(frozen=True, slots=True)
class BenchClock:
    """orbit time `orbit_start` is payload time `bench_start`; `time_scale` orbit seconds
    pass per payload second."""

    orbit_start: float = 0.0
    bench_start: float = 0.0
    time_scale: float = 1.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.time_scale) and self.time_scale > 0):
            raise PlanInputError(f"the time scale must be above 0, found {self.time_scale:g}")

    def to_bench(self, orbit_t: float) -> float:
        return self.bench_start + (orbit_t - self.orbit_start) / self.time_scale

    def to_orbit(self, payload_t: float) -> float:
        return self.orbit_start + (payload_t - self.bench_start) * self.time_scale

    @property
    def identity(self) -> bool:
        return self.time_scale == 1.0 and self.orbit_start == self.bench_start


#: Flight: the payload's clock is the orbit's.
FLIGHT = BenchClock()
