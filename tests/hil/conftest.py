"""Fixtures for tests through the link with real payload-flight processes.

`bench` starts the emulated link and a payload (`make_bench` for other settings); `ground` is a
connected test API. With `pytest --flight-port DEVICE` the tests talk to a real board instead,
and those that need the emulator (impairments, payload restarts) are skipped.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import serial

from groundsw.session import InitMode, LinkSession
from hil.bench import Bench
from hil.testapi import GroundTestApi

BIN = Path(sys.executable).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/hil/" in str(item.fspath):
            item.add_marker(pytest.mark.hil)


def real_port(config: pytest.Config) -> str | None:
    return config.getoption("--flight-port")  # type: ignore[no-any-return]


@pytest.fixture
def make_bench(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[..., Bench]]:
    """Start benches with any `Bench` settings; each is stopped at the end of the test."""
    if real_port(request.config):
        pytest.skip("needs the emulated link (running against a real board)")
    started: list[Bench] = []

    def make(**kwargs: Any) -> Bench:
        n = len(started)
        kwargs.setdefault("flight_log", tmp_path / f"flight{n}.log")
        bench = Bench(tmp_path / f"state{n}", **kwargs).start()
        started.append(bench)
        return bench

    try:
        yield make
    finally:
        for bench in started:
            bench.stop()
        for bench in started:
            if bench.link.error is not None:
                raise bench.link.error


@pytest.fixture
def bench(make_bench: Callable[..., Bench]) -> Bench:
    return make_bench(baud=115200)


@pytest.fixture
def ground_port(request: pytest.FixtureRequest) -> tuple[str, int]:
    """(port, baud) of the payload under test: the real board's, or a new bench's."""
    port = real_port(request.config)
    if port:
        return port, int(request.config.getoption("--flight-baud"))
    b: Bench = request.getfixturevalue("bench")
    return b.ground_port, b.baud


@contextmanager
def ground_session(
    port_path: str, init: InitMode | None = InitMode.AUTO, baud: int = 115200, **kwargs: Any
) -> Iterator[LinkSession]:
    """A started ground session on `port_path`, initiated unless `init` is None."""
    with serial.serial_for_url(port_path, baudrate=baud, timeout=0.05) as port:
        session = LinkSession(port, baud=baud, **kwargs).start()
        try:
            if init is not None:
                session.initiate(init, timeout=10)
            yield session
        finally:
            session.close()


@contextmanager
def open_test_api(port_path: str, baud: int = 115200, **kwargs: Any) -> Iterator[GroundTestApi]:
    with ground_session(port_path, baud=baud, **kwargs) as session:
        api = GroundTestApi(session)
        try:
            yield api
        finally:
            api.close()


@pytest.fixture
def ground(ground_port: tuple[str, int]) -> Iterator[GroundTestApi]:
    with open_test_api(*ground_port) as api:
        yield api


def run_tool(name: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run an installed console script (groundsw, payload-flight, hil-bench) to completion."""
    return subprocess.run(
        [str(BIN / name), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
