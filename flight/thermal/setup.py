"""How the payload builds its thermal monitor from its configuration, and ties it to its onboard
parameters: the settings it takes from them, the values it gives them."""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from flight.config import FlightConfig
from flight.parameters import ParameterError, ParameterPool
from flight.thermal.baseplate import BaseplateFile
from flight.thermal.duty import GateControl
from flight.thermal.governor import Level, ThresholdError, Thresholds
from flight.thermal.monitor import (
    POWER_MODE_UNKNOWN,
    EventSink,
    PowerModes,
    SafeModeStore,
    ThermalActions,
    ThermalMonitor,
)
from flight.thermal.power import NoPowerControl, Nvpmodel, PowerControl
from flight.thermal.rc_model import SimulatedThermal
from flight.thermal.readings import Sensor, ThermalSource
from flight.thermal.sysfs import SysfsThermal, zone_types

log = logging.getLogger(__name__)

# The threshold parameters, in the order Thresholds takes them.
THRESHOLDS = ("THERMAL_THROTTLE", "THERMAL_PAUSE", "THERMAL_CRITICAL", "THERMAL_HYSTERESIS")

# The payload's modes (dictionary enum Mode).
MODE_NOMINAL = 0
MODE_THROTTLED = 1
MODE_SAFE = 2


def thresholds_rule(values: Mapping[str, Any]) -> None:
    """The parameter rule on THRESHOLDS: ParameterError when they are out of order."""
    try:
        Thresholds(*(float(values[name]) for name in THRESHOLDS))
    except ThresholdError as exc:
        raise ParameterError(str(exc)) from None


def thermal_source(
    config: FlightConfig,
    gate: GateControl,
    monotonic: Callable[[], float],
    state_dir: Path,
    clock: Callable[[], float],
) -> ThermalSource:
    """The board's sysfs zones, or the bench's thermal model fed by the gate's busy time (on
    the baseplate file's profile when it names one; relative: from `state_dir`)."""
    thermal = config.thermal
    if thermal.source == "simulated":
        model = config.thermal_model
        baseplate = None
        if model.baseplate_file:
            baseplate = BaseplateFile(state_dir / model.baseplate_file, model.baseplate_c)
        return SimulatedThermal(
            model, gate.busy_seconds, monotonic, baseplate=baseplate, clock=clock
        )
    root = Path(thermal.sysfs_root)
    found = zone_types(root)
    if found:
        log.info("thermal zones under %s: %s", root, ", ".join(sorted(found)))
    else:
        log.warning(
            "no thermal zone under %s: jobs are held until the sensors read (a bench without "
            'sensors runs on the thermal model: [thermal] source = "simulated")',
            root,
        )
    return SysfsThermal(root, thermal.zones())


def build_monitor(
    config: FlightConfig,
    gate: GateControl,
    actions: ThermalActions,
    events: EventSink,
    store: SafeModeStore,
    monotonic: Callable[[], float],
    state_dir: Path,
    clock: Callable[[], float],
) -> ThermalMonitor:
    """The monitor the configuration describes (not started)."""
    thermal = config.thermal
    power: PowerControl = Nvpmodel(thermal.nvpmodel) if thermal.nvpmodel else NoPowerControl()

    def mode(number: int) -> int | None:
        return None if number < 0 else number

    return ThermalMonitor(
        thermal_source(config, gate, monotonic, state_dir, clock),
        gate,
        actions,
        events,
        store,
        power,
        PowerModes(
            mode(thermal.power_mode_nominal),
            mode(thermal.power_mode_throttled),
            mode(thermal.power_mode_safe),
        ),
        poll_s=thermal.poll_interval_s,
        monotonic=monotonic,
    )


def follow_settings(pool: ParameterPool, monitor: ThermalMonitor) -> None:
    """Give the monitor the thermal settings now and whenever they are set."""

    def thresholds(_raw: Any) -> None:
        # One of several values a command sets may not fit the others until all are set.
        with contextlib.suppress(ThresholdError):
            monitor.set_thresholds(Thresholds(*(pool.read_named(n) for n in THRESHOLDS)))

    for name in THRESHOLDS:
        pool.subscribe(name, thresholds)
    pool.subscribe(
        "THERMAL_SENSORS_USED",
        lambda mask: monitor.set_used([s for s in Sensor if int(mask) >> s & 1]),
    )
    pool.subscribe("SAFE_MODE_AUTO_EXIT", lambda on: setattr(monitor, "auto_exit", bool(on)))


def payload_mode(monitor: ThermalMonitor) -> int:
    """MODE: SAFE in safe mode, THROTTLED while the governor throttles or pauses."""
    if monitor.safe is not None:
        return MODE_SAFE
    return MODE_THROTTLED if monitor.level in (Level.THROTTLED, Level.PAUSED) else MODE_NOMINAL


def thermal_getters(
    monitor: Callable[[], ThermalMonitor], gate: GateControl
) -> dict[str, Callable[[], object]]:
    """Sources of the thermal housekeeping parameters and MODE. `monitor` gives the monitor
    when read: the pool is made before it (the monitor's safe mode is kept by the pool's
    protected state)."""

    def temperature(sensor: Sensor) -> Callable[[], float]:
        return lambda: monitor().temperature(sensor)

    def time_in(level: Level) -> Callable[[], int]:
        return lambda: min(int(monitor().seconds_in(level)), 0xFFFFFFFF)

    def peak() -> float:
        value = monitor().peak_c
        return value if math.isfinite(value) else math.nan

    def power_mode() -> int:
        mode = monitor().power_mode
        return POWER_MODE_UNKNOWN if mode is None else mode

    return {
        "MODE": lambda: payload_mode(monitor()),
        "TEMP_CPU": temperature(Sensor.CPU),
        "TEMP_GPU": temperature(Sensor.GPU),
        "TEMP_BOARD": temperature(Sensor.BOARD),
        "TEMP_PEAK": peak,
        "THERMAL_LEVEL": lambda: int(monitor().level),
        "SENSOR_FAULTS": lambda: monitor().fault_mask,
        "DUTY_ALLOWED": lambda: round(gate.duty * 100),
        "DUTY_MEASURED": lambda: round(monitor().duty_measured() * 100),
        "POWER_MODE": power_mode,
        **{f"TIME_{level.name}": time_in(level) for level in Level},
    }
