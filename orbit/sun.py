"""Where the Sun is, and how deep in the Earth's shadow a satellite is.

The Sun's position is the Astronomical Almanac's low-precision formula (section C, "Sun";
also Vallado's `sun`): 0.01 degree from 1950 to 2050, with no ephemeris file. A JPL ephemeris
would be 1000 times closer, but libraries fetch it from the internet at run time, which a
ground station or a bench must not depend on; 0.01 degree of Sun moves an eclipse edge of a
low orbit by about 0.2 s (the Earth's limb sweeps across the Sun at the orbital rate, 0.06
degree a second), well inside what power and thermal models can tell.

The shadow is cast by the WGS-84 ellipsoid (the Earth's flattening moves an eclipse edge by up
to 7 s against a sphere) without an atmosphere: no refraction, no dimming near the limb.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np

from orbit.frames import SECONDS_PER_DAY, UNIX_J2000, WGS84_A_KM, WGS84_B_KM, FloatArray

AU_KM = 149_597_870.7
SUN_RADIUS_KM = 695_700.0  # IAU 2015 nominal solar radius


def sun_position_km(times: FloatArray) -> FloatArray:
    """The Sun's geocentric position (N, 3) in km, mean equator and equinox of date: the axes
    of SGP4's TEME frame to within the nutation (under 0.005 degree)."""
    days = (times - UNIX_J2000) / SECONDS_PER_DAY
    mean_longitude = np.radians(280.460 + 0.9856474 * days)
    anomaly = np.radians(357.528 + 0.9856003 * days)
    longitude = mean_longitude + np.radians(1.915 * np.sin(anomaly) + 0.020 * np.sin(2 * anomaly))
    obliquity = np.radians(23.439 - 0.0000004 * days)
    distance = AU_KM * (1.00014 - 0.01671 * np.cos(anomaly) - 0.00014 * np.cos(2 * anomaly))
    return np.column_stack(
        (
            distance * np.cos(longitude),
            distance * np.cos(obliquity) * np.sin(longitude),
            distance * np.sin(obliquity) * np.sin(longitude),
        )
    )


class ShadowPart(enum.StrEnum):
    """Which part of the Earth's shadow counts as eclipse."""

    UMBRA = "umbra"  # the whole solar disc hidden: no direct sunlight at all
    CENTRE = "centre"  # the Sun's centre hidden: half-way through the penumbra
    PENUMBRA = "penumbra"  # any part of the disc hidden: from the first dimming


@dataclass(frozen=True, slots=True)
class Shadow:
    """An eclipse condition: the part of the shadow and the ellipsoid that casts it (a sphere
    when both radii are equal, as some libraries take the Earth)."""

    part: ShadowPart = ShadowPart.UMBRA
    equatorial_radius_km: float = WGS84_A_KM
    polar_radius_km: float = WGS84_B_KM


UMBRA = Shadow()


def shadow_depth(satellite_km: FloatArray, sun_km: FloatArray, shadow: Shadow) -> FloatArray:
    """How far (radians, as seen from the satellite) the Sun is inside the eclipse condition:
    positive in eclipse, negative in sunlight, zero on the edge. Smooth through the edges, so
    that they can be found by root finding.

    From the satellite, the Earth is a disc of angular radius asin(R/|r|) and the Sun one of
    asin(R_sun/d); the Sun is hidden whole when the two centres are less than the difference
    of the radii apart (umbra), and in part when less than their sum (penumbra). The ellipsoid
    becomes a sphere by stretching the polar axis, the same stretch applied to both vectors;
    it changes the Sun's apparent radius by 0.3 % of 0.27 degree, nothing."""
    stretch = np.array([1.0, 1.0, shadow.equatorial_radius_km / shadow.polar_radius_km])
    sat = satellite_km * stretch
    to_sun = sun_km * stretch - sat
    sat_distance = np.sqrt(np.einsum("ij,ij->i", sat, sat))
    sun_distance = np.sqrt(np.einsum("ij,ij->i", to_sun, to_sun))
    cos_separation = -np.einsum("ij,ij->i", sat, to_sun) / (sat_distance * sun_distance)
    separation = np.arccos(np.clip(cos_separation, -1.0, 1.0))
    earth_radius = np.arcsin(np.minimum(shadow.equatorial_radius_km / sat_distance, 1.0))
    sun_radius = np.arcsin(SUN_RADIUS_KM / sun_distance)
    if shadow.part is ShadowPart.UMBRA:
        limit = earth_radius - sun_radius
    elif shadow.part is ShadowPart.PENUMBRA:
        limit = earth_radius + sun_radius
    else:
        limit = earth_radius
    return np.asarray(limit - separation)
