"""The job store's API: jobs submitted, started, ended, listed and recovered; each change durable
when its method returns.

Losses: a job whose compute is lost under it (its worker crashed or hung, or the payload
process ended while it ran) counts a loss in its record and runs again, until it reaches a
limit and fails: a poison job cannot loop, not even across restarts of the payload. A process
that ends without closing the store leaves it marked open; the next one's `recover` counts a
loss for each job it finds RUNNING. A clean stop leaves its running job RUNNING too, but closes
the store: no loss. A power cut may lose the RUNNING state itself (`mark_running` is not
synced), and with it that loss.
"""

from __future__ import annotations

import builtins
import dataclasses
import logging
import math
import sqlite3
import struct
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn, TypeVar

from flight.durable import fsync_directory
from flight.jobs.redundancy import Redundancy
from flight.jobs.store.errors import InvalidTransition, JobStoreError, UnknownJob
from flight.jobs.store.job import (
    ACTIVE_STATES,
    FINAL_STATES,
    MAX_JOB_ID,
    MAX_PRIORITY,
    SHA256_LEN,
    STATE_VALUES,
    Job,
    JobState,
    state_names,
)
from flight.jobs.store.mending import StoreCheck, StoreMending, plus
from flight.jobs.store.record import (
    FAULT_COLUMNS,
    FIELD_TYPES,
    RecordSite,
    field_octets,
    job_from,
    stored,
    values_of,
)
from flight.jobs.store.schema import (
    INSERT_SQL,
    MARK_OPEN_SQL,
    NEXT_RUNNABLE_SQL,
    READ_OPEN_SQL,
    SELECT_SQL,
    migrate,
    schema_problems,
)
from flight.jobs.store.sqlite_file import (
    DB_ERRORS,
    JOBS_DB_FILE,
    configure,
    connect,
    integrity_problems,
    is_corruption,
    writing,
)
from flight.protection.upsets import UpsetLog

log = logging.getLogger(__name__)

T = TypeVar("T")

# Why `recover` counts a loss: the last words of a job that took the payload down.
PAYLOAD_LOST = "the payload process ended while it ran (the job store was left open)"


@dataclass(frozen=True, slots=True)
class LossLimit:
    """How many losses of its compute a job may bring about: at the `losses`th it fails with
    `failure_code`."""

    losses: int
    failure_code: int


class JobStore(StoreMending):
    """Inference jobs in a SQLite file; each change is durable when its method returns."""

    def __init__(
        self,
        path: Path,
        clock: Callable[[], float] = time.time,
        upsets: UpsetLog | None = None,
    ) -> None:
        """Open (or create) the store at `path`; damage found is mended and reported.

        `upsets` hears of every damaged record or file (default: a log of the store's own).
        """
        super().__init__(path, clock, upsets)
        # Whether the process before this one ended without closing the store (recover).
        self._left_open = False
        self._finish_interrupted_rebuild()
        created = not path.exists()
        self._conn = connect(path)
        try:
            self.opened = self._open()
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
    def in_state_dir(
        cls,
        state_dir: Path,
        clock: Callable[[], float] = time.time,
        upsets: UpsetLog | None = None,
    ) -> JobStore:
        """Open (or create) the store file `jobs.sqlite3` in the payload's state directory."""
        return cls(state_dir / JOBS_DB_FILE, clock, upsets)

    @property
    def path(self) -> Path:
        """The store's database file."""
        return self._path

    def _open(self) -> StoreCheck:
        """Check the file; mend or rebuild it when damaged; migrate; check every record."""
        with self._locked():
            try:
                configure(self._conn, self._path)
                problems = integrity_problems(self._conn) or schema_problems(self._conn)
            except DB_ERRORS as exc:
                if not is_corruption(exc):
                    raise JobStoreError(f"{self._path}: open failed: {exc}") from exc
                problems = [str(exc)]
            mended = self._mend(problems) if problems else StoreCheck()
        self._migrate()
        if mended.rebuilt:
            return mended  # every record was checked on its way into the new file
        with self._locked(), self._sqlite_errors("check records"):
            swept = self._sweep()
        # The mend checked the records already: count them once.
        return plus(dataclasses.replace(mended, records=0), swept)

    def _migrate(self) -> None:
        """Migrate the schema; note whether the store was left open, and mark it open."""
        with self._transaction("create schema") as conn:
            migrate(conn, self._path, self._found, self._set_aside)
            row = conn.execute(READ_OPEN_SQL).fetchone()
            self._left_open = row is not None and row[0] == 1
            conn.execute(MARK_OPEN_SQL, (1,))

    def close(self) -> None:
        """Mark the store closed (its RUNNING jobs were stopped, not lost) and close the
        database; later calls raise `JobStoreError`."""
        with self._lock:
            try:
                with writing(self._conn):
                    self._conn.execute(MARK_OPEN_SQL, (0,))
            except sqlite3.ProgrammingError:
                pass  # closed already
            except DB_ERRORS as exc:
                # The next open counts a loss for the jobs left RUNNING: the safer mistake.
                log.warning("job store %s: not marked closed: %s", self._path, exc)
            finally:
                self._conn.close()

    def __enter__(self) -> JobStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- fault injection ----------------------------------------------------------------------

    def record_sites(self, job_id: int) -> builtins.list[RecordSite]:
        """The stored fields of a record a fault may hit (not NULL), with their sizes."""
        with self._reading(f"list fields of job {job_id}") as conn:
            row = conn.execute(
                f"SELECT {', '.join(FAULT_COLUMNS)} FROM jobs WHERE job_id = ?", (job_id,)
            ).fetchone()
        if row is None:
            raise UnknownJob(f"job {job_id} is not in the store")
        return [
            RecordSite(job_id, column, len(field_octets(value)))
            for column, value in zip(FAULT_COLUMNS, row, strict=True)
            if value is not None
        ]

    def corrupt_record(self, site: RecordSite, mutate: Callable[[bytearray], T]) -> T:
        """Hand one stored field's octets to `mutate`, which changes them in place; written
        back without the record's checksums. Integers are 8 octets (big-endian, two's
        complement), reals IEEE-754 binary64, text UTF-8. ValueError for a change SQLite
        cannot store (a NaN in a NOT NULL real)."""
        if site.column not in FAULT_COLUMNS:
            raise ValueError(f"expected one of {FAULT_COLUMNS}, found {site.column!r}")
        with self._locked(), self._sqlite_errors(f"corrupt job {site.job_id}", mend=False):
            conn = self._conn
            row = conn.execute(
                f"SELECT {site.column} FROM jobs WHERE job_id = ?", (site.job_id,)
            ).fetchone()
            if row is None:
                raise UnknownJob(f"job {site.job_id} is not in the store")
            old = row[0]
            data = bytearray(field_octets(old))
            size = len(data)
            result = mutate(data)
            if len(data) != size:
                raise ValueError(f"corrupt: {site.describe()} must keep its {size} octets")
            new: object = bytes(data)
            placeholder = "?"
            if isinstance(old, int):
                new = int.from_bytes(data, "big", signed=True)
            elif isinstance(old, float):
                real = struct.unpack(">d", data)[0]
                new = real
                if math.isnan(real) and not FIELD_TYPES.get(site.column, (float, False))[1]:
                    raise ValueError(f"{site.describe()}: SQLite cannot store a NaN there")
            elif isinstance(old, str):
                placeholder = "CAST(? AS TEXT)"  # stored as the octets are, UTF-8 or not
            conn.execute("PRAGMA ignore_check_constraints = ON")
            try:
                with writing(conn):
                    conn.execute(
                        f"UPDATE jobs SET {site.column} = {placeholder} WHERE job_id = ?",
                        (new, site.job_id),
                    )
            finally:
                conn.execute("PRAGMA ignore_check_constraints = OFF")
            return result

    # -- queries ----------------------------------------------------------------------------

    def get(self, job_id: int) -> Job:
        """The job as last committed; `UnknownJob` when there is none with that id,
        `RecordCorrupt` when its record is damaged beyond repair."""
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
        wanted = None if states is None else frozenset(params)
        with self._reading("list jobs") as conn:
            return self._select(
                conn,
                f"{SELECT_SQL} {where} ORDER BY job_id DESC LIMIT ?",
                (*params, limit),
                lambda job: wanted is None or job.state in wanted,
            )

    def counts(self) -> dict[JobState, int]:
        """How many jobs are in each state (every state present, zero included)."""
        with self._reading("count jobs") as conn:
            # Read from the state index, not the records: cheap enough for every report.
            query = "SELECT state, COUNT(*) FROM jobs GROUP BY state"
            rows = conn.execute(query).fetchall()
            if any(state not in STATE_VALUES for state, _ in rows):
                # A state no job can have: the index or a record is damaged.
                self._sweep()
                self._reindex(conn, "a job state out of range")
                rows = conn.execute(query).fetchall()
        counts = dict.fromkeys(JobState, 0)
        counts.update({JobState(s): n for s, n in rows if s in STATE_VALUES})
        return counts

    def next_runnable(self) -> Job | None:
        """The queued job to run next: highest priority, then first submitted; None if idle."""
        with self._reading("pick next job") as conn:
            jobs = self._select(
                conn, NEXT_RUNNABLE_SQL, (), lambda job: job.state is JobState.QUEUED
            )
        return jobs[0] if jobs else None

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
        with self._transaction("submit job") as conn:
            row = conn.execute(
                "SELECT max(COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'jobs'), 0), "
                "COALESCE((SELECT max(job_id) FROM jobs), 0))"
            ).fetchone()
            if row[0] >= MAX_JOB_ID:
                raise JobStoreError(f"job ids exhausted: last id {row[0]}, limit {MAX_JOB_ID}")
            values = values_of(
                Job(
                    job_id=row[0] + 1,
                    model=model,
                    input_file=input_file,
                    priority=priority,
                    redundancy=redundancy,
                    deadline_s=deadline_s,
                    submitted_at=now,
                    state=JobState.QUEUED,
                    attempts=0,
                    started_at=None,
                    finished_at=None,
                    result_file=None,
                    result_sha256=None,
                    failure_code=None,
                    failure_text=None,
                    progress=0,
                    model_version=model_version,
                    request=bytes(request),
                )
            )
            conn.execute(INSERT_SQL, stored(values))
        job = job_from(values)
        log.info("job %d queued: model %s, priority %d", job.job_id, model, priority)
        return job

    def _transition(
        self,
        action: str,
        job_id: int,
        allowed_from: Collection[JobState],
        changes: dict[str, Any],
        *,
        durable: bool = True,
    ) -> Job:
        with self._transaction(f"{action} job {job_id}", durable=durable) as conn:
            job = self._fetch(conn, job_id)
            if job.state not in allowed_from:
                self._refuse(action, job, allowed_from)
            return self._write(conn, dataclasses.replace(job, **changes))

    def mark_running(self, job_id: int) -> Job:
        """QUEUED -> RUNNING: one more attempt starts now.

        Not synced: after a power cut the job is QUEUED again, which is what `recover` makes
        of a RUNNING job anyway (only the attempt count may lag)."""
        with self._transaction(f"start job {job_id}", durable=False) as conn:
            job = self._fetch(conn, job_id)
            if job.state is not JobState.QUEUED:
                self._refuse("start", job, {JobState.QUEUED})
            return self._write(
                conn,
                dataclasses.replace(
                    job,
                    state=JobState.RUNNING,
                    attempts=job.attempts + 1,
                    started_at=self._clock(),
                    progress=0,
                    runs=0,
                    disagreements=0,
                ),
            )

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
                "state": JobState.SUCCEEDED,
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
                "state": JobState.FAILED,
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
            {"state": JobState.TIMED_OUT, "finished_at": self._clock()},
        )

    def cancel(self, job_id: int) -> Job:
        """QUEUED or RUNNING -> CANCELLED; a final job raises `InvalidTransition`."""
        return self._transition(
            "cancel",
            job_id,
            ACTIVE_STATES,
            {"state": JobState.CANCELLED, "finished_at": self._clock()},
        )

    def requeue(self, job_id: int, *, undo_attempt: bool = False) -> Job:
        """RUNNING -> QUEUED: the job was stopped to run again later. `undo_attempt`: it was
        held before it computed anything, so its attempt does not count."""
        with self._transaction(f"requeue job {job_id}") as conn:
            job = self._fetch(conn, job_id)
            if job.state is not JobState.RUNNING:
                self._refuse("requeue", job, {JobState.RUNNING})
            attempts = max(job.attempts - 1, 0) if undo_attempt else job.attempts
            return self._write(
                conn,
                dataclasses.replace(job, state=JobState.QUEUED, progress=0, attempts=attempts),
            )

    def count_loss(self, job_id: int, limit: LossLimit, why: str) -> Job:
        """RUNNING -> QUEUED with one more loss of its compute counted (`why`: the loss), in
        one durable transaction; FAILED instead when that loss reaches `limit`."""
        with self._transaction(f"count a loss of job {job_id}") as conn:
            job = self._fetch(conn, job_id)
            if job.state is not JobState.RUNNING:
                self._refuse("requeue", job, {JobState.RUNNING})
            return self._write(conn, self._after_loss(job, limit, why))

    def _after_loss(self, job: Job, limit: LossLimit, why: str) -> Job:
        """A RUNNING job after one more loss: queued again, or failed at the limit."""
        losses = job.losses + 1
        if losses < limit.losses:
            return dataclasses.replace(job, state=JobState.QUEUED, progress=0, losses=losses)
        return dataclasses.replace(
            job,
            state=JobState.FAILED,
            finished_at=self._clock(),
            failure_code=limit.failure_code,
            failure_text=f"its compute was lost {losses} times, last: {why}",
            runs=0,
            disagreements=0,
            losses=losses,
        )

    def recover(self, limit: LossLimit | None = None) -> builtins.list[Job]:
        """At start-up: requeue jobs a crash left RUNNING (attempts kept) and return them.

        With `limit`, when the process before did not close the store (a crash, a kill, a power
        loss), each also counts a loss as in `count_loss`, and is returned FAILED at the limit.
        """
        left_open, self._left_open = self._left_open, False
        with self._transaction("recover interrupted jobs") as conn:
            running = self._select(
                conn,
                f"{SELECT_SQL} WHERE state = {JobState.RUNNING:d} ORDER BY job_id",
                (),
                lambda job: job.state is JobState.RUNNING,
            )
            jobs = [
                self._write(
                    conn,
                    self._after_loss(job, limit, PAYLOAD_LOST)
                    if limit is not None and left_open
                    else dataclasses.replace(job, state=JobState.QUEUED, progress=0),
                )
                for job in running
            ]
        for job in jobs:
            if job.state is JobState.FAILED:
                log.error("job %d interrupted: failed: %s", job.job_id, job.failure_text)
                continue
            log.warning("job %d interrupted after %d attempt(s), %d loss(es): requeued",
                        job.job_id, job.attempts, job.losses)  # fmt: skip
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

        def is_overdue(job: Job) -> bool:
            deadline = job.deadline_at
            return job.state in ACTIVE_STATES and deadline is not None and deadline < now

        with self._transaction("expire overdue jobs") as conn:
            late = self._select(
                conn,
                f"{SELECT_SQL} WHERE {active} AND deadline_at < ? ORDER BY job_id",
                (now,),
                is_overdue,
            )
            jobs = [
                self._write(
                    conn, dataclasses.replace(job, state=JobState.TIMED_OUT, finished_at=now)
                )
                for job in late
            ]
        for job in jobs:
            log.info("job %d timed out (deadline %.1f s)", job.job_id, job.deadline_s)
        return jobs

    def delete_finished(self, older_than_s: float) -> int:
        """Delete final jobs that finished more than `older_than_s` ago; how many went."""
        if not older_than_s >= 0:
            raise ValueError(f"age must be >= 0 seconds, got {older_than_s}")
        cutoff = self._clock() - older_than_s
        finals = ", ".join(str(int(s)) for s in sorted(FINAL_STATES))

        def is_old(job: Job) -> bool:
            return job.is_final and job.finished_at is not None and job.finished_at <= cutoff

        with self._transaction("delete finished jobs") as conn:
            old = self._select(
                conn,
                f"{SELECT_SQL} WHERE state IN ({finals}) AND finished_at <= ?",
                (cutoff,),
                is_old,
            )
            conn.executemany("DELETE FROM jobs WHERE job_id = ?", [(j.job_id,) for j in old])
            return len(old)

    @staticmethod
    def _refuse(action: str, job: Job, allowed_from: Collection[JobState]) -> NoReturn:
        if job.is_final:
            raise InvalidTransition(f"cannot {action}: job {job.job_id} already {job.state.name}")
        raise InvalidTransition(
            f"cannot {action}: job {job.job_id} is {job.state.name}, expected "
            f"{state_names(allowed_from)}"
        )
