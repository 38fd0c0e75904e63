"""Radiation protection through the link: faults injected into the running payload by the test
command are found, repaired and reported (events, housekeeping counters), results stay bit-exact,
and the test command is refused unless the configuration enables it."""

from __future__ import annotations

import io
import signal
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

LOCATION = D.enums["UpsetLocation"].values


@pytest.fixture
def test_bench(make_bench: Any, tmp_path: Path) -> Bench:
    # Upsets and repairs are the point, not the line: at 921600 baud the models, inputs and
    # reports take an eighth of the line time they take at 115200.
    bench: Bench = make_bench(baud=921600, flight_args=with_test_commands(tmp_path))
    return bench


def scrub(api: GroundTestApi) -> dict[str, Any]:
    return api.query_command("SCRUB_NOW", "SCRUB_REPORT", attempts=1, timeout=30).values


def corrected(api: GroundTestApi, location: str, since: float) -> dict[str, Any]:
    return api.await_named_event(
        "UPSET_CORRECTED", lambda v: v["location"] == LOCATION[location], since=since, timeout=30
    ).values


def run_tmr(api: GroundTestApi, model: str, x_name: str) -> dict[str, Any]:
    job_id, record = submit(api, model=model, input=x_name, redundancy="TMR")
    record.finished.wait(60)
    assert record.failure is None, record.failure
    return job_report(api, job_id)


def test_injected_upsets_are_found_repaired_and_reported(test_bench: Bench) -> None:
    model = mlp(seed=5, widths=TINY_WIDTHS)
    expected_session = reference_session(model_bytes(model))
    x = np.random.default_rng(1).standard_normal((3, 16)).astype(np.float32)
    expected = expected_session.run(None, {"features": x})[0]

    with open_test_api(test_bench.ground_port, test_bench.baud) as api:
        info = register(api, "tiny", model_bytes(model))
        assert info["copies"] == 2 and info["tolerance"] == 0.0
        upload(api, "x.npy", npy(x), transfer_id=8)

        # A weight upset between jobs: the scrubber finds it and repairs it in place.
        since = time.monotonic()
        where = inject(api, "WEIGHTS", "MULTI_BIT", "tiny")
        assert where.startswith("tiny v1 ")
        api.await_named_event("FAULT_INJECTED", since=since)
        report = scrub(api)
        assert (report["detected"], report["corrected"], report["uncorrectable"]) == (1, 1, 0)
        assert report["tensors"] >= 4 and report["model_files"] == 2
        assert corrected(api, "WEIGHTS", since)["where"].startswith("tiny v1: ")

        # A weight upset just before a TMR job: the three runs share the corrupted weights and
        # agree, so only the check before the result is accepted can catch it -- it does, and
        # the job runs again on repaired weights.
        since = time.monotonic()
        inject(api, "WEIGHTS", "VALUE", "tiny", seed=2)
        job = run_tmr(api, "tiny", "x.npy")
        assert job["runs"] == 6 and job["state"] == 2
        corrected(api, "WEIGHTS", since)
        result = np.load(io.BytesIO(download(api, job["result"])), allow_pickle=False)
        assert result.tobytes() == expected.tobytes()

        # An upset in one run's output: outvoted, reported, the result still exact.
        since = time.monotonic()
        inject(api, "OUTPUT", "BIT", seed=3)
        job = run_tmr(api, "tiny", "x.npy")
        assert (job["runs"], job["disagreements"]) == (3, 1)
        vote = api.await_named_event("VOTE_DISAGREEMENT", since=since).values
        assert vote["outvoted"] in (1, 2, 4)
        corrected(api, "OUTPUT", since)
        result = np.load(io.BytesIO(download(api, job["result"])), allow_pickle=False)
        assert result.tobytes() == expected.tobytes()

        # A stored model copy corrupted on flash: repaired from the other copy.
        since = time.monotonic()
        assert "copy" in inject(api, "MODEL_FILE", "ROW", "tiny", seed=4)
        assert scrub(api)["corrected"] == 1
        corrected(api, "MODEL_FILE", since)
        info = api.query_command("MODEL_INFO", "MODEL_REPORT", model="tiny", version=0).values
        assert info["copies"] == 2

        # A result file corrupted on board: never sent; the ground is told why.
        since = time.monotonic()
        inject(api, "RESULT_FILE", "BIT", job["result"], seed=5)
        api.command_expect_failure(
            "FILE_DOWNLOAD", code("RESULT_CORRUPT"), download_id=4, name=job["result"],
            offset=0, length=0,
        )  # fmt: skip
        event = api.await_named_event("UPSET_UNCORRECTABLE", since=since).values
        assert event["location"] == LOCATION["RESULT_FILE"] and event["where"] == job["result"]

        counters = api.get_parameters(
            "UPSETS_CORRECTED", "UPSETS_UNCORRECTABLE", "UPSETS_WEIGHTS", "UPSETS_OUTPUT",
            "UPSETS_MODEL_FILE", "UPSETS_RESULT_FILE", "SCRUB_PASSES", "WEIGHTS_PROTECTED",
            "KNOWN_ANSWER_RUNS",
        )  # fmt: skip
        assert counters["UPSETS_WEIGHTS"] == 2 and counters["UPSETS_OUTPUT"] == 1
        assert counters["UPSETS_MODEL_FILE"] == 1 and counters["UPSETS_RESULT_FILE"] == 1
        assert counters["UPSETS_CORRECTED"] == 4 and counters["UPSETS_UNCORRECTABLE"] == 1
        assert counters["SCRUB_PASSES"] >= 2
        widths = (16, *TINY_WIDTHS[1:])
        weights = sum(a * b + b for a, b in zip((16, *widths[1:-1]), widths[1:], strict=True))
        assert counters["WEIGHTS_PROTECTED"] == 4 * weights
        assert counters["KNOWN_ANSWER_RUNS"] >= 1


def test_fault_injection_is_refused_unless_the_configuration_enables_it(bench: Bench) -> None:
    with open_test_api(bench.ground_port, bench.baud) as api:
        api.command_expect_failure(
            "FAULT_INJECT", code("TEST_COMMANDS_DISABLED"), target="OUTPUT", fault="BIT",
            model="", version=0, seed=1,
        )  # fmt: skip
        # SCRUB_NOW is an operations command, always available.
        assert scrub(api)["uncorrectable"] == 0


def test_state_and_job_store_upsets_are_repaired_abft_runs_and_counts_survive_kill_9(
    test_bench: Bench,
) -> None:
    model = mlp(seed=5, widths=TINY_WIDTHS)
    x = np.random.default_rng(2).standard_normal((2, 16)).astype(np.float32)
    expected = reference_session(model_bytes(model)).run(None, {"features": x})[0]
    with open_test_api(test_bench.ground_port, test_bench.baud) as api:
        register(api, "tiny", model_bytes(model))
        upload(api, "x.npy", npy(x), transfer_id=8)

        # ABFT: the model with checksums gives the model's own result.
        job_id, record = submit(api, model="tiny", input="x.npy", redundancy="ABFT")
        record.finished.wait(60)
        assert record.failure is None, record.failure
        job = job_report(api, job_id)
        assert (job["runs"], job["redundancy"]) == (1, 3)
        result = np.load(io.BytesIO(download(api, job["result"])), allow_pickle=False)
        assert result.tobytes() == expected.tobytes()

        # A stored field of that job's record: repaired from its second copy when read.
        since = time.monotonic()
        assert inject(api, "JOB_STORE", "VALUE", seed=6).startswith(f"job {job_id} ")
        assert job_report(api, job_id) == job
        corrected(api, "JOB_STORE", since)

        # The protected state: a copy in memory or on flash, outvoted at the next pass.
        since = time.monotonic()
        inject(api, "STATE", "MULTI_BIT", seed=7)
        assert scrub(api)["corrected"] >= 1
        corrected(api, "STATE", since)

        # A setting the operator changed is critical configuration: kept across a crash.
        period = D.parameter("SCRUB_PERIOD").id
        api.command_and_assert("PARAM_SET", values=[{"id": period, "value": 120}])
        before = api.get_parameters("UPSETS_CORRECTED", "UPSETS_JOB_STORE", "UPSETS_STATE")
        assert before["UPSETS_JOB_STORE"] == 1 and before["UPSETS_STATE"] >= 1

    test_bench.stop_flight(signal.SIGKILL)
    test_bench.start_flight()
    with open_test_api(test_bench.ground_port, test_bench.baud) as api:
        after = api.get_parameters(
            "UPSETS_CORRECTED", "UPSETS_JOB_STORE", "UPSETS_STATE", "SCRUB_PERIOD"
        )
        assert after["SCRUB_PERIOD"] == 120
        assert {k: after[k] for k in before} == before
