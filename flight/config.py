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

from spacelink.icd import LinkParameters


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


@dataclass(frozen=True)
class JobsConfig:
    """How jobs run."""

    # onnxruntime intra-op threads per session; 0: one fewer than the cores (at least one).
    intra_op_threads: int = 0
    # Sessions (loaded models) kept ready.
    session_cache: int = 4
    # Jobs the queue holds at most.
    max_queued: int = 1000


@dataclass(frozen=True)
class ProtectionConfig:
    """[protection]: what the ground may not change by command."""

    # Test commands (FAULT_INJECT) corrupt the payload on purpose: off in flight.
    test_commands: bool = False


@dataclass(frozen=True)
class FlightConfig:
    link: LinkParameters = field(default_factory=LinkParameters)
    storage: StorageConfig = field(default_factory=StorageConfig)
    jobs: JobsConfig = field(default_factory=JobsConfig)
    protection: ProtectionConfig = field(default_factory=ProtectionConfig)


def _same_kind(value: object, default: object) -> bool:
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(value, bool) and isinstance(default, bool)
    if isinstance(default, float):
        return isinstance(value, int | float)
    return isinstance(value, type(default))


def _section(cls: type, values: dict[str, Any], where: str) -> Any:
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key, value in values.items():
        if key not in fields:
            known = ", ".join(sorted(fields))
            raise ConfigError(f"unknown key {key!r} in {where} (known keys: {known})")
        default = getattr(cls(), key)
        if not _same_kind(value, default):
            raise ConfigError(f"{where} {key} = {value!r}: expected a {type(default).__name__}")
    return cls(**values)


def load_config(path: Path | None) -> FlightConfig:
    """Read `path`, or return the ICD defaults when no file is given."""
    if path is None:
        return FlightConfig()
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"configuration file {path} does not exist") from None
    except OSError as exc:
        raise ConfigError(f"cannot read configuration file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"configuration file {path} is not valid TOML: {exc}") from None
    unknown = set(raw) - {"link", "storage", "jobs", "protection"}
    if unknown:
        raise ConfigError(
            f"unknown section [{sorted(unknown)[0]}] in {path} "
            "(known: [link], [storage], [jobs], [protection])"
        )
    link = _section(LinkParameters, raw.get("link", {}), f"[link] of {path}")
    if link.tm_frame_length < 64 or link.tm_frame_length > 2048:
        raise ConfigError(f"[link] tm_frame_length {link.tm_frame_length}: 64..2048 octets")
    storage = _section(StorageConfig, raw.get("storage", {}), f"[storage] of {path}")
    jobs = _section(JobsConfig, raw.get("jobs", {}), f"[jobs] of {path}")
    for where, section in (("storage", storage), ("jobs", jobs)):
        for key, value in dataclasses.asdict(section).items():
            if value < 0:
                raise ConfigError(f"[{where}] {key} = {value}: expected 0 or more")
    if storage.quota_bytes < 1 or jobs.session_cache < 1 or jobs.max_queued < 1:
        raise ConfigError(f"{path}: quota_bytes, session_cache and max_queued must be at least 1")
    protection = _section(ProtectionConfig, raw.get("protection", {}), f"[protection] of {path}")
    return FlightConfig(link=link, storage=storage, jobs=jobs, protection=protection)
