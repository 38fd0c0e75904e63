"""The thermal governor: from sensor readings to a level (with hysteresis) and an allowed duty
cycle. Pure: the monitor thread feeds it readings and carries out what it decides.

The level follows the hottest sensor in use: THROTTLED at the throttle threshold, PAUSED at the
pause threshold, CRITICAL at the critical threshold; a level is left when the temperature is the
hysteresis below its threshold. A sensor without a reading counts as at the pause threshold: the
payload cannot see how hot it is, so it computes nothing until it can (the module's own firmware
still protects the silicon). In THROTTLED a PI controller sets the duty cycle that holds the
hottest sensor at the throttle threshold: there, heat in equals heat out at the limit, which is
the highest rate the limit allows in steady state.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field

from flight.thermal.readings import Reading, Sensor


class Level(enum.IntEnum):
    """The governor's level (dictionary enum ThermalLevel)."""

    NOMINAL = 0
    THROTTLED = 1
    PAUSED = 2
    CRITICAL = 3


class ThresholdError(ValueError):
    """Thresholds out of order: throttle < pause < critical, hysteresis > 0."""


@dataclass(frozen=True, slots=True)
class Thresholds:
    """Temperatures (C) at which the levels start, and how far below one a level is left."""

    throttle_c: float = 70.0
    pause_c: float = 78.0
    critical_c: float = 85.0
    hysteresis_c: float = 3.0

    def __post_init__(self) -> None:
        if not self.throttle_c < self.pause_c < self.critical_c:
            raise ThresholdError(
                f"thresholds must rise: throttle {self.throttle_c:g} C < pause "
                f"{self.pause_c:g} C < critical {self.critical_c:g} C"
            )
        if not self.hysteresis_c > 0:
            raise ThresholdError(f"hysteresis must be above 0 C, found {self.hysteresis_c:g}")

    def start_of(self, level: Level) -> float:
        """The temperature at which `level` is entered (NOMINAL: -inf)."""
        return {
            Level.NOMINAL: -math.inf,
            Level.THROTTLED: self.throttle_c,
            Level.PAUSED: self.pause_c,
            Level.CRITICAL: self.critical_c,
        }[level]


@dataclass(frozen=True, slots=True)
class Gains:
    """The duty controller's PI gains, in duty per C and duty per C-second of the source's time.

    Tuned on the bench model (tools/thermal_sim.py): its junction answers a duty step within
    ~10 s, its board within ~10 min."""

    kp: float = 0.04
    ki: float = 0.006
    # Below this the duty is not lowered: a pause is the cleaner way to stop computing.
    min_duty: float = 0.02


@dataclass(frozen=True, slots=True)
class Decision:
    """What the governor decided at one update."""

    level: Level
    previous: Level
    duty: float
    # The sensor and temperature the level was decided on (a failed sensor: the pause threshold).
    sensor: Sensor
    temperature: float
    failed: tuple[Reading, ...] = ()
    recovered: tuple[Reading, ...] = ()
    faults: frozenset[Sensor] = field(default_factory=frozenset)

    @property
    def changed(self) -> bool:
        return self.level != self.previous

    @property
    def held(self) -> bool:
        """No inference may start (PAUSED or CRITICAL)."""
        return self.level >= Level.PAUSED


class Governor:
    """Levels with hysteresis over the hottest sensor in use, and the duty in THROTTLED."""

    def __init__(self, thresholds: Thresholds | None = None, gains: Gains | None = None) -> None:
        self.thresholds = thresholds or Thresholds()
        self.gains = gains or Gains()
        self.level = Level.NOMINAL
        self.duty = 1.0
        self._error: float | None = None
        self._faults: dict[Sensor, Reading] = {}

    def hottest(
        self, readings: Mapping[Sensor, Reading], used: Collection[Sensor]
    ) -> tuple[Sensor, float]:
        """The sensor in use the level is decided on, and its temperature as counted."""
        counted: list[tuple[float, Sensor]] = []
        for sensor, reading in readings.items():
            if sensor not in used:
                continue
            value = reading.celsius if reading.ok else None
            counted.append((self.thresholds.pause_c if value is None else value, sensor))
        if not counted:  # nothing to go by: as hot as a failed sensor
            return (min(used) if used else Sensor.CPU), self.thresholds.pause_c
        temperature, sensor = max(counted)
        return sensor, temperature

    def update(
        self, readings: Mapping[Sensor, Reading], dt_s: float, used: Collection[Sensor]
    ) -> Decision:
        """Take the readings `dt_s` seconds (source time) after the last ones; decide."""
        failed, recovered = self._track_faults(readings)
        sensor, temperature = self.hottest(readings, used)
        previous = self.level
        self.level = self._next_level(temperature)
        self.duty = self._next_duty(temperature, dt_s, previous)
        return Decision(
            level=self.level,
            previous=previous,
            duty=self.duty if self.level < Level.PAUSED else 0.0,
            sensor=sensor,
            temperature=temperature,
            failed=failed,
            recovered=recovered,
            faults=frozenset(self._faults),
        )

    def _track_faults(
        self, readings: Mapping[Sensor, Reading]
    ) -> tuple[tuple[Reading, ...], tuple[Reading, ...]]:
        failed, recovered = [], []
        for sensor, reading in readings.items():
            if not reading.ok and sensor not in self._faults:
                self._faults[sensor] = reading
                failed.append(reading)
            elif reading.ok and sensor in self._faults:
                del self._faults[sensor]
                recovered.append(reading)
        return tuple(failed), tuple(recovered)

    def _next_level(self, temperature: float) -> Level:
        t = self.thresholds
        up = max(level for level in Level if temperature >= t.start_of(level))
        if up >= self.level:
            return up
        level = self.level
        while level > Level.NOMINAL and temperature < t.start_of(level) - t.hysteresis_c:
            level = Level(level - 1)
        return level

    def _next_duty(self, temperature: float, dt_s: float, previous: Level) -> float:
        if self.level == Level.NOMINAL:
            self._error = None
            return 1.0
        # Velocity-form PI on the distance below the throttle threshold; clamped output, so the
        # integral cannot wind up. It runs while paused too, so that the duty it resumes with
        # reflects the heat that made it pause.
        error = self.thresholds.throttle_c - temperature
        duty = self.duty
        if self._error is not None:
            duty += self.gains.kp * (error - self._error) + self.gains.ki * error * max(dt_s, 0.0)
        elif previous == Level.NOMINAL:
            duty = 1.0
        self._error = error
        return min(1.0, max(self.gains.min_duty, duty))
