"""OrbitTimeline, as the bench and the planner will ask it: the same passes and eclipses as the
one-shot functions whatever the chunk size, link and light at any time as the geometry says,
and the next change of each."""

from __future__ import annotations

import numpy as np
import pytest

from orbit import (
    Change,
    OrbitError,
    OrbitTimeline,
    Pass,
    eclipses,
    elevations,
    passes,
    sunlit,
)
from tests.unit.orbit.samples import DAWN_DUSK, DAY, MUNICH, SVALBARD, sample


def test_chunked_answers_are_the_one_shot_answers_without_duplicates() -> None:
    tle = sample()
    start, end = tle.epoch + 1234.5, tle.epoch + 2 * DAY
    timeline = OrbitTimeline(tle, MUNICH, start, chunk_s=3 * 3600.0)
    chunked = timeline.passes(start, end)
    whole = passes(tle, MUNICH, start, end)
    assert len(chunked) == len(whole) >= 10
    for a, b in zip(chunked, whole, strict=True):
        assert abs(a.aos - b.aos) < 2e-3 and abs(a.los - b.los) < 2e-3
    dark_chunked, dark_whole = timeline.eclipses(start, end), eclipses(tle, start, end)
    assert len(dark_chunked) == len(dark_whole) >= 30
    for a, b in zip(dark_chunked, dark_whole, strict=True):
        assert abs(a.start - b.start) < 2e-3 and abs(a.end - b.end) < 2e-3


def test_link_and_light_at_any_time_are_what_the_geometry_says() -> None:
    tle = sample()
    timeline = OrbitTimeline(tle, MUNICH, tle.epoch)
    # Random times, and times a second inside and outside every edge.
    rng = np.random.default_rng(11)
    found = timeline.passes(tle.epoch, tle.epoch + DAY)
    dark = timeline.eclipses(tle.epoch, tle.epoch + DAY)
    near = [t + d for p in found for t in (p.aos, p.los) for d in (-1.0, 1.0)]
    near += [t + d for e in dark for t in (e.start, e.end) for d in (-1.0, 1.0)]
    times = np.sort(np.concatenate([rng.uniform(tle.epoch, tle.epoch + DAY, 3000), near]))
    times = times[times >= tle.epoch]
    up = elevations(tle, MUNICH, times) >= MUNICH.min_elevation_deg
    assert [timeline.link_up(float(t)) for t in times] == up.tolist()
    assert up.sum() > 40
    lit = sunlit(tle, times)
    assert [timeline.sunlit(float(t)) for t in times] == lit.tolist()


def test_next_pass_and_next_changes() -> None:
    tle = sample()
    timeline = OrbitTimeline(tle, MUNICH, tle.epoch)
    first, second = timeline.passes(tle.epoch, tle.epoch + DAY)[:2]
    assert timeline.next_pass(tle.epoch) == first
    assert timeline.next_pass(first.aos) == second  # the one under way is not "next"
    assert timeline.pass_at(first.tca) == first and timeline.pass_at(first.los) is None
    assert timeline.next_link_change(first.aos - 10.0) == Change(first.aos, on=True)
    assert timeline.next_link_change(first.tca) == Change(first.los, on=False)
    assert timeline.next_link_change(first.los) == Change(second.aos, on=True)
    eclipse = timeline.next_eclipse(tle.epoch)
    assert eclipse is not None and eclipse.start > tle.epoch
    assert timeline.next_sunlight_change(eclipse.start - 1.0) == Change(eclipse.start, on=False)
    assert timeline.next_sunlight_change(eclipse.start) == Change(eclipse.end, on=True)
    assert not timeline.sunlit(eclipse.start) and timeline.sunlit(eclipse.end)
    assert timeline.period_s == pytest.approx(94.62 * 60, abs=1.0)


def test_far_ahead_the_timeline_computes_forward_as_it_is_asked() -> None:
    tle = sample()
    timeline = OrbitTimeline(tle, MUNICH, tle.epoch)
    later = tle.epoch + 5.5 * DAY
    upcoming = timeline.next_pass(later)
    assert isinstance(upcoming, Pass) and upcoming.aos > later
    expected = passes(tle, MUNICH, later, later + DAY)
    assert abs(upcoming.aos - next(p.aos for p in expected if p.aos > later)) < 2e-3


def test_never_and_before_the_start() -> None:
    tle = sample()
    nowhere = OrbitTimeline(tle, SVALBARD, tle.epoch, horizon_s=2 * DAY)
    assert nowhere.next_pass(tle.epoch) is None and nowhere.next_link_change(tle.epoch) is None
    assert not nowhere.link_up(tle.epoch + DAY)
    always = OrbitTimeline(DAWN_DUSK, MUNICH, DAWN_DUSK.epoch, horizon_s=2 * DAY)
    assert always.sunlit(DAWN_DUSK.epoch + 3600.0)
    assert always.next_sunlight_change(DAWN_DUSK.epoch) is None
    with pytest.raises(OrbitError, match="before the timeline's start"):
        always.sunlit(DAWN_DUSK.epoch - 1.0)
    with pytest.raises(ValueError, match="must be positive"):
        OrbitTimeline(tle, MUNICH, tle.epoch, chunk_s=0.0)
