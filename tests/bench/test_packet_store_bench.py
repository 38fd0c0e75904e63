"""Packet store (ST[15]): what keeping every TM packet costs the main loop, and reading it back.

Target: storing 1 s of 921600-baud traffic in 100-octet packets (922 appends and the flush the
service makes once a second) takes < 5 % of that second; reading 1 s of it back for a retrieval
too. The store is a real one on the test's disk, circular, with the default 1 MiB segments, so
the mean includes segment rolls (footer, fsync, new file) and the wrap's drops.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from flight.storage import PacketStore
from tests.bench.timing import LINE_OCTETS_PER_S, best_seconds

SECTION = "packet store (ST[15]), target < 5 % of each second of 921600-baud traffic"
PACKET_OCTETS = 100
PACKETS_PER_S = round(LINE_OCTETS_PER_S / PACKET_OCTETS)  # 922
CAPACITY = 32 << 20  # wraps during the append benchmark: drops are part of the cost
PACKET = random.Random(15).randbytes(PACKET_OCTETS)


def test_append_one_second_of_line_traffic(
    benchmark, report: Callable[[str, str], None], tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    """Mean time of 922 appends + one flush, as a share of the second they stand for."""
    clock = [1.7e9]
    with PacketStore(tmp_path / "s", CAPACITY) as store:

        def one_second() -> None:
            for _ in range(PACKETS_PER_S):
                store.append(PACKET, clock[0])
                clock[0] += 1 / PACKETS_PER_S
            store.flush()

        benchmark.group = "packet store"
        benchmark.pedantic(one_second, rounds=400, iterations=1, warmup_rounds=1)
        appended = store.summary()
    if not benchmark.enabled:
        return
    stats = benchmark.stats.stats
    share = stats.mean
    benchmark.extra_info.update(
        {"share of each second": round(share, 4), "append us": stats.mean / PACKETS_PER_S * 1e6}
    )
    report(
        SECTION,
        f"append 1 s of traffic ({PACKETS_PER_S} x {PACKET_OCTETS} octets + flush): "
        f"{share:.2%} of the second (mean; max {stats.max * 1e3:.1f} ms), "
        f"{stats.mean / PACKETS_PER_S * 1e6:.1f} us an append; "
        f"{appended.packets} packets held after wrapping",
    )
    assert appended.octets <= CAPACITY
    assert share < 0.05


@pytest.fixture(scope="module")
def full_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A closed store holding 200 s of line traffic (about 23 MiB, 23 segments)."""
    directory = tmp_path_factory.mktemp("full") / "s"
    with PacketStore(directory, CAPACITY) as store:
        for i in range(200 * PACKETS_PER_S):
            store.append(PACKET, 1.7e9 + i / PACKETS_PER_S)
    return directory


def test_read_back_one_second_of_line_traffic(
    benchmark, report: Callable[[str, str], None], full_store: Path
) -> None:  # type: ignore[no-untyped-def]
    """A retrieval's cost: open, time lookups, and sequential reads, against the line's rate."""
    started = time.perf_counter()
    store = PacketStore(full_store, CAPACITY)
    opened = time.perf_counter() - started
    try:
        rng = random.Random(1)
        count = store.summary().packets
        first = store.summary().oldest_record or 0

        def read_second() -> int:
            start = first + rng.randrange(count - PACKETS_PER_S)
            n = 0
            for _ in zip(range(PACKETS_PER_S), store.records_from(start), strict=False):
                n += 1
            return n

        def seek() -> object:
            return next(store.records_from(first + rng.randrange(count)))

        def lookup() -> object:
            return store.first_record_at_or_after(1.7e9 + rng.uniform(0, 200))

        def window() -> object:
            t = 1.7e9 + rng.uniform(0, 199)
            return sum(1 for _ in store.between(t, t + 1.0))

        started = time.perf_counter()
        assert sum(1 for _ in store.records_from(0)) == count  # builds every segment's index
        first_pass = time.perf_counter() - started
        for fn in (read_second, seek, lookup, window):
            fn()
        benchmark.group = "packet store"
        assert benchmark.pedantic(read_second, rounds=50, iterations=1) == PACKETS_PER_S
        seek_s, lookup_s, window_s = best_seconds([seek, lookup, window])
    finally:
        store.close()
    if not benchmark.enabled:
        return
    share = benchmark.stats.stats.mean
    benchmark.extra_info.update({"share of each second": round(share, 4)})
    report(
        SECTION,
        f"read 1 s of traffic back (records_from): {share:.2%} of the second, "
        f"{share / PACKETS_PER_S * 1e6:.1f} us a packet",
    )
    report(
        SECTION,
        f"records_from(n) to its first packet {seek_s * 1e6:.0f} us, "
        f"first_record_at_or_after {lookup_s * 1e6:.0f} us, between over 1 s "
        f"{window_s * 1e3:.2f} ms",
    )
    report(
        SECTION,
        f"open of {count} packets in 23 segments {opened * 1e3:.1f} ms (footers only); first "
        f"read of all, which indexes each segment, {first_pass / count * 1e6:.1f} us a packet",
    )
    assert share < 0.05
