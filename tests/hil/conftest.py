"""Fixtures for tests through the emulated link with real payload-flight processes."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import serial

from groundsw.session import InitMode, LinkSession
from hil.bench import Bench

BIN = Path(sys.executable).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/hil/" in str(item.fspath):
            item.add_marker(pytest.mark.hil)


@pytest.fixture
def bench(tmp_path: Path) -> Iterator[Bench]:
    b = Bench(tmp_path / "state", baud=115200, flight_log=tmp_path / "flight.log")
    b.start()
    try:
        yield b
    finally:
        b.stop()
        if b.link.error is not None:
            raise b.link.error


def run_tool(name: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run an installed console script (groundsw, payload-flight, hil-bench) to completion."""
    return subprocess.run(
        [str(BIN / name), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


@contextmanager
def ground_session(port_path: str, init: InitMode | None = InitMode.AUTO) -> Iterator[LinkSession]:
    """A started ground session on `port_path`, initiated unless `init` is None."""
    with serial.serial_for_url(port_path, baudrate=115200, timeout=0.05) as port:
        session = LinkSession(port, baud=115200).start()
        try:
            if init is not None:
                session.initiate(init, timeout=10)
            yield session
        finally:
            session.close()
