"""The Jetson's temperatures from the kernel's thermal zones in sysfs.

Each zone `<root>/sys/class/thermal/thermal_zoneN` holds `type` (the zone's name) and `temp`
(millidegrees Celsius). The root is configurable so that tests (and the bench) read a fake tree.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from flight.thermal.readings import Reading, Sensor, SensorFault, checked, shortened

log = logging.getLogger(__name__)

THERMAL_CLASS_DIR = Path("sys/class/thermal")

# Zone type names per sensor, first match wins. Orin (L4T r35/r36) names its zones cpu-thermal,
# gpu-thermal, cv0..cv2-thermal, soc0..soc2-thermal, tj-thermal; Xavier names them CPU-therm,
# GPU-therm, AUX-therm, AO-therm, PMIC-Die, Tboard_tegra, Tdiode_tegra, thermal-fan-est.
# Orin has no board zone: there BOARD falls back to tj-thermal, the hottest point of the module,
# on which its firmware throttles (87 C) and shuts down (97 C); a sensor worth watching anyway.
DEFAULT_ZONES: dict[Sensor, tuple[str, ...]] = {
    Sensor.CPU: ("cpu-thermal", "CPU-therm"),
    Sensor.GPU: ("gpu-thermal", "GPU-therm"),
    Sensor.BOARD: ("tboard-thermal", "Tboard_tegra", "tboard_tegra", "Tboard", "tj-thermal"),
}

_ZONE_NAME = re.compile(r"thermal_zone([0-9]+)")
_MILLIDEGREES = re.compile(r"[-+]?[0-9]+")


def zone_types(root: Path) -> dict[str, Path]:
    """Zone type -> zone directory for every zone under `root` whose type can be read.

    Zones are taken in zone-number order and the lowest number wins when two share a type.
    An absent or unreadable thermal directory gives an empty mapping.
    """
    thermal = root / THERMAL_CLASS_DIR
    try:
        names = [entry.name for entry in thermal.iterdir()]
    except OSError:
        return {}
    numbered = sorted(
        (int(match.group(1)), name)
        for name in names
        if (match := _ZONE_NAME.fullmatch(name)) is not None
    )
    types: dict[str, Path] = {}
    for _, name in numbered:
        zone = thermal / name
        try:
            zone_type = zone.joinpath("type").read_bytes().decode("utf-8", "replace").strip()
        except OSError:
            continue
        if zone_type:
            types.setdefault(zone_type, zone)
    return types


class SysfsThermal:
    """Temperatures of the board's sensors from its sysfs thermal zones (a `ThermalSource`)."""

    time_scale = 1.0

    def __init__(
        self,
        root: Path = Path("/"),
        zones: Mapping[Sensor, Sequence[str]] = DEFAULT_ZONES,
    ) -> None:
        self._root = root
        self._accepted = {sensor: tuple(zones[sensor]) for sensor in Sensor if zones.get(sensor)}
        # None until the first scan; zone numbers are stable while running, so the scan is
        # repeated only when a zone is not found or a cached one has gone.
        self._types: dict[str, Path] | None = None

    def sensors(self) -> tuple[Sensor, ...]:
        """The fitted sensors: those with at least one accepted zone type."""
        return tuple(self._accepted)

    def read(self) -> dict[Sensor, Reading]:
        """A reading or a fault for every fitted sensor; never raises."""
        rescanned = False
        if self._types is None:
            self._rescan()
            rescanned = True
        readings: dict[Sensor, Reading] = {}
        for sensor in self._accepted:
            reading = self._read_sensor(sensor)
            if reading is None and not rescanned:
                self._rescan()
                rescanned = True
                reading = self._read_sensor(sensor)
            readings[sensor] = reading if reading is not None else self._missing(sensor)
        return readings

    def _rescan(self) -> None:
        self._types = zone_types(self._root)
        log.debug("thermal zones under %s: %s", self._root, sorted(self._types))

    def _read_sensor(self, sensor: Sensor) -> Reading | None:
        """The sensor's reading; None when its zone or the zone's `temp` cannot be found."""
        zone = self._zone(sensor)
        if zone is None:
            return None
        where = f"{zone.name}/temp"
        try:
            raw = zone.joinpath("temp").read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            return Reading(sensor, None, SensorFault.UNREADABLE, shortened(f"{where}: {reason}"))
        text = raw.decode("ascii", "replace").strip()
        if not text:
            return Reading(sensor, None, SensorFault.UNREADABLE, f"{where}: empty")
        if _MILLIDEGREES.fullmatch(text) is None:
            shown = shortened(repr(text))
            return Reading(sensor, None, SensorFault.UNREADABLE, f"{where}: {shown}")
        return checked(sensor, int(text) / 1000.0, f"{where}:")

    def _zone(self, sensor: Sensor) -> Path | None:
        types = self._types or {}
        for name in self._accepted[sensor]:
            if name in types:
                return types[name]
        return None

    def _missing(self, sensor: Sensor) -> Reading:
        """MISSING, naming what was looked for: no zone of an accepted type, or no `temp` in it."""
        zone = self._zone(sensor)
        if zone is not None:
            return Reading(sensor, None, SensorFault.MISSING, f"{zone.name}/temp: missing")
        accepted = ", ".join(self._accepted[sensor])
        return Reading(sensor, None, SensorFault.MISSING, f"no thermal zone of type {accepted}")
