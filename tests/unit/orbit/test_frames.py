"""Times, frames, the station and the Sun, each against code we did not write: sgp4's Julian
dates, skyfield's sidereal time, Earth-fixed positions, WGS-84 stations and look angles, and
the JPL DE421 ephemeris for the Sun."""

from __future__ import annotations

import calendar
import datetime as dt

import numpy as np
import pytest
from sgp4.api import jday
from skyfield.api import wgs84
from skyfield.framelib import itrs
from skyfield.sgp4lib import TEME, EarthSatellite, theta_GMST1982

from orbit import Orbit, Station, StationError, parse_station
from orbit.frames import gmst_rad, julian_dates, look_angles
from orbit.sun import sun_position_km
from tests.unit.orbit.samples import CAPE_TOWN, MUNICH, sample, skyfield, skyfield_times

START = calendar.timegm((2026, 11, 30, 12, 0, 0))


def test_julian_dates_match_sgp4s_jday() -> None:
    times = np.array([0.0, 946728000.0, START + 0.123, START + 86399.999])
    whole, fraction = julian_dates(times)
    for t, w, f in zip(times, whole, fraction, strict=True):
        moment = dt.datetime.fromtimestamp(t, dt.UTC)
        seconds = moment.second + moment.microsecond / 1e6
        ref_whole, ref_fraction = jday(
            moment.year, moment.month, moment.day, moment.hour, moment.minute, seconds
        )
        assert w + f == pytest.approx(ref_whole + ref_fraction, abs=1e-10)
        assert 0.0 <= f < 1.0


def test_sidereal_time_is_skyfields_gmst_1982() -> None:
    times = START + np.linspace(-20 * 365 * 86400.0, 20 * 365 * 86400.0, 501)
    whole, fraction = julian_dates(times)
    theta, _ = theta_GMST1982(whole, fraction)
    difference = np.angle(np.exp(1j * (gmst_rad(times) - theta)))
    assert np.abs(difference).max() < 1e-9


def test_earth_fixed_positions_match_skyfields_itrs() -> None:
    """skyfield goes TEME -> GCRS -> ITRS with UT1 from its tables and polar motion; we turn
    TEME by GMST with UT1 = UTC. They agree to the Earth's turn in |UT1-UTC|, tens of metres."""
    tle = sample()
    timescale, _ = skyfield()
    times = tle.epoch + np.arange(0.0, 86400.0, 600.0)
    satellite = EarthSatellite(tle.line1, tle.line2, tle.name, timescale)
    reference = satellite.at(skyfield_times(times)).frame_xyz(itrs).km.T
    ours = Orbit(tle).positions_ecef(times)
    assert np.linalg.norm(ours - reference, axis=1).max() < 0.1
    # And TEME itself, which both take from sgp4 for the same times: to the millimetre.
    teme = satellite.at(skyfield_times(times)).frame_xyz(TEME).km.T
    assert np.linalg.norm(Orbit(tle).positions_teme(times) - teme, axis=1).max() < 0.05


@pytest.mark.parametrize("station", [MUNICH, CAPE_TOWN, Station(0.0, -75.0, 2800.0)])
def test_station_positions_and_look_angles_match_skyfields_wgs84(station: Station) -> None:
    place = wgs84.latlon(station.latitude_deg, station.longitude_deg, station.altitude_m)
    assert np.allclose(station.horizon.position, place.itrs_xyz.km, atol=1e-6)
    tle = sample()
    timescale, _ = skyfield()
    times = tle.epoch + np.arange(0.0, 86400.0, 97.0)
    satellite = EarthSatellite(tle.line1, tle.line2, tle.name, timescale)
    alt, az, distance = (satellite - place).at(skyfield_times(times)).altaz()
    azimuth, elevation, ours = look_angles(Orbit(tle).positions_ecef(times), station.horizon)
    assert np.abs(elevation - alt.degrees).max() < 0.01
    assert np.abs(ours - distance.km).max() < 0.1
    visible = alt.degrees > 0  # the azimuth of a point far below the horizon matters to no one
    azimuth_error = np.angle(np.exp(1j * np.radians(azimuth - az.degrees)))[visible]
    assert np.degrees(np.abs(azimuth_error)).max() < 0.01


def test_the_suns_direction_is_within_a_hundredth_of_a_degree_of_de421() -> None:
    """The Almanac's formula against JPL's ephemeris in TEME axes, 2020 to 2040."""
    _timescale, ephemeris = skyfield()
    times = np.arange(
        calendar.timegm((2020, 1, 1, 0, 0, 0)), calendar.timegm((2040, 1, 1, 0, 0, 0)), 86400 * 3.7
    )
    geometric = (ephemeris["sun"] - ephemeris["earth"]).at(skyfield_times(times))
    reference = geometric.frame_xyz(TEME).km.T
    ours = sun_position_km(times)
    cosine = np.einsum("ij,ij->i", ours, reference) / (
        np.linalg.norm(ours, axis=1) * np.linalg.norm(reference, axis=1)
    )
    assert np.degrees(np.arccos(np.clip(cosine, -1.0, 1.0))).max() < 0.015
    ratio = np.linalg.norm(ours, axis=1) / np.linalg.norm(reference, axis=1)
    assert np.abs(ratio - 1.0).max() < 2e-4


def test_stations_parse_and_refuse_in_one_sentence() -> None:
    assert parse_station("48.1,11.6") == Station(48.1, 11.6, 0.0, 10.0)
    assert parse_station(" -33.9 , 18.4 , 30 ", 5.0, "Cape Town") == CAPE_TOWN
    for text, message in (
        (
            "48.1",
            "expected the station as LAT,LON or LAT,LON,ALT_M (such as 48.1,11.6,550), "
            "found '48.1'",
        ),
        ("1,2,3,4", "found '1,2,3,4'"),
        (
            "north,11.6",
            "expected the station's latitude as a number in the station "
            "'north,11.6', found 'north'",
        ),
        ("91,0", "expected the station's latitude from -90 to 90 degrees, found 91"),
        ("0,400", "expected the station's longitude from -180 to 360 degrees, found 400"),
        ("0,0,12000", "expected the station's altitude from -500 to 9000 metres, found 12000"),
        ("0,nan", "expected the station's longitude from -180 to 360 degrees, found nan"),
    ):
        with pytest.raises(StationError) as caught:
            parse_station(text)
        assert message in str(caught.value)
    with pytest.raises(StationError, match="minimum elevation from -5 to 89 degrees, found 90"):
        Station(0.0, 0.0, 0.0, 90.0)
    assert MUNICH.describe() == "Munich: 48.1000N 11.6000E 550 m, minimum elevation 10 deg"
    assert Station(-1, 359).describe().startswith("1.0000S 1.0000W")
