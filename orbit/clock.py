"""An orbit compressed onto a bench's clock: the bench flies orbit time `time_scale` times faster
than real time, while the payload and the ground keep the real clock.

Orbit time T (UNIX seconds of the orbit's own time line, what `orbit` computes passes and
eclipses in) maps to bench time t (UNIX seconds of the clock the payload and the ground run on):

    t = bench_start + (T - orbit_start) / time_scale

Everything a bench derives from the orbit (link windows, the sunlight file, the baseplate) is in
bench time, and a planner aiming at a bench converts its passes and eclipses the same way. The
payload's power and thermal models take the same `time_scale`, so that their physics run that
much faster. Pure arithmetic: no clock is read here.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from orbit.errors import OrbitError


@dataclass(frozen=True, slots=True)
class OrbitClock:
    """The mapping between orbit time and bench time (see the module's docstring)."""

    orbit_start: float
    bench_start: float
    time_scale: float = 1.0

    def __post_init__(self) -> None:
        for name in ("orbit_start", "bench_start", "time_scale"):
            if not math.isfinite(getattr(self, name)):
                raise OrbitError(f"{name} must be finite, found {getattr(self, name)!r}")
        if self.time_scale <= 0:
            raise OrbitError(f"the time scale must be above 0, found {self.time_scale:g}")

    @property
    def identity(self) -> bool:
        """Whether orbit time is bench time (in flight, the payload's clock is the orbit's)."""
        return self.time_scale == 1.0 and self.orbit_start == self.bench_start

    def to_bench(self, orbit_time: float) -> float:
        """The bench time at which the bench flies `orbit_time`."""
        return self.bench_start + (orbit_time - self.orbit_start) / self.time_scale

    def to_orbit(self, bench_time: float) -> float:
        """The orbit time the bench flies at `bench_time`."""
        return self.orbit_start + (bench_time - self.bench_start) * self.time_scale

    def bench_seconds(self, orbit_seconds: float) -> float:
        """A duration of orbit time as the bench lives it."""
        return orbit_seconds / self.time_scale

    def orbit_seconds(self, bench_seconds: float) -> float:
        """A duration of bench time as the orbit lives it."""
        return bench_seconds * self.time_scale

    def to_bench_intervals(
        self, intervals: Iterable[tuple[float, float]]
    ) -> list[tuple[float, float]]:
        """(start, end) intervals of orbit time, in bench time."""
        return [(self.to_bench(start), self.to_bench(end)) for start, end in intervals]


#: In flight: the payload's clock is the orbit's.
FLIGHT = OrbitClock(orbit_start=0.0, bench_start=0.0)
