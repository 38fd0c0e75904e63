"""The downlink transmitter: idle frames, CLCW updates, VC priority and pacing to the line."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from flight.counters import LinkCounters
from flight.downlink import DownlinkTransmitter
from spacelink.icd import LinkParameters
from spacelink.spacepacket import PusTm
from spacelink.tmframe import FHP_IDLE_ONLY, FrameSynchronizer, TmFrame

CLCW_WORD = 0x0100_0005


class Line:
    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.lock = threading.Lock()

    def write(self, data: bytes) -> int:
        with self.lock:
            self.chunks.append(data)
        return len(data)

    def frames(self) -> list[TmFrame]:
        with self.lock:
            return FrameSynchronizer(scid=500).feed(b"".join(self.chunks))


@contextmanager
def transmitter(
    baud: int, idle: float, clcw: list[int] | None = None
) -> Iterator[tuple[DownlinkTransmitter, Line]]:
    """A transmitter on a recorded line; `clcw`: a one-item list the test changes."""
    line = Line()
    word = clcw if clcw is not None else [CLCW_WORD]
    tx = DownlinkTransmitter(
        line.write, LinkParameters(idle_interval_s=idle), baud, lambda: word[0], LinkCounters()
    )
    try:
        yield tx, line
    finally:
        tx.stop()


def wait_for(predicate, timeout: float = 5.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return False


def test_idle_frames_carry_the_clcw_at_the_idle_interval() -> None:
    with transmitter(baud=10_000_000, idle=0.1) as (tx, line):
        tx.start()
        time.sleep(1.0)
        frames = line.frames()
    # one at start (CLCW is new), then one per 0.1 s: never a flood, never silent
    assert 5 <= len(frames) <= 12
    assert all(f.vcid == 7 and f.fhp == FHP_IDLE_ONLY and f.ocf == CLCW_WORD for f in frames)


def test_a_clcw_change_goes_out_without_waiting_for_the_idle_interval() -> None:
    clcw = [CLCW_WORD]
    with transmitter(baud=10_000_000, idle=30.0, clcw=clcw) as (tx, line):
        tx.start()
        assert wait_for(lambda: len(line.frames()) == 1)
        tx.clcw_changed()  # the same CLCW: the frame sent already carried it
        time.sleep(0.2)
        assert len(line.frames()) == 1
        clcw[0] = CLCW_WORD + 1
        tx.clcw_changed()
        assert wait_for(lambda: len(line.frames()) == 2, timeout=2.0)
        assert line.frames()[1].ocf == CLCW_WORD + 1


def test_a_clcw_already_carried_by_a_data_frame_sends_no_idle_frame() -> None:
    # The payload reports a CLCW change after the commands of the frame ran: their replies,
    # queued first, carry it, and no idle frame goes out for it alone.
    clcw = [CLCW_WORD]
    with transmitter(baud=10_000_000, idle=30.0, clcw=clcw) as (tx, line):
        tx.start()
        assert wait_for(lambda: len(line.frames()) == 1)
        clcw[0] = CLCW_WORD + 1
        tx.enqueue(0, PusTm(100, 1, 1, bytes(8)).pack())
        assert wait_for(lambda: len(line.frames()) == 2)
        tx.clcw_changed()
        time.sleep(0.2)
        frames = line.frames()
    assert [(f.vcid, f.ocf) for f in frames[1:]] == [(0, CLCW_WORD + 1)]


def test_real_time_packets_go_before_bulk() -> None:
    with transmitter(baud=10_000_000, idle=30.0) as (tx, line):
        bulk = PusTm(100, 13, 1, bytes(3000)).pack()
        realtime = PusTm(100, 1, 1, bytes(8)).pack()
        tx.enqueue(1, bulk)
        tx.enqueue(0, realtime)
        tx.start()
        assert wait_for(lambda: len(line.frames()) >= 4)
        vcids = [f.vcid for f in line.frames()]
    assert vcids[0] == 0 and vcids[1:4] == [1, 1, 1]


def test_frames_are_paced_to_the_line_rate() -> None:
    baud = 115200  # a 1119-octet frame is 97 ms on the line
    with transmitter(baud=baud, idle=30.0) as (tx, line):
        for _ in range(40):
            tx.enqueue(1, PusTm(100, 13, 1, bytes(1000)).pack())
        tx.start()
        time.sleep(0.5)
        sent = len(line.frames())
    # 0.5 s of line time holds ~5 frames; the transmitter may run one frame ahead
    assert 2 <= sent <= 8


def test_news_while_the_line_is_busy_goes_in_the_next_frame_without_a_wake_up() -> None:
    # The transmitter is not woken for a packet or a CLCW while it waits for the line (each
    # wake-up costs CPU for nothing): both still go out in the frame built when the line frees.
    clcw = [CLCW_WORD]
    with transmitter(baud=115200, idle=30.0, clcw=clcw) as (tx, line):
        for _ in range(3):
            tx.enqueue(1, PusTm(100, 13, 1, bytes(1000)).pack())
        tx.start()
        assert wait_for(lambda: len(line.frames()) >= 2)
        clcw[0] = CLCW_WORD + 1
        tx.clcw_changed()
        tx.enqueue(0, PusTm(100, 1, 1, bytes(8)).pack())
        assert wait_for(lambda: any(f.vcid == 0 for f in line.frames()), timeout=2.0)
        frames = line.frames()
    realtime = next(f for f in frames if f.vcid == 0)
    assert realtime.ocf == CLCW_WORD + 1
    assert frames.index(realtime) <= 3  # behind at most the frame on the line and the next
