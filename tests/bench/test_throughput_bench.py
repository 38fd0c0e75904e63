"""Link codec throughput on one core, in MB/s and as a multiple of a 921600-baud line.

Target (issue 2): each >= 10 MB/s, over a hundred times the 92 160 octets/s of 921600 baud, so
that the link never costs a Jetson's CPU more than a percent.
"""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest

from spacelink.cltu import CltuDecoder, encode_cltu
from spacelink.icd import LinkParameters
from spacelink.spacepacket import PusTm
from spacelink.tcframe import TcFrame
from spacelink.tmdemux import PacketExtractor
from spacelink.tmframe import FrameSynchronizer
from spacelink.tmmux import VirtualChannelMux
from tests.bench.conftest import best_seconds

LINE_921600 = 921600 / 10
RNG = random.Random(2026)
TC_FRAME = TcFrame(500, 0, 1, RNG.randbytes(1017)).pack()  # a maximum frame: 1024 octets
CLTU = encode_cltu(TC_FRAME)
CLTU_STREAM = CLTU * 64
TM_PACKETS = [PusTm(100, 13, 1, RNG.randbytes(978)).pack() for _ in range(64)]  # 1000 octets


def _tm_stream() -> bytes:
    mux = VirtualChannelMux(LinkParameters(), lambda: 0)
    for packet in TM_PACKETS:
        mux.push(1, packet)
    out = b""
    while (frame := mux.next_frame()) is not None:
        out += frame
    return out


TM_STREAM = _tm_stream()


def _cltu_decode() -> None:
    decoder = CltuDecoder()
    for i in range(0, len(CLTU_STREAM), 4096):
        decoder.feed(CLTU_STREAM[i : i + 4096])


def _tm_decode() -> None:
    sync, demux = FrameSynchronizer(scid=500), PacketExtractor()
    for i in range(0, len(TM_STREAM), 4096):
        for frame in sync.feed(TM_STREAM[i : i + 4096]):
            demux.feed(frame)


CASES: dict[str, tuple[Callable[[], object], int]] = {
    # name: (one run, octets it processes on the line side)
    "CLTU encode (1024-octet frame)": (lambda: encode_cltu(TC_FRAME), len(CLTU)),
    "CLTU decode (4 KiB chunks)": (_cltu_decode, len(CLTU_STREAM)),
    "TM frame encode (mux, 1000-octet packets)": (_tm_stream, len(TM_STREAM)),
    "TM frame decode (sync + demux, 4 KiB chunks)": (_tm_decode, len(TM_STREAM)),
}


@pytest.mark.parametrize("case", list(CASES))
def test_throughput(benchmark, case: str) -> None:  # type: ignore[no-untyped-def]
    run, octets = CASES[case]
    benchmark.group = "link codec throughput"
    benchmark(run)
    mb_s = octets / benchmark.stats.stats.mean / 1e6
    benchmark.extra_info.update(
        {"MB/s": round(mb_s, 1), "x 921600 baud": round(mb_s * 1e6 / LINE_921600)}
    )
    print(f"\n{case}: {mb_s:.1f} MB/s = {mb_s * 1e6 / LINE_921600:.0f} x a 921600-baud line")
    assert mb_s > 2, "far below the 10 MB/s target: something regressed badly"


def test_best_case_summary() -> None:
    """The same numbers as best-of-7, printed as one table for the closing note."""
    print("\nthroughput, best of 7 (MB/s, multiple of 921600 baud):")
    for case, (run, octets) in CASES.items():
        mb_s = octets / best_seconds(run, number=20) / 1e6
        print(f"  {case:<46} {mb_s:6.1f} MB/s  {mb_s * 1e6 / LINE_921600:6.0f} x")
