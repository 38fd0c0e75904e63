"""The plan's copy of the payload's power budget decides as the payload's own governor does
(flight/power/governor.py), reading for reading: the level with its hysteresis, the duty, and
each job's start at every priority (the eclipse and hold priorities, the energy check)."""

from __future__ import annotations

import random

import pytest

from flight.power.battery_model import PowerModelParameters
from flight.power.config import PowerConfig
from flight.power.governor import Budget, PowerGovernor, PowerSettings
from flight.power.readings import PowerReadings
from groundsw.plan.model import PowerModel
from groundsw.plan.onboard import (
    Hold,
    Level,
    level_duty,
    level_thresholds,
    next_level,
    refusal,
)

SETTINGS = [
    PowerModel(),
    PowerModel(
        capacity_wh=0.25,
        compute_w=40.0,
        floor_soc_pct=30.0,
        hold_soc_pct=45.0,
        slow_soc_pct=60.0,
        hysteresis_pct=0.5,
        slow_duty=0.3,
        hold_priority=200,
        eclipse_priority=100,
        reading_lag_s=0.7,
    ),
]


def flight_governor(power: PowerModel, time_scale: float) -> PowerGovernor:
    settings = PowerSettings(
        slow_soc_pct=power.slow_soc_pct,
        slow_duty=power.slow_duty,
        hold_soc_pct=power.hold_soc_pct,
        hold_priority=power.hold_priority,
        floor_soc_pct=power.floor_soc_pct,
        hysteresis_pct=power.hysteresis_pct,
        eclipse_priority=power.eclipse_priority,
    )
    budget = Budget(power.capacity_wh, power.compute_w, power.reading_lag_s, time_scale)
    return PowerGovernor(budget, settings)


@pytest.mark.parametrize("power", SETTINGS)
@pytest.mark.parametrize("time_scale", [1.0, 60.0])
def test_the_plans_budget_decides_as_the_payloads_over_a_random_walk(
    power: PowerModel, time_scale: float
) -> None:
    rng = random.Random(20)
    governor = flight_governor(power, time_scale)
    level = Level.NOMINAL
    soc = 70.0
    for _ in range(3000):
        soc = min(100.0, max(0.0, soc + rng.uniform(-3.0, 3.0)))
        sunlit = rng.random() < 0.6
        battery_w = rng.uniform(-60.0, 40.0)
        # 8 V: the current that gives this power into the battery.
        readings = PowerReadings(soc, 8.0, battery_w / 8.0, sunlit=sunlit)
        decision = governor.update(readings)
        level = next_level(level, soc, power)
        assert int(level) == int(decision.level), (soc, level, decision)
        assert level_duty(level, power) == pytest.approx(decision.duty)
        for priority in (0, 99, 100, 127, 128, 199, 200, 255):
            seconds = rng.uniform(0.0, 400.0) / time_scale
            ours = refusal(level, soc, sunlit, priority, seconds, -battery_w, power, time_scale)
            theirs = governor.refusal(priority, seconds)
            assert (ours and int(ours)) == (theirs and int(theirs)), (soc, priority, seconds)


def test_on_the_edges_the_plans_budget_decides_as_the_payloads() -> None:
    """Readings exactly on each level's entry and exit, and a job whose energy takes the charge
    exactly to the floor: where random readings never fall, and `<` against `<=` tells."""
    power = PowerModel()
    governor = flight_governor(power, 1.0)
    level = Level.NOMINAL
    # Down through the slow, hold and floor entries, then up through each exit (+2 %).
    walk = [
        (60.0, Level.NOMINAL),
        (50.0, Level.NOMINAL),  # below the slow level is below 50 %
        (35.0, Level.SLOWED),
        (20.0, Level.FLOOR),  # the floor is at 20 % or below
        (22.0, Level.LOW),
        (37.0, Level.SLOWED),
        (52.0, Level.NOMINAL),
    ]
    for soc, expected in walk:
        decision = governor.update(PowerReadings(soc, 8.0, 0.0, sunlit=True))
        level = next_level(level, soc, power)
        assert level == expected and int(decision.level) == int(expected), soc
    # 358 s at 40 W and the reading's 2 s of lag: 14400 J, 5 % of 80 Wh: from 25 % to the floor.
    governor.update(PowerReadings(25.0, 8.0, 0.0, sunlit=True))
    level = next_level(level, 25.0, power)
    ours = refusal(level, 25.0, True, 255, 358.0, 0.0, power)
    theirs = governor.refusal(255, 358.0)
    assert ours is Hold.ENERGY and theirs is not None and int(theirs) == int(ours)
    assert refusal(level, 25.0, True, 255, 357.0, 0.0, power) is None
    assert governor.refusal(255, 357.0) is None


def test_the_plans_defaults_are_the_payloads_and_the_benchs() -> None:
    """A plan made without a power file budgets for the payload as it ships."""
    plan = PowerModel()
    budget, config, bench = PowerSettings(), PowerConfig(), PowerModelParameters()
    for name in ("slow_soc_pct", "slow_duty", "hold_soc_pct", "hold_priority", "floor_soc_pct",
                 "hysteresis_pct", "eclipse_priority"):  # fmt: skip
        assert getattr(plan, name) == getattr(budget, name), name
    assert (plan.capacity_wh, plan.compute_w, plan.reading_lag_s) == (
        config.battery_capacity_wh, config.compute_power_w, config.reading_lag_s,
    )  # fmt: skip
    for name in ("initial_soc_pct", "solar_w", "bus_load_w", "payload_idle_w"):
        assert getattr(plan, name) == getattr(bench, name), name


def test_the_thresholds_are_where_the_level_changes() -> None:
    power = PowerModel()
    # At NOMINAL only falling through a level's entry changes it; at LOW also rising out of it.
    assert level_thresholds(Level.NOMINAL, power) == ((50.0, False), (35.0, False), (20.0, False))
    assert level_thresholds(Level.LOW, power) == ((37.0, True), (20.0, False))
    for level in Level:
        thresholds = level_thresholds(level, power)
        for soc, rising in thresholds:
            assert next_level(level, soc + (1e-6 if rising else -1e-6), power) != level
        # Between the nearest threshold below and the one above, the level holds.
        low = max((soc for soc, rising in thresholds if not rising), default=0.0)
        high = min((soc for soc, rising in thresholds if rising), default=100.0)
        for step in range(1, 20):
            assert next_level(level, low + (high - low) * step / 20, power) == level
