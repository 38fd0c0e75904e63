"""The schedule on disk: one SQLite file in WAL mode with full syncs, every change committed
before it is reported, so that an acknowledged activity survives kill -9 and power loss.

Each record holds its fields, a copy of their canonical form and a CRC-32 of it, as the job
store's records do: a load or a scrub pass votes the three, repairs what one damaged copy
explains, and gives up a record (reported, dropped) only when none agrees. The execution
function's state is kept the same way."""

from __future__ import annotations

import logging
import os
import sqlite3
import stat
import struct
import zlib
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from flight.protection.upsets import UpsetLocation, UpsetLog
from flight.schedule.model import Activity
from spacelink.pus_schedule import ScheduleRequestId

log = logging.getLogger(__name__)

DB_FILE = "schedule.sqlite3"
DAMAGED_SUFFIX = ".damaged-"
# Canonical form of a record: request ID, release (UNIX ms), insertion order, then the packet.
_HEAD = struct.Struct(">QqQ")
_STATE = struct.Struct(">Q")
_ENABLED = "enabled"
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS activity (request_id INTEGER PRIMARY KEY, release_ms INTEGER "
    "NOT NULL, ord INTEGER NOT NULL, packet BLOB NOT NULL, copy BLOB NOT NULL, crc INTEGER "
    "NOT NULL)",
    "CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value INTEGER NOT NULL, "
    "copy BLOB NOT NULL, crc INTEGER NOT NULL)",
)
_DB_ERRORS = (sqlite3.Error, UnicodeDecodeError)


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


def canonical(activity: Activity) -> bytes:
    head = _HEAD.pack(activity.request_id.value, activity.release_ms, activity.order)
    return head + activity.packet


def _from_canonical(data: bytes) -> Activity:
    request_id, release, order = _HEAD.unpack_from(data)
    return Activity(
        ScheduleRequestId.from_value(request_id), release, bytes(data[_HEAD.size :]), order
    )


def _crc(data: bytes) -> int:
    return zlib.crc32(data)


class ScheduleStore:
    """The durable schedule of one payload."""

    def __init__(self, directory: Path, upsets: UpsetLog, enabled_by_default: bool = True) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / DB_FILE
        self.upsets = upsets
        self._default_enabled = enabled_by_default
        self._conn = self._open()

    def _open(self) -> sqlite3.Connection:
        for file in (self.path, self.path.with_name(self.path.name + "-wal")):
            # SQLite would follow a link out of the state directory; the store never makes one.
            if file.is_symlink() or (file.exists() and not stat.S_ISREG(os.lstat(file).st_mode)):
                raise ScheduleStoreError(f"{file} is not a regular file: not opened, remove it")
        try:
            return self._connect()
        except _DB_ERRORS as exc:
            aside = self._set_aside()
            self.upsets.uncorrectable(UpsetLocation.SCHEDULE, f"{self.path.name}: {exc}")
            log.error("schedule file unreadable (%s): kept as %s, schedule empty", exc, aside)
            try:
                return self._connect()
            except _DB_ERRORS as again:
                raise ScheduleStoreError(f"cannot open {self.path}: {again}") from again

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            if conn.execute("PRAGMA journal_mode=WAL").fetchone()[0] != "wal":
                raise sqlite3.OperationalError("WAL journal mode refused")
            conn.execute("PRAGMA synchronous=FULL")
            for statement in _SCHEMA:
                conn.execute(statement)
            conn.execute("PRAGMA quick_check").fetchall()
        except BaseException:
            conn.close()
            raise
        return conn

    def _set_aside(self) -> Path:
        n = 1
        while self.path.with_name(f"{self.path.name}{DAMAGED_SUFFIX}{n}").exists():
            n += 1
        aside = self.path.with_name(f"{self.path.name}{DAMAGED_SUFFIX}{n}")
        if self.path.exists():
            os.replace(self.path, aside)
        for suffix in ("-wal", "-shm"):
            self.path.with_name(self.path.name + suffix).unlink(missing_ok=True)
        return aside

    def close(self) -> None:
        self._conn.close()

    @contextmanager
    def _writing(self) -> Iterator[sqlite3.Connection]:
        """One durable transaction; ScheduleStoreError (and nothing changed) when it fails."""
        try:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
                self._conn.execute("COMMIT")
            except BaseException:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise
        except _DB_ERRORS as exc:
            raise ScheduleStoreError(f"schedule not written: {exc}") from exc

    # -- changes ------------------------------------------------------------------------------

    def put(self, activities: Iterable[Activity]) -> None:
        """Insert activities, or rewrite those already stored (a time shift), in one commit."""
        rows = []
        for a in activities:
            copy = canonical(a)
            rows.append((a.request_id.value, a.release_ms, a.order, a.packet, copy, _crc(copy)))
        with self._writing() as conn:
            conn.executemany("INSERT OR REPLACE INTO activity VALUES (?, ?, ?, ?, ?, ?)", rows)

    def delete(self, request_ids: Iterable[ScheduleRequestId]) -> None:
        with self._writing() as conn:
            conn.executemany(
                "DELETE FROM activity WHERE request_id = ?", [(r.value,) for r in request_ids]
            )

    def set_enabled(self, enabled: bool) -> None:
        with self._writing() as conn:
            self._write_enabled(conn, enabled)

    def reset(self) -> None:
        """Every activity deleted and the execution function disabled, in one commit."""
        with self._writing() as conn:
            conn.execute("DELETE FROM activity")
            self._write_enabled(conn, False)

    @staticmethod
    def _write_enabled(conn: sqlite3.Connection, enabled: bool) -> None:
        copy = _STATE.pack(int(enabled))
        conn.execute(
            "INSERT OR REPLACE INTO state VALUES (?, ?, ?, ?)",
            (_ENABLED, int(enabled), copy, _crc(copy)),
        )

    # -- reading and checking -----------------------------------------------------------------

    def load(self) -> Loaded:
        """Every record voted, what one damaged copy explains repaired in place, what none
        does deleted; upsets reported. ScheduleStoreError when the file cannot be read."""
        try:
            enabled = self._vote_enabled()
            rows = self._conn.execute(
                "SELECT request_id, release_ms, ord, packet, copy, crc FROM activity"
            ).fetchall()
        except _DB_ERRORS as exc:
            raise ScheduleStoreError(f"schedule not read: {exc}") from exc
        found = Loaded(enabled)
        repairs: list[Activity] = []
        for row in rows:
            activity, repaired = _vote(row)
            if activity is None:
                found.lost.append(LostRecord(_int(row[0]), _blob(row[3])))
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
                conn.executemany(
                    "DELETE FROM activity WHERE request_id = ?", [(r.request_id,) for r in lost]
                )
            self.put(repairs)
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
            "SELECT value, copy, crc FROM state WHERE key = ?", (_ENABLED,)
        ).fetchone()
        if row is None:
            return self._default_enabled
        value, copy, crc = row
        if value in (0, 1) and _crc(_STATE.pack(value)) == crc:
            if copy != _STATE.pack(value):
                self._repair_enabled(bool(value))
            return bool(value)
        if isinstance(copy, bytes) and len(copy) == _STATE.size and _crc(copy) == crc:
            (restored,) = _STATE.unpack(copy)
            if restored in (0, 1):
                self._repair_enabled(bool(restored))
                return bool(restored)
        # None agrees: disabled is the safe reading (nothing released that was not meant to be).
        self.upsets.uncorrectable(UpsetLocation.SCHEDULE, "schedule: execution function state")
        self._write_enabled(self._conn, False)
        return False

    def _repair_enabled(self, enabled: bool) -> None:
        self._write_enabled(self._conn, enabled)
        self.upsets.corrected(UpsetLocation.SCHEDULE, "schedule: execution function state")

    def raw_rows(self) -> list[tuple[object, ...]]:
        """The stored rows as they are (fault injection and tests)."""
        return list(self._conn.execute("SELECT * FROM activity").fetchall())

    def execute(self, sql: str, parameters: Sequence[object] = ()) -> None:
        """Change the file behind the store's back (fault injection and tests only)."""
        self._conn.execute(sql, parameters)


def _int(value: object) -> int:
    return value if isinstance(value, int) else -1


def _blob(value: object) -> bytes:
    return value if isinstance(value, bytes) else b""


def _vote(row: Sequence[object]) -> tuple[Activity | None, bool]:
    """A record's activity as its fields, copy and CRC agree on it (None: beyond repair), and
    whether anything had to be repaired."""
    request_id, release, order, packet, copy, crc = row
    fields: Activity | None = None
    typed = isinstance(request_id, int) and isinstance(release, int) and isinstance(order, int)
    if typed and isinstance(packet, bytes):
        try:
            fields = Activity(ScheduleRequestId.from_value(request_id), release, packet, order)  # type: ignore[arg-type]
        except ValueError:
            fields = None
    form = canonical(fields) if fields is not None else None
    if form is not None and _crc(form) == crc:
        return fields, copy != form
    if isinstance(copy, bytes) and len(copy) >= _HEAD.size and _crc(copy) == crc:
        try:
            return _from_canonical(copy), True
        except ValueError:
            return None, False
    if form is not None and form == copy:
        return fields, True  # only the CRC was hit
    return None, False
