"""The power system's readings from files: the kernel's power_supply class and hwmon rails, or
files a relay of the EPS's telemetry keeps in the same form.

A file's unit is the one the kernel's ABI gives its name: power_supply `capacity` in %,
`voltage_*` in uV, `current_*` in uA, `power_*` in uW; hwmon `in<N>_input` in mV, `curr<N>_input`
in mA, `power<N>_input` in uW; the older Jetson INA3221 IIO driver's `in_voltage<N>_input` in mV,
`in_current<N>_input` in mA, `in_power<N>_input` in mW. A file with any other name holds its value
in plain units (%, V, A, W; the sunlight flag 0 or 1). Paths are relative to a configurable root
(tests read a fake tree) and may hold wildcards: hwmon numbers its devices in probe order, which
can change from one boot to the next.

A file's name may give its channel by the channel's label instead of its number, in braces:
`in{VDD_IN}_input`, `curr{VDD_IN}_input` is the channel whose hwmon `in<N>_label` (or, with the
older IIO driver, `rail_name_<N>`) in the same directory reads `VDD_IN`. Labels are resolved once,
when the reader is made; a label no channel has is a ChannelLabelError naming the labels found.
"""

from __future__ import annotations

import dataclasses
import glob
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flight.power.readings import Fault, PowerReadings, Quantity, plausible
from flight.thermal.readings import SensorFault, shortened

log = logging.getLogger(__name__)

# File names -> the factor to the plain unit, first match wins.
_SCALES: tuple[tuple[re.Pattern[str], float], ...] = (
    (re.compile(r"capacity"), 1.0),
    (re.compile(r"(voltage|current|power)_(now|avg|ocv|boot)"), 1e-6),
    (re.compile(r"(in|curr)[0-9]+_input"), 1e-3),
    (re.compile(r"power[0-9]+_(input|average)"), 1e-6),
    (re.compile(r"in_(voltage|current|power)[0-9]+_input"), 1e-3),
)


# A channel given by its label in a file's name, and the files that label channels: hwmon's
# in<N>_label, the older Jetson INA3221 IIO driver's rail_name_<N>.
_LABEL = re.compile(r"\{([^{}]*)\}")
_LABEL_FILES = (re.compile(r"in([0-9]+)_label"), re.compile(r"rail_name_([0-9]+)"))


class ChannelLabelError(ValueError):
    """A file names its channel by a label that no channel in its directory has."""


def unit_scale(path: str) -> float:
    """The factor from the value in the file `path` to %, V, A or W, by the file's name."""
    name = path.rsplit("/", 1)[-1]
    for pattern, scale in _SCALES:
        if pattern.fullmatch(name):
            return scale
    return 1.0


@dataclass(frozen=True, slots=True)
class PowerFiles:
    """Where each quantity is read, relative to the root ("": not given by this power system).

    A power is read from its power file or, when that is "", as the product of its voltage and
    current files (an INA3221 rail gives only these two)."""

    soc: str = "sys/class/power_supply/battery/capacity"
    battery_voltage: str = "sys/class/power_supply/battery/voltage_now"
    battery_current: str = "sys/class/power_supply/battery/current_now"
    solar_power: str = ""
    solar_voltage: str = ""
    solar_current: str = ""
    payload_power: str = ""
    payload_voltage: str = ""
    payload_current: str = ""
    sunlit: str = ""
    # 1: the current is positive while the battery charges (the kernel's ABI); -1 for a gauge
    # whose driver reports the discharge as positive (some do).
    current_sign: int = 1

    def __post_init__(self) -> None:
        if self.current_sign not in (1, -1):
            raise ValueError(f"current_sign must be 1 or -1, got {self.current_sign!r}")
        for field in _PATH_FIELDS:
            check_label_syntax(getattr(self, field))
        for what in ("solar", "payload"):
            power = getattr(self, f"{what}_power")
            pair = (getattr(self, f"{what}_voltage"), getattr(self, f"{what}_current"))
            if power and any(pair):
                raise ValueError(f"{what}: give a power file or a voltage and a current, not both")
            if bool(pair[0]) != bool(pair[1]):
                raise ValueError(f"{what}: a voltage file needs a current file and back")

    def quantities(self) -> tuple[Quantity, ...]:
        given = {
            Quantity.SOC: self.soc,
            Quantity.VOLTAGE: self.battery_voltage,
            Quantity.CURRENT: self.battery_current,
            Quantity.SOLAR: self.solar_power or self.solar_voltage,
            Quantity.PAYLOAD: self.payload_power or self.payload_voltage,
            Quantity.SUNLIGHT: self.sunlit,
        }
        return tuple(q for q, path in given.items() if path)


# PowerFiles' paths: every field but the sign (a path field added later is checked and resolved).
_PATH_FIELDS = tuple(f.name for f in dataclasses.fields(PowerFiles) if f.name != "current_sign")


def check_label_syntax(path: str) -> None:
    """ValueError unless braces in `path` are one label in its file's name (`in{VDD_IN}_input`)."""
    directory, _, name = path.rpartition("/")
    if "{" in directory or "}" in directory:
        raise ValueError(f"{path}: a channel's label goes in the file's name, not a directory's")
    rest = _LABEL.sub("", name, count=1)
    if "{" in rest or "}" in rest:
        raise ValueError(f"{path}: give one channel label in braces, e.g. in{{VDD_IN}}_input")
    match = _LABEL.search(name)
    if match is not None and not match.group(1).strip():
        raise ValueError(f"{path}: the braces hold no channel label")


def channel_labels(directory: Path) -> dict[str, int]:
    """Each channel's label in `directory` (hwmon `in<N>_label`, IIO `rail_name_<N>`) and its
    number; a label two channels have is the lower one's (an INA3221's bus voltage inputs come
    before its shunt voltage inputs)."""
    found: dict[str, int] = {}
    try:
        entries = sorted(directory.iterdir())
    except OSError:
        return found
    for entry in entries:
        for pattern in _LABEL_FILES:
            match = pattern.fullmatch(entry.name)
            if match is None:
                continue
            try:
                label = entry.read_text(encoding="ascii", errors="replace").strip()
            except OSError:
                continue
            number = int(match.group(1))
            if label and number < found.get(label, number + 1):
                found[label] = number
    return found


def resolve_label(root: Path, path: str) -> str:
    """`path` with the channel label in its file's name replaced by that channel's number, read
    in the first directory (in sorted order) its directory part matches; unchanged without a
    label. ChannelLabelError when no channel there has the label."""
    directory, _, name = path.rpartition("/")
    match = _LABEL.search(name)
    if match is None:
        return path
    label = match.group(1).strip()
    where = root / directory
    if glob.has_magic(directory):
        matches = sorted(p for p in root.glob(directory) if p.is_dir())
        where = matches[0] if matches else where
    labels = channel_labels(where)
    if label not in labels:
        found = ", ".join(f"{name} ({n})" for name, n in sorted(labels.items(), key=lambda i: i[1]))
        raise ChannelLabelError(
            f"{path}: no channel labelled {label!r} in {where} (labels found: {found or 'none'})"
        )
    resolved = f"{directory}/" if directory else ""
    return resolved + name[: match.start()] + str(labels[label]) + name[match.end() :]


def resolve_labels(root: Path, files: PowerFiles) -> PowerFiles:
    """`files` with every channel given by its label given by its number (`resolve_label`)."""
    changes: dict[str, Any] = {}
    for field in _PATH_FIELDS:
        path = getattr(files, field)
        resolved = resolve_label(root, path)
        if resolved != path:
            log.info("power: %s is %s", path, resolved)
            changes[field] = resolved
    return dataclasses.replace(files, **changes)


class _Unread(Exception):
    def __init__(self, fault: SensorFault, detail: str) -> None:
        super().__init__(detail)
        self.fault = Fault(fault, shortened(detail))


class SysfsPower:
    """A `PowerSource` reading files under `root`."""

    def __init__(self, root: Path, files: PowerFiles) -> None:
        """ChannelLabelError when a file names a channel by a label no channel has."""
        self._root = root
        self.files = resolve_labels(root, files)
        self._resolved: dict[str, Path] = {}

    def quantities(self) -> tuple[Quantity, ...]:
        return self.files.quantities()

    def read(self) -> PowerReadings:
        """Every quantity given, or its fault; never raises."""
        f = self.files
        values: dict[Quantity, float] = {}
        faults: dict[Quantity, Fault] = {}
        reads = {
            Quantity.SOC: lambda: self._value(f.soc),
            Quantity.VOLTAGE: lambda: self._value(f.battery_voltage),
            Quantity.CURRENT: lambda: self._value(f.battery_current) * f.current_sign,
            Quantity.SOLAR: lambda: self._power(f.solar_power, f.solar_voltage, f.solar_current),
            Quantity.PAYLOAD: lambda: self._power(
                f.payload_power, f.payload_voltage, f.payload_current
            ),
            Quantity.SUNLIGHT: lambda: self._value(f.sunlit),
        }
        for quantity in self.quantities():
            try:
                value = reads[quantity]()
            except _Unread as exc:
                faults[quantity] = exc.fault
                continue
            if not plausible(quantity, value) or (
                quantity is Quantity.SUNLIGHT and value not in (0.0, 1.0)
            ):
                faults[quantity] = Fault(SensorFault.OUT_OF_RANGE, f"read {value:g}")
                continue
            values[quantity] = value
        sunlit = values.get(Quantity.SUNLIGHT)
        return PowerReadings(
            soc_pct=values.get(Quantity.SOC),
            battery_v=values.get(Quantity.VOLTAGE),
            battery_a=values.get(Quantity.CURRENT),
            solar_w=values.get(Quantity.SOLAR),
            payload_w=values.get(Quantity.PAYLOAD),
            sunlit=None if sunlit is None else sunlit == 1.0,
            faults=faults,
        )

    def _power(self, power: str, voltage: str, current: str) -> float:
        if power:
            return self._value(power)
        return self._value(voltage) * self._value(current)

    def _value(self, path: str) -> float:
        """The value of the file `path` in plain units; _Unread when it has none."""
        file = self._file(path)
        try:
            raw = file.read_bytes()
        except FileNotFoundError:
            # Renumbered devices: every wildcard is matched again next time, not only this one.
            self._resolved.clear()
            raise _Unread(SensorFault.MISSING, f"{path}: missing") from None
        except OSError as exc:
            raise _Unread(SensorFault.UNREADABLE, f"{path}: {exc.strerror or exc}") from None
        text = raw.decode("ascii", "replace").strip()
        try:
            value = float(text)
        except ValueError:
            raise _Unread(SensorFault.UNREADABLE, f"{path}: {text[:20]!r}") from None
        return value * unit_scale(file.name)

    def _file(self, path: str) -> Path:
        found = self._resolved.get(path)
        if found is not None:
            return found
        if glob.has_magic(path):
            matches = sorted(self._root.glob(path))
            if not matches:
                raise _Unread(SensorFault.MISSING, f"{path}: no such file")
            found = matches[0]
            log.info("power: %s is %s", path, found)
        else:
            found = self._root / path
        self._resolved[path] = found
        return found
