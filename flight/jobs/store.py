"""The durable job store: inference jobs and their states in one SQLite file.

Every state change is committed with a full sync before the method returns, so whatever the
caller reports to the ground survives `kill -9` and power loss (WAL mode, `synchronous=FULL`).
"""

from __future__ import annotations

import builtins
import contextlib
import enum
import logging
import math
import sqlite3
import threading
import time
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from flight.durable import fsync_directory
from flight.jobs.redundancy import Redundancy

log = logging.getLogger(__name__)

JOBS_DB_FILE = "jobs.sqlite3"
SCHEMA_VERSION = 1
MAX_JOB_ID = 0xFFFF_FFFF
MAX_PRIORITY = 255
SHA256_LEN = 32


class JobState(enum.IntEnum):
    """Where a job is in its life; the last four are final."""

    QUEUED = 0
    RUNNING = 1
    SUCCEEDED = 2
    FAILED = 3
    CANCELLED = 4
    TIMED_OUT = 5


FINAL_STATES: frozenset[JobState] = frozenset(
    {JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED, JobState.TIMED_OUT}
)
ACTIVE_STATES: frozenset[JobState] = frozenset({JobState.QUEUED, JobState.RUNNING})


class JobStoreError(Exception):
    """Base of the job store's errors."""


class UnknownJob(JobStoreError):
    """No job with that id is in the store (never submitted, or deleted)."""


class InvalidTransition(JobStoreError):
    """The job's current state does not allow the requested change."""


class StoreCorrupt(JobStoreError):
    """The store file is not a SQLite database, or fails its integrity check."""


@dataclass(frozen=True, slots=True)
class Job:
    """One inference job as last committed to the store."""

    job_id: int
    model: str
    input_file: str
    priority: int
    redundancy: Redundancy
    deadline_s: float | None
    submitted_at: float
    state: JobState
    attempts: int
    started_at: float | None
    finished_at: float | None
    result_file: str | None
    result_sha256: bytes | None
    failure_code: int | None
    failure_text: str | None
    progress: int
    model_version: int = 0
    # The request ID (4 octets), source ID (2) and acknowledgement flags (1) of the TC that
    # submitted the job: its later verification reports go to that request, across restarts.
    request: bytes = b""
    runs: int = 0
    disagreements: int = 0
    result_size: int | None = None

    @property
    def deadline_at(self) -> float | None:
        """Clock time after which the job is overdue; None when it has no deadline."""
        return None if self.deadline_s is None else self.submitted_at + self.deadline_s

    @property
    def is_final(self) -> bool:
        """True once the job can no longer change state."""
        return self.state in FINAL_STATES


_COLUMNS = (
    "job_id, model, input_file, priority, redundancy, deadline_s, submitted_at, state, "
    "attempts, started_at, finished_at, result_file, result_sha256, failure_code, "
    "failure_text, progress, model_version, request, runs, disagreements, result_size"
)

# deadline_at is stored (not derived on read) so that expiry can use an index.
_SCHEMA = (
    f"""CREATE TABLE jobs (
        job_id INTEGER PRIMARY KEY AUTOINCREMENT CHECK (job_id BETWEEN 1 AND {MAX_JOB_ID}),
        model TEXT NOT NULL,
        input_file TEXT NOT NULL,
        priority INTEGER NOT NULL CHECK (priority BETWEEN 0 AND {MAX_PRIORITY}),
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
    # Partial: finished jobs pile up, and must not slow the pick of the next one.
    f"CREATE INDEX jobs_runnable ON jobs (priority DESC, job_id) WHERE state = {JobState.QUEUED:d}",
    "CREATE INDEX jobs_by_state ON jobs (state, job_id)",
    f"CREATE INDEX jobs_deadline ON jobs (deadline_at) "
    f"WHERE state IN ({JobState.QUEUED:d}, {JobState.RUNNING:d})",
    f"PRAGMA user_version = {SCHEMA_VERSION}",
)

# Pinned to the partial index: without ANALYZE statistics the planner may prefer jobs_by_state
# and sort, which grows with the queue. The literal state is what makes the partial index usable.
_NEXT_RUNNABLE_SQL = (
    f"SELECT {_COLUMNS} FROM jobs INDEXED BY jobs_runnable WHERE state = {JobState.QUEUED:d} "
    "ORDER BY priority DESC, job_id LIMIT 1"
)

_CORRUPTION_CODES = frozenset({sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB})


def _is_corruption(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    return code is not None and (code & 0xFF) in _CORRUPTION_CODES


def _row_to_job(row: tuple[Any, ...]) -> Job:
    return Job(
        job_id=row[0],
        model=row[1],
        input_file=row[2],
        priority=row[3],
        redundancy=Redundancy(row[4]),
        deadline_s=row[5],
        submitted_at=row[6],
        state=JobState(row[7]),
        attempts=row[8],
        started_at=row[9],
        finished_at=row[10],
        result_file=row[11],
        result_sha256=row[12],
        failure_code=row[13],
        failure_text=row[14],
        progress=row[15],
        model_version=row[16],
        request=row[17],
        runs=row[18],
        disagreements=row[19],
        result_size=row[20],
    )


def _state_names(states: Collection[JobState]) -> str:
    return " or ".join(s.name for s in sorted(states))


class JobStore:
    """Inference jobs in a SQLite file; each change is durable when its method returns."""

    def __init__(self, path: Path, clock: Callable[[], float] = time.time) -> None:
        self._path = path
        self._clock = clock
        # The executor may report progress from another thread than the one that schedules.
        self._lock = threading.Lock()
        created = not path.exists()
        try:
            # isolation_level=None: transactions are begun and committed explicitly below.
            self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise JobStoreError(f"cannot open job store {path}: {exc}") from exc
        try:
            self._open()
            if created:
                try:
                    fsync_directory(path.parent)
                except OSError as exc:
                    raise JobStoreError(
                        f"cannot sync the directory of new store {path}: {exc}"
                    ) from exc
        except BaseException:
            self._conn.close()
            raise

    @classmethod
    def in_state_dir(cls, state_dir: Path, clock: Callable[[], float] = time.time) -> JobStore:
        """Open (or create) the store file `jobs.sqlite3` in the payload's state directory."""
        return cls(state_dir / JOBS_DB_FILE, clock)

    @property
    def path(self) -> Path:
        """The store's database file."""
        return self._path

    def _open(self) -> None:
        with self._sqlite_errors("open"):
            mode = self._conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if mode != "wal":
                raise JobStoreError(f"{self._path}: expected journal mode wal, got {mode}")
            self._conn.execute("PRAGMA synchronous=FULL")
            problems = [r[0] for r in self._conn.execute("PRAGMA quick_check").fetchall()]
            if problems != ["ok"]:
                raise StoreCorrupt(
                    f"{self._path}: quick_check expected 'ok', found: {'; '.join(problems[:5])}"
                )
            self._migrate()

    def _migrate(self) -> None:
        with self._transaction("create schema") as conn:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version == SCHEMA_VERSION:
                return
            if version > SCHEMA_VERSION:
                raise JobStoreError(
                    f"{self._path}: schema version {version} is newer than this software's "
                    f"{SCHEMA_VERSION}"
                )
            tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master")]
            if tables:
                raise StoreCorrupt(
                    f"{self._path}: expected an empty database or a job store, found "
                    f"schema version {version} with objects {tables}"
                )
            for statement in _SCHEMA:
                conn.execute(statement)
            log.info("created job store %s (schema version %d)", self._path, SCHEMA_VERSION)

    def close(self) -> None:
        """Close the database; later calls raise `JobStoreError`."""
        with self._lock:
            self._conn.close()

    def __enter__(self) -> JobStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- plumbing ---------------------------------------------------------------------------

    @contextlib.contextmanager
    def _sqlite_errors(self, action: str) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            if _is_corruption(exc):
                raise StoreCorrupt(f"{self._path}: {action}: database corrupt: {exc}") from exc
            raise JobStoreError(f"{self._path}: {action} failed: {exc}") from exc

    @contextlib.contextmanager
    def _transaction(self, action: str, *, durable: bool = True) -> Iterator[sqlite3.Connection]:
        with self._lock, self._sqlite_errors(action):
            conn = self._conn
            if not durable:
                # A lost progress report costs nothing; an fsync per report costs flash wear.
                conn.execute("PRAGMA synchronous=NORMAL")
            try:
                conn.execute("BEGIN IMMEDIATE")
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            finally:
                if not durable:
                    conn.execute("PRAGMA synchronous=FULL")

    @contextlib.contextmanager
    def _reading(self, action: str) -> Iterator[sqlite3.Connection]:
        with self._lock, self._sqlite_errors(action):
            yield self._conn

    @staticmethod
    def _fetch(conn: sqlite3.Connection, job_id: int) -> Job:
        row = conn.execute(f"SELECT {_COLUMNS} FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
        if row is None:
            raise UnknownJob(f"job {job_id} is not in the store")
        return _row_to_job(row)

    def _transition(
        self,
        action: str,
        job_id: int,
        allowed_from: Collection[JobState],
        changes: dict[str, object],
        *,
        durable: bool = True,
    ) -> Job:
        with self._transaction(f"{action} job {job_id}", durable=durable) as conn:
            job = self._fetch(conn, job_id)
            if job.state not in allowed_from:
                self._refuse(action, job, allowed_from)
            assignments = ", ".join(f"{column} = ?" for column in changes)
            conn.execute(
                f"UPDATE jobs SET {assignments} WHERE job_id = ?", (*changes.values(), job_id)
            )
            return self._fetch(conn, job_id)

    # -- queries ----------------------------------------------------------------------------

    def get(self, job_id: int) -> Job:
        """The job as last committed; `UnknownJob` when there is none with that id."""
        with self._reading(f"get job {job_id}") as conn:
            return self._fetch(conn, job_id)

    def list(
        self, states: Collection[JobState] | None = None, limit: int = 100
    ) -> builtins.list[Job]:
        """Up to `limit` jobs, newest first, only those in `states` when given."""
        if limit < 0:
            raise ValueError(f"limit must be >= 0, got {limit}")
        if states is not None and not states:
            return []
        where = ""
        params: builtins.list[int] = []
        if states is not None:
            params = sorted({JobState(s) for s in states})
            where = f"WHERE state IN ({', '.join('?' * len(params))})"
        with self._reading("list jobs") as conn:
            rows = conn.execute(
                f"SELECT {_COLUMNS} FROM jobs {where} ORDER BY job_id DESC LIMIT ?",
                (*params, limit),
            ).fetchall()
        return [_row_to_job(row) for row in rows]

    def counts(self) -> dict[JobState, int]:
        """How many jobs are in each state (every state present, zero included)."""
        with self._reading("count jobs") as conn:
            rows = conn.execute("SELECT state, COUNT(*) FROM jobs GROUP BY state").fetchall()
        counts = dict.fromkeys(JobState, 0)
        counts.update({JobState(state): n for state, n in rows})
        return counts

    def next_runnable(self) -> Job | None:
        """The queued job to run next: highest priority, then first submitted; None if idle."""
        with self._reading("pick next job") as conn:
            row = conn.execute(_NEXT_RUNNABLE_SQL).fetchone()
        return None if row is None else _row_to_job(row)

    # -- changes ----------------------------------------------------------------------------

    def submit(
        self,
        model: str,
        input_file: str,
        priority: int,
        redundancy: Redundancy,
        deadline_s: float | None,
        *,
        model_version: int = 0,
        request: bytes = b"",
    ) -> Job:
        """Queue a new job; it is durable when this returns and its id is never reused."""
        if not model:
            raise ValueError("model name must not be empty")
        if not input_file:
            raise ValueError("input file name must not be empty")
        if not 0 <= priority <= MAX_PRIORITY:
            raise ValueError(f"priority must be 0..{MAX_PRIORITY}, got {priority}")
        redundancy = Redundancy(redundancy)
        if deadline_s is not None and not (math.isfinite(deadline_s) and deadline_s > 0):
            raise ValueError(f"deadline must be a positive number of seconds, got {deadline_s}")
        now = self._clock()
        deadline_at = None if deadline_s is None else now + deadline_s
        with self._transaction("submit job") as conn:
            row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'jobs'").fetchone()
            if row is not None and row[0] >= MAX_JOB_ID:
                raise JobStoreError(f"job ids exhausted: last id {row[0]}, limit {MAX_JOB_ID}")
            cursor = conn.execute(
                "INSERT INTO jobs (model, input_file, priority, redundancy, deadline_s, "
                "deadline_at, submitted_at, state, model_version, request) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    model,
                    input_file,
                    priority,
                    int(redundancy),
                    deadline_s,
                    deadline_at,
                    now,
                    int(JobState.QUEUED),
                    model_version,
                    bytes(request),
                ),
            )
            job_id = cursor.lastrowid
            assert job_id is not None
            job = self._fetch(conn, job_id)
        log.info("job %d queued: model %s, priority %d", job_id, model, priority)
        return job

    def mark_running(self, job_id: int) -> Job:
        """QUEUED -> RUNNING: one more attempt starts now.

        Not synced: after a power cut the job is QUEUED again, which is what `recover` makes
        of a RUNNING job anyway (only the attempt count may lag)."""
        with self._transaction(f"start job {job_id}", durable=False) as conn:
            job = self._fetch(conn, job_id)
            if job.state is not JobState.QUEUED:
                self._refuse("start", job, {JobState.QUEUED})
            conn.execute(
                "UPDATE jobs SET state = ?, attempts = attempts + 1, started_at = ?, "
                "progress = 0, runs = 0, disagreements = 0 WHERE job_id = ?",
                (int(JobState.RUNNING), self._clock(), job_id),
            )
            return self._fetch(conn, job_id)

    def mark_succeeded(
        self,
        job_id: int,
        result_file: str,
        result_sha256: bytes,
        *,
        result_size: int | None = None,
        runs: int = 0,
        disagreements: int = 0,
    ) -> Job:
        """RUNNING -> SUCCEEDED with the result file, its SHA-256 and how the runs voted."""
        if not result_file:
            raise ValueError("result file name must not be empty")
        if len(result_sha256) != SHA256_LEN:
            raise ValueError(f"result SHA-256 must be {SHA256_LEN} bytes, got {len(result_sha256)}")
        return self._transition(
            "complete",
            job_id,
            {JobState.RUNNING},
            {
                "state": int(JobState.SUCCEEDED),
                "finished_at": self._clock(),
                "result_file": result_file,
                "result_sha256": bytes(result_sha256),
                "result_size": result_size,
                "runs": runs,
                "disagreements": disagreements,
                "progress": 100,
            },
        )

    def mark_failed(
        self, job_id: int, code: int, text: str, *, runs: int = 0, disagreements: int = 0
    ) -> Job:
        """RUNNING -> FAILED with a failure code and an operator-readable reason."""
        return self._transition(
            "fail",
            job_id,
            {JobState.RUNNING},
            {
                "state": int(JobState.FAILED),
                "finished_at": self._clock(),
                "failure_code": code,
                "failure_text": text,
                "runs": runs,
                "disagreements": disagreements,
            },
        )

    def mark_timed_out(self, job_id: int) -> Job:
        """QUEUED or RUNNING -> TIMED_OUT (the deadline passed)."""
        return self._transition(
            "time out",
            job_id,
            ACTIVE_STATES,
            {"state": int(JobState.TIMED_OUT), "finished_at": self._clock()},
        )

    def cancel(self, job_id: int) -> Job:
        """QUEUED or RUNNING -> CANCELLED; a final job raises `InvalidTransition`."""
        return self._transition(
            "cancel",
            job_id,
            ACTIVE_STATES,
            {"state": int(JobState.CANCELLED), "finished_at": self._clock()},
        )

    def recover(self) -> builtins.list[Job]:
        """At start-up: requeue jobs a crash left RUNNING (attempts kept) and return them."""
        with self._transaction("recover interrupted jobs") as conn:
            ids = [
                r[0]
                for r in conn.execute(
                    "SELECT job_id FROM jobs WHERE state = ? ORDER BY job_id",
                    (int(JobState.RUNNING),),
                )
            ]
            conn.execute(
                "UPDATE jobs SET state = ?, progress = 0 WHERE state = ?",
                (int(JobState.QUEUED), int(JobState.RUNNING)),
            )
            jobs = [self._fetch(conn, job_id) for job_id in ids]
        for job in jobs:
            log.warning(
                "job %d interrupted after %d attempt(s): requeued", job.job_id, job.attempts
            )
        return jobs

    def expire(self, now: float) -> builtins.list[Job]:
        """QUEUED or RUNNING jobs whose deadline is before `now` become TIMED_OUT; returned."""
        active = f"state IN ({JobState.QUEUED:d}, {JobState.RUNNING:d})"
        # Asked before every job starts: a read through the deadline index settles the usual
        # case (nothing overdue) without taking the write lock.
        with self._reading("look for overdue jobs") as conn:
            overdue = conn.execute(
                f"SELECT 1 FROM jobs WHERE {active} AND deadline_at < ? LIMIT 1", (now,)
            ).fetchone()
        if overdue is None:
            return []
        with self._transaction("expire overdue jobs") as conn:
            ids = [
                r[0]
                for r in conn.execute(
                    f"SELECT job_id FROM jobs WHERE {active} AND deadline_at < ? ORDER BY job_id",
                    (now,),
                )
            ]
            if not ids:
                return []
            conn.execute(
                f"UPDATE jobs SET state = ?, finished_at = ? WHERE {active} AND deadline_at < ?",
                (int(JobState.TIMED_OUT), now, now),
            )
            jobs = [self._fetch(conn, job_id) for job_id in ids]
        for job in jobs:
            log.info("job %d timed out (deadline %.1f s)", job.job_id, job.deadline_s)
        return jobs

    def delete_finished(self, older_than_s: float) -> int:
        """Delete final jobs that finished more than `older_than_s` ago; how many went."""
        if not older_than_s >= 0:
            raise ValueError(f"age must be >= 0 seconds, got {older_than_s}")
        cutoff = self._clock() - older_than_s
        finals = ", ".join(str(int(s)) for s in sorted(FINAL_STATES))
        with self._transaction("delete finished jobs") as conn:
            cursor = conn.execute(
                f"DELETE FROM jobs WHERE state IN ({finals}) AND finished_at <= ?", (cutoff,)
            )
            return cursor.rowcount

    @staticmethod
    def _refuse(action: str, job: Job, allowed_from: Collection[JobState]) -> NoReturn:
        if job.is_final:
            raise InvalidTransition(f"cannot {action}: job {job.job_id} already {job.state.name}")
        raise InvalidTransition(
            f"cannot {action}: job {job.job_id} is {job.state.name}, expected "
            f"{_state_names(allowed_from)}"
        )
