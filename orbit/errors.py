"""The orbit package's errors: each says what was expected and what was found, in one sentence
an operator can act on (the ground's CLI prints it as it is)."""

from __future__ import annotations


class OrbitError(Exception):
    """Anything the orbit package cannot compute or accept."""


class TleError(OrbitError):
    """A two-line element set that is not well formed: which line, what was expected, what was
    found."""


class StationError(OrbitError):
    """A ground station that cannot exist: latitude, longitude, altitude or mask out of range."""


class UnsupportedOrbit(OrbitError):
    """Elements this package does not predict for: deep-space orbits (SDP4), whose passes and
    eclipses follow other rules than a low Earth orbit's."""


class PropagationError(OrbitError):
    """SGP4 gave no position at a time: the elements diverge there (a decayed orbit, far from
    the epoch)."""
