"""The archive's gap table and the packet queries gap finding needs (SQL over one connection;
`Archive` holds the lock and commits)."""

from __future__ import annotations

import sqlite3
from collections.abc import Collection, Iterable

from groundsw.gaps import Gap, GapState, PacketMark

STARTED_EVENT = "PAYLOAD_STARTED"
_VC_REALTIME = 0

_GAP_COLUMNS = (
    "apid, first_missing, missing, next_seq, start_time, end_time, state, attempts, reason,"
    " created_at, updated_at"
)


def _values(gap: Gap) -> tuple[object, ...]:
    return (
        gap.apid,
        gap.first_missing,
        gap.missing,
        gap.next_seq,
        gap.start_time,
        gap.end_time,
        str(gap.state),
        gap.attempts,
        gap.reason,
        gap.created_at,
        gap.updated_at,
    )


def insert_gap(db: sqlite3.Connection, gap: Gap) -> int:
    cursor = db.execute(
        f"INSERT INTO gaps ({_GAP_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        _values(gap),
    )
    return int(cursor.lastrowid or 0)


def update_gap(db: sqlite3.Connection, gap: Gap) -> None:
    assignments = ", ".join(f"{c.strip()} = ?" for c in _GAP_COLUMNS.split(","))
    db.execute(f"UPDATE gaps SET {assignments} WHERE id = ?", (*_values(gap), gap.id))


def select_gaps(db: sqlite3.Connection, states: Collection[GapState] | None) -> list[Gap]:
    sql = f"SELECT id, {_GAP_COLUMNS} FROM gaps"
    args: tuple[str, ...] = ()
    if states is not None:
        args = tuple(str(s) for s in states)
        sql += f" WHERE state IN ({', '.join('?' * len(args))})"
    return [
        Gap(
            id=r[0],
            apid=r[1],
            first_missing=r[2],
            missing=r[3],
            next_seq=r[4],
            start_time=r[5],
            end_time=r[6],
            state=GapState(r[7]),
            attempts=r[8],
            reason=r[9],
            created_at=r[10],
            updated_at=r[11],
        )
        for r in db.execute(sql + " ORDER BY id", args)
    ]


def select_marks(db: sqlite3.Connection, apid: int, start: float, end: float) -> list[PacketMark]:
    """Every packet of `apid` held with an onboard time in [start, end], however it came."""
    return [
        PacketMark(apid, seq, onboard, name == STARTED_EVENT)
        for seq, onboard, name in db.execute(
            "SELECT seq_count, onboard_time, name FROM packets"
            " WHERE apid = ? AND onboard_time BETWEEN ? AND ?",
            (apid, start, end),
        )
    ]


def select_last_live(db: sqlite3.Connection, apids: Iterable[int]) -> list[PacketMark]:
    """The last packet of each of `apids` received in real time (or on an unknown channel:
    archived before channels were)."""
    marks = []
    for apid in apids:
        row = db.execute(
            "SELECT seq_count, onboard_time, name FROM packets NOT INDEXED WHERE apid = ?"
            " AND (vcid IS NULL OR vcid = ?) AND onboard_time IS NOT NULL"
            " ORDER BY id DESC LIMIT 1",
            (apid, _VC_REALTIME),
        ).fetchone()
        if row is not None:
            marks.append(PacketMark(apid, row[0], row[1], row[2] == STARTED_EVENT))
    return marks
