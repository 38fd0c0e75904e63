"""A ground station: where it is on the WGS-84 ellipsoid and the lowest elevation at which it
holds the link (its mask)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from orbit.errors import StationError
from orbit.frames import Horizon, horizon

DEFAULT_MIN_ELEVATION_DEG = 10.0
# From the Dead Sea shore to above the highest summit: a station outside is a typo.
ALTITUDE_RANGE_M = (-500.0, 9000.0)
# A mask below -5 degrees would look through the Earth from any station site.
MIN_ELEVATION_RANGE_DEG = (-5.0, 89.0)


@dataclass(frozen=True, slots=True)
class Station:
    """A station by geodetic latitude and longitude (degrees, north and east positive),
    altitude above the ellipsoid (metres) and minimum elevation for a pass (degrees)."""

    latitude_deg: float
    longitude_deg: float
    altitude_m: float = 0.0
    min_elevation_deg: float = DEFAULT_MIN_ELEVATION_DEG
    name: str = ""

    def __post_init__(self) -> None:
        _check("latitude", self.latitude_deg, -90.0, 90.0, "degrees")
        _check("longitude", self.longitude_deg, -180.0, 360.0, "degrees")
        _check("altitude", self.altitude_m, *ALTITUDE_RANGE_M, "metres")
        _check("minimum elevation", self.min_elevation_deg, *MIN_ELEVATION_RANGE_DEG, "degrees")

    @property
    def horizon(self) -> Horizon:
        """Its Earth-fixed position and local horizon axes."""
        return horizon(self.latitude_deg, self.longitude_deg, self.altitude_m / 1000.0)

    def describe(self) -> str:
        """`48.1000N 11.6000E 550 m, minimum elevation 10 deg` (with its name first if any)."""
        ns = "N" if self.latitude_deg >= 0 else "S"
        longitude = (self.longitude_deg + 180.0) % 360.0 - 180.0
        ew = "E" if longitude >= 0 else "W"
        text = (
            f"{abs(self.latitude_deg):.4f}{ns} {abs(longitude):.4f}{ew} {self.altitude_m:.0f} m, "
            f"minimum elevation {self.min_elevation_deg:g} deg"
        )
        return f"{self.name}: {text}" if self.name else text


def parse_station(
    text: str, min_elevation_deg: float = DEFAULT_MIN_ELEVATION_DEG, name: str = ""
) -> Station:
    """`LAT,LON` or `LAT,LON,ALT_M` (degrees, degrees, metres; north and east positive).
    Raises StationError."""
    parts = [part.strip() for part in text.split(",")]
    if len(parts) not in (2, 3):
        raise StationError(
            f"expected the station as LAT,LON or LAT,LON,ALT_M (such as 48.1,11.6,550), found "
            f"{text!r}"
        )
    values = []
    for what, part in zip(("latitude", "longitude", "altitude"), parts, strict=False):
        try:
            values.append(float(part))
        except ValueError:
            raise StationError(
                f"expected the station's {what} as a number in the station {text!r}, found {part!r}"
            ) from None
    altitude = values[2] if len(values) == 3 else 0.0
    return Station(values[0], values[1], altitude, min_elevation_deg, name)


def _check(what: str, value: float, low: float, high: float, unit: str) -> None:
    if not (math.isfinite(value) and low <= value <= high):
        raise StationError(
            f"expected the station's {what} from {low:g} to {high:g} {unit}, found {value:g}"
        )
