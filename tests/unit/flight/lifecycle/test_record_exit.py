"""The exit recorder as systemd's ExecStopPost runs it: the variables, the lock, one sentence."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from pathlib import Path

import pytest

from flight.durable import open_lock_file
from flight.launch import main as payload_flight
from flight.lifecycle.record_exit import (
    EXIT_FAILED,
    EXIT_RECORDED,
    EXIT_USAGE,
    RecordError,
    record,
    run,
)
from flight.lifecycle.reset_reason import ResetReason
from flight.lifecycle.run_record import RunLedger

WATCHDOG = {"SERVICE_RESULT": "watchdog", "EXIT_CODE": "dumped", "EXIT_STATUS": "ABRT"}


@pytest.fixture
def running(tmp_path: Path) -> Path:
    """A state directory whose run is marked running (its payload just died)."""
    RunLedger(tmp_path).begin("boot")
    return tmp_path


def test_the_supervisor_s_result_is_recorded(
    running: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(running, WATCHDOG) == EXIT_RECORDED
    assert capsys.readouterr().err == (
        "payload-flight: exit recorded: recorded WATCHDOG (watchdog: dumped ABRT)\n"
    )
    assert RunLedger(running).begin("boot").reason is ResetReason.WATCHDOG


def test_a_run_s_own_record_is_left_alone(
    running: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ledger = RunLedger(running)
    ledger.end(ResetReason.CLEAN, "stopped by a signal")
    success = {"SERVICE_RESULT": "success", "EXIT_CODE": "exited", "EXIT_STATUS": "0"}
    assert run(running, success) == EXIT_RECORDED
    assert "the run's own record stands (CLEAN)" in capsys.readouterr().err
    assert RunLedger(running).begin("boot").reason is ResetReason.CLEAN


def test_without_service_result_it_says_so_in_one_sentence(
    running: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(running, {}) == EXIT_USAGE
    err = capsys.readouterr().err
    assert err == (
        "payload-flight: $SERVICE_RESULT is not set: the supervisor sets it for ExecStopPost\n"
    )


def test_a_missing_state_directory_is_one_sentence(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(tmp_path / "none", WATCHDOG) == EXIT_FAILED
    assert capsys.readouterr().err == (
        f"payload-flight: state directory {tmp_path / 'none'} does not exist\n"
    )


def test_a_payload_still_holding_the_state_directory_is_not_written_over(
    running: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fd = open_lock_file(running / ".lock")
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        with pytest.raises(RecordError, match=r"still in use after 0\.2 s"):
            record(running, WATCHDOG, wait_s=0.2)
    finally:
        os.close(fd)
    assert RunLedger(running).begin("boot").reason is ResetReason.CRASH  # nothing recorded


def test_payload_flight_record_exit_is_the_same_recorder(
    running: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in WATCHDOG.items():
        monkeypatch.setenv(name, value)
    assert payload_flight(["--state-dir", str(running), "--record-exit"]) == EXIT_RECORDED
    assert RunLedger(running).begin("boot").reason is ResetReason.WATCHDOG


def test_payload_flight_still_needs_a_port_to_serve(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exited:
        payload_flight(["--state-dir", str(tmp_path)])
    assert exited.value.code == 2


def test_the_module_runs_alone_without_loading_the_payload(running: Path) -> None:
    check = (
        "import sys, runpy\n"
        "sys.argv = ['x', '--state-dir', sys.argv[1]]\n"
        "try:\n"
        "    runpy.run_module('flight.lifecycle.record_exit', run_name='__main__')\n"
        "except SystemExit as e:\n"
        "    assert e.code == 0, e.code\n"
        "heavy = ('numpy', 'onnxruntime', 'flight.app', 'flight.launch')\n"
        "heavy = sorted(m for m in heavy if m in sys.modules)\n"
        "print(heavy)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", check, str(running)],
        env={**os.environ, **WATCHDOG},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
    assert "recorded WATCHDOG" in done.stderr
