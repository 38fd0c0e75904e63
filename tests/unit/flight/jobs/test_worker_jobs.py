"""Jobs computed in a supervised worker process (real processes, the CPU provider): results as
in one process, a worker lost under a job (crash, hang, run past its limit) costs the job one
more attempt, and a job that brings its worker down twice fails with WORKER_LOST."""

from __future__ import annotations

import hashlib
import io
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from flight.compute.job_compute import Computed, ComputeFailed, ComputeLost, JobInput
from flight.compute.run_control import RunControl
from flight.files.upload_store import UploadStore
from flight.jobs.executor import reference_session
from flight.jobs.redundancy import Redundancy
from flight.jobs.registry import ModelEntry, ModelRegistry
from flight.jobs.runner import JobRunner
from flight.jobs.store import JobState, JobStore
from flight.jobs.worker_compute import RunLimits, WorkerCompute
from flight.protection.upsets import UpsetLog
from flight.services.events import EventReporter
from flight.telemetry import TmPublisher
from flight.worker.config import WorkerConfig
from flight.worker.handlers import WorkerFault
from flight.worker.supervisor import Supervisor
from telemetry_defs.loader import default_dictionary
from tests.unit.flight.protection.test_weights import MAX_MODEL_BYTES, gemm_model
from tools.model_gen import cnn_classifier, model_bytes, random_input

D = default_dictionary()
FEATURES = np.random.default_rng(5).standard_normal((2, 8)).astype(np.float32)
# Short enough for a unit test, long enough for a run on a loaded 2-core machine.
LIMITS = RunLimits(first_s=20.0, factor=50.0, floor_s=4.0, service_s=20.0)


def npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


@dataclass
class Rig:
    registry: ModelRegistry
    entry: ModelEntry
    supervisor: Supervisor
    compute: WorkerCompute
    upsets: UpsetLog


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    upsets = UpsetLog()
    registry = ModelRegistry(tmp_path / "models", max_model_bytes=MAX_MODEL_BYTES, upsets=upsets)
    entry = registry.register("m", 1, gemm_model())
    holder: list[WorkerCompute] = []
    config = WorkerConfig(
        "flight.worker.handlers:build",
        socket_dir=tmp_path,
        options={"intra_op_threads": "1"},
        heartbeat_s=0.2,
        heartbeat_timeout_s=1.5,
    )
    supervisor = Supervisor(
        config,
        on_event=lambda e: holder[0].on_event(e) if holder else None,
        on_notice=lambda n: holder[0].on_notice(n),
    )
    compute = WorkerCompute(supervisor, registry, upsets, LIMITS)
    holder.append(compute)
    supervisor.start()
    entry = compute.record_answer(entry)
    try:
        yield Rig(registry, entry, supervisor, compute, upsets)
    finally:
        supervisor.stop()


def job_input(job_id: int, entry: ModelEntry, mode: Redundancy = Redundancy.TMR) -> JobInput:
    octets = npy(FEATURES)
    return JobInput(job_id, entry, mode, octets, hashlib.sha256(octets).digest(), "in.npy")


def test_the_known_answer_recorded_in_the_worker_is_kept_by_the_registry(rig: Rig) -> None:
    kept = rig.registry.entry("m", 1)
    assert kept.answer is not None and rig.entry.answer is not None
    assert kept.answer.digest == rig.entry.answer.digest


def test_a_tmr_job_computes_in_the_worker_what_onnxruntime_computes_here(rig: Rig) -> None:
    assert rig.compute.prepare(job_input(1, rig.entry)) is None
    runs: list[int] = []
    computed = rig.compute.run(1, RunControl(), runs.append)
    assert isinstance(computed, Computed) and computed.runs == 3
    assert runs == [1, 2, 3]
    accepted = rig.compute.accept(1, computed, RunControl())
    assert isinstance(accepted, Computed)
    expected = reference_session(rig.entry.path.read_bytes()).run(None, {"features": FEATURES})
    assert np.array_equal(next(iter(accepted.outputs.values())), expected[0])
    assert rig.compute.measured_run_s(rig.entry) > 0


@pytest.mark.parametrize(
    ("fault", "reason"),
    [(WorkerFault.CRASH, "CRASHED"), (WorkerFault.HANG, "HUNG"), (WorkerFault.SLOW, "RUN_TIMEOUT")],
)
def test_a_worker_lost_under_a_run_is_told_and_the_next_worker_computes(
    rig: Rig, fault: WorkerFault, reason: str
) -> None:
    rig.compute.prepare(job_input(2, rig.entry, Redundancy.NONE))
    assert isinstance(rig.compute.run(2, RunControl()), Computed)  # measured: the limit is short
    rig.compute.arm_fault(fault)
    started = time.monotonic()
    lost = rig.compute.run(2, RunControl())
    assert isinstance(lost, ComputeLost) and lost.reason == reason, lost
    print(f"{fault.name}: lost after {time.monotonic() - started:.2f} s")
    again = rig.compute.run(2, RunControl())  # prepared anew in the new worker
    assert isinstance(again, Computed) and again.runs == 1


def prepare_slow_job(rig: Rig, job_id: int) -> None:
    """A TMR job of a CNN on a batch of 32: a few hundred ms a run."""
    model = cnn_classifier()
    entry = rig.compute.record_answer(rig.registry.register("cnn", 1, model_bytes(model)))
    octets = npy(random_input(model, batch=32))
    job = JobInput(job_id, entry, Redundancy.TMR, octets, hashlib.sha256(octets).digest(), "x.npy")
    assert rig.compute.prepare(job) is None


def test_a_stop_reaches_a_run_in_the_worker(rig: Rig) -> None:
    prepare_slow_job(rig, 4)  # stopped after its first run of three
    control = RunControl()

    def stop_after_first(runs: int) -> None:
        control.terminate = True

    stopped = rig.compute.run(4, control, stop_after_first)
    assert isinstance(stopped, ComputeFailed) and stopped.failure == "INFERENCE_FAILED", stopped
    assert stopped.runs < 3


class Reports:
    """The TM the runner publishes, decoded enough to see events by name."""

    def __init__(self) -> None:
        self.events: list[tuple[str, bytes]] = []
        self.changed = threading.Event()
        self._ids = {e.id: name for name, e in D.events.items()}

    def sink(self, vcid: int, packet: bytes) -> None:
        if packet[7] == 5:
            name = self._ids.get(int.from_bytes(packet[20:22], "big"))
            if name is not None:
                self.events.append((name, packet[22:]))
                self.changed.set()


def test_the_runner_requeues_a_job_its_worker_was_lost_under_and_fails_a_poison_one(
    rig: Rig, tmp_path: Path
) -> None:
    reports = Reports()
    tm = TmPublisher(D.apid, reports.sink, time.time)
    files = UploadStore(tmp_path / "files", quota_bytes=1 << 30, reserve_bytes=0)
    files.put("in.npy", npy(FEATURES))
    store = JobStore.in_state_dir(tmp_path)
    runner = JobRunner(D, store, rig.registry, files, rig.compute, tm, EventReporter(D, tm))
    runner.start()
    try:
        rig.compute.arm_fault(WorkerFault.CRASH)  # once: the job's second attempt succeeds
        once = store.submit("m", "in.npy", 1, Redundancy.TMR, None).job_id
        runner.wake()
        assert wait_for(lambda: store.get(once).state is JobState.SUCCEEDED, 60)
        assert store.get(once).attempts == 2
        assert ("JOB_REQUEUED", once.to_bytes(4, "big")) in [(n, b[:4]) for n, b in reports.events]
        rig.compute.arm_fault(WorkerFault.CRASH, rig.entry.key, every=True)  # a poison model
        poison = store.submit("m", "in.npy", 1, Redundancy.NONE, None).job_id
        runner.wake()
        assert wait_for(lambda: store.get(poison).state is JobState.FAILED, 60)
        failed = store.get(poison)
        assert failed.failure_code == D.failure_named("WORKER_LOST").code
        assert failed.attempts == 2
        rig.compute.clear_faults()
        after = store.submit("m", "in.npy", 1, Redundancy.NONE, None).job_id
        runner.wake()
        assert wait_for(lambda: store.get(after).state is JobState.SUCCEEDED, 60)
    finally:
        runner.stop()
        store.close()
        files.close()


def wait_for(predicate, timeout: float) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_the_run_time_learnt_is_the_workers_not_the_wait_for_a_new_worker(rig: Rig) -> None:
    # A run limit learnt from a job that waited for a restarted worker would be too long: a
    # slow run right after a restart would be caught late.
    rig.compute.prepare(job_input(5, rig.entry, Redundancy.NONE))
    rig.compute.arm_fault(WorkerFault.CRASH)
    assert isinstance(rig.compute.run(5, RunControl()), ComputeLost)
    started = time.monotonic()
    again = rig.compute.run(5, RunControl())  # waits for the next worker to start
    waited = time.monotonic() - started
    assert isinstance(again, Computed) and again.runs == 1
    assert 0 < again.seconds < waited / 2
    assert rig.compute.measured_run_s(rig.entry) == pytest.approx(again.seconds)


def test_a_run_sent_ahead_is_computed_and_its_runs_told_when_its_caller_listens(
    rig: Rig,
) -> None:
    rig.compute.prepare(job_input(6, rig.entry, Redundancy.TMR))
    rig.compute.queue(6, RunControl())
    # The worker computes it at once: by the time the caller asks, the runs are done.
    assert wait_for(lambda: rig.compute.counter("runs") >= 3, 20)
    runs: list[int] = []
    computed = rig.compute.run(6, RunControl(), runs.append)
    assert isinstance(computed, Computed) and computed.runs == 3
    assert runs == [1, 2, 3]  # the first runs told late, each in order


def test_a_run_queued_behind_one_that_crashed_its_worker_is_sent_again_not_lost(
    rig: Rig,
) -> None:
    rig.compute.prepare(job_input(7, rig.entry, Redundancy.NONE))
    rig.compute.prepare(job_input(8, rig.entry, Redundancy.NONE))
    rig.compute.arm_fault(WorkerFault.CRASH)  # strikes the first run
    rig.compute.queue(7, RunControl())
    rig.compute.queue(8, RunControl())
    assert isinstance(rig.compute.run(7, RunControl()), ComputeLost)
    behind = rig.compute.run(8, RunControl())  # never began: the next worker computes it
    assert isinstance(behind, Computed) and behind.runs == 1


def test_a_job_put_back_before_its_turn_does_not_run(rig: Rig) -> None:
    prepare_slow_job(rig, 9)
    rig.compute.prepare(job_input(10, rig.entry, Redundancy.NONE))
    time.sleep(0.5)  # the runs counter comes with the heartbeats
    before = rig.compute.counter("runs")
    rig.compute.queue(9, RunControl())
    rig.compute.queue(10, RunControl())
    rig.compute.discard(10)  # put back while the long job computes
    assert isinstance(rig.compute.run(9, RunControl()), Computed)
    time.sleep(0.5)
    assert rig.compute.counter("runs") - before == 3  # the long job's, not the put-back one's
