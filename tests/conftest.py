"""Options shared by the whole suite."""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--flight-port",
        default=None,
        help="run the HIL tests against a real board on this serial port instead of the "
        "emulated link (tests that need the emulator are skipped)",
    )
    parser.addoption("--flight-baud", type=int, default=115200, help="line rate of --flight-port")
