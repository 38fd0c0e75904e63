"""The archive stores a packet once however often it comes (live, then retrieved from the
payload's packet store), records its virtual channel, keeps the gaps found, and brings an
archive made by an earlier groundsw up to date when it opens it."""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from groundsw.archive import ARCHIVE_FILE, Archive, ArchiveError
from groundsw.archive_schema import BASE_SCHEMA, SCHEMA_VERSION, packet_digest
from groundsw.gaps import Gap, GapState, PacketMark
from spacelink.cdstime import CdsTime
from spacelink.spacepacket import PusTm
from telemetry_defs.loader import default_dictionary

D = default_dictionary()
STATUS = D.housekeeping["PAYLOAD_STATUS"]
ONBOARD = 1_795_600_800.25


def hk(seq: int, onboard: float = ONBOARD, uptime: int = 1) -> PusTm:
    fields: dict[str, Any] = {p.name: 0 for p in STATUS.parameters}
    fields["UPTIME"] = uptime
    data = D.encode_housekeeping(STATUS.sid, fields)
    return PusTm(D.apid, 3, 25, data, seq_count=seq, time=CdsTime.from_unix(onboard))


def started(seq: int, onboard: float) -> PusTm:
    severity, data = D.encode_event(
        "PAYLOAD_STARTED",
        {"boot_count": 2, "dictionary_hash": 1, "reset_reason": 5, "board_uptime": 60,
         "previous": ""},
    )  # fmt: skip
    return PusTm(D.apid, 5, int(severity), data, seq_count=seq, time=CdsTime.from_unix(onboard))


@pytest.fixture
def archive(tmp_path: Path) -> Any:
    with Archive(tmp_path, D) as a:
        yield a


def test_a_packet_received_live_then_retrieved_is_stored_once(archive: Archive) -> None:
    live, retrieved_twice = hk(1, uptime=5), hk(2, uptime=6)
    archive.store(live, live.pack(), 100.0, 0)
    archive.store(live, live.pack(), 200.0, 1)  # retrieved from the packet store
    archive.store(retrieved_twice, retrieved_twice.pack(), 201.0, 1)
    archive.store(retrieved_twice, retrieved_twice.pack(), 300.0, 1)

    records = archive.packets()
    assert [(r.raw, r.received_at, r.vcid) for r in records] == [
        (live.pack(), 100.0, 0),  # as first received: live
        (retrieved_twice.pack(), 201.0, 1),
    ]
    # Its samples and events once too.
    assert [s.raw for s in archive.parameter_samples("UPTIME")] == [5, 6]
    event = started(3, ONBOARD)
    for when in (1.0, 2.0):
        archive.store(event, event.pack(), when, 0)
    assert len(archive.events()) == 1


def test_without_a_channel_a_packet_is_stored_with_none(archive: Archive) -> None:
    tm = hk(1)
    archive.store(tm, tm.pack(), 1.0)
    (record,) = archive.packets()
    assert record.vcid is None


def test_packets_differing_in_any_octet_are_different_packets(archive: Archive) -> None:
    for tm in (hk(1), hk(2), hk(1, onboard=ONBOARD + 0.001), hk(1, uptime=2)):
        archive.store(tm, tm.pack(), 1.0, 0)
    assert len(archive.packets()) == 4


def test_gaps_are_kept_updated_and_found_again_after_a_reopen(tmp_path: Path) -> None:
    gap = Gap(D.apid, 11, 3, 14, ONBOARD, ONBOARD + 4, created_at=50.0, updated_at=50.0)
    restart = Gap(D.apid, 501, None, 0, ONBOARD + 10, ONBOARD + 40, created_at=60.0)
    with Archive(tmp_path, D) as archive:
        kept = archive.add_gap(gap)
        second = archive.add_gap(restart)
        assert kept.id is not None and second.id == kept.id + 1
        archive.update_gap(replace(kept, state=GapState.UNRECOVERABLE, attempts=3, reason="x"))
    with Archive(tmp_path, D) as reopened:
        first, restarted = reopened.gaps()
        assert (first.state, first.attempts, first.reason) == (GapState.UNRECOVERABLE, 3, "x")
        assert (first.first_missing, first.missing, first.next_seq) == (11, 3, 14)
        assert (first.start_time, first.end_time, first.created_at) == (ONBOARD, ONBOARD + 4, 50)
        assert restarted.missing is None and restarted.restart
        assert reopened.gaps([GapState.OPEN, GapState.RETRIEVING]) == [restarted]
        assert reopened.gaps([GapState.RECOVERED]) == []


def test_packet_marks_and_the_last_live_packet(archive: Archive) -> None:
    for seq, vcid in ((1, 0), (2, 0), (3, 1)):  # the last one came on VC 1
        tm = hk(seq, ONBOARD + seq)
        archive.store(tm, tm.pack(), 10.0 + seq, vcid)
    event = started(0, ONBOARD + 2.5)
    archive.store(event, event.pack(), 20.0, 0)
    assert sorted(archive.packet_marks(D.apid, ONBOARD + 2, ONBOARD + 3), key=str) == sorted(
        [
            PacketMark(D.apid, 2, ONBOARD + 2),
            PacketMark(D.apid, 0, ONBOARD + 2.5, started=True),
            PacketMark(D.apid, 3, ONBOARD + 3),
        ],
        key=str,
    )
    assert archive.last_live_marks([D.apid, 7]) == [
        PacketMark(D.apid, 0, ONBOARD + 2.5, started=True)
    ]


# -- an archive made before: schema version 0 ---------------------------------------------------


def old_archive(data_dir: Path, packets: list[tuple[PusTm, float]]) -> None:
    """An archive as groundsw made it before packets had a digest (schema version 0)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(data_dir / ARCHIVE_FILE)
    db.execute("PRAGMA journal_mode=WAL")
    db.executescript(BASE_SCHEMA)
    db.execute("INSERT INTO meta VALUES ('dictionary_hash', ?)", (f"{D.hash32:08X}",))
    for tm, received_at in packets:
        db.execute(
            "INSERT INTO packets (received_at, onboard_time, apid, service, subtype,"
            " seq_count, destination_id, name, decoded, error, raw)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (received_at, tm.time.to_unix(), tm.apid, tm.service, tm.subtype, tm.seq_count,
             tm.destination_id, "PAYLOAD_STATUS", "{}", None, tm.pack()),
        )  # fmt: skip
    db.commit()
    db.close()


def test_an_archive_made_before_is_brought_up_to_date_when_opened(tmp_path: Path) -> None:
    first, second = hk(1, ONBOARD + 1), hk(2, ONBOARD + 2)
    # The same packet twice in an old archive: kept (never deleted), one copy known by digest.
    old_archive(tmp_path, [(first, 10.0), (second, 11.0), (second, 12.0)])

    with Archive(tmp_path, D) as archive:
        records = archive.packets()
        assert [(r.raw, r.received_at, r.vcid) for r in records] == [
            (first.pack(), 10.0, None),
            (second.pack(), 11.0, None),
            (second.pack(), 12.0, None),
        ]
        # Packets received from now on are known against the old ones.
        archive.store(first, first.pack(), 20.0, 1)
        archive.store(second, second.pack(), 21.0, 1)
        third = hk(3, ONBOARD + 3)
        archive.store(third, third.pack(), 22.0, 0)
        assert [r.received_at for r in archive.packets()] == [10.0, 11.0, 12.0, 22.0]
        # The gaps table is there; the last live packet is the new one.
        assert archive.gaps() == []
        assert archive.last_live_marks([D.apid]) == [PacketMark(D.apid, 3, ONBOARD + 3)]

    with sqlite3.connect(tmp_path / ARCHIVE_FILE) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        digests = db.execute("SELECT digest FROM packets ORDER BY id").fetchall()
        assert digests == [
            (packet_digest(first.pack()),),
            (packet_digest(second.pack()),),
            (None,),
            (packet_digest(third.pack()),),
        ]
    # Opened again: nothing to do, nothing changed.
    with Archive(tmp_path, D) as again:
        assert len(again.packets()) == 4


def test_a_new_archive_has_the_current_schema(tmp_path: Path) -> None:
    Archive(tmp_path, D).close()
    with sqlite3.connect(tmp_path / ARCHIVE_FILE) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        indexes = {r[1] for r in db.execute("PRAGMA index_list(packets)")}
        assert {"packets_digest", "packets_apid_time"} <= indexes


def test_an_archive_from_a_later_groundsw_is_refused_in_one_sentence(tmp_path: Path) -> None:
    Archive(tmp_path, D).close()
    with sqlite3.connect(tmp_path / ARCHIVE_FILE) as db:
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(ArchiveError, match=r"made by a later groundsw") as caught:
        Archive(tmp_path, D)
    assert "\n" not in str(caught.value)
