"""The protected state: votes, repairs, rebuilt files, lost keys, interrupted writes, threads."""

from __future__ import annotations

import random
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import flight.protection.triplicate as triplicate
from flight.protection.triplicate import (
    FILE_NAMES,
    FaultSite,
    FileState,
    InvalidValue,
    Medium,
    StateCheck,
    TripleStore,
    UnknownKey,
    decode_record,
    encode_file,
    encode_record,
    parse_file,
    vote,
)
from flight.protection.upsets import Outcome, UpsetLocation
from tests.upset_recorder import UpsetRecorder

DEFAULTS: dict[str, bool | int | float | str] = {
    "boot_count": 0,
    "scrub_period": 60.0,
    "test_commands": False,
    "mode_name": "NOMINAL",
}


@pytest.fixture
def upsets() -> UpsetRecorder:
    return UpsetRecorder(UpsetLocation.STATE)


@pytest.fixture
def directory(tmp_path: Path) -> Path:
    return tmp_path / "state" / "protected"


@pytest.fixture
def store(directory: Path, upsets: UpsetRecorder) -> TripleStore:
    return TripleStore(directory, DEFAULTS, upsets.log)


def flip(octet: int, bit: int = 0) -> Callable[[bytearray], None]:
    def mutate(buffer: bytearray) -> None:
        buffer[octet % len(buffer)] ^= 1 << bit

    return mutate


def memory_site(store: TripleStore, copy: int, key: str) -> FaultSite:
    sites = [s for s in store.fault_sites() if s.medium is Medium.MEMORY]
    (site,) = [s for s in sites if (s.copy, s.key) == (copy, key)]
    return site


def file_site(copy: int) -> FaultSite:
    return FaultSite(Medium.FILE, copy, None, 0)


def value_octet(store: TripleStore, key: str) -> int:
    """An octet of the key's value inside its record (past the CRC and the key)."""
    record = encode_record(key, store.get(key))
    return len(record) - 2


def file_record_octet(path: Path, key: str) -> int:
    data = path.read_bytes()
    return data.index(f'["{key}",'.encode()) + len(key) + 4


# -- records, files, the vote -----------------------------------------------------------------


def test_a_record_decodes_only_while_its_crc_holds() -> None:
    record = encode_record("boot_count", 41)
    assert decode_record(record) == ("boot_count", 41)
    for octet in range(len(record)):
        for bit in range(8):
            damaged = bytearray(record)
            damaged[octet] ^= 1 << bit
            assert decode_record(damaged) is None, (octet, bit)


def test_kinds_round_trip_and_stay_distinct() -> None:
    for value in (True, 1, 1.0, "1", -0.5, "", 2**40):
        key, back = decode_record(encode_record("k", value)) or ("", None)
        assert (key, back, type(back)) == ("k", value, type(value))


def test_a_file_keeps_its_intact_records_when_its_crc_fails() -> None:
    data = bytearray(encode_file({"a": 1, "b": "two", "c": 3.0}, 7))
    assert parse_file(bytes(data)).state is FileState.INTACT
    assert parse_file(bytes(data)).generation == 7
    data[data.index(b'"two"') + 1] ^= 0x01
    parsed = parse_file(bytes(data))
    assert parsed.state is FileState.DAMAGED
    assert parsed.records == {"a": 1, "c": 3.0}
    assert parsed.generation == 7


def test_vote_majority_then_newest_generation() -> None:
    assert vote([(1, 5), (2, 9), (1, 4)]) == 1
    assert vote([(1, 5), None, (2, 9)]) == 2
    assert vote([None, None, (3, 0)]) == 3
    assert vote([None, None, None]) is None
    # 1 and True are different values: neither has a majority, the newer wins.
    assert vote([(1, 1), (True, 2), None]) is True


# -- the store --------------------------------------------------------------------------------


def test_a_new_store_holds_the_defaults_in_three_intact_files(
    store: TripleStore, directory: Path, upsets: UpsetRecorder
) -> None:
    assert store.values() == DEFAULTS
    assert store.loaded == StateCheck()
    assert sorted(p.name for p in directory.iterdir()) == sorted(FILE_NAMES)
    for path in store.paths:
        parsed = parse_file(path.read_bytes())
        assert parsed.state is FileState.INTACT
        assert parsed.records == DEFAULTS
    assert upsets.take() == []


def test_values_survive_reopening(
    directory: Path, store: TripleStore, upsets: UpsetRecorder
) -> None:
    store.set("boot_count", 5)
    store.update({"scrub_period": 30, "test_commands": True, "mode_name": "SAFE"})
    assert store.increment("boot_count") == 6
    assert store.increment("boot_count", by=10) == 16
    reopened = TripleStore(directory, DEFAULTS, upsets.log)
    assert reopened.values() == {
        "boot_count": 16,
        "scrub_period": 30.0,
        "test_commands": True,
        "mode_name": "SAFE",
    }
    assert type(reopened.get("scrub_period")) is float
    assert reopened.loaded.clean
    assert upsets.take() == []


def test_an_unchanged_value_is_not_written_again(store: TripleStore) -> None:
    store.set("boot_count", 3)
    before = [p.stat().st_mtime_ns for p in store.paths]
    generation = parse_file(store.paths[0].read_bytes()).generation
    store.set("boot_count", 3)
    assert [p.stat().st_mtime_ns for p in store.paths] == before
    store.set("boot_count", 4)
    assert parse_file(store.paths[0].read_bytes()).generation == generation + 1


@pytest.mark.parametrize(
    ("key", "value", "error"),
    [
        ("nope", 1, UnknownKey),
        ("boot_count", True, InvalidValue),
        ("boot_count", 1.5, InvalidValue),
        ("boot_count", "1", InvalidValue),
        ("test_commands", 1, InvalidValue),
        ("scrub_period", float("nan"), InvalidValue),
        ("scrub_period", float("inf"), InvalidValue),
        ("mode_name", "x" * 256, InvalidValue),
    ],
)
def test_wrong_keys_and_values_are_refused(
    store: TripleStore, key: str, value: object, error: type[Exception]
) -> None:
    with pytest.raises(error):
        store.set(key, value)  # type: ignore[arg-type]
    assert store.values() == DEFAULTS


def test_increment_needs_an_integer_key(store: TripleStore) -> None:
    with pytest.raises(InvalidValue, match="integer key"):
        store.increment("scrub_period")
    with pytest.raises(UnknownKey):
        store.get("absent")


def test_defaults_must_be_storable(tmp_path: Path) -> None:
    with pytest.raises(InvalidValue):
        TripleStore(tmp_path / "s", {"list": [1]})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="at least one key"):
        TripleStore(tmp_path / "s", {})


# -- memory copies ----------------------------------------------------------------------------


def test_every_bit_of_a_memory_copy_is_voted_out_and_repaired(
    store: TripleStore, upsets: UpsetRecorder
) -> None:
    store.set("mode_name", "NOMINAL")
    for copy in range(3):
        site = memory_site(store, copy, "mode_name")
        for octet in range(site.octets):
            store.corrupt(site, flip(octet, octet % 8))
            assert store.get("mode_name") == "NOMINAL"
            assert upsets.take() == [(Outcome.CORRECTED, 1)], (copy, octet)
            assert store.get("mode_name") == "NOMINAL"
            assert upsets.take() == [], "repaired: the next read finds nothing"


def test_two_corrupt_memory_copies_are_repaired_from_the_third(
    store: TripleStore, upsets: UpsetRecorder
) -> None:
    store.set("boot_count", 1234)
    octet = value_octet(store, "boot_count")
    store.corrupt(memory_site(store, 0, "boot_count"), flip(octet))
    store.corrupt(memory_site(store, 2, "boot_count"), flip(octet))
    # Both damaged copies now hold the same wrong value, but their CRCs fail: outvoted.
    assert store.get("boot_count") == 1234
    assert upsets.take() == [(Outcome.CORRECTED, 2)]


def test_three_corrupt_memory_copies_are_repaired_from_the_files(
    store: TripleStore, upsets: UpsetRecorder
) -> None:
    store.set("boot_count", 77)
    for copy in range(3):
        store.corrupt(memory_site(store, copy, "boot_count"), flip(copy * 3, copy))
    assert store.get("boot_count") == 77
    assert upsets.take() == [(Outcome.CORRECTED, 3)]
    assert store.scrub().clean


def test_a_key_with_no_intact_copy_falls_back_to_its_default_once(
    directory: Path, store: TripleStore, upsets: UpsetRecorder
) -> None:
    store.update({"boot_count": 9, "mode_name": "SAFE"})
    for copy in range(3):
        store.corrupt(memory_site(store, copy, "boot_count"), flip(1))
        path = store.paths[copy]
        store.corrupt(file_site(copy), flip(file_record_octet(path, "boot_count")))
    assert store.get("boot_count") == 0
    assert upsets.take() == [(Outcome.UNCORRECTABLE, 1)]
    # The files were rewritten with the default: said once.
    assert store.get("boot_count") == 0
    assert store.scrub().clean
    assert upsets.take() == []
    reopened = TripleStore(directory, DEFAULTS, upsets.log)
    assert reopened.values() == {**DEFAULTS, "mode_name": "SAFE"}
    assert upsets.take() == []


# -- files ------------------------------------------------------------------------------------


def test_every_octet_of_a_file_is_checked_by_the_scrub(
    store: TripleStore, upsets: UpsetRecorder
) -> None:
    store.update({"boot_count": 3, "mode_name": "SAFE"})
    expected = store.values()
    intact = store.paths[1].read_bytes()
    for octet in range(len(intact)):
        store.corrupt(file_site(1), flip(octet, octet % 8))
        check = store.scrub()
        assert (check.files_repaired, check.memory_repaired, check.lost) == (1, 0, ()), octet
        assert upsets.take() == [(Outcome.CORRECTED, 1)]
        assert store.paths[1].read_bytes() == intact
    assert store.values() == expected


@pytest.mark.parametrize("copy", range(3))
def test_a_corrupt_file_is_rebuilt_at_load(
    directory: Path, store: TripleStore, upsets: UpsetRecorder, copy: int
) -> None:
    store.set("boot_count", 41)
    path = store.paths[copy]
    store.corrupt(file_site(copy), flip(file_record_octet(path, "boot_count")))
    reopened = TripleStore(directory, DEFAULTS, upsets.log)
    assert reopened.get("boot_count") == 41
    assert reopened.loaded == StateCheck(files_repaired=1)
    assert upsets.take() == [(Outcome.CORRECTED, 1)]
    assert len({p.read_bytes() for p in reopened.paths}) == 1


def test_a_missing_file_is_rebuilt_without_an_upset(
    directory: Path, store: TripleStore, upsets: UpsetRecorder
) -> None:
    store.set("mode_name", "SAFE")
    store.paths[2].unlink()
    reopened = TripleStore(directory, DEFAULTS, upsets.log)
    assert reopened.get("mode_name") == "SAFE"
    assert reopened.loaded == StateCheck(files_rewritten=1)
    assert upsets.take() == []
    assert store.paths[2].read_bytes() == store.paths[0].read_bytes()


def test_two_corrupt_files_are_rebuilt_from_the_third(
    directory: Path, store: TripleStore, upsets: UpsetRecorder
) -> None:
    store.set("boot_count", 12)
    for copy in (0, 2):
        store.corrupt(file_site(copy), flip(file_record_octet(store.paths[copy], "boot_count")))
    reopened = TripleStore(directory, DEFAULTS, upsets.log)
    assert reopened.get("boot_count") == 12
    assert reopened.loaded == StateCheck(files_repaired=2)
    assert upsets.take() == [(Outcome.CORRECTED, 2)]


def test_corrupt_records_in_every_file_still_vote_key_by_key(
    directory: Path, store: TripleStore, upsets: UpsetRecorder
) -> None:
    store.update({"boot_count": 5, "mode_name": "SAFE", "test_commands": True})
    for copy, key in enumerate(("boot_count", "mode_name", "test_commands")):
        store.corrupt(file_site(copy), flip(file_record_octet(store.paths[copy], key)))
    reopened = TripleStore(directory, DEFAULTS, upsets.log)
    assert reopened.values() == store.values()
    assert reopened.loaded == StateCheck(files_repaired=3)


def test_the_same_record_corrupt_in_three_files_is_lost_at_load(
    directory: Path, store: TripleStore, upsets: UpsetRecorder
) -> None:
    store.update({"boot_count": 5, "mode_name": "SAFE"})
    for copy in range(3):
        store.corrupt(file_site(copy), flip(file_record_octet(store.paths[copy], "boot_count")))
    reopened = TripleStore(directory, DEFAULTS, upsets.log)
    assert reopened.values() == {**DEFAULTS, "mode_name": "SAFE"}
    assert reopened.loaded == StateCheck(lost=("boot_count",))
    assert upsets.take() == [(Outcome.UNCORRECTABLE, 1)]
    assert TripleStore(directory, DEFAULTS, upsets.log).loaded.clean


def test_a_key_added_by_newer_software_takes_its_default(
    directory: Path, store: TripleStore, upsets: UpsetRecorder
) -> None:
    store.set("boot_count", 8)
    grown = TripleStore(directory, {**DEFAULTS, "scrub_rate": 65536}, upsets.log)
    assert grown.get("scrub_rate") == 65536
    assert grown.get("boot_count") == 8
    assert grown.loaded.lost == ()
    assert upsets.take() == []


# -- interrupted writes -----------------------------------------------------------------------


def write_generation(path: Path, values: dict[str, bool | int | float | str], gen: int) -> None:
    path.write_bytes(encode_file(values, gen))


def generation(path: Path) -> int:
    return parse_file(path.read_bytes()).generation


def test_a_write_cut_after_one_file_is_rolled_back_without_an_upset(
    directory: Path, store: TripleStore, upsets: UpsetRecorder
) -> None:
    store.set("boot_count", 1)
    write_generation(store.paths[0], {**DEFAULTS, "boot_count": 2}, generation(store.paths[0]) + 1)
    reopened = TripleStore(directory, DEFAULTS, upsets.log)
    assert reopened.get("boot_count") == 1
    assert reopened.loaded == StateCheck(files_rewritten=1)
    assert upsets.take() == []


def test_a_write_cut_after_two_files_is_rolled_forward_without_an_upset(
    directory: Path, store: TripleStore, upsets: UpsetRecorder
) -> None:
    store.set("boot_count", 1)
    newer = generation(store.paths[0]) + 1
    for copy in (0, 1):
        write_generation(store.paths[copy], {**DEFAULTS, "boot_count": 2}, newer)
    reopened = TripleStore(directory, DEFAULTS, upsets.log)
    assert reopened.get("boot_count") == 2
    assert reopened.loaded == StateCheck(files_rewritten=1)
    assert upsets.take() == []


def test_between_two_intact_copies_the_newer_write_wins(
    directory: Path, store: TripleStore, upsets: UpsetRecorder
) -> None:
    store.set("boot_count", 1)
    write_generation(store.paths[0], {**DEFAULTS, "boot_count": 2}, generation(store.paths[0]) + 1)
    store.corrupt(file_site(2), flip(file_record_octet(store.paths[2], "boot_count")))
    reopened = TripleStore(directory, DEFAULTS, upsets.log)
    assert reopened.get("boot_count") == 2
    assert reopened.loaded == StateCheck(files_repaired=1, files_rewritten=1)


def test_a_failed_write_leaves_the_old_value(
    store: TripleStore, upsets: UpsetRecorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.set("boot_count", 1)
    real = triplicate.replace_atomically
    calls: list[Path] = []

    def fail_second(path: Path, data: bytes) -> None:
        calls.append(path)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        real(path, data)

    monkeypatch.setattr(triplicate, "replace_atomically", fail_second)
    with pytest.raises(OSError, match="No space"):
        store.set("boot_count", 2)
    monkeypatch.setattr(triplicate, "replace_atomically", real)
    assert store.get("boot_count") == 1
    # The one file written already is from an interrupted write: rewritten, not an upset.
    assert store.scrub() == StateCheck(files_rewritten=1)
    assert upsets.take() == []


# -- fault injection hooks and threads --------------------------------------------------------


def test_fault_sites_cover_every_memory_record_and_file(store: TripleStore) -> None:
    sites = store.fault_sites()
    memory = [s for s in sites if s.medium is Medium.MEMORY]
    files = [s for s in sites if s.medium is Medium.FILE]
    assert {(s.copy, s.key) for s in memory} == {(c, k) for c in range(3) for k in DEFAULTS}
    assert [(s.copy, s.octets) for s in files] == [
        (c, p.stat().st_size) for c, p in enumerate(store.paths)
    ]
    assert files[0].describe() == "file copy-0.state"
    assert memory[0].describe().startswith("memory copy 0 record ")
    with pytest.raises(ValueError, match="must keep"):
        store.corrupt(files[0], lambda buffer: buffer.extend(b"x"))
    with pytest.raises(ValueError, match="no record"):
        store.corrupt(FaultSite(Medium.MEMORY, 0, "absent", 1), flip(0))


@pytest.fixture
def shared(directory: Path, upsets: UpsetRecorder) -> Iterator[TripleStore]:
    yield TripleStore(directory, {"a": 0, "b": 0}, upsets.log)


def test_concurrent_increments_scrubs_and_upsets_lose_nothing(
    shared: TripleStore, upsets: UpsetRecorder
) -> None:
    workers, increments = 4, 25
    stop = threading.Event()
    errors: list[BaseException] = []

    def guarded(target: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                target()
            except BaseException as exc:  # surfaced in the main thread
                errors.append(exc)

        return run

    def incrementer() -> None:
        for _ in range(increments):
            shared.increment("a")
            shared.increment("b", by=2)

    def scrubber() -> None:
        while not stop.is_set():
            shared.scrub()

    def injector() -> None:
        rng = random.Random(7)
        while not stop.is_set():
            sites = [s for s in shared.fault_sites() if s.medium is Medium.MEMORY]
            site = rng.choice(sites)
            shared.corrupt(site, flip(rng.randrange(site.octets), rng.randrange(8)))

    threads = [threading.Thread(target=guarded(incrementer)) for _ in range(workers)]
    background = [threading.Thread(target=guarded(f)) for f in (scrubber, injector)]
    for thread in threads + background:
        thread.start()
    for thread in threads:
        thread.join()
    stop.set()
    for thread in background:
        thread.join()
    assert errors == []
    assert shared.values() == {"a": workers * increments, "b": 2 * workers * increments}
    found = upsets.take()
    assert found, "the injector's upsets were found"
    assert {outcome for outcome, _ in found} == {Outcome.CORRECTED}
    assert shared.scrub().clean
