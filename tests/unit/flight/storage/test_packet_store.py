"""The packet store through the real disk: reads, bounds, deletion, crashes, torn and damaged
records, a model-based state machine, and a child process killed with SIGKILL mid-append."""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from flight.durable import NotRegularError
from flight.storage import (
    MAX_PACKET_OCTETS,
    RECORD_OVERHEAD,
    InvalidPacket,
    InvalidTime,
    PacketStore,
    PacketStoreBusy,
    PacketStoreClosed,
    PacketStoreFull,
    StoredPacket,
)

REPO = Path(__file__).resolve().parents[4]


def packet(i: int) -> bytes:
    """A packet that says which it is, of a length that varies."""
    return i.to_bytes(8, "big") * (1 + i % 13)


def fill(store: PacketStore, n: int, *, first: int = 0, t0: float = 1000.0) -> list[int]:
    return [store.append(packet(i), t0 + i) for i in range(first, first + n)]


def segment_files(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.seg"))


def crash_copy(store: PacketStore, to: Path) -> Path:
    """What a crash (kill -9) would leave of an open store: its files as they are now, the
    newest segment not sealed."""
    shutil.copytree(store.directory, to)
    return to


def held(store: PacketStore) -> list[StoredPacket]:
    return list(store.records_from(0))


# -- round trip and numbering ---------------------------------------------------------------


def test_round_trip_keeps_octets_times_and_order(tmp_path: Path) -> None:
    sizes = [1, 7, 100, 4096, MAX_PACKET_OCTETS, 3]
    packets = [random.Random(n).randbytes(n) for n in sizes]
    with PacketStore(tmp_path / "s", 1 << 20, segment_octets=8192) as store:
        numbers = [store.append(p, 1.5e9 + i / 8) for i, p in enumerate(packets)]
        assert numbers == list(range(len(packets)))
        expected = [
            StoredPacket(n, 1.5e9 + i / 8, p)
            for i, (n, p) in enumerate(zip(numbers, packets, strict=True))
        ]
        assert held(store) == expected
        summary = store.summary()
    assert summary.packets == len(packets)
    assert summary.octets == sum(RECORD_OVERHEAD + n for n in sizes)
    assert summary.fill == summary.octets / (1 << 20)
    assert (summary.oldest_record, summary.newest_record) == (0, len(packets) - 1)
    assert (summary.oldest_time, summary.newest_time) == (1.5e9, 1.5e9 + 5 / 8)
    with PacketStore(tmp_path / "s", 1 << 20, segment_octets=8192) as store:
        assert held(store) == expected
        assert store.summary() == summary


def test_empty_store(tmp_path: Path) -> None:
    with PacketStore(tmp_path / "s", 1 << 20) as store:
        summary = store.summary()
        assert (summary.packets, summary.octets, summary.next_record) == (0, 0, 0)
        assert summary.oldest_time is summary.newest_record is None
        assert held(store) == []
        assert store.first_record_at_or_after(0.0) is None
        assert store.delete_up_to(1e12) == 0


def test_record_numbers_go_on_across_clean_reopens_and_deletions(tmp_path: Path) -> None:
    for round_ in range(3):
        with PacketStore(tmp_path / "s", 1 << 20, segment_octets=1024) as store:
            assert fill(store, 40, first=40 * round_) == list(range(40 * round_, 40 * round_ + 40))
    with PacketStore(tmp_path / "s", 1 << 20, segment_octets=1024) as store:
        assert store.delete_up_to(1e12) == 120
        assert store.summary().packets == 0
    with PacketStore(tmp_path / "s", 1 << 20, segment_octets=1024) as store:
        assert store.summary().next_record == 120
        assert store.append(b"x", 1.0) == 120


def test_record_numbers_never_reused_after_a_crash(tmp_path: Path) -> None:
    store = PacketStore(tmp_path / "s", 1 << 20, segment_octets=1024)
    numbers = fill(store, 30)
    crashed = crash_copy(store, tmp_path / "crashed")
    store.close()
    with PacketStore(crashed, 1 << 20, segment_octets=1024) as after:
        assert [p.record_no for p in held(after)] == numbers
        # Records appended after the last flush may have been lost to a power cut along with
        # their numbers: numbering goes on after the range the unsealed segment reserved.
        assert after.append(b"x", 2000.0) > numbers[-1]
        assert after.summary().torn_tails == 0


def test_numbers_lost_to_a_power_cut_are_not_handed_out_again(tmp_path: Path) -> None:
    store = PacketStore(tmp_path / "s", 1 << 20)
    fill(store, 30)
    store.flush()
    (segment,) = segment_files(tmp_path / "s")
    flushed = segment.stat().st_size
    lost = fill(store, 10, first=30)  # returned, reported maybe, but not flushed
    image = crash_copy(store, tmp_path / "image")
    store.close()
    with open(image / segment.name, "r+b") as f:
        f.truncate(flushed)  # what the power cut left of the page cache
    with PacketStore(image, 1 << 20) as after:
        assert [p.record_no for p in held(after)] == list(range(30))
        assert after.append(b"x", 1.0) > lost[-1]


def test_one_store_per_directory(tmp_path: Path) -> None:
    with PacketStore(tmp_path / "s", 1 << 20), pytest.raises(PacketStoreBusy):
        PacketStore(tmp_path / "s", 1 << 20)
    PacketStore(tmp_path / "s", 1 << 20).close()


def test_refuses_bad_input_and_use_after_close(tmp_path: Path) -> None:
    store = PacketStore(tmp_path / "s", 1 << 20)
    with pytest.raises(InvalidPacket, match="0 octets"):
        store.append(b"", 1.0)
    with pytest.raises(InvalidPacket, match="65543 octets"):
        store.append(bytes(MAX_PACKET_OCTETS + 1), 1.0)
    for bad in (float("nan"), float("inf")):
        with pytest.raises(InvalidTime):
            store.append(b"x", bad)
    with pytest.raises(InvalidTime):
        store.between(float("nan"), 1.0)
    assert store.summary().next_record == 0  # nothing refused used a number
    store.close()
    store.close()
    with pytest.raises(PacketStoreClosed):
        store.append(b"x", 1.0)
    with pytest.raises(PacketStoreClosed):
        store.records_from(0)


def test_symbolic_links_are_not_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside.seg"
    outside.write_bytes(b"not ours")
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / f"{0:020d}-{99:020d}.seg").symlink_to(outside)
    with PacketStore(tmp_path / "s", 1 << 20) as store:
        assert held(store) == []
        fill(store, 3)
    assert outside.read_bytes() == b"not ours"
    (tmp_path / "link").symlink_to(tmp_path / "s")
    with pytest.raises(NotRegularError):
        PacketStore(tmp_path / "link", 1 << 20)


# -- bounds ---------------------------------------------------------------------------------


def test_circular_store_keeps_the_newest_within_its_capacity(tmp_path: Path) -> None:
    capacity = 8192
    with PacketStore(tmp_path / "s", capacity, segment_octets=1024) as store:
        assert store.segment_octets == 1024
        for i in range(2000):
            store.append(packet(i), float(i))
            assert store.summary().octets <= capacity
        summary = store.summary()
        records = held(store)
    # The newest are kept, without a hole, and at most a segment's worth of room stays unused.
    assert records[-1] == StoredPacket(1999, 1999.0, packet(1999))
    assert [p.record_no for p in records] == list(range(records[0].record_no, 2000))
    assert all(p.packet == packet(p.record_no) for p in records)
    assert summary.octets > capacity - 1024 - RECORD_OVERHEAD - len(packet(12))
    disk = sum(f.stat().st_size for f in segment_files(tmp_path / "s"))
    assert disk <= capacity + 1024
    with PacketStore(tmp_path / "s", capacity, segment_octets=1024) as store:
        assert held(store) == records


def test_bounded_store_refuses_when_full_and_counts(tmp_path: Path) -> None:
    with PacketStore(tmp_path / "s", 4096, circular=False, segment_octets=512) as store:
        numbers: list[int] = []
        with pytest.raises(PacketStoreFull, match="full"):
            for i in range(1000):
                numbers.append(store.append(bytes(100), float(i)))
        full = store.summary()
        assert full.packets == len(numbers) == 4096 // (RECORD_OVERHEAD + 100)
        with pytest.raises(PacketStoreFull):
            store.append(bytes(100), 2000.0)
        assert store.summary().appends_refused == 2
        assert [p.record_no for p in held(store)] == numbers  # nothing dropped
        assert store.delete_up_to(1.0) == 2
        assert store.append(bytes(100), 2001.0) == numbers[-1] + 1
    with pytest.raises(InvalidPacket, match="holds 4096 at most"):
        PacketStore(tmp_path / "t", 4096, circular=False).append(bytes(5000), 1.0)


# -- reads ----------------------------------------------------------------------------------


def test_reads_across_segment_boundaries(tmp_path: Path) -> None:
    with PacketStore(tmp_path / "s", 1 << 20, segment_octets=512) as store:
        fill(store, 300)  # packets of 8..104 octets: several per segment, 60 segments or so
        assert len(segment_files(tmp_path / "s")) > 40
        assert [p.record_no for p in store.records_from(123)] == list(range(123, 300))
        left = sum(RECORD_OVERHEAD + len(packet(i)) for i in range(123, 300))
        assert store.octets_from(123) == left
        assert store.octets_from(0) == store.summary().octets
        assert store.octets_from(300) == 0
        assert [p.record_no for p in store.between(1100.0, 1250.5)] == list(range(100, 251))
        assert [p.time for p in store.between(1000.5, 1001.5)] == [1001.0]
        assert list(store.between(5.0, 4.0)) == []
        assert store.first_record_at_or_after(1199.5) == 200
        assert store.first_record_at_or_after(1e12) is None
        assert store.first_record_at_or_after(-1e12) == 0
        assert all(p.packet == packet(p.record_no) for p in store.records_from(0))


def test_times_that_go_back_keep_storage_order(tmp_path: Path) -> None:
    # On-board time set back by 100 s after record 4.
    times = [100.0, 101.0, 102.0, 103.0, 104.0, 5.0, 6.0, 105.0, 7.0]
    with PacketStore(tmp_path / "s", 1 << 20, segment_octets=256) as store:
        for i, t in enumerate(times):
            store.append(packet(i), t)
        assert store.first_record_at_or_after(6.0) == 0  # storage order, not the earliest time
        assert store.first_record_at_or_after(104.5) == 7
        assert [p.record_no for p in store.between(5.0, 7.0)] == [5, 6, 8]
        # ST[15,11]: up to the first record after the time, not every record at or before it.
        assert store.delete_up_to(102.0) == 3
        assert [p.record_no for p in held(store)] == [3, 4, 5, 6, 7, 8]
        assert store.delete_up_to(104.0) == 4
        assert [p.record_no for p in held(store)] == [7, 8]


def test_an_iterator_sees_appends_and_skips_what_wraps_away(tmp_path: Path) -> None:
    with PacketStore(tmp_path / "s", 4096, segment_octets=512) as store:
        fill(store, 10)
        reader = store.records_from(0)
        assert next(reader).record_no == 0
        fill(store, 5, first=10)
        assert [p.record_no for p in reader][-1] == 14
        late = store.records_from(0)
        assert next(late).record_no == 0
        fill(store, 200, first=15)  # wraps: records 1.. are gone
        rest = [p.record_no for p in late]
        assert rest[0] == store.summary().oldest_record and rest[-1] == 214
        assert rest == list(range(rest[0], 215))


# -- deletion -------------------------------------------------------------------------------


def test_delete_up_to_whole_and_partial_segments_persists(tmp_path: Path) -> None:
    with PacketStore(tmp_path / "s", 1 << 20, segment_octets=512) as store:
        fill(store, 100)  # times 1000..1099
        before = len(segment_files(tmp_path / "s"))
        assert store.delete_up_to(999.0) == 0
        assert store.delete_up_to(1042.5) == 43  # in the middle of a segment
        assert len(segment_files(tmp_path / "s")) < before
        assert store.delete_up_to(1042.7) == 0
        assert store.summary().oldest_record == 43
        assert store.summary().oldest_time == 1043.0
        expected = held(store)
        octets = store.summary().octets
    assert [p.record_no for p in expected] == list(range(43, 100))
    assert octets == sum(RECORD_OVERHEAD + len(packet(i)) for i in range(43, 100))
    with PacketStore(tmp_path / "s", 1 << 20, segment_octets=512) as store:
        assert held(store) == expected
        assert store.summary().octets == octets
        assert store.records_from(0).__next__().record_no == 43
        assert store.first_record_at_or_after(0.0) == 43
        assert store.delete_up_to(1099.0) == 57
        assert store.append(b"y", 5.0) == 100
    with PacketStore(tmp_path / "s", 1 << 20, segment_octets=512) as store:
        assert held(store) == [StoredPacket(100, 5.0, b"y")]


def test_delete_within_the_active_segment_then_append(tmp_path: Path) -> None:
    with PacketStore(tmp_path / "s", 1 << 20) as store:
        fill(store, 10)
        assert store.delete_up_to(1004.0) == 5
        store.append(b"z", 3000.0)
        assert [p.record_no for p in held(store)] == [5, 6, 7, 8, 9, 10]
        assert store.summary().packets == 6
    with PacketStore(tmp_path / "s", 1 << 20) as store:
        assert [p.record_no for p in held(store)] == [5, 6, 7, 8, 9, 10]


# -- crashes and damage ---------------------------------------------------------------------


@pytest.mark.parametrize("sealed", [False, True], ids=["crashed", "closed"])
def test_a_torn_last_record_or_footer_is_dropped_at_every_offset(
    tmp_path: Path, sealed: bool
) -> None:
    store = PacketStore(tmp_path / "s", 1 << 20)
    fill(store, 20)
    store.flush()
    image = crash_copy(store, tmp_path / "image")
    store.close()
    if sealed:
        shutil.rmtree(image)
        shutil.copytree(tmp_path / "s", image)
    (segment,) = segment_files(image)
    last_size = RECORD_OVERHEAD + len(packet(19))
    last_start = sum(RECORD_OVERHEAD + len(packet(i)) for i in range(19))
    expected = [StoredPacket(i, 1000.0 + i, packet(i)) for i in range(19)]
    last_end = last_start + last_size
    # Closed: a cut in the footer too (a crash while sealing), which loses no record.
    for cut in range(last_start, (segment.stat().st_size if sealed else last_end)):
        trial = tmp_path / f"trial{cut}"
        shutil.copytree(image, trial)
        with open(trial / segment.name, "r+b") as f:
            f.truncate(cut)
        kept = expected if cut < last_end else [*expected, StoredPacket(19, 1019.0, packet(19))]
        with PacketStore(trial, 1 << 20) as reopened:
            assert held(reopened) == kept, cut
            summary = reopened.summary()
            assert summary.torn_tails == (cut not in (last_start, last_end))
            assert summary.corrupt_records == 0
            assert reopened.append(b"after", 1.0) > 19
        with PacketStore(trial, 1 << 20) as again:  # the cut tail and the new record stay
            assert held(again)[:-1] == kept
            assert again.summary().torn_tails == 0
        shutil.rmtree(trial)


@pytest.mark.parametrize("sealed", [True, False], ids=["sealed", "recovered"])
def test_a_flipped_octet_mid_segment_loses_exactly_that_record(
    tmp_path: Path, sealed: bool
) -> None:
    store = PacketStore(tmp_path / "s", 1 << 20)
    fill(store, 40)
    image = crash_copy(store, tmp_path / "image")
    store.close()
    if sealed:
        shutil.rmtree(image)
        shutil.copytree(tmp_path / "s", image)
    (segment,) = segment_files(image)
    victim = 17
    start = sum(RECORD_OVERHEAD + len(packet(i)) for i in range(victim))
    size = RECORD_OVERHEAD + len(packet(victim))
    expected = [StoredPacket(i, 1000.0 + i, packet(i)) for i in range(40) if i != victim]
    # Every field: sync, CRC, length, record number, time, and the packet's first and last.
    for where in (0, 1, 2, 6, 9, 12, 19, 22, 26, size - 1):
        trial = tmp_path / f"trial{where}"
        shutil.copytree(image, trial)
        with open(trial / segment.name, "r+b") as f:
            f.seek(start + where)
            octet = f.read(1)[0]
            f.seek(start + where)
            f.write(bytes([octet ^ 0x10]))
        with PacketStore(trial, 1 << 20) as reopened:
            assert held(reopened) == expected, where
            assert held(reopened) == expected  # read again: counted once
            summary = reopened.summary()
            assert (summary.corrupt_records, summary.packets) == (1, 39), where
            assert [p.record_no for p in reopened.between(1016.0, 1018.0)] == [16, 18]
        shutil.rmtree(trial)


def test_damage_in_the_last_record_of_a_sealed_segment(tmp_path: Path) -> None:
    with PacketStore(tmp_path / "s", 1 << 20) as store:
        fill(store, 5)
    (segment,) = segment_files(tmp_path / "s")
    data = bytearray(segment.read_bytes())
    last = sum(RECORD_OVERHEAD + len(packet(i)) for i in range(4))
    data[last + 30] ^= 0xFF
    segment.write_bytes(bytes(data))
    with PacketStore(tmp_path / "s", 1 << 20) as store:
        assert [p.record_no for p in held(store)] == [0, 1, 2, 3]
        assert store.summary().corrupt_records == 1
        assert store.append(b"x", 1.0) == 5  # a clean close: no number skipped


# -- model-based ----------------------------------------------------------------------------

# Small: segments of a few records, many rolls and wraps. Large: index blocks of 64 records fill.
SIZES = {"small": (2048, 256), "large": (1 << 16, 8192)}


class StoreMachine(RuleBasedStateMachine):
    """The store against a list of (number, time, packet), through appends, deletions,
    reopens and crashes, circular or bounded."""

    def __init__(self) -> None:
        super().__init__()
        self.root = Path(tempfile.mkdtemp(prefix="packet-store-"))
        self.generation = 0
        self.model: list[StoredPacket] = []
        self.last_number = -1
        self.store: PacketStore

    @initialize(circular=st.booleans(), size=st.sampled_from(sorted(SIZES)))
    def start(self, circular: bool, size: str) -> None:
        self.circular = circular
        self.capacity, self.segment = SIZES[size]
        self.store = self._open()

    def _open(self) -> PacketStore:
        return PacketStore(
            self.root / str(self.generation),
            self.capacity,
            self.circular,
            segment_octets=self.segment,
        )

    def _held_octets(self) -> int:
        return sum(RECORD_OVERHEAD + len(p.packet) for p in self.model)

    @rule(size=st.integers(1, 300), t=st.integers(0, 30), octet=st.integers(0, 255))
    def append(self, size: int, t: int, octet: int) -> None:
        data = bytes([octet]) * size
        room = self._held_octets() + RECORD_OVERHEAD + size <= self.capacity
        if not self.circular and not room:
            with pytest.raises(PacketStoreFull):
                self.store.append(data, float(t))
            return
        number = self.store.append(data, float(t))
        assert number > self.last_number
        self.last_number = number
        self.model.append(StoredPacket(number, float(t), data))
        oldest = self.store.summary().oldest_record
        dropped = [p for p in self.model if p.record_no < oldest]
        assert not dropped or not room  # a wrap only when the packet did not fit
        self.model = self.model[len(dropped) :]

    @rule(
        base=st.integers(0, 30),
        steps=st.lists(st.sampled_from([0, 0, 0, 1]), min_size=1, max_size=200),
        size=st.integers(1, 20),
    )
    def append_burst(self, base: int, steps: list[int], size: int) -> None:
        """Many small packets, their times rising slowly (as they do, between time sets)."""
        t = base
        for i, step in enumerate(steps):
            t = min(30, t + step)
            self.append(size, t, i % 256)

    @rule(t=st.integers(-1, 31))
    def delete_up_to(self, t: int) -> None:
        kept = next((i for i, p in enumerate(self.model) if p.time > t), len(self.model))
        assert self.store.delete_up_to(float(t)) == kept
        self.model = self.model[kept:]

    @rule()
    def flush(self) -> None:
        self.store.flush()

    @rule()
    def reopen(self) -> None:
        self.store.close()
        self.store = self._open()

    @rule()
    def crash(self) -> None:
        old = self.store
        self.generation += 1
        crash_copy(old, self.root / str(self.generation))
        old.close()
        self.store = self._open()

    @rule(start=st.integers(-1, 400))
    def read_from(self, start: int) -> None:
        expected = [p for p in self.model if p.record_no >= start]
        assert list(self.store.records_from(start)) == expected
        octets = sum(RECORD_OVERHEAD + len(p.packet) for p in expected)
        assert self.store.octets_from(start) == octets

    @rule(lo=st.integers(-1, 31), hi=st.integers(-1, 31))
    def read_between(self, lo: int, hi: int) -> None:
        assert list(self.store.between(float(lo), float(hi))) == [
            p for p in self.model if lo <= p.time <= hi
        ]
        first = next((p.record_no for p in self.model if p.time >= lo), None)
        assert self.store.first_record_at_or_after(float(lo)) == first

    @invariant()
    def summary_matches(self) -> None:
        if not hasattr(self, "store"):
            return
        summary = self.store.summary()
        assert summary.packets == len(self.model)
        assert summary.octets == self._held_octets() <= self.capacity
        assert summary.oldest_record == (self.model[0].record_no if self.model else None)
        assert summary.newest_time == (self.model[-1].time if self.model else None)
        assert summary.corrupt_records == summary.torn_tails == 0

    def teardown(self) -> None:
        if hasattr(self, "store"):
            self.store.close()
        shutil.rmtree(self.root, ignore_errors=True)


def test_store_against_a_model() -> None:
    StoreMachine.TestCase.settings = settings(
        max_examples=int(os.environ.get("STORE_EXAMPLES", 60)),
        stateful_step_count=40,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    StoreMachine.TestCase().runTest()


# -- kill -9 --------------------------------------------------------------------------------

CHILD = """
import sys
from pathlib import Path
from flight.storage import PacketStore

def packet(i):
    return i.to_bytes(8, "big") * (1 + i % 13)

store = PacketStore(Path(sys.argv[1]), 64 << 20, segment_octets=16384)
i = int(sys.argv[2])
while True:
    record_no = store.append(packet(i), float(i))
    sys.stdout.write(f"{i} {record_no}\\n")
    sys.stdout.flush()
    if i % 500 == 0:
        store.flush()
    i += 1
"""


def test_kill_9_loses_no_record_whose_append_returned(tmp_path: Path) -> None:
    rng = random.Random()
    directory = tmp_path / "s"
    reported: list[tuple[int, int]] = []  # (i, record number) of every round, in order
    for round_ in range(6):
        out_path = tmp_path / f"out{round_}"
        with open(out_path, "wb") as out:
            child = subprocess.Popen(
                [sys.executable, "-c", CHILD, str(directory), str(round_ * 10_000_000)],
                stdout=out,
                cwd=REPO,
            )
        try:
            deadline = time.monotonic() + 10
            while out_path.stat().st_size == 0 and time.monotonic() < deadline:
                assert child.poll() is None, "the child died on its own"
                time.sleep(0.005)
            time.sleep(rng.uniform(0, 0.3))
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait()
        lines = out_path.read_bytes().split(b"\n")[:-1]  # the last, unfinished line is dropped
        this_round = [tuple(map(int, line.split())) for line in lines]
        assert this_round, "nothing appended"
        if reported:
            assert this_round[0][1] > reported[-1][1]  # numbers never reused
        reported += this_round  # type: ignore[arg-type]
        with PacketStore(directory, 64 << 20, segment_octets=16384) as store:
            by_number = {p.record_no: p for p in store.records_from(0)}
            numbers = list(by_number)
            assert numbers == sorted(numbers)
            for i, record_no in reported:
                assert by_number[record_no] == StoredPacket(record_no, float(i), packet(i))
            assert store.summary().corrupt_records == 0
