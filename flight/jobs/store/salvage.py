"""Reading what a damaged store file still holds: its header and schema restored on a copy,
then every row that can be read, by ranges of ids around the damage."""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import struct
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flight.jobs.store.job import MAX_JOB_ID, JobState
from flight.jobs.store.record import FIELDS, LAYOUT_2
from flight.jobs.store.schema import READ_OPEN_SQL, SCHEMA
from flight.jobs.store.sqlite_file import DB_ERRORS

log = logging.getLogger(__name__)

# Reads a rebuild may spend looking for readable rows between damaged pages.
SALVAGE_PROBES = 200_000


@dataclass(slots=True)
class Salvage:
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
    # The store's mark of an open store (schema.READ_OPEN_SQL); None when it cannot be read.
    is_open: int | None = None


_SQLITE_MAGIC = b"SQLite format 3\x00"
# The header fields every store file has (file format 2: WAL; payload fractions 64/32/32;
# schema format 4; UTF-8), and where the page count is.
_FIXED_HEADER = ((0, _SQLITE_MAGIC), (18, b"\x02\x02\x00\x40\x20\x20"), (44, b"\x00\x00\x00\x04"),
                 (56, b"\x00\x00\x00\x01"))  # fmt: skip
_PAGE_COUNT = struct.Struct(">I")
_PAGE_COUNT_OFFSET = 28


def restore_header(path: Path) -> None:
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
        for statement in SCHEMA:
            conn.execute(statement)
        rows = conn.execute("SELECT name, type, tbl_name, sql FROM sqlite_master").fetchall()
    finally:
        conn.close()
    return {name: (kind, table, sql) for name, kind, table, sql in rows}


def _bits_apart(a: bytes, b: bytes) -> int:
    if len(a) != len(b):
        return 8 * max(len(a), len(b))
    return sum((x ^ y).bit_count() for x, y in zip(a, b, strict=True))


def restore_schema(path: Path) -> None:
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
    except DB_ERRORS:
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
    except DB_ERRORS:
        return None
    finally:
        conn.close()


def restore_schema_page(path: Path) -> None:
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
                for statement in SCHEMA:
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
    except DB_ERRORS:
        return 0
    value = None if row is None else row[0]
    return value if type(value) is int and 0 <= value <= MAX_JOB_ID else 0


def read_damaged(conn: sqlite3.Connection) -> Salvage:
    """Every row of a damaged file that can still be read, by ranges of ids around the damage."""
    found = Salvage()
    try:
        columns = {str(row[1]) for row in conn.execute("PRAGMA table_info(jobs)")}
    except DB_ERRORS:
        return found
    # A file of an older version (its schema not rewritten as this version's) lacks fields.
    fields = next((f for f in (FIELDS, LAYOUT_2.fields) if set(f) <= columns), None)
    if fields is None:
        return found
    found.checksummed = {"crc", "copy"} <= columns
    select = f"SELECT {', '.join(fields)}{', crc, copy' if found.checksummed else ''} FROM jobs"
    found.sequence = _scalar(conn, "SELECT seq FROM sqlite_sequence WHERE name = 'jobs'")
    for index, where, order in _ID_SCANS:
        complete = _index_ids(conn, index, where, order, found.known_ids)
        found.complete |= complete and index == "jobs_by_state"
    try:
        found.rows = conn.execute(f"{select} ORDER BY job_id").fetchall()
        found.complete = True
    except DB_ERRORS:
        high = max(found.sequence, _scalar(conn, "SELECT max(job_id) FROM jobs"),
                   max(found.known_ids, default=0))  # fmt: skip
        found.rows = _rows_between(conn, select, 1, high, found.unreadable)
    found.known_ids.update(row[0] for row in found.rows)
    with contextlib.suppress(*DB_ERRORS):
        found.damaged = conn.execute("SELECT job_id, found_at, record FROM damaged_jobs").fetchall()
    with contextlib.suppress(*DB_ERRORS):
        row = conn.execute(READ_OPEN_SQL).fetchone()
        # Read through a schema page put back by restore_schema_page, the table's root may
        # be another's page: only a value the mark can have is taken.
        found.is_open = row[0] if row is not None and row[0] in (0, 1) else None
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
        except DB_ERRORS:
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
        except DB_ERRORS:
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
