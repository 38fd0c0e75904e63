"""What a temperature source gives the governor: one reading per sensor, or why there is none."""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from typing import Protocol


class Sensor(enum.IntEnum):
    """The payload's temperature sensors (dictionary enum ThermalSensor)."""

    CPU = 0
    GPU = 1
    BOARD = 2


class SensorFault(enum.IntEnum):
    """Why a sensor gives no reading (dictionary enum SensorFault)."""

    MISSING = 1
    UNREADABLE = 2
    OUT_OF_RANGE = 3


# Plausible readings: Jetson zones report -40 to 125 C; beyond this range a value is a fault
# (a driver's error code, a stuck register), not a temperature.
VALID_RANGE_C = (-55.0, 150.0)
# What a fault's detail or a failure's reason is cut to: enough to tell the cause, short in an
# event.
MAX_DETAIL = 60


@dataclass(frozen=True, slots=True)
class Reading:
    """One sensor's temperature in degrees Celsius, or the fault that left it without one."""

    sensor: Sensor
    celsius: float | None
    fault: SensorFault | None = None
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.fault is None and self.celsius is not None


def checked(sensor: Sensor, celsius: float, where: str = "") -> Reading:
    """A reading of `celsius`, or an OUT_OF_RANGE fault when it is not a plausible temperature."""
    low, high = VALID_RANGE_C
    if not math.isfinite(celsius) or not low <= celsius <= high:
        return Reading(
            sensor, None, SensorFault.OUT_OF_RANGE, f"{where} read {celsius:g} C".strip()
        )
    return Reading(sensor, celsius)


def shortened(text: str) -> str:
    """`text`, cut to MAX_DETAIL characters with an ellipsis when longer."""
    if len(text) <= MAX_DETAIL:
        return text
    return text[: MAX_DETAIL - 3] + "..."


class ThermalSource(Protocol):
    """Where temperatures come from: the board's sysfs, or the bench's thermal model."""

    #: Seconds of the source's (thermal) time per second of real time: 1 on a board, more on a
    #: bench whose model runs faster than real time. The governor's controller works in the
    #: source's time, so that its gains hold for the physics whatever the speed-up.
    time_scale: float

    def sensors(self) -> tuple[Sensor, ...]:
        """The sensors this payload has (a board without a board sensor leaves BOARD out)."""
        ...

    def read(self) -> dict[Sensor, Reading]:
        """A reading (or a fault) for every sensor of `sensors()`; never raises."""
        ...
