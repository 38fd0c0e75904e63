"""Passes of a satellite over a ground station: when it rises above the station's mask (AOS),
when it is highest, when it sets below the mask again (LOS).

Elevations are geometric (no refraction: it lifts a satellite at 10 degrees by 0.1 degree,
a second of pass) and geodetic (from the ellipsoid's normal at the station).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from orbit.frames import FloatArray, look_angles
from orbit.propagator import Orbit
from orbit.search import excursions
from orbit.station import Station
from orbit.tle import Tle

# Samples per orbit when looking for passes: a pass's elevation is unimodal over far more
# than two of them (about 47 s apart for a 95-minute orbit).
SAMPLES_PER_ORBIT = 120


@dataclass(frozen=True, slots=True)
class Pass:
    """One pass above the station's minimum elevation. Times in UNIX seconds; angles in
    degrees, azimuth from north through east. `tca` is the time of the highest elevation, the
    closest approach (for a near-circular orbit the two coincide within a second)."""

    aos: float
    los: float
    tca: float
    max_elevation_deg: float
    aos_azimuth_deg: float
    tca_azimuth_deg: float
    los_azimuth_deg: float

    @property
    def duration_s(self) -> float:
        return self.los - self.aos

    def contains(self, t: float) -> bool:
        """Whether the satellite is above the mask at `t` (from AOS, up to LOS)."""
        return self.aos <= t < self.los


def passes(source: Orbit | Tle, station: Station, start: float, end: float) -> list[Pass]:
    """The passes over `station` that overlap [start, end) (UNIX seconds), in time order, each
    whole: the first may have risen before `start`, the last set after `end`. A pass is the
    time above `station.min_elevation_deg`; AOS and LOS to a millisecond of the model."""
    orbit = Orbit.of(source)
    place = station.horizon
    mask = station.min_elevation_deg

    def above_mask(times: FloatArray) -> FloatArray:
        return look_angles(orbit.positions_ecef(times), place)[1] - mask

    period = orbit.period_s
    found = excursions(above_mask, start, end, period / SAMPLES_PER_ORBIT, period)
    if not found:
        return []
    moments = np.array([t for e in found for t in (e.start, e.peak_time, e.end)])
    azimuths = look_angles(orbit.positions_ecef(moments), place)[0].reshape(-1, 3)
    return [
        Pass(
            aos=e.start,
            los=e.end,
            tca=e.peak_time,
            max_elevation_deg=e.peak_value + mask,
            aos_azimuth_deg=float(aos_az),
            tca_azimuth_deg=float(tca_az),
            los_azimuth_deg=float(los_az),
        )
        for e, (aos_az, tca_az, los_az) in zip(found, azimuths, strict=True)
    ]


def elevations(source: Orbit | Tle, station: Station, times: FloatArray) -> FloatArray:
    """The satellite's elevation (degrees) seen from `station` at UNIX `times`."""
    orbit = Orbit.of(source)
    times = np.asarray(times, dtype=np.float64)
    return look_angles(orbit.positions_ecef(times), station.horizon)[1]
