"""Element sets and stations the orbit tests share, and the independent references (skyfield
with the JPL DE421 ephemeris that skyfield-data ships, so nothing is downloaded)."""

from __future__ import annotations

import datetime as dt
import functools
import importlib.resources
import warnings
from collections.abc import Iterable
from typing import Any

from orbit import Station, Tle, parse_tle, read_tle

# The shipped sample: 500 km, 53 degrees, epoch 2026-11-30T12:00:00Z (docs/orbit.md).
SAMPLE_PATH = importlib.resources.files("orbit").joinpath("data/aipayload-1.tle")
# Sun-synchronous, 500 km, descending node at 10:30 local time: a typical imaging orbit.
SSO_1030 = parse_tle(
    "SSO-1030\n"
    "1 99997U 26998A   26334.50000000  .00000800  00000-0  60000-4 0  9998\n"
    "2 99997  97.4000 111.7000 0010000  45.0000   0.0000 15.21920000  4560\n"
)
# Sun-synchronous along the terminator (dawn-dusk): at this season, in the Sun all the time.
DAWN_DUSK = parse_tle(
    "DAWN-DUSK\n"
    "1 99998U 26998A   26334.50000000  .00000800  00000-0  60000-4 0  9999\n"
    "2 99998  97.4000 336.7000 0010000  45.0000   0.0000 15.21920000  4560\n"
)
# The same orbit on the other side of the terminator: short eclipses at a high beta angle,
# where the orbit crosses the penumbra slantwise.
HIGH_BETA = parse_tle(
    "HIGH-BETA\n"
    "1 99998U 26998A   26334.50000000  .00000800  00000-0  60000-4 0  9999\n"
    "2 99998  97.4000 156.7000 0010000  45.0000   0.0000 15.21920000  4560\n"
)

MUNICH = Station(48.1, 11.6, 550.0, 10.0, "Munich")
CAPE_TOWN = Station(-33.9, 18.4, 30.0, 5.0, "Cape Town")
SVALBARD = Station(78.2, 15.4, 450.0, 10.0, "Svalbard")
DAY = 86400.0


def sample() -> Tle:
    with importlib.resources.as_file(SAMPLE_PATH) as path:
        return read_tle(path)


@functools.cache
def skyfield() -> tuple[Any, Any]:
    """skyfield's timescale and the DE421 ephemeris, loaded from skyfield-data's files."""
    from skyfield.api import Loader
    from skyfield.api import load as default_loader

    with warnings.catch_warnings():
        # skyfield-data warns when its Earth-orientation table is past its prediction span;
        # only the ephemeris file is used from it here.
        warnings.simplefilter("ignore")
        from skyfield_data import get_skyfield_data_path

        ephemeris = Loader(get_skyfield_data_path(), verbose=False)("de421.bsp")
    return default_loader.timescale(builtin=True), ephemeris


def skyfield_times(unix: Iterable[float]) -> Any:
    """skyfield Times for UNIX times (through datetimes: its calendar counts leap seconds)."""
    timescale, _ = skyfield()
    return timescale.from_datetimes([dt.datetime.fromtimestamp(t, dt.UTC) for t in unix])


def skyfield_time(unix: float) -> Any:
    timescale, _ = skyfield()
    return timescale.from_datetime(dt.datetime.fromtimestamp(unix, dt.UTC))


def unix_of(skyfield_times: Any) -> list[float]:
    return [t.timestamp() for t in skyfield_times.utc_datetime()]
