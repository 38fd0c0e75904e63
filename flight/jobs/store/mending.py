"""Checks of the whole store (SQLite's integrity check and every record) and the mending of
what they find: records repaired, indexes rebuilt in place, or the file rebuilt from what can
still be read, the damaged file kept beside it."""

from __future__ import annotations

import builtins
import contextlib
import dataclasses
import logging
import os
import shutil
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from flight.durable import fsync_directory
from flight.jobs.store.errors import JobStoreError, StoreCorrupt
from flight.jobs.store.record import FIELDS, check_salvaged, dump, stored
from flight.jobs.store.record_access import RecordAccess
from flight.jobs.store.salvage import (
    Salvage,
    read_damaged,
    restore_header,
    restore_schema,
    restore_schema_page,
)
from flight.jobs.store.schema import (
    INSERT_SQL,
    MARK_OPEN_SQL,
    SCHEMA,
    SELECT_SQL,
    schema_problems,
)
from flight.jobs.store.sqlite_file import (
    DAMAGED_SUFFIX,
    DB_ERRORS,
    REBUILD_SUFFIX,
    SALVAGE_SUFFIX,
    configure,
    connect,
    database_files,
    integrity_problems,
    is_corruption,
    refuse_links,
    remove_database,
    writing,
)
from flight.protection.upsets import Outcome

log = logging.getLogger(__name__)

# Records read per query when every record is checked: repairs are written between batches.
SWEEP_BATCH = 500


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


def plus(a: StoreCheck, b: StoreCheck) -> StoreCheck:
    """Two checks' findings together."""
    return StoreCheck(
        a.records + b.records,
        a.repaired + b.repaired,
        a.set_aside + b.set_aside,
        a.indexes_rebuilt or b.indexes_rebuilt,
        a.rebuilt or b.rebuilt,
        a.lost + b.lost,
    )


class StoreMending(RecordAccess):
    """The checks of a store file and the mending of the damage they find."""

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
                        totals = plus(totals, batch)
        finally:
            with self._locked():
                self._report_sweep(totals)
        if problems:
            with self._locked():
                # The mend checks every record again: count those it checks once.
                return plus(dataclasses.replace(totals, records=0), self._mend(problems))
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
        refuse_links(self._path)
        try:
            conn = sqlite3.connect(f"file:{self._path}?mode=rw", uri=True)
        except sqlite3.Error as exc:
            raise FileNotFoundError(self._path) from exc
        try:
            return integrity_problems(conn) or schema_problems(conn)
        except DB_ERRORS as exc:
            if is_corruption(exc):
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
                totals = plus(totals, batch)
        finally:
            self._report_sweep(totals)
        return totals

    def _check_batch(self, after: int) -> tuple[StoreCheck, int | None]:
        """Check the next batch of records after id `after`; the last id, None at the end."""
        conn = self._conn
        rows = conn.execute(
            f"{SELECT_SQL} WHERE job_id > ? ORDER BY job_id LIMIT ?", (after, SWEEP_BATCH)
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
            schema = schema_problems(conn)
        except DB_ERRORS as exc:
            schema = [str(exc)]
        if schema:
            return self._rebuild(schema)  # the copy read for the rebuild gets the schema back
        try:
            # Indexes first: a record restored while its index entries disagree with it would
            # leave the index worse.
            with writing(conn):
                conn.execute("REINDEX")
            columns = {row[1] for row in conn.execute("PRAGMA table_info(jobs)")}
            # The records of an older schema (version 1: no checksums) are checked by the
            # migration that follows, as their version stored them.
            if {*FIELDS, "crc", "copy"} <= columns:
                swept = self._sweep()
            remaining = self._file_problems()
        except DB_ERRORS as exc:
            if not is_corruption(exc):
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
        remove_database(rebuild)
        try:
            kept, repaired = self._write_rebuilt(rebuild, salvage)
            aside = self._aside_name()
            for source, target in zip(
                database_files(self._path), database_files(aside), strict=True
            ):
                if source.exists():
                    os.replace(source, target)
            os.replace(rebuild, self._path)
            fsync_directory(self._path.parent)
        except (OSError, sqlite3.Error) as exc:
            raise JobStoreError(f"{self._path}: cannot rebuild the damaged store: {exc}") from exc
        self._conn = connect(self._path)
        configure(self._conn, self._path)
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

    def _salvage_copy(self) -> Salvage:
        """What a copy of the damaged file, its header restored, still holds (the disk's
        content, not the old connection's cache; the damaged file is kept as it is)."""
        scratch = self._path.with_name(self._path.name + SALVAGE_SUFFIX)
        remove_database(scratch)
        refuse_links(self._path)  # the copy would read what a link names into the store
        try:
            for source, target in zip(
                database_files(self._path)[:2], database_files(scratch)[:2], strict=True
            ):
                if source.exists():
                    shutil.copyfile(source, target)
            restore_header(scratch)
            restore_schema(scratch)
            restore_schema_page(scratch)
            reader = connect(scratch)
            try:
                return read_damaged(reader)
            finally:
                reader.close()
        except OSError as exc:
            raise JobStoreError(f"{self._path}: cannot read the damaged store: {exc}") from exc
        finally:
            remove_database(scratch)

    def _write_rebuilt(self, path: Path, salvage: Salvage) -> tuple[set[int], int]:
        """A new store file of the salvaged records; the ids kept and how many were repaired."""
        conn = connect(path)
        kept: set[int] = set()
        repaired = 0
        try:
            # Rollback journal: the file is complete on its own when committed, so that the
            # rename makes it the store (which then switches to WAL).
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("BEGIN IMMEDIATE")
            for statement in SCHEMA:
                conn.execute(statement)
            for row in salvage.rows:
                verdict = check_salvaged(row, salvage.checksummed)
                values = verdict.values
                if values is not None and values[0] not in kept:
                    try:
                        conn.execute(INSERT_SQL, stored(values))
                    except sqlite3.IntegrityError:
                        pass  # a field outside its column's range: beyond repair
                    else:
                        kept.add(values[0])
                        repaired += bool(verdict.repaired)
                        continue
                conn.execute(
                    "INSERT OR REPLACE INTO damaged_jobs (job_id, found_at, record) "
                    "VALUES (?, ?, ?)",
                    (int(row[0]), float(self._clock()), dump(row)),
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
            if salvage.is_open is not None:
                # Kept: whether the process before this one closed the store (recover).
                conn.execute(MARK_OPEN_SQL, (salvage.is_open,))
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
        remove_database(self._path.with_name(self._path.name + SALVAGE_SUFFIX))
        rebuild = self._path.with_name(self._path.name + REBUILD_SUFFIX)
        if not rebuild.exists():
            return
        try:
            if self._path.exists():
                remove_database(rebuild)
            else:
                os.replace(rebuild, self._path)
                log.warning("job store %s: interrupted rebuild completed", self._path)
            fsync_directory(self._path.parent)
        except OSError as exc:
            raise JobStoreError(f"{self._path}: cannot complete a rebuild: {exc}") from exc
