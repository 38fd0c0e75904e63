"""The boot counter: counting, the takeover of the old single file, damaged copies."""

from __future__ import annotations

from pathlib import Path

from flight.bootcount import BOOT_STATE_DIR, LEGACY_BOOT_COUNT_FILE, next_boot_count
from flight.protection.triplicate import FILE_NAMES, parse_file
from flight.protection.upsets import Outcome, UpsetLocation, UpsetLog


def test_counts_from_one(tmp_path: Path) -> None:
    assert [next_boot_count(tmp_path) for _ in range(4)] == [1, 2, 3, 4]
    for name in FILE_NAMES:
        assert parse_file((tmp_path / BOOT_STATE_DIR / name).read_bytes()).records == {
            "boot_count": 4
        }


def test_the_old_single_file_is_taken_over_and_removed(tmp_path: Path) -> None:
    legacy = tmp_path / LEGACY_BOOT_COUNT_FILE
    legacy.write_text("41\n")
    assert next_boot_count(tmp_path) == 42
    assert not legacy.exists()
    assert next_boot_count(tmp_path) == 43


def test_a_takeover_cut_before_the_old_file_went_does_not_count_twice(tmp_path: Path) -> None:
    legacy = tmp_path / LEGACY_BOOT_COUNT_FILE
    legacy.write_text("41\n")
    assert next_boot_count(tmp_path) == 42
    legacy.write_text("41\n")  # as if the power went before the old file was removed
    assert next_boot_count(tmp_path) == 43


def test_an_unreadable_old_file_is_dropped(tmp_path: Path) -> None:
    legacy = tmp_path / LEGACY_BOOT_COUNT_FILE
    legacy.write_bytes(b"\xff\xfe garbage")
    assert next_boot_count(tmp_path) == 1
    assert not legacy.exists()


def test_a_damaged_copy_is_repaired_and_reported(tmp_path: Path) -> None:
    for _ in range(6):
        next_boot_count(tmp_path)
    path = tmp_path / BOOT_STATE_DIR / FILE_NAMES[1]
    data = bytearray(path.read_bytes())
    data[data.index(b"6]")] ^= 0x02  # the count's digit: 6 -> 4, its CRC now fails
    path.write_bytes(bytes(data))
    upsets = UpsetLog()
    assert next_boot_count(tmp_path, upsets) == 7
    assert upsets.counts()["STATE.corrected"] == 1
    assert upsets.at(UpsetLocation.STATE) == 1
    assert upsets.total(Outcome.UNCORRECTABLE) == 0
