"""The [power] configuration section: where the battery's readings come from, and what a job's
energy is reckoned on (docs/power.md). The levels and priorities are ST[20] parameters, kept
across restarts, as the thermal thresholds are; the [power_model] section is the bench's
battery (flight/power/battery_model.py)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from flight.power.sysfs import PowerFiles

POWER_SOURCES = ("none", "sysfs", "model")
_DEFAULT_FILES = PowerFiles()


@dataclass(frozen=True)
class PowerConfig:
    """[power] keys; a wrong value raises ValueError (the loader names the file)."""

    # "none": no power budget, no job is ever held for power; "sysfs": the EPS's readings in
    # files (below); "model": the bench's battery model ([power_model]).
    source: str = "none"
    # Seconds between two readings.
    poll_interval_s: float = 1.0
    # The battery's usable capacity, and what the compute adds to the payload's draw at full
    # duty: a job's energy is its estimated run time at this power.
    battery_capacity_wh: float = 80.0
    compute_power_w: float = 40.0
    # Seconds a run of a model is reckoned to take until one of its runs has been timed.
    unknown_run_s: float = 10.0
    # How old a reading may be when the payload has it (the EPS's sampling and relay; on the
    # bench the worker's heartbeat): a job's energy check counts compute of that long besides.
    reading_lag_s: float = 2.0
    # The tree under which the files are read (tests point it at a fake tree); the files'
    # units follow their names (flight/power/sysfs.py); "" : not given by this power system.
    # A rail's channel by number (hwmon*/in1_input) or by its label (hwmon*/in{VDD_IN}_input).
    sysfs_root: str = "/"
    soc_file: str = _DEFAULT_FILES.soc
    battery_voltage_file: str = _DEFAULT_FILES.battery_voltage
    battery_current_file: str = _DEFAULT_FILES.battery_current
    solar_power_file: str = ""
    solar_voltage_file: str = ""
    solar_current_file: str = ""
    payload_power_file: str = ""
    payload_voltage_file: str = ""
    payload_current_file: str = ""
    sunlit_file: str = ""
    # 1: the battery current is positive while charging (the kernel's ABI); -1: the reverse.
    current_sign: int = 1

    def __post_init__(self) -> None:
        if self.source not in POWER_SOURCES:
            raise ValueError(
                f"source = {self.source!r}: expected one of "
                + ", ".join(repr(s) for s in POWER_SOURCES)
            )
        for key, low in (
            ("poll_interval_s", 0.0),
            ("battery_capacity_wh", 0.0),
        ):
            value = getattr(self, key)
            if not (math.isfinite(value) and value > low):
                raise ValueError(f"{key} = {value!r}: expected more than {low:g}")
        for key in ("compute_power_w", "unknown_run_s", "reading_lag_s"):
            value = getattr(self, key)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{key} = {value!r}: expected 0 or more")
        self.files()  # refuses a power given twice or half, and a current sign but 1 or -1
        if self.source == "sysfs" and not self.soc_file:
            raise ValueError("soc_file is empty: the budget needs the state of charge")

    def files(self) -> PowerFiles:
        return PowerFiles(
            soc=self.soc_file,
            battery_voltage=self.battery_voltage_file,
            battery_current=self.battery_current_file,
            solar_power=self.solar_power_file,
            solar_voltage=self.solar_voltage_file,
            solar_current=self.solar_current_file,
            payload_power=self.payload_power_file,
            payload_voltage=self.payload_voltage_file,
            payload_current=self.payload_current_file,
            sunlit=self.sunlit_file,
            current_sign=self.current_sign,
        )
