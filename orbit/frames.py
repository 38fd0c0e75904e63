"""Times and frames: UNIX seconds to the Julian dates SGP4 takes, SGP4's TEME frame to the
Earth-fixed frame, and a station's place and local horizon on the WGS-84 ellipsoid.

Approximations, each worth well under a second of pass timing for a low orbit: UT1 is taken
as UTC (|UT1-UTC| < 0.9 s: the Earth turns 0.004 degrees in that time), and polar motion
(about 10 m on the ground) is left out, as SGP4's own accuracy (a kilometre a day from the
epoch) dwarfs both.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

SECONDS_PER_DAY = 86400.0
UNIX_EPOCH_JD = 2440587.5  # 1970-01-01T00:00:00 UTC
UNIX_J2000 = 946728000.0  # JD 2451545.0, 2000-01-01T12:00:00
WGS84_A_KM = 6378.137
WGS84_F = 1.0 / 298.257223563
WGS84_B_KM = WGS84_A_KM * (1.0 - WGS84_F)


def julian_dates(times: FloatArray) -> tuple[FloatArray, FloatArray]:
    """UNIX seconds as SGP4's (whole, fraction) pair of UTC Julian dates: the day's start and
    the fraction of it, so that no precision is lost to a 2.4-million-day sum."""
    days = np.floor(times / SECONDS_PER_DAY)
    return UNIX_EPOCH_JD + days, (times - days * SECONDS_PER_DAY) / SECONDS_PER_DAY


def gmst_rad(times: FloatArray) -> FloatArray:
    """Greenwich mean sidereal time (IAU 1982, the angle TEME is defined with), in radians."""
    centuries = (times - UNIX_J2000) / (SECONDS_PER_DAY * 36525.0)
    seconds = (
        67310.54841
        + (876600.0 * 3600.0 + 8640184.812866) * centuries
        + 0.093104 * centuries**2
        - 6.2e-6 * centuries**3
    )
    return np.asarray(np.mod(seconds, SECONDS_PER_DAY) * (2.0 * math.pi / SECONDS_PER_DAY))


def teme_to_ecef(positions: FloatArray, times: FloatArray) -> FloatArray:
    """Positions (N, 3) in TEME at `times` turned with the Earth: Earth-fixed (PEF) axes."""
    theta = gmst_rad(times)
    cos, sin = np.cos(theta), np.sin(theta)
    x, y = positions[:, 0], positions[:, 1]
    return np.column_stack((cos * x + sin * y, cos * y - sin * x, positions[:, 2]))


@dataclass(frozen=True, slots=True)
class Horizon:
    """A place on the WGS-84 ellipsoid: its Earth-fixed position (km) and its local east,
    north and up unit vectors (up is the ellipsoid's normal, so elevations are geodetic)."""

    position: FloatArray
    east: FloatArray
    north: FloatArray
    up: FloatArray


def horizon(latitude_deg: float, longitude_deg: float, altitude_km: float) -> Horizon:
    lat, lon = math.radians(latitude_deg), math.radians(longitude_deg)
    sin_lat, cos_lat = math.sin(lat), math.cos(lat)
    sin_lon, cos_lon = math.sin(lon), math.cos(lon)
    e2 = WGS84_F * (2.0 - WGS84_F)
    normal_radius = WGS84_A_KM / math.sqrt(1.0 - e2 * sin_lat**2)
    position = np.array(
        [
            (normal_radius + altitude_km) * cos_lat * cos_lon,
            (normal_radius + altitude_km) * cos_lat * sin_lon,
            (normal_radius * (1.0 - e2) + altitude_km) * sin_lat,
        ]
    )
    return Horizon(
        position=position,
        east=np.array([-sin_lon, cos_lon, 0.0]),
        north=np.array([-sin_lat * cos_lon, -sin_lat * sin_lon, cos_lat]),
        up=np.array([cos_lat * cos_lon, cos_lat * sin_lon, sin_lat]),
    )


def look_angles(ecef: FloatArray, place: Horizon) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Azimuth (degrees from north through east, 0 to 360), elevation (degrees, no refraction)
    and range (km) from `place` to Earth-fixed positions (N, 3)."""
    seen = ecef - place.position
    distance = np.sqrt(np.einsum("ij,ij->i", seen, seen))
    up = seen @ place.up
    elevation = np.degrees(np.arcsin(np.clip(up / distance, -1.0, 1.0)))
    azimuth = np.mod(np.degrees(np.arctan2(seen @ place.east, seen @ place.north)), 360.0)
    return azimuth, elevation, distance
