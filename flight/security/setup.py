"""The payload's uplink security wired from its configuration: keys, authenticator, the
parameters housekeeping reports."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flight.config import SecurityConfig
from flight.counters import LinkCounters
from flight.protection.upsets import UpsetLog
from flight.security.uplink_auth import RaiseEvent, UplinkAuthenticator
from spacelink.keystore import KeyStoreError, read_keys
from spacelink.sdls import SecurityAssociation

# The dictionary's AuthMode.
AUTH_MODE_OFF = 0
AUTH_MODE_REQUIRED = 1


def key_file_path(config: SecurityConfig, state_dir: Path) -> Path:
    """The key file the configuration names; a relative path is from the state directory."""
    path = Path(config.key_file)
    return path if path.is_absolute() else state_dir / path


@dataclass(frozen=True)
class UplinkKeys:
    """The payload's uplink key file and the security associations it holds."""

    path: Path
    associations: list[SecurityAssociation]


def load_uplink_keys(config: SecurityConfig, state_dir: Path) -> UplinkKeys | None:
    """The keys the configuration names, None when authentication is off; read before the
    payload writes anything, so that one without its key changes nothing. KeyStoreError (one
    sentence) when the key file is missing, open to others or invalid."""
    if config.authentication == "off":
        return None
    path = key_file_path(config, state_dir)
    try:
        return UplinkKeys(path, read_keys(path))
    except KeyStoreError as exc:
        raise KeyStoreError(
            f"{exc} (uplink authentication is required: [security] in docs/security.md)"
        ) from None


def build_authenticator(
    keys: UplinkKeys | None,
    state_dir: Path,
    upsets: UpsetLog,
    counters: LinkCounters,
    raise_event: RaiseEvent,
    monotonic: Callable[[], float],
    *,
    first_boot: bool,
) -> UplinkAuthenticator | None:
    """The uplink's authenticator on `keys`, or None when authentication is off."""
    if keys is None:
        return None
    return UplinkAuthenticator(
        keys.associations,
        keys.path,
        state_dir,
        upsets,
        counters,
        raise_event,
        monotonic,
        first_boot=first_boot,
    )


def security_getters(auth: UplinkAuthenticator | None) -> dict[str, Callable[[], Any]]:
    """SECURITY_STATUS's own parameters (the DISCARDED_AUTH_* ones are the link counters')."""
    if auth is None:
        return {
            "AUTH_MODE": lambda: AUTH_MODE_OFF,
            "AUTH_FRAMES_VERIFIED": lambda: 0,
            "AUTH_LAST_ARSN": lambda: 0,
            "AUTH_CHALLENGES": lambda: 0,
            "KEY_ROTATIONS": lambda: 0,
        }
    stats = auth.stats
    return {
        "AUTH_MODE": lambda: AUTH_MODE_REQUIRED,
        "AUTH_FRAMES_VERIFIED": lambda: stats.verified & 0xFFFFFFFF,
        "AUTH_LAST_ARSN": lambda: max(stats.last_arsn, 0),
        "AUTH_CHALLENGES": lambda: min(auth.challenges, 0xFF),
        "KEY_ROTATIONS": lambda: min(stats.rotations, 0xFFFF),
    }
