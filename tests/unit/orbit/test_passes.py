"""Passes against two libraries we did not write: skyfield's `find_events` (sgp4 underneath,
its own frames and search) and pyorbital's `get_next_passes` (its own SGP4, frames and root
finder); and what a pass must be whatever the library: edges on the mask, the highest point
in between, whole passes across the window's edges."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
from pyorbital.orbital import Orbital
from skyfield.api import EarthSatellite, wgs84

from orbit import Pass, Station, Tle, elevations, passes
from tests.unit.orbit.samples import (
    CAPE_TOWN,
    DAY,
    MUNICH,
    SSO_1030,
    SVALBARD,
    sample,
    skyfield,
    skyfield_time,
    unix_of,
)

CASES = [
    pytest.param(sample(), MUNICH, id="53deg-Munich"),
    pytest.param(sample(), CAPE_TOWN, id="53deg-CapeTown"),
    pytest.param(SSO_1030, MUNICH, id="SSO-Munich"),
]
# What the comparisons measured (docs/orbit.md): AOS and LOS within 0.1 s of skyfield (its
# UT1 against our UTC) and 2 ms of pyorbital, the maximum elevation within 0.003 degree.
EDGE_S = 0.5
PEAK_DEG = 0.01


def skyfield_passes(tle: Tle, station: Station, start: float, end: float) -> list[Pass]:
    timescale, _ = skyfield()
    satellite = EarthSatellite(tle.line1, tle.line2, tle.name, timescale)
    place = wgs84.latlon(station.latitude_deg, station.longitude_deg, station.altitude_m)
    times, events = satellite.find_events(
        place, skyfield_time(start), skyfield_time(end), station.min_elevation_deg
    )
    unix = unix_of(times)
    found = []
    rise = peak = None
    for t, event, moment in zip(unix, events, times, strict=True):
        if event == 0:
            rise, peak = t, None
        elif event == 1 and rise is not None:
            altitude = (satellite - place).at(moment).altaz()[0].degrees
            if peak is None or altitude > peak[1]:
                peak = (t, altitude)
        elif event == 2 and rise is not None and peak is not None:
            found.append(Pass(rise, t, peak[0], peak[1], 0.0, 0.0, 0.0))
            rise = None
    return found


def inside(found: list[Pass], start: float, end: float) -> list[Pass]:
    return [p for p in found if p.aos >= start and p.los <= end]


@pytest.mark.parametrize(("tle", "station"), CASES)
def test_passes_agree_with_skyfield(tle: Tle, station: Station) -> None:
    start, end = tle.epoch, tle.epoch + 2 * DAY
    ours = inside(passes(tle, station, start, end), start, end)
    reference = skyfield_passes(tle, station, start, end)
    assert len(ours) == len(reference) >= 6
    for mine, theirs in zip(ours, reference, strict=True):
        assert mine.aos == pytest.approx(theirs.aos, abs=EDGE_S)
        assert mine.los == pytest.approx(theirs.los, abs=EDGE_S)
        assert mine.max_elevation_deg == pytest.approx(theirs.max_elevation_deg, abs=PEAK_DEG)
        assert mine.tca == pytest.approx(theirs.tca, abs=1.0)


@pytest.mark.parametrize(("tle", "station"), CASES)
def test_passes_agree_with_pyorbital(tle: Tle, station: Station) -> None:
    start, hours = tle.epoch, 48
    end = start + hours * 3600.0
    reference = Orbital(tle.name, line1=tle.line1, line2=tle.line2)
    naive_start = dt.datetime.fromtimestamp(start, dt.UTC).replace(tzinfo=None)
    theirs = reference.get_next_passes(
        naive_start,
        hours,
        station.longitude_deg,
        station.latitude_deg,
        station.altitude_m / 1000.0,
        horizon=station.min_elevation_deg,
    )
    ours = inside(passes(tle, station, start, end), start, end)
    assert len(ours) == len(theirs) >= 6
    for mine, (rise, fall, highest) in zip(ours, theirs, strict=True):
        assert mine.aos == pytest.approx(rise.replace(tzinfo=dt.UTC).timestamp(), abs=EDGE_S)
        assert mine.los == pytest.approx(fall.replace(tzinfo=dt.UTC).timestamp(), abs=EDGE_S)
        _, peak = reference.get_observer_look(
            highest, station.longitude_deg, station.latitude_deg, station.altitude_m / 1000.0
        )
        assert mine.max_elevation_deg == pytest.approx(float(peak), abs=PEAK_DEG)


def test_each_pass_starts_and_ends_on_the_mask_and_peaks_in_between() -> None:
    tle = sample()
    found = passes(tle, MUNICH, tle.epoch, tle.epoch + DAY)
    for p in found:
        at = elevations(tle, MUNICH, np.array([p.aos, p.los, p.tca, p.tca - 1.0, p.tca + 1.0]))
        assert at[:2] == pytest.approx([MUNICH.min_elevation_deg] * 2, abs=1e-3)
        assert at[2] == pytest.approx(p.max_elevation_deg, abs=1e-6)
        assert at[2] >= max(at[3], at[4])
        assert 60.0 < p.duration_s < 15 * 60.0  # a 500 km orbit crosses the sky in minutes
        assert p.aos < p.tca < p.los and p.contains(p.aos) and not p.contains(p.los)
        between = np.linspace(p.aos + 0.01, p.los - 0.01, 50)
        assert (elevations(tle, MUNICH, between) > MUNICH.min_elevation_deg).all()
    assert all(0 <= p.aos_azimuth_deg < 360 and 0 <= p.los_azimuth_deg < 360 for p in found)


def test_the_sample_gives_munich_four_passes_a_day_or_more_all_week() -> None:
    tle = sample()
    for day in range(7):
        start = tle.epoch + day * DAY
        assert len(inside(passes(tle, MUNICH, start, start + DAY), start, start + DAY)) >= 4


def test_passes_across_the_windows_edges_come_whole() -> None:
    tle = sample()
    first = passes(tle, MUNICH, tle.epoch, tle.epoch + DAY)[1]
    middle = (first.aos + first.los) / 2
    assert same(passes(tle, MUNICH, middle, middle + 60.0), [first])
    # Edges are found to a millisecond, from a grid that depends on the window.
    assert passes(tle, MUNICH, first.los + 0.01, first.los + 60.0) == []
    assert passes(tle, MUNICH, first.aos - 600.0, first.aos - 0.01) == []
    assert same(passes(tle, MUNICH, first.aos - 600.0, first.aos + 0.01), [first])


def same(found: list[Pass], expected: list[Pass]) -> bool:
    """The same passes, found from another sampling grid: times to the searches' tolerance."""
    return len(found) == len(expected) and all(
        abs(a.aos - b.aos) < 2e-3
        and abs(a.los - b.los) < 2e-3
        and abs(a.tca - b.tca) < 0.02
        and abs(a.max_elevation_deg - b.max_elevation_deg) < 1e-4
        for a, b in zip(found, expected, strict=True)
    )


def test_a_station_the_orbit_never_reaches_has_no_pass() -> None:
    tle = sample()  # 53 degrees: never above 10 degrees at 78 north
    assert passes(tle, SVALBARD, tle.epoch, tle.epoch + 2 * DAY) == []
    assert len(passes(SSO_1030, SVALBARD, tle.epoch, tle.epoch + DAY)) >= 10  # polar: every orbit
