"""A disk found full during a job, through the real processes (FAULT_INJECT DISK_FULL: the
disk of the results reads as full for 10 s): the job whose result found no room is queued again
and the queue held, uploads are refused meanwhile, and when the disk has room again the queue
runs on by itself: the job succeeds bit-exact, nothing accepted is lost."""

from __future__ import annotations

import hashlib
import io
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from flight.jobs.executor import reference_session
from flight.protection.injection import DISK_FULL_S
from hil.bench import Bench
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


@pytest.fixture
def test_bench(make_bench: Any, tmp_path: Path) -> Bench:
    bench: Bench = make_bench(baud=921600, flight_args=with_test_commands(tmp_path))
    return bench


def test_a_job_that_meets_a_full_disk_waits_for_room_and_succeeds(test_bench: Bench) -> None:
    model = mlp(seed=5, widths=TINY_WIDTHS)
    x = np.random.default_rng(2).standard_normal((2, 16)).astype(np.float32)
    expected = reference_session(model_bytes(model)).run(None, {"features": x})[0]
    with open_test_api(test_bench.ground_port, test_bench.baud) as api:
        register(api, "tiny", model_bytes(model))
        upload(api, "x.npy", npy(x), transfer_id=8)
        since = time.monotonic()
        inject(api, "DISK_FULL", "BIT")
        job_id, _ = submit(api, model="tiny", input="x.npy", redundancy="TMR")
        requeued = api.await_named_event(
            "JOB_REQUEUED", lambda v: v["job_id"] == job_id, since=since, timeout=30
        )
        assert requeued.values["reason"] == D.enums["RequeueReason"].values["DISK_FULL"]
        held = api.await_named_event("STORAGE_HELD", since=since, timeout=5).values
        assert held["job_id"] == job_id and held["room"] == 0 and held["needed"] > 0
        assert api.get_parameters("STORAGE_HOLD")["STORAGE_HOLD"] is True
        data = b"refused while the disk is full"
        api.command_expect_failure(
            "FILE_UPLOAD_BEGIN",
            code("DISK_FULL"),
            transfer_id=9,
            size=len(data),
            sha256=hashlib.sha256(data).digest(),
            name="later.bin",
        )
        assert job_report(api, job_id)["state"] == D.enums["JobState"].values["QUEUED"]

        resumed = api.await_named_event("STORAGE_RESUMED", since=since, timeout=DISK_FULL_S + 15)
        assert resumed.values["room"] > 0
        api.await_named_event(
            "JOB_SUCCEEDED", lambda v: v["job_id"] == job_id, since=since, timeout=30
        )
        waited = time.monotonic() - since
        report = job_report(api, job_id)
        assert report["attempts"] == 2
        assert held["needed"] == report["result_size"]
        result = np.load(io.BytesIO(download(api, report["result"])), allow_pickle=False)
        assert result.tobytes() == expected.tobytes()
        assert api.get_parameters("STORAGE_HOLD")["STORAGE_HOLD"] is False
        upload(api, "later.bin", data, transfer_id=9)  # and uploads are taken again
    print(f"\ndisk full for {DISK_FULL_S:g} s: the job succeeded {waited:.1f} s after the fault")
