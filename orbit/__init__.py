"""Orbit-aware operations: a satellite's passes over a ground station and its eclipses, from a
two-line element set. Pure computation (numpy and sgp4); the one I/O is `read_tle`.

Times are UNIX seconds (UTC, float) everywhere; angles in degrees; distances in km, except a
station's altitude in metres. See docs/orbit.md.
"""

from orbit.clock import OrbitClock
from orbit.eclipses import eclipses, sunlit, sunlit_intervals
from orbit.errors import OrbitError, PropagationError, StationError, TleError, UnsupportedOrbit
from orbit.interval import Interval, complement
from orbit.passes import Pass, elevations, passes
from orbit.propagator import Orbit
from orbit.station import Station, parse_station
from orbit.sun import UMBRA, Shadow, ShadowPart
from orbit.timeline import Change, OrbitTimeline
from orbit.tle import Tle, parse_tle, read_tle

__all__ = [
    "UMBRA",
    "Change",
    "Interval",
    "Orbit",
    "OrbitClock",
    "OrbitError",
    "OrbitTimeline",
    "Pass",
    "PropagationError",
    "Shadow",
    "ShadowPart",
    "Station",
    "StationError",
    "Tle",
    "TleError",
    "UnsupportedOrbit",
    "complement",
    "eclipses",
    "elevations",
    "parse_station",
    "parse_tle",
    "passes",
    "read_tle",
    "sunlit",
    "sunlit_intervals",
]
