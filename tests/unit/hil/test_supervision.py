"""The bench's service manager as a state machine: what systemd does with a Type=notify,
Restart=always service with a watchdog, event by event."""

from __future__ import annotations

import signal

import pytest

from hil.supervision import (
    Phase,
    RecordExit,
    SendSignal,
    ServiceMachine,
    ServicePolicy,
    Spawn,
    exit_words,
)

POLICY = ServicePolicy(
    watchdog_s=3.0,
    start_timeout_s=20.0,
    stop_timeout_s=10.0,
    abort_timeout_s=2.0,
    restart_delay_s=0.5,
    start_limit_interval_s=60.0,
    start_limit_burst=3,
    success_exit_statuses=(75,),
)
ABRT, CONT, KILL, TERM = signal.SIGABRT, signal.SIGCONT, signal.SIGKILL, signal.SIGTERM


def running(now: float = 0.0) -> ServiceMachine:
    machine = ServiceMachine(POLICY)
    assert machine.start(now) == [Spawn()]
    assert machine.notified({"READY": "1", "STATUS": "serving"}, now + 1) == []
    assert machine.phase is Phase.RUNNING and machine.status == "serving"
    return machine


@pytest.mark.parametrize(
    ("code", "words"),
    [
        (0, ("exited", "0")),
        (75, ("exited", "75")),
        (-9, ("killed", "KILL")),
        (-6, ("killed", "ABRT")),
    ],
)
def test_exit_code_and_status_read_as_systemd_writes_them(
    code: int, words: tuple[str, str]
) -> None:
    assert exit_words(code) == words


def test_the_watchdog_runs_from_ready_and_each_kick_pushes_it_back() -> None:
    machine = ServiceMachine(POLICY)
    machine.start(0.0)
    assert machine.tick(15.0) == []  # no watchdog before READY=1 (only the start timeout)
    machine.notified({"READY": "1"}, 15.0)
    for t in (17.0, 19.0, 21.0):
        assert machine.tick(t) == []
        machine.notified({"WATCHDOG": "1"}, t)
    assert machine.deadline == 24.0
    assert machine.tick(23.9) == []
    assert machine.tick(24.0) == [SendSignal(ABRT), SendSignal(CONT)]
    assert machine.phase is Phase.ABORTING
    assert machine.tick(26.0) == [SendSignal(KILL)]  # TimeoutAbortSec later
    assert machine.exited(-9, 26.1) == [RecordExit("watchdog", "killed", "KILL")]
    assert machine.phase is Phase.AUTO_RESTART
    assert machine.tick(26.5) == []
    assert machine.tick(26.6) == [Spawn()]  # RestartSec after the exit


def test_a_crash_is_recorded_as_a_signal_and_restarted() -> None:
    machine = running()
    assert machine.exited(-9, 5.0) == [RecordExit("signal", "killed", "KILL")]
    assert machine.tick(5.5) == [Spawn()]
    assert machine.phase is Phase.STARTING


@pytest.mark.parametrize(
    ("code", "result"),
    [(0, "success"), (75, "success"), (-15, "success"), (-2, "success"), (1, "exit-code"),
     (-11, "signal")],
)  # fmt: skip
def test_every_end_is_restarted_and_recorded_with_its_result(code: int, result: str) -> None:
    machine = running()
    (record,) = machine.exited(code, 5.0)
    assert isinstance(record, RecordExit) and record.result == result
    assert machine.phase is Phase.AUTO_RESTART  # Restart=always


def test_a_deliberate_stop_is_not_restarted() -> None:
    machine = running()
    assert machine.stop(TERM, 5.0) == [SendSignal(TERM), SendSignal(CONT)]
    assert machine.phase is Phase.STOPPING
    assert machine.exited(0, 5.2) == [RecordExit("success", "exited", "0")]
    assert machine.phase is Phase.IDLE and machine.tick(100.0) == []


def test_a_stop_that_does_not_end_the_process_kills_it_after_the_stop_timeout() -> None:
    machine = running()
    machine.stop(TERM, 5.0, timeout_s=4.0)
    assert machine.tick(8.9) == []
    assert machine.tick(9.0) == [SendSignal(KILL)]
    assert machine.exited(-9, 9.1) == [RecordExit("timeout", "killed", "KILL")]
    assert machine.phase is Phase.IDLE


def test_a_deliberate_sigkill_is_a_crash_to_the_recorder_but_not_restarted() -> None:
    machine = running()
    assert machine.stop(KILL, 5.0) == [SendSignal(KILL)]
    assert machine.exited(-9, 5.0) == [RecordExit("signal", "killed", "KILL")]
    assert machine.phase is Phase.IDLE


def test_a_stop_during_the_restart_delay_cancels_the_restart() -> None:
    machine = running()
    machine.exited(-9, 5.0)
    assert machine.stop(TERM, 5.1) == []
    assert machine.phase is Phase.IDLE and machine.tick(10.0) == []


def test_stopping_from_the_service_replaces_the_watchdog_by_the_stop_timeout() -> None:
    machine = running()
    machine.notified({"STOPPING": "1"}, 2.0)
    assert machine.tick(5.0) == []  # the watchdog would have fired at 4.0
    assert machine.tick(12.0) == [SendSignal(KILL)]
    assert machine.exited(-9, 12.0) == [RecordExit("timeout", "killed", "KILL")]
    assert machine.phase is Phase.AUTO_RESTART  # it stopped by itself: restarted


def test_watchdog_trigger_fires_at_once() -> None:
    machine = running()
    assert machine.notified({"WATCHDOG": "trigger"}, 2.0) == [SendSignal(ABRT), SendSignal(CONT)]


def test_no_ready_within_the_start_timeout_is_a_timeout() -> None:
    machine = ServiceMachine(POLICY)
    machine.start(0.0)
    machine.notified({"READY": "1"}, 1.0)
    machine.exited(-9, 2.0)
    machine.tick(2.5)  # restarted, never gets ready
    assert machine.tick(22.5) == [SendSignal(TERM), SendSignal(CONT)]
    assert machine.tick(32.5) == [SendSignal(KILL)]
    assert machine.exited(-9, 32.6) == [RecordExit("timeout", "killed", "KILL")]


def test_more_starts_than_the_burst_within_the_interval_is_start_limit_hit() -> None:
    machine = running(0.0)  # start 1
    for t in (5.0, 10.0):  # starts 2 and 3
        machine.exited(-9, t)
        assert machine.tick(t + 0.5) == [Spawn()]
        machine.notified({"READY": "1"}, t + 1)
    machine.exited(-9, 15.0)
    assert machine.tick(15.5) == []  # a 4th start within 60 s
    assert machine.phase is Phase.FAILED
    assert machine.failure == "start-limit-hit: 3 starts within 60 s"
    assert machine.start(16.0) == [Spawn()]  # a deliberate start resets the count


def test_starts_older_than_the_interval_do_not_count() -> None:
    machine = running(0.0)
    for t in (30.0, 70.0, 110.0):
        machine.exited(-9, t)
        assert machine.tick(t + 0.5) == [Spawn()]
        machine.notified({"READY": "1"}, t + 1)


def test_a_deliberate_start_whose_process_ends_before_ready_fails_without_retry() -> None:
    machine = ServiceMachine(POLICY)
    machine.start(0.0)
    assert machine.exited(2, 1.0) == [RecordExit("exit-code", "exited", "2")]
    assert machine.phase is Phase.FAILED
    assert machine.failure == "ended before READY=1 (exit-code: exited 2)"


def test_a_clean_exit_before_ready_breaks_the_notify_protocol() -> None:
    machine = running()
    machine.exited(-9, 2.0)
    machine.tick(2.5)
    assert machine.exited(0, 3.0) == [RecordExit("protocol", "exited", "0")]


def test_a_running_service_cannot_be_started_again() -> None:
    with pytest.raises(RuntimeError, match="running"):
        running().start(5.0)
