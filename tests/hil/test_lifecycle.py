"""The payload under its supervisor, through the real processes: a kill -9 and a hang are
restarted by the bench's supervisor (as by systemd on a board) and reported at the next start
(PAYLOAD_STARTED, RESET_REASON, restarts by reason), queued jobs survive, the ground's restart
command goes through arm and execute and nothing less, and a reboot is refused on the bench.

The bench's watchdog is 3 s here (30 s by default); times are printed (pytest -s)."""

from __future__ import annotations

import dataclasses
import io
import os
import re
import signal
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from flight.jobs.executor import reference_session
from flight.lifecycle.arming import CONFIRMATION
from flight.lifecycle.manager import RESTART_EXIT_STATUS
from hil.bench import BENCH_SUPERVISION, Bench
from hil.testapi import GroundTestApi
from spacelink.pus import Stage
from tests.harness import open_test_api
from tests.hil.onboard import (
    TINY_WIDTHS,
    D,
    code,
    download,
    inject,
    job_report,
    npy,
    register,
    submit,
    upload,
)
from tools.model_gen import mlp, model_bytes

pytestmark = pytest.mark.hil

WATCHDOG_S = 3.0
SUPERVISION = dataclasses.replace(
    BENCH_SUPERVISION, watchdog_s=WATCHDOG_S, abort_timeout_s=2.0, restart_delay_s=0.2
)
ARM_S = 2.0
# The restarts are the point, not the line: uploads, reports and results take an eighth of the
# line time at 921600 baud.
BAUD = 921600
REASON = D.enums["ResetReason"].values


@pytest.fixture
def bench(make_bench: Any, tmp_path: Path) -> Bench:
    """A bench whose supervisor's watchdog is 3 s and whose arms last 2 s. Jobs are computed in
    the payload's own process: these tests are about that process, and its inference worker's
    start (its health check fails until the worker is up, which withholds the kicks for a
    second or two) would make a 3 s watchdog a race; tests/hil/test_workers.py has the worker
    under the bench's default supervision."""
    config = tmp_path / "lifecycle.toml"
    config.write_text(
        f"[lifecycle]\narm_timeout_s = {ARM_S}\n[jobs]\nworker = false\n"
        "[protection]\ntest_commands = true\n"
    )
    made: Bench = make_bench(
        baud=BAUD, supervision=SUPERVISION, flight_args=["--config", str(config)]
    )
    return made


def restarted(api: GroundTestApi, since: float, timeout: float = 30) -> dict[str, Any]:
    """The next PAYLOAD_STARTED after `since`; the session is then initiated again (the new
    payload's FARM starts from V(R) = 0), as an operator's ground would."""
    started = api.await_named_event("PAYLOAD_STARTED", since=since, timeout=timeout)
    api.session.initiate()
    return started.values


def reset_parameters(api: GroundTestApi) -> dict[str, Any]:
    names = ["RESET_REASON", "BOOT_COUNT", "WATCHDOG_STATUS"]
    names += [f"RESTARTS_{reason}" for reason in REASON]
    return api.get_parameters(*names)


def test_a_payload_killed_by_sigkill_comes_back_by_itself_with_its_queued_job(
    bench: Bench,
) -> None:
    with open_test_api(bench.ground_port, bench.baud) as api:
        register(api, "tiny", model_bytes(mlp(seed=5, widths=TINY_WIDTHS)))
        upload(api, "x.npy", npy(np.ones((2, 16), np.float32)), transfer_id=8)
        hold = D.parameter("JOB_QUEUE_HOLD").id
        api.command_and_assert("PARAM_SET", values=[{"id": hold, "value": True}])
        job_id, _ = submit(api, model="tiny", input="x.npy")
        assert job_report(api, job_id)["state"] == 0  # QUEUED, held
        assert bench.flight is not None
        killed_pid = bench.flight.pid

        killed = time.monotonic()
        os.kill(killed_pid, signal.SIGKILL)
        started = restarted(api, killed)
        up = time.monotonic() - killed
        api.command_and_assert("ARE_YOU_ALIVE")
        answered = time.monotonic() - killed

        assert bench.flight is not None and bench.flight.pid != killed_pid
        assert started["reset_reason"] == REASON["CRASH"]
        assert started["previous"] == "supervisor: signal: killed KILL"
        assert started["board_uptime"] > 0
        values = reset_parameters(api)
        assert values["RESET_REASON"] == REASON["CRASH"]
        assert (values["RESTARTS_CRASH"], values["RESTARTS_UNKNOWN"]) == (1, 1)
        assert values["BOOT_COUNT"] == 2
        assert values["WATCHDOG_STATUS"] == D.enums["WatchdogStatus"].values["KICKING"]
        # The queue hold does not survive a restart: the job that was queued runs now.
        api.await_named_event(
            "JOB_SUCCEEDED", lambda v: v["job_id"] == job_id, since=killed, timeout=60
        )
        assert job_report(api, job_id)["state"] == 2
    print(
        f"\nkill -9: PAYLOAD_STARTED after {up:.2f} s, first ping answered after {answered:.2f} s"
    )
    assert answered < 20


def test_a_payload_that_stops_kicking_is_killed_and_restarted_by_its_supervisor(
    bench: Bench,
) -> None:
    with open_test_api(bench.ground_port, bench.baud) as api:
        # The ground's watchdog test: the payload withholds its kicks on purpose.
        api.command_and_assert("LIFECYCLE_ARM", action="WATCHDOG")
        api.command_and_assert("LIFECYCLE_EXECUTE", action="WATCHDOG", confirm=CONFIRMATION)
        asked = time.monotonic()
        withheld = api.await_named_event("WATCHDOG_WITHHELD", since=asked - 1, timeout=5)
        assert withheld.values == {
            "check": "watchdog test",
            "reason": "watchdog test commanded by the ground",
        }
        started = restarted(api, asked)
        after_test = time.monotonic() - asked
        assert started["reset_reason"] == REASON["WATCHDOG"]
        assert started["previous"] == "supervisor: watchdog: killed ABRT"

        # A hang of the whole process: stopped, it cannot even take the SIGABRT until the
        # supervisor sends SIGCONT with it.
        assert bench.flight is not None
        hung = time.monotonic()
        os.kill(bench.flight.pid, signal.SIGSTOP)
        started = restarted(api, hung)
        after_hang = time.monotonic() - hung
        assert started["reset_reason"] == REASON["WATCHDOG"]
        values = reset_parameters(api)
        assert values["RESTARTS_WATCHDOG"] == 2 and values["RESET_REASON"] == REASON["WATCHDOG"]
    assert bench.supervisor is not None
    assert [e.result for e in bench.supervisor.exits] == ["watchdog", "watchdog"]
    # Killed no sooner than the watchdog time; faulthandler left the threads' stacks.
    assert WATCHDOG_S <= after_hang < WATCHDOG_S + 15
    assert "Fatal Python error: Aborted" in bench.flight_log_text()
    print(f"\nwatchdog test: restarted after {after_test:.2f} s; SIGSTOP: {after_hang:.2f} s")


def test_injected_payload_crash_and_hang_restart_it_and_its_queue_resumes(bench: Bench) -> None:
    """FAULT_INJECT PAYLOAD_CRASH and PAYLOAD_HANG: the payload's own faults, struck from the
    inside; jobs held in the queue at each fault run once it is back."""
    model = mlp(seed=5, widths=TINY_WIDTHS)
    x = np.ones((2, 16), np.float32)
    expected = reference_session(model_bytes(model)).run(None, {"features": x})[0]
    hold = D.parameter("JOB_QUEUE_HOLD").id
    times: dict[str, tuple[float, float]] = {}
    with open_test_api(bench.ground_port, bench.baud) as api:
        register(api, "tiny", model_bytes(model))
        upload(api, "x.npy", npy(x), transfer_id=8)
        for fault, reason, previous in (
            # "dumped" where core dumps are allowed, "killed" where they are not.
            ("PAYLOAD_CRASH", "CRASH", r"supervisor: signal: (dumped|killed) SEGV"),
            ("PAYLOAD_HANG", "WATCHDOG", r"supervisor: watchdog: killed ABRT"),
        ):
            api.command_and_assert("PARAM_SET", values=[{"id": hold, "value": True}])
            jobs = [submit(api, model="tiny", input="x.npy", redundancy="TMR")[0] for _ in "ab"]
            struck_pid = bench.flight.pid if bench.flight is not None else 0
            since = time.monotonic()
            inject(api, fault, "BIT")  # its report comes down before the fault strikes
            started = restarted(api, since)
            api.command_and_assert("ARE_YOU_ALIVE")
            answered = time.monotonic() - since
            assert bench.flight is not None and bench.flight.pid != struck_pid
            assert started["reset_reason"] == REASON[reason]
            assert re.fullmatch(previous, started["previous"]), started["previous"]
            for job_id in jobs:  # the hold does not survive the restart: the queue runs
                api.await_named_event(
                    "JOB_SUCCEEDED", lambda v, j=job_id: v["job_id"] == j, since=since, timeout=60
                )
                result = np.load(io.BytesIO(download(api, job_report(api, job_id)["result"])))
                assert result.tobytes() == expected.tobytes()
            times[fault] = (answered, time.monotonic() - since)
    assert "Fatal Python error: Segmentation fault" in bench.flight_log_text()
    print("\n" + "; ".join(
        f"{fault}: commandable after {up:.2f} s, its queue done after {done:.2f} s"
        for fault, (up, done) in times.items()
    ))  # fmt: skip


def test_restart_by_command_needs_arm_and_confirmation_and_reports_before_it_goes(
    bench: Bench,
) -> None:
    with open_test_api(bench.ground_port, bench.baud) as api:
        execute = {"action": "PAYLOAD", "confirm": CONFIRMATION}
        # (arms sent first, command, its arguments, the failure expected)
        refusals: list[tuple[list[str], str, dict[str, Any], str]] = [
            ([], "LIFECYCLE_EXECUTE", execute, "LIFECYCLE_NOT_ARMED"),
            (["PAYLOAD"], "LIFECYCLE_EXECUTE", {**execute, "confirm": CONFIRMATION ^ 1},
             "LIFECYCLE_BAD_CONFIRMATION"),
            (["PAYLOAD"], "LIFECYCLE_EXECUTE", {**execute, "action": "WATCHDOG"},
             "LIFECYCLE_ARMED_FOR_OTHER"),
            ([], "LIFECYCLE_ARM", {"action": "BOARD"}, "LIFECYCLE_REBOOT_NOT_ALLOWED"),
        ]  # fmt: skip
        for arms, name, values, failure in refusals:
            for action in arms:
                api.command_and_assert("LIFECYCLE_ARM", action=action)
            report = api.command_expect_failure(name, code(failure), **values)
            assert report.stage is Stage.START, failure
        api.command_and_assert("LIFECYCLE_ARM", action="PAYLOAD")
        time.sleep(ARM_S + 0.2)
        api.command_expect_failure(
            "LIFECYCLE_EXECUTE",
            code("LIFECYCLE_ARM_EXPIRED"),
            action="PAYLOAD",
            confirm=CONFIRMATION,
        )
        armed = api.await_named_event("LIFECYCLE_ARMED", timeout=1, since=0)
        assert armed.values == {"action": 2, "seconds": 2}
        assert bench.supervisor is not None and bench.supervisor.starts == 1  # none went through

        api.command_and_assert("LIFECYCLE_ARM", action="PAYLOAD")
        asked = time.monotonic()
        record = api.command_and_assert("LIFECYCLE_EXECUTE", action="PAYLOAD", confirm=CONFIRMATION)
        stopping = api.await_named_event("PAYLOAD_STOPPING", since=asked, timeout=10)
        assert stopping.values == {"reason": D.enums["StopReason"].values["COMMAND_RESTART"]}
        started = restarted(api, asked)
        took = time.monotonic() - asked
        assert started["reset_reason"] == REASON["COMMAND_RESTART"]
        assert reset_parameters(api)["RESTARTS_COMMAND_RESTART"] == 1
    # Its completion went down before the process ended (it may reach the ground a frame's
    # line time after), and the supervisor saw it end well.
    (completed,) = [e for e in record.history if e.report and e.report.stage is Stage.COMPLETION]
    assert completed.report is not None and completed.report.success
    exits = bench.supervisor.exits
    assert [(e.returncode, e.result) for e in exits] == [(RESTART_EXIT_STATUS, "success")]
    print(f"\nrestart by command: serving again after {took:.2f} s")
