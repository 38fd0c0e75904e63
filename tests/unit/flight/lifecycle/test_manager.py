"""The payload's side of its supervision: the previous run's reason at start, the notify
socket, kicks withheld once unhealthy, how each end is recorded, and the lifecycle actions."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from flight.config import LifecycleConfig
from flight.lifecycle.arming import LifecycleAction
from flight.lifecycle.board import RebootFailed
from flight.lifecycle.manager import (
    REBOOT_GRACE_S,
    RESTART_EXIT_STATUS,
    LifecycleManager,
    NoWatchdog,
    NoWorker,
    RebootNotAllowed,
    RebootNotConfigured,
    WorkerRestartFailed,
)
from flight.lifecycle.reset_reason import ResetReason
from flight.lifecycle.run_record import RunLedger
from flight.lifecycle.watchdog import KICK_OCTET, MAGIC_CLOSE, WatchdogStatus
from flight.protection.upsets import UpsetLog
from tests.fake_clock import FakeClock


class FakeBoard:
    def __init__(self, boot_id: str = "boot-1") -> None:
        self.boot = boot_id
        self.reboots: list[list[str]] = []
        self.fail: str | None = None

    def boot_id(self) -> str:
        return self.boot

    def uptime_s(self) -> float:
        return 4321.9

    def reboot(self, command: list[str]) -> None:
        if self.fail is not None:
            raise RebootFailed(self.fail)
        self.reboots.append(command)


class Harness:
    """A manager on a temporary state directory, its events and stop requests kept."""

    def __init__(self, state: Path, board: FakeBoard | None = None, **config: Any) -> None:
        self.state = state
        self.board = board or FakeBoard()
        self.clock = FakeClock(50.0)
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.stops = 0
        self.config = LifecycleConfig(**config)

    def raise_event(self, name: str, **values: Any) -> None:
        self.events.append((name, values))

    def stop(self) -> None:
        self.stops += 1

    def open(self, environ: dict[str, str] | None = None) -> LifecycleManager:
        return LifecycleManager.open(
            self.state,
            self.config,
            UpsetLog(),
            self.raise_event,
            self.stop,
            self.clock,
            board=self.board,
            environ={} if environ is None else environ,
        )

    def named(self, name: str) -> list[dict[str, Any]]:
        return [values for event, values in self.events if event == name]


@pytest.fixture
def h(tmp_path: Path) -> Harness:
    return Harness(tmp_path / "state")


@pytest.fixture
def supervisor(tmp_path: Path) -> Iterator[socket.socket]:
    """The supervisor's end of a notify socket."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify"))
    sock.settimeout(0.5)
    yield sock
    sock.close()


def received(sock: socket.socket) -> list[bytes]:
    got = []
    while True:
        try:
            got.append(sock.recv(4096))
        except TimeoutError:
            return got


def test_the_first_start_reports_unknown_with_the_board_s_uptime(h: Harness) -> None:
    manager = h.open()
    assert manager.started_values() == {
        "reset_reason": ResetReason.UNKNOWN,
        "board_uptime": 4321,
        "previous": "no earlier run recorded",
    }
    values = {name: get() for name, get in manager.getters().items()}
    assert values["RESET_REASON"] == 0 and values["BOARD_UPTIME"] == 4321
    assert values["RESTARTS_UNKNOWN"] == 1 and values["RESTARTS_CLEAN"] == 0
    assert values["WATCHDOG_STATUS"] == WatchdogStatus.OFF  # no supervisor, no device
    assert set(values) == {"RESET_REASON", "BOARD_UPTIME", "WATCHDOG_STATUS"} | {
        f"RESTARTS_{reason.name}" for reason in ResetReason
    }


def test_a_clean_stop_is_recorded_and_reported_at_the_next_start(h: Harness) -> None:
    assert h.open().finish(None) is None
    again = h.open()
    assert again.previous.reason is ResetReason.CLEAN
    assert {n: g() for n, g in again.getters().items()}["RESTARTS_CLEAN"] == 1


def test_a_port_failure_is_recorded_as_a_crash_that_says_so(h: Harness) -> None:
    h.open().finish(OSError(5, "Input/output error"))
    previous = h.open().previous
    assert previous.reason is ResetReason.CRASH
    assert previous.detail == "serial port failed: [Errno 5] Input/output error"


def test_a_state_directory_that_cannot_be_written_does_not_stop_the_stop(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    manager = h.open()
    manager.perform(LifecycleAction.PAYLOAD)

    def full(*_: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(manager.ledger, "end", full)
    assert manager.finish(None) == RESTART_EXIT_STATUS
    assert h.open().previous.reason is ResetReason.CRASH  # nothing recorded: same boot


def test_the_board_restarting_underneath_is_power(h: Harness) -> None:
    h.open()  # then the power goes
    h.board.boot = "boot-2"
    assert h.open().previous.reason is ResetReason.POWER


def test_ready_status_and_kicks_go_to_the_supervisor(h: Harness, supervisor: socket.socket) -> None:
    environ = {"NOTIFY_SOCKET": supervisor.getsockname(), "WATCHDOG_USEC": "3000000"}
    manager = h.open(environ)
    assert environ == {}
    assert manager.kicker.interval_s == 1.0  # half of 3 s is longer than the 1 s asked for
    manager.serving("serving /dev/pts/3 at 115200 baud, boot 4")
    for _ in range(50):  # 2.5 s of main loop
        h.clock.advance(0.05)
        manager.tick()
    manager.stopping()
    manager.finish(None)
    assert received(supervisor) == [
        b"READY=1\nSTATUS=serving /dev/pts/3 at 115200 baud, boot 4",
        b"WATCHDOG=1",
        b"WATCHDOG=1",
        b"WATCHDOG=1",
        b"STOPPING=1\nSTATUS=stopping: signal",
    ]
    assert manager.kicker.status is WatchdogStatus.KICKING


def test_a_short_supervisor_watchdog_is_kicked_every_half_of_it(
    h: Harness, supervisor: socket.socket
) -> None:
    manager = h.open({"NOTIFY_SOCKET": supervisor.getsockname(), "WATCHDOG_USEC": "1200000"})
    assert manager.kicker.interval_s == 0.6


def test_an_unhealthy_payload_stops_kicking_and_says_why_once(
    h: Harness, supervisor: socket.socket
) -> None:
    manager = h.open({"NOTIFY_SOCKET": supervisor.getsockname(), "WATCHDOG_USEC": "3000000"})
    manager.serving("serving")
    manager.health.register("inference worker", lambda: "no heartbeat for 12 s")
    for _ in range(5):
        h.clock.advance(1.0)
        manager.tick()
    assert h.named("WATCHDOG_WITHHELD") == [
        {"check": "inference worker", "reason": "no heartbeat for 12 s"}
    ]
    assert received(supervisor) == [
        b"READY=1\nSTATUS=serving",
        b"WATCHDOG=1",
        b"STATUS=watchdog withheld: inference worker: no heartbeat for 12 s",
    ]
    assert {n: g() for n, g in manager.getters().items()}["WATCHDOG_STATUS"] == 2
    manager.health.unregister("inference worker")  # back, within the watchdog time
    h.clock.advance(1.0)
    manager.tick()
    assert h.named("WATCHDOG_RESUMED") == [{"check": "inference worker", "seconds": 5}]
    assert received(supervisor) == [
        b"STATUS=watchdog kicked again: inference worker healthy",
        b"WATCHDOG=1",
    ]


def test_the_device_is_kicked_and_disarmed_by_a_deliberate_stop(tmp_path: Path) -> None:
    device = tmp_path / "watchdog"
    device.write_bytes(b"")
    h = Harness(tmp_path / "state", watchdog_device=str(device))
    manager = h.open()
    manager.serving("serving")
    h.clock.advance(1.0)
    manager.tick()
    manager.finish(None)
    assert device.read_bytes() == KICK_OCTET * 2 + MAGIC_CLOSE


def test_a_commanded_restart_stops_the_loop_then_records_and_asks_for_a_restart(
    h: Harness,
) -> None:
    manager = h.open()
    manager.perform(LifecycleAction.PAYLOAD)
    assert h.stops == 1 and manager.stop_reason == "COMMAND_RESTART"
    assert RunLedger(h.state).state.value == "RUNNING"  # recorded only once stopped
    assert manager.finish(None) == RESTART_EXIT_STATUS
    assert h.open().previous.reason is ResetReason.COMMAND_RESTART


def test_reboot_is_refused_unless_allowed_and_configured(tmp_path: Path) -> None:
    refused = Harness(tmp_path / "a").open()
    with pytest.raises(RebootNotAllowed):
        refused.check_available(LifecycleAction.BOARD)
    unconfigured = Harness(tmp_path / "b", allow_reboot=True).open()
    with pytest.raises(RebootNotConfigured):
        unconfigured.perform(LifecycleAction.BOARD)


def test_a_reboot_is_recorded_before_the_command_and_a_stop_after_does_not_replace_it(
    tmp_path: Path,
) -> None:
    h = Harness(tmp_path / "state", allow_reboot=True, reboot_command=["systemctl", "reboot"])
    manager = h.open()
    manager.perform(LifecycleAction.BOARD)
    assert h.board.reboots == [["systemctl", "reboot"]]
    manager.finish(None)  # the system's SIGTERM
    h.board.boot = "boot-2"
    assert h.open().previous.reason is ResetReason.COMMAND_REBOOT


def test_a_failed_reboot_command_leaves_the_run_running(tmp_path: Path) -> None:
    h = Harness(tmp_path / "state", allow_reboot=True, reboot_command=["reboot"])
    h.board.fail = "reboot exited with status 1"
    manager = h.open()
    with pytest.raises(RebootFailed):
        manager.perform(LifecycleAction.BOARD)
    manager.finish(None)
    assert h.open().previous.reason is ResetReason.CLEAN


def test_a_reboot_that_never_comes_is_reported_and_undone(tmp_path: Path) -> None:
    h = Harness(tmp_path / "state", allow_reboot=True, reboot_command=["reboot"])
    manager = h.open()
    manager.perform(LifecycleAction.BOARD)
    h.clock.advance(REBOOT_GRACE_S - 1)
    manager.tick()
    assert h.named("REBOOT_OVERDUE") == []
    h.clock.advance(1)
    manager.tick()
    manager.tick()
    assert h.named("REBOOT_OVERDUE") == [{"seconds": int(REBOOT_GRACE_S)}]
    # Then a crash: it is a crash, not a reboot.
    assert h.open().previous.reason is ResetReason.CRASH


def test_the_worker_is_restarted_through_its_hook(h: Harness) -> None:
    manager = h.open()
    with pytest.raises(NoWorker):
        manager.check_available(LifecycleAction.WORKER)
    calls: list[str] = []
    manager.restart_worker = lambda: calls.append("restart")
    manager.perform(LifecycleAction.WORKER)
    assert calls == ["restart"]

    def broken() -> None:
        raise RuntimeError("worker did not come back")

    manager.restart_worker = broken
    with pytest.raises(WorkerRestartFailed, match="worker did not come back"):
        manager.perform(LifecycleAction.WORKER)


def test_a_watchdog_test_needs_a_watchdog_and_then_withholds_the_kicks(
    h: Harness, supervisor: socket.socket
) -> None:
    with pytest.raises(NoWatchdog):
        h.open().check_available(LifecycleAction.WATCHDOG)
    manager = h.open({"NOTIFY_SOCKET": supervisor.getsockname(), "WATCHDOG_USEC": "3000000"})
    manager.serving("serving")
    manager.perform(LifecycleAction.WATCHDOG)
    h.clock.advance(1.0)
    manager.tick()
    assert h.named("WATCHDOG_WITHHELD") == [
        {"check": "watchdog test", "reason": "watchdog test commanded by the ground"}
    ]


def test_a_notify_socket_we_cannot_use_is_an_error(h: Harness) -> None:
    from flight.lifecycle.sd_notify import NotifyError

    with pytest.raises(NotifyError):
        h.open({"NOTIFY_SOCKET": "vsock:2:99"})
