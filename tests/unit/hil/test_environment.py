"""The bench's orbit environment: sunlight segments from a timeline, and the baseplate's
first-order response to them."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import pytest

from hil.environment import InterfaceModel, InterfaceModelError, sunlight_segments, sunlit_spans
from orbit import OrbitTimeline, parse_station, read_tle

TLE = read_tle(Path(__file__).resolve().parents[3] / "orbit" / "data" / "aipayload-1.tle")
MODEL = InterfaceModel(sunlit_c=30.0, eclipse_c=0.0, time_constant_s=1200.0)


def test_a_step_is_the_exact_exponential_toward_the_target() -> None:
    assert MODEL.after(10.0, 0.0, True) == 10.0
    assert MODEL.after(10.0, 1200.0, True) == pytest.approx(30.0 - 20.0 / math.e)
    assert MODEL.after(10.0, 1e6, False) == pytest.approx(0.0)


def test_the_profile_has_a_breakpoint_at_every_change_and_at_most_a_step_apart() -> None:
    segments = [(0.0, 130.0, True), (130.0, 200.0, False)]
    points = MODEL.profile(segments, 15.0, step_s=60.0)
    times = [t for t, _ in points]
    assert times[0] == 0.0 and 130.0 in times and times[-1] == 200.0
    assert max(b - a for a, b in itertools.pairwise(times)) <= 60.0
    at_change = dict(points)[130.0]
    assert at_change == pytest.approx(MODEL.after(15.0, 130.0, True))
    assert points[-1][1] == pytest.approx(MODEL.after(at_change, 70.0, False))


def test_linear_interpolation_of_the_profile_stays_within_a_hundredth_of_a_degree() -> None:
    points = MODEL.profile([(0.0, 3600.0, True)], 0.0, step_s=60.0)
    worst = max(
        abs((a[1] + b[1]) / 2 - MODEL.after(0.0, (a[0] + b[0]) / 2, True))
        for a, b in itertools.pairwise(points)
    )
    assert worst < 0.01


def test_segments_cover_the_window_end_to_end_and_match_the_timeline() -> None:
    station = parse_station("48.1,11.6,550", 5.0)
    timeline = OrbitTimeline(TLE, station, TLE.epoch)
    start, end = TLE.epoch, TLE.epoch + 3 * TLE.period_s
    segments = sunlight_segments(timeline, start, end)
    assert segments[0][0] == start and segments[-1][1] == end
    assert all(a[1] == b[0] and a[2] != b[2] for a, b in itertools.pairwise(segments))
    for a, b, lit in segments:
        assert timeline.sunlit((a + b) / 2) == lit
    dark = sum(b - a for a, b, lit in segments if not lit)
    clipped = [min(e.end, end) - max(e.start, start) for e in timeline.eclipses(start, end)]
    assert dark == pytest.approx(sum(clipped))
    assert sunlit_spans(segments) == [(a, b) for a, b, lit in segments if lit]


def test_on_the_sample_orbit_the_baseplate_swings_between_about_6_and_28_c() -> None:
    timeline = OrbitTimeline(TLE, parse_station("48.1,11.6"), TLE.epoch)
    segments = sunlight_segments(timeline, TLE.epoch, TLE.epoch + 6 * TLE.period_s)
    points = MODEL.profile(segments, 15.0)
    settled = [c for t, c in points if t > TLE.epoch + 3 * TLE.period_s]
    assert 4.0 < min(settled) < 8.0 and 26.0 < max(settled) < 30.0


@pytest.mark.parametrize("value", [0.0, -1.0, math.inf])
def test_a_time_constant_not_above_zero_or_not_finite_is_refused(value: float) -> None:
    with pytest.raises(InterfaceModelError):
        InterfaceModel(time_constant_s=value)
