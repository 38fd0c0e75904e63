"""A disk found full when a job's result is stored: the job is queued again, not failed; no job
starts until the disk has room for that result; then the queue runs on by itself."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from flight.compute.job_compute import JobCompute
from flight.files.disk_fill import DiskFill
from flight.files.upload_store import DiskFull, UploadStore
from flight.jobs.executor import Executor, SessionCache
from flight.jobs.providers import CPU, ProviderChoice
from flight.jobs.redundancy import Redundancy
from flight.jobs.registry import ModelRegistry
from flight.jobs.runner import JobRunner
from flight.jobs.storage_hold import StorageHold
from flight.jobs.store import JobState, JobStore
from flight.protection.upsets import UpsetLog
from flight.services.events import EventReporter
from flight.telemetry import TmPublisher
from telemetry_defs.loader import default_dictionary
from tests.unit.flight.jobs.test_worker_jobs import FEATURES, Reports, npy, wait_for
from tests.unit.flight.protection.test_weights import MAX_MODEL_BYTES, gemm_model

D = default_dictionary()
REQUEUE = D.enums["RequeueReason"].values


class Clock:
    def __init__(self) -> None:
        self.now = 100.0
        self.lock = threading.Lock()

    def __call__(self) -> float:
        with self.lock:
            return self.now

    def advance(self, seconds: float) -> None:
        with self.lock:
            self.now += seconds


def test_the_hold_ends_once_the_room_holds_the_largest_result_that_found_none() -> None:
    clock, room = Clock(), [0]
    hold = StorageHold(lambda: room[0], clock, poll_s=2.0)
    assert not hold.holding and hold.release_if_room() is None
    assert hold.enter(500) is True
    assert hold.enter(800) is False  # the same hold, for the larger of the two
    room[0] = 10_000
    assert hold.release_if_room() is None  # not looked at again before the poll period
    clock.advance(2.0)
    room[0] = 700
    assert hold.release_if_room() is None and hold.holding
    clock.advance(2.0)
    room[0] = 800
    released = hold.release_if_room()
    assert released is not None and released.held_s == pytest.approx(4.0)
    assert released.room == 800 and not hold.holding


def test_a_fill_reads_as_a_full_disk_until_it_passes() -> None:
    clock = Clock()
    fill = DiskFill(lambda path: 12345, clock)
    assert fill(Path(".")) == 12345 and not fill.full
    fill.fill_for(10)
    fill.fill_for(3)  # a shorter fill does not cut the longer one
    clock.advance(9.9)
    assert fill(Path(".")) == 0 and fill.full
    clock.advance(0.2)
    assert fill(Path(".")) == 12345


def test_a_result_that_finds_the_disk_full_waits_for_room_and_no_job_is_lost(
    tmp_path: Path,
) -> None:
    clock = Clock()
    fill = DiskFill(lambda path: 1 << 40, clock)
    reports = Reports()
    tm = TmPublisher(D.apid, reports.sink, time.time)
    files = UploadStore(tmp_path / "files", quota_bytes=1 << 30, reserve_bytes=0, free_space=fill)
    files.put("in.npy", npy(FEATURES))
    registry = ModelRegistry(tmp_path / "models", max_model_bytes=MAX_MODEL_BYTES)
    registry.register("m", 1, gemm_model())
    store = JobStore.in_state_dir(tmp_path)
    compute = JobCompute(Executor(SessionCache(1, ProviderChoice(CPU))), UpsetLog())
    runner = JobRunner(
        D, store, registry, files, compute, tm, EventReporter(D, tm), monotonic=clock
    )
    runner.start()
    try:
        fill.fill_for(10)
        with pytest.raises(DiskFull):
            files.put("upload.bin", b"x")  # uploads are refused alike
        first = store.submit("m", "in.npy", 1, Redundancy.TMR, None).job_id
        runner.wake()
        assert wait_for(lambda: runner.storage_hold.holding, 30)
        assert store.get(first).state is JobState.QUEUED and store.get(first).attempts == 1
        names = [name for name, _ in reports.events]
        assert names.count("JOB_REQUEUED") == 1 and "STORAGE_HELD" in names
        requeued = dict(reports.events)["JOB_REQUEUED"]
        assert requeued[:4] == first.to_bytes(4, "big") and requeued[5] == REQUEUE["DISK_FULL"]
        held = dict(reports.events)["STORAGE_HELD"]
        assert int.from_bytes(held[8:12], "big") == 0  # no room above the reserve

        second = store.submit("m", "in.npy", 1, Redundancy.NONE, None).job_id
        runner.wake()
        time.sleep(0.5)  # the bookkeeper looks at the queue every few tens of ms
        assert store.get(second).state is JobState.QUEUED  # held: no job starts

        clock.advance(10.5)  # the fill passes; the next look finds room
        assert wait_for(lambda: store.get(second).state is JobState.SUCCEEDED, 30)
        assert wait_for(lambda: store.get(first).state is JobState.SUCCEEDED, 30)
        assert store.get(first).attempts == 2
        # STORAGE_HELD said how large the result that found no room was.
        assert int.from_bytes(held[4:8], "big") == store.get(first).result_size
        assert [n for n, _ in reports.events].count("STORAGE_RESUMED") == 1
        assert not runner.storage_hold.holding
    finally:
        runner.stop()
        store.close()
        files.close()
