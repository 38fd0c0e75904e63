"""When a satellite is in the Earth's shadow, and when it is in sunlight.

An eclipse is, by default, the umbra: the whole solar disc hidden by the Earth (the WGS-84
ellipsoid). The penumbra on either side, about 8 s for a low orbit (longer at high beta
angles, where the orbit grazes the shadow), counts as sunlight: the arrays still give most of
their power. `Shadow(ShadowPart.PENUMBRA)` or `ShadowPart.CENTRE` move the edges out or
half-way.
"""

from __future__ import annotations

import numpy as np

from orbit.frames import FloatArray
from orbit.interval import Interval, complement
from orbit.propagator import Orbit
from orbit.search import excursions
from orbit.sun import UMBRA, Shadow, shadow_depth, sun_position_km
from orbit.tle import Tle

# The shadow depth is close to a sinusoid of the orbit: a coarser grid than the passes' would
# do, but a grazing eclipse at a high beta angle is short and its depth barely positive.
SAMPLES_PER_ORBIT = 120


def eclipses(
    source: Orbit | Tle, start: float, end: float, shadow: Shadow = UMBRA
) -> list[Interval]:
    """The eclipses that overlap [start, end) (UNIX seconds), in time order, each whole: the
    first may have begun before `start`, the last end after `end`. Edges to a millisecond of
    the model (the Sun's position makes them good to about 0.2 s)."""
    orbit = Orbit.of(source)

    def depth(times: FloatArray) -> FloatArray:
        return shadow_depth(orbit.positions_teme(times), sun_position_km(times), shadow)

    period = orbit.period_s
    found = excursions(depth, start, end, period / SAMPLES_PER_ORBIT, period)
    return [Interval(e.start, e.end) for e in found]


def sunlit_intervals(
    source: Orbit | Tle, start: float, end: float, shadow: Shadow = UMBRA
) -> list[Interval]:
    """The spans of [start, end) in sunlight: the complement of the eclipses, cut to the
    window."""
    return complement(eclipses(source, start, end, shadow), start, end)


def sunlit(source: Orbit | Tle, times: FloatArray, shadow: Shadow = UMBRA) -> np.ndarray:
    """Whether the satellite is in sunlight at each of the UNIX `times` (a boolean array)."""
    orbit = Orbit.of(source)
    times = np.asarray(times, dtype=np.float64)
    return np.asarray(
        shadow_depth(orbit.positions_teme(times), sun_position_km(times), shadow) <= 0.0
    )
