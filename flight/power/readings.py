"""What a power source gives the governor: the battery's state of charge, voltage and current,
the solar array's and the payload's power, whether the spacecraft is sunlit, and for each
quantity that was asked for but not read, why not."""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from flight.thermal.readings import SensorFault


class Quantity(enum.IntEnum):
    """What a power source reads (dictionary enum PowerQuantity)."""

    SOC = 0
    VOLTAGE = 1
    CURRENT = 2
    SOLAR = 3
    PAYLOAD = 4
    SUNLIGHT = 5


# Plausible values; beyond them a value is a fault (a driver's error code, a stuck register, a
# unit mistaken by a factor of 1000), not a reading. Currents and powers are those of a small
# satellite's bus: a few hundred watts at most.
VALID_RANGES: dict[Quantity, tuple[float, float]] = {
    Quantity.SOC: (0.0, 100.0),
    Quantity.VOLTAGE: (0.0, 60.0),
    Quantity.CURRENT: (-100.0, 100.0),
    Quantity.SOLAR: (0.0, 1000.0),
    Quantity.PAYLOAD: (0.0, 1000.0),
    Quantity.SUNLIGHT: (0.0, 1.0),
}


@dataclass(frozen=True, slots=True)
class Fault:
    """Why a quantity has no reading."""

    fault: SensorFault
    detail: str = ""


@dataclass(frozen=True, slots=True)
class PowerReadings:
    """One reading of the power system; None where a quantity is not given (or failed: then
    `faults` says why)."""

    soc_pct: float | None
    battery_v: float | None = None
    # Positive while the battery charges, negative while it discharges (the kernel's sign).
    battery_a: float | None = None
    solar_w: float | None = None
    payload_w: float | None = None
    sunlit: bool | None = None
    faults: Mapping[Quantity, Fault] = field(default_factory=dict)

    @property
    def battery_w(self) -> float | None:
        """Power into the battery (negative: out of it), when voltage and current are known."""
        if self.battery_v is None or self.battery_a is None:
            return None
        return self.battery_v * self.battery_a


def plausible(quantity: Quantity, value: float) -> bool:
    low, high = VALID_RANGES[quantity]
    return math.isfinite(value) and low <= value <= high


class PowerSource(Protocol):
    """Where power readings come from: the EPS through the board's sysfs, or the bench's model."""

    def quantities(self) -> tuple[Quantity, ...]:
        """What this source reads (a board whose EPS gives no sunlight flag leaves it out)."""
        ...

    def read(self) -> PowerReadings:
        """A reading of every quantity of `quantities()`, or its fault; never raises."""
        ...
