"""The job store: state machine, ordering, deadlines, recovery, ids, record checksums, damaged
files, migration, kill -9."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from flight.jobs.redundancy import Redundancy
from flight.jobs.store import (
    _NEXT_RUNNABLE_SQL,
    FAULT_COLUMNS,
    FINAL_STATES,
    JOBS_DB_FILE,
    MAX_JOB_ID,
    SCHEMA_VERSION,
    InvalidTransition,
    Job,
    JobState,
    JobStore,
    JobStoreError,
    RecordCorrupt,
    RecordSite,
    StoreCheck,
    StoreCorrupt,
    UnknownJob,
)
from flight.protection.upsets import Outcome, UpsetLocation
from tests.fake_clock import FakeClock
from tests.upset_recorder import UpsetRecorder

REPO_ROOT = Path(__file__).resolve().parents[4]
SHA = bytes(range(32))
T0 = 1_000.0


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / JOBS_DB_FILE


@pytest.fixture
def store(db_path: Path, clock: FakeClock) -> Iterator[JobStore]:
    with JobStore(db_path, clock) as s:
        yield s


def submit(
    store: JobStore, priority: int = 10, deadline_s: float | None = None, model: str = "m.onnx"
) -> Job:
    return store.submit(model, "in.npy", priority, Redundancy.NONE, deadline_s)


# -- submit and read back ---------------------------------------------------------------------


def test_submit_queues_a_job_that_survives_reopen(db_path: Path, clock: FakeClock) -> None:
    with JobStore(db_path, clock) as store:
        job = store.submit("resnet.onnx", "img.npy", 200, Redundancy.TMR, 30.0)
    assert job == Job(
        job_id=1,
        model="resnet.onnx",
        input_file="img.npy",
        priority=200,
        redundancy=Redundancy.TMR,
        deadline_s=30.0,
        submitted_at=T0,
        state=JobState.QUEUED,
        attempts=0,
        started_at=None,
        finished_at=None,
        result_file=None,
        result_sha256=None,
        failure_code=None,
        failure_text=None,
        progress=0,
    )
    assert job.deadline_at == T0 + 30.0
    assert not job.is_final
    with JobStore(db_path, clock) as reopened:
        got = reopened.get(1)
    assert got == job
    assert type(got.state) is JobState and type(got.redundancy) is Redundancy


def test_in_state_dir_uses_the_conventional_file_name(tmp_path: Path, clock: FakeClock) -> None:
    with JobStore.in_state_dir(tmp_path, clock) as store:
        submit(store)
        assert store.path == tmp_path / JOBS_DB_FILE
    assert (tmp_path / JOBS_DB_FILE).is_file()


def test_store_file_is_in_wal_mode(store: JobStore, db_path: Path) -> None:
    submit(store)
    probe = sqlite3.connect(db_path)
    try:
        assert probe.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert probe.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    finally:
        probe.close()


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"priority": -1}, "priority must be 0..255, got -1"),
        ({"priority": 256}, "priority must be 0..255, got 256"),
        ({"model": ""}, "model name"),
        ({"input_file": ""}, "input file name"),
        ({"deadline_s": 0.0}, "deadline must be a positive"),
        ({"deadline_s": -5.0}, "deadline must be a positive"),
        ({"deadline_s": float("nan")}, "deadline must be a positive"),
        ({"deadline_s": float("inf")}, "deadline must be a positive"),
    ],
)
def test_submit_rejects_bad_arguments_and_stores_nothing(
    store: JobStore, kwargs: dict[str, object], fragment: str
) -> None:
    args: dict[str, object] = {
        "model": "m.onnx",
        "input_file": "in.npy",
        "priority": 1,
        "redundancy": Redundancy.NONE,
        "deadline_s": None,
    }
    args.update(kwargs)
    with pytest.raises(ValueError, match=fragment):
        store.submit(**args)  # type: ignore[arg-type]
    assert sum(store.counts().values()) == 0
    assert submit(store).job_id == 1


def test_submit_rejects_unknown_redundancy(store: JobStore) -> None:
    with pytest.raises(ValueError):
        store.submit("m.onnx", "in.npy", 1, 7, None)  # type: ignore[arg-type]


def test_priority_bounds_are_accepted(store: JobStore) -> None:
    assert submit(store, priority=0).priority == 0
    assert submit(store, priority=255).priority == 255


# -- the state machine ------------------------------------------------------------------------


def put_in_state(store: JobStore, state: JobState) -> Job:
    job = submit(store, deadline_s=100.0)
    if state is JobState.QUEUED:
        return job
    if state is JobState.CANCELLED:
        return store.cancel(job.job_id)
    if state is JobState.TIMED_OUT:
        return store.mark_timed_out(job.job_id)
    job = store.mark_running(job.job_id)
    if state is JobState.SUCCEEDED:
        return store.mark_succeeded(job.job_id, "out.npy", SHA)
    if state is JobState.FAILED:
        return store.mark_failed(job.job_id, 3, "session failed")
    return job


OPERATIONS: dict[str, Callable[[JobStore, int], object]] = {
    "mark_running": lambda s, i: s.mark_running(i),
    "mark_succeeded": lambda s, i: s.mark_succeeded(i, "out.npy", SHA),
    "mark_failed": lambda s, i: s.mark_failed(i, 5, "out of memory"),
    "mark_timed_out": lambda s, i: s.mark_timed_out(i),
    "cancel": lambda s, i: s.cancel(i),
}

# operation -> {legal source state: resulting state}
LEGAL: dict[str, dict[JobState, JobState]] = {
    "mark_running": {JobState.QUEUED: JobState.RUNNING},
    "mark_succeeded": {JobState.RUNNING: JobState.SUCCEEDED},
    "mark_failed": {JobState.RUNNING: JobState.FAILED},
    "mark_timed_out": {JobState.QUEUED: JobState.TIMED_OUT, JobState.RUNNING: JobState.TIMED_OUT},
    "cancel": {JobState.QUEUED: JobState.CANCELLED, JobState.RUNNING: JobState.CANCELLED},
}


@pytest.mark.parametrize("operation", sorted(OPERATIONS))
@pytest.mark.parametrize("source", list(JobState), ids=lambda s: s.name)
def test_every_transition_is_legal_or_refused(
    db_path: Path, clock: FakeClock, store: JobStore, operation: str, source: JobState
) -> None:
    job = put_in_state(store, source)
    assert job.state is source
    clock.advance(7.0)
    target = LEGAL[operation].get(source)
    if target is None:
        with pytest.raises(InvalidTransition) as raised:
            OPERATIONS[operation](store, job.job_id)
        message = str(raised.value)
        if source in FINAL_STATES:
            assert f"job {job.job_id} already {source.name}" in message
        else:
            assert f"job {job.job_id} is {source.name}, expected" in message
        assert store.get(job.job_id) == job
        return
    OPERATIONS[operation](store, job.job_id)
    after = store.get(job.job_id)
    assert after.state is target
    assert after.is_final == (target in FINAL_STATES)
    assert after.finished_at == (clock.now if target in FINAL_STATES else None)
    # The change is committed: another connection sees it.
    with JobStore(db_path, clock) as other:
        assert other.get(job.job_id) == after


@pytest.mark.parametrize("operation", sorted(OPERATIONS))
def test_unknown_job_is_refused_by_every_operation(store: JobStore, operation: str) -> None:
    submit(store)
    with pytest.raises(UnknownJob, match="job 99 is not in the store"):
        OPERATIONS[operation](store, 99)
    with pytest.raises(UnknownJob):
        store.get(99)


def test_running_records_attempt_and_start(store: JobStore, clock: FakeClock) -> None:
    job = submit(store)
    clock.advance(5.0)
    running = store.mark_running(job.job_id)
    assert (running.state, running.attempts, running.started_at) == (JobState.RUNNING, 1, T0 + 5)
    assert running.progress == 0


def test_success_records_result(store: JobStore, clock: FakeClock) -> None:
    job = store.mark_running(submit(store).job_id)
    clock.advance(2.5)
    done = store.mark_succeeded(job.job_id, "results/1.npy", SHA)
    assert done.result_file == "results/1.npy"
    assert done.result_sha256 == SHA
    assert done.progress == 100
    assert done.finished_at == T0 + 2.5
    assert (done.failure_code, done.failure_text) == (None, None)


@pytest.mark.parametrize("digest", [b"", b"\x00" * 31, b"\x00" * 33])
def test_success_needs_a_sha256(store: JobStore, digest: bytes) -> None:
    job = store.mark_running(submit(store).job_id)
    with pytest.raises(ValueError, match=f"32 bytes, got {len(digest)}"):
        store.mark_succeeded(job.job_id, "out.npy", digest)
    assert store.get(job.job_id).state is JobState.RUNNING


def test_failure_records_code_and_text(store: JobStore) -> None:
    job = store.mark_running(submit(store).job_id)
    failed = store.mark_failed(job.job_id, 0x0203, "input shape (1, 3) != (1, 4)")
    assert (failed.failure_code, failed.failure_text) == (0x0203, "input shape (1, 3) != (1, 4)")
    assert failed.result_file is None


def test_list_is_newest_first_filtered_and_limited(store: JobStore) -> None:
    jobs = [submit(store) for _ in range(6)]
    store.mark_running(jobs[1].job_id)
    store.cancel(jobs[2].job_id)
    store.cancel(jobs[4].job_id)
    assert [j.job_id for j in store.list()] == [6, 5, 4, 3, 2, 1]
    assert [j.job_id for j in store.list(limit=2)] == [6, 5]
    assert [j.job_id for j in store.list(limit=0)] == []
    assert [j.job_id for j in store.list([JobState.CANCELLED])] == [5, 3]
    assert [j.job_id for j in store.list({JobState.RUNNING, JobState.CANCELLED})] == [5, 3, 2]
    assert store.list([]) == []
    assert store.list([JobState.FAILED]) == []
    with pytest.raises(ValueError, match="got -1"):
        store.list(limit=-1)


def test_counts_cover_every_state(store: JobStore) -> None:
    assert store.counts() == dict.fromkeys(JobState, 0)
    for state in JobState:
        put_in_state(store, state)
    put_in_state(store, JobState.FAILED)
    expected = dict.fromkeys(JobState, 1)
    expected[JobState.FAILED] = 2
    assert store.counts() == expected


# -- ordering ---------------------------------------------------------------------------------


def test_highest_priority_first_then_first_submitted_across_100_jobs(store: JobStore) -> None:
    rng = random.Random(1234)
    # Few distinct priorities, so that every level holds many jobs and FCFS matters.
    jobs = [submit(store, priority=rng.choice([0, 1, 128, 255])) for _ in range(100)]
    picked = []
    while (job := store.next_runnable()) is not None:
        picked.append(job.job_id)
        store.mark_running(job.job_id)
    expected = [j.job_id for j in sorted(jobs, key=lambda j: (-j.priority, j.job_id))]
    assert picked == expected


def test_next_runnable_skips_jobs_that_are_not_queued(store: JobStore) -> None:
    assert store.next_runnable() is None
    urgent = submit(store, priority=250)
    normal = submit(store, priority=5)
    store.mark_running(urgent.job_id)
    assert store.next_runnable() == normal
    store.cancel(normal.job_id)
    assert store.next_runnable() is None


def test_next_runnable_is_served_by_an_index(store: JobStore, db_path: Path) -> None:
    for i in range(50):
        job = submit(store, priority=i % 7)
        if i % 2:
            store.cancel(job.job_id)
    probe = sqlite3.connect(db_path)
    try:
        plan = " | ".join(
            row[3] for row in probe.execute(f"EXPLAIN QUERY PLAN {_NEXT_RUNNABLE_SQL}")
        )
    finally:
        probe.close()
    assert "jobs_runnable" in plan
    assert "TEMP B-TREE" not in plan


# -- deadlines --------------------------------------------------------------------------------


def test_expire_times_out_active_jobs_past_their_deadline(
    store: JobStore, clock: FakeClock
) -> None:
    queued = submit(store, deadline_s=10.0)
    running = store.mark_running(submit(store, deadline_s=5.0).job_id)
    done = store.mark_running(submit(store, deadline_s=1.0).job_id)
    store.mark_succeeded(done.job_id, "out.npy", SHA)
    forever = submit(store)
    assert store.expire(T0 + 5.0) == []  # exactly at the deadline is still in time
    expired = store.expire(T0 + 5.5)
    assert [j.job_id for j in expired] == [running.job_id]
    assert expired[0].state is JobState.TIMED_OUT
    assert expired[0].finished_at == T0 + 5.5
    assert [j.job_id for j in store.expire(T0 + 10.001)] == [queued.job_id]
    assert store.expire(T0 + 1e9) == []
    assert store.get(done.job_id).state is JobState.SUCCEEDED
    assert store.get(forever.job_id).state is JobState.QUEUED
    assert store.get(queued.job_id).state is JobState.TIMED_OUT


def test_deadline_counts_from_submission(store: JobStore, clock: FakeClock) -> None:
    clock.advance(100.0)
    job = submit(store, deadline_s=10.0)
    assert job.deadline_at == T0 + 110.0
    assert store.expire(T0 + 105.0) == []
    assert [j.job_id for j in store.expire(T0 + 111.0)] == [job.job_id]


# -- recovery and ids -------------------------------------------------------------------------


def test_recover_requeues_jobs_left_running(db_path: Path, clock: FakeClock) -> None:
    with JobStore(db_path, clock) as store:
        a, b, c, d = (submit(store) for _ in range(4))
        store.mark_running(a.job_id)
        store.mark_running(b.job_id)
        store.mark_running(c.job_id)
        store.mark_succeeded(c.job_id, "out.npy", SHA)
    with JobStore(db_path, clock) as store:
        recovered = store.recover()
        assert [j.job_id for j in recovered] == [a.job_id, b.job_id]
        for job in recovered:
            assert (job.state, job.attempts, job.progress) == (JobState.QUEUED, 1, 0)
            assert job.started_at == T0
            assert store.get(job.job_id) == job
        assert store.recover() == []
        assert store.get(c.job_id).state is JobState.SUCCEEDED
        assert store.get(d.job_id).attempts == 0
        assert store.mark_running(a.job_id).attempts == 2


def test_ids_are_never_reused_after_delete_and_reopen(db_path: Path, clock: FakeClock) -> None:
    with JobStore(db_path, clock) as store:
        ids = [submit(store).job_id for _ in range(3)]
        assert ids == [1, 2, 3]
        for job_id in ids:
            store.cancel(job_id)
        clock.advance(60.0)
        assert store.delete_finished(older_than_s=30.0) == 3
        assert store.list() == []
    with JobStore(db_path, clock) as store:
        assert submit(store).job_id == 4
        assert submit(store).job_id == 5


def test_delete_finished_keeps_active_and_recent_jobs(store: JobStore, clock: FakeClock) -> None:
    old_done = put_in_state(store, JobState.SUCCEEDED)
    old_failed = put_in_state(store, JobState.FAILED)
    queued = put_in_state(store, JobState.QUEUED)
    running = put_in_state(store, JobState.RUNNING)
    clock.advance(100.0)
    recent = put_in_state(store, JobState.CANCELLED)
    clock.advance(10.0)
    assert store.delete_finished(older_than_s=50.0) == 2
    remaining = {j.job_id for j in store.list()}
    assert remaining == {queued.job_id, running.job_id, recent.job_id}
    for gone in (old_done, old_failed):
        with pytest.raises(UnknownJob):
            store.get(gone.job_id)
    with pytest.raises(ValueError, match="got -1"):
        store.delete_finished(-1)


def test_ids_stop_at_u32(db_path: Path, clock: FakeClock) -> None:
    JobStore(db_path, clock).close()
    raw = sqlite3.connect(db_path)
    try:
        with raw:
            raw.execute(
                "INSERT INTO sqlite_sequence (name, seq) VALUES ('jobs', ?)", (MAX_JOB_ID - 1,)
            )
    finally:
        raw.close()
    with JobStore(db_path, clock) as store:
        assert submit(store).job_id == MAX_JOB_ID
        with pytest.raises(JobStoreError, match="job ids exhausted"):
            submit(store)
        assert store.counts()[JobState.QUEUED] == 1


# -- record checksums -------------------------------------------------------------------------


@pytest.fixture
def upsets() -> UpsetRecorder:
    return UpsetRecorder(UpsetLocation.JOB_STORE)


@pytest.fixture
def guarded(db_path: Path, clock: FakeClock, upsets: UpsetRecorder) -> Iterator[JobStore]:
    with JobStore(db_path, clock, upsets.log) as s:
        yield s


def raw_update(db_path: Path, sql: str, params: tuple[object, ...] = ()) -> None:
    """Change the file behind the store's back: no checksum is updated, no CHECK holds."""
    raw = sqlite3.connect(db_path)
    try:
        raw.execute("PRAGMA ignore_check_constraints = ON")
        with raw:
            raw.execute(sql, params)
    finally:
        raw.close()


def a_finished_job(store: JobStore, failed: bool = False) -> Job:
    """A job with every field set: those of a result, or those of a failure."""
    job = store.mark_running(store.submit("m.onnx", "in.npy", 7, Redundancy.TMR, 60.0).job_id)
    if failed:
        return store.mark_failed(job.job_id, 283, "input shape (1, 3) != (1, 4)", runs=1)
    return store.mark_succeeded(job.job_id, "out.npy", SHA, result_size=99, runs=3)


def flip(octet: int, bit: int) -> Callable[[bytearray], None]:
    def mutate(buffer: bytearray) -> None:
        buffer[octet % len(buffer)] ^= 1 << bit

    return mutate


def test_a_changed_field_is_found_and_restored_from_the_copy(
    guarded: JobStore, db_path: Path, upsets: UpsetRecorder
) -> None:
    job = a_finished_job(guarded)
    raw_update(db_path, "UPDATE jobs SET model = 'evil.onnx', priority = 250 WHERE job_id = 1")
    assert guarded.get(1) == job
    assert upsets.take() == [(Outcome.CORRECTED, 1)]
    assert guarded.get(1) == job
    assert upsets.take() == [], "repaired in the file: found once"
    with JobStore(db_path) as reopened:
        assert reopened.opened == StoreCheck(records=1)


@pytest.mark.parametrize("column", FAULT_COLUMNS)
def test_a_flipped_bit_in_any_stored_field_is_corrected(
    guarded: JobStore, upsets: UpsetRecorder, column: str
) -> None:
    job = a_finished_job(guarded, failed=column.startswith("failure"))
    (site,) = [s for s in guarded.record_sites(job.job_id) if s.column == column]
    for octet in range(0, site.octets, max(1, site.octets // 8)):
        guarded.corrupt_record(site, flip(octet, octet % 8))
        assert guarded.get(job.job_id) == job, (column, octet)
        assert upsets.take() == [(Outcome.CORRECTED, 1)], (column, octet)


def test_record_sites_are_the_fields_that_are_not_null(guarded: JobStore) -> None:
    job = guarded.submit("m.onnx", "in.npy", 1, Redundancy.NONE, None)
    sites = guarded.record_sites(job.job_id)
    assert {s.column for s in sites} == {
        "model", "input_file", "priority", "redundancy", "submitted_at", "state", "attempts",
        "progress", "model_version", "request", "runs", "disagreements", "losses", "crc",
        "copy",
    }  # fmt: skip
    sizes = {s.column: s.octets for s in sites}
    assert (sizes["model"], sizes["priority"], sizes["submitted_at"]) == (6, 8, 8)
    assert sites[0].describe() == f"job {job.job_id} model"
    with pytest.raises(UnknownJob):
        guarded.record_sites(99)


def state_type_octet(data: bytes, model: bytes) -> int:
    """Where the record of the job with this (unique) model keeps the serial type of its
    state: in the record's header, before its first value (the model's text)."""
    body = data.index(model)
    text_type = 13 + 2 * len(model)
    # The header: its size, then serial types: job_id NULL (the rowid), the model's text, ...
    (size,) = [h for h in range(3, 64) if data[body - h : body - h + 3] == bytes([h, 0, text_type])]
    return body - size + 1 + 8  # ..., submitted_at, then state


def test_a_state_flipped_in_the_file_is_restored(
    db_path: Path, clock: FakeClock, upsets: UpsetRecorder
) -> None:
    with JobStore(db_path, clock) as store:
        job = submit(store, priority=9, model="unique-model.onnx")
    data = bytearray(db_path.read_bytes())
    octet = state_type_octet(bytes(data), b"unique-model.onnx")
    assert data[octet] == 8  # SQLite's serial type for the integer 0: QUEUED
    data[octet] ^= 1  # 9: the integer 1, RUNNING; the index still says QUEUED
    db_path.write_bytes(bytes(data))
    with JobStore(db_path, clock, upsets.log) as store:
        assert store.opened.repaired == 1
        assert store.next_runnable() == job
        assert store.counts()[JobState.QUEUED] == 1
    assert upsets.take() == [(Outcome.CORRECTED, 1)]


def test_a_state_changed_with_its_index_is_restored_by_verify(
    guarded: JobStore, upsets: UpsetRecorder
) -> None:
    job = submit(guarded, priority=9)
    (site,) = [s for s in guarded.record_sites(job.job_id) if s.column == "state"]
    guarded.corrupt_record(site, flip(7, 2))  # QUEUED -> CANCELLED, in the index as well
    assert guarded.next_runnable() is None, "the index follows the damage until a check"
    assert guarded.verify() == StoreCheck(records=1, repaired=1)
    assert upsets.take() == [(Outcome.CORRECTED, 1)]
    assert guarded.next_runnable() == job


def test_text_made_invalid_utf8_is_restored(guarded: JobStore, upsets: UpsetRecorder) -> None:
    job = guarded.submit("modèle.onnx", "in.npy", 1, Redundancy.NONE, None)
    (site,) = [s for s in guarded.record_sites(job.job_id) if s.column == "model"]
    guarded.corrupt_record(site, flip(3, 6))  # in the two octets of è: no longer UTF-8
    assert guarded.get(job.job_id) == job
    assert upsets.take() == [(Outcome.CORRECTED, 1)]


def test_a_record_damaged_beyond_repair_is_set_aside_and_reported_once(
    guarded: JobStore, db_path: Path, upsets: UpsetRecorder
) -> None:
    jobs = [submit(guarded, priority=p) for p in (5, 200, 9)]
    # The fields and their copy both changed: only the CRC is left, it agrees with neither.
    raw_update(db_path, "UPDATE jobs SET priority = 201, copy = x'00' WHERE job_id = 2")
    assert guarded.next_runnable() == jobs[2]
    assert upsets.take() == [(Outcome.UNCORRECTABLE, 1)]
    assert [j.job_id for j in guarded.list()] == [3, 1]
    assert guarded.counts()[JobState.QUEUED] == 2
    for operation in OPERATIONS.values():
        with pytest.raises(RecordCorrupt, match="job 2: its record failed its checksums"):
            operation(guarded, 2)
    with pytest.raises(RecordCorrupt) as raised:
        guarded.get(2)
    assert isinstance(raised.value, JobStoreError) and raised.value.job_id == 2
    assert guarded.damaged() == [2]
    assert upsets.take() == [], "reported once, not on every read"
    with JobStore(db_path) as reopened:
        assert reopened.opened == StoreCheck(records=2)
        assert reopened.damaged() == [2]
        assert submit(reopened).job_id == 4


def test_a_damaged_checksum_is_rewritten(guarded: JobStore, upsets: UpsetRecorder) -> None:
    job = a_finished_job(guarded)
    (site,) = [s for s in guarded.record_sites(job.job_id) if s.column == "crc"]
    guarded.corrupt_record(site, flip(6, 2))
    assert guarded.list() == [job]
    assert upsets.take() == [(Outcome.CORRECTED, 1)]
    assert guarded.verify() == StoreCheck(records=1)


def test_verify_checks_every_record_and_sums_up(
    guarded: JobStore, db_path: Path, upsets: UpsetRecorder
) -> None:
    for i in range(30):
        submit(guarded, priority=i)
    assert guarded.verify() == StoreCheck(records=30)
    assert upsets.take() == []
    for job_id in (3, 17, 29):
        raw_update(db_path, "UPDATE jobs SET input_file = 'x' WHERE job_id = ?", (job_id,))
    raw_update(db_path, "UPDATE jobs SET input_file = 'y', crc = 1 WHERE job_id = 8")
    assert guarded.verify() == StoreCheck(records=30, repaired=3, set_aside=1)
    assert upsets.take() == [(Outcome.CORRECTED, 3), (Outcome.UNCORRECTABLE, 1)]
    assert guarded.verify() == StoreCheck(records=29)


def test_corrupt_record_refuses_what_it_cannot_do(guarded: JobStore) -> None:
    job = submit(guarded)
    with pytest.raises(ValueError, match="expected one of"):
        guarded.corrupt_record(RecordSite(job.job_id, "job_id", 8), flip(0, 0))
    with pytest.raises(ValueError, match="must keep"):
        guarded.corrupt_record(RecordSite(job.job_id, "model", 6), lambda b: b.append(0))
    with pytest.raises(UnknownJob):
        guarded.corrupt_record(RecordSite(99, "model", 6), flip(0, 0))


# -- damaged files ----------------------------------------------------------------------------


def fill(db_path: Path, clock: FakeClock, n: int = 400) -> dict[int, Job]:
    with JobStore(db_path, clock) as store:
        jobs = [submit(store, priority=i % 256, model=f"model-{i:04d}-" + "x" * 150)
                for i in range(n)]  # fmt: skip
    return {job.job_id: job for job in jobs}


def damage_pages(data: bytearray) -> bytes:
    page = 4096
    data[20 * page : 23 * page] = b"\xa5" * (3 * page)
    return bytes(data)


def truncate(data: bytearray) -> bytes:
    return bytes(data[: len(data) // 2])


@pytest.mark.parametrize("damage", [damage_pages, truncate])
def test_a_damaged_file_is_rebuilt_from_what_can_be_read(
    db_path: Path, clock: FakeClock, upsets: UpsetRecorder, damage: Callable[[bytearray], bytes]
) -> None:
    original = fill(db_path, clock)
    data = bytearray(db_path.read_bytes())
    assert len(data) > 40 * 4096
    damaged = damage(data)
    db_path.write_bytes(damaged)
    with JobStore(db_path, clock, upsets.log) as store:
        kept = {job.job_id: job for job in store.list(limit=1_000_000)}
        opened = store.opened
        assert submit(store).job_id == 401, "ids of lost jobs are not reused"
    assert opened.rebuilt and opened.lost == 400 - len(kept)
    assert 100 <= len(kept) < 400
    assert all(original[job_id] == job for job_id, job in kept.items())
    assert upsets.take() == [(Outcome.UNCORRECTABLE, opened.lost)]
    aside = db_path.with_name(JOBS_DB_FILE + ".damaged-1")
    assert aside.read_bytes() == damaged, "the damaged file is kept as it was"
    with JobStore(db_path, clock, upsets.log) as reopened:
        assert reopened.opened == StoreCheck(records=len(kept) + 1)
    assert upsets.take() == []


def test_damage_to_an_index_loses_nothing(
    db_path: Path, clock: FakeClock, upsets: UpsetRecorder
) -> None:
    original = fill(db_path, clock)
    raw = sqlite3.connect(db_path)
    root = raw.execute("SELECT rootpage FROM sqlite_master WHERE name = 'jobs_by_state'").fetchone()
    raw.close()
    data = bytearray(db_path.read_bytes())
    end = root[0] * 4096
    data[end - 1500 : end] = b"\x5a" * 1500
    db_path.write_bytes(bytes(data))
    with JobStore(db_path, clock, upsets.log) as store:
        assert {job.job_id: job for job in store.list(limit=1_000_000)} == original
        assert store.counts()[JobState.QUEUED] == 400
        assert store.opened.lost == 0
    assert upsets.take() == [(Outcome.CORRECTED, 1)]


# Octet 47: the schema format number, which SQLite refuses as "unsupported file format".
@pytest.mark.parametrize(
    ("octet", "bit"), [(0, 0), (16, 0), (17, 4), (21, 1), (28, 7), (47, 6), (60, 1)]
)
def test_a_flipped_bit_in_the_file_header_loses_nothing(
    db_path: Path, clock: FakeClock, upsets: UpsetRecorder, octet: int, bit: int
) -> None:
    original = fill(db_path, clock, 50)
    data = bytearray(db_path.read_bytes())
    data[octet] ^= 1 << bit
    db_path.write_bytes(bytes(data))
    with JobStore(db_path, clock, upsets.log) as store:
        assert {job.job_id: job for job in store.list(limit=1_000_000)} == original
    assert upsets.take() == [(Outcome.CORRECTED, 1)]


def rename_a_column(data: bytearray) -> None:
    data[data.index(b"result_size INTEGER") + 3] ^= 0x01  # resulu_size: parses, does not fit


def break_utf8_in_the_schema(data: bytearray) -> None:
    data[data.index(b"CREATE INDEX jobs_by_state") + 2] ^= 0x80  # SQLite quotes it in errors


def break_the_schema_page(data: bytearray) -> None:
    data[100] ^= 0x04  # page 1's b-tree page type: the schema table cannot be read


@pytest.mark.parametrize(
    "damage", [rename_a_column, break_utf8_in_the_schema, break_the_schema_page]
)
def test_damage_to_the_schema_loses_nothing(
    db_path: Path, clock: FakeClock, upsets: UpsetRecorder, damage: Callable[[bytearray], None]
) -> None:
    original = fill(db_path, clock, 50)
    data = bytearray(db_path.read_bytes())
    damage(data)
    db_path.write_bytes(bytes(data))
    with JobStore(db_path, clock, upsets.log) as store:
        assert store.opened.rebuilt
        assert {job.job_id: job for job in store.list(limit=1_000_000)} == original
        assert submit(store).job_id == 51
    assert upsets.take() == [(Outcome.CORRECTED, 1)]


def test_a_file_that_is_not_sqlite_is_set_aside(db_path: Path, upsets: UpsetRecorder) -> None:
    garbage = b"this is not a database, just some bytes " * 200
    db_path.write_bytes(garbage)
    with JobStore(db_path, upsets=upsets.log) as store:
        assert store.opened.rebuilt
        assert submit(store).job_id == 1
    assert upsets.take() == [(Outcome.UNCORRECTABLE, 1)]
    assert db_path.with_name(JOBS_DB_FILE + ".damaged-1").read_bytes() == garbage


def test_rows_failing_the_integrity_check_are_restored_in_place(
    db_path: Path, clock: FakeClock, upsets: UpsetRecorder
) -> None:
    with JobStore(db_path, clock) as store:
        job = submit(store)
    raw_update(db_path, "UPDATE jobs SET progress = 200")
    with JobStore(db_path, clock, upsets.log) as store:
        assert store.get(job.job_id) == job
        assert store.opened == StoreCheck(records=1, repaired=1, indexes_rebuilt=True)
    assert upsets.take() == [(Outcome.CORRECTED, 1)]
    assert sorted(p.name for p in db_path.parent.iterdir()) == [JOBS_DB_FILE]


def test_damage_found_while_open_is_rebuilt_by_verify(
    db_path: Path, clock: FakeClock, upsets: UpsetRecorder
) -> None:
    fill(db_path, clock)
    with JobStore(db_path, clock, upsets.log) as store:
        with open(db_path, "r+b") as file:
            file.seek(30 * 4096)
            file.write(b"\x5a" * 4096)
        check = store.verify()
        assert check.rebuilt and 0 < check.lost < 40
        assert len(store.list(limit=1_000_000)) == 400 - check.lost
        assert store.verify() == StoreCheck(records=400 - check.lost)
    assert upsets.take() == [(Outcome.UNCORRECTABLE, check.lost)]


def test_an_operation_that_meets_damage_fails_and_the_next_works(
    db_path: Path, clock: FakeClock, upsets: UpsetRecorder
) -> None:
    fill(db_path, clock)
    with JobStore(db_path, clock, upsets.log) as store:
        store._conn.execute("PRAGMA cache_size = 0")  # every read goes to the file
        with open(db_path, "r+b") as file:
            file.seek(30 * 4096)
            file.write(b"\x5a" * 4096)
        with pytest.raises(StoreCorrupt, match="list jobs: database corrupt"):
            store.list(limit=1_000_000)
        (outcome, lost), *_ = upsets.take()
        assert outcome is Outcome.UNCORRECTABLE
        assert len(store.list(limit=1_000_000)) == 400 - lost
        assert submit(store).job_id == 401
    assert db_path.with_name(JOBS_DB_FILE + ".damaged-1").exists()


def test_an_interrupted_rebuild_is_completed_or_discarded(db_path: Path, clock: FakeClock) -> None:
    original = fill(db_path, clock, 5)
    rebuild = db_path.with_name(JOBS_DB_FILE + ".rebuild")
    # Cut while the new file was written: the damaged file is still in place.
    rebuild.write_bytes(b"half a file")
    with JobStore(db_path, clock) as store:
        assert len(store.list()) == 5
    assert not rebuild.exists()
    # Cut after the damaged file went aside: the new file was complete.
    db_path.rename(rebuild)
    with JobStore(db_path, clock) as store:
        assert {job.job_id: job for job in store.list()} == original
    assert not rebuild.exists()


def test_a_foreign_database_is_not_taken_over(db_path: Path) -> None:
    other = sqlite3.connect(db_path)
    try:
        with other:
            other.execute("CREATE TABLE telemetry (t REAL, v REAL)")
    finally:
        other.close()
    with pytest.raises(StoreCorrupt, match="telemetry"):
        JobStore(db_path)


def test_a_newer_schema_is_refused_without_calling_it_corrupt(
    db_path: Path, clock: FakeClock
) -> None:
    JobStore(db_path, clock).close()
    raw = sqlite3.connect(db_path)
    try:
        raw.execute("ALTER TABLE jobs ADD COLUMN energy REAL")
        raw.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    finally:
        raw.close()
    newer = f"schema version {SCHEMA_VERSION + 1} is newer"
    with pytest.raises(JobStoreError, match=newer) as raised:
        JobStore(db_path, clock)
    assert not isinstance(raised.value, StoreCorrupt)


def test_a_damaged_schema_version_is_repaired_from_the_schema(
    db_path: Path, clock: FakeClock, upsets: UpsetRecorder
) -> None:
    JobStore(db_path, clock).close()
    raw = sqlite3.connect(db_path)
    try:
        raw.execute("PRAGMA user_version = 7")  # 3 with bit 2 flipped
    finally:
        raw.close()
    with JobStore(db_path, clock, upsets.log) as store:
        assert submit(store).job_id == 1
    assert upsets.take() == [(Outcome.CORRECTED, 1)]


def test_missing_directory_is_a_store_error(tmp_path: Path) -> None:
    with pytest.raises(JobStoreError, match="cannot open job store"):
        JobStore(tmp_path / "absent" / JOBS_DB_FILE)


def test_a_closed_store_refuses_work(db_path: Path) -> None:
    store = JobStore(db_path)
    store.close()
    with pytest.raises(JobStoreError):
        submit(store)


# -- migration from schema 1 ------------------------------------------------------------------

SCHEMA_1 = (
    f"""CREATE TABLE jobs (
        job_id INTEGER PRIMARY KEY AUTOINCREMENT CHECK (job_id BETWEEN 1 AND {MAX_JOB_ID}),
        model TEXT NOT NULL,
        input_file TEXT NOT NULL,
        priority INTEGER NOT NULL CHECK (priority BETWEEN 0 AND 255),
        redundancy INTEGER NOT NULL CHECK (redundancy BETWEEN 0 AND 2),
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
        result_size INTEGER
    ) STRICT""",
    "CREATE INDEX jobs_runnable ON jobs (priority DESC, job_id) WHERE state = 0",
    "CREATE INDEX jobs_by_state ON jobs (state, job_id)",
    "CREATE INDEX jobs_deadline ON jobs (deadline_at) WHERE state IN (0, 1)",
    "PRAGMA user_version = 1",
)


def test_a_schema_1_store_is_migrated_with_its_jobs(
    db_path: Path, clock: FakeClock, upsets: UpsetRecorder
) -> None:
    raw = sqlite3.connect(db_path)
    try:
        raw.execute("PRAGMA journal_mode=WAL")
        for statement in SCHEMA_1:
            raw.execute(statement)
        with raw:
            raw.execute(
                "INSERT INTO jobs (model, input_file, priority, redundancy, deadline_s, "
                "deadline_at, submitted_at, state, model_version, request) "
                "VALUES ('a.onnx', 'in.npy', 9, 2, 30.0, ?, ?, 0, 3, x'01020304000501')",
                (T0 + 30.0, T0),
            )
            raw.execute(
                "INSERT INTO jobs (model, input_file, priority, redundancy, submitted_at, state, "
                "attempts, started_at, finished_at, failure_code, failure_text) "
                "VALUES ('b.onnx', 'in.npy', 1, 0, ?, 3, 1, ?, ?, 283, 'wrong shape')",
                (T0, T0 + 1, T0 + 2),
            )
    finally:
        raw.close()
    with JobStore(db_path, clock, upsets.log) as store:
        assert store.opened == StoreCheck(records=2)
        first, second = store.get(1), store.get(2)
        assert (first.model, first.redundancy, first.deadline_at, first.request) == (
            "a.onnx", Redundancy.TMR, T0 + 30.0, bytes([1, 2, 3, 4, 0, 5, 1])
        )  # fmt: skip
        assert (second.state, second.failure_code, second.failure_text) == (
            JobState.FAILED, 283, "wrong shape"
        )  # fmt: skip
        assert store.next_runnable() == first
        assert submit(store).job_id == 3
        # Made before ABFT existed: its redundancy constraint was widened to hold it.
        abft = store.submit("c.onnx", "in.npy", 0, Redundancy.ABFT, None)
        assert store.get(abft.job_id).redundancy == Redundancy.ABFT
    assert upsets.take() == []
    raw = sqlite3.connect(db_path)
    try:
        assert raw.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert raw.execute("SELECT count(*) FROM jobs WHERE crc = 0").fetchone()[0] == 0
        assert raw.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        raw.close()
    with JobStore(db_path, clock) as store:
        assert store.get(1) == first


# -- kill -9 ----------------------------------------------------------------------------------

SUBMITTER = """
import sys
from pathlib import Path
from flight.jobs.redundancy import Redundancy
from flight.jobs.store import JobStore

store = JobStore(Path(sys.argv[1]))
i = 0
while True:
    job = store.submit(f"model-{i}.onnx", f"input-{i}.npy", i % 256, Redundancy(i % 3), None)
    sys.stdout.write(f"{job.job_id}\\n")
    sys.stdout.flush()
    i += 1
"""


def run_and_kill(db_path: Path, acknowledged_before_kill: int) -> list[int]:
    """Submit in a child until it has acknowledged enough jobs, SIGKILL it, return its ids."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    child = subprocess.Popen(
        [sys.executable, "-c", SUBMITTER, str(db_path)],
        stdout=subprocess.PIPE,
        cwd=REPO_ROOT,
        env=env,
        text=True,
    )
    assert child.stdout is not None
    lines: list[str] = []
    try:
        while len(lines) < acknowledged_before_kill:
            line = child.stdout.readline()
            assert line, f"submitter died early with status {child.poll()}"
            lines.append(line)
    finally:
        child.send_signal(signal.SIGKILL)
        rest = child.stdout.read()
        child.wait()
    assert child.returncode == -signal.SIGKILL
    # A line cut short by the kill was never acknowledged.
    lines.extend(line + "\n" for line in rest.split("\n")[:-1])
    return [int(line) for line in lines]


def test_every_acknowledged_job_survives_sigkill(db_path: Path) -> None:
    acknowledged: list[int] = []
    for target in (25, 80, 150):
        acknowledged += run_and_kill(db_path, target)
        assert acknowledged == sorted(set(acknowledged)), "ids must be unique and increasing"
        raw = sqlite3.connect(db_path)
        try:
            assert raw.execute("PRAGMA quick_check").fetchall() == [("ok",)]
        finally:
            raw.close()
        with JobStore(db_path) as store:
            stored = {job.job_id: job for job in store.list(limit=1_000_000)}
        for job_id in acknowledged:
            assert job_id in stored, f"acknowledged job {job_id} lost"
            assert stored[job_id].state is JobState.QUEUED
        # A job committed but not yet printed when the kill came is allowed, one per kill.
        assert len(set(stored) - set(acknowledged)) <= 3
    assert len(acknowledged) >= 255


# -- scale ------------------------------------------------------------------------------------


def test_a_thousand_submits_complete(store: JobStore) -> None:
    for i in range(1000):
        submit(store, priority=i % 256, deadline_s=3600.0)
    assert store.counts()[JobState.QUEUED] == 1000
    first = store.next_runnable()
    assert first is not None and (first.priority, first.job_id) == (255, 256)
    assert store.expire(T0 + 10.0) == []
