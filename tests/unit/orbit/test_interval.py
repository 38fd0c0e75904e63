"""complement: what of a window lies outside a list of spans (sunlight between eclipses, free
time between a plan's jobs)."""

from __future__ import annotations

from orbit import Interval, complement


def spans(*pairs: tuple[float, float]) -> list[Interval]:
    return [Interval(a, b) for a, b in pairs]


def test_the_gaps_between_spans_cut_to_the_window() -> None:
    # Spans reaching past both ends, two that overlap, one after the window.
    given = spans((-5, 2), (4, 6), (5, 7), (9, 10), (12, 20))
    assert complement(given, 0, 11) == spans((2, 4), (7, 9), (10, 11))


def test_no_spans_leave_the_window_and_a_covering_one_leaves_nothing() -> None:
    assert complement([], 3, 8) == spans((3, 8))
    assert complement(spans((0, 10)), 3, 8) == []
    assert complement(spans((3, 5), (5, 8)), 3, 8) == []  # touching edges leave no gap
