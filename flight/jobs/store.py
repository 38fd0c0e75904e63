"""The durable job store: inference jobs and their states in one SQLite file.

Every state change is committed with a full sync before the method returns, so whatever the
caller reports to the ground survives `kill -9` and power loss (WAL mode, `synchronous=FULL`).

Protection against upsets (UpsetLocation.JOB_STORE):
- Every record carries a CRC-32 over all its fields and a second copy of them (`copy`, the
  fields' canonical JSON, which the CRC also covers). Each read checks them: when two of the
  three parts (fields, copy, CRC) agree the third is repaired (corrected); otherwise the record
  is set aside in table `damaged_jobs`, reported uncorrectable once, and `RecordCorrupt` raised
  for that job from then on (failure JOB_RECORD_CORRUPT). Listing and counting skip it.
- At open, and at each `verify()`, SQLite's integrity check runs and every record is read.
  Damage is mended in place when it can be (records restored, indexes rebuilt); otherwise the
  file is rebuilt from every record that can still be read, the damaged file kept beside it
  (`jobs.sqlite3.damaged-<n>`) for the ground. The same happens when an operation meets
  corruption; that operation fails with `StoreCorrupt`, the next ones work.

Fault injection: `record_sites(job_id)` and `corrupt_record(site, mutate)` change one stored
field of a record without its checksums; damage to the file itself (pages) is injected by
writing the file, and found by the next `verify()` (which reads it from disk) or open.
"""

from __future__ import annotations

import builtins
import contextlib
import dataclasses
import enum
import itertools
import json
import logging
import math
import os
import shutil
import sqlite3
import stat
import struct
import tempfile
import threading
import time
import zlib
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn, TypeVar

from flight.durable import fsync_directory
from flight.jobs.redundancy import Redundancy
from flight.protection.upsets import Outcome, Upset, UpsetLocation, UpsetLog

log = logging.getLogger(__name__)

T = TypeVar("T")

JOBS_DB_FILE = "jobs.sqlite3"
SCHEMA_VERSION = 2
MAX_JOB_ID = 0xFFFF_FFFF
MAX_PRIORITY = 255
SHA256_LEN = 32
# A damaged store file is kept as `<name>.damaged-<n>`; its replacement is built as
# `<name>.rebuild` before it takes the store's name.
DAMAGED_SUFFIX = ".damaged-"
REBUILD_SUFFIX = ".rebuild"
# A rebuild reads a copy of the damaged file, its header's fixed fields restored.
SALVAGE_SUFFIX = ".salvage"
# Records read per query when every record is checked: repairs are written between batches.
SWEEP_BATCH = 500
# Reads a rebuild may spend looking for readable rows between damaged pages.
SALVAGE_PROBES = 200_000


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
_STATE_VALUES = frozenset(int(s) for s in JobState)


class JobStoreError(Exception):
    """Base of the job store's errors."""


class UnknownJob(JobStoreError):
    """No job with that id is in the store (never submitted, or deleted)."""


class InvalidTransition(JobStoreError):
    """The job's current state does not allow the requested change."""


class StoreCorrupt(JobStoreError):
    """The store file is not a job store, or an operation met a damaged database."""


class RecordCorrupt(JobStoreError):
    """The job's record failed its checksums beyond repair: set aside (JOB_RECORD_CORRUPT)."""

    def __init__(self, job_id: int) -> None:
        super().__init__(f"job {job_id}: its record failed its checksums and could not be repaired")
        self.job_id = job_id


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


@dataclass(frozen=True, slots=True)
class StoreCheck:
    """What a check of the store found: records read, repaired, set aside; whether the file
    was mended in place (indexes rebuilt) or rebuilt, and jobs a rebuild could not read."""

    records: int = 0
    repaired: int = 0
    set_aside: int = 0
    indexes_rebuilt: bool = False
    rebuilt: bool = False
    lost: int = 0


@dataclass(frozen=True, slots=True)
class RecordSite:
    """One stored field of one record, as fault injection sees it."""

    job_id: int
    column: str
    octets: int

    def describe(self) -> str:
        return f"job {self.job_id} {self.column}"


# -- records: fields, their canonical form, the check -----------------------------------------

# Every stored field of a record, in the order of its canonical form, with the Python type of
# its values and whether it may be NULL. deadline_at is stored (not derived on read) so that
# expiry can use an index.
_FIELD_TYPES: dict[str, tuple[type, bool]] = {
    "job_id": (int, False),
    "model": (str, False),
    "input_file": (str, False),
    "priority": (int, False),
    "redundancy": (int, False),
    "deadline_s": (float, True),
    "deadline_at": (float, True),
    "submitted_at": (float, False),
    "state": (int, False),
    "attempts": (int, False),
    "started_at": (float, True),
    "finished_at": (float, True),
    "result_file": (str, True),
    "result_sha256": (bytes, True),
    "failure_code": (int, True),
    "failure_text": (str, True),
    "progress": (int, False),
    "model_version": (int, False),
    "request": (bytes, False),
    "runs": (int, False),
    "disagreements": (int, False),
    "result_size": (int, True),
}
_FIELDS = tuple(_FIELD_TYPES)
_TYPES = tuple(_FIELD_TYPES.values())
_N = len(_FIELDS)
_COLUMNS = ", ".join(_FIELDS)
_SELECT = f"SELECT {_COLUMNS}, crc, copy FROM jobs"
_INSERT_SQL = f"INSERT INTO jobs ({_COLUMNS}, crc, copy) VALUES ({', '.join('?' * (_N + 2))})"
_UPDATE_SQL = (
    f"UPDATE jobs SET {', '.join(f'{name} = ?' for name in _FIELDS[1:])}, crc = ?, copy = ? "
    "WHERE job_id = ?"
)
# Fields fault injection may change: all but the job id, which is the b-tree's key (damage to
# it is damage to the file's structure, which the integrity check finds).
FAULT_COLUMNS = (*_FIELDS[1:], "crc", "copy")

Values = tuple[Any, ...]

_encode_json = json.JSONEncoder(separators=(",", ":"), ensure_ascii=True).encode


# Every sequence of value types a record may have (a nullable field: its type or None).
_RECORD_TYPES = frozenset(
    itertools.product(*[(kind, type(None)) if nullable else (kind,) for kind, nullable in _TYPES])
)
_BLOB_FIELDS = tuple(i for i, (kind, _) in enumerate(_TYPES) if kind is bytes)


def encode_fields(values: Sequence[object]) -> bytes | None:
    """The canonical form of a record's fields (what its CRC covers and its copy holds);
    None when a field is not of its column's type, which only damage does."""
    if tuple(map(type, values)) not in _RECORD_TYPES:
        return None
    out = list(values)
    for i in _BLOB_FIELDS:
        blob = out[i]
        if isinstance(blob, bytes):
            out[i] = blob.hex()
    return _encode_json(out).encode("ascii")


def decode_fields(copy: bytes) -> Values | None:
    """The fields held by a record's copy; None when it is not a record's canonical form."""
    try:
        items = json.loads(copy)
    except ValueError:
        return None
    if not isinstance(items, list) or len(items) != _N:
        return None
    values: list[object] = []
    for item, (kind, _) in zip(items, _TYPES, strict=True):
        if kind is bytes and isinstance(item, str):
            try:
                item = bytes.fromhex(item)
            except ValueError:
                return None
        values.append(item)
    result = tuple(values)
    return result if encode_fields(result) == copy else None


@dataclass(frozen=True, slots=True)
class Verdict:
    """A record's fields as they should be (None: beyond repair), and what was repaired:
    "fields" (restored from the copy), "copy" or "checksum"; "" when the record is intact."""

    values: Values | None
    repaired: str = ""


def check_record(row: Sequence[Any]) -> Verdict:
    """Vote the three parts of a stored record (fields, copy, CRC): two that agree win."""
    values, crc, copy = tuple(row[:_N]), row[_N], row[_N + 1]
    encoded = encode_fields(values)
    copy = copy if type(copy) is bytes else None

    def crc_holds(data: bytes | None) -> bool:
        return data is not None and type(crc) is int and zlib.crc32(data) == crc

    if encoded is not None and encoded == copy and crc_holds(encoded):
        return Verdict(values)
    if crc_holds(encoded):
        return Verdict(values, "copy")
    if crc_holds(copy) and (restored := decode_fields(copy or b"")) is not None:
        return Verdict(restored, "fields")
    if encoded is not None and encoded == copy:
        return Verdict(values, "checksum")
    return Verdict(None)


def _stored(values: Values) -> tuple[Any, ...]:
    """The parameters that store `values` (fields, CRC, copy)."""
    encoded = encode_fields(values)
    if encoded is None:
        raise JobStoreError(f"job {values[0]}: a field is not of its column's type: {values}")
    return (*values, zlib.crc32(encoded), encoded)


def _real(value: float | None) -> float | None:
    return None if value is None else float(value)


def _integer(value: int | None) -> int | None:
    return None if value is None else int(value)


def _values_of(job: Job) -> Values:
    """A job's fields as stored (ints, floats and bytes of the exact types the CRC covers)."""
    submitted_at = float(job.submitted_at)
    deadline_s = _real(job.deadline_s)
    return (
        int(job.job_id),
        job.model,
        job.input_file,
        int(job.priority),
        int(job.redundancy),
        deadline_s,
        None if deadline_s is None else submitted_at + deadline_s,
        submitted_at,
        int(job.state),
        int(job.attempts),
        _real(job.started_at),
        _real(job.finished_at),
        job.result_file,
        None if job.result_sha256 is None else bytes(job.result_sha256),
        _integer(job.failure_code),
        job.failure_text,
        int(job.progress),
        int(job.model_version),
        bytes(job.request),
        int(job.runs),
        int(job.disagreements),
        _integer(job.result_size),
    )


def _job_from(values: Values) -> Job:
    return Job(
        job_id=values[0],
        model=values[1],
        input_file=values[2],
        priority=values[3],
        redundancy=Redundancy(values[4]),
        deadline_s=values[5],
        submitted_at=values[7],
        state=JobState(values[8]),
        attempts=values[9],
        started_at=values[10],
        finished_at=values[11],
        result_file=values[12],
        result_sha256=values[13],
        failure_code=values[14],
        failure_text=values[15],
        progress=values[16],
        model_version=values[17],
        request=values[18],
        runs=values[19],
        disagreements=values[20],
        result_size=values[21],
    )


def _dump(row: Sequence[object]) -> bytes:
    """A damaged record as the ground can read it."""
    return repr(tuple(row)).encode("ascii", "backslashreplace")


def _text(data: bytes) -> str:
    # Damage may leave text that is not UTF-8: read it anyway, for the checksums to refuse.
    return data.decode("utf-8", "surrogateescape")


def _field_octets(value: object) -> bytes:
    if isinstance(value, int):
        return value.to_bytes(8, "big", signed=True)
    if isinstance(value, float):
        return struct.pack(">d", value)
    if isinstance(value, str):
        return value.encode("utf-8", "surrogateescape")
    if isinstance(value, bytes):
        return value
    raise ValueError(f"expected a stored field, found {value!r}")


# -- schema ---------------------------------------------------------------------------------

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
    copy BLOB NOT NULL DEFAULT x''
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

_SCHEMA = (_JOBS_TABLE, _DAMAGED_TABLE, *_INDEXES, f"PRAGMA user_version = {SCHEMA_VERSION}")

# Version 1 had neither the checksums nor the table of damaged records.
_OLD_REDUNDANCY_CHECK = "CHECK (redundancy BETWEEN 0 AND 2)"
_REDUNDANCY_CHECK = "CHECK (redundancy BETWEEN 0 AND 3)"

_MIGRATE_FROM_1 = (
    "ALTER TABLE jobs ADD COLUMN crc INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE jobs ADD COLUMN copy BLOB NOT NULL DEFAULT x''",
    _DAMAGED_TABLE,
)

# Pinned to the partial index: without ANALYZE statistics the planner may prefer jobs_by_state
# and sort, which grows with the queue. The literal state is what makes the partial index usable.
_NEXT_RUNNABLE_SQL = (
    f"{_SELECT} INDEXED BY jobs_runnable WHERE state = {JobState.QUEUED:d} "
    "ORDER BY priority DESC, job_id LIMIT 1"
)

_CORRUPTION_CODES = frozenset({sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB})
# What reading a database can raise: Python's sqlite3 raises UnicodeDecodeError for an error
# message that quotes damaged schema text.
_DB_ERRORS = (sqlite3.Error, UnicodeDecodeError)


# The objects and the columns of each schema version: a store is recognised by them.
_SHAPES = {
    1: (frozenset(_FIELDS), frozenset({"jobs", "jobs_runnable", "jobs_by_state", "jobs_deadline"})),
    2: (
        frozenset({*_FIELDS, "crc", "copy"}),
        frozenset({"jobs", "damaged_jobs", "jobs_runnable", "jobs_by_state", "jobs_deadline"}),
    ),
}


def _schema_problems(conn: sqlite3.Connection) -> list[str]:
    """A store of a known schema version whose schema is not that version's: damaged."""
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version not in _SHAPES or _schema_shape(conn) is not None:
        return []  # a store (its version field repaired by _migrate if need be), or not one
    return [f"the schema of version {version} is damaged"]


def _schema_shape(conn: sqlite3.Connection) -> int | None:
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


def _is_corruption(exc: BaseException) -> bool:
    if isinstance(exc, UnicodeDecodeError):
        return True  # only damage puts text that is not UTF-8 into SQLite's messages
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None and (code & 0xFF) in _CORRUPTION_CODES:
        return True
    # A damaged schema format number in the header (octets 44-47): SQLite reports a generic
    # error, but this store only ever writes formats it reads.
    return "unsupported file format" in str(exc)


def _state_names(states: Collection[JobState]) -> str:
    return " or ".join(s.name for s in sorted(states))


def _configure(conn: sqlite3.Connection, path: Path) -> None:
    mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
    if mode != "wal":
        raise JobStoreError(f"{path}: expected journal mode wal, got {mode}")
    conn.execute("PRAGMA synchronous=FULL")


def _integrity_problems(conn: sqlite3.Connection) -> list[str]:
    """What SQLite's integrity check finds (structure, indexes, constraints); [] when sound."""
    problems = [str(row[0]) for row in conn.execute("PRAGMA integrity_check(20)").fetchall()]
    return [] if problems == ["ok"] else problems


def _refuse_links(path: Path) -> None:
    """JobStoreError when the database file, or its WAL or shared-memory file, is a symbolic
    link or a special file: SQLite would follow a link out of the state directory (and block
    on a FIFO). The store never makes one."""
    for file in _database_files(path):
        try:
            mode = os.lstat(file).st_mode
        except FileNotFoundError:
            continue
        if not stat.S_ISREG(mode):
            what = (
                "a symbolic link" if stat.S_ISLNK(mode) else f"not a file ({stat.filemode(mode)})"
            )
            raise JobStoreError(
                f"job store file {file} is {what}: not opened (the store never makes one),"
                " remove it"
            )


def _connect(path: Path) -> sqlite3.Connection:
    _refuse_links(path)
    try:
        # isolation_level=None: transactions are begun and committed explicitly.
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    except sqlite3.Error as exc:
        raise JobStoreError(f"cannot open job store {path}: {exc}") from exc
    conn.text_factory = _text
    return conn


def _database_files(path: Path) -> list[Path]:
    return [path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")]


def _remove_database(path: Path) -> None:
    for file in _database_files(path):
        file.unlink(missing_ok=True)


def _plus(a: StoreCheck, b: StoreCheck) -> StoreCheck:
    """Two checks' findings together."""
    return StoreCheck(
        a.records + b.records,
        a.repaired + b.repaired,
        a.set_aside + b.set_aside,
        a.indexes_rebuilt or b.indexes_rebuilt,
        a.rebuilt or b.rebuilt,
        a.lost + b.lost,
    )


@contextlib.contextmanager
def _writing(conn: sqlite3.Connection) -> Iterator[None]:
    """A write of its own, or part of the transaction already open."""
    if conn.in_transaction:
        yield
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


# -- rebuilding a damaged file ----------------------------------------------------------------


@dataclass(slots=True)
class _Salvage:
    """What could be read from a damaged store file."""

    rows: list[tuple[Any, ...]] = field(default_factory=list)
    checksummed: bool = False
    # Every id the table or its state index showed; complete when either was read to its end.
    known_ids: set[int] = field(default_factory=set)
    complete: bool = False
    # Ids whose own lookup met damage: the jobs that may have been lost, when not complete.
    unreadable: set[int] = field(default_factory=set)
    sequence: int = 0
    damaged: list[tuple[Any, ...]] = field(default_factory=list)


_SQLITE_MAGIC = b"SQLite format 3\x00"
# The header fields every store file has (file format 2: WAL; payload fractions 64/32/32;
# schema format 4; UTF-8), and where the page count is.
_FIXED_HEADER = ((0, _SQLITE_MAGIC), (18, b"\x02\x02\x00\x40\x20\x20"), (44, b"\x00\x00\x00\x04"),
                 (56, b"\x00\x00\x00\x01"))  # fmt: skip
_PAGE_COUNT = struct.Struct(">I")
_PAGE_COUNT_OFFSET = 28


def _restore_header(path: Path) -> None:
    """Undo damage to a store file's header that would keep SQLite from reading any of it:
    the fields every store has, and a page count beyond the end of a truncated file."""
    with open(path, "r+b") as file:
        header = bytearray(file.read(100))
        if len(header) < 100:
            return
        for offset, octets in _FIXED_HEADER:
            header[offset : offset + len(octets)] = octets
        page_size = int.from_bytes(header[16:18], "big")
        page_size = 65536 if page_size == 1 else page_size
        if page_size < 512 or page_size & (page_size - 1):
            page_size = 4096  # the store's (SQLite's default): a damaged size reads nothing
            header[16:18] = page_size.to_bytes(2, "big")
        pages = os.fstat(file.fileno()).st_size // page_size
        (counted,) = _PAGE_COUNT.unpack_from(header, _PAGE_COUNT_OFFSET)
        if counted > pages:
            _PAGE_COUNT.pack_into(header, _PAGE_COUNT_OFFSET, pages)
        file.seek(0)
        file.write(header)


def _canonical_schema() -> dict[bytes, tuple[bytes, bytes, bytes]]:
    """Name -> (type, table, SQL) of every object a store has, as SQLite records them."""
    conn = sqlite3.connect(":memory:")
    try:
        conn.text_factory = bytes
        for statement in _SCHEMA:
            conn.execute(statement)
        rows = conn.execute("SELECT name, type, tbl_name, sql FROM sqlite_master").fetchall()
    finally:
        conn.close()
    return {name: (kind, table, sql) for name, kind, table, sql in rows}


def _bits_apart(a: bytes, b: bytes) -> int:
    if len(a) != len(b):
        return 8 * max(len(a), len(b))
    return sum((x ^ y).bit_count() for x, y in zip(a, b, strict=True))


def _restore_schema(path: Path) -> None:
    """Rewrite the entries of the schema table that damage changed: each is matched to the
    store's object whose name is closest (a few bits at most); its root page is kept. A
    schema changed by the migration from version 1 is rewritten as created: the same columns
    in the same order."""
    canonical = _canonical_schema()
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.text_factory = bytes
        conn.execute("PRAGMA writable_schema = ON")
        rows = conn.execute("SELECT rowid, name, type, tbl_name, sql FROM sqlite_master").fetchall()
        conn.execute("BEGIN IMMEDIATE")
        for rowid, name, *entry in rows:
            if not isinstance(name, bytes):
                continue
            closest = min(canonical, key=lambda known: _bits_apart(name, known))
            if _bits_apart(name, closest) <= 8 and [closest, *canonical[closest]] != [name, *entry]:
                conn.execute(
                    "UPDATE sqlite_master SET name = ?, type = ?, tbl_name = ?, sql = ? "
                    "WHERE rowid = ?",
                    (closest, *canonical[closest], rowid),
                )
        conn.execute("COMMIT")
    except _DB_ERRORS:
        pass  # the schema table itself is unreadable: nothing can be read by it anyway
    finally:
        conn.close()


def _jobs_root(path: Path) -> int | None:
    """The root page of the jobs table by the file's schema; None when it cannot be read."""
    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA writable_schema = ON")
        row = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = 'jobs'").fetchone()
        return row[0] if row and type(row[0]) is int else None
    except _DB_ERRORS:
        return None
    finally:
        conn.close()


def _restore_schema_page(path: Path) -> None:
    """When the schema table cannot be read at all (damage to page 1's b-tree), put in its
    place the one a new store has. Its root pages are those of a store created by this
    schema; the jobs table's, the one that matters, is page 2 in every store (created first,
    at version 1 too)."""
    if _jobs_root(path) is not None:
        return
    with open(path, "r+b") as file:
        header = file.read(100)
        page_size = int.from_bytes(header[16:18], "big") or 4096
        page_size = 65536 if page_size == 1 else page_size
        with tempfile.TemporaryDirectory(dir=path.parent) as scratch:
            template = Path(scratch) / "template"
            conn = sqlite3.connect(template, isolation_level=None)
            try:
                conn.execute(f"PRAGMA page_size = {page_size}")
                for statement in _SCHEMA:
                    conn.execute(statement)
            finally:
                conn.close()
            page = template.read_bytes()[100:page_size]
        file.seek(100)
        file.write(page)
    log.warning("job store rebuild: page 1 (the schema) unreadable, replaced by a new one")


def _scalar(conn: sqlite3.Connection, sql: str) -> int:
    """An integer query's answer, 0 when the damage does not let it be read."""
    try:
        row = conn.execute(sql).fetchone()
    except _DB_ERRORS:
        return 0
    value = None if row is None else row[0]
    return value if type(value) is int and 0 <= value <= MAX_JOB_ID else 0


def _salvage(conn: sqlite3.Connection) -> _Salvage:
    """Every row of a damaged file that can still be read, by ranges of ids around the damage."""
    found = _Salvage()
    try:
        columns = {str(row[1]) for row in conn.execute("PRAGMA table_info(jobs)")}
    except _DB_ERRORS:
        return found
    if not set(_FIELDS) <= columns:
        return found
    found.checksummed = {"crc", "copy"} <= columns
    select = f"SELECT {_COLUMNS}{', crc, copy' if found.checksummed else ''} FROM jobs"
    found.sequence = _scalar(conn, "SELECT seq FROM sqlite_sequence WHERE name = 'jobs'")
    for index, where, order in _ID_SCANS:
        complete = _index_ids(conn, index, where, order, found.known_ids)
        found.complete |= complete and index == "jobs_by_state"
    try:
        found.rows = conn.execute(f"{select} ORDER BY job_id").fetchall()
        found.complete = True
    except _DB_ERRORS:
        high = max(found.sequence, _scalar(conn, "SELECT max(job_id) FROM jobs"),
                   max(found.known_ids, default=0))  # fmt: skip
        found.rows = _rows_between(conn, select, 1, high, found.unreadable)
    found.known_ids.update(row[0] for row in found.rows)
    with contextlib.suppress(*_DB_ERRORS):
        found.damaged = conn.execute("SELECT job_id, found_at, record FROM damaged_jobs").fetchall()
    return found


# Each index that holds job ids: its name, the condition that makes it usable, its order.
_ID_SCANS = (
    ("jobs_by_state", "state >= 0", ("state", "job_id")),
    ("jobs_runnable", f"state = {JobState.QUEUED:d}", ("priority", "job_id")),
    ("jobs_deadline", f"state IN ({JobState.QUEUED:d}, {JobState.RUNNING:d})", ("deadline_at",)),
)


def _index_ids(
    conn: sqlite3.Connection, index: str, where: str, order: tuple[str, ...], ids: set[int]
) -> bool:
    """Add the job ids an index holds to `ids`, read from either end up to any damage;
    whether it was read to its end."""
    for direction in ("ASC", "DESC"):
        sort = ", ".join(f"{column} {direction}" for column in order)
        try:
            for (job_id,) in conn.execute(
                f"SELECT job_id FROM jobs INDEXED BY {index} WHERE {where} ORDER BY {sort}"
            ):
                if type(job_id) is int:
                    ids.add(job_id)
            return True
        except _DB_ERRORS:
            continue  # the ids read so far are still known
    return False


def _rows_between(
    conn: sqlite3.Connection, select: str, low: int, high: int, unreadable: set[int]
) -> list[Any]:
    """The rows with ids low..high that can be read: a range that meets damage is halved
    until the damage is narrowed to single ids (added to `unreadable`)."""
    rows: list[Any] = []
    ranges = [(low, high)]
    probes = 0
    while ranges and probes < SALVAGE_PROBES:
        lo, hi = ranges.pop()
        probes += 1
        try:
            rows += conn.execute(f"{select} WHERE job_id BETWEEN ? AND ?", (lo, hi)).fetchall()
        except _DB_ERRORS:
            if lo < hi:
                mid = (lo + hi) // 2
                ranges += [(mid + 1, hi), (lo, mid)]
            else:
                unreadable.add(lo)
    if ranges:
        log.error("job store rebuild: gave up reading after %d queries", probes)
        for lo, hi in ranges:
            unreadable.update(range(lo, min(hi, lo + SALVAGE_PROBES) + 1))
    return sorted(rows, key=lambda row: int(row[0]))


# -- the store ------------------------------------------------------------------------------


class JobStore:
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
        self._path = path
        self._clock = clock
        self._upsets = upsets if upsets is not None else UpsetLog()
        # The executor may report progress from another thread than the one that schedules.
        self._lock = threading.Lock()
        # Findings made under the lock, reported once it is released.
        self._pending: list[Upset] = []
        self._finish_interrupted_rebuild()
        created = not path.exists()
        self._conn = _connect(path)
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
                _configure(self._conn, self._path)
                problems = _integrity_problems(self._conn) or _schema_problems(self._conn)
            except _DB_ERRORS as exc:
                if not _is_corruption(exc):
                    raise JobStoreError(f"{self._path}: open failed: {exc}") from exc
                problems = [str(exc)]
            mended = self._mend(problems) if problems else StoreCheck()
        self._migrate()
        if mended.rebuilt:
            return mended  # every record was checked on its way into the new file
        with self._locked(), self._sqlite_errors("check records"):
            swept = self._sweep()
        # The mend checked the records already: count them once.
        return _plus(dataclasses.replace(mended, records=0), swept)

    def _migrate(self) -> None:
        with self._transaction("create schema") as conn:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            shape = _schema_shape(conn)
            if shape is not None and shape != version:
                # The version field in the header is damaged: the schema says what it is.
                conn.execute(f"PRAGMA user_version = {shape}")
                self._found(Outcome.CORRECTED, f"job store schema version {version} -> {shape}")
                version = shape
            if version == SCHEMA_VERSION:
                return
            if version > SCHEMA_VERSION:
                raise JobStoreError(
                    f"{self._path}: schema version {version} is newer than this software's "
                    f"{SCHEMA_VERSION}"
                )
            tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master")]
            if version == 1 and "jobs" in tables:
                self._migrate_from_1(conn)
                return
            if tables:
                raise StoreCorrupt(
                    f"{self._path}: expected an empty database or a job store, found "
                    f"schema version {version} with objects {tables}"
                )
            for statement in _SCHEMA:
                conn.execute(statement)
            log.info("created job store %s (schema version %d)", self._path, SCHEMA_VERSION)

    def _widen_redundancy(self, conn: sqlite3.Connection) -> None:
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
        log.info("job store %s: redundancy ABFT (3) allowed", self._path)

    def _migrate_from_1(self, conn: sqlite3.Connection) -> None:
        for statement in _MIGRATE_FROM_1:
            conn.execute(statement)
        self._widen_redundancy(conn)
        rows = conn.execute(f"SELECT {_COLUMNS} FROM jobs").fetchall()
        for row in rows:
            values = tuple(row)
            if encode_fields(values) is None:
                self._set_aside(conn, values[0], row)
            else:
                conn.execute(_UPDATE_SQL, (*_stored(values)[1:], values[0]))
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        log.info("job store %s: schema 1 -> %d, %d records checksummed", self._path,
                 SCHEMA_VERSION, len(rows))  # fmt: skip

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
        except _DB_ERRORS as exc:
            if _is_corruption(exc):
                if mend:
                    try:
                        self._mend([f"{action}: {exc}"])
                    except (JobStoreError, *_DB_ERRORS, OSError):
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
        return _job_from(verdict.values), bool(verdict.repaired)

    def _restore(self, conn: sqlite3.Connection, found_id: int, values: Values) -> bool:
        """Write a record's repaired fields; False when its id (restored too) is taken."""
        with _writing(conn):
            if values[0] == found_id:
                conn.execute(_UPDATE_SQL, (*_stored(values)[1:], found_id))
                return True
            if conn.execute("SELECT 1 FROM jobs WHERE job_id = ?", (values[0],)).fetchone():
                return False
            conn.execute("DELETE FROM jobs WHERE job_id = ?", (found_id,))
            conn.execute(_INSERT_SQL, _stored(values))
            return True

    def _set_aside(
        self, conn: sqlite3.Connection, job_id: int, row: Sequence[object], *, report: bool = True
    ) -> None:
        with _writing(conn):
            conn.execute(
                "INSERT OR REPLACE INTO damaged_jobs (job_id, found_at, record) VALUES (?, ?, ?)",
                (job_id, float(self._clock()), _dump(row)),
            )
            conn.execute("DELETE FROM jobs WHERE job_id = ?", (job_id,))
        log.error("job %d: record corrupt beyond repair, set aside: %r", job_id, tuple(row))
        if report:
            self._found(Outcome.UNCORRECTABLE, f"job {job_id} record corrupt: set aside")

    def _fetch(self, conn: sqlite3.Connection, job_id: int) -> Job:
        row = conn.execute(f"{_SELECT} WHERE job_id = ?", (job_id,)).fetchone()
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
        values = _values_of(job)
        conn.execute(_UPDATE_SQL, (*_stored(values)[1:], values[0]))
        return _job_from(values)

    def _reindex(self, conn: sqlite3.Connection, why: str) -> None:
        with _writing(conn):
            conn.execute("REINDEX jobs")
        log.warning("job store %s: indexes rebuilt: %s", self._path, why)
        self._found(Outcome.CORRECTED, f"job store indexes rebuilt: {why}")

    # -- checks of the whole store ------------------------------------------------------------

    def verify(self) -> StoreCheck:
        """Check the file (SQLite's integrity check, from disk) and every record; mend or
        rebuild what is damaged and report it. For the scrubber: the integrity check runs on
        a connection of its own and the records are checked a batch at a time, so that the
        job threads and the main loop wait for one batch at most."""
        try:
            problems = self._file_problems()
        except FileNotFoundError:
            return StoreCheck()  # a rebuild is swapping the files: the next pass checks
        totals = StoreCheck()
        last: int | None = 0
        try:
            while last is not None and not problems:
                with self._locked():
                    try:
                        with self._sqlite_errors("verify", mend=False):
                            batch, last = self._check_batch(last)
                    except StoreCorrupt as exc:
                        problems = [str(exc)]
                    else:
                        totals = _plus(totals, batch)
        finally:
            with self._locked():
                self._report_sweep(totals)
        if problems:
            with self._locked():
                # The mend checks every record again: count those it checks once.
                return _plus(dataclasses.replace(totals, records=0), self._mend(problems))
        return totals

    def damaged(self) -> builtins.list[int]:
        """Ids of the records set aside as corrupt beyond repair."""
        with self._reading("list damaged records") as conn:
            return [r[0] for r in conn.execute("SELECT job_id FROM damaged_jobs ORDER BY job_id")]

    def _file_problems(self) -> builtins.list[str]:
        """SQLite's integrity check of the file as the disk holds it (a connection of its
        own); FileNotFoundError when the file is not there (never created by this)."""
        if not os.path.lexists(self._path):
            raise FileNotFoundError(self._path)
        _refuse_links(self._path)
        try:
            conn = sqlite3.connect(f"file:{self._path}?mode=rw", uri=True)
        except sqlite3.Error as exc:
            raise FileNotFoundError(self._path) from exc
        try:
            return _integrity_problems(conn) or _schema_problems(conn)
        except _DB_ERRORS as exc:
            if _is_corruption(exc):
                return [str(exc)]
            raise JobStoreError(f"{self._path}: integrity check failed: {exc}") from exc
        finally:
            conn.close()

    def _sweep(self) -> StoreCheck:
        """Check every record, repair or set aside the damaged ones; findings summed up."""
        totals = StoreCheck()
        last: int | None = 0
        try:
            while last is not None:
                batch, last = self._check_batch(last)
                totals = _plus(totals, batch)
        finally:
            self._report_sweep(totals)
        return totals

    def _check_batch(self, after: int) -> tuple[StoreCheck, int | None]:
        """Check the next batch of records after id `after`; the last id, None at the end."""
        conn = self._conn
        rows = conn.execute(
            f"{_SELECT} WHERE job_id > ? ORDER BY job_id LIMIT ?", (after, SWEEP_BATCH)
        ).fetchall()
        repaired = set_aside = 0
        for row in rows:
            job, changed = self._verify(conn, row, report=False)
            set_aside += job is None
            repaired += changed and job is not None
        last = rows[-1][0] if len(rows) == SWEEP_BATCH else None
        return StoreCheck(len(rows), repaired, set_aside), last

    def _report_sweep(self, check: StoreCheck) -> None:
        if check.repaired:
            where = f"{check.repaired} job records restored"
            self._found(Outcome.CORRECTED, where, check.repaired)
        if check.set_aside:
            where = f"{check.set_aside} job records corrupt: set aside"
            self._found(Outcome.UNCORRECTABLE, where, check.set_aside)

    def _mend(self, problems: builtins.list[str]) -> StoreCheck:
        """The file failed a check: restore its records and rebuild its indexes in place;
        when the file is still not sound, rebuild it from what can be read."""
        log.error("job store %s damaged: %s", self._path, "; ".join(problems[:3]))
        conn = self._conn
        swept = StoreCheck()
        try:
            schema = _schema_problems(conn)
        except _DB_ERRORS as exc:
            schema = [str(exc)]
        if schema:
            return self._rebuild(schema)  # the copy read for the rebuild gets the schema back
        try:
            # Indexes first: a record restored while its index entries disagree with it would
            # leave the index worse.
            with _writing(conn):
                conn.execute("REINDEX")
            columns = {row[1] for row in conn.execute("PRAGMA table_info(jobs)")}
            if {"crc", "copy"} <= columns:  # schema 1 has no checksums to check records by
                swept = self._sweep()
            remaining = self._file_problems()
        except _DB_ERRORS as exc:
            if not _is_corruption(exc):
                raise JobStoreError(f"{self._path}: mending failed: {exc}") from exc
            remaining = [str(exc)]
        if remaining:
            return self._rebuild(remaining)
        if not (swept.repaired or swept.set_aside):
            where = f"job store damaged ({problems[0][:80]}): indexes rebuilt"
            self._found(Outcome.CORRECTED, where)
        return dataclasses.replace(swept, indexes_rebuilt=True)

    def _rebuild(self, problems: builtins.list[str]) -> StoreCheck:
        """Replace the damaged file by a new one holding every record that can still be read;
        the damaged one is kept beside it."""
        self._conn.close()
        salvage = self._salvage_copy()
        rebuild = self._path.with_name(self._path.name + REBUILD_SUFFIX)
        _remove_database(rebuild)
        try:
            kept, repaired = self._write_rebuilt(rebuild, salvage)
            aside = self._aside_name()
            for source, target in zip(
                _database_files(self._path), _database_files(aside), strict=True
            ):
                if source.exists():
                    os.replace(source, target)
            os.replace(rebuild, self._path)
            fsync_directory(self._path.parent)
        except (OSError, sqlite3.Error) as exc:
            raise JobStoreError(f"{self._path}: cannot rebuild the damaged store: {exc}") from exc
        self._conn = _connect(self._path)
        _configure(self._conn, self._path)
        set_aside = len({int(row[0]) for row in salvage.rows} - kept)
        # Certain losses: jobs the table or an index showed, not kept. When neither could be
        # read to its end, the ids whose lookup met damage may have been jobs too.
        lost = salvage.known_ids - kept
        if not salvage.complete:
            lost |= salvage.unreadable - kept
        summary = (
            f"{self._path.name} damaged ({problems[0][:60]}): rebuilt with {len(kept)} jobs, "
            f"damaged file kept as {aside.name}"
        )
        if salvage.complete and not lost:
            self._found(Outcome.CORRECTED, summary)
        else:
            if salvage.complete:
                losses = f"{len(lost)} lost"
            else:
                losses = f"up to {len(lost)} lost" if lost else "lost jobs unknown"
            self._found(Outcome.UNCORRECTABLE, f"{summary}, {losses}", max(1, len(lost)))
        if repaired:
            self._found(Outcome.CORRECTED, f"{repaired} job records restored", repaired)
        log.error("%s; %d lost", summary, len(lost))
        return StoreCheck(
            records=len(salvage.rows),
            repaired=repaired,
            set_aside=set_aside,
            rebuilt=True,
            lost=len(lost),
        )

    def _salvage_copy(self) -> _Salvage:
        """What a copy of the damaged file, its header restored, still holds (the disk's
        content, not the old connection's cache; the damaged file is kept as it is)."""
        scratch = self._path.with_name(self._path.name + SALVAGE_SUFFIX)
        _remove_database(scratch)
        _refuse_links(self._path)  # the copy would read what a link names into the store
        try:
            for source, target in zip(
                _database_files(self._path)[:2], _database_files(scratch)[:2], strict=True
            ):
                if source.exists():
                    shutil.copyfile(source, target)
            _restore_header(scratch)
            _restore_schema(scratch)
            _restore_schema_page(scratch)
            reader = _connect(scratch)
            try:
                return _salvage(reader)
            finally:
                reader.close()
        except OSError as exc:
            raise JobStoreError(f"{self._path}: cannot read the damaged store: {exc}") from exc
        finally:
            _remove_database(scratch)

    def _write_rebuilt(self, path: Path, salvage: _Salvage) -> tuple[set[int], int]:
        """A new store file of the salvaged records; the ids kept and how many were repaired."""
        conn = _connect(path)
        kept: set[int] = set()
        repaired = 0
        try:
            # Rollback journal: the file is complete on its own when committed, so that the
            # rename makes it the store (which then switches to WAL).
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("BEGIN IMMEDIATE")
            for statement in _SCHEMA:
                conn.execute(statement)
            for row in salvage.rows:
                if salvage.checksummed:
                    verdict = check_record(row)
                else:  # schema 1: no checksums to check, only the types
                    fields = tuple(row)
                    verdict = Verdict(fields if encode_fields(fields) is not None else None)
                values = verdict.values
                if values is not None and values[0] not in kept:
                    try:
                        conn.execute(_INSERT_SQL, _stored(values))
                    except sqlite3.IntegrityError:
                        pass  # a field outside its column's range: beyond repair
                    else:
                        kept.add(values[0])
                        repaired += bool(verdict.repaired)
                        continue
                conn.execute(
                    "INSERT OR REPLACE INTO damaged_jobs (job_id, found_at, record) "
                    "VALUES (?, ?, ?)",
                    (int(row[0]), float(self._clock()), _dump(row)),
                )
            for damaged in salvage.damaged:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("INSERT OR IGNORE INTO damaged_jobs VALUES (?, ?, ?)", damaged)
            # Ids are never reused, those of the lost jobs included.
            sequence = max(salvage.sequence, max(salvage.known_ids, default=0))
            conn.execute("DELETE FROM sqlite_sequence WHERE name = 'jobs'")
            if sequence:
                conn.execute("INSERT INTO sqlite_sequence (name, seq) VALUES ('jobs', ?)",
                             (sequence,))  # fmt: skip
            conn.execute("COMMIT")
        finally:
            conn.close()
        return kept, repaired

    def _aside_name(self) -> Path:
        n = 1
        while (aside := self._path.with_name(f"{self._path.name}{DAMAGED_SUFFIX}{n}")).exists():
            n += 1
        return aside

    def _finish_interrupted_rebuild(self) -> None:
        """A rebuild cut by a power loss: complete once the damaged file went aside (the new
        file was complete by then), discarded before (the damaged file is rebuilt again)."""
        _remove_database(self._path.with_name(self._path.name + SALVAGE_SUFFIX))
        rebuild = self._path.with_name(self._path.name + REBUILD_SUFFIX)
        if not rebuild.exists():
            return
        try:
            if self._path.exists():
                _remove_database(rebuild)
            else:
                os.replace(rebuild, self._path)
                log.warning("job store %s: interrupted rebuild completed", self._path)
            fsync_directory(self._path.parent)
        except OSError as exc:
            raise JobStoreError(f"{self._path}: cannot complete a rebuild: {exc}") from exc

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
            RecordSite(job_id, column, len(_field_octets(value)))
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
            data = bytearray(_field_octets(old))
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
                if math.isnan(real) and not _FIELD_TYPES.get(site.column, (float, False))[1]:
                    raise ValueError(f"{site.describe()}: SQLite cannot store a NaN there")
            elif isinstance(old, str):
                placeholder = "CAST(? AS TEXT)"  # stored as the octets are, UTF-8 or not
            conn.execute("PRAGMA ignore_check_constraints = ON")
            try:
                with _writing(conn):
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
                f"{_SELECT} {where} ORDER BY job_id DESC LIMIT ?",
                (*params, limit),
                lambda job: wanted is None or job.state in wanted,
            )

    def counts(self) -> dict[JobState, int]:
        """How many jobs are in each state (every state present, zero included)."""
        with self._reading("count jobs") as conn:
            # Read from the state index, not the records: cheap enough for every report.
            query = "SELECT state, COUNT(*) FROM jobs GROUP BY state"
            rows = conn.execute(query).fetchall()
            if any(state not in _STATE_VALUES for state, _ in rows):
                # A state no job can have: the index or a record is damaged.
                self._sweep()
                self._reindex(conn, "a job state out of range")
                rows = conn.execute(query).fetchall()
        counts = dict.fromkeys(JobState, 0)
        counts.update({JobState(s): n for s, n in rows if s in _STATE_VALUES})
        return counts

    def next_runnable(self) -> Job | None:
        """The queued job to run next: highest priority, then first submitted; None if idle."""
        with self._reading("pick next job") as conn:
            jobs = self._select(
                conn, _NEXT_RUNNABLE_SQL, (), lambda job: job.state is JobState.QUEUED
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
            values = _values_of(
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
            conn.execute(_INSERT_SQL, _stored(values))
        job = _job_from(values)
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

    def recover(self) -> builtins.list[Job]:
        """At start-up: requeue jobs a crash left RUNNING (attempts kept) and return them."""
        with self._transaction("recover interrupted jobs") as conn:
            running = self._select(
                conn,
                f"{_SELECT} WHERE state = {JobState.RUNNING:d} ORDER BY job_id",
                (),
                lambda job: job.state is JobState.RUNNING,
            )
            jobs = [
                self._write(conn, dataclasses.replace(job, state=JobState.QUEUED, progress=0))
                for job in running
            ]
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

        def is_overdue(job: Job) -> bool:
            deadline = job.deadline_at
            return job.state in ACTIVE_STATES and deadline is not None and deadline < now

        with self._transaction("expire overdue jobs") as conn:
            late = self._select(
                conn,
                f"{_SELECT} WHERE {active} AND deadline_at < ? ORDER BY job_id",
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
                f"{_SELECT} WHERE state IN ({finals}) AND finished_at <= ?",
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
            f"{_state_names(allowed_from)}"
        )
