"""The bench's battery: the energy balance against hand-worked numbers, the clamps at full and
empty, the readings it gives, and the source driven by the payload's busy time over sunlight
and eclipse at a speed-up (an orbit integrated in one read equals the same orbit read often)."""

from __future__ import annotations

import math

import pytest

from flight.power.battery_model import BatteryModel, PowerModelParameters, SimulatedPower
from flight.power.readings import Quantity
from flight.power.sunlight import AlwaysSunlit, IntervalSunlight, OrbitSunlight
from tests.fake_clock import FakeClock

EPOCH = 1_700_000_000.0
# 60 W of array, 10 W of bus and 8 W of idle payload; 40 W of compute at full duty.
P = PowerModelParameters(initial_soc_pct=50.0)


def model(parameters: PowerModelParameters = P) -> BatteryModel:
    return BatteryModel(parameters, capacity_wh=100.0, compute_w=40.0)


def test_sunlit_and_idle_it_charges_at_the_array_less_the_loads() -> None:
    m = model()
    assert m.net_w(True, 0.0) == pytest.approx(42.0)
    m.step(3600.0, True, 0.0)  # an hour: 42 Wh into 100
    assert m.soc_pct == pytest.approx(92.0)


def test_in_eclipse_at_full_duty_it_drains_the_loads_and_the_compute() -> None:
    m = model()
    m.step(1800.0, False, 1.0)  # half an hour at 58 W: 29 Wh
    assert m.soc_pct == pytest.approx(21.0)
    m.step(600.0, True, 0.5)  # 60 - 38 = 22 W for 10 min
    assert m.soc_pct == pytest.approx(21.0 + 22.0 / 6.0)


def test_it_stays_between_empty_and_full() -> None:
    m = model()
    m.step(10 * 3600.0, True, 0.0)
    assert m.soc_pct == 100.0
    assert m.battery_w(True, 0.0) == 0.0  # full: the shunt takes the excess
    assert m.battery_w(False, 0.0) == pytest.approx(-18.0)
    m.step(10 * 3600.0, False, 1.0)
    assert m.soc_pct == 0.0 and m.battery_w(False, 1.0) == 0.0


def test_voltage_is_linear_in_the_state_of_charge() -> None:
    m = model(PowerModelParameters(initial_soc_pct=25.0))
    assert m.voltage_v == pytest.approx(6.0 + 2.4 * 0.25)


def test_a_duty_out_of_range_is_refused() -> None:
    with pytest.raises(ValueError, match="duty"):
        model().step(1.0, True, 1.5)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"initial_soc_pct": 101.0},
        {"solar_w": -1.0},
        {"voltage_full_v": 5.0},
        {"sunlight": "moon"},
        {"sunlight": "file"},
        {"sunlit_fraction": 1.2},
        {"time_scale": 0.0},
        {"bus_load_w": math.nan},
    ],
)
def test_parameters_out_of_their_domain_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        PowerModelParameters(**kwargs)  # type: ignore[arg-type]


class Busy:
    """The gate's busy seconds, moved by the test."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def __call__(self) -> float:
        return self.seconds


def test_the_source_integrates_the_duty_measured_between_reads_at_its_speed_up() -> None:
    clock, busy = FakeClock(EPOCH), Busy()
    m = model(PowerModelParameters(initial_soc_pct=50.0, time_scale=60.0))
    source = SimulatedPower(m, AlwaysSunlit(), busy, clock)
    first = source.read()  # starts the clock: nothing integrated
    assert first.soc_pct == pytest.approx(50.0) and first.sunlit is True
    clock.advance(60.0)  # an hour of model time
    busy.seconds += 30.0  # half of it computing
    reading = source.read()
    # 60 - 18 - 0.5 * 40 = 22 W for an hour.
    assert reading.soc_pct == pytest.approx(72.0)
    assert reading.payload_w == pytest.approx(28.0)
    assert reading.solar_w == 60.0
    assert reading.battery_w == pytest.approx(22.0)
    assert reading.battery_v == pytest.approx(6.0 + 2.4 * 0.72)
    assert set(source.quantities()) == set(Quantity)


def test_an_orbit_read_once_gives_what_it_gives_read_every_second() -> None:
    parameters = PowerModelParameters(initial_soc_pct=20.0, time_scale=100.0)
    orbit = OrbitSunlight(5700.0, 0.6, EPOCH, phase_s=1000.0, time_scale=100.0)
    ends = []
    for step in (1.0, 57.0 * 3):  # real seconds between reads; three orbits in all
        clock, busy = FakeClock(EPOCH), Busy()
        source = SimulatedPower(model(parameters), orbit, busy, clock)
        source.read()
        while clock.now < EPOCH + 171.0 - 1e-9:
            clock.advance(step)
            busy.seconds += step * 0.25
            source.read()
        ends.append(source.model.energy_wh)
    # Sunlit 3420 s of each 5700: 3 * (0.6 * 60 - 18 - 0.25 * 40) * 5700 / 3600 Wh
    assert ends[0] == pytest.approx(ends[1])
    assert ends[1] == pytest.approx(20.0 + 3 * 8.0 * 5700.0 / 3600.0)  # never full or empty


def test_eclipse_reads_no_solar_power_and_a_discharge() -> None:
    clock, busy = FakeClock(EPOCH), Busy()
    source = SimulatedPower(model(), IntervalSunlight([(EPOCH + 10.0, EPOCH + 20.0)]), busy, clock)
    reading = source.read()
    assert reading.sunlit is False and reading.solar_w == 0.0
    assert reading.battery_a is not None and reading.battery_a < 0
    clock.advance(15.0)
    assert source.read().sunlit is True


def test_a_clock_that_stands_still_or_steps_back_integrates_nothing() -> None:
    clock, busy = FakeClock(EPOCH), Busy()
    source = SimulatedPower(model(), AlwaysSunlit(), busy, clock)
    source.read()
    busy.seconds = 5.0
    assert source.read().soc_pct == pytest.approx(50.0)
    clock.advance(-10.0)
    assert source.read().soc_pct == pytest.approx(50.0)
