"""The payload's configuration file (TOML): mission link parameters and run settings.

Every key has the ICD's default, so the file only lists what a mission changes, e.g.

    [link]
    scid = 500
    apid = 100
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flight.files.upload_store import DEFAULT_MAX_RANGES, DEFAULT_MAX_UPLOADS
from flight.power.battery_model import PowerModelParameters
from flight.power.config import PowerConfig
from flight.schedule.config import ScheduleConfig
from flight.services.files import MAX_DOWNLOADS
from flight.thermal.rc_model import ThermalModelParameters
from flight.thermal.readings import Sensor
from flight.thermal.sysfs import DEFAULT_ZONES
from spacelink.icd import LinkParameters, TmCoding


class ConfigError(Exception):
    """The configuration file is missing, unreadable or holds a wrong key or value."""


@dataclass(frozen=True)
class StorageConfig:
    """Room for files, models and results in the state directory."""

    # Octets the file store may hold: uploads, stored inputs and results.
    quota_bytes: int = 4 * 1024**3
    # Free space the store always leaves on the disk, for the system and the databases.
    reserve_bytes: int = 256 * 1024**2
    # Largest model file the registry accepts.
    max_model_bytes: int = 512 * 1024**2
    # Uploads in progress and downloads being sent at most (TOO_MANY_TRANSFERS beyond): each
    # holds a descriptor open.
    max_uploads: int = DEFAULT_MAX_UPLOADS
    max_downloads: int = MAX_DOWNLOADS
    # Separate received ranges one upload may hold (RESOURCES_EXHAUSTED beyond).
    max_ranges: int = DEFAULT_MAX_RANGES
    # Room of the packet stores (ST[15]): ALL keeps every real-time TM packet (about a day of
    # housekeeping, events and reports at the default rates), EVENTS events and verification
    # reports only, for longer.
    packet_store_bytes: int = 256 * 1024**2
    event_store_bytes: int = 32 * 1024**2


@dataclass(frozen=True)
class JobsConfig:
    """How jobs run."""

    # onnxruntime intra-op threads per session; 0: one fewer than the cores (at least one).
    intra_op_threads: int = 0
    # Sessions (loaded models) kept ready.
    session_cache: int = 4
    # Jobs the queue holds at most.
    max_queued: int = 1000
    # Jobs compute in a supervised worker process (false: in the payload's own process, where a
    # crash of onnxruntime or a driver takes the link down too).
    worker: bool = True
    # The worker's memory limit (heap and private mappings), MiB; 0: none.
    worker_memory_mb: int = 0


@dataclass(frozen=True)
class ProtectionConfig:
    """[protection]: what the ground may not change by command."""

    # Test commands (FAULT_INJECT) corrupt the payload on purpose: off in flight.
    test_commands: bool = False


AUTHENTICATION_MODES = ("required", "off")
TM_CODINGS = tuple(c.value for c in TmCoding)


@dataclass(frozen=True)
class SecurityConfig:
    """[security]: authentication of the uplink (docs/security.md)."""

    # "required": every TC frame must carry a valid security header and MAC; "off": ICD v1
    # frames, unauthenticated: anyone who reaches the link commands the payload.
    authentication: str = "required"
    # The uplink key file (mode 0600, owned by the payload's user); a relative path is taken
    # from the state directory.
    key_file: str = "uplink-keys.toml"


THERMAL_SOURCES = ("sysfs", "simulated")


@dataclass(frozen=True)
class ThermalConfig:
    """[thermal]: where temperatures come from and how the power mode is set."""

    # "sysfs": the board's thermal zones; "simulated": the bench's thermal model ([thermal_model]).
    source: str = "sysfs"
    # The tree under which sys/class/thermal is read (tests point it at a fake tree).
    sysfs_root: str = "/"
    # Zone types (sysfs `type`) accepted for each sensor, first match wins; [] : not fitted.
    cpu_zones: list[str] = field(default_factory=lambda: list(DEFAULT_ZONES[Sensor.CPU]))
    gpu_zones: list[str] = field(default_factory=lambda: list(DEFAULT_ZONES[Sensor.GPU]))
    board_zones: list[str] = field(default_factory=lambda: list(DEFAULT_ZONES[Sensor.BOARD]))
    # Seconds between two readings of the sensors.
    poll_interval_s: float = 0.5
    # The nvpmodel command, e.g. ["sudo", "-n", "nvpmodel"]; []: the power mode is not touched.
    nvpmodel: list[str] = field(default_factory=list)
    # nvpmodel mode numbers at NOMINAL, at THROTTLED and PAUSED, in safe mode; -1: left alone.
    power_mode_nominal: int = -1
    power_mode_throttled: int = -1
    power_mode_safe: int = -1

    def zones(self) -> dict[Sensor, list[str]]:
        return {
            Sensor.CPU: self.cpu_zones,
            Sensor.GPU: self.gpu_zones,
            Sensor.BOARD: self.board_zones,
        }


@dataclass(frozen=True)
class LifecycleConfig:
    """[lifecycle]: the payload process's supervision (docs/jetson.md, "Supervision")."""

    # A hardware watchdog device kicked by the payload itself, e.g. "/dev/watchdog"; "": none
    # (systemd's own RuntimeWatchdogSec is the usual owner of the board's watchdog).
    watchdog_device: str = ""
    # Seconds between two kicks at most (and every half of systemd's WatchdogSec at least).
    kick_interval_s: float = 1.0
    # LIFECYCLE_EXECUTE BOARD runs this, e.g. ["sudo", "-n", "/usr/bin/systemctl", "reboot"];
    # it must return once the reboot is under way. Refused unless allow_reboot is true.
    reboot_command: list[str] = field(default_factory=list)
    allow_reboot: bool = False
    # How long LIFECYCLE_ARM keeps an action armed.
    arm_timeout_s: float = 30.0


@dataclass(frozen=True)
class FlightConfig:
    link: LinkParameters = field(default_factory=LinkParameters)
    storage: StorageConfig = field(default_factory=StorageConfig)
    jobs: JobsConfig = field(default_factory=JobsConfig)
    protection: ProtectionConfig = field(default_factory=ProtectionConfig)
    thermal: ThermalConfig = field(default_factory=ThermalConfig)
    thermal_model: ThermalModelParameters = field(default_factory=ThermalModelParameters)
    security: SecurityConfig = field(default_factory=SecurityConfig)
    lifecycle: LifecycleConfig = field(default_factory=LifecycleConfig)
    power: PowerConfig = field(default_factory=PowerConfig)
    power_model: PowerModelParameters = field(default_factory=PowerModelParameters)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)


def _same_kind(value: object, default: object) -> bool:
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(value, bool) and isinstance(default, bool)
    if isinstance(default, float):
        return isinstance(value, int | float)
    if isinstance(default, list):
        return isinstance(value, list) and all(isinstance(item, str) for item in value)
    return isinstance(value, type(default))


def _section(cls: type, values: dict[str, Any], where: str) -> Any:
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key, value in values.items():
        if key not in fields:
            known = ", ".join(sorted(fields))
            raise ConfigError(f"unknown key {key!r} in {where} (known keys: {known})")
        default = getattr(cls(), key)
        if not _same_kind(value, default):
            kind = "list of strings" if isinstance(default, list) else type(default).__name__
            raise ConfigError(f"{where} {key} = {value!r}: expected a {kind}")
    try:
        return cls(**values)
    except ValueError as exc:  # a value the section itself refuses (ranges, relations)
        raise ConfigError(f"{where}: {exc}") from None


SECTIONS = (
    "link", "storage", "jobs", "protection", "thermal", "thermal_model", "security", "lifecycle",
    "power", "power_model",
    "schedule",
)  # fmt: skip


def _read(path: Path) -> dict[str, Any]:
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"configuration file {path} does not exist") from None
    except OSError as exc:
        raise ConfigError(f"cannot read configuration file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"configuration file {path} is not valid TOML: {exc}") from None
    unknown = set(raw) - set(SECTIONS)
    if unknown:
        known = ", ".join(f"[{name}]" for name in SECTIONS)
        raise ConfigError(f"unknown section [{sorted(unknown)[0]}] in {path} (known: {known})")
    for name, section in raw.items():
        if not isinstance(section, dict):
            raise ConfigError(f"{name} in {path} must be a section ([{name}])")
    return raw


def load_config(path: Path | list[Path] | None) -> FlightConfig:
    """Read `path` (several: each overrides the keys it sets), or return the ICD defaults
    when no file is given."""
    paths = [] if path is None else path if isinstance(path, list) else [path]
    if not paths:
        return FlightConfig()
    raw: dict[str, dict[str, Any]] = {}
    for one in paths:
        for name, section in _read(one).items():
            raw.setdefault(name, {}).update(section)
    path = paths[-1] if len(paths) == 1 else Path(" + ".join(str(p) for p in paths))
    link_values = dict(raw.get("link", {}))
    if "tm_coding" in link_values:
        coding = link_values["tm_coding"]
        if coding not in TM_CODINGS:
            raise ConfigError(
                f"[link] tm_coding = {coding!r} in {path}: expected "
                + " or ".join(repr(c) for c in TM_CODINGS)
            )
        link_values["tm_coding"] = TmCoding(coding)
    link = _section(LinkParameters, link_values, f"[link] of {path}")
    if link.tm_frame_length < 64 or link.tm_frame_length > 2048:
        raise ConfigError(f"[link] tm_frame_length {link.tm_frame_length}: 64..2048 octets")
    storage = _section(StorageConfig, raw.get("storage", {}), f"[storage] of {path}")
    jobs = _section(JobsConfig, raw.get("jobs", {}), f"[jobs] of {path}")
    for where, section in (("storage", storage), ("jobs", jobs)):
        for key, value in dataclasses.asdict(section).items():
            if value < 0:
                raise ConfigError(f"[{where}] {key} = {value}: expected 0 or more")
    at_least_one = {
        "quota_bytes": storage.quota_bytes,
        "max_uploads": storage.max_uploads,
        "max_downloads": storage.max_downloads,
        "max_ranges": storage.max_ranges,
        "packet_store_bytes": storage.packet_store_bytes,
        "event_store_bytes": storage.event_store_bytes,
        "session_cache": jobs.session_cache,
        "max_queued": jobs.max_queued,
    }
    low = [key for key, value in at_least_one.items() if value < 1]
    if low:
        raise ConfigError(f"{path}: {', '.join(low)} must be at least 1")
    protection = _section(ProtectionConfig, raw.get("protection", {}), f"[protection] of {path}")
    thermal = _section(ThermalConfig, raw.get("thermal", {}), f"[thermal] of {path}")
    if thermal.source not in THERMAL_SOURCES:
        raise ConfigError(
            f"[thermal] source = {thermal.source!r} in {path}: expected one of "
            + ", ".join(repr(s) for s in THERMAL_SOURCES)
        )
    if not thermal.poll_interval_s > 0:
        raise ConfigError(f"[thermal] poll_interval_s in {path}: expected more than 0")
    model = _section(
        ThermalModelParameters, raw.get("thermal_model", {}), f"[thermal_model] of {path}"
    )
    security = _section(SecurityConfig, raw.get("security", {}), f"[security] of {path}")
    if security.authentication not in AUTHENTICATION_MODES:
        raise ConfigError(
            f"[security] authentication = {security.authentication!r} in {path}: expected "
            + " or ".join(repr(m) for m in AUTHENTICATION_MODES)
        )
    if not security.key_file:
        raise ConfigError(f"[security] key_file in {path} is empty")
    lifecycle = _section(LifecycleConfig, raw.get("lifecycle", {}), f"[lifecycle] of {path}")
    for key in ("kick_interval_s", "arm_timeout_s"):
        if not getattr(lifecycle, key) > 0:
            raise ConfigError(f"[lifecycle] {key} in {path}: expected more than 0")
    power = _section(PowerConfig, raw.get("power", {}), f"[power] of {path}")
    power_model = _section(
        PowerModelParameters, raw.get("power_model", {}), f"[power_model] of {path}"
    )
    schedule = _section(ScheduleConfig, raw.get("schedule", {}), f"[schedule] of {path}")
    return FlightConfig(
        link=link,
        storage=storage,
        jobs=jobs,
        protection=protection,
        thermal=thermal,
        thermal_model=model,
        security=security,
        lifecycle=lifecycle,
        power=power,
        power_model=power_model,
        schedule=schedule,
    )
