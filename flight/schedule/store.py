"""The schedule on disk: one SQLite file in WAL mode with full syncs, every change committed
before it is reported, so that an acknowledged activity survives kill -9 and power loss.

Each record holds its fields, a copy of their canonical form and a CRC-32 of it, voted by the
job store's record layout (flight/jobs/store/record.py) on the job store's SQLite set-up
(flight/jobs/store/sqlite_file.py): a load or a scrub pass repairs what one damaged part
explains, and gives up a record (reported, dropped) only when none agrees. The execution
function's state is kept the same way."""

from __future__ import annotations

import logging
import os
import sqlite3
import zlib
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flight.durable import fsync_directory
from flight.jobs.store.errors import JobStoreError
from flight.jobs.store.record import RecordLayout
from flight.jobs.store.sqlite_file import (
    DAMAGED_SUFFIX,
    DB_ERRORS,
    configure,
    connect,
    remove_database,
    writing,
)
from flight.protection.upsets import UpsetLocation, UpsetLog
from flight.schedule.model import Activity
from spacelink.pus_schedule import ScheduleRequestId

log = logging.getLogger(__name__)

DB_FILE = "schedule.sqlite3"
# The fields of each table's records, in the order of their canonical form.
_ACTIVITY = RecordLayout(
    {
        "request_id": (int, False),
        "release_ms": (int, False),
        "ord": (int, False),
        "packet": (bytes, False),
    }
)
_STATE = RecordLayout({"key": (str, False), "value": (int, False)})
_ENABLED = "enabled"
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS activity (request_id INTEGER PRIMARY KEY, release_ms INTEGER "
    "NOT NULL, ord INTEGER NOT NULL, packet BLOB NOT NULL, crc INTEGER NOT NULL, copy BLOB "
    "NOT NULL)",
    "CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value INTEGER NOT NULL, "
    "crc INTEGER NOT NULL, copy BLOB NOT NULL)",
)
_PUT_SQL = (
    "INSERT OR REPLACE INTO activity (request_id, release_ms, ord, packet, crc, copy) "
    "VALUES (?, ?, ?, ?, ?, ?)"
)
_DELETE_SQL = "DELETE FROM activity WHERE request_id = ?"


class ScheduleStoreError(Exception):
    """The schedule could not be read or written; nothing was changed."""


@dataclass(frozen=True, slots=True)
class LostRecord:
    """A record beyond repair, as far as it can still be read."""

    request_id: int
    packet: bytes


@dataclass
class Loaded:
    """What a load or a check found: the sound (or repaired) activities, the execution
    function's state, the records given up, and how many were repaired."""

    enabled: bool
    activities: list[Activity] = field(default_factory=list)
    lost: list[LostRecord] = field(default_factory=list)
    repaired: int = 0


class ScheduleStore:
    """The durable schedule of one payload."""

    def __init__(self, directory: Path, upsets: UpsetLog, enabled_by_default: bool = True) -> None:
        new_directory = not directory.exists()
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / DB_FILE
        self.upsets = upsets
        self._default_enabled = enabled_by_default
        created = not self.path.exists()
        self._conn = self._open()
        try:
            # A new file's (and directory's) entry made durable, as its first commit will be.
            if created:
                fsync_directory(directory)
            if new_directory:
                fsync_directory(directory.parent)
        except OSError as exc:
            self._conn.close()
            raise ScheduleStoreError(f"cannot sync the directory of {self.path}: {exc}") from exc

    def _open(self) -> sqlite3.Connection:
        try:
            return self._connect()
        except JobStoreError as exc:  # a link or special file in its place, or no access
            raise ScheduleStoreError(str(exc)) from None
        except DB_ERRORS as exc:
            aside = self._set_aside()
            self.upsets.uncorrectable(UpsetLocation.SCHEDULE, f"{self.path.name}: {exc}")
            log.error("schedule file unreadable (%s): kept as %s, schedule empty", exc, aside)
        try:
            return self._connect()
        except (*DB_ERRORS, JobStoreError) as again:
            raise ScheduleStoreError(f"cannot open {self.path}: {again}") from again

    def _connect(self) -> sqlite3.Connection:
        conn = connect(self.path)
        try:
            configure(conn, self.path)
            for statement in _SCHEMA:
                conn.execute(statement)
            conn.execute("PRAGMA quick_check").fetchall()
        except BaseException:
            conn.close()
            raise
        return conn

    def _set_aside(self) -> Path:
        n = 1
        while (aside := self.path.with_name(f"{self.path.name}{DAMAGED_SUFFIX}{n}")).exists():
            n += 1
        if self.path.exists():
            os.replace(self.path, aside)
        remove_database(self.path)  # its WAL and shared-memory files
        return aside

    def close(self) -> None:
        self._conn.close()

    @contextmanager
    def _writing(self) -> Iterator[sqlite3.Connection]:
        """One durable transaction; ScheduleStoreError (and nothing changed) when it fails."""
        try:
            with writing(self._conn):
                yield self._conn
        except DB_ERRORS as exc:
            raise ScheduleStoreError(f"schedule not written: {exc}") from exc

    # -- changes ------------------------------------------------------------------------------

    def put(self, activities: Iterable[Activity]) -> None:
        """Insert activities, or rewrite those already stored (a time shift), in one commit."""
        with self._writing() as conn:
            conn.executemany(_PUT_SQL, [_stored(_ACTIVITY, _values(a)) for a in activities])

    def delete(self, request_ids: Iterable[ScheduleRequestId]) -> None:
        with self._writing() as conn:
            conn.executemany(_DELETE_SQL, [(r.value,) for r in request_ids])

    def set_enabled(self, enabled: bool) -> None:
        with self._writing() as conn:
            _write_enabled(conn, enabled)

    def reset(self) -> None:
        """Every activity deleted and the execution function disabled, in one commit."""
        with self._writing() as conn:
            conn.execute("DELETE FROM activity")
            _write_enabled(conn, False)

    # -- reading and checking -----------------------------------------------------------------

    def load(self) -> Loaded:
        """Every record voted, what one damaged part explains repaired in place, what none
        does deleted; upsets reported. ScheduleStoreError when the file cannot be read."""
        try:
            enabled = self._vote_enabled()
            rows = self._conn.execute(
                f"SELECT {', '.join(_ACTIVITY.fields)}, crc, copy FROM activity"
            ).fetchall()
        except DB_ERRORS as exc:
            raise ScheduleStoreError(f"schedule not read: {exc}") from exc
        found = Loaded(enabled)
        repairs: list[Activity] = []
        for row in rows:
            activity, repaired = _vote(row)
            if activity is None:
                request_id, packet = row[0], row[3]
                found.lost.append(
                    LostRecord(
                        request_id if isinstance(request_id, int) else -1,
                        packet if isinstance(packet, bytes) else b"",
                    )
                )
            else:
                found.activities.append(activity)
                if repaired:
                    repairs.append(activity)
        found.repaired = len(repairs)
        self._mend(repairs, found.lost)
        return found

    def _mend(self, repairs: Sequence[Activity], lost: Sequence[LostRecord]) -> None:
        if not repairs and not lost:
            return
        try:
            with self._writing() as conn:
                conn.executemany(_DELETE_SQL, [(r.request_id,) for r in lost])
                conn.executemany(_PUT_SQL, [_stored(_ACTIVITY, _values(a)) for a in repairs])
        except ScheduleStoreError as exc:  # found again by the next check
            log.error("schedule records not mended: %s", exc)
        if repairs:
            where = ", ".join(str(a.request_id) for a in repairs)
            self.upsets.corrected(UpsetLocation.SCHEDULE, f"schedule: {where}", len(repairs))
        if lost:
            where = ", ".join(f"0x{r.request_id:016X}" for r in lost)
            self.upsets.uncorrectable(UpsetLocation.SCHEDULE, f"schedule: {where}", len(lost))

    def _vote_enabled(self) -> bool:
        row = self._conn.execute(
            "SELECT key, value, crc, copy FROM state WHERE key = ?", (_ENABLED,)
        ).fetchone()
        if row is None:
            return self._default_enabled
        verdict = _STATE.check(row)
        if verdict.values is not None and verdict.values[1] in (0, 1):
            enabled = bool(verdict.values[1])
            if verdict.repaired:
                _write_enabled(self._conn, enabled)
                self.upsets.corrected(UpsetLocation.SCHEDULE, "schedule: execution function state")
            return enabled
        # None agrees: disabled is the safe reading (nothing released that was not meant to be).
        self.upsets.uncorrectable(UpsetLocation.SCHEDULE, "schedule: execution function state")
        _write_enabled(self._conn, False)
        return False

    def execute(self, sql: str, parameters: Sequence[object] = ()) -> None:
        """Change the file behind the store's back (fault injection and tests only)."""
        self._conn.execute(sql, parameters)


def _values(activity: Activity) -> tuple[Any, ...]:
    return activity.request_id.value, activity.release_ms, activity.order, activity.packet


def _stored(layout: RecordLayout, values: tuple[Any, ...]) -> tuple[Any, ...]:
    """The parameters that store `values`: the fields, their CRC and their copy."""
    copy = layout.encode(values)
    if copy is None:
        raise ValueError(f"a field is not of its column's type: {values!r}")
    return (*values, zlib.crc32(copy), copy)


def _write_enabled(conn: sqlite3.Connection, enabled: bool) -> None:
    conn.execute(
        "INSERT OR REPLACE INTO state (key, value, crc, copy) VALUES (?, ?, ?, ?)",
        _stored(_STATE, (_ENABLED, int(enabled))),
    )


def _vote(row: Sequence[object]) -> tuple[Activity | None, bool]:
    """A record's activity as its fields, copy and CRC agree on it (None: beyond repair), and
    whether anything had to be repaired."""
    verdict = _ACTIVITY.check(row)
    if verdict.values is None:
        return None, False
    request_id, release, order, packet = verdict.values
    try:
        request = ScheduleRequestId.from_value(request_id)
    except ValueError:  # a value no request ID has, yet checksummed: never written by this
        return None, False
    return Activity(request, release, packet, order), bool(verdict.repaired)
