"""Options and fixtures shared by the whole suite.

`make_bench` / `bench` start the emulated link with a payload process; `ground` is a connected
test API. With `pytest --flight-port DEVICE` the tests talk to a real board instead, and those
that need the emulator (impairments, payload restarts) are skipped.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from groundsw.uplink_security import KEYS_ENV
from hil.bench import Bench
from hil.testapi import GroundTestApi
from tests.harness import open_test_api


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--flight-port",
        default=None,
        help="run the HIL tests against a real board on this serial port instead of the "
        "emulated link (tests that need the emulator are skipped)",
    )
    parser.addoption("--flight-baud", type=int, default=115200, help="line rate of --flight-port")


def real_port(config: pytest.Config) -> str | None:
    return config.getoption("--flight-port")  # type: ignore[no-any-return]


@pytest.fixture
def make_bench(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., Bench]]:
    """Start benches with any `Bench` settings; each is stopped at the end of the test. Ground
    tools use the latest bench's development key ($GROUNDSW_KEYS), as an operator would."""
    if real_port(request.config):
        pytest.skip("needs the emulated link (running against a real board)")
    started: list[Bench] = []

    def make(**kwargs: Any) -> Bench:
        n = len(started)
        kwargs.setdefault("flight_log", tmp_path / f"flight{n}.log")
        bench = Bench(tmp_path / f"state{n}", **kwargs).start()
        started.append(bench)
        if bench.key_file is None:
            monkeypatch.delenv(KEYS_ENV, raising=False)
        else:
            monkeypatch.setenv(KEYS_ENV, str(bench.key_file))
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


@pytest.fixture
def ground(ground_port: tuple[str, int]) -> Iterator[GroundTestApi]:
    with open_test_api(*ground_port) as api:
        yield api


@pytest.fixture(autouse=True, scope="session")
def ground_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """groundsw run by tests archives into a temporary directory, not the working tree."""
    path = tmp_path_factory.mktemp("ground-data")
    previous = os.environ.get("GROUNDSW_DATA")
    os.environ["GROUNDSW_DATA"] = str(path)
    yield path
    if previous is None:
        del os.environ["GROUNDSW_DATA"]
    else:
        os.environ["GROUNDSW_DATA"] = previous
