"""The store's SQL: its tables and indexes, the statements that read and write records, the
shape of each schema version, and the migration of an older store."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path

from flight.jobs.store.errors import JobStoreError, StoreCorrupt
from flight.jobs.store.job import MAX_JOB_ID, MAX_PRIORITY, JobState
from flight.jobs.store.record import (
    COLUMNS,
    FIELDS,
    LAYOUT_2,
    Verdict,
    from_layout_2,
    stored,
)
from flight.protection.upsets import Outcome

log = logging.getLogger(__name__)

SCHEMA_VERSION = 3

SELECT_SQL = f"SELECT {COLUMNS}, crc, copy FROM jobs"
INSERT_SQL = (
    f"INSERT INTO jobs ({COLUMNS}, crc, copy) VALUES ({', '.join('?' * (len(FIELDS) + 2))})"
)
UPDATE_SQL = (
    f"UPDATE jobs SET {', '.join(f'{name} = ?' for name in FIELDS[1:])}, crc = ?, copy = ? "
    "WHERE job_id = ?"
)

_JOBS_TABLE = f"""CREATE TABLE jobs (
    job_id INTEGER PRIMARY KEY AUTOINCREMENT CHECK (job_id BETWEEN 1 AND {MAX_JOB_ID}),
    model TEXT NOT NULL,
    input_file TEXT NOT NULL,
    priority INTEGER NOT NULL CHECK (priority BETWEEN 0 AND {MAX_PRIORITY}),
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
    copy BLOB NOT NULL DEFAULT x'',
    losses INTEGER NOT NULL DEFAULT 0 CHECK (losses >= 0)
) STRICT"""

# Records that failed their checksums beyond repair, as read, for the ground.
_DAMAGED_TABLE = """CREATE TABLE damaged_jobs (
    job_id INTEGER PRIMARY KEY,
    found_at REAL NOT NULL,
    record BLOB NOT NULL
) STRICT"""

_INDEXES = (
    # Partial: finished jobs pile up, and must not slow the pick of the next one.
    f"CREATE INDEX jobs_runnable ON jobs (priority DESC, job_id) WHERE state = {JobState.QUEUED:d}",
    "CREATE INDEX jobs_by_state ON jobs (state, job_id)",
    f"CREATE INDEX jobs_deadline ON jobs (deadline_at) "
    f"WHERE state IN ({JobState.QUEUED:d}, {JobState.RUNNING:d})",
)

# Whether a process has the store open: one row, 1 from its open to its close (0). Found 1 at
# an open, the process before ended without closing the store (a crash, a kill, a power loss).
_OPEN_TABLE = """CREATE TABLE store_open (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    is_open INTEGER NOT NULL
) STRICT"""
MARK_OPEN_SQL = "INSERT OR REPLACE INTO store_open (id, is_open) VALUES (1, ?)"
READ_OPEN_SQL = "SELECT is_open FROM store_open WHERE id = 1"

# Created last: the tables and indexes before it have the same root pages as in a store created
# by version 2 (a rebuild whose schema page is unreadable relies on them).
SCHEMA = (
    _JOBS_TABLE,
    _DAMAGED_TABLE,
    *_INDEXES,
    _OPEN_TABLE,
    f"PRAGMA user_version = {SCHEMA_VERSION}",
)

# Version 1 had neither the checksums nor the table of damaged records.
_OLD_REDUNDANCY_CHECK = "CHECK (redundancy BETWEEN 0 AND 2)"
_REDUNDANCY_CHECK = "CHECK (redundancy BETWEEN 0 AND 3)"

_MIGRATE_FROM_1 = (
    "ALTER TABLE jobs ADD COLUMN crc INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE jobs ADD COLUMN copy BLOB NOT NULL DEFAULT x''",
    _DAMAGED_TABLE,
)
# Version 2 had neither the count of losses nor the mark of an open store. The column goes
# last, as in a store created by version 3.
_MIGRATE_FROM_2 = (
    "ALTER TABLE jobs ADD COLUMN losses INTEGER NOT NULL DEFAULT 0 CHECK (losses >= 0)",
    _OPEN_TABLE,
)

# Pinned to the partial index: without ANALYZE statistics the planner may prefer jobs_by_state
# and sort, which grows with the queue. The literal state is what makes the partial index usable.
NEXT_RUNNABLE_SQL = (
    f"{SELECT_SQL} INDEXED BY jobs_runnable WHERE state = {JobState.QUEUED:d} "
    "ORDER BY priority DESC, job_id LIMIT 1"
)


# The objects and the columns of each schema version: a store is recognised by them.
_JOBS_OBJECTS = frozenset({"jobs", "jobs_runnable", "jobs_by_state", "jobs_deadline"})
_SHAPES = {
    1: (frozenset(LAYOUT_2.fields), _JOBS_OBJECTS),
    2: (frozenset({*LAYOUT_2.fields, "crc", "copy"}), _JOBS_OBJECTS | {"damaged_jobs"}),
    3: (frozenset({*FIELDS, "crc", "copy"}), _JOBS_OBJECTS | {"damaged_jobs", "store_open"}),
}


def schema_problems(conn: sqlite3.Connection) -> list[str]:
    """A store of a known schema version whose schema is not that version's: damaged."""
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version not in _SHAPES or schema_shape(conn) is not None:
        return []  # a store (its version field repaired by migrate if need be), or not one
    return [f"the schema of version {version} is damaged"]


def schema_shape(conn: sqlite3.Connection) -> int | None:
    """The schema version whose tables, indexes and columns the database has exactly."""
    objects = frozenset(
        str(row[0])
        for row in conn.execute("SELECT name FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'")
    )
    columns = frozenset(str(row[1]) for row in conn.execute("PRAGMA table_info(jobs)"))
    for version, shape in _SHAPES.items():
        if shape == (columns, objects):
            return version
    return None


# What the migration reports (a repaired version field) and how it sets a record aside.
Report = Callable[[Outcome, str], None]
SetAside = Callable[[sqlite3.Connection, int, Sequence[object]], None]


def migrate(conn: sqlite3.Connection, path: Path, report: Report, set_aside: SetAside) -> None:
    """Give the store at `path` this software's schema, in the caller's transaction: created in
    an empty database, migrated from an older version; a newer or foreign one is refused."""
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    shape = schema_shape(conn)
    if shape is not None and shape != version:
        # The version field in the header is damaged: the schema says what it is.
        conn.execute(f"PRAGMA user_version = {shape}")
        report(Outcome.CORRECTED, f"job store schema version {version} -> {shape}")
        version = shape
    if version == SCHEMA_VERSION:
        return
    if version > SCHEMA_VERSION:
        raise JobStoreError(
            f"{path}: schema version {version} is newer than this software's {SCHEMA_VERSION}"
        )
    tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master")]
    if version in (1, 2) and "jobs" in tables:
        _migrate_from(version, conn, path, report, set_aside)
        return
    if tables:
        raise StoreCorrupt(
            f"{path}: expected an empty database or a job store, found "
            f"schema version {version} with objects {tables}"
        )
    for statement in SCHEMA:
        conn.execute(statement)
    log.info("created job store %s (schema version %d)", path, SCHEMA_VERSION)


def _widen_redundancy(conn: sqlite3.Connection, path: Path) -> None:
    """Let a schema-1 store hold ABFT (redundancy 3): the CHECK constraint is widened in the
    schema text, which SQLite documents as safe for a constraint that every stored row
    satisfies already (no row changes)."""
    row = conn.execute("SELECT sql FROM sqlite_master WHERE name = 'jobs'").fetchone()
    if row is None or _OLD_REDUNDANCY_CHECK not in str(row[0]):
        return
    version = conn.execute("PRAGMA schema_version").fetchone()[0]
    conn.execute("PRAGMA writable_schema = ON")
    try:
        conn.execute(
            "UPDATE sqlite_master SET sql = replace(sql, ?, ?) WHERE name = 'jobs'",
            (_OLD_REDUNDANCY_CHECK, _REDUNDANCY_CHECK),
        )
        conn.execute(f"PRAGMA schema_version = {int(version) + 1}")
    finally:
        conn.execute("PRAGMA writable_schema = OFF")
    log.info("job store %s: redundancy ABFT (3) allowed", path)


def _migrate_from(
    version: int, conn: sqlite3.Connection, path: Path, report: Report, set_aside: SetAside
) -> None:
    """Bring a store of version 1 or 2 to this version: each record checked as its version
    stored it (version 1: only its fields' types) and written in this version's layout."""
    if version == 1:
        for statement in _MIGRATE_FROM_1:
            conn.execute(statement)
        _widen_redundancy(conn, path)
    for statement in _MIGRATE_FROM_2:
        conn.execute(statement)
    rows = conn.execute(f"SELECT {', '.join(LAYOUT_2.fields)}, crc, copy FROM jobs").fetchall()
    for row in rows:
        if version == 1:
            row = row[:-2]  # no checksums yet, only the columns' defaults
            fields = tuple(row)
            verdict = Verdict(fields if LAYOUT_2.encode(fields) is not None else None)
        else:
            verdict = LAYOUT_2.check(row)
        if verdict.values is None or verdict.values[0] != row[0]:
            set_aside(conn, row[0], row)
            continue
        if verdict.repaired:
            report(Outcome.CORRECTED, f"job {row[0]} record: {verdict.repaired} restored")
        conn.execute(UPDATE_SQL, (*stored(from_layout_2(verdict.values))[1:], row[0]))
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    log.info("job store %s: schema %d -> %d, %d records checksummed", path, version,
             SCHEMA_VERSION, len(rows))  # fmt: skip
