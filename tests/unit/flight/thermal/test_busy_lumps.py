"""The bench's thermal and battery models count all the compute when the busy time arrives in
lumps (a worker's heartbeat, every half second) and they read more often than that, as they do
at a high time scale: what full duty cannot hold in one step goes into the next ones."""

from __future__ import annotations

import math

import pytest

from flight.power.battery_model import BatteryModel, PowerModelParameters, SimulatedPower
from flight.power.sunlight import AlwaysSunlit
from flight.thermal.duty import DutyMeter, carried_busy
from flight.thermal.rc_model import SimulatedThermal, ThermalModelParameters


def test_carried_busy_keeps_what_a_step_could_not_hold() -> None:
    assert carried_busy(10.0, 10.5, 1.0, 0.1) == pytest.approx(10.1)  # 0.4 s carried
    assert carried_busy(10.0, 10.05, 0.5, 0.1) == pytest.approx(10.05)  # all of it held
    assert carried_busy(10.0, 9.0, 0.0, 0.1) == 9.0  # a counter that went back: as it is
    assert carried_busy(10.0, float("inf"), 1.0, 0.1) == float("inf")


def test_the_meter_gives_the_duty_since_the_last_read() -> None:
    busy = [0.0]
    meter = DutyMeter(lambda: busy[0])
    assert meter.advance(10.0) is None  # the first read starts the clock
    busy[0] = 0.5
    assert meter.advance(11.0) == (10.0, 0.5)
    busy[0] = 0.8
    assert meter.advance(11.0) is None  # no time passed: the busy time waits for the next
    assert meter.advance(10.5) is None  # nor when the clock went back
    assert meter.advance(12.0) == (11.0, pytest.approx(0.3))
    busy[0] = math.nan
    assert meter.advance(13.0) == (12.0, 1.0)  # a broken counter: full duty


class Lumps:
    """Real time moving in steps of `step_s`; the busy counter jumping by half a second at
    every heartbeat while compute runs at full duty for `busy_s`."""

    def __init__(self, busy_s: float, step_s: float = 0.02) -> None:
        self.now = 1000.0
        self.step_s = step_s
        self.busy_s = busy_s
        self.reported = 0.0

    def busy(self) -> float:
        return self.reported

    def tick(self) -> None:
        self.now += self.step_s
        elapsed = self.now - 1000.0
        if elapsed <= self.busy_s + 1e-9 and round(elapsed / 0.5, 6).is_integer():
            self.reported = elapsed


def test_the_battery_drains_for_all_the_compute_read_between_heartbeats() -> None:
    lumps = Lumps(busy_s=2.0)
    parameters = PowerModelParameters(
        initial_soc_pct=50.0, solar_w=0.0, bus_load_w=0.0, payload_idle_w=0.0, time_scale=100.0
    )
    model = BatteryModel(parameters, capacity_wh=80.0, compute_w=40.0)
    power = SimulatedPower(model, AlwaysSunlit(), lumps.busy, lambda: lumps.now)
    power.read()
    for _ in range(200):  # 4 s: two of compute, reported in four lumps
        lumps.tick()
        power.read()
    # 2 s of compute at 100x and 40 W: 8000 J, 2.78 % of 80 Wh.
    assert model.soc_pct == pytest.approx(50.0 - 8000 / 3600 / 80 * 100, abs=0.01)


def test_the_thermal_model_heats_for_all_the_compute_read_between_heartbeats() -> None:
    lumps = Lumps(busy_s=20.0)
    quiet = ThermalModelParameters(noise_c=0.0, time_scale=100.0)
    source = SimulatedThermal(quiet, lumps.busy, lambda: lumps.now)
    source.read()
    for _ in range(1000):  # 20 s at full duty: 2000 s of model time, near the steady state
        lumps.tick()
        source.read()
    steady_junction, _ = source.model.steady_state(1.0)
    assert source.model.junction_c == pytest.approx(steady_junction, abs=1.0)
