"""What the ground station did pass by pass, and the jobs whose results it fetched: a small
SQLite file beside each payload's archive (`passes.sqlite`), written by the station and read by
`groundsw contacts` and `groundsw results` with or without it running.

A contact is a pass as the station lived it: from the first frame after a silence (AOS) to the
last frame before the next one (LOS), with what it sent and received meanwhile. The job table
is the ledger of the payload's jobs as the station last heard of them: their state, their
result, and where the result was put once fetched (a job in a final state without a result,
failed or cancelled, is settled too and never asked about again).
"""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PASS_LOG_FILE = "passes.sqlite"
BUSY_TIMEOUT_S = 10.0
SUCCEEDED = "SUCCEEDED"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS contacts (
    number INTEGER PRIMARY KEY,
    aos REAL NOT NULL,
    los REAL,
    commands_sent INTEGER NOT NULL DEFAULT 0,
    packets INTEGER NOT NULL DEFAULT 0,
    results INTEGER NOT NULL DEFAULT 0,
    result_octets INTEGER NOT NULL DEFAULT 0,
    open_gaps INTEGER
);
CREATE TABLE IF NOT EXISTS jobs (
    job_id INTEGER PRIMARY KEY,
    state TEXT NOT NULL,
    final INTEGER NOT NULL,
    finished REAL NOT NULL DEFAULT 0,
    result TEXT NOT NULL DEFAULT '',
    size INTEGER NOT NULL DEFAULT 0,
    sha256 TEXT NOT NULL DEFAULT '',
    path TEXT,
    fetched_at REAL,
    contact INTEGER,
    failures INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    model TEXT NOT NULL DEFAULT '',
    version INTEGER NOT NULL DEFAULT 0,
    input TEXT NOT NULL DEFAULT ''
);
"""


class PassLogError(Exception):
    """The pass log cannot be opened or written; one sentence."""


@dataclass(frozen=True, slots=True)
class Contact:
    """One pass as the station lived it (times UNIX seconds of the station's clock)."""

    number: int
    aos: float
    los: float | None  # None while it lasts
    commands_sent: int
    packets: int
    results: int
    result_octets: int
    open_gaps: int | None  # telemetry gaps still open at LOS

    @property
    def duration_s(self) -> float | None:
        return None if self.los is None else self.los - self.aos


@dataclass(frozen=True, slots=True)
class JobRecord:
    """A job as the station last heard of it, and its result once fetched."""

    job_id: int
    state: str  # the dictionary's JobState name
    final: bool
    finished: float  # onboard UNIX time it ended; 0: not yet or not known
    result: str  # onboard file name; "": none (yet)
    size: int
    sha256: str  # hex; "": not known
    path: str | None  # where the result was put on the ground; None: not fetched
    fetched_at: float | None
    contact: int | None  # the contact that fetched it
    failures: int  # fetches that failed
    last_error: str | None
    model: str = ""  # what it ran, once asked: the model, its version, the input file
    version: int = 0
    input: str = ""

    @property
    def wanted(self) -> bool:
        """A result to fetch: the job succeeded and its result is not here yet."""
        return self.state == SUCCEEDED and self.path is None


_JOB_COLUMNS = (
    "job_id, state, final, finished, result, size, sha256, path, fetched_at, contact, failures,"
    " last_error, model, version, input"
)


class PassLog:
    """The file; thread-safe (one connection under a lock), each change committed at once."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(path, check_same_thread=False, timeout=BUSY_TIMEOUT_S)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.executescript(_SCHEMA)
            self._db.commit()
        except (OSError, sqlite3.Error) as exc:
            raise PassLogError(f"cannot open the pass log {path}: {exc}") from None
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> PassLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _write(self, sql: str, args: tuple[object, ...]) -> int:
        with self._lock:
            try:
                cursor = self._db.execute(sql, args)
                self._db.commit()
            except sqlite3.Error as exc:
                self._db.rollback()
                raise PassLogError(f"pass log {self.path} not written: {exc}") from None
            return int(cursor.lastrowid or 0)

    def _read(self, sql: str, args: tuple[object, ...] = ()) -> list[Any]:
        with self._lock:
            try:
                return list(self._db.execute(sql, args))
            except sqlite3.Error as exc:
                raise PassLogError(f"pass log {self.path} not read: {exc}") from None

    # -- contacts -----------------------------------------------------------------------------

    def begin_contact(self, aos: float) -> int:
        """A new contact from `aos`; its number (the contacts are numbered from 1)."""
        return self._write("INSERT INTO contacts (aos) VALUES (?)", (aos,))

    def update_contact(
        self,
        number: int,
        *,
        los: float | None = None,
        commands_sent: int | None = None,
        packets: int | None = None,
        open_gaps: int | None = None,
    ) -> None:
        """Set the values given of contact `number`."""
        changes = {
            "los": los,
            "commands_sent": commands_sent,
            "packets": packets,
            "open_gaps": open_gaps,
        }
        given = {k: v for k, v in changes.items() if v is not None}
        if given:
            assignments = ", ".join(f"{k} = ?" for k in given)
            self._write(
                f"UPDATE contacts SET {assignments} WHERE number = ?", (*given.values(), number)
            )

    def add_result(self, number: int, octets: int) -> None:
        """Contact `number` fetched a result of `octets`."""
        self._write(
            "UPDATE contacts SET results = results + 1, result_octets = result_octets + ?"
            " WHERE number = ?",
            (octets, number),
        )

    def contacts(self, limit: int = 0) -> list[Contact]:
        """The contacts, oldest first (only the last `limit` when above 0)."""
        sql = (
            "SELECT number, aos, los, commands_sent, packets, results, result_octets, open_gaps"
            " FROM contacts ORDER BY number DESC"
        )
        rows = self._read(sql + (" LIMIT ?" if limit else ""), (limit,) if limit else ())
        return [Contact(*row) for row in reversed(rows)]

    # -- jobs ---------------------------------------------------------------------------------

    def note_job(self, job_id: int, state: str, final: bool, finished: float = 0.0) -> None:
        """The payload says job `job_id` is in `state`; what was fetched of it is kept."""
        self._write(
            "INSERT INTO jobs (job_id, state, final, finished) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (job_id) DO UPDATE SET state = excluded.state,"
            " final = excluded.final, finished = MAX(finished, excluded.finished)",
            (job_id, state, int(final), finished),
        )

    def note_run(self, job_id: int, model: str, version: int, input_name: str) -> None:
        """What job `job_id` runs: its model and version and its input file."""
        self._write(
            "UPDATE jobs SET model = ?, version = ?, input = ? WHERE job_id = ?",
            (model, version, input_name, job_id),
        )

    def note_result(self, job_id: int, result: str, size: int, sha256: str) -> None:
        """The result the payload reports for job `job_id` (before it is fetched)."""
        self._write(
            "UPDATE jobs SET result = ?, size = ?, sha256 = ? WHERE job_id = ?",
            (result, size, sha256, job_id),
        )

    def fetched(self, job_id: int, path: Path, at: float, contact: int | None) -> None:
        """Job `job_id`'s result is at `path` on the ground, checked."""
        self._write(
            "UPDATE jobs SET path = ?, fetched_at = ?, contact = ?, last_error = NULL"
            " WHERE job_id = ?",
            (str(path), at, contact, job_id),
        )

    def fetch_failed(self, job_id: int, error: str) -> None:
        self._write(
            "UPDATE jobs SET failures = failures + 1, last_error = ? WHERE job_id = ?",
            (error, job_id),
        )

    def job(self, job_id: int) -> JobRecord | None:
        rows = self._read(f"SELECT {_JOB_COLUMNS} FROM jobs WHERE job_id = ?", (job_id,))
        return _job(rows[0]) if rows else None

    def jobs(self) -> list[JobRecord]:
        """Every job heard of, by ID."""
        return [_job(r) for r in self._read(f"SELECT {_JOB_COLUMNS} FROM jobs ORDER BY job_id")]

    def wanted(self) -> list[JobRecord]:
        """The jobs whose result is to be fetched, oldest first."""
        rows = self._read(
            f"SELECT {_JOB_COLUMNS} FROM jobs WHERE state = ? AND path IS NULL ORDER BY job_id",
            (SUCCEEDED,),
        )
        return [_job(r) for r in rows]

    def unnamed(self) -> list[JobRecord]:
        """The jobs that ended without their model and input known, oldest first: a job first
        listed when it had ended without a result is asked about for nothing else."""
        rows = self._read(
            f"SELECT {_JOB_COLUMNS} FROM jobs WHERE final = 1 AND model = '' ORDER BY job_id"
        )
        return [_job(r) for r in rows]

    def unsettled(self) -> list[int]:
        """The jobs not yet in a final state when last heard of, by ID."""
        return [int(r[0]) for r in self._read("SELECT job_id FROM jobs WHERE final = 0")]

    def highest_job(self) -> int:
        """The highest job ID heard of; 0: none."""
        rows = self._read("SELECT MAX(job_id) FROM jobs")
        value = rows[0][0]
        return int(value) if isinstance(value, int) else 0


def _job(row: Any) -> JobRecord:
    (job_id, state, final, finished, result, size, sha, path, at, contact, failures, error,
     model, version, input_name) = row  # fmt: skip
    return JobRecord(
        job_id=int(job_id),
        state=str(state),
        final=bool(final),
        finished=float(finished),
        result=str(result),
        size=int(size),
        sha256=str(sha),
        path=None if path is None else str(path),
        fetched_at=None if at is None else float(at),
        contact=None if contact is None else int(contact),
        failures=int(failures),
        last_error=None if error is None else str(error),
        model=str(model),
        version=int(version),
        input=str(input_name),
    )
