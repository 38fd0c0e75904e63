"""The runner's count of the losses a job brings about, kept in the job store: a poison job fails
with WORKER_LOST at its second loss even when the losses are spread over two runs of the payload,
and a job that was running when the payload died counts that as a loss at start-up."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from flight.compute.job_compute import Computed, ComputeFailed, ComputeLost, JobInput
from flight.compute.run_control import RunControl
from flight.files.upload_store import UploadStore
from flight.jobs.redundancy import Redundancy
from flight.jobs.registry import ModelRegistry
from flight.jobs.runner import MAX_JOB_LOSSES, JobRunner
from flight.jobs.store import PAYLOAD_LOST, Job, JobState, JobStore, LossLimit
from flight.protection.upsets import UpsetLog
from flight.telemetry import TmPublisher
from telemetry_defs.loader import default_dictionary
from tests.unit.flight.protection.test_weights import MAX_MODEL_BYTES, gemm_model

D = default_dictionary()
WORKER_LOST = D.failure_named("WORKER_LOST").code


class LosingCompute:
    """A compute whose worker is lost under every run (a poison job); with `hold_after`, the
    runs after that many losses wait until they are stopped instead."""

    def __init__(self, hold_after: int | None = None) -> None:
        self.runs = 0
        self.hold_after = hold_after
        self.holding = threading.Event()

    def prepare(self, job: JobInput) -> ComputeFailed | None:
        return None

    def queue(self, job_id: int, control: RunControl) -> None:
        pass

    def run(
        self, job_id: int, control: RunControl, on_run: Callable[[int], None] | None = None
    ) -> Computed | ComputeFailed | ComputeLost:
        self.runs += 1
        if self.hold_after is not None and self.runs > self.hold_after:
            self.holding.set()
            while not control.terminate:
                time.sleep(0.01)
            return ComputeFailed("INFERENCE_FAILED", "stopped")
        return ComputeLost("CRASHED", "signal SIGSEGV")

    def accept(
        self,
        job_id: int,
        computed: Computed,
        control: RunControl,
        on_run: Callable[[int], None] | None = None,
    ) -> Computed | ComputeFailed | ComputeLost:
        return computed

    def discard(self, job_id: int) -> None:
        pass


@dataclass
class Events:
    raised: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def raise_event(self, name: str, **values: Any) -> None:
        self.raised.append((name, values))

    def named(self, name: str) -> list[dict[str, Any]]:
        return [values for raised, values in self.raised if raised == name]


@dataclass
class Payload:
    """What a runner needs besides its store and compute: one per test, shared by its runs."""

    root: Path
    registry: ModelRegistry
    files: UploadStore

    def runner(
        self, store: JobStore, compute: LosingCompute, events: Events, *, apart: bool = False
    ) -> JobRunner:
        tm = TmPublisher(D.apid, lambda vcid, packet: None, time.time)
        return JobRunner(
            D, store, self.registry, self.files, compute, tm, events,  # type: ignore[arg-type]
            compute_apart=apart,
        )  # fmt: skip


@pytest.fixture
def payload(tmp_path: Path) -> Iterator[Payload]:
    registry = ModelRegistry(
        tmp_path / "models", max_model_bytes=MAX_MODEL_BYTES, upsets=UpsetLog()
    )
    registry.register("m", 1, gemm_model())
    files = UploadStore(tmp_path / "files", quota_bytes=1 << 30, reserve_bytes=0)
    files.put("in.npy", b"input")  # never read: the compute is a stand-in
    try:
        yield Payload(tmp_path, registry, files)
    finally:
        files.close()


def wait_for(predicate: Callable[[], bool], timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def test_a_poison_job_fails_at_its_second_loss_across_two_runs_of_the_payload(
    payload: Payload,
) -> None:
    # The first run of the payload: the job loses its worker once, runs again, and the payload
    # stops (cleanly) while that second attempt computes.
    store = JobStore.in_state_dir(payload.root)
    compute, events = LosingCompute(hold_after=1), Events()
    runner = payload.runner(store, compute, events)
    runner.start()
    try:
        job_id = store.submit("m", "in.npy", 1, Redundancy.NONE, None).job_id
        runner.wake()
        assert compute.holding.wait(20)
        assert store.get(job_id).losses == 1
        assert [e["reason"] for e in events.named("JOB_REQUEUED")] == ["WORKER_LOST"]
    finally:
        runner.stop()
        store.close()
    # The next run of the payload: the count was kept, so its first loss is the job's second.
    store = JobStore.in_state_dir(payload.root)
    compute, events = LosingCompute(), Events()
    runner = payload.runner(store, compute, events)
    runner.start()
    try:
        assert wait_for(lambda: store.get(job_id).state is JobState.FAILED)
        failed = store.get(job_id)
        assert (failed.failure_code, failed.losses, failed.attempts) == (WORKER_LOST, 2, 3)
        assert failed.failure_text == (
            "its compute was lost 2 times, last: worker CRASHED: signal SIGSEGV"
        )
        assert compute.runs == 1, "one run in this payload, not a fresh count of two"
        assert [e["reason"] for e in events.named("JOB_REQUEUED")] == ["RESTART"]
        (ended,) = events.named("JOB_FAILED")
        assert (ended["job_id"], ended["code"]) == (job_id, WORKER_LOST)
    finally:
        runner.stop()
        store.close()


def a_payload_died_running_a_job(root: Path, losses: int) -> tuple[JobStore, Job]:
    """A store as a payload that died running a job leaves it: open, the job RUNNING after
    `losses` losses. The store is returned to be closed once the test is done."""
    died = JobStore.in_state_dir(root)
    limit = LossLimit(MAX_JOB_LOSSES, WORKER_LOST)
    job = died.submit("m", "in.npy", 1, Redundancy.NONE, None)
    for _ in range(losses):
        died.mark_running(job.job_id)
        died.count_loss(job.job_id, limit, "worker CRASHED")
    return died, died.mark_running(job.job_id)


def test_a_job_running_when_the_payload_died_counts_a_loss_at_start_up(payload: Payload) -> None:
    died, job = a_payload_died_running_a_job(payload.root, losses=0)
    store = JobStore.in_state_dir(payload.root)
    events = Events()
    runner = payload.runner(store, LosingCompute(hold_after=0), events)
    runner.paused = True  # the job stays queued: only the start-up is looked at
    runner.start()
    try:
        requeued = store.get(job.job_id)
        assert (requeued.state, requeued.losses, requeued.attempts) == (JobState.QUEUED, 1, 1)
        assert events.named("JOB_REQUEUED") == [
            {"job_id": job.job_id, "attempts": 1, "reason": "RESTART"}
        ]
    finally:
        runner.stop()
        store.close()
        died.close()


def test_a_job_that_brought_the_payload_down_at_its_last_loss_fails_at_start_up(
    payload: Payload,
) -> None:
    died, job = a_payload_died_running_a_job(payload.root, losses=MAX_JOB_LOSSES - 1)
    store = JobStore.in_state_dir(payload.root)
    compute, events = LosingCompute(hold_after=0), Events()
    runner = payload.runner(store, compute, events)
    runner.start()
    try:
        failed = store.get(job.job_id)
        assert (failed.state, failed.failure_code, failed.losses) == (
            JobState.FAILED, WORKER_LOST, MAX_JOB_LOSSES
        )  # fmt: skip
        assert failed.failure_text == (
            f"its compute was lost {MAX_JOB_LOSSES} times, last: {PAYLOAD_LOST}"
        )
        assert events.named("JOB_REQUEUED") == []
        (ended,) = events.named("JOB_FAILED")
        assert (ended["job_id"], ended["state"], ended["code"]) == (
            job.job_id, int(JobState.FAILED), WORKER_LOST
        )  # fmt: skip
        assert not wait_for(lambda: compute.runs > 0, timeout=0.5), "it never runs again"
    finally:
        runner.stop()
        store.close()
        died.close()


def test_a_payload_death_costs_no_loss_when_jobs_compute_in_a_worker(payload: Payload) -> None:
    # The job ran in another process: the payload's own death was not its doing.
    died, job = a_payload_died_running_a_job(payload.root, losses=MAX_JOB_LOSSES - 1)
    store = JobStore.in_state_dir(payload.root)
    events = Events()
    runner = payload.runner(store, LosingCompute(hold_after=0), events, apart=True)
    runner.paused = True
    runner.start()
    try:
        requeued = store.get(job.job_id)
        assert (requeued.state, requeued.losses) == (JobState.QUEUED, MAX_JOB_LOSSES - 1)
        assert events.named("JOB_REQUEUED") == [
            {"job_id": job.job_id, "attempts": requeued.attempts, "reason": "RESTART"}
        ]
    finally:
        runner.stop()
        store.close()
        died.close()
