"""The ground's telemetry archive: every packet received, raw and decoded, in SQLite.

Packets arrive on the receiving thread and are written in batches (one transaction per
`COMMIT_INTERVAL_S` or `COMMIT_PACKETS`), so archiving never slows the link; a flusher thread
commits a batch that the link left open once it is `COMMIT_INTERVAL_S` old, so other readers
(another `groundsw` on the same data directory) never wait on it; queries from the main thread
flush first, so they see everything received.

A packet is stored once however often it arrives (live, then retrieved from the payload's
packet store): the archive knows it by a digest of its octets. The schema and its migrations
(an archive made by an earlier groundsw is brought up to date when opened) are in
`archive_schema`; the value objects read back in `archive_records`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Collection, Iterable
from pathlib import Path
from typing import Any, Protocol, TypeVar

from groundsw import archive_gaps
from groundsw.archive_records import (
    CommandHistory,
    CommandStage,
    EventRecord,
    FrameRecord,
    PacketRecord,
    Sample,
)
from groundsw.archive_schema import SchemaError, packet_digest, prepare
from groundsw.gaps import Gap, GapState, PacketMark
from spacelink.icd import TM_VCID_IDLE
from spacelink.spacepacket import PusTc, PusTm
from spacelink.tmframe import TmFrame
from telemetry_defs.model import CodecError, DecodedTm, Dictionary, TmKind, UnknownName

__all__ = [
    "ARCHIVE_FILE",
    "Archive",
    "ArchiveError",
    "ArchiveStore",
    "CommandHistory",
    "CommandStage",
    "EventRecord",
    "FrameRecord",
    "PacketRecord",
    "Sample",
    "open_archive",
]

log = logging.getLogger(__name__)

_T = TypeVar("_T")

ARCHIVE_FILE = "archive.sqlite"
# How long a second process waits for the archive's write lock before giving up.
BUSY_TIMEOUT_S = 10.0
COMMIT_INTERVAL_S = 0.5
COMMIT_PACKETS = 200


class ArchiveError(Exception):
    """The archive cannot be opened or written; one sentence."""


def _json_value(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, list):
        return [_json_value(v) for v in value]
    if isinstance(value, dict):
        return {k: _json_value(v) for k, v in value.items()}
    return value


class ArchiveStore(Protocol):
    """What the ground keeps of a payload: every packet and command, and the queries the
    operators' tools make. `Archive` keeps it in SQLite on this machine; a server database
    serving a fleet would be another implementation of the same methods."""

    def store(self, tm: PusTm, raw: bytes, received_at: float, vcid: int | None = None) -> None: ...

    def store_frame(self, frame: TmFrame, received_at: float) -> None: ...

    def record_command(
        self, at: float, client: str, tc: PusTc, name: str, arguments: str, outcome: str
    ) -> int: ...

    def record_stage(
        self, command_id: int, at: float, stage: str, detail: str, outcome: str | None = None
    ) -> None: ...

    def flush(self) -> None: ...

    def close(self) -> None: ...

    def parameter_samples(
        self, name: str, since: float | None = None, until: float | None = None
    ) -> list[Sample]: ...

    def events(self, since: float | None = None, min_severity: int = 1) -> list[EventRecord]: ...

    def events_after(self, event_id: int) -> list[EventRecord]: ...

    def last_event_id(self) -> int: ...

    def commands(self, since: float | None = None, limit: int = 0) -> list[CommandHistory]: ...

    def packets(
        self, since: float | None = None, service: int | None = None, subtype: int | None = None
    ) -> list[PacketRecord]: ...

    def packet_marks(self, apid: int, start: float, end: float) -> list[PacketMark]: ...

    def last_live_marks(self, apids: Iterable[int]) -> list[PacketMark]: ...

    def add_gap(self, gap: Gap) -> Gap: ...

    def update_gap(self, gap: Gap) -> None: ...

    def gaps(self, states: Collection[GapState] | None = None) -> list[Gap]: ...


def open_archive(data_dir: Path, dictionary: Dictionary) -> Archive:
    """The archive of one payload in its data directory (SQLite); ArchiveError if unusable."""
    return Archive(data_dir, dictionary)


class Archive:
    """The SQLite archive in a ground data directory (an `ArchiveStore`)."""

    def __init__(self, data_dir: Path, dictionary: Dictionary) -> None:
        self.dictionary = dictionary
        self.path = data_dir / ARCHIVE_FILE
        try:
            data_dir.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, check_same_thread=False, timeout=BUSY_TIMEOUT_S)
            self._db.execute("PRAGMA journal_mode=WAL")
            prepare(self._db)
            wanted = f"{dictionary.hash32:08X}"
            row = self._db.execute("SELECT value FROM meta WHERE key = 'dictionary_hash'")
            if row.fetchone() != (wanted,):
                self._db.execute(
                    "INSERT OR REPLACE INTO meta VALUES ('dictionary_hash', ?)", (wanted,)
                )
            self._db.commit()
        except (OSError, sqlite3.Error, SchemaError) as exc:
            raise ArchiveError(f"cannot use the archive {self.path}: {exc}") from None
        self._lock = threading.Lock()
        self._uncommitted = 0
        self._last_commit = time.monotonic()
        # Packets the archive failed to store (logged; the link goes on regardless).
        self.write_errors = 0
        self._closed = threading.Event()
        self._flusher = threading.Thread(target=self._flush_loop, name="archive", daemon=True)
        self._flusher.start()

    def _flush_loop(self) -> None:
        while not self._closed.wait(COMMIT_INTERVAL_S / 2):
            with self._lock:
                if (
                    self._uncommitted
                    and time.monotonic() - self._last_commit >= COMMIT_INTERVAL_S
                    and not self._closed.is_set()
                ):
                    try:
                        self._commit()
                    except ArchiveError as exc:
                        log.error("%s", exc)

    def __enter__(self) -> Archive:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        self._flusher.join(2.0)
        with self._lock:
            try:
                self._commit()
            finally:
                self._db.close()

    def flush(self) -> None:
        with self._lock:
            self._commit()

    def _commit(self) -> None:
        try:
            self._db.commit()
        except sqlite3.Error as exc:
            raise ArchiveError(f"cannot write the archive {self.path}: {exc}") from None
        self._uncommitted = 0
        self._last_commit = time.monotonic()

    # -- writing --------------------------------------------------------------------------------

    def store(self, tm: PusTm, raw: bytes, received_at: float, vcid: int | None = None) -> None:
        """Archive one packet (called on the receiving thread) unless it is archived already
        (the same octets): `vcid`, the virtual channel it came on, when the caller knows it."""
        onboard = tm.time.to_unix()
        name = decoded_json = error = None
        try:
            decoded = self.dictionary.decode_tm(tm.service, tm.subtype, tm.source_data)
        except (CodecError, UnknownName) as exc:
            decoded = None
            error = str(exc)
        if decoded is not None:
            name = decoded.name
            decoded_json = json.dumps(_json_value(decoded.values))
        with self._lock:
            try:
                self._insert(
                    tm, raw, vcid, received_at, onboard, name, decoded, decoded_json, error
                )
            except (sqlite3.Error, ArchiveError) as exc:
                # The archive must never stop the link: the packet is lost to the archive only.
                self.write_errors += 1
                log.error("packet not archived in %s: %s", self.path, exc)

    def _insert(
        self,
        tm: PusTm,
        raw: bytes,
        vcid: int | None,
        received_at: float,
        onboard: float,
        name: str | None,
        decoded: DecodedTm | None,
        decoded_json: str | None,
        error: str | None,
    ) -> None:
        cursor = self._db.execute(
            "INSERT INTO packets (received_at, onboard_time, apid, service, subtype,"
            " seq_count, destination_id, name, decoded, error, raw, digest, vcid)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (digest) DO NOTHING",
            (
                received_at,
                onboard,
                tm.apid,
                tm.service,
                tm.subtype,
                tm.seq_count,
                tm.destination_id,
                name,
                decoded_json,
                error,
                raw,
                packet_digest(raw),
                vcid,
            ),
        )
        if cursor.rowcount == 0:
            return  # archived already: received before, live or retrieved
        packet_id = cursor.lastrowid
        if decoded is not None:
            rows = []
            for pname, value in decoded.parameters.items():
                parameter = self.dictionary.parameters[pname]
                eng = parameter.engineering(value)
                rows.append(
                    (
                        packet_id,
                        received_at,
                        onboard,
                        pname,
                        json.dumps(_json_value(value)),
                        float(eng) if isinstance(eng, int | float) else None,
                        parameter.limit_state(value).value,
                    )
                )
            self._db.executemany("INSERT INTO samples VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
            if decoded.kind is TmKind.EVENT and decoded.severity is not None:
                self._db.execute(
                    "INSERT INTO events (packet_id, received_at, onboard_time, name,"
                    " severity, text) VALUES (?, ?, ?, ?, ?, ?)",
                    (
                        packet_id,
                        received_at,
                        onboard,
                        decoded.name,
                        int(decoded.severity),
                        self.dictionary.describe_values(decoded),
                    ),
                )
        self._uncommitted += 1
        if (
            self._uncommitted >= COMMIT_PACKETS
            or time.monotonic() - self._last_commit >= COMMIT_INTERVAL_S
        ):
            self._commit()

    def store_frame(self, frame: TmFrame, received_at: float) -> None:
        """Archive one TM frame (called on the receiving thread): its counters and CLCW, and
        its octets unless it is an idle frame (a CLCW a second adds nothing else)."""
        raw = None if frame.vcid == TM_VCID_IDLE else frame.pack()
        with self._lock:
            try:
                self._db.execute(
                    "INSERT INTO frames (received_at, vcid, mc_count, vc_count, clcw, raw)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (received_at, frame.vcid, frame.mc_count, frame.vc_count, frame.ocf, raw),
                )
                self._uncommitted += 1
            except sqlite3.Error as exc:
                self.write_errors += 1
                log.error("frame not archived in %s: %s", self.path, exc)

    def frames(self, since: float | None = None) -> list[FrameRecord]:
        rows = self._query(
            "SELECT received_at, vcid, mc_count, vc_count, clcw, raw FROM frames"
            " WHERE received_at >= ? ORDER BY id",
            (since or 0.0,),
        )
        return [FrameRecord(*r) for r in rows]

    def record_command(
        self,
        at: float,
        client: str,
        tc: PusTc,
        name: str,
        arguments: str,
        outcome: str,
    ) -> int:
        """Archive a command a client submitted; its row ID, for its stages."""
        with self._lock:
            try:
                cursor = self._db.execute(
                    "INSERT INTO commands (submitted_at, client, source_id, apid, seq_count,"
                    " service, subtype, name, arguments, outcome)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        at,
                        client,
                        tc.source_id,
                        tc.apid,
                        tc.seq_count,
                        tc.service,
                        tc.subtype,
                        name,
                        arguments,
                        outcome,
                    ),
                )
                self._uncommitted += 1
            except sqlite3.Error as exc:
                raise ArchiveError(f"cannot write the archive {self.path}: {exc}") from None
            return int(cursor.lastrowid or 0)

    def record_stage(
        self, command_id: int, at: float, stage: str, detail: str, outcome: str | None = None
    ) -> None:
        """Archive one stage of a command (and its outcome so far, when it changes)."""
        with self._lock:
            try:
                self._db.execute(
                    "INSERT INTO command_stages VALUES (?, ?, ?, ?)",
                    (command_id, at, stage, detail),
                )
                if outcome is not None:
                    self._db.execute(
                        "UPDATE commands SET outcome = ? WHERE id = ?", (outcome, command_id)
                    )
                self._uncommitted += 1
            except sqlite3.Error as exc:
                log.error("command stage not archived in %s: %s", self.path, exc)
                self.write_errors += 1

    # -- reading --------------------------------------------------------------------------------

    def _query(self, sql: str, args: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        return self._read(lambda db: list(db.execute(sql, args)))

    def parameter_samples(
        self, name: str, since: float | None = None, until: float | None = None
    ) -> list[Sample]:
        parameter = self.dictionary.parameter(name)
        rows = self._query(
            "SELECT received_at, onboard_time, raw, engineering, limit_state FROM samples"
            " WHERE name = ? AND received_at >= ? AND received_at <= ? ORDER BY received_at",
            (parameter.name, since or 0.0, until or float("inf")),
        )
        return [Sample(r[0], r[1], json.loads(r[2]), r[3], r[4]) for r in rows]

    def events(self, since: float | None = None, min_severity: int = 1) -> list[EventRecord]:
        rows = self._query(
            "SELECT id, received_at, onboard_time, name, severity, text FROM events"
            " WHERE received_at >= ? AND severity >= ? ORDER BY id",
            (since or 0.0, min_severity),
        )
        return [EventRecord(*r) for r in rows]

    def events_after(self, event_id: int) -> list[EventRecord]:
        rows = self._query(
            "SELECT id, received_at, onboard_time, name, severity, text FROM events"
            " WHERE id > ? ORDER BY id",
            (event_id,),
        )
        return [EventRecord(*r) for r in rows]

    def last_event_id(self) -> int:
        rows = self._query("SELECT COALESCE(MAX(id), 0) FROM events", ())
        return int(rows[0][0])

    def commands(self, since: float | None = None, limit: int = 0) -> list[CommandHistory]:
        """Commands submitted since `since` (the last `limit` when above 0), oldest first, each
        with its stages."""
        rows = self._query(
            "SELECT id, submitted_at, client, source_id, apid, seq_count, name, arguments,"
            " outcome FROM commands WHERE submitted_at >= ? ORDER BY id DESC LIMIT ?",
            (since or 0.0, limit if limit > 0 else -1),
        )
        rows.reverse()
        stages: dict[int, list[CommandStage]] = {r[0]: [] for r in rows}
        if rows:
            for command_id, at, stage, detail in self._query(
                "SELECT command_id, at, stage, detail FROM command_stages WHERE command_id >= ?"
                " ORDER BY rowid",
                (rows[0][0],),
            ):
                if command_id in stages:
                    stages[command_id].append(CommandStage(at, stage, detail))
        return [
            CommandHistory(
                id=r[0],
                submitted_at=r[1],
                client=r[2],
                source_id=r[3],
                request=f"APID {r[4]} seq {r[5]}",
                name=r[6],
                arguments=r[7],
                outcome=r[8],
                stages=tuple(stages[r[0]]),
            )
            for r in rows
        ]

    def packets(
        self, since: float | None = None, service: int | None = None, subtype: int | None = None
    ) -> list[PacketRecord]:
        rows = self._query(
            "SELECT id, received_at, service, subtype, name, decoded, error, raw, vcid"
            " FROM packets WHERE received_at >= ?"
            " AND (? IS NULL OR service = ?) AND (? IS NULL OR subtype = ?)"
            " ORDER BY id",
            (since or 0.0, service, service, subtype, subtype),
        )
        return [
            PacketRecord(
                r[0], r[1], r[2], r[3], r[4], json.loads(r[5]) if r[5] else None, r[6], r[7], r[8]
            )
            for r in rows
        ]

    # -- gaps -----------------------------------------------------------------------------------

    def packet_marks(self, apid: int, start: float, end: float) -> list[PacketMark]:
        """Every packet of `apid` held with an onboard time in [start, end]."""
        return self._read(lambda db: archive_gaps.select_marks(db, apid, start, end))

    def last_live_marks(self, apids: Iterable[int]) -> list[PacketMark]:
        """The last packet of each of `apids` received in real time."""
        return self._read(lambda db: archive_gaps.select_last_live(db, apids))

    def add_gap(self, gap: Gap) -> Gap:
        """Record a gap found (committed at once: a restarted station resumes it); it with
        its ID."""
        gap_id = self._write(lambda db: archive_gaps.insert_gap(db, gap))
        return dataclasses.replace(gap, id=gap_id)

    def update_gap(self, gap: Gap) -> None:
        """Record a gap's new state (committed at once)."""
        self._write(lambda db: archive_gaps.update_gap(db, gap))

    def gaps(self, states: Collection[GapState] | None = None) -> list[Gap]:
        """The gaps found, oldest first; only those in `states` when given."""
        return self._read(lambda db: archive_gaps.select_gaps(db, states))

    def _read(self, query: Callable[[sqlite3.Connection], _T]) -> _T:
        with self._lock:
            self._commit()
            try:
                return query(self._db)
            except sqlite3.Error as exc:
                raise ArchiveError(f"cannot read the archive {self.path}: {exc}") from None

    def _write(self, change: Callable[[sqlite3.Connection], _T]) -> _T:
        with self._lock:
            try:
                result = change(self._db)
            except sqlite3.Error as exc:
                raise ArchiveError(f"cannot write the archive {self.path}: {exc}") from None
            self._commit()
            return result
