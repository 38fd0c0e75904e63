"""The thermal governor: levels with hysteresis at every boundary (one step and several at once),
failed and unused sensors, the PI duty cycle and its clamps, threshold validation, and a closed
loop on the bench's RC model that must settle at the throttle threshold."""

from __future__ import annotations

import itertools
import math
from collections.abc import Collection

import pytest

from flight.thermal.governor import Decision, Gains, Governor, Level, ThresholdError, Thresholds
from flight.thermal.rc_model import RcThermalModel, ThermalModelParameters
from flight.thermal.readings import Reading, Sensor, SensorFault, checked

ALL = frozenset(Sensor)
T = Thresholds()  # 70 / 78 / 85 C, 3 C of hysteresis
POLL_S = 0.5


def readings(cpu: float = 40.0, gpu: float = 40.0, board: float = 40.0) -> dict[Sensor, Reading]:
    return {
        Sensor.CPU: Reading(Sensor.CPU, cpu),
        Sensor.GPU: Reading(Sensor.GPU, gpu),
        Sensor.BOARD: Reading(Sensor.BOARD, board),
    }


def failed(sensor: Sensor, fault: SensorFault = SensorFault.UNREADABLE) -> Reading:
    return Reading(sensor, None, fault, f"{sensor.name} unreadable")


def at(
    governor: Governor, celsius: float, used: Collection[Sensor] = ALL, dt_s: float = POLL_S
) -> Decision:
    """One update with the GPU (the hottest) at `celsius`."""
    return governor.update(readings(gpu=celsius), dt_s, used)


def governor_at(level: Level) -> Governor:
    """A governor brought to `level` by a reading at its threshold."""
    governor = Governor()
    if level is not Level.NOMINAL:
        assert at(governor, T.start_of(level)).level is level
    return governor


# --- levels ------------------------------------------------------------------------------------


@pytest.mark.parametrize("level", [Level.THROTTLED, Level.PAUSED, Level.CRITICAL])
def test_a_level_is_entered_at_its_threshold_and_not_just_below(level: Level) -> None:
    below = Level(level - 1)
    threshold = T.start_of(level)
    governor = governor_at(below)
    just_below = at(governor, threshold - 0.01)
    assert just_below.level is below
    assert not just_below.changed
    entered = at(governor, threshold)
    assert entered.level is level
    assert entered.previous is below
    assert entered.changed


@pytest.mark.parametrize("level", [Level.THROTTLED, Level.PAUSED, Level.CRITICAL])
def test_a_level_is_kept_until_the_hysteresis_below_its_threshold(level: Level) -> None:
    threshold = T.start_of(level)
    governor = governor_at(level)
    # Below the threshold, but not yet the hysteresis below it: the level holds.
    for celsius in (threshold - 0.01, threshold - T.hysteresis_c / 2, threshold - 2.99):
        decision = at(governor, celsius)
        assert decision.level is level, celsius
        assert not decision.changed
    left = at(governor, threshold - T.hysteresis_c - 0.01)
    assert left.level is Level(level - 1)
    assert left.previous is level


def test_nominal_jumps_to_critical_in_one_update() -> None:
    governor = Governor()
    decision = at(governor, 90.0)
    assert (decision.previous, decision.level) == (Level.NOMINAL, Level.CRITICAL)
    assert decision.held
    assert decision.duty == 0.0


def test_nominal_jumps_to_paused_over_throttled() -> None:
    decision = at(Governor(), T.pause_c + 1.0)
    assert (decision.previous, decision.level) == (Level.NOMINAL, Level.PAUSED)


def test_critical_falls_to_nominal_in_one_update_when_cold() -> None:
    governor = governor_at(Level.CRITICAL)
    decision = at(governor, 40.0)
    assert (decision.previous, decision.level) == (Level.CRITICAL, Level.NOMINAL)
    assert decision.duty == 1.0


def test_critical_falls_only_as_far_as_the_hysteresis_allows() -> None:
    # 76 C: below CRITICAL's hysteresis (82) and PAUSED's start, but not PAUSED's hysteresis (75).
    governor = governor_at(Level.CRITICAL)
    assert at(governor, 76.0).level is Level.PAUSED
    # 68 C: below PAUSED's hysteresis (75), not THROTTLED's (67).
    governor = governor_at(Level.CRITICAL)
    assert at(governor, 68.0).level is Level.THROTTLED


def test_the_level_follows_the_hottest_sensor_in_use() -> None:
    governor = Governor()
    decision = governor.update(readings(cpu=71.0, gpu=60.0, board=50.0), POLL_S, ALL)
    assert decision.level is Level.THROTTLED
    assert (decision.sensor, decision.temperature) == (Sensor.CPU, 71.0)
    decision = governor.update(readings(cpu=60.0, gpu=65.0, board=79.0), POLL_S, ALL)
    assert decision.level is Level.PAUSED
    assert (decision.sensor, decision.temperature) == (Sensor.BOARD, 79.0)


def test_unused_sensors_are_ignored() -> None:
    governor = Governor()
    used = {Sensor.CPU, Sensor.GPU}
    decision = governor.update(readings(cpu=50.0, gpu=55.0, board=99.0), POLL_S, used)
    assert decision.level is Level.NOMINAL
    assert (decision.sensor, decision.temperature) == (Sensor.GPU, 55.0)


# --- failed sensors ------------------------------------------------------------------------------


def test_a_failed_sensor_counts_as_at_the_pause_threshold() -> None:
    governor = Governor()
    values = readings(cpu=50.0, gpu=50.0)
    values[Sensor.BOARD] = failed(Sensor.BOARD, SensorFault.MISSING)
    decision = governor.update(values, POLL_S, ALL)
    assert decision.level is Level.PAUSED
    assert decision.held
    assert decision.duty == 0.0
    assert (decision.sensor, decision.temperature) == (Sensor.BOARD, T.pause_c)
    assert decision.faults == {Sensor.BOARD}


def test_a_failed_sensor_does_not_hide_a_hotter_one() -> None:
    values = readings(cpu=88.0)
    values[Sensor.BOARD] = failed(Sensor.BOARD)
    decision = Governor().update(values, POLL_S, ALL)
    assert decision.level is Level.CRITICAL
    assert (decision.sensor, decision.temperature) == (Sensor.CPU, 88.0)


def test_failed_and_recovered_are_reported_once_per_transition() -> None:
    governor = Governor()
    broken = readings()
    broken[Sensor.GPU] = failed(Sensor.GPU, SensorFault.OUT_OF_RANGE)
    first = governor.update(broken, POLL_S, ALL)
    assert first.failed == (broken[Sensor.GPU],)
    assert first.recovered == ()
    for _ in range(3):
        again = governor.update(broken, POLL_S, ALL)
        assert again.failed == ()
        assert again.recovered == ()
        assert again.faults == {Sensor.GPU}
        assert again.level is Level.PAUSED
    good = readings(gpu=45.0)
    back = governor.update(good, POLL_S, ALL)
    assert back.failed == ()
    assert back.recovered == (good[Sensor.GPU],)
    assert back.faults == frozenset()
    assert back.level is Level.NOMINAL
    assert governor.update(good, POLL_S, ALL).recovered == ()
    # A second failure of the same sensor is a new transition.
    assert governor.update(broken, POLL_S, ALL).failed == (broken[Sensor.GPU],)


def test_an_unused_failed_sensor_is_reported_but_does_not_pause() -> None:
    governor = Governor()
    values = readings(cpu=50.0, gpu=52.0)
    values[Sensor.BOARD] = failed(Sensor.BOARD)
    decision = governor.update(values, POLL_S, {Sensor.CPU, Sensor.GPU})
    assert decision.level is Level.NOMINAL
    assert decision.failed == (values[Sensor.BOARD],)
    assert decision.faults == {Sensor.BOARD}


def test_an_out_of_range_value_is_a_failure() -> None:
    values = readings(cpu=50.0, gpu=50.0)
    values[Sensor.BOARD] = checked(Sensor.BOARD, 1e6, "zone 3")
    decision = Governor().update(values, POLL_S, ALL)
    assert decision.level is Level.PAUSED
    assert [r.fault for r in decision.failed] == [SensorFault.OUT_OF_RANGE]


def test_no_sensor_in_use_pauses() -> None:
    decision = Governor().update(readings(cpu=30.0, gpu=30.0, board=30.0), POLL_S, ())
    assert decision.level is Level.PAUSED
    assert decision.temperature == T.pause_c


def test_a_used_sensor_the_payload_does_not_have_pauses() -> None:
    # Only BOARD in use, on a board without a board sensor: nothing to go by.
    values = readings()
    del values[Sensor.BOARD]
    decision = Governor().update(values, POLL_S, {Sensor.BOARD})
    assert decision.level is Level.PAUSED
    assert (decision.sensor, decision.temperature) == (Sensor.BOARD, T.pause_c)


# --- duty ----------------------------------------------------------------------------------------


def test_the_duty_is_one_at_nominal() -> None:
    governor = Governor()
    for celsius in (20.0, 50.0, 69.9):
        decision = at(governor, celsius)
        assert decision.duty == 1.0
        assert governor.duty == 1.0


def test_the_duty_starts_at_one_on_entering_throttled() -> None:
    decision = at(Governor(), 72.0)
    assert decision.level is Level.THROTTLED
    assert decision.duty == 1.0


def test_the_pi_lowers_the_duty_above_the_throttle_threshold() -> None:
    governor = Governor()
    duties = [at(governor, 72.0).duty for _ in range(10)]
    assert all(later < earlier for earlier, later in itertools.pairwise(duties))
    # At a constant error only the integral acts: ki * error * dt per update.
    step = Gains().ki * 2.0 * POLL_S
    assert duties[1] == pytest.approx(1.0 - step)
    assert duties[-1] == pytest.approx(1.0 - 9 * step)


def test_the_pi_raises_the_duty_below_the_throttle_threshold() -> None:
    governor = Governor()
    for _ in range(200):
        at(governor, 74.0)
    low = governor.duty
    assert low < 0.5
    # 69 C: still THROTTLED (above 67 C), now under the threshold by 1 C.
    duties = [at(governor, 69.0).duty for _ in range(10)]
    assert duties[0] > low
    assert all(later > earlier for earlier, later in itertools.pairwise(duties))
    gains = Gains()
    # Proportional kick of the error's change (-4 -> +1 C), then the integral.
    assert duties[0] == pytest.approx(low + gains.kp * 5.0 + gains.ki * 1.0 * POLL_S)


def test_the_duty_is_clamped_below_at_min_duty() -> None:
    governor = Governor()
    for _ in range(10_000):
        decision = at(governor, 77.0)
    assert decision.level is Level.THROTTLED
    assert decision.duty == Gains().min_duty


def test_the_duty_is_clamped_above_at_one_and_does_not_wind_up() -> None:
    governor = Governor()
    at(governor, 71.0)
    for _ in range(10_000):
        decision = at(governor, 68.0)  # THROTTLED (above 67 C), 2 C under the threshold
    assert decision.level is Level.THROTTLED
    assert decision.duty == 1.0
    # No wind-up: one update above the threshold lowers the duty at once.
    assert at(governor, 71.0).duty < 1.0


def test_the_gains_set_the_minimum_duty() -> None:
    governor = Governor(gains=Gains(min_duty=0.25))
    for _ in range(10_000):
        decision = at(governor, 77.0)
    assert decision.duty == 0.25


def test_the_duty_is_zero_while_held_but_the_pi_keeps_running() -> None:
    governor = Governor()
    at(governor, 72.0)
    before = governor.duty
    for _ in range(5):
        decision = at(governor, 80.0)
        assert decision.level is Level.PAUSED
        assert decision.held
        assert decision.duty == 0.0
    # The controller ran on the paused readings: it resumes lower than it paused.
    assert governor.duty < before
    resumed = at(governor, 74.0)
    assert resumed.level is Level.THROTTLED
    assert resumed.duty == governor.duty
    assert 0.0 < resumed.duty < before


def test_back_at_nominal_the_duty_is_one_again() -> None:
    governor = Governor()
    for _ in range(100):
        at(governor, 74.0)
    assert governor.duty < 1.0
    assert at(governor, 60.0).duty == 1.0
    assert at(governor, 71.0).duty == 1.0  # a new stay in THROTTLED starts at full duty


def test_a_negative_interval_does_not_integrate() -> None:
    governor = Governor()
    at(governor, 72.0)
    before = governor.duty
    assert at(governor, 72.0, dt_s=-5.0).duty == before


# --- thresholds -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("throttle", "pause", "critical"),
    [
        (78.0, 78.0, 85.0),
        (80.0, 78.0, 85.0),
        (70.0, 85.0, 85.0),
        (70.0, 86.0, 85.0),
        (90.0, 80.0, 70.0),
        (math.nan, 78.0, 85.0),
    ],
)
def test_thresholds_must_rise(throttle: float, pause: float, critical: float) -> None:
    with pytest.raises(ThresholdError, match="thresholds must rise"):
        Thresholds(throttle, pause, critical)


@pytest.mark.parametrize("hysteresis", [0.0, -1.0, math.nan])
def test_the_hysteresis_must_be_positive(hysteresis: float) -> None:
    with pytest.raises(ThresholdError, match="hysteresis"):
        Thresholds(hysteresis_c=hysteresis)


def test_threshold_errors_are_value_errors() -> None:
    assert issubclass(ThresholdError, ValueError)


def test_start_of_each_level() -> None:
    t = Thresholds(60.0, 65.0, 90.0, 1.0)
    assert t.start_of(Level.NOMINAL) == -math.inf
    assert [t.start_of(level) for level in list(Level)[1:]] == [60.0, 65.0, 90.0]


def test_the_governor_uses_its_thresholds() -> None:
    governor = Governor(Thresholds(50.0, 60.0, 70.0, 2.0))
    assert at(governor, 50.0).level is Level.THROTTLED
    assert at(governor, 48.5).level is Level.THROTTLED
    assert at(governor, 47.9).level is Level.NOMINAL
    assert at(governor, 70.0).level is Level.CRITICAL


# --- closed loop ----------------------------------------------------------------------------------


def test_closed_loop_on_the_rc_model_settles_at_the_throttle_threshold() -> None:
    # A hot baseplate: flat out the junction would settle near 95 C.
    model = RcThermalModel(ThermalModelParameters(baseplate_c=50.0))
    governor = Governor()
    duty = 1.0
    hottest: list[float] = []
    duties: list[float] = []
    levels: set[Level] = set()
    for _ in range(int(2 * 3600 / POLL_S)):
        model.step(POLL_S, duty)
        values = {s: checked(s, c, "model") for s, c in model.temperatures().items()}
        decision = governor.update(values, POLL_S, ALL)
        duty = decision.duty
        levels.add(decision.level)
        hottest.append(max(model.temperatures().values()))
        duties.append(duty)
    assert Level.PAUSED not in levels
    assert Level.CRITICAL not in levels
    assert Level.THROTTLED in levels
    last_10_min = slice(-int(600 / POLL_S), None)
    settled = hottest[last_10_min]
    assert min(settled) >= T.throttle_c - 1.0
    assert max(settled) <= T.throttle_c + 1.0
    limit = model.duty_limit(T.throttle_c)
    assert 0.1 < limit < 0.9  # the limit binds: a real test of the controller
    mean_duty = sum(duties[last_10_min]) / len(duties[last_10_min])
    assert mean_duty == pytest.approx(limit, rel=0.10)
