"""Helpers for tests that run the real programs: console scripts and ground sessions."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import serial

from groundsw.session import InitMode, LinkSession
from groundsw.uplink_security import UplinkSecurity, keys_from_environment, security_event_sink
from hil.testapi import GroundTestApi
from telemetry_defs.loader import default_dictionary

BIN = Path(sys.executable).parent


def run_tool(name: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run an installed console script (groundsw, payload-flight, hil-bench) to completion."""
    return subprocess.run(
        [str(BIN / name), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def security_from_environment() -> UplinkSecurity | None:
    """The uplink security groundsw would use: the key file $GROUNDSW_KEYS names, if any."""
    path = keys_from_environment()
    return None if path is None else UplinkSecurity.from_key_file(path)


@contextmanager
def ground_session(
    port_path: str, init: InitMode | None = InitMode.AUTO, baud: int = 115200, **kwargs: Any
) -> Iterator[LinkSession]:
    """A started ground session on `port_path`, initiated unless `init` is None; its frames
    secured with the key file $GROUNDSW_KEYS names (as groundsw's), unless `security` is given."""
    if "security" not in kwargs:
        kwargs["security"] = security_from_environment()
    with serial.serial_for_url(port_path, baudrate=baud, timeout=0.05) as port:
        session = LinkSession(port, baud=baud, **kwargs)
        if session.security is not None:
            sink = security_event_sink(default_dictionary(), session.security.on_event)
            session.add_packet_sink(sink)
        session.start()
        try:
            if init is not None:
                session.initiate(init, timeout=10)
            yield session
        finally:
            session.close()


@contextmanager
def open_test_api(port_path: str, baud: int = 115200, **kwargs: Any) -> Iterator[GroundTestApi]:
    """A test API on a started, initiated ground session."""
    with ground_session(port_path, baud=baud, **kwargs) as session:
        api = GroundTestApi(session)
        try:
            yield api
        finally:
            api.close()


def sequence_report(api: GroundTestApi, reset: bool = False) -> tuple[int, int, int]:
    """The link-test counters (TC[17,129]): executed, out of order, next expected."""
    values = api.query_command(
        "LINK_SEQUENCE_REPORT", "LINK_SEQUENCE_COUNTERS", attempts=10, timeout=5, reset=reset
    ).values
    return values["executed"], values["out_of_order"], values["next"]
