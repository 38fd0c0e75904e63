"""The power monitor, polled by hand: level events, its share of the compute gate (the stricter
of it and the thermal governor's), eclipse and reading events, the queue woken when the budget
changes, the policy the job queue asks, a broken source, and what housekeeping shows."""

from __future__ import annotations

import math
import time
from typing import Any

import pytest

from flight.power.gate_shares import GateShares
from flight.power.governor import (
    NO_JOB,
    Budget,
    HoldReason,
    PowerGovernor,
    PowerLevel,
    PowerSettings,
)
from flight.power.monitor import PowerMonitor
from flight.power.readings import Fault, PowerReadings, Quantity
from flight.thermal.duty import ComputeGate
from flight.thermal.readings import SensorFault
from tests.fake_clock import FakeClock


class ScriptedSource:
    """Readings the test sets; `fail` makes read() raise (a bug in a source)."""

    def __init__(self) -> None:
        self.readings = PowerReadings(80.0, battery_v=8.0, battery_a=1.0, sunlit=True)
        self.fail = False

    def quantities(self) -> tuple[Quantity, ...]:
        return tuple(Quantity)

    def set(self, soc: float | None, sunlit: bool | None = True, **faults: Fault) -> None:
        self.readings = PowerReadings(
            soc, battery_v=8.0, battery_a=-1.0, sunlit=sunlit,
            faults={Quantity[name]: fault for name, fault in faults.items()},
        )  # fmt: skip

    def read(self) -> PowerReadings:
        if self.fail:
            raise RuntimeError("source bug")
        return self.readings


class Events:
    def __init__(self) -> None:
        self.raised: list[tuple[str, dict[str, Any]]] = []

    def raise_event(self, name: str, **values: object) -> None:
        self.raised.append((name, values))

    def names(self) -> list[str]:
        return [name for name, _ in self.raised]

    def take(self) -> list[tuple[str, dict[str, Any]]]:
        raised, self.raised = self.raised, []
        return raised


class Queue:
    def __init__(self) -> None:
        self.wakes = 0

    def wake(self) -> None:
        self.wakes += 1


class Rig:
    def __init__(self) -> None:
        self.clock = FakeClock(100.0)
        self.source = ScriptedSource()
        self.gate = ComputeGate(self.clock)
        self.shares = GateShares(self.gate)
        self.thermal = self.shares.share("thermal")
        self.events = Events()
        self.queue = Queue()
        self.monitor = PowerMonitor(
            self.source,
            PowerGovernor(Budget(100.0, 36.0), PowerSettings(slow_duty=0.4, eclipse_priority=9)),
            self.shares.share("power"),
            self.queue,
            self.events,
            monotonic=self.clock,
        )


@pytest.fixture
def rig() -> Rig:
    return Rig()


def test_each_level_change_raises_its_event_with_the_state_of_charge(rig: Rig) -> None:
    rig.monitor.poll_once()
    assert rig.events.take() == []
    for soc, name in ((45.0, "POWER_SLOWED"), (30.0, "POWER_LOW"), (19.0, "POWER_FLOOR")):
        rig.source.set(soc)
        rig.monitor.poll_once()
        assert rig.events.take() == [(name, {"previous": rig.monitor.level - 1, "soc": soc})]
    rig.source.set(60.0)
    rig.monitor.poll_once()
    assert rig.events.take() == [("POWER_NOMINAL", {"previous": 3, "soc": 60.0})]


def test_the_gate_takes_the_stricter_of_the_power_and_the_thermal_duty(rig: Rig) -> None:
    rig.monitor.poll_once()
    assert rig.gate.duty == 1.0
    rig.thermal.allow(0.7)
    assert rig.gate.duty == pytest.approx(0.7)
    rig.source.set(45.0)
    rig.monitor.poll_once()
    assert rig.gate.duty == pytest.approx(0.4)  # power's slow duty is stricter
    assert rig.shares.wanted("thermal") == (0.7, False)
    rig.thermal.allow(0.2)
    assert rig.gate.duty == pytest.approx(0.2)
    rig.source.set(10.0)
    rig.monitor.poll_once()
    assert rig.gate.held  # the floor holds every inference
    rig.thermal.allow(1.0)
    assert rig.gate.held  # a thermal release does not undo the power hold
    rig.source.set(60.0)
    rig.monitor.poll_once()
    assert not rig.gate.held and rig.gate.duty == 1.0
    rig.thermal.allow(0.5, held=True)
    assert rig.gate.held  # nor a power release the thermal hold


def test_eclipse_entered_and_left_with_how_long_it_lasted(rig: Rig) -> None:
    rig.monitor.poll_once()
    rig.source.set(70.0, sunlit=False)
    rig.monitor.poll_once()
    assert rig.events.take() == [("ECLIPSE_ENTERED", {"soc": 70.0})]
    assert rig.monitor.min_priority() == 9
    rig.clock.advance(2100.0)
    rig.source.set(62.0, sunlit=True)
    rig.monitor.poll_once()
    assert rig.events.take() == [("ECLIPSE_LEFT", {"soc": 62.0, "duration": 2100})]
    assert rig.monitor.min_priority() == 0


def test_a_sunlight_reading_lost_for_a_poll_neither_repeats_nor_loses_an_eclipse_event(
    rig: Rig,
) -> None:
    unread = Fault(SensorFault.UNREADABLE, "sunlit: empty")
    rig.monitor.poll_once()
    rig.source.set(70.0, sunlit=False)
    rig.monitor.poll_once()
    rig.clock.advance(600.0)
    rig.source.set(69.0, sunlit=None, SUNLIGHT=unread)  # the flag read once mid-rewrite
    rig.monitor.poll_once()
    rig.source.set(68.0, sunlit=False)
    rig.monitor.poll_once()
    names = [n for n in rig.events.names() if n.startswith("ECLIPSE")]
    assert names == ["ECLIPSE_ENTERED"]  # the same eclipse, not a second one
    rig.clock.advance(600.0)
    rig.source.set(67.0, sunlit=None, SUNLIGHT=unread)
    rig.monitor.poll_once()
    rig.source.set(67.0, sunlit=True)
    rig.monitor.poll_once()
    left = [values for name, values in rig.events.raised if name == "ECLIPSE_LEFT"]
    assert left == [{"soc": 67.0, "duration": 1200}]  # left, and timed from its start


def test_the_queue_is_woken_when_the_budget_changes_only(rig: Rig) -> None:
    rig.monitor.poll_once()
    assert rig.queue.wakes == 1  # the first decision
    rig.source.set(79.0)
    rig.monitor.poll_once()
    assert rig.queue.wakes == 1  # the SoC moved, nothing the queue goes by
    rig.source.set(79.0, sunlit=False)
    rig.monitor.poll_once()
    rig.source.set(45.0, sunlit=False)
    rig.monitor.poll_once()
    assert rig.queue.wakes == 3
    rig.monitor.set_settings(PowerSettings(eclipse_priority=0))
    assert rig.queue.wakes == 4 and rig.monitor.min_priority() == 0


def test_a_reading_that_fails_and_recovers_raises_an_event_each_way(rig: Rig) -> None:
    rig.monitor.poll_once()
    fault = Fault(SensorFault.MISSING, "capacity: missing")
    rig.source.set(None, SOC=fault)
    rig.monitor.poll_once()
    raised = rig.events.take()
    assert raised[0] == (
        "POWER_READING_FAILED",
        {"quantity": 0, "fault": int(SensorFault.MISSING), "detail": "capacity: missing"},
    )
    assert raised[1][0] == "POWER_FLOOR" and math.isnan(raised[1][1]["soc"])
    assert rig.monitor.fault_mask == 0b1
    assert rig.monitor.refusal(255, 0.0) == HoldReason.NO_READING
    assert math.isnan(rig.monitor.soc_pct())
    rig.source.set(80.0)
    rig.monitor.poll_once()
    assert [n for n, _ in rig.events.take()] == ["POWER_READING_RECOVERED", "POWER_NOMINAL"]
    assert rig.monitor.fault_mask == 0


def test_a_broken_source_holds_the_compute_until_a_poll_succeeds(rig: Rig) -> None:
    rig.monitor.poll_once()
    rig.source.fail = True
    rig.monitor.poll_once()  # does not raise
    assert rig.gate.held
    assert rig.monitor.min_priority() == NO_JOB
    assert rig.monitor.refusal(255, 0.0) == HoldReason.NO_READING
    rig.source.fail = False
    rig.monitor.poll_once()
    assert not rig.gate.held and rig.monitor.refusal(255, 0.0) is None


def test_housekeeping_sees_the_last_readings_and_the_lowest_charge(rig: Rig) -> None:
    assert math.isnan(rig.monitor.quantity(Quantity.SOC))
    for soc in (80.0, 41.0, 55.0):
        rig.source.set(soc)
        rig.monitor.poll_once()
    assert rig.monitor.quantity(Quantity.SOC) == 55.0
    assert rig.monitor.quantity(Quantity.CURRENT) == -1.0
    assert rig.monitor.quantity(Quantity.SUNLIGHT) == 1.0
    assert math.isnan(rig.monitor.quantity(Quantity.SOLAR))
    assert rig.monitor.lowest_soc_pct == 41.0


def test_the_thread_polls_until_stopped(rig: Rig) -> None:
    rig.monitor.poll_s = 0.01
    rig.monitor.start()
    try:
        rig.source.set(45.0)
        until = time.monotonic() + 5.0  # the fake clock does not move: wait on the real one
        while rig.monitor.level != PowerLevel.SLOWED and time.monotonic() < until:
            time.sleep(0.01)
        assert rig.monitor.level == PowerLevel.SLOWED
    finally:
        rig.monitor.stop()
    assert rig.monitor.thread is not None and not rig.monitor.thread.is_alive()


class CountingGate:
    """A gate that counts what it is told."""

    def __init__(self) -> None:
        self.allowed: list[tuple[float, bool]] = []
        self.duty, self.held = 1.0, False

    def allow(self, duty: float, *, held: bool = False) -> None:
        self.allowed.append((duty, held))

    def busy_seconds(self) -> float:
        return 0.0


def test_only_a_change_of_the_combined_setting_reaches_the_gate() -> None:
    gate = CountingGate()
    shares = GateShares(gate)
    thermal, power = shares.share("thermal"), shares.share("power")
    for _ in range(3):  # every poll of both governors, nothing changing
        thermal.allow(1.0)
        power.allow(1.0)
    power.allow(0.5)
    thermal.allow(0.8)  # looser than power's: the gate stays at 0.5
    power.allow(0.0, held=True)
    thermal.allow(0.8)
    assert gate.allowed == [(1.0, False), (0.5, False), (0.0, True)]
