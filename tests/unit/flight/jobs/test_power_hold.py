"""The power budget's say over the job queue, through the real runner on a real model: a job
below the lowest priority waits queued while a higher one runs, the hold and the resume are
reported once each, a job's estimate is its model's measured run time, a job refused at the
moment it would start computing goes back to the queue without its attempt counted, and no
budget at all holds nothing."""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from flight.compute.job_compute import JobCompute
from flight.files.upload_store import UploadStore
from flight.jobs.executor import Executor, SessionCache
from flight.jobs.providers import CPU, ProviderChoice
from flight.jobs.redundancy import Redundancy
from flight.jobs.registry import ModelRegistry
from flight.jobs.run_times import RunTimes
from flight.jobs.runner import JobRunner
from flight.jobs.store import JobState, JobStore
from flight.power.governor import HoldReason
from flight.protection.upsets import UpsetLog
from flight.services.events import EventReporter
from flight.telemetry import TmPublisher
from telemetry_defs.loader import default_dictionary
from tests.unit.flight.jobs.test_worker_jobs import FEATURES, Reports, npy, wait_for
from tests.unit.flight.protection.test_weights import MAX_MODEL_BYTES, gemm_model

D = default_dictionary()
UNKNOWN_RUN_S = 7.0


class Policy:
    """A power budget the test sets: a lowest priority, a cap on a job's estimated seconds, and
    refusals scripted call by call; it records the estimates it was asked about."""

    def __init__(self) -> None:
        self.lowest = 0
        self.max_seconds = math.inf
        self.script: list[HoldReason | None] = []
        self.asked: list[tuple[int, float]] = []
        self.lock = threading.Lock()

    def min_priority(self) -> int:
        return self.lowest

    def refusal(self, priority: int, seconds: float) -> HoldReason | None:
        with self.lock:
            self.asked.append((priority, seconds))
            if self.script:
                return self.script.pop(0)
        if priority < self.lowest:
            return HoldReason.LOW
        if seconds > self.max_seconds:
            return HoldReason.ENERGY
        return None

    def soc_pct(self) -> float:
        return 33.5


@dataclass
class Rig:
    runner: JobRunner
    store: JobStore
    reports: Reports
    policy: Policy

    def events(self, name: str) -> list[dict[str, Any]]:
        # What Reports keeps ends with the packet's error control (2 octets).
        event = D.event(name)
        return [event.layout.parse(data[:-2]) for n, data in self.reports.events if n == name]

    def submit(self, priority: int, redundancy: Redundancy = Redundancy.NONE) -> int:
        job_id = self.store.submit("m", "in.npy", priority, redundancy, None).job_id
        self.runner.wake()
        return job_id

    def state(self, job_id: int) -> JobState:
        return self.store.get(job_id).state


@contextlib.contextmanager
def make_rig(tmp_path: Path, policy: Policy | None) -> Iterator[Rig]:
    reports = Reports()
    tm = TmPublisher(D.apid, reports.sink, time.time)
    files = UploadStore(tmp_path / "files", quota_bytes=1 << 30, reserve_bytes=0)
    files.put("in.npy", npy(FEATURES))
    registry = ModelRegistry(tmp_path / "models", max_model_bytes=MAX_MODEL_BYTES)
    registry.register("m", 1, gemm_model())
    store = JobStore.in_state_dir(tmp_path)
    compute = JobCompute(Executor(SessionCache(1, ProviderChoice(CPU))), UpsetLog())
    runner = JobRunner(D, store, registry, files, compute, tm, EventReporter(D, tm))
    if policy is not None:
        runner.budget_power(policy, UNKNOWN_RUN_S)
    runner.start()
    try:
        yield Rig(runner, store, reports, policy or Policy())
    finally:
        runner.stop()
        store.close()
        files.close()


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    with make_rig(tmp_path, Policy()) as made:
        yield made


def test_a_low_priority_job_waits_while_a_high_one_runs_then_runs_itself(rig: Rig) -> None:
    rig.policy.lowest = 100
    low = rig.submit(10)
    assert wait_for(lambda: rig.events("POWER_JOBS_HELD"), 30)
    high = rig.submit(200)
    assert wait_for(lambda: rig.state(high) is JobState.SUCCEEDED, 30)
    time.sleep(0.3)  # a few looks at the queue: still held
    assert rig.state(low) is JobState.QUEUED and rig.store.get(low).attempts == 0
    assert rig.runner.holds.power_held_jobs() == 1
    # Held once, for the low job, by priority; resumed when the high job started.
    held = rig.events("POWER_JOBS_HELD")
    assert held[0] == {
        "job_id": low,
        "priority": 10,
        "reason": HoldReason.LOW,
        "soc": 33.5,
        "min_priority": 100,
    }
    resumed = rig.events("POWER_JOBS_RESUMED")
    assert resumed[0]["job_id"] == high
    rig.policy.lowest = 0
    rig.runner.wake()  # the power monitor does this when the budget changes
    assert wait_for(lambda: rig.state(low) is JobState.SUCCEEDED, 30)
    assert rig.store.get(low).attempts == 1
    assert rig.runner.holds.power_held_jobs() == 0
    # The second hold (low alone again) and its resume, at most once per hold.
    assert len(rig.events("POWER_JOBS_HELD")) == len(rig.events("POWER_JOBS_RESUMED")) == 2
    assert rig.events("POWER_JOBS_RESUMED")[-1]["job_id"] == low


def test_a_jobs_estimate_is_its_models_measured_run_time(rig: Rig) -> None:
    first = rig.submit(50, Redundancy.TMR)
    assert wait_for(lambda: rig.state(first) is JobState.SUCCEEDED, 30)
    # Never run before: three runs at the unknown run time.
    assert rig.policy.asked[0] == (50, 3 * UNKNOWN_RUN_S)
    learnt = rig.runner.holds.run_times
    key = rig.runner.registry.entry("m").key
    per_run = learnt.per_run(key)
    assert 0 < per_run < 1.0  # a small GEMM: milliseconds, not the 7 s reckoned before
    rig.policy.max_seconds = 2 * per_run  # room for two runs: a TMR job no longer fits
    tmr = rig.submit(50, Redundancy.TMR)
    assert wait_for(lambda: rig.events("POWER_JOBS_HELD"), 30)
    assert rig.events("POWER_JOBS_HELD")[0]["reason"] == HoldReason.ENERGY
    assert rig.state(tmr) is JobState.QUEUED
    assert rig.policy.asked[-1] == (50, pytest.approx(3 * per_run))
    assert rig.runner.holds.power_held_jobs() == 1  # the best job is held: all are
    rig.policy.max_seconds = math.inf
    rig.runner.wake()
    assert wait_for(lambda: rig.state(tmr) is JobState.SUCCEEDED, 30)


def test_a_job_refused_when_it_would_start_computing_goes_back_uncounted(rig: Rig) -> None:
    # Admitted when prepared, refused at the start of its compute, then admitted twice.
    rig.policy.script = [None, HoldReason.FLOOR]
    job = rig.submit(1)
    assert wait_for(lambda: rig.state(job) is JobState.SUCCEEDED, 30)
    assert rig.store.get(job).attempts == 1  # the attempt put back was not counted
    assert [e["reason"] for e in rig.events("POWER_JOBS_HELD")] == [HoldReason.FLOOR]
    assert [e["job_id"] for e in rig.events("POWER_JOBS_RESUMED")] == [job]
    assert rig.events("JOB_REQUEUED") == []  # it never started computing


def test_without_a_power_budget_nothing_is_held(tmp_path: Path) -> None:
    with make_rig(tmp_path, None) as rig:
        jobs = [rig.submit(priority) for priority in (0, 255, 7)]
        assert wait_for(lambda: all(rig.state(j) is JobState.SUCCEEDED for j in jobs), 30)
        assert rig.events("POWER_JOBS_HELD") == [] and rig.runner.holds.power_held_jobs() == 0
        assert rig.runner.holds.min_priority() == 0


def test_run_times_learn_a_running_mean_per_model() -> None:
    times = RunTimes(unknown_run_s=4.0)
    assert times.estimate("a", Redundancy.DMR) == 8.0
    times.learn("a", 2, 2.0)  # 1 s a run
    assert times.per_run("a") == 1.0
    times.learn("a", 1, 11.0)  # one slow run (a held gate): it moves the mean, not sets it
    assert times.per_run("a") == pytest.approx(0.7 * 1.0 + 0.3 * 11.0)
    times.learn("a", 0, 5.0)  # nothing to learn from
    times.learn("a", 1, math.nan)
    assert times.per_run("a") == pytest.approx(4.0)
    assert times.estimate("b", Redundancy.TMR) == 12.0
    with pytest.raises(ValueError):
        RunTimes(-1.0)


def test_the_run_limit_basis_follows_a_slow_run_at_once_and_a_fast_one_slowly() -> None:
    # A worker's run limit: one fast run must not make the next slow one look hung.
    times = RunTimes(unknown_run_s=0.0)
    assert times.slowest("a") is None
    times.learn("a", 1, 1.0)
    times.learn("a", 1, 3.0)  # slower: taken at once
    assert times.slowest("a") == 3.0
    times.learn("a", 2, 1.0)  # faster (0.5 s a run): the limit's basis decays towards it
    assert times.slowest("a") == pytest.approx(0.8 * 3.0 + 0.2 * 0.5)
    times.forget("a")
    assert times.slowest("a") is None and times.per_run("a") == 0.0
