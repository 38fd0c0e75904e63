"""Kicks: at most one per interval, only while healthy, withheld for good once not; the device
gets one octet per kick and the magic close on a deliberate stop."""

from __future__ import annotations

from pathlib import Path

import pytest

from flight.lifecycle.health import Finding, HealthMonitor
from flight.lifecycle.watchdog import (
    KICK_OCTET,
    MAGIC_CLOSE,
    WatchdogDevice,
    WatchdogKicker,
    WatchdogStatus,
)
from tests.fake_clock import FakeClock


class FakeTarget:
    """Counts kicks; fails while `failing` is set."""

    def __init__(self, name: str = "fake") -> None:
        self.name = name
        self.kicks = 0
        self.failing = False
        self.closed: bool | None = None

    def kick(self) -> None:
        if self.failing:
            raise OSError("no such device")
        self.kicks += 1

    def close(self, disarm: bool) -> None:
        self.closed = disarm


class Harness:
    def __init__(self, targets: list[FakeTarget], interval_s: float = 1.0) -> None:
        self.clock = FakeClock(100.0)
        self.health = HealthMonitor()
        self.withheld: list[Finding] = []
        self.failed: list[tuple[str, str]] = []
        self.resumed: list[tuple[Finding, float]] = []
        self.kicker = WatchdogKicker(
            self.health,
            targets,
            interval_s,
            self.clock,
            self.withheld.append,
            lambda name, why: self.failed.append((name, why)),
            lambda finding, seconds: self.resumed.append((finding, round(seconds, 6))),
        )

    def run(self, seconds: float, step: float = 0.25) -> None:
        """The main loop's ticks over `seconds`."""
        for _ in range(round(seconds / step)):
            self.kicker.tick()
            self.clock.advance(step)


def test_kicks_once_per_interval_not_per_loop() -> None:
    target = FakeTarget()
    h = Harness([target], interval_s=1.0)
    h.run(10.0)  # 40 ticks
    assert target.kicks == 10 == h.kicker.kicks
    assert h.kicker.status is WatchdogStatus.KICKING


def test_an_unhealthy_check_stops_the_kicks_while_it_fails_with_one_report_each_way() -> None:
    target = FakeTarget()
    h = Harness([target])
    h.run(3.0)
    verdict: list[str | None] = ["heartbeat lost"]
    h.health.register("worker", lambda: verdict[0])
    h.run(5.0)
    assert target.kicks == 3
    assert h.kicker.status is WatchdogStatus.WITHHELD
    verdict[0] = None  # its own supervisor brought the worker back
    h.run(2.0)
    assert target.kicks == 5
    assert h.kicker.status is WatchdogStatus.KICKING
    assert h.withheld == [Finding("worker", "heartbeat lost")]
    assert h.resumed == [(Finding("worker", "heartbeat lost"), 5.0)]


def test_nothing_to_kick_is_off_but_a_failed_check_is_still_reported() -> None:
    h = Harness([])
    h.run(2.0)
    assert h.kicker.status is WatchdogStatus.OFF
    h.health.register("runner", lambda: "thread job-compute not running")
    h.run(2.0)
    assert h.withheld == [Finding("runner", "thread job-compute not running")]
    assert h.kicker.status is WatchdogStatus.WITHHELD


def test_a_failing_target_is_reported_once_per_run_of_failures_and_others_go_on() -> None:
    broken, good = FakeTarget("/dev/watchdog"), FakeTarget("supervisor")
    h = Harness([broken, good])
    broken.failing = True
    h.run(3.0)
    broken.failing = False
    h.run(2.0)
    broken.failing = True
    h.run(1.0)
    assert good.kicks == 6 and broken.kicks == 2
    assert h.failed == [("/dev/watchdog", "no such device")] * 2


def test_close_passes_the_deliberate_stop_on() -> None:
    target = FakeTarget()
    h = Harness([target])
    h.kicker.close(disarm=True)
    assert target.closed is True


def test_zero_interval_is_refused() -> None:
    with pytest.raises(ValueError, match="kick interval"):
        Harness([], interval_s=0.0)


def test_the_device_is_opened_at_the_first_kick_and_written_an_octet_per_kick(
    tmp_path: Path,
) -> None:
    path = tmp_path / "watchdog"
    device = WatchdogDevice(path)
    device.close(disarm=True)  # never opened: nothing to close, nothing written
    path.write_bytes(b"")
    for _ in range(3):
        device.kick()
    assert path.read_bytes() == KICK_OCTET * 3
    assert KICK_OCTET != MAGIC_CLOSE  # a kick never arms the magic close
    device.close(disarm=True)
    assert path.read_bytes() == KICK_OCTET * 3 + MAGIC_CLOSE


def test_an_undeliberate_close_leaves_the_device_armed(tmp_path: Path) -> None:
    path = tmp_path / "watchdog"
    path.write_bytes(b"")
    device = WatchdogDevice(path)
    device.kick()
    device.close(disarm=False)
    assert path.read_bytes() == KICK_OCTET


def test_a_missing_device_fails_the_kick(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        WatchdogDevice(tmp_path / "no-watchdog").kick()
