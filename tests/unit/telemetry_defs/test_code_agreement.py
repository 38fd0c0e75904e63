"""Where code holds a protocol value for speed or typing, it agrees with the dictionary: the
verification reports spacelink builds, the ICD failure codes, job states and redundancy modes,
progress steps, and every failure name the services report."""

from __future__ import annotations

import enum

import pytest

from flight.compute import job_compute
from flight.files import failures as file_failures
from flight.jobs import runner
from flight.jobs.model_check import InputMismatch, InputProblem, RejectReason
from flight.jobs.redundancy import Redundancy
from flight.jobs.store import JobState
from flight.services import models as model_service
from flight.thermal.governor import Level
from flight.thermal.monitor import SafeModeReason
from flight.thermal.readings import Sensor, SensorFault
from flight.thermal.setup import MODE_NOMINAL, MODE_SAFE, MODE_THROTTLED
from spacelink.pus import FailureCode, Stage, VerificationReport
from spacelink.spacepacket import RequestId
from telemetry_defs.loader import default_dictionary

D = default_dictionary()
REQUEST = RequestId(0x1864, 0xC123)


@pytest.mark.parametrize("stage", list(Stage))
@pytest.mark.parametrize("success", [True, False])
def test_spacelink_verification_reports_decode_with_the_dictionary(
    stage: Stage, success: bool
) -> None:
    step = 3 if stage is Stage.PROGRESS else None
    code = None if success else 265
    report = VerificationReport(stage, success, REQUEST, step, code, b"detail" if code else b"")
    decoded = D.decode_tm(1, report.subtype, report.pack())
    assert decoded.values["tc_packet_id"] == REQUEST.word0
    assert decoded.values["tc_sequence"] == REQUEST.word1
    if step is not None:
        assert decoded.values["step"] == step
    if code is not None:
        assert decoded.values["code"] == code and decoded.values["data"] == b"detail"


def test_icd_failure_codes_are_the_dictionary_s() -> None:
    for code in FailureCode:
        failure = D.failure(int(code))
        assert failure is not None and failure.name == code.name


@pytest.mark.parametrize(
    ("python", "name"),
    [
        (JobState, "JobState"),
        (Redundancy, "Redundancy"),
        (Level, "ThermalLevel"),
        (Sensor, "ThermalSensor"),
        (SensorFault, "SensorFault"),
        (SafeModeReason, "SafeModeReason"),
    ],
)
def test_enums_in_code_match_the_dictionary(python: type[enum.IntEnum], name: str) -> None:
    assert {m.name: int(m) for m in python} == dict(D.enums[name].values)


def test_payload_modes_match_the_dictionary() -> None:
    assert D.enums["Mode"].values == {
        "NOMINAL": MODE_NOMINAL,
        "THROTTLED": MODE_THROTTLED,
        "SAFE": MODE_SAFE,
    }


def test_progress_steps_match_the_dictionary() -> None:
    steps = D.enums["JobStep"].values
    assert steps["QUEUED"] == runner.STEP_QUEUED
    assert steps["STARTED"] == runner.STEP_STARTED
    assert steps["RUN_DONE"] == runner.STEP_RUN_DONE
    assert steps["RESULT_STORED"] == runner.STEP_RESULT_STORED


def test_every_failure_name_the_services_report_is_defined() -> None:
    names = set(file_failures._FAILURES.values())
    names |= set(model_service._REJECTED.values())
    names |= {job_compute.input_failure(InputMismatch(p, "")) for p in InputProblem}
    names |= {"UNKNOWN_MODEL", "MODEL_EXISTS", "NO_SUCH_FILE", "JOB_TIMED_OUT", "JOB_CANCELLED"}
    names |= {"INPUT_CORRUPT", "EXECUTION_FAILED", "ABFT_UNSUPPORTED", "KNOWN_ANSWER_FAILED"}
    names |= {"WEIGHTS_UNCORRECTABLE", "MODEL_CORRUPT", "INFERENCE_FAILED", "VOTE_FAILED"}
    names |= {"WORKER_LOST"}
    for name in names:
        D.failure_named(name)  # UnknownName if a service reports an undefined failure
    assert set(model_service._REJECTED) == set(RejectReason)


def test_every_provider_the_payload_may_pick_has_a_dictionary_name() -> None:
    from flight.compute_reports import PROVIDER_LABELS
    from flight.jobs.providers import PREFERENCE

    assert set(PROVIDER_LABELS) == set(PREFERENCE)
    assert set(PROVIDER_LABELS.values()) == set(D.enums["ExecutionProvider"].values)


def test_security_faults_modes_and_failures_match_the_dictionary() -> None:
    from flight.security.setup import AUTH_MODE_OFF, AUTH_MODE_REQUIRED
    from flight.security.uplink_auth import DISCARD_REASONS, FAULT_NAMES
    from spacelink.sdls import SecurityFault

    assert set(FAULT_NAMES.values()) == set(D.enums["AuthFault"].values)
    assert set(FAULT_NAMES) == set(SecurityFault) == set(DISCARD_REASONS)
    assert D.enums["AuthMode"].values == {"OFF": AUTH_MODE_OFF, "REQUIRED": AUTH_MODE_REQUIRED}
    for fault in SecurityFault:
        D.parameter(f"DISCARDED_AUTH_{fault.name}")  # UnknownName if housekeeping lacks it
    for name in ("KEY_UNKNOWN_SPI", "KEY_UNWRAP_FAILED", "KEY_NOT_SAVED", "AUTHENTICATION_IS_OFF"):
        D.failure_named(name)


def test_lifecycle_enums_confirmation_and_failures_match_the_dictionary() -> None:
    from flight.lifecycle.arming import CONFIRMATION, LifecycleAction
    from flight.lifecycle.reset_reason import ResetReason
    from flight.lifecycle.watchdog import WatchdogStatus
    from flight.services import lifecycle as lifecycle_service

    for python, name in (
        (ResetReason, "ResetReason"),
        (LifecycleAction, "LifecycleAction"),
        (WatchdogStatus, "WatchdogStatus"),
    ):
        assert {m.name: int(m) for m in python} == dict(D.enums[name].values)
    confirm = D.command("LIFECYCLE_EXECUTE").layout.fields[1]
    assert confirm.name == "confirm" and f"0x{CONFIRMATION:08X}" in confirm.description
    assert f"0x{CONFIRMATION:08X}" in D.failure_named("LIFECYCLE_BAD_CONFIRMATION").description
    names = set(lifecycle_service._UNAVAILABLE.values())
    names |= {"LIFECYCLE_NOT_ARMED", "LIFECYCLE_ARM_EXPIRED", "LIFECYCLE_ARMED_FOR_OTHER"}
    names |= {"LIFECYCLE_BAD_CONFIRMATION", "LIFECYCLE_REBOOT_FAILED"}
    names |= {"LIFECYCLE_WORKER_RESTART_FAILED"}
    for name in names:
        D.failure_named(name)
    for reason in ResetReason:
        D.parameter(f"RESTARTS_{reason.name}")  # one counter per reason
    assert "COMMAND_RESTART" in D.enums["StopReason"].values
