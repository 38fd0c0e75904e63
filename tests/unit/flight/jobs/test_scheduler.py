"""The scheduler: overdue jobs time out before the next pick, throttling, deadline checks, the
lowest priority the power budget lets start."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from flight.jobs.redundancy import Redundancy
from flight.jobs.scheduler import Pick, Scheduler
from flight.jobs.store import JOBS_DB_FILE, Job, JobState, JobStore
from tests.fake_clock import FakeClock

T0 = 5_000.0


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
def store(tmp_path: Path, clock: FakeClock) -> Iterator[JobStore]:
    with JobStore(tmp_path / JOBS_DB_FILE, clock) as s:
        yield s


def submit(store: JobStore, priority: int, deadline_s: float | None = None) -> Job:
    return store.submit("m.onnx", "in.npy", priority, Redundancy.DMR, deadline_s)


def test_a_pick_follows_priority_and_does_not_start_it(store: JobStore, clock: FakeClock) -> None:
    submit(store, 10)
    urgent = submit(store, 200)
    submit(store, 200)
    scheduler = Scheduler(store, clock)
    assert scheduler.pick() == Pick(urgent)
    assert scheduler.pick() == Pick(urgent)
    assert store.get(urgent.job_id).state is JobState.QUEUED


def test_a_lowest_priority_holds_back_the_best_job_below_it(
    store: JobStore, clock: FakeClock
) -> None:
    low = submit(store, 10)
    scheduler = Scheduler(store, clock)
    assert scheduler.pick(11) == Pick(None, low)  # held back, and named for the hold's event
    assert scheduler.pick(10) == Pick(low)  # at the limit: it runs
    high = submit(store, 200)
    assert scheduler.pick(11) == Pick(high)
    assert scheduler.pick(201) == Pick(None, high)  # the best is held: every job behind it too
    assert scheduler.pick(256) == Pick(None, high)  # none may start
    assert store.get(low.job_id).state is JobState.QUEUED  # held, not touched
    assert store.get(high.job_id).state is JobState.QUEUED


def test_a_pick_of_an_empty_queue_holds_nothing_back(store: JobStore, clock: FakeClock) -> None:
    assert Scheduler(store, clock).pick(100) == Pick(None, None)


def test_overdue_jobs_are_timed_out_before_the_pick(store: JobStore, clock: FakeClock) -> None:
    stale = submit(store, 250, deadline_s=10.0)
    stale_running = store.mark_running(submit(store, 100, deadline_s=5.0).job_id)
    fresh = submit(store, 1, deadline_s=60.0)
    reported: list[tuple[Job, JobState]] = []
    scheduler = Scheduler(
        store, clock, on_expired=lambda job: reported.append((job, store.get(job.job_id).state))
    )
    clock.now = T0 + 11.0
    assert scheduler.pick() == Pick(fresh)
    # Each expiry is reported after it was committed.
    assert [(job.job_id, state) for job, state in reported] == [
        (stale.job_id, JobState.TIMED_OUT),
        (stale_running.job_id, JobState.TIMED_OUT),
    ]
    assert all(job.state is JobState.TIMED_OUT for job, _ in reported)
    clock.now = T0 + 61.0
    assert scheduler.pick() == Pick(None)
    assert [job.job_id for job, _ in reported][-1] == fresh.job_id
    assert store.counts()[JobState.TIMED_OUT] == 3


def test_expiry_without_a_listener_still_happens(store: JobStore, clock: FakeClock) -> None:
    job = submit(store, 5, deadline_s=1.0)
    clock.now = T0 + 2.0
    assert Scheduler(store, clock).pick() == Pick(None)
    assert store.get(job.job_id).state is JobState.TIMED_OUT


def test_overdue_matches_the_stores_expiry(store: JobStore, clock: FakeClock) -> None:
    scheduler = Scheduler(store, clock)
    no_deadline = submit(store, 1)
    job = store.mark_running(submit(store, 1, deadline_s=30.0).job_id)
    assert not scheduler.overdue(no_deadline, T0 + 1e9)
    assert not scheduler.overdue(job, T0 + 30.0)
    assert scheduler.overdue(job, T0 + 30.5)
    clock.now = T0 + 29.0
    assert not scheduler.overdue(job)
    clock.now = T0 + 31.0
    assert scheduler.overdue(job)
    assert store.expire(T0 + 30.0) == []
    assert [j.job_id for j in store.expire(T0 + 30.5)] == [job.job_id]
