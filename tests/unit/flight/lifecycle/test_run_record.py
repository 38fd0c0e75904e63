"""The run record in the state directory: a run's own end, the supervisor's report, the boot
id, the counters, and damage to its copies."""

from __future__ import annotations

from pathlib import Path

from flight.lifecycle.reset_reason import ResetReason, RunState, ServiceExit
from flight.lifecycle.run_record import RUN_STATE_DIR, RunLedger
from flight.protection.triplicate import FILE_NAMES
from flight.protection.upsets import Outcome, UpsetLocation, UpsetLog

BOOT = "boot-1"


def test_a_fresh_state_directory_starts_unknown_and_records_the_run(tmp_path: Path) -> None:
    ledger = RunLedger(tmp_path)
    previous = ledger.begin(BOOT)
    assert previous.reason is ResetReason.UNKNOWN
    assert ledger.state is RunState.RUNNING
    assert ledger.counts()[ResetReason.UNKNOWN] == 1
    assert sorted(p.name for p in (tmp_path / RUN_STATE_DIR).iterdir()) == list(FILE_NAMES)


def test_a_clean_end_is_the_next_start_s_reason_and_is_counted(tmp_path: Path) -> None:
    first = RunLedger(tmp_path)
    first.begin(BOOT)
    assert first.end(ResetReason.CLEAN, "stopped by a signal")
    second = RunLedger(tmp_path)  # a new process reads the files
    previous = second.begin(BOOT)
    assert (previous.reason, previous.detail) == (ResetReason.CLEAN, "stopped by a signal")
    counts = second.counts()
    assert counts[ResetReason.CLEAN] == 1 and counts[ResetReason.UNKNOWN] == 1
    assert sum(counts.values()) == 2  # one per start


def test_a_run_killed_without_a_supervisor_is_a_crash(tmp_path: Path) -> None:
    RunLedger(tmp_path).begin(BOOT)  # then kill -9: nothing more written
    assert RunLedger(tmp_path).begin(BOOT).reason is ResetReason.CRASH


def test_the_supervisor_s_report_is_recorded_for_a_run_that_recorded_nothing(
    tmp_path: Path,
) -> None:
    RunLedger(tmp_path).begin(BOOT)
    recorder = RunLedger(tmp_path)  # the exit recorder, in its own process
    assert recorder.record_exit(ServiceExit("watchdog", "killed", "ABRT")) is ResetReason.WATCHDOG
    previous = RunLedger(tmp_path).begin(BOOT)
    assert previous.reason is ResetReason.WATCHDOG
    assert previous.detail == "supervisor: watchdog: killed ABRT"


def test_a_run_s_own_record_stands_against_the_supervisor_s(tmp_path: Path) -> None:
    run = RunLedger(tmp_path)
    run.begin(BOOT)
    run.end(ResetReason.COMMAND_RESTART, "restart commanded by the ground")
    # systemd saw exit status 75: exit-code, unless SuccessExitStatus lists it.
    assert RunLedger(tmp_path).record_exit(ServiceExit("exit-code", "exited", "75")) is None
    assert RunLedger(tmp_path).begin(BOOT).reason is ResetReason.COMMAND_RESTART


def test_a_commanded_reboot_stays_the_reason_when_the_system_then_stops_the_payload(
    tmp_path: Path,
) -> None:
    run = RunLedger(tmp_path)
    run.begin(BOOT)
    assert run.end(ResetReason.COMMAND_REBOOT, "reboot commanded by the ground")
    assert not run.end(ResetReason.CLEAN, "stopped by a signal")  # systemd's SIGTERM
    previous = RunLedger(tmp_path).begin("boot-2")
    assert previous.reason is ResetReason.COMMAND_REBOOT


def test_a_reboot_that_failed_is_undone(tmp_path: Path) -> None:
    run = RunLedger(tmp_path)
    run.begin(BOOT)
    run.end(ResetReason.COMMAND_REBOOT, "reboot commanded by the ground")
    run.resume()
    assert run.state is RunState.RUNNING
    assert run.end(ResetReason.CLEAN, "stopped by a signal")
    assert RunLedger(tmp_path).begin(BOOT).reason is ResetReason.CLEAN


def test_a_new_boot_id_without_a_commanded_reboot_is_power(tmp_path: Path) -> None:
    RunLedger(tmp_path).begin(BOOT)
    previous = RunLedger(tmp_path).begin("boot-2")
    assert previous.reason is ResetReason.POWER
    assert RunLedger(tmp_path).counts()[ResetReason.POWER] == 1


def test_the_recorder_finds_nothing_to_record_on_a_fresh_directory(tmp_path: Path) -> None:
    assert RunLedger(tmp_path).record_exit(ServiceExit("resources")) is None


def test_a_damaged_copy_is_outvoted_repaired_and_reported(tmp_path: Path) -> None:
    run = RunLedger(tmp_path)
    run.begin(BOOT)
    run.end(ResetReason.WATCHDOG, "x")
    path = tmp_path / RUN_STATE_DIR / FILE_NAMES[2]
    data = bytearray(path.read_bytes())
    data[data.index(b"WATCHDOG")] ^= 0x01  # the reason's text: its record's CRC now fails
    path.write_bytes(bytes(data))
    upsets = UpsetLog()
    previous = RunLedger(tmp_path, upsets).begin(BOOT)
    assert previous.reason is ResetReason.WATCHDOG
    assert upsets.at(UpsetLocation.STATE) == 1
    assert upsets.total(Outcome.UNCORRECTABLE) == 0


def test_a_long_detail_is_cut_to_what_the_store_holds(tmp_path: Path) -> None:
    run = RunLedger(tmp_path)
    run.begin("é" * 300)  # longer than a protected text value, cut on a character
    assert run.end(ResetReason.CRASH, "ü" * 300)
    assert len(RunLedger(tmp_path).begin("x").detail.encode()) <= 255
