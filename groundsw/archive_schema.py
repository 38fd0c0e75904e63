"""The archive's SQLite schema and its migrations: archives exist on operators' disks, so a
file made by an earlier groundsw is brought up to date when it is opened, in one transaction,
and every new file goes the same way from the first schema.

Schema versions (`PRAGMA user_version`):
0. packets, samples, events, frames, commands, command_stages.
1. packets.digest: a digest of the packet's octets, unique, so that a packet received twice
   (live and retrieved from the payload's packet store, or retrieved twice) is stored once;
   filled for the packets already there (a copy already archived twice keeps no digest).
   packets.vcid: the virtual channel it came on (0 real-time, 1 bulk: retrieved or file data;
   NULL: not known). An index on (apid, onboard_time). The gaps table.
"""

from __future__ import annotations

import hashlib
import logging
import sqlite3
from collections.abc import Callable

log = logging.getLogger(__name__)

DIGEST_OCTETS = 16
FILL_BATCH = 5000

BASE_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS packets (
    id INTEGER PRIMARY KEY,
    received_at REAL NOT NULL,
    onboard_time REAL,
    apid INTEGER NOT NULL,
    service INTEGER NOT NULL,
    subtype INTEGER NOT NULL,
    seq_count INTEGER NOT NULL,
    destination_id INTEGER NOT NULL,
    name TEXT,
    decoded TEXT,
    error TEXT,
    raw BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS packets_time ON packets (received_at);
CREATE TABLE IF NOT EXISTS samples (
    packet_id INTEGER NOT NULL REFERENCES packets (id),
    received_at REAL NOT NULL,
    onboard_time REAL,
    name TEXT NOT NULL,
    raw TEXT NOT NULL,
    engineering REAL,
    limit_state TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS samples_name_time ON samples (name, received_at);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY,
    packet_id INTEGER NOT NULL REFERENCES packets (id),
    received_at REAL NOT NULL,
    onboard_time REAL,
    name TEXT NOT NULL,
    severity INTEGER NOT NULL,
    text TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_time ON events (received_at);
CREATE TABLE IF NOT EXISTS frames (
    id INTEGER PRIMARY KEY,
    received_at REAL NOT NULL,
    vcid INTEGER NOT NULL,
    mc_count INTEGER NOT NULL,
    vc_count INTEGER NOT NULL,
    clcw INTEGER NOT NULL,
    raw BLOB
);
CREATE INDEX IF NOT EXISTS frames_time ON frames (received_at);
CREATE TABLE IF NOT EXISTS commands (
    id INTEGER PRIMARY KEY,
    submitted_at REAL NOT NULL,
    client TEXT NOT NULL,
    source_id INTEGER NOT NULL,
    apid INTEGER NOT NULL,
    seq_count INTEGER NOT NULL,
    service INTEGER NOT NULL,
    subtype INTEGER NOT NULL,
    name TEXT NOT NULL,
    arguments TEXT NOT NULL,
    outcome TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS commands_time ON commands (submitted_at);
CREATE TABLE IF NOT EXISTS command_stages (
    command_id INTEGER NOT NULL REFERENCES commands (id),
    at REAL NOT NULL,
    stage TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS command_stages_command ON command_stages (command_id);
"""


class SchemaError(Exception):
    """The file's schema is not one this groundsw knows; one sentence."""


def packet_digest(raw: bytes) -> bytes:
    """What identifies a packet in the archive: the same octets, the same packet."""
    return hashlib.blake2b(raw, digest_size=DIGEST_OCTETS).digest()


def _columns(db: sqlite3.Connection, table: str) -> set[str]:
    return {row[1] for row in db.execute(f"PRAGMA table_info({table})")}


def _to_v1(db: sqlite3.Connection) -> None:
    have = _columns(db, "packets")
    if "digest" not in have:
        db.execute("ALTER TABLE packets ADD COLUMN digest BLOB")
    if "vcid" not in have:
        db.execute("ALTER TABLE packets ADD COLUMN vcid INTEGER")
    filled, last = 0, 0
    while True:
        rows = db.execute(
            "SELECT id, raw FROM packets WHERE id > ? AND digest IS NULL ORDER BY id LIMIT ?",
            (last, FILL_BATCH),
        ).fetchall()
        if not rows:
            break
        db.executemany(
            "UPDATE packets SET digest = ? WHERE id = ?",
            [(packet_digest(raw), packet_id) for packet_id, raw in rows],
        )
        last = rows[-1][0]
        filled += len(rows)
    if filled:
        log.info("archive: digests of %d packets archived before filled in", filled)
    # A packet archived twice before: the first copy keeps the digest, the others none (kept,
    # never deleted: the archive is the operators' record).
    db.execute(
        "UPDATE packets SET digest = NULL WHERE id IN (SELECT p.id FROM packets p JOIN"
        " (SELECT digest, MIN(id) AS first FROM packets WHERE digest IS NOT NULL"
        "  GROUP BY digest HAVING COUNT(*) > 1) d ON p.digest = d.digest AND p.id > d.first)"
    )
    db.execute("CREATE UNIQUE INDEX IF NOT EXISTS packets_digest ON packets (digest)")
    db.execute("CREATE INDEX IF NOT EXISTS packets_apid_time ON packets (apid, onboard_time)")
    db.execute(
        """CREATE TABLE IF NOT EXISTS gaps (
            id INTEGER PRIMARY KEY,
            apid INTEGER NOT NULL,
            first_missing INTEGER NOT NULL,
            missing INTEGER,
            next_seq INTEGER NOT NULL,
            start_time REAL NOT NULL,
            end_time REAL NOT NULL,
            state TEXT NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            reason TEXT,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL
        )"""
    )
    db.execute("CREATE INDEX IF NOT EXISTS gaps_state ON gaps (state)")


def _version(db: sqlite3.Connection) -> int:
    return int(db.execute("PRAGMA user_version").fetchone()[0])


# MIGRATIONS[n] takes a file at version n to n + 1.
MIGRATIONS: tuple[Callable[[sqlite3.Connection], None], ...] = (_to_v1,)
SCHEMA_VERSION = len(MIGRATIONS)


def prepare(db: sqlite3.Connection) -> None:
    """Create the archive's tables in `db`, or bring an earlier file's up to date (one
    transaction: another process opening the file meanwhile waits, then finds it done).
    SchemaError for a file a later groundsw made; sqlite3.Error as SQLite raises."""
    if _version(db) == SCHEMA_VERSION:
        return  # up to date: no write lock taken (a writer may hold it for a while)
    db.executescript(BASE_SCHEMA)
    db.execute("BEGIN IMMEDIATE")
    try:
        version = _version(db)
        if version > SCHEMA_VERSION:
            raise SchemaError(
                f"its schema is version {version}, made by a later groundsw (this one knows "
                f"up to {SCHEMA_VERSION}): use that groundsw"
            )
        for step in range(version, SCHEMA_VERSION):
            MIGRATIONS[step](db)
            log.debug("archive schema brought to version %d", step + 1)
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        db.commit()
    except BaseException:
        db.rollback()
        raise
