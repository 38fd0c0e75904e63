"""Payload overhead per job: from submission to the stored result, against a bare onnxruntime
`run` of the same model and input (issue 5 target: ratio <= 1.05 with redundancy none for a
model of >= 5 ms).

The payload side is the real code path without the link: the job store (SQLite, durable
commits), the upload store (input read, result written and synced atomically), the model
registry, input checks against the signature, the cached session on payload-owned weights, the
checks before a result is accepted (model guard: input CRCs, weights for DMR/TMR, known answer
at most 1 s old) and the worker thread that reports the job's end. Both sides run the same
session options on the same input; the two are measured alternately so that drift on a busy
host hits both alike, and the medians compared.
"""

from __future__ import annotations

import functools
import io
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from flight.compute.interpreter import configure_interpreter
from flight.compute.job_compute import JobCompute
from flight.config import JobsConfig
from flight.files.upload_store import UploadStore
from flight.jobs.compute_setup import ComputeSetup, PayloadCompute, open_compute
from flight.jobs.executor import Executor, SessionCache, default_intra_op_threads
from flight.jobs.providers import CPU, ProviderChoice
from flight.jobs.redundancy import Redundancy
from flight.jobs.registry import ModelRegistry
from flight.jobs.runner import JobRunner
from flight.jobs.store import JobStore
from flight.protection.model_guard import ModelGuard
from flight.protection.upsets import UpsetLog
from flight.services.events import EventReporter
from flight.telemetry import TmPublisher
from telemetry_defs.loader import default_dictionary
from tools.model_gen import cnn_classifier, model_bytes, random_input

D = default_dictionary()
JOBS = 40
# Queues measured per side: the best of them is compared (noise on a busy host only adds).
STREAM_REPEATS = 5
# The worker against in process: turns of short queues on each side, compared pair by pair.
PAIRS = 24
PAIRED_JOBS = 40


class _Payload:
    """The job path of the payload, in process, with a TM sink that spots JOB_SUCCEEDED."""

    def __init__(self, root: Path, *, worker: bool = False) -> None:
        """`worker`: the compute in a supervised worker process, as payload-flight runs it."""
        self.done = threading.Event()
        succeeded = D.event("JOB_SUCCEEDED").id.to_bytes(2, "big")

        def sink(vcid: int, packet: bytes) -> None:
            # Primary header 6, TM secondary header 14: service at 7, event ID at 20.
            if packet[7] == 5 and packet[20:22] == succeeded:
                self.done.set()

        tm = TmPublisher(D.apid, sink, time.time)
        self.files = UploadStore(root / "files", quota_bytes=2**34, reserve_bytes=0)
        self.registry = ModelRegistry(root / "models", max_model_bytes=2**30)
        self.store = JobStore.in_state_dir(root)
        # As the payload configures it by default (flight/app.py).
        self.cache = SessionCache(2, ProviderChoice(CPU), default_intra_op_threads())
        self.guard = ModelGuard(self.registry, Executor(self.cache), UpsetLog())
        self.compute: PayloadCompute | JobCompute = JobCompute(
            self.guard.executor, self.guard.upsets, self.guard
        )
        self.setup: ComputeSetup | None = None
        if worker:
            jobs = JobsConfig(session_cache=2, intra_op_threads=default_intra_op_threads())
            self.setup = open_compute(
                jobs, root, self.registry, self.guard.upsets, provider=None,
                on_event=lambda e: None, on_notice=lambda n: None,
            )  # fmt: skip
            assert self.setup.supervisor is not None
            self.setup.supervisor.start()
            self.compute = self.setup.compute
        self.runner = JobRunner(
            D, self.store, self.registry, self.files, self.compute, tm, EventReporter(D, tm)
        )
        self.runner.start()

    def register(self, name: str, data: bytes) -> None:
        """As MODEL_REGISTER does: validated, stored twice, known answer recorded."""
        entry = self.registry.register(name, 1, data)
        if self.setup is not None:
            self.setup.compute.record_answer(entry)
        else:
            self.guard.record_answer(entry)

    def job(self, model: str, input_file: str, redundancy: Redundancy = Redundancy.NONE) -> None:
        self.done.clear()
        self.store.submit(model, input_file, 0, redundancy, None)
        self.runner.wake()
        if not self.done.wait(30):
            raise AssertionError("the job did not finish")

    def stream(self, model: str, input_file: str, jobs: int) -> None:
        """Submit `jobs` jobs back to back, as a queue fills from the link while jobs run;
        return when the last result is stored."""
        last = 0
        for _ in range(jobs):
            last = self.store.submit(model, input_file, 0, Redundancy.NONE, None).job_id
            self.runner.wake()
        deadline = time.monotonic() + 120
        while self.store.get(last).state.name != "SUCCEEDED":
            if time.monotonic() > deadline:
                raise AssertionError("the stream did not finish")
            self.done.wait(0.05)
            self.done.clear()

    def close(self) -> None:
        self.runner.stop()
        if self.setup is not None:
            self.setup.compute.stop()
        self.store.close()


def _median_seconds(fn: Callable[[], object], n: int) -> list[float]:
    times = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


@pytest.fixture
def payload_interpreter() -> Iterator[None]:
    """The interpreter set as payload-flight sets it, for this test only."""
    before = sys.getswitchinterval()
    configure_interpreter()
    yield
    sys.setswitchinterval(before)


@pytest.mark.usefixtures("payload_interpreter")
@pytest.mark.parametrize("batch", [1, 4])
def test_job_overhead_against_bare_onnxruntime(
    tmp_path: Path, batch: int, report: Callable[[str, str], None]
) -> None:
    model = cnn_classifier(seed=1)
    data = model_bytes(model)
    x = random_input(model, batch=batch, seed=3)
    buffer = io.BytesIO()
    np.save(buffer, x, allow_pickle=False)

    payload = _Payload(tmp_path)
    try:
        payload.register("cnn", data)
        payload.files.put("x.npy", buffer.getvalue())
        bare = ort.InferenceSession(data, sess_options=payload.cache.options(), providers=[CPU])
        feeds = {"image": x}
        # Warm both: the payload's session is created by its first job.
        payload.job("cnn", "x.npy")
        bare.run(None, feeds)

        ours: list[float] = []
        theirs: list[float] = []
        for _ in range(JOBS):
            theirs += _median_seconds(lambda: bare.run(None, feeds), 1)
            ours += _median_seconds(lambda: payload.job("cnn", "x.npy"), 1)
        ratio = statistics.median(ours) / statistics.median(theirs)
        section = "Job overhead (issue 5): submission to stored result vs bare onnxruntime run"
        report(
            section,
            f"CNN 3x64x64 batch {batch}, one job at a time: bare run median"
            f" {statistics.median(theirs) * 1e3:.2f} ms, payload job median"
            f" {statistics.median(ours) * 1e3:.2f} ms, ratio {ratio:.3f}"
            f" (overhead {(statistics.median(ours) - statistics.median(theirs)) * 1e3:.2f} ms)",
        )
        # A queue of jobs: submissions and the bookkeeping of one job overlap the computing of
        # the others.
        streams: list[float] = []
        bares: list[float] = []
        for _ in range(STREAM_REPEATS):
            start = time.perf_counter()
            for _ in range(JOBS):
                bare.run(None, feeds)
            bares.append((time.perf_counter() - start) / JOBS)
            start = time.perf_counter()
            payload.stream("cnn", "x.npy", JOBS)
            streams.append((time.perf_counter() - start) / JOBS)
        stream_ratio = min(streams) / min(bares)
        report(
            section,
            f"CNN 3x64x64 batch {batch}, {JOBS} jobs queued: bare {min(bares) * 1e3:.2f} ms per"
            f" run, payload {min(streams) * 1e3:.2f} ms per job, ratio {stream_ratio:.3f}",
        )
    finally:
        payload.close()


@pytest.mark.usefixtures("payload_interpreter")
def test_tmr_job_cost_against_a_single_run_job(
    tmp_path: Path, report: Callable[[str, str], None]
) -> None:
    """Issue 6 target: TMR costs <= 3.1x a single run, measured as whole jobs (submission to
    stored result, with every check the payload makes before accepting a result)."""
    model = cnn_classifier(seed=1)
    x = random_input(model, batch=1, seed=3)
    buffer = io.BytesIO()
    np.save(buffer, x, allow_pickle=False)
    payload = _Payload(tmp_path)
    try:
        payload.register("cnn", model_bytes(model))
        payload.files.put("x.npy", buffer.getvalue())
        payload.job("cnn", "x.npy", Redundancy.TMR)
        single: list[float] = []
        tmr: list[float] = []
        for _ in range(JOBS):
            single += _median_seconds(lambda: payload.job("cnn", "x.npy"), 1)
            tmr += _median_seconds(lambda: payload.job("cnn", "x.npy", Redundancy.TMR), 1)
        ratio = statistics.median(tmr) / statistics.median(single)
        report(
            "Radiation protection (issue 6): TMR cost",
            f"CNN 3x64x64 batch 1, one job at a time: NONE job median"
            f" {statistics.median(single) * 1e3:.2f} ms, TMR job median"
            f" {statistics.median(tmr) * 1e3:.2f} ms, ratio {ratio:.2f} (target <= 3.1)",
        )
        assert ratio <= 3.1
    finally:
        payload.close()


@pytest.mark.usefixtures("payload_interpreter")
def test_job_overhead_in_a_worker_against_in_process(
    tmp_path: Path, report: Callable[[str, str], None]
) -> None:
    """Issue 19 target: with the compute in a worker process, the job overhead ratio stays
    within the in-process ratio plus 2 percentage points. Both are measured in one run against
    the same bare run, in short queues taken in turn (the order rotated), and compared pair by
    pair: on a shared host the load drifts by more than the difference sought, and a pair sees
    nearly the same load on its three sides."""
    model = cnn_classifier(seed=1)
    data = model_bytes(model)
    x = random_input(model, batch=1, seed=3)
    buffer = io.BytesIO()
    np.save(buffer, x, allow_pickle=False)
    sides = {
        "in process": _Payload(tmp_path / "here"),
        "worker": _Payload(tmp_path / "w", worker=True),
    }
    try:
        for side in sides.values():
            side.register("cnn", data)
            side.files.put("x.npy", buffer.getvalue())
            side.job("cnn", "x.npy")  # warm: the session is created by the first job
        bare = ort.InferenceSession(
            data, sess_options=sides["in process"].cache.options(), providers=[CPU]
        )
        feeds = {"image": x}
        bare.run(None, feeds)

        def bare_queue() -> None:
            for _ in range(PAIRED_JOBS):
                bare.run(None, feeds)

        queues: dict[str, Callable[[], None]] = {
            name: functools.partial(side.stream, "cnn", "x.npy", PAIRED_JOBS)
            for name, side in sides.items()
        }
        queues["bare"] = bare_queue
        per_job: dict[str, list[float]] = {name: [] for name in queues}
        names = list(queues)
        for turn in range(PAIRS):
            for name in names[turn % 3 :] + names[: turn % 3]:
                start = time.perf_counter()
                queues[name]()
                per_job[name].append((time.perf_counter() - start) / PAIRED_JOBS)
        deltas = [
            (worker - here) / bare_s
            for worker, here, bare_s in zip(
                per_job["worker"], per_job["in process"], per_job["bare"], strict=True
            )
        ]
        delta = statistics.median(deltas)
        bare_s = statistics.median(per_job["bare"])
        ratios = {name: statistics.median(per_job[name]) / bare_s for name in sides}
        one = {
            name: statistics.median(_median_seconds(lambda side=side: side.job("cnn", "x.npy"), 20))
            / bare_s
            for name, side in sides.items()
        }
        report(
            "Worker process (issue 19): job overhead in a worker against in process",
            f"CNN 3x64x64 batch 1, bare run {bare_s * 1e3:.2f} ms. {PAIRS} turns of"
            f" {PAIRED_JOBS} jobs queued on each side: ratio {ratios['in process']:.3f} in"
            f" process, {ratios['worker']:.3f} in a worker; median difference of a turn"
            f" {delta * 100:+.1f} points (target <= +2). One job at a time:"
            f" {one['in process']:.3f} and {one['worker']:.3f}",
        )
        assert delta <= 0.02
    finally:
        for side in sides.values():
            side.close()
