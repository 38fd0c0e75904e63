"""The store's SQLite files: their names, opening and configuring a connection, SQLite's own
integrity check, and telling corruption from other errors."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path

from flight.jobs.store.errors import JobStoreError

JOBS_DB_FILE = "jobs.sqlite3"
# A damaged store file is kept as `<name>.damaged-<n>`; its replacement is built as
# `<name>.rebuild` before it takes the store's name.
DAMAGED_SUFFIX = ".damaged-"
REBUILD_SUFFIX = ".rebuild"
# A rebuild reads a copy of the damaged file, its header's fixed fields restored.
SALVAGE_SUFFIX = ".salvage"

_CORRUPTION_CODES = frozenset({sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB})
# What reading a database can raise: Python's sqlite3 raises UnicodeDecodeError for an error
# message that quotes damaged schema text.
DB_ERRORS = (sqlite3.Error, UnicodeDecodeError)


def is_corruption(exc: BaseException) -> bool:
    """Whether an error of SQLite's says the database is damaged."""
    if isinstance(exc, UnicodeDecodeError):
        return True  # only damage puts text that is not UTF-8 into SQLite's messages
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None and (code & 0xFF) in _CORRUPTION_CODES:
        return True
    # A damaged schema format number in the header (octets 44-47): SQLite reports a generic
    # error, but this store only ever writes formats it reads.
    return "unsupported file format" in str(exc)


def configure(conn: sqlite3.Connection, path: Path) -> None:
    """WAL mode and full syncs: a committed change survives power loss."""
    mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
    if mode != "wal":
        raise JobStoreError(f"{path}: expected journal mode wal, got {mode}")
    conn.execute("PRAGMA synchronous=FULL")


def integrity_problems(conn: sqlite3.Connection) -> list[str]:
    """What SQLite's integrity check finds (structure, indexes, constraints); [] when sound."""
    problems = [str(row[0]) for row in conn.execute("PRAGMA integrity_check(20)").fetchall()]
    return [] if problems == ["ok"] else problems


def refuse_links(path: Path) -> None:
    """JobStoreError when the database file, or its WAL or shared-memory file, is a symbolic
    link or a special file: SQLite would follow a link out of the state directory (and block
    on a FIFO). The store never makes one."""
    for file in database_files(path):
        try:
            mode = os.lstat(file).st_mode
        except FileNotFoundError:
            continue
        if not stat.S_ISREG(mode):
            what = (
                "a symbolic link" if stat.S_ISLNK(mode) else f"not a file ({stat.filemode(mode)})"
            )
            raise JobStoreError(
                f"database file {file} is {what}: not opened (the store never makes one), remove it"
            )


def connect(path: Path) -> sqlite3.Connection:
    """A connection to the store file at `path` (not configured yet)."""
    refuse_links(path)
    try:
        # isolation_level=None: transactions are begun and committed explicitly.
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    except sqlite3.Error as exc:
        raise JobStoreError(f"cannot open job store {path}: {exc}") from exc
    conn.text_factory = _text
    return conn


def database_files(path: Path) -> list[Path]:
    """The database file and its WAL and shared-memory files."""
    return [path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")]


def remove_database(path: Path) -> None:
    """Remove a database file and its WAL and shared-memory files, where they exist."""
    for file in database_files(path):
        file.unlink(missing_ok=True)


def _text(data: bytes) -> str:
    # Damage may leave text that is not UTF-8: read it anyway, for the checksums to refuse.
    return data.decode("utf-8", "surrogateescape")


@contextlib.contextmanager
def writing(conn: sqlite3.Connection) -> Iterator[None]:
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
