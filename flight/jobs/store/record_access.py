"""The store's connection and lock, its transactions, and the checked reading and writing of
records on which every operation is built."""

from __future__ import annotations

import builtins
import contextlib
import logging
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from flight.jobs.store.errors import JobStoreError, RecordCorrupt, StoreCorrupt, UnknownJob
from flight.jobs.store.job import Job
from flight.jobs.store.record import Values, check_record, dump, job_from, stored, values_of
from flight.jobs.store.schema import INSERT_SQL, SELECT_SQL, UPDATE_SQL
from flight.jobs.store.sqlite_file import DB_ERRORS, is_corruption, writing
from flight.protection.upsets import Outcome, Upset, UpsetLocation, UpsetLog

log = logging.getLogger(__name__)


class RecordAccess:
    """A store file's connection, guarded by a lock; records checked as they are read."""

    _conn: sqlite3.Connection

    def __init__(self, path: Path, clock: Callable[[], float], upsets: UpsetLog | None) -> None:
        """`upsets` hears of every damaged record or file (default: a log of the store's own)."""
        self._path = path
        self._clock = clock
        self._upsets = upsets if upsets is not None else UpsetLog()
        # The executor may report progress from another thread than the one that schedules.
        self._lock = threading.Lock()
        # Findings made under the lock, reported once it is released.
        self._pending: list[Upset] = []

    def _mend(self, problems: builtins.list[str]) -> object:
        """Mend a damaged file (StoreMending)."""
        raise NotImplementedError

    # -- plumbing ---------------------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """The store's lock; what was found under it is reported after its release, so that
        no listener runs while the job threads wait."""
        self._lock.acquire()
        try:
            yield
        finally:
            pending, self._pending = self._pending, []
            self._lock.release()
            for upset in pending:
                self._upsets.report(upset)

    def _found(self, outcome: Outcome, where: str, count: int = 1) -> None:
        self._pending.append(Upset(UpsetLocation.JOB_STORE, outcome, where, count))

    @contextlib.contextmanager
    def _sqlite_errors(self, action: str, *, mend: bool = True) -> Iterator[None]:
        """SQLite's errors as the store's; corruption is mended (`mend`) before it is raised,
        so that only the operation that met it fails."""
        try:
            yield
        except DB_ERRORS as exc:
            if is_corruption(exc):
                if mend:
                    try:
                        self._mend([f"{action}: {exc}"])
                    except (JobStoreError, *DB_ERRORS, OSError):
                        log.exception("job store %s: cannot mend the damage", self._path)
                raise StoreCorrupt(f"{self._path}: {action}: database corrupt: {exc}") from exc
            raise JobStoreError(f"{self._path}: {action} failed: {exc}") from exc

    @contextlib.contextmanager
    def _transaction(self, action: str, *, durable: bool = True) -> Iterator[sqlite3.Connection]:
        with self._locked(), self._sqlite_errors(action):
            conn = self._conn
            if not durable:
                # A lost start costs nothing (recover requeues); an fsync costs flash wear.
                conn.execute("PRAGMA synchronous=NORMAL")
            try:
                conn.execute("BEGIN IMMEDIATE")
                yield conn
                conn.execute("COMMIT")
            except JobStoreError:
                # Refusals (unknown job, wrong state, corrupt record) are raised before the
                # operation changes anything: keep what its reads repaired or set aside.
                if conn.in_transaction:
                    conn.execute("COMMIT")
                raise
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            finally:
                if not durable:
                    conn.execute("PRAGMA synchronous=FULL")

    @contextlib.contextmanager
    def _reading(self, action: str) -> Iterator[sqlite3.Connection]:
        with self._locked(), self._sqlite_errors(action):
            yield self._conn

    # -- records ----------------------------------------------------------------------------

    def _verify(
        self, conn: sqlite3.Connection, row: Sequence[Any], *, report: bool = True
    ) -> tuple[Job | None, bool]:
        """The job of a stored row, repaired when damaged, None when set aside; whether the
        store was changed. `report`: each finding on its own (else the caller sums them up)."""
        verdict = check_record(row)
        found_id = row[0]
        if verdict.values is None or (
            verdict.repaired and not self._restore(conn, found_id, verdict.values)
        ):
            self._set_aside(conn, found_id, row, report=report)
            return None, True
        if verdict.repaired and report:
            self._found(
                Outcome.CORRECTED, f"job {verdict.values[0]} record: {verdict.repaired} restored"
            )
        return job_from(verdict.values), bool(verdict.repaired)

    def _restore(self, conn: sqlite3.Connection, found_id: int, values: Values) -> bool:
        """Write a record's repaired fields; False when its id (restored too) is taken."""
        with writing(conn):
            if values[0] == found_id:
                conn.execute(UPDATE_SQL, (*stored(values)[1:], found_id))
                return True
            if conn.execute("SELECT 1 FROM jobs WHERE job_id = ?", (values[0],)).fetchone():
                return False
            conn.execute("DELETE FROM jobs WHERE job_id = ?", (found_id,))
            conn.execute(INSERT_SQL, stored(values))
            return True

    def _set_aside(
        self, conn: sqlite3.Connection, job_id: int, row: Sequence[object], *, report: bool = True
    ) -> None:
        with writing(conn):
            conn.execute(
                "INSERT OR REPLACE INTO damaged_jobs (job_id, found_at, record) VALUES (?, ?, ?)",
                (job_id, float(self._clock()), dump(row)),
            )
            conn.execute("DELETE FROM jobs WHERE job_id = ?", (job_id,))
        log.error("job %d: record corrupt beyond repair, set aside: %r", job_id, tuple(row))
        if report:
            self._found(Outcome.UNCORRECTABLE, f"job {job_id} record corrupt: set aside")

    def _fetch(self, conn: sqlite3.Connection, job_id: int) -> Job:
        row = conn.execute(f"{SELECT_SQL} WHERE job_id = ?", (job_id,)).fetchone()
        job = None if row is None else self._verify(conn, row)[0]
        if job is not None and job.job_id == job_id:
            return job
        if conn.execute("SELECT 1 FROM damaged_jobs WHERE job_id = ?", (job_id,)).fetchone():
            raise RecordCorrupt(job_id)
        raise UnknownJob(f"job {job_id} is not in the store")

    def _select(
        self,
        conn: sqlite3.Connection,
        sql: str,
        params: Sequence[object],
        keep: Callable[[Job], bool],
    ) -> builtins.list[Job]:
        """The jobs a query of whole records selects, each checked, and `keep` of them.

        A query that met a damaged record runs again once it is repaired or set aside: what
        the query selected by may have been the damage. An intact record that `keep` refuses
        was selected by a damaged index: the indexes are rebuilt and the query runs again.
        """
        jobs: builtins.list[Job] = []
        for _ in range(3):
            changed = False
            jobs = []
            for row in conn.execute(sql, params).fetchall():
                job, repaired = self._verify(conn, row)
                changed |= repaired
                if job is None:
                    continue
                if keep(job):
                    jobs.append(job)
                elif not repaired:
                    self._reindex(conn, f"job {job.job_id} selected by a damaged index")
                    changed = True
            if not changed:
                break
        return jobs

    def _write(self, conn: sqlite3.Connection, job: Job) -> Job:
        values = values_of(job)
        conn.execute(UPDATE_SQL, (*stored(values)[1:], values[0]))
        return job_from(values)

    def _reindex(self, conn: sqlite3.Connection, why: str) -> None:
        with writing(conn):
            conn.execute("REINDEX jobs")
        log.warning("job store %s: indexes rebuilt: %s", self._path, why)
        self._found(Outcome.CORRECTED, f"job store indexes rebuilt: {why}")
