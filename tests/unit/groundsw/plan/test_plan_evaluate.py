"""The simulated day against numbers worked out by hand: the battery across sunlight and
eclipse, a job's compute and the levels' slower duty, the queue's order, the budget's holds and
the energy a held job waits for, onboard deadlines, and the results' way down."""

from __future__ import annotations

import pytest

from groundsw.plan.evaluate import Fate, Release, evaluate
from groundsw.plan.model import LinkModel, PowerModel, ThermalLimit
from groundsw.plan.onboard import Hold, energy_drop_pct
from tests.unit.groundsw.plan.plan_samples import (
    FULL_DUTY,
    HOUR,
    NO_MARGIN,
    T0,
    job,
    made_up_sky,
    settings,
)


def wh_to_pct(wh: float, power: PowerModel) -> float:
    return 100.0 * wh / power.capacity_wh


def test_the_battery_fills_sheds_and_drains_in_an_eclipse() -> None:
    power = PowerModel(initial_soc_pct=100.0)
    sky = made_up_sky([], [(1.0, 1.5)], hours=3.0)
    ev = evaluate([], sky, power, FULL_DUTY, NO_MARGIN, settings(3.0))
    # Idle in eclipse: bus 10 W and payload 8 W for half an hour, 9 Wh of 80.
    assert ev.min_soc_pct == pytest.approx(100.0 - wh_to_pct(9.0, power))
    assert ev.min_soc_at == pytest.approx(T0 + 1.5 * HOUR)
    assert ev.soc_at(T0 + 1.25 * HOUR) == pytest.approx(100.0 - wh_to_pct(4.5, power))
    # Then the array's 60 W less the 18 W of loads charges it back in 9/42 h, and it stays full.
    refilled = T0 + 1.5 * HOUR + 9.0 / 42.0 * HOUR
    assert ev.soc_at(refilled) == pytest.approx(100.0)
    assert ev.soc_at(T0 + 2.9 * HOUR) == pytest.approx(100.0)
    assert ev.floor_s == 0.0 and ev.held_s == 0.0


def test_a_job_in_eclipse_slows_below_the_slow_level() -> None:
    power = PowerModel(initial_soc_pct=80.0)
    sky = made_up_sky([], [(0.0, 2.0)], hours=2.0)
    ev = evaluate([Release(job("j", 1800.0), T0)], sky, power, FULL_DUTY, NO_MARGIN, settings(2))
    (o,) = ev.outcomes
    # 58 W (18 W of loads and 40 W of compute) from 64 Wh to the slow level's 40 Wh...
    fast_s = (64.0 - 40.0) / 58.0 * HOUR
    # ... then the rest of the compute at half duty, 38 W.
    slow_s = (1800.0 - fast_s) / 0.5
    assert o.started == T0
    assert o.finished == pytest.approx(T0 + fast_s + slow_s)
    left_wh = 40.0 - 38.0 * slow_s / HOUR
    assert ev.soc_at(o.finished) == pytest.approx(wh_to_pct(left_wh, power))
    assert o.fate is Fate.ON_BOARD  # no pass to take it down


def test_the_thermal_duty_spreads_the_compute() -> None:
    sky = made_up_sky([], [], hours=1.0)
    power = PowerModel(initial_soc_pct=100.0)
    ev = evaluate(
        [Release(job("j", 600.0), T0)], sky, power, ThermalLimit(0.25), NO_MARGIN, settings(1)
    )
    assert ev.outcomes[0].finished == pytest.approx(T0 + 2400.0)
    # In sunlight at a quarter duty: 60 - 18 - 10 W charges; it was full and stays full.
    assert ev.min_soc_pct == pytest.approx(100.0)


def test_the_queue_runs_by_priority_then_first_released() -> None:
    sky = made_up_sky([], [], hours=2.0)
    power = PowerModel(initial_soc_pct=100.0)
    releases = [
        Release(job("low", 100.0, priority=0), T0),
        Release(job("high-first", 100.0, priority=5), T0),
        Release(job("high-second", 100.0, priority=5), T0 + 1.0),
        Release(job("highest-late", 100.0, priority=9), T0 + 150.0),
    ]
    ev = evaluate(releases, sky, power, FULL_DUTY, NO_MARGIN, settings(2))
    starts = {o.job.name: o.started for o in ev.outcomes}
    assert starts == {
        "high-first": T0,
        "high-second": T0 + 100.0,
        "highest-late": T0 + 200.0,  # released while high-second computed: next, not last
        "low": T0 + 300.0,
    }


def test_a_job_waits_for_the_energy_it_needs_above_the_floor() -> None:
    power = PowerModel(initial_soc_pct=22.0)
    sky = made_up_sky([], [(0.0, 0.1)], hours=2.0)
    urgent = job("urgent", 600.0, priority=200)  # above the hold priority: LOW does not hold it
    ev = evaluate([Release(urgent, T0)], sky, power, FULL_DUTY, NO_MARGIN, settings(2))
    (o,) = ev.outcomes
    # In eclipse the idle loads take it from 22 % to 19.75 % (at the floor from 20 %); in
    # sunlight 42 W charges it until it is above the floor by the job's own energy.
    at_dawn = 22.0 - wh_to_pct(18.0 * 0.1, power)
    need = power.floor_soc_pct + energy_drop_pct(600.0, 0.0, power)
    start = T0 + 0.1 * HOUR + (need - at_dawn) / 100.0 * 80.0 / 42.0 * HOUR
    assert o.started == pytest.approx(start)
    assert o.held_s == pytest.approx(start - T0)
    assert o.holds == {Hold.ENERGY, Hold.FLOOR}
    below_from = T0 + (22.0 - 20.0) / 100.0 * 80.0 / 18.0 * HOUR
    above_from = T0 + 0.1 * HOUR + (20.0 - at_dawn) / 100.0 * 80.0 / 42.0 * HOUR
    assert ev.floor_s == pytest.approx(above_from - below_from)
    assert ev.min_soc_pct == pytest.approx(at_dawn)


def test_low_priority_waits_out_the_low_level_and_the_eclipse_rule() -> None:
    power = PowerModel(initial_soc_pct=34.0, eclipse_priority=100)
    sky = made_up_sky([], [(0.0, 0.5)], hours=3.0)
    ev = evaluate(
        [Release(job("routine", 60.0, priority=10), T0)], sky, power, FULL_DUTY, NO_MARGIN,
        settings(3),
    )  # fmt: skip
    (o,) = ev.outcomes
    # Held in eclipse (priority 10 < 100) and at LOW (34 % < 35 %); in sunlight it runs once
    # the charge is back above the hold level by the hysteresis, 37 %.
    at_dawn = 34.0 - wh_to_pct(18.0 * 0.5, power)
    start = T0 + 0.5 * HOUR + (37.0 - at_dawn) / 100.0 * 80.0 / 42.0 * HOUR
    assert o.started == pytest.approx(start)
    assert o.holds == {Hold.ECLIPSE, Hold.LOW}


def test_a_job_is_timed_out_at_its_onboard_deadline_queued_or_running() -> None:
    sky = made_up_sky([], [(0.0, 1.0)], hours=1.0)
    power = PowerModel(initial_soc_pct=100.0)
    releases = [
        Release(job("long", 600.0), T0, deadline_s=100.0),
        Release(job("behind", 60.0), T0, deadline_s=50.0),
    ]
    ev = evaluate(releases, sky, power, FULL_DUTY, NO_MARGIN, settings(1))
    long, behind = ev.outcomes
    assert (long.started, long.timed_out, long.fate) == (T0, T0 + 100.0, Fate.TIMED_OUT)
    assert (behind.started, behind.timed_out) == (None, T0 + 50.0)
    # Compute only for the 100 s it ran: 58 W for 100 s, then 18 W for the rest of the hour.
    used_wh = 58.0 * 100.0 / HOUR + 18.0 * 3500.0 / HOUR
    assert ev.curve[-1][1] == pytest.approx(100.0 - wh_to_pct(used_wh, power))
    assert ev.timed_out == 2 and ev.by_deadline == 0


def test_results_go_down_most_urgent_first_and_resume_in_the_next_pass() -> None:
    sky = made_up_sky([(1.0, 1.0 + 120.0 / HOUR), (2.0, 2.0 + 120.0 / HOUR)], [], hours=3.0)
    link = LinkModel(baud=115200, result_overhead_s=60.0, pass_margin_s=10.0)
    power = PowerModel(initial_soc_pct=100.0)
    releases = [
        Release(job("later", 10.0, deadline_h=2.5), T0),
        Release(job("sooner", 10.0, deadline_h=1.5), T0 + 0.5 * HOUR),
    ]
    ev = evaluate(releases, sky, power, FULL_DUTY, link, settings(3))
    later, sooner = ev.outcomes
    # The pass is usable from AOS + 10 s to LOS - 10 s: 100 s. The more urgent result goes
    # first (60 s); the other takes the remaining 40 s and its last 20 s in the next pass.
    assert (sooner.downlinked, sooner.pass_index) == (pytest.approx(T0 + HOUR + 70.0), 0)
    assert (later.downlinked, later.pass_index) == (pytest.approx(T0 + 2 * HOUR + 30.0), 1)
    assert ev.by_deadline == 2 and ev.on_ground == 2


def test_the_downlink_takes_the_line_time_of_the_octets() -> None:
    from groundsw.transfer import downlink_seconds

    sky = made_up_sky([(1.0, 2.0)], [], hours=3.0)
    power = PowerModel(initial_soc_pct=100.0)
    octets = 1_000_000
    ev = evaluate(
        [Release(job("big", 10.0, octets=octets), T0)], sky, power, FULL_DUTY, NO_MARGIN,
        settings(3),
    )  # fmt: skip
    expected = T0 + HOUR + downlink_seconds(octets, 115200)
    assert ev.outcomes[0].downlinked == pytest.approx(expected)
    # A megabyte at 115200 baud is 87 s of octets; the coded frames add about a sixth.
    assert 95.0 < expected - T0 - HOUR < 105.0


def test_the_time_scale_turns_the_payloads_seconds_into_the_orbits() -> None:
    sky = made_up_sky([], [], hours=2.0)
    power = PowerModel(initial_soc_pct=100.0, reading_lag_s=0.0)
    ev = evaluate(
        [Release(job("j", 60.0), T0, deadline_s=1000.0)], sky, power, FULL_DUTY, NO_MARGIN,
        settings(2, time_scale=10.0),
    )  # fmt: skip
    (o,) = ev.outcomes
    # 60 s of compute on a bench ten times faster is 600 s of the orbit; the onboard deadline
    # of 1000 payload seconds, 10000 s of it.
    assert o.finished == pytest.approx(T0 + 600.0)
    assert o.timed_out is None
