"""Eclipses against skyfield's `is_sunlit` with the JPL DE421 ephemeris (the Sun's centre
behind a sphere of the Earth's equatorial radius), against the geometry of a cylindrical
shadow, and the shares of sunlight a 500 km orbit must have."""

from __future__ import annotations

import math

import numpy as np
import pytest
from skyfield.api import EarthSatellite
from skyfield.constants import ERAD
from skyfield.searchlib import find_discrete

from orbit import Interval, Orbit, Shadow, ShadowPart, Tle, eclipses, sunlit, sunlit_intervals
from orbit.sun import sun_position_km
from tests.unit.orbit.samples import (
    DAWN_DUSK,
    DAY,
    HIGH_BETA,
    SSO_1030,
    sample,
    skyfield,
    skyfield_time,
    skyfield_times,
    unix_of,
)

SKYFIELDS_SHADOW = Shadow(ShadowPart.CENTRE, ERAD / 1000.0, ERAD / 1000.0)
ORBITS = [
    pytest.param(sample(), id="53deg"),
    pytest.param(SSO_1030, id="SSO-1030"),
    pytest.param(HIGH_BETA, id="high-beta"),
]


def skyfield_eclipses(tle: Tle, start: float, end: float) -> list[Interval]:
    """skyfield's own transitions of is_sunlit, to 10 ms."""
    timescale, ephemeris = skyfield()
    satellite = EarthSatellite(tle.line1, tle.line2, tle.name, timescale)

    def lit(t: object) -> object:
        return satellite.at(t).is_sunlit(ephemeris)

    lit.step_days = 60.0 / DAY  # type: ignore[attr-defined]
    times, states = find_discrete(skyfield_time(start), skyfield_time(end), lit, 0.01 / DAY)
    edges = list(zip(unix_of(times), states, strict=True))
    found, entry = [], None
    for t, now_lit in edges:
        if not now_lit:
            entry = t
        elif entry is not None:
            found.append(Interval(entry, t))
    return found


def whole(found: list[Interval], start: float, end: float) -> list[Interval]:
    return [e for e in found if e.start >= start and e.end <= end]


@pytest.mark.parametrize("tle", ORBITS)
def test_eclipse_edges_agree_with_skyfield_to_half_a_second(tle: Tle) -> None:
    """Same condition as skyfield (the Sun's centre, the same sphere): the difference left is
    our Almanac Sun against DE421, 0.01 degree, about 0.2 s of orbit."""
    start, end = tle.epoch, tle.epoch + DAY
    reference = skyfield_eclipses(tle, start, end)
    ours = whole(eclipses(tle, start, end, SKYFIELDS_SHADOW), start, end)
    assert len(ours) == len(reference) >= 14
    for mine, theirs in zip(ours, reference, strict=True):
        assert mine.start == pytest.approx(theirs.start, abs=0.5)
        assert mine.end == pytest.approx(theirs.end, abs=0.5)


@pytest.mark.parametrize("tle", ORBITS)
def test_the_umbra_lies_inside_skyfields_eclipse_and_the_penumbra_around_it(tle: Tle) -> None:
    """The umbra (the default, WGS-84 inside skyfield's sphere) begins after skyfield's eclipse
    and ends before it. On one ellipsoid, the Sun's disc takes as long to go from its first
    dimming to half hidden as from half to whole: seconds, more when the orbit meets the
    shadow slantwise at a high beta angle."""
    start, end = tle.epoch, tle.epoch + DAY
    umbra = whole(eclipses(tle, start, end), start, end)
    reference = skyfield_eclipses(tle, start, end)
    assert len(umbra) == len(reference)
    for dark, theirs in zip(umbra, reference, strict=True):
        assert 2.0 < dark.start - theirs.start < 40.0 and 2.0 < theirs.end - dark.end < 40.0
    centre = whole(eclipses(tle, start, end, Shadow(ShadowPart.CENTRE)), start, end)
    penumbra = whole(eclipses(tle, start, end, Shadow(ShadowPart.PENUMBRA)), start, end)
    assert len(centre) == len(penumbra) == len(umbra)
    for dim, half, dark in zip(penumbra, centre, umbra, strict=True):
        assert dim.start < half.start < dark.start < dark.end < half.end < dim.end
        for first, second in (
            (half.start - dim.start, dark.start - half.start),
            (half.end - dark.end, dim.end - half.end),
        ):
            assert 3.0 < first < 30.0 and first == pytest.approx(second, rel=0.05)


@pytest.mark.parametrize("tle", ORBITS)
def test_eclipse_lengths_follow_the_cylindrical_shadow_at_their_beta_angle(tle: Tle) -> None:
    """A circular orbit of radius r at beta angle b spends acos(sqrt(h^2 + 2Rh) / (r cos b))
    / pi of its period in a cylindrical shadow of radius R: geometry, not a library."""
    orbit = Orbit(tle)
    sphere = Shadow(ShadowPart.CENTRE, 6378.137, 6378.137)
    for eclipse in eclipses(orbit, tle.epoch, tle.epoch + DAY, sphere)[1:4]:
        middle = (eclipse.start + eclipse.end) / 2
        here, then = orbit.positions_teme(np.array([middle, middle + 1.0]))
        normal = np.cross(here, then) / np.linalg.norm(np.cross(here, then))
        sun = sun_position_km(np.array([middle]))[0]
        beta = math.asin(float(normal @ sun) / float(np.linalg.norm(sun)))
        radius = float(np.linalg.norm(here))
        height = radius - 6378.137
        share = math.acos(math.sqrt(height**2 + 2 * 6378.137 * height) / (radius * math.cos(beta)))
        assert eclipse.duration_s == pytest.approx(share / math.pi * orbit.period_s, rel=0.01)


def test_a_500_km_orbit_is_sunlit_60_to_65_percent_at_a_low_beta_angle() -> None:
    tle = sample()
    start, end = tle.epoch, tle.epoch + DAY
    lit = sum(i.duration_s for i in sunlit_intervals(tle, start, end))
    assert 0.60 < lit / DAY < 0.65
    durations = [e.duration_s for e in whole(eclipses(tle, start, end), start, end)]
    assert all(34 * 60 < d < 37 * 60 for d in durations)  # the longest a 500 km orbit has


def test_a_dawn_dusk_orbit_in_its_season_is_never_in_shadow() -> None:
    start, end = DAWN_DUSK.epoch, DAWN_DUSK.epoch + 2 * DAY
    assert eclipses(DAWN_DUSK, start, end, Shadow(ShadowPart.PENUMBRA)) == []
    assert sunlit_intervals(DAWN_DUSK, start, end) == [Interval(start, end)]
    timescale, ephemeris = skyfield()
    satellite = EarthSatellite(DAWN_DUSK.line1, DAWN_DUSK.line2, "", timescale)
    times = np.arange(start, end, 30.0)
    assert satellite.at(skyfield_times(times)).is_sunlit(ephemeris).all()


def test_sunlit_at_times_and_the_intervals_tell_the_same_story() -> None:
    tle = sample()
    start, end = tle.epoch, tle.epoch + DAY
    dark = eclipses(tle, start, end)
    times = np.random.default_rng(5).uniform(start, end, 2000)
    in_eclipse = np.array([any(e.contains(t) for e in dark) for t in times])
    clear = np.array([min(abs(t - e.start), abs(t - e.end)) > 0.01 for t in times for e in dark])
    clear = clear.reshape(len(times), len(dark)).all(axis=1)  # away from the edges' tolerance
    assert (sunlit(tle, times)[clear] == ~in_eclipse[clear]).all()
    lit = sunlit_intervals(tle, start, end)
    # This day begins and ends in the shadow: the light comes after the first eclipse.
    assert dark[0].start < start and dark[-1].end > end
    assert lit[0].start == dark[0].end and lit[-1].end == dark[-1].start
    assert sum(i.duration_s for i in lit) + sum(
        min(e.end, end) - max(e.start, start) for e in dark
    ) == pytest.approx(DAY, abs=1e-6)
