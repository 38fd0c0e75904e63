"""The payload's parameter pool made whole (flight/payload_parameters.py): the configured idle
interval is DOWNLINK_IDLE_INTERVAL's start value, and one outside its range leaves the default."""

from __future__ import annotations

from typing import Any, cast

import pytest

from flight.downlink import DownlinkTransmitter
from flight.jobs.runner import JobRunner
from flight.parameters import ParameterPool
from flight.payload_parameters import payload_parameters
from flight.protection.scrubber import Scrubber
from telemetry_defs.loader import default_dictionary

D = default_dictionary()


class Downlink:
    def __init__(self) -> None:
        self.intervals: list[float] = []

    def set_idle_interval(self, seconds: float) -> None:
        self.intervals.append(seconds)


class Scrub:
    def wake(self) -> None:
        pass


def pool(idle_interval_s: float, downlink: Downlink) -> ParameterPool:
    sources: dict[str, Any] = {p.name: lambda: 0 for p in D.parameters.values() if not p.settable}
    return payload_parameters(
        D,
        sources,
        {"DOWNLINK_IDLE_INTERVAL": round(idle_interval_s * 1000)},
        cast(DownlinkTransmitter, downlink),
        cast(JobRunner, type("Runner", (), {})()),
        cast(Scrubber, Scrub()),
    )


def test_the_configured_idle_interval_holds_from_the_start() -> None:
    downlink = Downlink()
    assert pool(0.14, downlink).read_named("DOWNLINK_IDLE_INTERVAL") == 140
    assert downlink.intervals == [0.14]  # never the dictionary's default first


def test_an_idle_interval_out_of_range_leaves_the_default(caplog: pytest.LogCaptureFixture) -> None:
    downlink = Downlink()
    assert pool(5.0, downlink).read_named("DOWNLINK_IDLE_INTERVAL") == 1000
    assert downlink.intervals == [1.0]
    assert "configured DOWNLINK_IDLE_INTERVAL = 5000 not used" in caplog.text
