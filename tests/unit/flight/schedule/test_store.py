"""The schedule's store: what is committed is there for the next process (kill -9 between two
changes), each record's fields, copy and CRC voted so that one damaged part is repaired and a
record beyond repair is given up and reported, the execution function's state kept the same
way, and a file that is not a database set aside."""

from __future__ import annotations

from pathlib import Path

import pytest

from flight.protection.upsets import Outcome, UpsetLocation
from flight.schedule import Activity, ScheduleStore, ScheduleStoreError
from spacelink.pus_schedule import ScheduleRequestId
from spacelink.spacepacket import PusTc
from tests.upset_recorder import UpsetRecorder

NOW = 1_800_000_000_000


def activity(seq: int, at: int = NOW, order: int = 0) -> Activity:
    packet = PusTc(100, 17, 1, seq_count=seq, source_id=1).pack()
    return Activity(ScheduleRequestId(1, 100, seq), at, packet, order)


@pytest.fixture
def upsets() -> UpsetRecorder:
    return UpsetRecorder(UpsetLocation.SCHEDULE)


def test_committed_changes_are_there_for_a_process_that_never_closed(
    tmp_path: Path, upsets: UpsetRecorder
) -> None:
    first = ScheduleStore(tmp_path, upsets.log)
    first.put([activity(1, NOW + 10, 0), activity(2, NOW + 20, 1)])
    first.set_enabled(False)
    first.delete([ScheduleRequestId(1, 100, 1)])
    first.put([activity(2, NOW + 99, 1)])  # a time shift rewrites the record
    # No close: the next process opens the file as kill -9 left it.
    second = ScheduleStore(tmp_path, upsets.log)
    loaded = second.load()
    assert loaded.enabled is False
    assert loaded.activities == [activity(2, NOW + 99, 1)]
    assert (loaded.lost, loaded.repaired, upsets.take()) == ([], 0, [])
    second.reset()
    third = ScheduleStore(tmp_path, upsets.log).load()
    assert (third.enabled, third.activities) == (False, [])
    first.close()
    second.close()


def test_a_new_schedule_takes_the_configured_state(tmp_path: Path, upsets: UpsetRecorder) -> None:
    assert ScheduleStore(tmp_path / "a", upsets.log).load().enabled is True
    assert ScheduleStore(tmp_path / "b", upsets.log, False).load().enabled is False


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("release_ms", NOW + 1),  # a field: restored from the copy
        ("packet", b"\x00" * 13),
        ("copy", b"garbage"),  # the copy: rewritten from the fields
        ("crc", 0),  # the checksum: fields and copy agree
    ],
)
def test_one_damaged_part_of_a_record_is_repaired(
    tmp_path: Path, upsets: UpsetRecorder, column: str, value: object
) -> None:
    store = ScheduleStore(tmp_path, upsets.log)
    store.put([activity(1, NOW + 10), activity(2, NOW + 20, 1)])
    store.execute(
        f"UPDATE activity SET {column} = ? WHERE request_id = ?",
        (value, activity(1).request_id.value),
    )
    loaded = store.load()
    assert sorted(loaded.activities, key=lambda a: a.order) == [
        activity(1, NOW + 10),
        activity(2, NOW + 20, 1),
    ]
    assert upsets.take() == [(Outcome.CORRECTED, 1)]
    # Repaired in place: the next check finds nothing.
    assert store.load().repaired == 0 and upsets.take() == []


def test_a_record_beyond_repair_is_given_up_and_reported(
    tmp_path: Path, upsets: UpsetRecorder
) -> None:
    store = ScheduleStore(tmp_path, upsets.log)
    store.put([activity(1, NOW + 10), activity(2, NOW + 20, 1)])
    store.execute(
        "UPDATE activity SET release_ms = 5, copy = ? WHERE request_id = ?",
        (b"x" * 30, activity(1).request_id.value),
    )
    loaded = store.load()
    assert loaded.activities == [activity(2, NOW + 20, 1)]
    assert [r.request_id for r in loaded.lost] == [activity(1).request_id.value]
    assert loaded.lost[0].packet == activity(1).packet
    assert upsets.take() == [(Outcome.UNCORRECTABLE, 1)]
    assert store.load().lost == []  # deleted, not found again


def test_the_execution_state_is_voted_and_disabled_when_beyond_repair(
    tmp_path: Path, upsets: UpsetRecorder
) -> None:
    store = ScheduleStore(tmp_path, upsets.log)
    store.set_enabled(True)
    store.execute("UPDATE state SET value = 0")
    assert store.load().enabled is True  # restored from its copy
    store.execute("UPDATE state SET value = 7, copy = ?", (b"\xff" * 8,))
    assert store.load().enabled is False  # nothing agrees: the safe reading
    assert upsets.take() == [(Outcome.CORRECTED, 1), (Outcome.UNCORRECTABLE, 1)]
    assert store.load().enabled is False and upsets.take() == []


def test_a_file_that_is_not_a_database_is_set_aside(tmp_path: Path, upsets: UpsetRecorder) -> None:
    (tmp_path / "schedule.sqlite3").write_bytes(b"not a database at all" * 100)
    store = ScheduleStore(tmp_path, upsets.log)
    assert store.load().activities == []
    assert (tmp_path / "schedule.sqlite3.damaged-1").exists()
    assert upsets.take() == [(Outcome.UNCORRECTABLE, 1)]


def test_a_symbolic_link_is_not_opened(tmp_path: Path, upsets: UpsetRecorder) -> None:
    (tmp_path / "elsewhere").write_bytes(b"")
    (tmp_path / "schedule.sqlite3").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(ScheduleStoreError, match="is a symbolic link: not opened"):
        ScheduleStore(tmp_path, upsets.log)
