"""Inference in a supervised worker process, through the real processes and the emulated link:
worker crashes and hangs injected while a queue of TMR jobs runs cost no accepted job and no
bit of a result, the link answers throughout, and a poison model fails its job with WORKER_LOST
after two attempts while the other jobs run."""

from __future__ import annotations

import io
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from flight.jobs.executor import reference_session
from hil.bench import Bench
from hil.testapi import GroundTestApi
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
    with_test_commands,
)
from tools.model_gen import mlp, model_bytes

pytestmark = pytest.mark.hil

SUCCEEDED = D.enums["JobState"].values["SUCCEEDED"]
FAILED = D.enums["JobState"].values["FAILED"]
LOSS = D.enums["WorkerLossReason"].values
REQUEUED_LOST = D.enums["RequeueReason"].values["WORKER_LOST"]


@pytest.fixture
def test_bench(make_bench: Any, tmp_path: Path) -> Bench:
    bench: Bench = make_bench(baud=921600, flight_args=with_test_commands(tmp_path))
    return bench


def wait_jobs(api: GroundTestApi, ids: list[int], timeout: float) -> dict[int, dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        reports = {i: job_report(api, i) for i in ids}
        if all(r["state"] in (SUCCEEDED, FAILED) for r in reports.values()):
            return reports
        assert time.monotonic() < deadline, {i: r["state"] for i, r in reports.items()}
        time.sleep(0.5)


def ping_ms(api: GroundTestApi) -> float:
    started = time.monotonic()
    api.command_and_assert("ARE_YOU_ALIVE")
    return (time.monotonic() - started) * 1000


def run_faults(bench: Bench, faults: list[str], jobs_per_fault: int) -> None:
    """Inject `faults` one after another into the worker while TMR jobs queue up; every job
    succeeds bit-exact, the link answers throughout; recovery times printed."""
    model = mlp(seed=5, widths=TINY_WIDTHS)
    x = np.random.default_rng(1).standard_normal((3, 16)).astype(np.float32)
    expected = reference_session(model_bytes(model)).run(None, {"features": x})[0]
    with open_test_api(bench.ground_port, bench.baud) as api:
        register(api, "tiny", model_bytes(model))
        upload(api, "x.npy", npy(x), transfer_id=8)
        ping_ms(api)
        ids: list[int] = []
        recovery: list[float] = []
        redone: list[float] = []
        pings: list[float] = []
        for fault in faults:
            since = time.monotonic()
            inject(api, fault, "BIT")
            ids += [
                submit(api, model="tiny", input="x.npy", redundancy="TMR")[0]
                for _ in range(jobs_per_fault)
            ]
            lost = api.await_named_event("WORKER_LOST", since=since, timeout=60).values
            reason = {"WORKER_HANG": "HUNG", "SLOW_RUN": "RUN_TIMEOUT"}.get(fault, "CRASHED")
            assert lost["reason"] == LOSS[reason]
            struck = api.await_named_event(
                "JOB_REQUEUED", lambda v: v["reason"] == REQUEUED_LOST, since=since, timeout=10
            ).values["job_id"]
            api.await_named_event("WORKER_STARTED", since=since + 0.001, timeout=30)
            recovery.append(time.monotonic() - since)
            pings.append(ping_ms(api))  # the link answers while the worker comes back
            # The next fault waits for the job this one struck to succeed: two faults in the
            # same job would fail it with WORKER_LOST, as they must (a poison job).
            api.await_named_event(
                "JOB_SUCCEEDED", lambda v, j=struck: v["job_id"] == j, since=since, timeout=60
            )
            redone.append(time.monotonic() - since)
        reports = wait_jobs(api, ids, timeout=120 + 5 * len(faults))
        assert all(r["state"] == SUCCEEDED for r in reports.values()), reports
        for report in reports.values():
            result = np.load(io.BytesIO(download(api, report["result"])), allow_pickle=False)
            assert result.tobytes() == expected.tobytes()
        requeued = [r for r in reports.values() if r["attempts"] > 1]
        assert len(requeued) == len(faults)  # the job each fault struck, run again
        print(
            f"\n{len(faults)} worker faults over {len(ids)} TMR jobs: all succeeded bit-exact; "
            f"fault to a new worker median {statistics.median(recovery):.1f} s, max "
            f"{max(recovery):.1f} s; to the struck job's result median "
            f"{statistics.median(redone):.1f} s, max {max(redone):.1f} s; "
            f"pings meanwhile median {statistics.median(pings):.0f} ms, "
            f"max {max(pings):.0f} ms"
        )


def test_worker_crashes_and_hangs_lose_no_job_and_no_bit(test_bench: Bench) -> None:
    # SLOW_RUN (a run past its limit) is in the slow run and the unit tests: it costs 5 s.
    run_faults(test_bench, ["WORKER_CRASH", "WORKER_HANG", "WORKER_CRASH"], 3)


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_a_hundred_worker_faults_during_a_tmr_queue(test_bench: Bench) -> None:
    """Issue 19 target: 100 injected worker hangs and crashes, 0 accepted jobs lost."""
    run_faults(test_bench, ["WORKER_CRASH", "WORKER_HANG"] * 49 + ["SLOW_RUN"] * 2, 2)


def test_a_poison_model_fails_its_job_after_two_attempts_and_the_rest_run(
    test_bench: Bench,
) -> None:
    good = mlp(seed=5, widths=TINY_WIDTHS)
    x = np.random.default_rng(1).standard_normal((3, 16)).astype(np.float32)
    with open_test_api(test_bench.ground_port, test_bench.baud) as api:
        register(api, "good", model_bytes(good))
        register(api, "poison", model_bytes(mlp(seed=6, widths=TINY_WIDTHS)))
        upload(api, "x.npy", npy(x), transfer_id=8)
        inject(api, "POISON_MODEL", "BIT", "poison")
        poison, record = submit(api, model="poison", input="x.npy")
        others = [submit(api, model="good", input="x.npy")[0] for _ in range(3)]
        reports = wait_jobs(api, [poison, *others], timeout=120)
        assert reports[poison]["state"] == FAILED and reports[poison]["attempts"] == 2
        assert record.finished.wait(10)
        assert record.failure is not None and record.failure.failure_code == code("WORKER_LOST")
        assert all(reports[i]["state"] == SUCCEEDED for i in others)
