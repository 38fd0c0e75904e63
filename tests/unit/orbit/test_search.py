"""The interval search on functions whose intervals are known in closed form: a bump shorter
than the sampling step, one across the window's edges, one with two peaks, one too long."""

from __future__ import annotations

import numpy as np
import pytest

from orbit import OrbitError
from orbit.frames import FloatArray
from orbit.search import EDGE_TOLERANCE_S, Function, excursions


def bumps(*shapes: tuple[float, float, float]) -> Function:
    """Sum of parabolic caps height * (1 - ((t - centre) / half_width)^2), minus 1: positive
    where a cap rises above 1."""

    def f(times: FloatArray) -> FloatArray:
        total = np.zeros_like(times)
        for centre, half_width, height in shapes:
            total += height * np.maximum(0.0, 1.0 - ((times - centre) / half_width) ** 2)
        return total - 1.0

    return f


def edges(centre: float, half_width: float, height: float) -> tuple[float, float]:
    # height * (1 - x^2) = 1  =>  x = sqrt(1 - 1/height)
    reach = half_width * np.sqrt(1.0 - 1.0 / height)
    return centre - reach, centre + reach


def test_a_bump_between_two_samples_is_found_with_exact_edges() -> None:
    # Positive for 4 s only, between samples 50 s apart; its samples are all below zero.
    f = bumps((1025.0, 40.0, 1.0 / (1.0 - 0.05**2)))
    (found,) = excursions(f, 0.0, 3000.0, 50.0, 500.0)
    start, end = edges(1025.0, 40.0, 1.0 / (1.0 - 0.05**2))
    assert found.start == pytest.approx(start, abs=EDGE_TOLERANCE_S)
    assert found.end == pytest.approx(end, abs=EDGE_TOLERANCE_S)
    assert found.peak_time == pytest.approx(1025.0, abs=0.01)


def test_intervals_across_the_window_come_whole_and_others_not_at_all() -> None:
    f = bumps((100.0, 300.0, 2.0), (1500.0, 300.0, 2.0), (2950.0, 300.0, 2.0), (4000.0, 300.0, 2))
    found = excursions(f, 200.0, 3000.0, 60.0, 900.0)
    assert [round(e.peak_time) for e in found] == [100, 1500, 2950]
    for e, centre in zip(found, (100.0, 1500.0, 2950.0), strict=True):
        start, end = edges(centre, 300.0, 2.0)
        assert (e.start, e.end) == pytest.approx((start, end), abs=EDGE_TOLERANCE_S)


def test_two_peaks_of_one_interval_make_one_interval_with_the_higher_peak() -> None:
    f = bumps((1000.0, 400.0, 1.6), (1400.0, 400.0, 1.9))  # never below zero in between
    (found,) = excursions(f, 0.0, 3000.0, 30.0, 900.0)
    assert found.start == pytest.approx(edges(1000.0, 400.0, 1.6)[0], abs=0.01)
    assert found.end == pytest.approx(edges(1400.0, 400.0, 1.9)[1], abs=0.01)
    assert f(np.array([found.peak_time]))[0] == pytest.approx(found.peak_value)
    assert found.peak_value == pytest.approx(float(f(np.linspace(0, 3000, 300001)).max()), abs=1e-6)


def test_an_interval_longer_than_the_padding_is_an_error_not_a_wrong_answer() -> None:
    f = bumps((1500.0, 5000.0, 3.0))
    with pytest.raises(OrbitError, match="an interval lasts longer than the 600 s searched"):
        excursions(f, 1000.0, 2000.0, 50.0, 600.0)


def test_nothing_above_zero_gives_nothing() -> None:
    assert excursions(bumps((500.0, 100.0, 0.9)), 0.0, 1000.0, 20.0, 200.0) == []
    assert excursions(lambda t: -np.ones_like(t), 0.0, 1000.0, 20.0, 200.0) == []
