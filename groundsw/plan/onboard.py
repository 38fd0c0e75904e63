"""What the payload's power budget does, as the plan's simulation needs it: the level by the
state of charge with hysteresis, the duty, and why the best queued job may not start (the
floor, the eclipse and hold priorities, its energy reaching the floor).

The same rules as flight/power/governor.py (docs/power.md), written again on the ground side
because ground and flight do not import each other; tests/unit/groundsw/plan compares the two
over the same readings, so that a change on board that is not made here fails a test.
"""

from __future__ import annotations

import enum
import math

from groundsw.plan.model import PowerModel


class Level(enum.IntEnum):
    """The budget's level (dictionary enum PowerLevel)."""

    NOMINAL = 0
    SLOWED = 1
    LOW = 2
    FLOOR = 3


class Hold(enum.IntEnum):
    """Why the best queued job may not start (dictionary enum PowerHoldReason)."""

    LOW = 1
    ECLIPSE = 2
    FLOOR = 3
    ENERGY = 4


def entry_soc(level: Level, power: PowerModel) -> float:
    """The charge below which `level` is entered (FLOOR: at or below; NOMINAL: never)."""
    return {
        Level.NOMINAL: math.inf,
        Level.SLOWED: power.slow_soc_pct,
        Level.LOW: power.hold_soc_pct,
        Level.FLOOR: power.floor_soc_pct,
    }[level]


def _below(soc: float, level: Level, power: PowerModel) -> bool:
    start = entry_soc(level, power)
    return soc <= start if level == Level.FLOOR else soc < start


def next_level(level: Level, soc: float, power: PowerModel) -> Level:
    """The level after a reading of `soc` at `level`: down at once to the lowest level the
    charge is in, up one level at a time while the charge is the hysteresis above its entry."""
    down = max(
        (lv for lv in Level if lv and _below(soc, lv, power)),
        default=Level.NOMINAL,
    )
    if down >= level:
        return down
    while level > Level.NOMINAL and soc >= entry_soc(level, power) + power.hysteresis_pct:
        level = Level(level - 1)
    return level


def level_thresholds(level: Level, power: PowerModel) -> tuple[tuple[float, bool], ...]:
    """The charges at which the level next changes from `level`: (SoC, rising). Falling, the
    entries of every lower level; rising, this level's exit."""
    falling = tuple((entry_soc(lv, power), False) for lv in Level if lv > level)
    if level == Level.NOMINAL:
        return falling
    return ((entry_soc(level, power) + power.hysteresis_pct, True), *falling)


def level_duty(level: Level, power: PowerModel) -> float:
    """The share of time inferences may take at `level` (0 at the floor)."""
    if level == Level.FLOOR:
        return 0.0
    return 1.0 if level == Level.NOMINAL else power.slow_duty


def energy_drop_pct(
    compute_s: float, discharge_w: float, power: PowerModel, time_scale: float = 1.0
) -> float:
    """How far the payload reckons the charge may fall while a job computes for `compute_s` of
    its seconds: the compute's energy over the job and the reading lag, and the battery's
    discharge at the last reading over the job (battery seconds: `time_scale` per second)."""
    seconds = max(compute_s, 0.0) * time_scale
    lag_s = power.reading_lag_s * time_scale
    energy_j = (seconds + lag_s) * power.compute_w + seconds * max(discharge_w, 0.0)
    return 100.0 * energy_j / 3600.0 / power.capacity_wh


def refusal(
    level: Level,
    soc: float,
    sunlit: bool,
    priority: int,
    compute_s: float,
    discharge_w: float,
    power: PowerModel,
    time_scale: float = 1.0,
) -> Hold | None:
    """Why a job of `priority` estimated at `compute_s` may not start now; None when it may."""
    if level == Level.FLOOR:
        return Hold.FLOOR
    if not sunlit and priority < power.eclipse_priority:
        return Hold.ECLIPSE
    if level == Level.LOW and priority < power.hold_priority:
        return Hold.LOW
    if soc - energy_drop_pct(compute_s, discharge_w, power, time_scale) <= power.floor_soc_pct:
        return Hold.ENERGY
    return None
