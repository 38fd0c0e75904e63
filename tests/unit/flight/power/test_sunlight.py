"""Sunlight: a periodic orbit's sunlit and eclipse arcs (phase, speed-up, edges), intervals and
the file the bench writes (read again when it changes, the last good content kept when a new
one is wrong, eclipse before it exists)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from flight.power.sunlight import (
    AlwaysSunlit,
    IntervalSunlight,
    OrbitSunlight,
    Segment,
    SunlightError,
    SunlightFile,
    merged,
    parse_intervals,
    write_intervals,
)

EPOCH = 1_700_000_000.0


def sunlit_seconds(segments: list[Segment]) -> float:
    return sum(end - start for start, end, sunlit in segments if sunlit)


def covers(segments: list[Segment], start: float, end: float) -> bool:
    """The segments tile [start, end] in order, without gaps or overlaps."""
    t = start
    for a, b, _ in segments:
        if a != pytest.approx(t) or not b > a:
            return False
        t = b
    return t == pytest.approx(end)


def test_always_sunlit() -> None:
    sun = AlwaysSunlit()
    assert sun.segments(10.0, 20.0) == [(10.0, 20.0, True)]
    assert sun.segments(20.0, 10.0) == [] and sun.sunlit_at(0.0)


def test_an_orbit_is_sunlit_for_its_fraction_of_each_period_from_its_epoch() -> None:
    sun = OrbitSunlight(5700.0, 0.6, EPOCH)
    assert sun.sunlit_at(EPOCH) and sun.sunlit_at(EPOCH + 3419.0)
    assert not sun.sunlit_at(EPOCH + 3420.0) and not sun.sunlit_at(EPOCH + 5699.0)
    assert sun.sunlit_at(EPOCH + 5700.0)
    segments = sun.segments(EPOCH, EPOCH + 15 * 5700.0)
    assert covers(segments, EPOCH, EPOCH + 15 * 5700.0)
    assert len(segments) == 30  # sunlit, eclipse, fifteen times
    assert sunlit_seconds(segments) == pytest.approx(15 * 3420.0)
    assert [s for *_, s in segments[:4]] == [True, False, True, False]


def test_an_orbit_starts_its_phase_into_a_period_and_runs_at_its_speed_up() -> None:
    # 60 times faster: a 95-minute orbit in 95 s of the payload's clock; starts 3000 s into it.
    sun = OrbitSunlight(5700.0, 0.6, EPOCH, phase_s=3000.0, time_scale=60.0)
    assert sun.sunlit_at(EPOCH) and not sun.sunlit_at(EPOCH + 7.0)  # eclipse at 3420 s: 7 s
    first = sun.segments(EPOCH, EPOCH + 95.0)
    assert first[0] == (EPOCH, pytest.approx(EPOCH + 7.0), True)
    assert sunlit_seconds(first) == pytest.approx(57.0)
    # A window that starts and ends inside arcs is cut at the edges only.
    assert covers(sun.segments(EPOCH + 3.5, EPOCH + 50.25), EPOCH + 3.5, EPOCH + 50.25)


@pytest.mark.parametrize("fraction", [0.0, 1.0])
def test_an_orbit_always_or_never_sunlit(fraction: float) -> None:
    sun = OrbitSunlight(100.0, fraction, EPOCH)
    segments = sun.segments(EPOCH, EPOCH + 1000.0)
    assert covers(segments, EPOCH, EPOCH + 1000.0)
    assert sunlit_seconds(segments) == pytest.approx(1000.0 * fraction)


@pytest.mark.parametrize(
    ("period", "fraction", "scale"), [(0.0, 0.5, 1.0), (100.0, 1.5, 1.0), (100.0, 0.5, 0.0)]
)
def test_an_orbit_that_makes_no_sense_is_refused(
    period: float, fraction: float, scale: float
) -> None:
    with pytest.raises(SunlightError):
        OrbitSunlight(period, fraction, EPOCH, time_scale=scale)


def test_intervals_are_sunlit_and_the_rest_is_eclipse() -> None:
    sun = IntervalSunlight([(30.0, 40.0), (10.0, 20.0), (15.0, 25.0)])
    assert sun.intervals == [(10.0, 25.0), (30.0, 40.0)]  # sorted, overlaps joined
    assert sun.segments(0.0, 50.0) == [
        (0.0, 10.0, False),
        (10.0, 25.0, True),
        (25.0, 30.0, False),
        (30.0, 40.0, True),
        (40.0, 50.0, False),
    ]
    assert sun.segments(12.0, 32.0) == [(12.0, 25.0, True), (25.0, 30.0, False), (30.0, 32.0, True)]
    assert sun.sunlit_at(10.0) and not sun.sunlit_at(25.0)


def test_merged_joins_touching_intervals_and_drops_empty_ones() -> None:
    assert merged([(0.0, 1.0), (1.0, 2.0), (5.0, 5.0)]) == [(0.0, 2.0)]


def test_the_file_is_read_again_when_it_changes(tmp_path: Path) -> None:
    path = tmp_path / "sunlight.txt"
    sun = SunlightFile(path)
    assert not sun.sunlit_at(EPOCH)  # no file yet: eclipse
    write_intervals(path, [(EPOCH, EPOCH + 60.0)])
    assert sun.sunlit_at(EPOCH + 1.0) and not sun.sunlit_at(EPOCH + 61.0)
    write_intervals(path, [(EPOCH + 100.0, EPOCH + 160.0), (EPOCH + 200.0, EPOCH + 260.5)])
    assert not sun.sunlit_at(EPOCH + 1.0)
    assert sunlit_seconds(sun.segments(EPOCH, EPOCH + 300.0)) == pytest.approx(120.5)


def test_a_file_that_cannot_be_parsed_keeps_the_last_good_intervals(tmp_path: Path) -> None:
    path = tmp_path / "sunlight.txt"
    write_intervals(path, [(0.0, 100.0)])
    sun = SunlightFile(path)
    assert sun.sunlit_at(50.0)
    path.write_text("0 100\n200 oops\n")
    os.utime(path, ns=(1, 1))  # a new stamp, whatever the file system's resolution
    assert sun.sunlit_at(50.0) and not sun.sunlit_at(250.0)


def test_parse_skips_comments_and_names_the_bad_line() -> None:
    text = "# the bench\n\n10 20  # first pass\n 30.5 40\n"
    assert parse_intervals(text) == [(10.0, 20.0), (30.5, 40.0)]
    for bad in ("10\n", "10 20 30\n", "20 10\n", "a b\n", "nan 5\n"):
        with pytest.raises(SunlightError, match="line 1"):
            parse_intervals(bad)
