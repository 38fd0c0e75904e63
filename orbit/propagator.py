"""An element set made ready to propagate: sgp4's implementation of SGP4 (Vallado's C++, the
reference code of the 2006 revision), WGS-72 constants as element sets are fitted with."""

from __future__ import annotations

import numpy as np
from sgp4.api import SGP4_ERRORS, WGS72, Satrec

from orbit.errors import PropagationError, TleError, UnsupportedOrbit
from orbit.frames import FloatArray, julian_dates, teme_to_ecef
from orbit.tle import Tle

# SGP4 hands orbits of 225 minutes and longer to its deep-space branch (SDP4): resonances,
# luni-solar terms, and passes that last hours. What this package predicts is a low orbit.
DEEP_SPACE_PERIOD_S = 225.0 * 60.0


class Orbit:
    """One satellite's motion from its element set. Positions in km; times in UNIX seconds."""

    __slots__ = ("_satrec", "tle")

    def __init__(self, tle: Tle) -> None:
        if tle.period_s >= DEEP_SPACE_PERIOD_S:
            raise UnsupportedOrbit(
                f"{tle.label} has a period of {tle.period_s / 60:.1f} minutes: expected a "
                f"near-Earth orbit, under {DEEP_SPACE_PERIOD_S / 60:.0f} minutes"
            )
        try:
            satrec = Satrec.twoline2rv(tle.line1, tle.line2, WGS72)
        except ValueError as exc:  # what the column checks let through and sgp4 still refuses
            raise TleError(f"{tle.label}: sgp4 refuses the element set: {exc}") from None
        if satrec.error:
            raise TleError(
                f"{tle.label}: SGP4 cannot start from these elements: "
                f"{SGP4_ERRORS.get(satrec.error, f'error {satrec.error}')}"
            )
        self.tle = tle
        self._satrec = satrec

    @classmethod
    def of(cls, source: Orbit | Tle) -> Orbit:
        """`source` itself if it is an Orbit, else a new one from the element set."""
        return source if isinstance(source, Orbit) else cls(source)

    @property
    def period_s(self) -> float:
        """The orbital period the element set states (a day over its mean motion)."""
        return self.tle.period_s

    def positions_teme(self, times: FloatArray) -> FloatArray:
        """Positions (N, 3) in km in SGP4's TEME frame (true equator, mean equinox) at UNIX
        times (N,). Raises PropagationError where SGP4 gives none."""
        jd, fraction = julian_dates(np.asarray(times, dtype=np.float64))
        errors, positions, _ = self._satrec.sgp4_array(jd, fraction)
        if errors.any():
            where = int(np.flatnonzero(errors)[0])
            code = int(errors[where])
            age_days = (float(times[where]) - self.tle.epoch) / 86400.0
            raise PropagationError(
                f"{self.tle.label}: SGP4 gives no position {age_days:+.1f} days from the "
                f"epoch: {SGP4_ERRORS.get(code, f'error {code}')}"
            )
        return np.asarray(positions)

    def positions_ecef(self, times: FloatArray) -> FloatArray:
        """Positions (N, 3) in km in Earth-fixed axes at UNIX times (N,)."""
        times = np.asarray(times, dtype=np.float64)
        return teme_to_ecef(self.positions_teme(times), times)
