"""Orbit predictions as the bench and the planner use them: a day of passes and eclipses for
one satellite over one station (target: well under a second), and OrbitTimeline's questions
(the bench asks several times a second of simulated time, sped up)."""

from __future__ import annotations

import importlib.resources
import time
from collections.abc import Callable

import numpy as np
import pytest

from orbit import Orbit, OrbitTimeline, Station, eclipses, passes, read_tle

STATION = Station(48.1, 11.6, 550.0, 10.0)
DAY = 86400.0


@pytest.fixture(scope="module")
def orbit() -> Orbit:
    with importlib.resources.as_file(
        importlib.resources.files("orbit").joinpath("data/aipayload-1.tle")
    ) as path:
        return Orbit(read_tle(path))


def test_a_day_of_passes_and_eclipses(  # type: ignore[no-untyped-def]
    benchmark, report: Callable[[str, str], None], orbit: Orbit
) -> None:
    start = orbit.tle.epoch

    def day() -> tuple[int, int]:
        return len(passes(orbit, STATION, start, start + DAY)), len(
            eclipses(orbit, start, start + DAY)
        )

    assert day() == (6, 16)
    benchmark.group = "orbit predictions"
    benchmark(day)
    mean = benchmark.stats.stats.mean
    report(
        "orbit", f"a day of passes and eclipses (one satellite, one station): {mean * 1e3:.1f} ms"
    )
    assert mean < 0.5  # loose: the target is well under a second on a busy machine


def test_timeline_questions_per_second(report: Callable[[str, str], None], orbit: Orbit) -> None:
    start = orbit.tle.epoch
    timeline = OrbitTimeline(orbit, STATION, start)
    timeline.passes(start, start + 7 * DAY)  # computed ahead: the questions alone are timed
    times = np.sort(np.random.default_rng(3).uniform(start, start + 7 * DAY, 200_000)).tolist()
    began = time.perf_counter()
    for t in times:
        timeline.link_up(t)
        timeline.sunlit(t)
    elapsed = time.perf_counter() - began
    rate = 2 * len(times) / elapsed
    report("orbit", f"OrbitTimeline link_up/sunlit: {rate / 1e6:.2f} million questions a second")
    assert rate > 100_000
