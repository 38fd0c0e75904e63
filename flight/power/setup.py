"""How the payload builds its power monitor from its configuration, and ties it to its onboard
parameters: the settings it takes from them (levels, duty, priorities), the values it gives them
(readings, level, holds)."""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from flight.config import ConfigError, FlightConfig
from flight.parameters import ParameterError, ParameterPool
from flight.power.battery_model import BatteryModel, SimulatedPower
from flight.power.governor import Budget, PowerGovernor, PowerLevel, PowerSettings, SettingsError
from flight.power.monitor import EventSink, JobQueue, PowerMonitor
from flight.power.readings import PowerSource, Quantity
from flight.power.sunlight import AlwaysSunlit, OrbitSunlight, Sunlight, SunlightFile
from flight.power.sysfs import ChannelLabelError, SysfsPower
from flight.thermal.duty import GateControl

log = logging.getLogger(__name__)

# The settings parameters, and the PowerSettings field each sets.
SETTINGS = {
    "POWER_SLOW_SOC": "slow_soc_pct",
    "POWER_SLOW_DUTY": "slow_duty",
    "POWER_HOLD_SOC": "hold_soc_pct",
    "POWER_HOLD_PRIORITY": "hold_priority",
    "POWER_FLOOR_SOC": "floor_soc_pct",
    "POWER_HYSTERESIS": "hysteresis_pct",
    "POWER_ECLIPSE_PRIORITY": "eclipse_priority",
}
# The dictionary's PowerSource and Sunlight values.
SOURCES = {"none": 0, "sysfs": 1, "model": 2}
SUNLIGHT_ECLIPSE, SUNLIGHT_SUNLIT, SUNLIGHT_UNKNOWN = 0, 1, 2


def settings_of(values: Mapping[str, Any]) -> PowerSettings:
    """The PowerSettings the parameters give (SettingsError when they do not fit together)."""
    return PowerSettings(
        slow_soc_pct=float(values["POWER_SLOW_SOC"]),
        slow_duty=int(values["POWER_SLOW_DUTY"]) / 100.0,  # a percentage on the link
        hold_soc_pct=float(values["POWER_HOLD_SOC"]),
        hold_priority=int(values["POWER_HOLD_PRIORITY"]),
        floor_soc_pct=float(values["POWER_FLOOR_SOC"]),
        hysteresis_pct=float(values["POWER_HYSTERESIS"]),
        eclipse_priority=int(values["POWER_ECLIPSE_PRIORITY"]),
    )


def settings_rule(values: Mapping[str, Any]) -> None:
    """The parameter rule on SETTINGS: ParameterError when the levels are out of order."""
    try:
        settings_of(values)
    except SettingsError as exc:
        raise ParameterError(str(exc)) from None


def sunlight_of(config: FlightConfig, epoch: float, state_dir: Path) -> Sunlight:
    """The bench model's sunlight; a relative sunlight file is taken from the state directory."""
    p = config.power_model
    if p.sunlight == "orbit":
        return OrbitSunlight(
            p.orbit_period_s,
            p.sunlit_fraction,
            epoch,
            phase_s=p.orbit_phase_s,
            time_scale=p.time_scale,
        )
    if p.sunlight == "file":
        return SunlightFile(state_dir / p.sunlight_file)
    return AlwaysSunlit()


def power_source(
    config: FlightConfig,
    gate: GateControl,
    clock: Callable[[], float],
    state_dir: Path,
) -> PowerSource:
    """The EPS's readings in files, or the bench's battery model fed by the gate's busy time."""
    power = config.power
    if power.source == "model":
        model = BatteryModel(config.power_model, power.battery_capacity_wh, power.compute_power_w)
        sunlight = sunlight_of(config, clock(), state_dir)
        return SimulatedPower(model, sunlight, gate.busy_seconds, clock)
    root = Path(power.sysfs_root)
    log.info("power readings under %s: %s", root, power.files())
    try:
        return SysfsPower(root, power.files())
    except ChannelLabelError as exc:
        raise ConfigError(f"[power] {exc}") from None


def build_power(
    config: FlightConfig,
    gate: GateControl,
    queue: JobQueue,
    events: EventSink,
    state_dir: Path,
    clock: Callable[[], float],
    monotonic: Callable[[], float],
) -> PowerMonitor | None:
    """The monitor the configuration describes (not started); None without a power budget."""
    power = config.power
    if power.source == "none":
        return None
    # The model's battery lives time_scale seconds per real second; a board's, one.
    scale = config.power_model.time_scale if power.source == "model" else 1.0
    governor = PowerGovernor(
        Budget(power.battery_capacity_wh, power.compute_power_w, power.reading_lag_s, scale)
    )
    return PowerMonitor(
        power_source(config, gate, clock, state_dir),
        governor,
        gate,
        queue,
        events,
        poll_s=power.poll_interval_s,
        monotonic=monotonic,
    )


def follow_settings(pool: ParameterPool, monitor: PowerMonitor) -> None:
    """Give the monitor the power settings now and whenever they are set."""

    def apply(_raw: Any) -> None:
        # One of several values a command sets may not fit the others until all are set.
        with contextlib.suppress(SettingsError):
            monitor.set_settings(settings_of({name: pool.read_named(name) for name in SETTINGS}))

    for name in SETTINGS:
        pool.subscribe(name, apply)


def power_getters(
    monitor: Callable[[], PowerMonitor | None], source: str, held_jobs: Callable[[], int]
) -> dict[str, Callable[[], object]]:
    """Sources of the power housekeeping parameters. `monitor` gives the monitor when read (None:
    no power budget, every reading NaN); `held_jobs` the queued jobs the budget holds."""

    def reading(quantity: Quantity) -> Callable[[], float]:
        def read() -> float:
            m = monitor()
            return math.nan if m is None else m.quantity(quantity)

        return read

    def lowest() -> float:
        m = monitor()
        return m.lowest_soc_pct if m is not None and math.isfinite(m.lowest_soc_pct) else math.nan

    def sunlight() -> int:
        m = monitor()
        value = math.nan if m is None else m.quantity(Quantity.SUNLIGHT)
        if math.isnan(value):
            return SUNLIGHT_UNKNOWN
        return SUNLIGHT_SUNLIT if value else SUNLIGHT_ECLIPSE

    def level() -> int:
        m = monitor()
        return int(PowerLevel.NOMINAL if m is None else m.level)

    def min_priority() -> int:
        m = monitor()
        return 0 if m is None else m.min_priority()

    return {
        "POWER_SOURCE": lambda: SOURCES[source],
        "BATTERY_SOC": reading(Quantity.SOC),
        "BATTERY_SOC_MIN": lowest,
        "BATTERY_VOLTAGE": reading(Quantity.VOLTAGE),
        "BATTERY_CURRENT": reading(Quantity.CURRENT),
        "SOLAR_POWER": reading(Quantity.SOLAR),
        "PAYLOAD_POWER": reading(Quantity.PAYLOAD),
        "SUNLIGHT": sunlight,
        "POWER_LEVEL": level,
        "POWER_MIN_PRIORITY": min_priority,
        "JOBS_POWER_HELD": lambda: min(held_jobs(), 0xFFFF),
        "POWER_READING_FAULTS": lambda: 0 if (m := monitor()) is None else m.fault_mask,
    }
