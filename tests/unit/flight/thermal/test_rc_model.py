"""The bench's RC thermal model: equilibria against the analytic steady state, the duty that
settles at a limit, steps exact for any length (against fine Euler integrations), sensible time
constants, and the simulated source driven by a fake clock and a fake busy counter (duty,
time scale, seeded noise, range check); parameters out of their domain are refused by name."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from flight.thermal.rc_model import (
    RcThermalModel,
    SimulatedThermal,
    ThermalModelParameters,
)
from flight.thermal.readings import Reading, Sensor, SensorFault, ThermalSource

QUIET = ThermalModelParameters(noise_c=0.0)


def hottest(values: dict[Sensor, float]) -> float:
    return max(values.values())


def derivatives(p: ThermalModelParameters, junction: float, board: float, duty: float) -> tuple:
    """The model's equations, written out independently of the implementation."""
    power = p.idle_power_w + duty * p.busy_power_w
    to_board = (junction - board) / p.junction_to_board_k_w
    to_base = (board - p.baseplate_c) / p.board_to_baseplate_k_w
    return (power - to_board) / p.junction_capacity_j_k, (to_board - to_base) / p.board_capacity_j_k


def euler(
    p: ThermalModelParameters, junction: float, board: float, duty: float, dt: float, n: int
) -> tuple[float, float]:
    """`n` explicit Euler steps of `dt`."""
    for _ in range(n):
        dj, db = derivatives(p, junction, board, duty)
        junction, board = junction + dt * dj, board + dt * db
    return junction, board


def euler_power(
    p: ThermalModelParameters, junction: float, board: float, duty: float, dt: float, n: int
) -> tuple[float, float]:
    """The same `n` Euler steps, for horizons too long to loop over: with a constant input each
    step is the affine map x -> x + dt (A x + u), whose n-th power is taken by squaring."""
    cj, cb = p.junction_capacity_j_k, p.board_capacity_j_k
    rjb, rba = p.junction_to_board_k_w, p.board_to_baseplate_k_w
    a = np.array(
        [[-1 / (cj * rjb), 1 / (cj * rjb)], [1 / (cb * rjb), -1 / (cb * rjb) - 1 / (cb * rba)]]
    )
    power = p.idle_power_w + duty * p.busy_power_w
    u = np.array([power / cj, p.baseplate_c / (cb * rba)])
    fixed = np.linalg.solve(a, -u)  # the map's fixed point
    step = np.linalg.matrix_power(np.eye(2) + dt * a, n)
    junction, board = fixed + step @ (np.array([junction, board]) - fixed)
    return float(junction), float(board)


class FakeClock:
    """Real time and the payload's busy-seconds counter, moved by the test."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.busy = 5.0

    def monotonic(self) -> float:
        return self.now

    def busy_seconds(self) -> float:
        return self.busy

    def advance(self, real_s: float, duty: float) -> None:
        self.now += real_s
        self.busy += real_s * duty


def values(readings: dict[Sensor, Reading]) -> dict[Sensor, float]:
    assert all(reading.ok for reading in readings.values())
    return {sensor: reading.celsius for sensor, reading in readings.items()}  # type: ignore[misc]


# --- equilibria -------------------------------------------------------------------------------


def test_starts_at_the_idle_steady_state() -> None:
    model = RcThermalModel(QUIET)
    # 10 W idle: the board 20 + 10 * 0.6, the junction 0.3 K/W above it.
    assert (model.junction_c, model.board_c) == pytest.approx((29.0, 26.0))
    assert (model.junction_c, model.board_c) == model.steady_state(0.0)


def test_documented_operating_points() -> None:
    assert RcThermalModel(QUIET).steady_state(1.0) == pytest.approx((65.0, 50.0))
    hot = RcThermalModel(replace(QUIET, baseplate_c=50.0))
    assert hot.steady_state(1.0) == pytest.approx((95.0, 80.0))
    assert hot.steady_state(1.0)[0] > 85.0  # over CRITICAL: the governor must act


@pytest.mark.parametrize("duty", [0.0, 0.25, 0.6, 1.0])
@pytest.mark.parametrize("baseplate_c", [-20.0, 20.0, 50.0])
def test_steady_state_is_the_equilibrium(duty: float, baseplate_c: float) -> None:
    p = replace(QUIET, baseplate_c=baseplate_c, idle_power_w=7.0, busy_power_w=33.0)
    model = RcThermalModel(p)
    junction, board = model.steady_state(duty)
    power = 7.0 + 33.0 * duty
    assert board == pytest.approx(baseplate_c + power * p.board_to_baseplate_k_w)
    assert junction == pytest.approx(board + power * p.junction_to_board_k_w)
    assert derivatives(p, junction, board, duty) == pytest.approx((0.0, 0.0), abs=1e-12)
    model.step(10 * 3600.0, duty)  # ~95 slow time constants
    assert (model.junction_c, model.board_c) == pytest.approx((junction, board), abs=1e-9)


def test_temperatures_apply_the_zone_offsets() -> None:
    model = RcThermalModel(replace(QUIET, cpu_offset_c=-1.5, gpu_offset_c=0.5))
    model.step(123.0, 0.7)
    assert model.temperatures() == {
        Sensor.CPU: model.junction_c - 1.5,
        Sensor.GPU: model.junction_c + 0.5,
        Sensor.BOARD: model.board_c,
    }


# --- duty limit -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("baseplate_c", "limit_c"),
    [(20.0, 45.0), (20.0, 60.0), (35.0, 70.0), (50.0, 70.0), (50.0, 78.0), (50.0, 85.0)],
)
def test_duty_limit_settles_the_hottest_sensor_at_the_limit(
    baseplate_c: float, limit_c: float
) -> None:
    model = RcThermalModel(replace(QUIET, baseplate_c=baseplate_c, gpu_offset_c=1.0))
    duty = model.duty_limit(limit_c)
    assert 0.0 < duty < 1.0
    model.step(10 * 3600.0, duty)
    assert hottest(model.temperatures()) == pytest.approx(limit_c, abs=1e-9)
    assert model.temperatures()[Sensor.GPU] == hottest(model.temperatures())


def test_duty_limit_clamps() -> None:
    model = RcThermalModel(QUIET)
    assert model.duty_limit(70.0) == 1.0  # 65 C at full duty: no limit needed
    assert model.duty_limit(65.0) == pytest.approx(1.0)
    assert model.duty_limit(29.0) == pytest.approx(0.0)
    assert model.duty_limit(25.0) == 0.0  # idle alone is above the limit
    hot = RcThermalModel(replace(QUIET, baseplate_c=50.0))
    assert hot.duty_limit(85.0) == pytest.approx((85.0 - 50.0 - 10 * 0.9) / (40 * 0.9))


def test_duty_limit_counts_the_board_when_it_reads_hottest() -> None:
    # Zones reading well under the junction, a junction close to its plate: the board is hottest.
    p = replace(QUIET, cpu_offset_c=-10.0, gpu_offset_c=-8.0, junction_to_board_k_w=0.05)
    model = RcThermalModel(p)
    duty = model.duty_limit(40.0)
    model.step(10 * 3600.0, duty)
    assert model.temperatures()[Sensor.BOARD] == pytest.approx(40.0, abs=1e-9)
    assert hottest(model.temperatures()) == model.temperatures()[Sensor.BOARD]


def test_duty_limit_without_busy_power() -> None:
    model = RcThermalModel(replace(QUIET, busy_power_w=0.0))
    assert model.duty_limit(30.0) == 1.0  # duty changes nothing and idle is under the limit
    assert model.duty_limit(28.0) == 0.0


# --- steps ------------------------------------------------------------------------------------


def test_one_big_step_is_many_small_ones() -> None:
    for total, pieces in [(1.0, 1000), (600.0, 600), (3600.0, 3600), (86400.0, 24)]:
        big, small = RcThermalModel(QUIET), RcThermalModel(QUIET)
        big.step(total, 0.8)
        for _ in range(pieces):
            small.step(total / pieces, 0.8)
        assert big.junction_c == pytest.approx(small.junction_c, rel=1e-12)
        assert big.board_c == pytest.approx(small.board_c, rel=1e-12)


def test_step_matches_a_fine_euler_integration() -> None:
    # 20 s from idle at full duty: the junction's fast transient, 1e6 Euler steps of 20 us.
    model = RcThermalModel(QUIET)
    expected = euler(QUIET, model.junction_c, model.board_c, 1.0, 2e-5, 1_000_000)
    model.step(20.0, 1.0)
    assert model.junction_c > 35.0  # a transient well under way, not a state left at rest
    assert (model.junction_c, model.board_c) == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("total_s", [600.0, 3600.0])
def test_long_steps_match_fine_euler(total_s: float) -> None:
    # From a hot state down to idle, one step against 100 us Euler steps (millions of them).
    model = RcThermalModel(QUIET)
    model.step(1800.0, 1.0)
    start = (model.junction_c, model.board_c)
    expected = euler_power(QUIET, *start, 0.0, 1e-4, round(total_s / 1e-4))
    model.step(total_s, 0.0)
    assert (model.junction_c, model.board_c) == pytest.approx(expected, rel=1e-6)
    # The check has teeth: the state moved far more than the tolerance.
    assert start[1] - model.board_c > 5.0


def test_duty_changes_between_steps_match_euler() -> None:
    model = RcThermalModel(QUIET)
    junction, board = model.junction_c, model.board_c
    for duty, seconds in [(1.0, 5.0), (0.2, 3.0), (0.0, 4.0), (0.6, 8.0)]:
        model.step(seconds, duty)
        junction, board = euler(QUIET, junction, board, duty, 1e-5, round(seconds / 1e-5))
    assert (model.junction_c, model.board_c) == pytest.approx((junction, board), rel=1e-6)


def test_zero_step_changes_nothing() -> None:
    model = RcThermalModel(QUIET)
    model.step(50.0, 1.0)
    before = (model.junction_c, model.board_c)
    model.step(0.0, 0.3)
    assert (model.junction_c, model.board_c) == before


@pytest.mark.parametrize(
    ("dt_s", "duty", "name"),
    [
        (-1.0, 0.5, "dt_s"),
        (math.nan, 0.5, "dt_s"),
        (math.inf, 0.5, "dt_s"),
        (1.0, -0.1, "duty"),
        (1.0, 1.01, "duty"),
        (1.0, math.nan, "duty"),
    ],
)
def test_step_refuses_bad_arguments(dt_s: float, duty: float, name: str) -> None:
    model = RcThermalModel(QUIET)
    with pytest.raises(ValueError, match=name):
        model.step(dt_s, duty)
    assert (model.junction_c, model.board_c) == model.steady_state(0.0)


def test_time_constants() -> None:
    model = RcThermalModel(QUIET)
    fast, slow = model.time_constants()
    assert 2.0 < fast < 10.0  # the junction reacts within ~10 s
    assert 60.0 < slow < 600.0  # the board within ~10 min
    # Seen from the states, after a switch from idle to full duty: the junction's lead over the
    # board (the fast mode) is mostly there after 10 s, while the board has barely moved;
    # the board has covered most of its way after 10 minutes.
    junction, board = model.steady_state(1.0)
    model.step(10.0, 1.0)
    assert model.junction_c - model.board_c > 0.6 * (junction - board)
    assert model.board_c - 26.0 < 0.05 * (board - 26.0)
    model.step(590.0, 1.0)
    assert model.board_c - 26.0 > 0.75 * (board - 26.0)


# --- the simulated source ---------------------------------------------------------------------


def simulated(clock: FakeClock, parameters: ThermalModelParameters = QUIET) -> SimulatedThermal:
    return SimulatedThermal(parameters, clock.busy_seconds, clock.monotonic)


def test_is_a_thermal_source_with_three_sensors() -> None:
    clock = FakeClock()
    source: ThermalSource = simulated(clock, replace(QUIET, time_scale=30.0))
    assert source.sensors() == (Sensor.CPU, Sensor.GPU, Sensor.BOARD)
    assert source.time_scale == 30.0
    assert set(source.read()) == set(source.sensors())


def test_first_read_only_starts_the_clock() -> None:
    clock = FakeClock()
    source = simulated(clock)
    clock.advance(100.0, 1.0)  # before the first read: not counted
    assert values(source.read()) == RcThermalModel(QUIET).temperatures()
    assert (source.model.junction_c, source.model.board_c) == (29.0, 26.0)


@pytest.mark.parametrize("duty", [0.0, 0.3, 1.0])
@pytest.mark.parametrize("time_scale", [1.0, 60.0])
def test_reads_advance_the_model_by_the_measured_duty_and_scaled_time(
    duty: float, time_scale: float
) -> None:
    parameters = replace(QUIET, time_scale=time_scale)
    clock = FakeClock()
    source = simulated(clock, parameters)
    reference = RcThermalModel(parameters)
    source.read()
    for real_s in [0.5, 1.0, 2.0, 0.25]:
        clock.advance(real_s, duty)
        readings = values(source.read())
        reference.step(real_s * time_scale, duty)
        assert readings == pytest.approx(reference.temperatures(), rel=1e-12)


def test_full_rate_busy_counter_heats_to_the_duty_one_steady_state_then_idle_cools() -> None:
    clock = FakeClock()
    source = simulated(clock, replace(QUIET, time_scale=100.0))
    source.read()
    for _ in range(400):  # 400 real s, 40 000 model s
        clock.advance(1.0, 1.0)
        readings = values(source.read())
    assert readings[Sensor.GPU] == pytest.approx(65.0, abs=1e-6)
    assert readings[Sensor.CPU] == pytest.approx(63.5, abs=1e-6)
    assert readings[Sensor.BOARD] == pytest.approx(50.0, abs=1e-6)
    clock.advance(10.0, 0.0)  # 1000 model s idle: cooling under way
    cooling = values(source.read())
    assert 29.0 < cooling[Sensor.GPU] < 40.0
    for _ in range(400):
        clock.advance(1.0, 0.0)
        readings = values(source.read())
    assert readings[Sensor.GPU] == pytest.approx(29.0, abs=1e-6)


def test_duty_is_clamped() -> None:
    clock = FakeClock()
    source = simulated(clock)
    reference = RcThermalModel(QUIET)
    source.read()
    clock.advance(2.0, 2.5)  # more busy time than real time: duty 1
    reference.step(2.0, 1.0)
    assert values(source.read()) == pytest.approx(reference.temperatures(), rel=1e-12)
    clock.advance(3.0, -1.0)  # a counter going backwards: duty 0
    reference.step(3.0, 0.0)
    assert values(source.read()) == pytest.approx(reference.temperatures(), rel=1e-12)


def test_busy_time_read_at_the_same_instant_is_kept_for_the_next_interval() -> None:
    clock = FakeClock()
    source = simulated(clock)
    reference = RcThermalModel(QUIET)
    source.read()
    clock.advance(1.0, 0.5)
    reference.step(1.0, 0.5)
    source.read()
    clock.busy += 1.0  # busy time, no real time yet
    assert values(source.read()) == pytest.approx(reference.temperatures(), rel=1e-12)
    clock.advance(2.0, 0.5)  # 1 + 1 busy seconds over 2 s: duty 1
    reference.step(2.0, 1.0)
    assert values(source.read()) == pytest.approx(reference.temperatures(), rel=1e-12)


def test_a_broken_busy_counter_counts_as_full_duty_without_raising() -> None:
    clock = FakeClock()
    source = simulated(clock)
    reference = RcThermalModel(QUIET)
    source.read()
    clock.advance(4.0, 0.0)
    clock.busy = math.inf
    reference.step(4.0, 1.0)
    assert values(source.read()) == pytest.approx(reference.temperatures(), rel=1e-12)


def test_noise_is_seeded() -> None:
    def series(seed: int) -> list[dict[Sensor, float]]:
        clock = FakeClock()
        source = simulated(clock, replace(QUIET, noise_c=0.1, seed=seed))
        out = []
        for _ in range(20):
            out.append(values(source.read()))
            clock.advance(1.0, 0.5)
        return out

    assert series(7) == series(7)
    assert series(7) != series(8)


def test_noise_has_the_configured_deviation() -> None:
    clock = FakeClock()
    source = simulated(clock, replace(QUIET, noise_c=0.1, seed=3))
    truth = source.model.temperatures()  # the clock never moves: the model stays at idle
    errors = np.array(
        [
            [r[s] - truth[s] for s in source.sensors()]
            for r in (values(source.read()) for _ in range(4000))
        ]
    )
    assert np.abs(errors.mean(axis=0)).max() < 0.01
    assert errors.std(axis=0) == pytest.approx([0.1, 0.1, 0.1], rel=0.05)
    # Independent sensors: the noise is not one offset shared by all three.
    assert abs(np.corrcoef(errors.T)[0, 1]) < 0.1


def test_implausible_temperatures_are_faults_not_exceptions() -> None:
    clock = FakeClock()
    source = simulated(clock, replace(QUIET, baseplate_c=200.0))
    readings = source.read()
    assert set(readings) == {Sensor.CPU, Sensor.GPU, Sensor.BOARD}
    for sensor, reading in readings.items():
        assert reading.sensor == sensor
        assert not reading.ok
        assert reading.fault == SensorFault.OUT_OF_RANGE


# --- parameters -------------------------------------------------------------------------------


def test_defaults_and_boundaries_are_accepted() -> None:
    assert ThermalModelParameters().time_scale == 1.0
    ThermalModelParameters(idle_power_w=0.0, busy_power_w=0.0, noise_c=0.0, baseplate_c=-40.0)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("junction_capacity_j_k", 0.0),
        ("junction_capacity_j_k", -30.0),
        ("board_capacity_j_k", 0.0),
        ("junction_to_board_k_w", 0.0),
        ("board_to_baseplate_k_w", -0.6),
        ("idle_power_w", -1.0),
        ("busy_power_w", -40.0),
        ("noise_c", -0.1),
        ("time_scale", 0.0),
        ("time_scale", -2.0),
        ("baseplate_c", math.nan),
        ("board_capacity_j_k", math.inf),
        ("cpu_offset_c", math.nan),
        ("gpu_offset_c", "hot"),
        ("seed", -1),
        ("seed", 1.5),
    ],
)
def test_parameters_out_of_their_domain_are_refused_by_name(name: str, value: object) -> None:
    with pytest.raises(ValueError, match=name):
        ThermalModelParameters(**{name: value})  # type: ignore[arg-type]
