"""The power governor: levels with hysteresis at every boundary (one step and several at once),
an unreadable state of charge, the duty and the lowest priority at each level and in eclipse,
the refusal of each job by priority and by energy, and the settings' validation."""

from __future__ import annotations

import math

import pytest

from flight.power.governor import (
    NO_JOB,
    Budget,
    HoldReason,
    PowerDecision,
    PowerGovernor,
    PowerLevel,
    PowerSettings,
    SettingsError,
)
from flight.power.readings import Fault, PowerReadings, Quantity
from flight.thermal.readings import SensorFault

S = PowerSettings()  # slow 50 %, hold 35 % (priority 128), floor 20 %, 2 % of hysteresis
BUDGET = Budget(capacity_wh=100.0, compute_w=36.0)  # 36 W for 100 s: 1 Wh, 1 % of the battery


def governor(settings: PowerSettings = S) -> PowerGovernor:
    return PowerGovernor(BUDGET, settings)


def at(
    g: PowerGovernor,
    soc: float | None,
    sunlit: bool | None = True,
    volts: float | None = None,
    amps: float | None = None,
) -> PowerDecision:
    return g.update(PowerReadings(soc, battery_v=volts, battery_a=amps, sunlit=sunlit))


@pytest.mark.parametrize(
    ("soc", "level"),
    [
        (100.0, PowerLevel.NOMINAL),
        (50.0, PowerLevel.NOMINAL),  # the slow level is entered below 50, not at it
        (49.9, PowerLevel.SLOWED),
        (35.0, PowerLevel.SLOWED),
        (34.9, PowerLevel.LOW),
        (20.1, PowerLevel.LOW),
        (20.0, PowerLevel.FLOOR),  # the floor is entered at it
        (0.0, PowerLevel.FLOOR),
    ],
)
def test_each_level_is_entered_at_its_threshold_from_above(soc: float, level: PowerLevel) -> None:
    assert at(governor(), soc).level == level


def test_a_fall_through_several_levels_at_once_lands_on_the_lowest() -> None:
    g = governor()
    at(g, 80.0)
    decision = at(g, 10.0)
    assert (decision.previous, decision.level) == (PowerLevel.NOMINAL, PowerLevel.FLOOR)
    assert decision.changed and decision.held and decision.duty == 0.0


def test_each_level_is_left_only_the_hysteresis_above_its_threshold() -> None:
    g = governor()
    at(g, 19.0)
    assert at(g, 21.9).level == PowerLevel.FLOOR
    assert at(g, 22.0).level == PowerLevel.LOW
    assert at(g, 36.9).level == PowerLevel.LOW
    assert at(g, 37.0).level == PowerLevel.SLOWED
    assert at(g, 51.9).level == PowerLevel.SLOWED
    assert at(g, 52.0).level == PowerLevel.NOMINAL
    assert at(g, 50.5).level == PowerLevel.NOMINAL  # within the band: stays


def test_a_rise_through_several_bands_at_once_leaves_every_level_it_clears() -> None:
    g = governor()
    at(g, 5.0)
    assert at(g, 40.0).level == PowerLevel.SLOWED  # floor and low cleared, slow not by 2 %
    at(g, 5.0)
    assert at(g, 90.0).level == PowerLevel.NOMINAL


def test_a_state_of_charge_that_cannot_be_read_counts_as_the_floor() -> None:
    g = governor()
    at(g, 80.0)
    fault = Fault(SensorFault.UNREADABLE, "capacity: EIO")
    decision = g.update(PowerReadings(None, faults={Quantity.SOC: fault}))
    assert decision.level == PowerLevel.FLOOR and decision.held
    assert decision.failed == ((Quantity.SOC, fault),)
    assert decision.faults == {Quantity.SOC}
    assert g.min_priority() == NO_JOB
    assert g.refusal(255, 0.0) == HoldReason.NO_READING
    again = g.update(PowerReadings(None, faults={Quantity.SOC: fault}))
    assert again.failed == ()  # reported once
    recovered = at(g, 80.0)
    assert recovered.recovered == (Quantity.SOC,) and recovered.faults == frozenset()
    assert recovered.level == PowerLevel.NOMINAL


def test_duty_and_lowest_priority_at_each_level() -> None:
    g = governor(PowerSettings(slow_duty=0.25, hold_priority=100))
    assert (at(g, 80.0).duty, g.min_priority()) == (1.0, 0)
    assert (at(g, 45.0).duty, g.min_priority()) == (0.25, 0)
    assert (at(g, 30.0).duty, g.min_priority()) == (0.25, 100)
    assert (at(g, 15.0).duty, g.min_priority()) == (0.0, NO_JOB)


def test_in_eclipse_only_the_eclipse_priority_and_above_start() -> None:
    g = governor(PowerSettings(eclipse_priority=200, hold_priority=100))
    decision = at(g, 80.0, sunlit=False)
    assert decision.eclipse_entered and not decision.eclipse_left
    assert decision.min_priority == 200 and decision.duty == 1.0  # eclipse does not slow
    assert g.refusal(199, 1.0) == HoldReason.ECLIPSE
    assert g.refusal(200, 1.0) is None
    at(g, 30.0, sunlit=False)  # LOW in eclipse: the higher of the two limits
    assert g.min_priority() == 200
    left = at(g, 30.0, sunlit=True)
    assert left.eclipse_left and g.min_priority() == 100
    assert g.refusal(99, 1.0) == HoldReason.LOW and g.refusal(100, 1.0) is None


def test_sunlight_the_power_system_does_not_give_holds_nothing() -> None:
    g = governor(PowerSettings(eclipse_priority=255))
    decision = at(g, 80.0, sunlit=None)
    assert not decision.eclipse_entered and g.min_priority() == 0
    assert g.refusal(0, 1.0) is None


def test_a_job_starts_only_if_its_energy_leaves_the_battery_above_the_floor() -> None:
    g = governor()
    at(g, 21.5)  # LOW; a job of priority 200 passes the priority rule
    # 36 W for 100 s is 1 % of the battery: 21.5 - 1 = 20.5 > 20.
    assert g.refusal(200, 100.0) is None
    assert g.drop_pct(100.0) == pytest.approx(1.0)
    # 150 s: 1.5 %, to exactly the floor: refused (it must stay above it).
    assert g.refusal(200, 150.0) == HoldReason.ENERGY
    assert g.refusal(200, 1000.0) == HoldReason.ENERGY


def test_the_batterys_discharge_meanwhile_counts_too() -> None:
    g = governor()
    # 8 V at -4.5 A: 36 W out of the battery besides the job's compute.
    at(g, 21.5, volts=8.0, amps=-4.5)
    assert g.drop_pct(100.0) == pytest.approx(2.0)
    assert g.refusal(200, 50.0) is None  # 1 %: to 20.5
    assert g.refusal(200, 100.0) == HoldReason.ENERGY  # 2 %: below the floor
    at(g, 21.5, volts=8.0, amps=+4.5)  # charging: no discharge to count
    assert g.drop_pct(100.0) == pytest.approx(1.0)


def test_compute_too_recent_to_show_in_the_reading_counts_too() -> None:
    g = PowerGovernor(Budget(capacity_wh=100.0, compute_w=36.0, reading_lag_s=50.0), S)
    at(g, 21.5)
    assert g.drop_pct(0.0) == pytest.approx(0.5)  # 50 s of compute not yet in the SoC read
    assert g.drop_pct(100.0) == pytest.approx(1.5)
    assert g.refusal(200, 90.0) is None  # 1.4 %: to 20.1
    assert g.refusal(200, 100.0) == HoldReason.ENERGY


def test_a_model_faster_than_real_time_drains_that_much_more_per_real_second() -> None:
    g = PowerGovernor(Budget(100.0, 36.0, reading_lag_s=1.0, time_scale=60.0), S)
    at(g, 30.0, volts=8.0, amps=-1.0)  # 8 W of discharge besides
    # 10 real seconds are 600 of the battery's: (600 + 60) s at 36 W and 600 s at 8 W.
    assert g.drop_pct(10.0) == pytest.approx((660 * 36 + 600 * 8) / 3600)
    assert g.refusal(200, 10.0) is None
    assert g.refusal(200, 20.0) == HoldReason.ENERGY


def test_at_the_floor_no_job_starts_whatever_its_priority() -> None:
    g = governor()
    at(g, 20.0)
    assert g.refusal(255, 0.0) == HoldReason.FLOOR


def test_the_priority_rules_come_before_the_energy_rule() -> None:
    g = governor(PowerSettings(eclipse_priority=50))
    at(g, 30.0, sunlit=False)
    assert g.refusal(10, 1e6) == HoldReason.ECLIPSE
    assert g.refusal(60, 1e6) == HoldReason.LOW
    assert g.refusal(130, 1e6) == HoldReason.ENERGY


def test_no_reading_yet_refuses_every_job() -> None:
    assert governor().refusal(255, 0.0) == HoldReason.NO_READING


@pytest.mark.parametrize(
    "kwargs",
    [
        {"floor_soc_pct": 35.0},  # floor at hold
        {"hold_soc_pct": 55.0},  # hold above slow
        {"slow_soc_pct": 101.0},
        {"floor_soc_pct": -1.0},
        {"hysteresis_pct": 0.0},
        {"slow_duty": 0.0},
        {"slow_duty": 1.5},
        {"hold_priority": 256},
        {"eclipse_priority": -1},
    ],
)
def test_settings_that_do_not_fit_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(SettingsError):
        PowerSettings(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("capacity", "compute", "lag"),
    [(0.0, 10.0, 0.0), (math.inf, 10.0, 0.0), (50.0, -1.0, 0.0), (50.0, math.nan, 0.0),
     (50.0, 10.0, -1.0)],
)  # fmt: skip
def test_a_budget_needs_a_capacity_a_power_and_a_lag(
    capacity: float, compute: float, lag: float
) -> None:
    with pytest.raises(SettingsError):
        Budget(capacity, compute, lag)
    with pytest.raises(SettingsError):
        Budget(50.0, 10.0, 0.0, time_scale=0.0)
