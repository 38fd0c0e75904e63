"""Files, models and jobs on board, driven through the link with the test API: uploads that
survive a crash, every refusal with its own code, a job that survives `kill -9`, a queue run in
priority order, and results that match a local onnxruntime run bit for bit."""

from __future__ import annotations

import hashlib
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
from spacelink.spacepacket import AckFlags
from tests.harness import open_test_api
from tests.hil.onboard import (
    TINY_WIDTHS,
    D,
    begin,
    code,
    download,
    job_report,
    missing,
    npy,
    register,
    send_chunks,
    submit,
    upload,
    upload_report,
)
from tools.model_gen import (
    custom_domain_model,
    mlp,
    model_bytes,
    slow_model,
    truncated,
)

pytestmark = pytest.mark.hil

# None of these tests is about the line rate; their uploads, reports and downloads take an eighth
# of the time at 921600 baud that they take at the bench's default 115200.
BAUD = 921600


@pytest.fixture
def bench(make_bench: Any) -> Bench:
    bench: Bench = make_bench(baud=BAUD)
    return bench


@pytest.fixture
def api(bench: Bench):  # type: ignore[no-untyped-def]
    with open_test_api(bench.ground_port, bench.baud) as ground:
        yield ground


def test_tmr_job_result_is_bit_exact_with_local_onnxruntime(api: GroundTestApi) -> None:
    model = mlp(seed=5, widths=TINY_WIDTHS)
    info = register(api, "tiny", model_bytes(model))
    assert info["signature"] == "features float32[?,16] -> logits float32[?,4]"
    x = np.random.default_rng(1).standard_normal((3, 16)).astype(np.float32)
    upload(api, "x.npy", npy(x), transfer_id=8)
    job_id, record = submit(api, model="tiny", input="x.npy", redundancy="TMR")
    # Completion of JOB_SUBMIT is the job's end; progress steps on the way.
    api.assert_stages(record, [], timeout=30)
    record.finished.wait(30)
    assert record.failure is None
    steps = [e.report.step for e in record.history if e.report is not None and e.report.step]
    assert steps[:2] == [1, 2] and steps.count(3) == 3 and steps[-1] == 4
    report = job_report(api, job_id)
    assert report["state"] == 2 and report["runs"] == 3 and report["disagreements"] == 0
    assert report["version"] == 1  # submitted with version 0: the version it resolved to
    result = np.load(io.BytesIO(download(api, report["result"])), allow_pickle=False)
    session = reference_session(model_bytes(model))
    expected = session.run(None, {"features": x})[0]
    assert result.dtype == expected.dtype and result.tobytes() == expected.tobytes()
    api.await_named_event("JOB_SUCCEEDED", lambda v: v["job_id"] == job_id, since=0)


def test_every_refusal_has_its_code_and_the_payload_stays_healthy(
    make_bench: Any, tmp_path: Path
) -> None:
    config = tmp_path / "small-disk.toml"
    # A small quota: a large upload is refused.
    config.write_text("[storage]\nquota_bytes = 200000\n")
    bench = make_bench(baud=BAUD, flight_args=["--config", str(config)])
    with open_test_api(bench.ground_port, bench.baud) as api:
        register(api, "tiny", model_bytes(mlp(seed=5, widths=TINY_WIDTHS)))
        upload(api, "x.npy", npy(np.zeros((2, 16), np.float32)), transfer_id=9)
        upload(api, "wrong.npy", npy(np.zeros((2, 15), np.float32)), transfer_id=10)
        upload(api, "ints.npy", npy(np.zeros((2, 16), np.int32)), transfer_id=11)
        upload(api, "pickle.npy", b"\x80\x04K\x01.", transfer_id=12)

        def refused(command: str, failure: str, /, **values: Any) -> None:
            api.command_expect_failure(command, code(failure), **values)

        job = {"version": 0, "priority": 0, "redundancy": "NONE", "deadline": 0}
        refused("JOB_SUBMIT", "INPUT_WRONG_SHAPE", model="tiny", input="wrong.npy", **job)
        refused("JOB_SUBMIT", "INPUT_WRONG_DTYPE", model="tiny", input="ints.npy", **job)
        refused("JOB_SUBMIT", "INPUT_NOT_NPY", model="tiny", input="pickle.npy", **job)
        refused("JOB_SUBMIT", "UNKNOWN_MODEL", model="nope", input="x.npy", **job)
        refused("JOB_SUBMIT", "NO_SUCH_FILE", model="tiny", input="none.npy", **job)
        refused("JOB_STATUS", "UNKNOWN_JOB", job_id=999)
        refused("MODEL_DELETE", "UNKNOWN_MODEL", model="tiny", version=2)

        # A corrupt upload: the octets sent are not those announced.
        data = b"A" * 3000
        report = upload_report(
            api,
            "FILE_UPLOAD_BEGIN",
            transfer_id=20,
            size=len(data),
            sha256=hashlib.sha256(b"B" * 3000).digest(),
            name="corrupt.bin",
        )
        send_chunks(api, 20, data, missing(report))
        refused("FILE_UPLOAD_COMMIT", "CHECKSUM_MISMATCH", transfer_id=20)
        api.await_named_event("FILE_CHECKSUM_MISMATCH", lambda v: v["transfer_id"] == 20, since=0)
        report = upload_report(api, "FILE_UPLOAD_STATUS", transfer_id=20)
        assert report["received"] == 0  # discarded: everything must come again

        # Quota: the store is nearly full.
        refused(
            "FILE_UPLOAD_BEGIN",
            "QUOTA_EXCEEDED",
            transfer_id=21,
            size=199_000,
            sha256=bytes(32),
            name="big.bin",
        )
        refused(
            "FILE_UPLOAD_BEGIN",
            "FILE_NAME_INVALID",
            transfer_id=22,
            size=10,
            sha256=bytes(32),
            name="../etc",
        )
        refused("FILE_UPLOAD_CHUNK", "UNKNOWN_TRANSFER", transfer_id=23, offset=0, data=b"x")
        refused("FILE_UPLOAD_COMMIT", "TRANSFER_INCOMPLETE", transfer_id=20)
        api.command_and_assert("FILE_UPLOAD_ABORT", transfer_id=20)
        refused("FILE_UPLOAD_STATUS", "UNKNOWN_TRANSFER", transfer_id=20)
        size = len(npy(np.zeros((2, 16), np.float32)))
        refused("FILE_DOWNLOAD", "DOWNLOAD_RANGE", download_id=1, name="x.npy", offset=size + 1,
                length=0)  # fmt: skip
        refused("FILE_DOWNLOAD", "NO_SUCH_FILE", download_id=1, name="none.bin", offset=0,
                length=0)  # fmt: skip
        refused("FILE_DOWNLOAD_CANCEL", "UNKNOWN_TRANSFER", download_id=1)

        # ONNX files that fail validation, each with its reason.
        for transfer, (name, blob, failure) in enumerate(
            [
                ("notonnx", b"definitely not a model", "MODEL_NOT_ONNX"),
                ("cut", truncated(mlp(seed=5, widths=TINY_WIDTHS)), "MODEL_NOT_ONNX"),
                ("custom", model_bytes(custom_domain_model()), "MODEL_OPERATOR_NOT_ALLOWED"),
            ],
            start=30,
        ):
            upload(api, f"{name}.onnx", blob, transfer_id=transfer)
            refused(
                "MODEL_REGISTER", failure, file=f"{name}.onnx", model=name, version=1, tolerance=0.0
            )
        refused(
            "MODEL_REGISTER", "MODEL_EXISTS", file="x.npy", model="tiny", version=1, tolerance=0.0
        )

        # Still healthy: it answers, and a job runs.
        api.command_and_assert("ARE_YOU_ALIVE")
        job_id, record = submit(api, model="tiny", input="x.npy")
        record.finished.wait(30)
        assert record.failure is None and job_report(api, job_id)["state"] == 2


def test_a_disk_that_is_full_refuses_uploads(make_bench: Any, tmp_path: Path) -> None:
    config = tmp_path / "full-disk.toml"
    config.write_text(f"[storage]\nreserve_bytes = {2**62}\n")
    bench = make_bench(baud=BAUD, flight_args=["--config", str(config)])
    with open_test_api(bench.ground_port, bench.baud) as api:
        api.command_expect_failure(
            "FILE_UPLOAD_BEGIN",
            code("DISK_FULL"),
            transfer_id=1,
            size=100,
            sha256=bytes(32),
            name="a.bin",
        )
        api.command_and_assert("ARE_YOU_ALIVE")


# make test has the operator's resume after a crash through groundsw (test_jobs_end_to_end).
@pytest.mark.slow
def test_upload_resumes_after_kill_9(bench: Bench) -> None:
    # Lean: each 100 kB costs about 1 s of line time each way at 921600 baud (9 s at 115200).
    data = np.random.default_rng(3).bytes(120_000)
    with open_test_api(bench.ground_port, bench.baud) as api:
        report = begin(api, "big.bin", data, 5)
        send_chunks(api, 5, data, [(0, 60_000)])
        # The status request makes what was received durable, as a ground tool's check does.
        report = upload_report(api, "FILE_UPLOAD_STATUS", transfer_id=5)
        assert report["received"] == 60_000
        send_chunks(api, 5, data, [(60_000, 20_000)])
    bench.stop_flight(signal.SIGKILL)
    bench.start_flight()
    with open_test_api(bench.ground_port, bench.baud) as api:
        report = begin(api, "big.bin", data, 5)
        assert report["received"] >= 60_000  # resumed, not restarted
        while report["missing_ranges"]:
            send_chunks(api, 5, data, missing(report))
            report = upload_report(api, "FILE_UPLOAD_STATUS", transfer_id=5)
        api.command_and_assert("FILE_UPLOAD_COMMIT", transfer_id=5)
        assert download(api, "big.bin") == data


def test_a_job_interrupted_by_kill_9_completes_once_after_restart(bench: Bench) -> None:
    with open_test_api(bench.ground_port, bench.baud) as api:
        register(api, "slow", model_bytes(slow_model()))
        upload(api, "s.npy", npy(np.full((1, 1), 2.0, np.float32)), transfer_id=9)
        job_id, record = submit(api, model="slow", input="s.npy", redundancy="TMR")
        deadline = time.monotonic() + 30
        while not any(e.report and e.report.step == 2 for e in record.history):
            assert time.monotonic() < deadline, "the job did not start"
            time.sleep(0.05)
    bench.stop_flight(signal.SIGKILL)
    bench.start_flight()
    with open_test_api(bench.ground_port, bench.baud) as api:
        api.default_timeout = 60
        api.await_named_event("JOB_SUCCEEDED", lambda v: v["job_id"] == job_id, timeout=60)
        report = job_report(api, job_id)
        assert report["state"] == 2 and report["attempts"] == 2 and report["runs"] == 3
        time.sleep(1)
        succeeded = [e for e in api.event_history() if e.event_id == D.event("JOB_SUCCEEDED").id]
        assert len(succeeded) == 1  # run to completion once


def test_hundred_queued_jobs_complete_in_priority_order(bench: Bench) -> None:
    with open_test_api(bench.ground_port, bench.baud) as api:
        api.default_timeout = 60
        register(api, "tiny", model_bytes(mlp(seed=5, widths=TINY_WIDTHS)))
        upload(api, "x.npy", npy(np.ones((1, 16), np.float32)), transfer_id=9)
        api.command_and_assert("PARAM_SET", values=[{"id": 85, "value": True}])
        priorities = [int(p) for p in np.random.default_rng(7).integers(0, 5, 100)]
        job = {"model": "tiny", "version": 0, "input": "x.npy", "redundancy": 0, "deadline": 0}
        records = [
            api.command("JOB_SUBMIT", AckFlags.ACCEPTANCE, priority=p, **job) for p in priorities
        ]
        api.assert_delivered(records, timeout=120)
        accepted = D.packets["JOB_ACCEPTED"]
        deadline = time.monotonic() + 60
        while len(api.tm_history(accepted.service, accepted.subtype)) < 100:
            assert time.monotonic() < deadline, "not every job was accepted"
            time.sleep(0.1)
        ids = [
            api.decode(item).values["job_id"]
            for item in api.tm_history(accepted.service, accepted.subtype)
        ]
        assert len(set(ids)) == 100
        api.command_and_assert("PARAM_SET", values=[{"id": 85, "value": False}])
        event_id = D.event("JOB_SUCCEEDED").id
        deadline = time.monotonic() + 120
        while True:
            done = [e for e in api.event_history() if e.event_id == event_id]
            if len(done) >= 100:
                break
            assert time.monotonic() < deadline, f"{len(done)} of 100 jobs done"
            time.sleep(0.2)
        order = [int.from_bytes(e.data[:4], "big") for e in done]
        assert sorted(order) == sorted(ids)
        priority_of = dict(zip(ids, priorities, strict=True))
        expected = sorted(ids, key=lambda j: (-priority_of[j], j))
        assert order == expected


def test_deadlines_and_cancellation_stop_running_jobs(bench: Bench) -> None:
    with open_test_api(bench.ground_port, bench.baud) as api:
        api.default_timeout = 30
        register(api, "slow", model_bytes(slow_model()))
        upload(api, "s.npy", npy(np.full((1, 1), 2.0, np.float32)), transfer_id=9)
        # TMR of ~0.6 s runs cannot finish in 1 s: the run is stopped, the TC fails with 288.
        late, record = submit(api, model="slow", input="s.npy", redundancy="TMR", deadline=1)
        record.finished.wait(30)
        assert record.failure is not None and record.failure.failure_code == code("JOB_TIMED_OUT")
        assert job_report(api, late)["state"] == 5  # TIMED_OUT
        running, record = submit(api, model="slow", input="s.npy", redundancy="TMR")
        deadline = time.monotonic() + 30
        while not any(e.report and e.report.step == 2 for e in record.history):
            assert time.monotonic() < deadline, "the job did not start"
            time.sleep(0.05)
        api.command_and_assert("JOB_CANCEL", job_id=running)
        record.finished.wait(30)
        assert record.failure is not None and record.failure.failure_code == code("JOB_CANCELLED")
        assert job_report(api, running)["state"] == 4  # CANCELLED
        api.command_expect_failure("JOB_CANCEL", code("JOB_ALREADY_FINISHED"), job_id=running)
        # The worker is free again: a job after them runs.
        after, record = submit(api, model="slow", input="s.npy")
        record.finished.wait(30)
        assert record.failure is None and job_report(api, after)["state"] == 2


def test_a_download_on_vc1_never_delays_real_time_telemetry(make_bench: Any) -> None:
    # At 921600 baud a 300 kB download keeps VC 1 busy for about 3.5 s, several times what
    # the pings below take; a ping answered on VC 0 meanwhile waits at most for the frame
    # already on the line, not behind the download.
    bench = make_bench(baud=BAUD)
    size = 300_000
    data = np.random.default_rng(5).bytes(size)
    with open_test_api(bench.ground_port, bench.baud) as api:
        upload(api, "big.bin", data, transfer_id=4)

        def ping_ms() -> float:
            record = api.send_and_assert(17, 1)
            reply = api.await_packet(17, 2, since=record.sent_at)
            return (reply.received_at - record.sent_at) * 1000

        quiet = min(ping_ms() for _ in range(3))
        chunk = D.packets["FILE_DOWNLOAD_CHUNK"]
        before = len(api.tm_history(chunk.service, chunk.subtype))
        download = api.command("FILE_DOWNLOAD", download_id=9, name="big.bin", offset=0, length=0)
        while len(api.tm_history(chunk.service, chunk.subtype)) < before + 20:
            time.sleep(0.01)
        busy = [ping_ms() for _ in range(5)]
        during = len(api.tm_history(chunk.service, chunk.subtype)) - before
        assert during < size // 1024  # the pings were answered while chunks still flowed
        # One TM frame takes 12 ms at 921600: a ping queued behind the download would wait
        # seconds.
        print(f"ping {quiet:.1f} ms quiet, {max(busy):.1f} ms at most during a download")
        assert max(busy) < quiet + 60, (quiet, busy)
        # Cancelled, the download ends with a failed completion and its chunks stop.
        api.command_and_assert("FILE_DOWNLOAD_CANCEL", download_id=9)
        download.finished.wait(10)
        assert download.failure is not None
        assert download.failure.failure_code == code("EXECUTION_FAILED")
        time.sleep(0.5)  # chunks already on the line arrive
        sent = len(api.tm_history(chunk.service, chunk.subtype))
        time.sleep(1.0)
        assert len(api.tm_history(chunk.service, chunk.subtype)) == sent
        assert sent - before < size // 1024
