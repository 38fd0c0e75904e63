"""The uplink security's configuration: the [security] section, and what the payload builds from
it (the authenticator and its key file, the SECURITY_STATUS parameters)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from flight.config import ConfigError, SecurityConfig, load_config
from flight.counters import LinkCounters
from flight.protection.upsets import UpsetLog
from flight.security.setup import (
    AUTH_MODE_OFF,
    AUTH_MODE_REQUIRED,
    build_authenticator,
    key_file_path,
    load_uplink_keys,
    security_getters,
)
from flight.security.uplink_auth import STATE_DIR, UplinkAuthenticator
from spacelink.keystore import KeyStoreError, create_keys
from spacelink.sdls import Algorithm, SecurityAssociation, apply_security, wrap_key
from spacelink.tcframe import TcFrame
from telemetry_defs.loader import default_dictionary

SA1 = SecurityAssociation(1, Algorithm.HMAC_SHA256, bytes(range(32)))
SA2 = SecurityAssociation(2, Algorithm.AES_GCM, bytes(range(64, 80)))
PLAIN = TcFrame(scid=0x1AB, vcid=1, seq=0, data=b"\x18\x64\xc0\x00\x00\x05\x2f\x11\x01\x00\x00")


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def config_error(path: Path) -> str:
    """The message of the ConfigError that loading `path` raises, checked to be one sentence."""
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    message = str(raised.value)
    assert message and "\n" not in message
    assert str(path) in message
    return message


# --- [security] ----------------------------------------------------------------------------------


def test_without_a_security_section_authentication_is_required(tmp_path: Path) -> None:
    path = write(tmp_path / "mission.toml", "[link]\nscid = 500\n")
    security = load_config(path).security
    assert security == SecurityConfig()
    assert (security.authentication, security.key_file) == ("required", "uplink-keys.toml")
    assert load_config(None).security == SecurityConfig()


def test_the_security_section_is_read_and_a_later_file_overrides(tmp_path: Path) -> None:
    base = write(
        tmp_path / "mission.toml", '[security]\nauthentication = "off"\nkey_file = "/k.toml"\n'
    )
    assert load_config(base).security == SecurityConfig("off", "/k.toml")
    bench = write(tmp_path / "bench.toml", '[security]\nauthentication = "required"\n')
    assert load_config([base, bench]).security == SecurityConfig("required", "/k.toml")


@pytest.mark.parametrize(
    ("section", "expected"),
    [
        ('authentication = "optional"', "authentication = 'optional'"),
        ("authentication = true", "expected a str"),
        ('key_file = ""', "key_file"),
        ('keyfile = "k.toml"', "unknown key 'keyfile' in [security]"),
    ],
    ids=["bad mode", "not a string", "empty key file", "unknown key"],
)
def test_a_wrong_security_section_is_refused_in_one_sentence(
    tmp_path: Path, section: str, expected: str
) -> None:
    path = write(tmp_path / "mission.toml", f"[security]\n{section}\n")
    assert expected in config_error(path)


def test_a_bad_mode_names_the_modes_allowed(tmp_path: Path) -> None:
    path = write(tmp_path / "mission.toml", '[security]\nauthentication = "Required"\n')
    message = config_error(path)
    assert "'required'" in message and "'off'" in message


# --- what the payload builds from it -------------------------------------------------------------


class Events:
    """Every event raised, each first encoded by the dictionary (arguments must fit it)."""

    def __init__(self) -> None:
        self.raised: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, name: str, **values: Any) -> None:
        default_dictionary().encode_event(name, values)
        self.raised.append((name, values))


def build(
    config: SecurityConfig, state_dir: Path, *, first_boot: bool = True
) -> UplinkAuthenticator | None:
    return build_authenticator(
        load_uplink_keys(config, state_dir),
        state_dir,
        UpsetLog(),
        LinkCounters(),
        Events(),
        lambda: 0.0,
        first_boot=first_boot,
    )


def secured(sa: SecurityAssociation, arsn: int, challenge: bytes = b"") -> tuple[TcFrame, bytes]:
    raw = apply_security(PLAIN, sa, arsn, challenge).pack()
    return TcFrame.unpack(raw), raw[:5]


def test_authentication_off_builds_nothing_and_needs_no_key(tmp_path: Path) -> None:
    assert build(SecurityConfig(authentication="off"), tmp_path) is None
    assert not (tmp_path / STATE_DIR).exists()


def test_a_relative_key_file_is_in_the_state_directory(tmp_path: Path) -> None:
    config = SecurityConfig(key_file="keys/uplink.toml")
    assert key_file_path(config, tmp_path) == tmp_path / "keys" / "uplink.toml"
    elsewhere = tmp_path / "etc" / "uplink.toml"
    assert key_file_path(SecurityConfig(key_file=str(elsewhere)), tmp_path) == elsewhere

    (tmp_path / "keys").mkdir()
    create_keys(tmp_path / "keys" / "uplink.toml", [SA1])
    auth = build(config, tmp_path)
    assert auth is not None
    assert auth.key_file == tmp_path / "keys" / "uplink.toml"
    assert auth.verify(*secured(SA1, 1)) == PLAIN


def test_a_missing_key_file_is_refused_by_name(tmp_path: Path) -> None:
    with pytest.raises(KeyStoreError) as raised:
        build(SecurityConfig(), tmp_path)
    message = str(raised.value)
    assert str(tmp_path / "uplink-keys.toml") in message
    assert "does not exist" in message and "\n" not in message


def test_a_key_file_others_may_read_is_refused_by_name(tmp_path: Path) -> None:
    path = tmp_path / "uplink-keys.toml"
    create_keys(path, [SA1])
    os.chmod(path, 0o644)
    with pytest.raises(KeyStoreError) as raised:
        build(SecurityConfig(), tmp_path)
    message = str(raised.value)
    assert str(path) in message
    assert "0644" in message and "\n" not in message


def status_parameters() -> set[str]:
    """SECURITY_STATUS's parameters other than the link counters' DISCARDED_AUTH_*."""
    structure = default_dictionary().structure(7)
    assert structure is not None and structure.name == "SECURITY_STATUS"
    return {p.name for p in structure.parameters if not p.name.startswith("DISCARDED_")}


def test_security_parameters_with_authentication_off(tmp_path: Path) -> None:
    getters = security_getters(None)
    assert set(getters) == status_parameters()
    assert {name: get() for name, get in getters.items()} == {
        "AUTH_MODE": AUTH_MODE_OFF,
        "AUTH_FRAMES_VERIFIED": 0,
        "AUTH_LAST_ARSN": 0,
        "AUTH_CHALLENGES": 0,
        "KEY_ROTATIONS": 0,
    }


def test_security_parameters_follow_the_authenticator(tmp_path: Path) -> None:
    create_keys(tmp_path / "uplink-keys.toml", [SA1, SA2])
    tmp_path.joinpath(STATE_DIR).mkdir()  # a state directory in use that lost its counter
    auth = build(SecurityConfig(), tmp_path, first_boot=False)
    assert auth is not None
    getters = security_getters(auth)
    assert set(getters) == status_parameters()

    def values() -> dict[str, int]:
        return {name: get() for name, get in getters.items()}

    assert values() == {
        "AUTH_MODE": AUTH_MODE_REQUIRED,
        "AUTH_FRAMES_VERIFIED": 0,
        "AUTH_LAST_ARSN": 0,
        "AUTH_CHALLENGES": 2,
        "KEY_ROTATIONS": 0,
    }
    nonce = auth.processor.challenge(1)
    assert nonce is not None
    assert auth.verify(*secured(SA1, 30, nonce)) is not None
    assert auth.verify(*secured(SA1, 31, nonce)) is not None
    auth.rotate(1, wrap_key(bytes(range(100, 132)), SA1))
    assert values() == {
        "AUTH_MODE": AUTH_MODE_REQUIRED,
        "AUTH_FRAMES_VERIFIED": 2,
        "AUTH_LAST_ARSN": 31,
        "AUTH_CHALLENGES": 1,
        "KEY_ROTATIONS": 1,
    }
