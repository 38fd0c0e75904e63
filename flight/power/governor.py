"""The power governor: from the battery's state of charge and the sunlight to a level (with
hysteresis), the duty the compute may take, the lowest job priority that may start, and whether
one job may start at all. Pure: the monitor feeds it readings and carries out what it decides.

Levels, as the state of charge (SoC) falls:
  NOMINAL  jobs run flat out;
  SLOWED   below the slow level: inferences are spaced to the slow duty;
  LOW      below the hold level: only jobs of the hold priority or more start (still slowed);
  FLOOR    at the floor: no inference starts (the one in progress finishes).
A level is left when the SoC is the hysteresis above the level's threshold. Without a SoC
reading the payload cannot see its battery: it counts as at the floor, as a failed temperature
sensor counts as at the pause threshold. In eclipse only jobs of the eclipse priority or more
start. And no job starts unless the battery stays above the floor when it has run: its estimated
run time at the compute's power, plus the battery's discharge at the last reading over the same
time, must leave the SoC above the floor. A reading is some time old when it arrives (the EPS
samples and relays it; the bench's model hears of the compute's busy time from the worker's
heartbeats): compute of that long before it may not show in it yet, and is counted too. The
discharge already includes the compute when it was read during a run: the estimate errs on the
side of the battery.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field

from flight.power.readings import Fault, PowerReadings, Quantity

#: The lowest priority that may start when none may (above the highest a job can have).
NO_JOB = 256
MAX_PRIORITY = 255


class PowerLevel(enum.IntEnum):
    """The governor's level (dictionary enum PowerLevel)."""

    NOMINAL = 0
    SLOWED = 1
    LOW = 2
    FLOOR = 3


class HoldReason(enum.IntEnum):
    """Why a job may not start (dictionary enum PowerHoldReason)."""

    LOW = 1
    ECLIPSE = 2
    FLOOR = 3
    ENERGY = 4
    NO_READING = 5


class SettingsError(ValueError):
    """Power settings that do not fit together: floor < hold < slow, and so on."""


@dataclass(frozen=True, slots=True)
class PowerSettings:
    """The levels (SoC %), the duty below the slow level, and the priorities that still start
    below the hold level and in eclipse."""

    slow_soc_pct: float = 50.0
    slow_duty: float = 0.5
    hold_soc_pct: float = 35.0
    hold_priority: int = 128
    floor_soc_pct: float = 20.0
    hysteresis_pct: float = 2.0
    eclipse_priority: int = 0

    def __post_init__(self) -> None:
        if not 0.0 <= self.floor_soc_pct < self.hold_soc_pct < self.slow_soc_pct <= 100.0:
            raise SettingsError(
                f"levels must rise: floor {self.floor_soc_pct:g} % < hold "
                f"{self.hold_soc_pct:g} % < slow {self.slow_soc_pct:g} %"
            )
        if not self.hysteresis_pct > 0:
            raise SettingsError(f"hysteresis must be above 0 %, found {self.hysteresis_pct:g}")
        if not 0.0 < self.slow_duty <= 1.0:
            raise SettingsError(f"slow duty must be in (0, 1], found {self.slow_duty:g}")
        for name in ("hold_priority", "eclipse_priority"):
            if not 0 <= getattr(self, name) <= MAX_PRIORITY:
                raise SettingsError(f"{name} must be 0..{MAX_PRIORITY}")

    def start_of(self, level: PowerLevel) -> float:
        """The SoC below which `level` is entered (FLOOR: at or below; NOMINAL: never)."""
        return {
            PowerLevel.NOMINAL: math.inf,
            PowerLevel.SLOWED: self.slow_soc_pct,
            PowerLevel.LOW: self.hold_soc_pct,
            PowerLevel.FLOOR: self.floor_soc_pct,
        }[level]


@dataclass(frozen=True, slots=True)
class Budget:
    """What a job's energy is reckoned from: the battery's capacity, the compute's power, how
    old a reading may be when it arrives (compute that recent may not show in it), and the
    source's seconds per real second (a bench model run faster than real time drains its battery
    that much faster: a job's real seconds are that many of the battery's)."""

    capacity_wh: float
    compute_w: float
    reading_lag_s: float = 0.0
    time_scale: float = 1.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.capacity_wh) and self.capacity_wh > 0):
            raise SettingsError(f"battery capacity must be above 0 Wh, found {self.capacity_wh}")
        if not (math.isfinite(self.compute_w) and self.compute_w >= 0):
            raise SettingsError(f"compute power must be 0 W or more, found {self.compute_w}")
        if not (math.isfinite(self.reading_lag_s) and self.reading_lag_s >= 0):
            raise SettingsError(f"reading lag must be 0 s or more, found {self.reading_lag_s}")
        if not (math.isfinite(self.time_scale) and self.time_scale > 0):
            raise SettingsError(f"time scale must be above 0, found {self.time_scale}")


@dataclass(frozen=True, slots=True)
class PowerDecision:
    """What the governor decided at one update."""

    level: PowerLevel
    previous: PowerLevel
    soc_pct: float | None
    sunlit: bool | None
    # The sunlight last read before this reading (None: never read).
    was_sunlit: bool | None
    duty: float
    min_priority: int
    failed: tuple[tuple[Quantity, Fault], ...] = ()
    recovered: tuple[Quantity, ...] = ()
    faults: frozenset[Quantity] = field(default_factory=frozenset)

    @property
    def changed(self) -> bool:
        return self.level != self.previous

    @property
    def held(self) -> bool:
        """No inference may start."""
        return self.level == PowerLevel.FLOOR

    @property
    def eclipse_entered(self) -> bool:
        return self.sunlit is False and self.was_sunlit is not False

    @property
    def eclipse_left(self) -> bool:
        return self.sunlit is True and self.was_sunlit is False


class PowerGovernor:
    """Levels with hysteresis over the SoC, the eclipse priority, and the start of each job."""

    def __init__(self, budget: Budget, settings: PowerSettings | None = None) -> None:
        self.budget = budget
        self.settings = settings or PowerSettings()
        self.level = PowerLevel.NOMINAL
        self.readings: PowerReadings | None = None
        # The last sunlight read (None: never): a flag unread for a poll is not a change of it.
        self._sunlit: bool | None = None
        self._faults: dict[Quantity, Fault] = {}

    def update(self, readings: PowerReadings) -> PowerDecision:
        failed, recovered = self._track_faults(readings)
        previous, was_sunlit = self.level, self._sunlit
        self.readings = readings
        if readings.sunlit is not None:
            self._sunlit = readings.sunlit
        self.level = self._next_level(readings.soc_pct)
        return PowerDecision(
            level=self.level,
            previous=previous,
            soc_pct=readings.soc_pct,
            sunlit=readings.sunlit,
            was_sunlit=was_sunlit,
            duty=self.duty(),
            min_priority=self.min_priority(),
            failed=failed,
            recovered=recovered,
            faults=frozenset(self._faults),
        )

    def duty(self) -> float:
        """The share of time inferences may take now (0 at the floor)."""
        if self.level == PowerLevel.FLOOR:
            return 0.0
        return 1.0 if self.level == PowerLevel.NOMINAL else self.settings.slow_duty

    def in_eclipse(self) -> bool:
        return self.readings is not None and self.readings.sunlit is False

    def min_priority(self) -> int:
        """The lowest priority a job may have to start now (NO_JOB: none may)."""
        s = self.settings
        if self.level == PowerLevel.FLOOR:
            return NO_JOB
        lowest = s.hold_priority if self.level == PowerLevel.LOW else 0
        if self.in_eclipse():
            lowest = max(lowest, s.eclipse_priority)
        return lowest

    def refusal(self, priority: int, seconds: float) -> HoldReason | None:
        """Why a job of `priority` estimated to compute for `seconds` may not start now; None
        when it may."""
        s, soc = self.settings, self._soc()
        if soc is None:
            return HoldReason.NO_READING
        if self.level == PowerLevel.FLOOR:
            return HoldReason.FLOOR
        if self.in_eclipse() and priority < s.eclipse_priority:
            return HoldReason.ECLIPSE
        if self.level == PowerLevel.LOW and priority < s.hold_priority:
            return HoldReason.LOW
        if soc - self.drop_pct(seconds) <= s.floor_soc_pct:
            return HoldReason.ENERGY
        return None

    def drop_pct(self, seconds: float) -> float:
        """How far the SoC may fall while a job computes for `seconds` (see the module)."""
        b, readings = self.budget, self.readings
        battery_w = readings.battery_w if readings is not None else None
        discharge_w = max(0.0, -battery_w) if battery_w is not None else 0.0
        seconds = max(seconds, 0.0) * b.time_scale
        lag_s = b.reading_lag_s * b.time_scale
        energy_j = (seconds + lag_s) * b.compute_w + seconds * discharge_w
        return 100.0 * energy_j / 3600.0 / b.capacity_wh

    def _soc(self) -> float | None:
        return None if self.readings is None else self.readings.soc_pct

    def _track_faults(
        self, readings: PowerReadings
    ) -> tuple[tuple[tuple[Quantity, Fault], ...], tuple[Quantity, ...]]:
        failed: list[tuple[Quantity, Fault]] = []
        for quantity, fault in readings.faults.items():
            if quantity not in self._faults:
                failed.append((quantity, fault))
            self._faults[quantity] = fault
        recovered = tuple(q for q in self._faults if q not in readings.faults)
        for quantity in recovered:
            del self._faults[quantity]
        return tuple(failed), recovered

    def _next_level(self, soc: float | None) -> PowerLevel:
        s = self.settings
        if soc is None:
            return PowerLevel.FLOOR
        down = max(
            (level for level in PowerLevel if level and _below(soc, level, s)),
            default=PowerLevel.NOMINAL,
        )
        if down >= self.level:
            return down
        level = self.level
        while level > PowerLevel.NOMINAL and soc >= s.start_of(level) + s.hysteresis_pct:
            level = PowerLevel(level - 1)
        return level


def _below(soc: float, level: PowerLevel, settings: PowerSettings) -> bool:
    start = settings.start_of(level)
    return soc <= start if level == PowerLevel.FLOOR else soc < start
