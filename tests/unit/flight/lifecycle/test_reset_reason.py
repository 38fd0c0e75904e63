"""Telling why the previous run ended: the supervisor's results, the run record, the boot id."""

from __future__ import annotations

import pytest

from flight.lifecycle.reset_reason import (
    SERVICE_RESULTS,
    ResetReason,
    RunState,
    ServiceExit,
    previous_run,
    reason_of_exit,
)

BOOT_A = "0c6a4bb6-1d1e-4c8b-9c57-6a3f0b7d0a11"
BOOT_B = "f3c1a7a0-55f6-4b0e-8d5e-0e4d2c9b3e22"


@pytest.mark.parametrize(
    ("result", "reason"),
    [
        ("success", ResetReason.CLEAN),
        ("watchdog", ResetReason.WATCHDOG),
        ("timeout", ResetReason.WATCHDOG),
        ("exit-code", ResetReason.CRASH),
        ("signal", ResetReason.CRASH),
        ("core-dump", ResetReason.CRASH),
        ("protocol", ResetReason.CRASH),
        ("resources", ResetReason.UNKNOWN),
        ("start-limit-hit", ResetReason.UNKNOWN),
        ("something-new", ResetReason.UNKNOWN),
    ],
)
def test_every_systemd_service_result_has_a_reason(result: str, reason: ResetReason) -> None:
    assert reason_of_exit(ServiceExit(result, "killed", "KILL")) is reason


def test_the_results_systemd_documents_are_all_known() -> None:
    documented = {"success", "protocol", "timeout", "exit-code", "signal", "core-dump"}
    documented |= {"watchdog", "start-limit-hit", "resources"}  # systemd.exec(5)
    assert set(SERVICE_RESULTS) == documented


def test_what_the_supervisor_saw_reads_as_one_phrase() -> None:
    assert ServiceExit("watchdog", "dumped", "ABRT").describe() == "watchdog: dumped ABRT"
    assert ServiceExit("exit-code", "exited", "1").describe() == "exit-code: exited 1"
    assert ServiceExit("success").describe() == "success"


def test_nothing_recorded_is_unknown() -> None:
    found = previous_run(RunState.NONE, "", "", "", BOOT_A)
    assert found.reason is ResetReason.UNKNOWN
    assert found.detail == "no earlier run recorded"


@pytest.mark.parametrize(
    "reason",
    [ResetReason.CLEAN, ResetReason.COMMAND_RESTART, ResetReason.WATCHDOG, ResetReason.CRASH],
)
def test_a_recorded_end_in_the_same_boot_stands(reason: ResetReason) -> None:
    found = previous_run(RunState.ENDED, reason.name, "what was seen", BOOT_A, BOOT_A)
    assert (found.reason, found.detail) == (reason, "what was seen")


def test_a_run_still_marked_running_in_the_same_boot_crashed() -> None:
    found = previous_run(RunState.RUNNING, "", "", BOOT_A, BOOT_A)
    assert found.reason is ResetReason.CRASH
    assert "without recording" in found.detail


@pytest.mark.parametrize(
    ("state", "reason", "before"),
    [
        (RunState.RUNNING, "", "was still running"),
        (RunState.ENDED, "CLEAN", "ended CLEAN"),  # an orderly shutdown of the whole system
        (RunState.ENDED, "CRASH", "ended CRASH"),
    ],
)
def test_another_boot_without_a_commanded_reboot_is_power(
    state: RunState, reason: str, before: str
) -> None:
    found = previous_run(state, reason, "", BOOT_A, BOOT_B)
    assert found.reason is ResetReason.POWER
    assert found.detail.endswith(f"the run before {before}")


def test_another_boot_after_a_commanded_reboot_is_the_reboot() -> None:
    found = previous_run(RunState.ENDED, "COMMAND_REBOOT", "reboot commanded", BOOT_A, BOOT_B)
    assert (found.reason, found.detail) == (ResetReason.COMMAND_REBOOT, "reboot commanded")


def test_a_commanded_reboot_that_did_not_reboot_says_so() -> None:
    found = previous_run(RunState.ENDED, "COMMAND_REBOOT", "reboot commanded", BOOT_A, BOOT_A)
    assert found.reason is ResetReason.COMMAND_REBOOT
    assert found.detail == "reboot commanded; the board did not restart"


@pytest.mark.parametrize(("recorded", "current"), [("", BOOT_B), (BOOT_A, "")])
def test_without_a_boot_id_the_boot_is_taken_as_the_same(recorded: str, current: str) -> None:
    assert previous_run(RunState.RUNNING, "", "", recorded, current).reason is ResetReason.CRASH


def test_an_unreadable_end_record_is_unknown() -> None:
    found = previous_run(RunState.ENDED, "REBOOTED_BY_ALIENS", "", BOOT_A, BOOT_A)
    assert found.reason is ResetReason.UNKNOWN
    assert "REBOOTED_BY_ALIENS" in found.detail
