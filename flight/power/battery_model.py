"""The bench's power system: a battery charged by a solar array while sunlit and drained by the
spacecraft's loads and the payload, whose compute draws in proportion to its inference duty;
run faster than real time behind `PowerSource`.

    dE/dt = P_solar(sunlit) - P_bus - P_idle - duty * P_compute,   0 <= E <= capacity

(watts; E in watt-hours after dividing by 3600). A full battery sheds what the array gives beyond
the loads, as an EPS's shunt regulator does. The input is constant between sunlight changes, so
a step is exact however long, once cut at the changes.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from flight.model_parameters import check_numbers
from flight.power.readings import PowerReadings, Quantity
from flight.power.sunlight import Sunlight
from flight.thermal.duty import DutyMeter

SUNLIGHT_KINDS = ("always", "orbit", "file")
_NON_NEGATIVE = ("solar_w", "bus_load_w", "payload_idle_w", "orbit_phase_s")
_TEXT = ("sunlight", "sunlight_file")
_POSITIVE = ("voltage_empty_v", "voltage_full_v", "orbit_period_s", "time_scale")


@dataclass(frozen=True, slots=True)
class PowerModelParameters:
    """The [power_model] configuration keys (watts, volts, seconds, %); the battery's capacity
    and the compute's power are those the governor uses ([power] battery_capacity_wh,
    compute_power_w), so that the bench's battery is the one the payload budgets for.

    initial_soc_pct: state of charge when the payload starts.
    solar_w: what the array gives while sunlit (W).
    bus_load_w: the spacecraft's other loads on the battery (W).
    payload_idle_w: the payload with nothing computing (W).
    voltage_empty_v, voltage_full_v: the battery's voltage at 0 and 100 % (linear between).
    sunlight: "always", "orbit" (orbit_period_s, sunlit_fraction, orbit_phase_s: seconds into
      a period at start, the sunlit arc first) or "file" (sunlight_file, see sunlight.py).
    time_scale: model seconds per real second (the bench's speed-up).
    """

    initial_soc_pct: float = 80.0
    solar_w: float = 60.0
    bus_load_w: float = 10.0
    payload_idle_w: float = 8.0
    voltage_empty_v: float = 6.0
    voltage_full_v: float = 8.4
    sunlight: str = "always"
    orbit_period_s: float = 5700.0
    sunlit_fraction: float = 0.6
    orbit_phase_s: float = 0.0
    sunlight_file: str = ""
    time_scale: float = 1.0

    def __post_init__(self) -> None:
        for name in _TEXT:
            if not isinstance(getattr(self, name), str):
                raise ValueError(f"{name} must be a string, got {getattr(self, name)!r}")
        check_numbers(self, positive=_POSITIVE, non_negative=_NON_NEGATIVE, others=_TEXT)
        if not 0.0 <= self.initial_soc_pct <= 100.0:
            raise ValueError(f"initial_soc_pct must be in [0, 100], got {self.initial_soc_pct!r}")
        if not 0.0 <= self.sunlit_fraction <= 1.0:
            raise ValueError(f"sunlit_fraction must be in [0, 1], got {self.sunlit_fraction!r}")
        if not self.voltage_empty_v < self.voltage_full_v:
            raise ValueError("voltage_empty_v must be below voltage_full_v")
        if self.sunlight not in SUNLIGHT_KINDS:
            kinds = ", ".join(repr(k) for k in SUNLIGHT_KINDS)
            raise ValueError(f"sunlight = {self.sunlight!r}: expected one of {kinds}")
        if self.sunlight == "file" and not self.sunlight_file:
            raise ValueError('sunlight = "file" needs sunlight_file')


class BatteryModel:
    """The battery's energy (Wh), advanced by `step`."""

    def __init__(
        self, parameters: PowerModelParameters, capacity_wh: float, compute_w: float
    ) -> None:
        if not (math.isfinite(capacity_wh) and capacity_wh > 0):
            raise ValueError(f"battery capacity must be above 0 Wh, got {capacity_wh!r}")
        if not (math.isfinite(compute_w) and compute_w >= 0):
            raise ValueError(f"compute power must be 0 W or more, got {compute_w!r}")
        self.parameters = parameters
        self.capacity_wh = capacity_wh
        self.compute_w = compute_w
        self.energy_wh = capacity_wh * parameters.initial_soc_pct / 100.0

    @property
    def soc_pct(self) -> float:
        return 100.0 * self.energy_wh / self.capacity_wh

    @property
    def voltage_v(self) -> float:
        p = self.parameters
        return p.voltage_empty_v + (p.voltage_full_v - p.voltage_empty_v) * self.soc_pct / 100.0

    def solar_w(self, sunlit: bool) -> float:
        return self.parameters.solar_w if sunlit else 0.0

    def payload_w(self, duty: float) -> float:
        return self.parameters.payload_idle_w + duty * self.compute_w

    def net_w(self, sunlit: bool, duty: float) -> float:
        """Power into the battery (negative: out of it) before the shunt."""
        return self.solar_w(sunlit) - self.parameters.bus_load_w - self.payload_w(duty)

    def battery_w(self, sunlit: bool, duty: float) -> float:
        """Power into the battery: a full one takes no charge, an empty one gives nothing."""
        net = self.net_w(sunlit, duty)
        if (net > 0 and self.energy_wh >= self.capacity_wh) or (net < 0 and self.energy_wh <= 0):
            return 0.0
        return net

    def step(self, seconds: float, sunlit: bool, duty: float) -> None:
        """`seconds` of model time in constant sunlight at a constant duty."""
        if not 0.0 <= duty <= 1.0:  # also refuses NaN
            raise ValueError(f"duty must be in [0, 1], got {duty!r}")
        if seconds <= 0:
            return
        energy = self.energy_wh + self.net_w(sunlit, duty) * seconds / 3600.0
        self.energy_wh = min(max(energy, 0.0), self.capacity_wh)


class SimulatedPower:
    """The bench's `PowerSource`: the battery model driven by the payload's inference duty and
    the sunlight, over the payload's clock (UNIX seconds, as the sunlight file's)."""

    def __init__(
        self,
        model: BatteryModel,
        sunlight: Sunlight,
        busy_seconds: Callable[[], float],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.model = model
        self.sunlight = sunlight
        self.time_scale = model.parameters.time_scale
        self._meter = DutyMeter(busy_seconds)
        self._clock = clock
        self._duty = 0.0

    def quantities(self) -> tuple[Quantity, ...]:
        return tuple(Quantity)

    def read(self) -> PowerReadings:
        """Advance the model to now at the duty measured since the last read (the first read
        only starts the clock), and read it."""
        now = self._clock()
        step = self._meter.advance(now)
        if step is not None:
            then, self._duty = step
            for start, end, sunlit in self.sunlight.segments(then, now):
                self.model.step((end - start) * self.time_scale, sunlit, self._duty)
        sunlit = self.sunlight.sunlit_at(now)
        model = self.model
        volts = model.voltage_v
        return PowerReadings(
            soc_pct=model.soc_pct,
            battery_v=volts,
            battery_a=model.battery_w(sunlit, self._duty) / volts,
            solar_w=model.solar_w(sunlit),
            payload_w=model.payload_w(self._duty),
            sunlit=sunlit,
        )
