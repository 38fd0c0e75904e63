"""OrbitClock: orbit time compressed onto a bench's clock, both ways."""

from __future__ import annotations

import math

import pytest

from orbit import OrbitClock, OrbitError
from orbit.clock import FLIGHT

CLOCK = OrbitClock(orbit_start=1_796_040_000.0, bench_start=1_700_000_000.0, time_scale=200.0)


def test_the_start_maps_to_the_start_and_orbit_time_runs_k_times_faster() -> None:
    assert CLOCK.to_bench(CLOCK.orbit_start) == CLOCK.bench_start
    # A 94.6-minute orbit flies in 28.4 s of bench time; a 6-minute pass in 1.8 s.
    assert CLOCK.to_bench(CLOCK.orbit_start + 5677.0) == pytest.approx(CLOCK.bench_start + 28.385)
    assert CLOCK.bench_seconds(360.0) == pytest.approx(1.8)
    assert CLOCK.orbit_seconds(1.8) == pytest.approx(360.0)


def test_in_flight_orbit_time_is_the_payloads_time() -> None:
    assert FLIGHT.identity and FLIGHT.to_bench(1_796_040_000.5) == 1_796_040_000.5
    assert not CLOCK.identity and not OrbitClock(0.0, 0.0, 2.0).identity


@pytest.mark.parametrize("orbit_time", [1_796_040_000.0 - 3600, 1_796_040_000.0, 1_796_126_400.5])
def test_the_two_directions_are_inverse(orbit_time: float) -> None:
    # UNIX seconds as floats resolve 0.2 us near 2026; times the scale: 50 us of orbit time.
    assert CLOCK.to_orbit(CLOCK.to_bench(orbit_time)) == pytest.approx(orbit_time, abs=1e-3)


def test_intervals_keep_their_order_and_shrink_by_the_time_scale() -> None:
    orbit = [(CLOCK.orbit_start + 100.0, CLOCK.orbit_start + 700.0)]
    ((start, end),) = CLOCK.to_bench_intervals(orbit)
    assert start == pytest.approx(CLOCK.bench_start + 0.5)
    assert end - start == pytest.approx(3.0)


@pytest.mark.parametrize(
    ("scale", "words"), [(0.0, "above 0"), (-2.0, "above 0"), (math.nan, "finite")]
)
def test_a_time_scale_that_is_not_above_zero_is_refused(scale: float, words: str) -> None:
    with pytest.raises(OrbitError, match=words):
        OrbitClock(0.0, 0.0, scale)


def test_a_start_that_is_not_finite_is_refused() -> None:
    with pytest.raises(OrbitError, match="bench_start must be finite"):
        OrbitClock(0.0, math.inf, 1.0)
