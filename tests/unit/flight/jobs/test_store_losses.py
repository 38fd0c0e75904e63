"""The job store's count of a job's losses (schema version 3): the migration of a version-2
store, the count kept across reopening, the failure at the limit, and the loss counted at
start-up for a job left RUNNING by a process that died without closing the store."""

from __future__ import annotations

import dataclasses
import json
import signal
import sqlite3
import subprocess
import sys
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from flight.jobs.redundancy import Redundancy
from flight.jobs.store import (
    JOBS_DB_FILE,
    MAX_JOB_ID,
    PAYLOAD_LOST,
    SCHEMA_VERSION,
    InvalidTransition,
    Job,
    JobState,
    JobStore,
    LossLimit,
    RecordCorrupt,
    StoreCheck,
    UnknownJob,
)
from flight.protection.upsets import Outcome
from tests.fake_clock import FakeClock
from tests.upset_recorder import UpsetRecorder

REPO_ROOT = Path(__file__).resolve().parents[4]
T0 = 1_000.0
SHA = bytes(range(32))
LIMIT = LossLimit(losses=2, failure_code=350)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / JOBS_DB_FILE


def running_job(store: JobStore) -> Job:
    job = store.submit("m.onnx", "in.npy", 5, Redundancy.TMR, None)
    return store.mark_running(job.job_id)


# -- the count ----------------------------------------------------------------------------------


def test_a_loss_is_counted_durably_and_the_second_fails_the_job(
    db_path: Path, clock: FakeClock
) -> None:
    with JobStore(db_path, clock) as store:
        job = running_job(store)
        requeued = store.count_loss(job.job_id, LIMIT, "worker CRASHED: signal SIGSEGV")
        assert (requeued.state, requeued.losses, requeued.attempts, requeued.progress) == (
            JobState.QUEUED, 1, 1, 0
        )  # fmt: skip
        assert requeued.failure_code is None and requeued.finished_at is None
    with JobStore(db_path, clock) as store:
        assert store.get(job.job_id) == requeued
        assert store.recover(LIMIT) == [], "closed cleanly with nothing running"
        store.mark_running(job.job_id)
        clock.advance(5.0)
        failed = store.count_loss(job.job_id, LIMIT, "worker HUNG: no heartbeat")
        assert (failed.state, failed.losses, failed.attempts) == (JobState.FAILED, 2, 2)
        assert (failed.failure_code, failed.finished_at) == (LIMIT.failure_code, T0 + 5.0)
        assert (
            failed.failure_text == "its compute was lost 2 times, last: worker HUNG: no heartbeat"
        )
        with pytest.raises(InvalidTransition, match="already FAILED"):
            store.count_loss(job.job_id, LIMIT, "again")
    with JobStore(db_path, clock) as store:
        assert store.get(job.job_id) == failed
        assert store.opened == StoreCheck(records=1)


def test_only_a_running_job_counts_a_loss(db_path: Path, clock: FakeClock) -> None:
    with JobStore(db_path, clock) as store:
        queued = store.submit("m.onnx", "in.npy", 5, Redundancy.NONE, None)
        with pytest.raises(InvalidTransition, match="is QUEUED, expected RUNNING"):
            store.count_loss(queued.job_id, LIMIT, "worker CRASHED")
        with pytest.raises(UnknownJob):
            store.count_loss(99, LIMIT, "worker CRASHED")
        assert store.get(queued.job_id) == queued


def test_other_changes_keep_the_count(db_path: Path, clock: FakeClock) -> None:
    with JobStore(db_path, clock) as store:
        job = running_job(store)
        store.count_loss(job.job_id, LIMIT, "worker CRASHED")
        store.mark_running(job.job_id)
        store.requeue(job.job_id, undo_attempt=True)  # held by the thermal governor
        assert store.mark_running(job.job_id).losses == 1
        done = store.mark_succeeded(job.job_id, "job-1.npy", SHA, runs=3)
        assert (done.state, done.losses) == (JobState.SUCCEEDED, 1)


# -- a loss counted at start-up -------------------------------------------------------------------


def test_recover_counts_a_loss_only_when_the_store_was_left_open(
    db_path: Path, clock: FakeClock
) -> None:
    with JobStore(db_path, clock) as store:
        stopped = running_job(store)  # a clean stop leaves its job RUNNING, and closes
    died = JobStore(db_path, clock)  # this process ends without closing the store
    try:
        assert [job.losses for job in died.recover(LIMIT)] == [0]
        running = died.mark_running(stopped.job_id)
        queued = died.submit("m.onnx", "in.npy", 5, Redundancy.NONE, None)
        with JobStore(db_path, clock) as after:
            (recovered,) = after.recover(LIMIT)
            assert recovered == dataclasses.replace(running, state=JobState.QUEUED, losses=1)
            assert after.get(queued.job_id).losses == 0, "only a running job counts"
            after.mark_running(recovered.job_id)
            (again,) = after.recover(LIMIT)
            assert again.losses == 1, "the store left open counts once"
    finally:
        died.close()


def test_recover_without_a_limit_counts_nothing(db_path: Path, clock: FakeClock) -> None:
    died = JobStore(db_path, clock)
    try:
        job = running_job(died)
        with JobStore(db_path, clock) as after:
            (recovered,) = after.recover()
            assert (recovered.state, recovered.losses) == (JobState.QUEUED, 0)
            assert after.get(job.job_id) == recovered
    finally:
        died.close()


# A payload that starts the job and dies with it: kill -9, the store left open.
DIES_RUNNING = """
import os, signal, sys
from pathlib import Path
from flight.jobs.redundancy import Redundancy
from flight.jobs.store import JobStore

store = JobStore(Path(sys.argv[1]))
if not store.list():
    store.submit("poison.onnx", "in.npy", 1, Redundancy.NONE, None)
(job,) = store.list()
store.mark_running(job.job_id)
os.kill(os.getpid(), signal.SIGKILL)
"""


def a_payload_dies_running_the_job(db_path: Path) -> None:
    died = subprocess.run(
        [sys.executable, "-c", DIES_RUNNING, str(db_path)], cwd=REPO_ROOT, timeout=60
    )
    assert died.returncode == -signal.SIGKILL


def test_a_job_that_takes_the_payload_down_twice_fails(db_path: Path, clock: FakeClock) -> None:
    a_payload_dies_running_the_job(db_path)
    with JobStore(db_path, clock) as store:
        (job,) = store.recover(LIMIT)
        assert (job.state, job.losses, job.attempts) == (JobState.QUEUED, 1, 1)
    a_payload_dies_running_the_job(db_path)
    with JobStore(db_path, clock) as store:
        (job,) = store.recover(LIMIT)
        assert (job.state, job.losses, job.attempts) == (JobState.FAILED, 2, 2)
        assert job.failure_code == LIMIT.failure_code
        assert job.failure_text == f"its compute was lost 2 times, last: {PAYLOAD_LOST}"
        assert store.get(job.job_id) == job


# -- migration from schema 2 ----------------------------------------------------------------------

SCHEMA_2 = (
    f"""CREATE TABLE jobs (
        job_id INTEGER PRIMARY KEY AUTOINCREMENT CHECK (job_id BETWEEN 1 AND {MAX_JOB_ID}),
        model TEXT NOT NULL,
        input_file TEXT NOT NULL,
        priority INTEGER NOT NULL CHECK (priority BETWEEN 0 AND 255),
        redundancy INTEGER NOT NULL CHECK (redundancy BETWEEN 0 AND 3),
        deadline_s REAL,
        deadline_at REAL,
        submitted_at REAL NOT NULL,
        state INTEGER NOT NULL CHECK (state BETWEEN 0 AND 5),
        attempts INTEGER NOT NULL DEFAULT 0,
        started_at REAL,
        finished_at REAL,
        result_file TEXT,
        result_sha256 BLOB,
        failure_code INTEGER,
        failure_text TEXT,
        progress INTEGER NOT NULL DEFAULT 0 CHECK (progress BETWEEN 0 AND 100),
        model_version INTEGER NOT NULL DEFAULT 0,
        request BLOB NOT NULL DEFAULT x'',
        runs INTEGER NOT NULL DEFAULT 0,
        disagreements INTEGER NOT NULL DEFAULT 0,
        result_size INTEGER,
        crc INTEGER NOT NULL DEFAULT 0,
        copy BLOB NOT NULL DEFAULT x''
    ) STRICT""",
    """CREATE TABLE damaged_jobs (
        job_id INTEGER PRIMARY KEY,
        found_at REAL NOT NULL,
        record BLOB NOT NULL
    ) STRICT""",
    "CREATE INDEX jobs_runnable ON jobs (priority DESC, job_id) WHERE state = 0",
    "CREATE INDEX jobs_by_state ON jobs (state, job_id)",
    "CREATE INDEX jobs_deadline ON jobs (deadline_at) WHERE state IN (0, 1)",
    "PRAGMA user_version = 2",
)
COLUMNS_2 = (
    "job_id, model, input_file, priority, redundancy, deadline_s, deadline_at, submitted_at, "
    "state, attempts, started_at, finished_at, result_file, result_sha256, failure_code, "
    "failure_text, progress, model_version, request, runs, disagreements, result_size"
)


def checksummed_2(fields: tuple[object, ...]) -> tuple[object, ...]:
    """A record as schema 2 stored it: its fields, the CRC-32 of their canonical JSON (blobs in
    hex), and that JSON as its copy. Written here, not by the store's code."""
    items = [value.hex() if isinstance(value, bytes) else value for value in fields]
    canonical = json.dumps(items, separators=(",", ":")).encode("ascii")
    return (*fields, zlib.crc32(canonical), canonical)


def fields_2(job_id: int, model: str, state: int = 0, **changes: object) -> tuple[Any, ...]:
    values: dict[str, object] = dict.fromkeys(COLUMNS_2.split(", "))
    values.update(
        job_id=job_id, model=model, input_file="in.npy", priority=9, redundancy=2,
        submitted_at=T0, state=state, attempts=0, progress=0, model_version=0, request=b"",
        runs=0, disagreements=0,
    )  # fmt: skip
    values.update(changes)
    return tuple(values.values())


def job_of(fields: tuple[object, ...]) -> Job:
    """The job a schema-2 record holds, as the new software reads it: no losses yet."""
    values: dict[str, Any] = dict(zip(COLUMNS_2.split(", "), fields, strict=True))
    del values["deadline_at"]  # derived from deadline_s
    values.update(redundancy=Redundancy(values["redundancy"]), state=JobState(values["state"]))
    return Job(**values, losses=0)


def make_store_2(db_path: Path, records: list[tuple[object, ...]]) -> None:
    raw = sqlite3.connect(db_path)
    try:
        raw.execute("PRAGMA journal_mode=WAL")
        for statement in SCHEMA_2:
            raw.execute(statement)
        with raw:
            raw.executemany(
                f"INSERT INTO jobs ({COLUMNS_2}, crc, copy) VALUES ({', '.join('?' * 24)})",
                records,
            )
    finally:
        raw.close()


QUEUED_2 = fields_2(1, "a.onnx", deadline_s=30.0, deadline_at=T0 + 30.0, model_version=3,
                    request=bytes([1, 2, 3, 4, 0, 5, 1]))  # fmt: skip
RUNNING_2 = fields_2(2, "b.onnx", state=1, attempts=1, started_at=T0 + 1.0)
DONE_2 = fields_2(3, "c.onnx", state=2, attempts=1, started_at=T0 + 1.0, finished_at=T0 + 2.0,
                  result_file="job-3.npy", result_sha256=SHA, progress=100, runs=3,
                  result_size=160)  # fmt: skip
CHANGED_2 = fields_2(4, "d.onnx", state=3, attempts=1, failure_code=283, failure_text="shape")


def test_a_schema_2_store_is_migrated_its_records_checked_as_version_2_wrote_them(
    db_path: Path, clock: FakeClock
) -> None:
    changed = list(checksummed_2(CHANGED_2))
    changed[1] = "evil.onnx"  # changed after its checksums: restored from the copy
    beyond = (*fields_2(5, "e.onnx"), 0, b"not a copy")
    make_store_2(db_path, [checksummed_2(f) for f in (QUEUED_2, RUNNING_2, DONE_2)]
                 + [tuple(changed), beyond])  # fmt: skip
    upsets = UpsetRecorder()
    with JobStore(db_path, clock, upsets.log) as store:
        for fields in (QUEUED_2, RUNNING_2, DONE_2, CHANGED_2):
            assert store.get(fields[0]) == job_of(fields)
        with pytest.raises(RecordCorrupt):
            store.get(5)
        assert store.damaged() == [5]
        assert upsets.take() == [(Outcome.CORRECTED, 1), (Outcome.UNCORRECTABLE, 1)]
        # The running job of the old software: recovered and counted from here on.
        assert store.recover(LIMIT)[0].losses == 0, "whether version 2 closed it is not known"
        store.mark_running(2)
        assert store.count_loss(2, LIMIT, "worker CRASHED").losses == 1
    raw = sqlite3.connect(db_path)
    try:
        assert raw.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert raw.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert raw.execute("SELECT is_open FROM store_open").fetchall() == [(0,)]
    finally:
        raw.close()
    with JobStore(db_path, clock, upsets.log) as store:
        assert store.opened == StoreCheck(records=4)
        assert store.get(1) == job_of(QUEUED_2)
    assert upsets.take() == []


def damage_pages(data: bytearray) -> None:
    data[20 * 4096 : 23 * 4096] = b"\xa5" * (3 * 4096)


def break_the_schema_page(data: bytearray) -> None:
    data[100] ^= 0x04  # page 1's b-tree page type: the schema table cannot be read


@pytest.mark.parametrize("damage", [damage_pages, break_the_schema_page])
def test_a_damaged_schema_2_store_is_rebuilt_with_what_can_be_read(
    db_path: Path, clock: FakeClock, damage: Callable[[bytearray], None]
) -> None:
    records = [fields_2(i, f"model-{i:04d}-" + "x" * 150) for i in range(1, 401)]
    make_store_2(db_path, [checksummed_2(f) for f in records])
    data = bytearray(db_path.read_bytes())
    assert len(data) > 40 * 4096
    damage(data)
    db_path.write_bytes(bytes(data))
    upsets = UpsetRecorder()
    with JobStore(db_path, clock, upsets.log) as store:
        kept = {job.job_id: job for job in store.list(limit=1_000)}
        assert store.opened.rebuilt and store.opened.lost == 400 - len(kept)
    assert len(kept) >= 100 if damage is damage_pages else len(kept) == 400
    assert all(job == job_of(records[job_id - 1]) for job_id, job in kept.items())
    assert upsets.take()[0][0] is (Outcome.UNCORRECTABLE if damage is damage_pages
                                   else Outcome.CORRECTED)  # fmt: skip
    with JobStore(db_path, clock, upsets.log) as store:
        assert store.opened == StoreCheck(records=len(kept))
