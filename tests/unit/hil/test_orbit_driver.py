"""The orbit driver: the link switched at each AOS and LOS as bench time passes them, the
payload's sunlight and baseplate files written ahead in bench time, every change told."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from flight.power.sunlight import SunlightFile
from flight.thermal.baseplate import BaseplateFile
from hil.orbit_driver import (
    BASEPLATE_FILE,
    SUNLIGHT_FILE,
    OrbitDriver,
    OrbitEventKind,
    OrbitFlight,
    idle_interval,
    orbit_payload_config,
)
from orbit import OrbitTimeline, parse_station, read_tle

TLE = read_tle(Path(__file__).resolve().parents[3] / "orbit" / "data" / "aipayload-1.tle")
STATION = parse_station("48.1,11.6,550", 5.0)
SCALE = 200.0
BENCH_START = 1_700_000_000.0


class FakeLink:
    def __init__(self) -> None:
        self.available = True
        self.changes: list[bool] = []

    def set_available(self, available: bool) -> None:
        self.available = available
        self.changes.append(available)


def fly(tmp_path: Path, start: float, orbits: float) -> tuple[OrbitDriver, FakeLink, list[bool]]:
    """Fly `orbits` from orbit time `start`, stepping as the driver asks; the link's state at
    the middle of each pass and between passes is checked against the timeline on the way."""
    link = FakeLink()
    driver = OrbitDriver(OrbitFlight(TLE, STATION, SCALE, start), link, tmp_path)
    clock = driver.begin(BENCH_START)
    end = clock.to_bench(start + orbits * TLE.period_s)
    now, seen = BENCH_START, []
    while now < end:
        wake = driver.advance(now)
        seen.append(link.available == driver.timeline.link_up(clock.to_orbit(now)))
        now = max(wake, now + 1e-3)
    return driver, link, seen


def test_the_link_follows_the_passes_and_every_change_is_told_in_order(tmp_path: Path) -> None:
    start = TLE.epoch + 11 * 3600  # a little before the day's passes over Munich
    driver, link, seen = fly(tmp_path, start, 4)
    assert all(seen)
    end = start + 4 * TLE.period_s
    timeline = OrbitTimeline(TLE, STATION, start)
    expected = timeline.passes(start, end)
    aos = [e for e in driver.events if e.kind is OrbitEventKind.AOS]
    los = [e for e in driver.events if e.kind is OrbitEventKind.LOS]
    assert [e.orbit_time for e in aos] == pytest.approx([p.aos for p in expected])
    assert [e.orbit_time for e in los] == pytest.approx([p.los for p in expected if p.los < end])
    assert [e.number for e in aos] == list(range(1, len(expected) + 1))
    assert link.changes[0] is False and link.changes[1:3] == [True, False]
    clock = driver.orbit_clock
    assert clock is not None
    first = aos[0]
    assert first.bench_time == pytest.approx(clock.to_bench(expected[0].aos))
    assert "pass 1: AOS" in first.describe(SCALE) and "s on the bench" in first.describe(SCALE)
    times = [e.orbit_time for e in driver.events]
    assert times == sorted(times)
    told = [e.eclipse for e in driver.events if e.kind is OrbitEventKind.ECLIPSE]
    # Each once, the one under way at the start too (to the timelines' millisecond).
    expected_dark = timeline.eclipses(start, end)
    assert [e.start for e in told if e] == pytest.approx([e.start for e in expected_dark], abs=1e-3)


def test_a_start_inside_a_pass_and_an_eclipse_tells_both_as_under_way(tmp_path: Path) -> None:
    timeline = OrbitTimeline(TLE, STATION, TLE.epoch)
    dark = timeline.eclipses(TLE.epoch, TLE.epoch + 86400)
    inside = next(p for p in timeline.passes(TLE.epoch, TLE.epoch + 86400)
                  if any(e.contains(p.aos + 60) for e in dark))  # fmt: skip
    link = FakeLink()
    driver = OrbitDriver(OrbitFlight(TLE, STATION, SCALE, inside.aos + 60), link, tmp_path)
    driver.begin(BENCH_START)
    kinds = [e.kind for e in driver.events]
    assert OrbitEventKind.AOS in kinds and OrbitEventKind.ECLIPSE in kinds
    assert link.available
    assert all(e.bench_time == BENCH_START for e in driver.events)


def test_the_files_say_what_the_orbit_does_in_bench_time(tmp_path: Path) -> None:
    start = TLE.epoch + 11 * 3600
    driver, _, _ = fly(tmp_path, start, 1)
    clock = driver.orbit_clock
    assert clock is not None
    sunlight = SunlightFile(tmp_path / SUNLIGHT_FILE)
    baseplate = BaseplateFile(tmp_path / BASEPLATE_FILE, fallback_c=-99.0)
    for k in range(200):
        orbit_time = start + k * TLE.period_s / 50
        bench = clock.to_bench(orbit_time)
        assert sunlight.sunlit_at(bench) == driver.timeline.sunlit(orbit_time)
        assert 0.0 <= baseplate.at(bench) <= 30.0
    # Warmer at the end of a sunlit arc than at the end of an eclipse.
    eclipse = driver.timeline.eclipses(start, start + 2 * TLE.period_s)[-1]
    assert (
        baseplate.at(clock.to_bench(eclipse.start)) > baseplate.at(clock.to_bench(eclipse.end)) + 10
    )


def test_the_files_are_written_again_before_their_horizon_runs_out(tmp_path: Path) -> None:
    start = TLE.epoch
    driver, _, _ = fly(tmp_path, start, 10)  # 10 orbits: past the first refresh (half a day)
    clock = driver.orbit_clock
    assert clock is not None
    sunlight = SunlightFile(tmp_path / SUNLIGHT_FILE)
    late = start + 30 * 3600.0  # beyond the first writing's day
    assert sunlight.sunlit_at(clock.to_bench(late)) == driver.timeline.sunlit(late)


def test_the_payload_configuration_scales_the_models_and_the_idle_frame(tmp_path: Path) -> None:
    text = orbit_payload_config(200.0, 921600)
    assert 'sunlight_file = "orbit-sunlight.txt"' in text
    assert 'baseplate_file = "orbit-baseplate.txt"' in text
    assert text.count("time_scale = 200.0") == 2
    assert "unknown_run_s = 0.05" in text  # 10 s of orbit time
    assert idle_interval(921600) == pytest.approx(0.139, abs=0.001)
    assert idle_interval(115200) == 1.0  # the ICD's at the default rate
    # The battery's charge at the start, when given, in the one [power_model] table.
    assert "initial_soc_pct" not in tomllib.loads(text)["power_model"]
    given = tomllib.loads(orbit_payload_config(200.0, 921600, initial_soc_pct=55))
    assert given["power_model"]["initial_soc_pct"] == 55.0


def test_advance_before_begin_is_refused(tmp_path: Path) -> None:
    driver = OrbitDriver(OrbitFlight(TLE, STATION, SCALE, TLE.epoch), FakeLink(), tmp_path)
    with pytest.raises(RuntimeError, match="begin"):
        driver.advance(BENCH_START)
