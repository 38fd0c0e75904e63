"""What an orbit does to the payload's surroundings on the bench, in orbit time: when it is
sunlit, and the spacecraft's interface (baseplate) temperature that follows. Pure computation
on an `OrbitTimeline`; the orbit driver writes the results into the payload's files.

The baseplate model is the simplest that keeps the shape of a real one: the spacecraft
structure the payload is mounted on relaxes toward a warm temperature while the Sun heats it and
toward a cold one in eclipse, with one time constant (its heat capacity over its conductance to
space, tens of minutes for a small satellite's panel):

    dT/dt = (T_target - T) / tau,   T_target = sunlit_c in sunlight, eclipse_c in eclipse

Between two changes of sunlight the solution is exact (an exponential); the profile samples it
every `step_s` and at every change, and the payload interpolates linearly between samples (at
60 s against a 20-minute constant, within 0.01 C). At the defaults (30 C, 0 C, 1200 s) the
baseplate of the sample orbit (62 % sunlit, 95 minutes) swings between about 6 and 28 C.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from orbit import OrbitTimeline

# (start, end, sunlit) spans of orbit time, in order, end to end.
Segment = tuple[float, float, bool]
# Orbits flown before the start to settle the baseplate into its orbital swing: its memory,
# exp(-3 * 95 min / 20 min), is below a millionth.
SPIN_UP_ORBITS = 3.0
DEFAULT_STEP_S = 60.0


class InterfaceModelError(ValueError):
    """Environment parameters that make no sense."""


@dataclass(frozen=True, slots=True)
class InterfaceModel:
    """The baseplate's first-order response to sunlight (temperatures in C, seconds of orbit
    time)."""

    sunlit_c: float = 30.0
    eclipse_c: float = 0.0
    time_constant_s: float = 1200.0

    def __post_init__(self) -> None:
        for name in ("sunlit_c", "eclipse_c", "time_constant_s"):
            if not math.isfinite(getattr(self, name)):
                raise InterfaceModelError(f"{name} must be finite, found {getattr(self, name)!r}")
        if self.time_constant_s <= 0:
            raise InterfaceModelError(
                f"the baseplate's time constant must be above 0 s, found {self.time_constant_s:g}"
            )

    def target(self, sunlit: bool) -> float:
        return self.sunlit_c if sunlit else self.eclipse_c

    def after(self, start_c: float, seconds: float, sunlit: bool) -> float:
        """The temperature `seconds` after `start_c` under constant sunlight (or eclipse)."""
        target = self.target(sunlit)
        return target + (start_c - target) * math.exp(-seconds / self.time_constant_s)

    def profile(
        self, segments: Sequence[Segment], start_c: float, step_s: float = DEFAULT_STEP_S
    ) -> list[tuple[float, float]]:
        """Breakpoints (orbit time, C) over `segments` from `start_c` at their start: one every
        `step_s` at most, and one at every change of sunlight."""
        if step_s <= 0:
            raise InterfaceModelError(f"the profile's step must be above 0 s, found {step_s:g}")
        if not segments:
            return []
        points = [(segments[0][0], start_c)]
        temperature = start_c
        for start, end, lit in segments:
            steps = max(1, math.ceil((end - start) / step_s))
            for i in range(1, steps + 1):
                t = end if i == steps else start + i * (end - start) / steps
                points.append((t, self.after(temperature, t - start, lit)))
            temperature = points[-1][1]
        return points


def sunlight_segments(timeline: OrbitTimeline, start: float, end: float) -> list[Segment]:
    """[start, end) of orbit time cut where sunlight changes: (start, end, sunlit), in order."""
    out: list[Segment] = []
    t = start
    for eclipse in timeline.eclipses(start, end):
        if eclipse.start > t:
            out.append((t, eclipse.start, True))
        a, b = max(eclipse.start, t), min(eclipse.end, end)
        if b > a:
            out.append((a, b, False))
        t = max(t, b)
    if t < end:
        out.append((t, end, True))
    return out


def sunlit_spans(segments: Sequence[Segment]) -> list[tuple[float, float]]:
    """The sunlit (start, end) spans of `segments`."""
    return [(a, b) for a, b, lit in segments if lit]
