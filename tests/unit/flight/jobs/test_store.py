"""The job store: state machine, ordering, deadlines, recovery, ids, corruption, kill -9."""

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
    FINAL_STATES,
    JOBS_DB_FILE,
    MAX_JOB_ID,
    InvalidTransition,
    Job,
    JobState,
    JobStore,
    JobStoreError,
    StoreCorrupt,
    UnknownJob,
)

REPO_ROOT = Path(__file__).resolve().parents[4]
SHA = bytes(range(32))
T0 = 1_000.0


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


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
        assert probe.execute("PRAGMA user_version").fetchone()[0] == 1
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


# -- damaged files ----------------------------------------------------------------------------


def test_a_file_that_is_not_sqlite_is_corrupt(db_path: Path) -> None:
    db_path.write_bytes(b"this is not a database, just some bytes " * 200)
    with pytest.raises(StoreCorrupt, match="not a database"):
        JobStore(db_path)


def damage_pages(data: bytearray) -> bytes:
    page = 4096
    data[3 * page : 8 * page] = b"\xa5" * (5 * page)
    return bytes(data)


def truncate(data: bytearray) -> bytes:
    return bytes(data[: len(data) // 2])


@pytest.mark.parametrize("damage", [damage_pages, truncate])
def test_damaged_files_are_corrupt(
    db_path: Path, clock: FakeClock, damage: Callable[[bytearray], bytes]
) -> None:
    with JobStore(db_path, clock) as store:
        for i in range(400):
            submit(store, priority=i % 256, model=f"model-{i:04d}-" + "x" * 150)
    data = bytearray(db_path.read_bytes())
    assert len(data) > 12 * 4096
    db_path.write_bytes(damage(data))
    with pytest.raises(StoreCorrupt, match="database corrupt: database disk image is malformed"):
        JobStore(db_path, clock)


def test_rows_failing_quick_check_are_corrupt(db_path: Path, clock: FakeClock) -> None:
    with JobStore(db_path, clock) as store:
        submit(store)
    raw = sqlite3.connect(db_path)
    try:
        raw.execute("PRAGMA ignore_check_constraints = ON")
        with raw:
            raw.execute("UPDATE jobs SET progress = 200")
    finally:
        raw.close()
    with pytest.raises(StoreCorrupt, match="quick_check expected 'ok', found: CHECK constraint"):
        JobStore(db_path, clock)


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
        raw.execute("PRAGMA user_version = 9")
    finally:
        raw.close()
    with pytest.raises(JobStoreError, match="schema version 9 is newer") as raised:
        JobStore(db_path, clock)
    assert not isinstance(raised.value, StoreCorrupt)


def test_missing_directory_is_a_store_error(tmp_path: Path) -> None:
    with pytest.raises(JobStoreError, match="cannot open job store"):
        JobStore(tmp_path / "absent" / JOBS_DB_FILE)


def test_a_closed_store_refuses_work(db_path: Path) -> None:
    store = JobStore(db_path)
    store.close()
    with pytest.raises(JobStoreError):
        submit(store)


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
