"""Link codec throughput on one core, in MB/s and as a multiple of a 921600-baud line.

Target (issue 2): each >= 10 MB/s, over a hundred times the 92 160 octets/s of 921600 baud, so
that the link never costs a Jetson's CPU more than a percent. MB/s counts line octets (CLTUs, or
sync marker plus randomized frame), the unit of the line rate it is compared with.

Streams are fed in 4 KiB chunks, and in the bursts flight and ground really read: `read_burst`
gathers 4 ms of line after the first octet, 369 octets at 921600 baud.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from spacelink.cltu import CltuDecoder, CltuEnd, encode_cltu
from spacelink.icd import TM_FRAME_LENGTH, TM_VCID_BULK, TM_VCID_REALTIME, LinkParameters
from spacelink.spacepacket import PusTm
from spacelink.tcframe import TcFrame
from spacelink.tmdemux import PacketExtractor
from spacelink.tmframe import FrameSynchronizer
from spacelink.tmmux import VirtualChannelMux
from tests.bench.timing import LINE_OCTETS_PER_S

CHUNK = 4096
BURST = 1 + int(LINE_OCTETS_PER_S * 0.004)  # read_burst at 921600 baud: 369 octets
RNG = random.Random(2026)

TC_FRAME = TcFrame(500, 0, 1, RNG.randbytes(1017)).pack()  # a maximum frame: 1024 octets
CLTU = encode_cltu(TC_FRAME)  # 1186 octets
CLTU_COUNT = 64
CLTU_STREAM = CLTU * CLTU_COUNT

# Downlink: 1000-octet test packets on VC 1 (bulk), or 122-octet TM[3,25] reports on VC 0.
BULK_PACKETS = [PusTm(100, 13, 1, RNG.randbytes(978), seq_count=n).pack() for n in range(64)]
HK_PACKETS = [PusTm(100, 3, 25, RNG.randbytes(100), seq_count=n).pack() for n in range(512)]


def _encode_cltu() -> list[bytes]:
    return [encode_cltu(TC_FRAME)]


def _decode_cltus(chunk: int) -> Callable[[], list[bytes]]:
    def run() -> list[bytes]:
        decoder, out = CltuDecoder(), []
        for i in range(0, len(CLTU_STREAM), chunk):
            out += [
                c.data for c in decoder.feed(CLTU_STREAM[i : i + chunk]) if c.end is CltuEnd.TAIL
            ]
        return out

    return run


def _mux(vcid: int, packets: list[bytes]) -> Callable[[], list[bytes]]:
    def run() -> list[bytes]:
        mux = VirtualChannelMux(LinkParameters(), lambda: 0x0100_0000)
        for packet in packets:
            mux.push(vcid, packet)
        frames = []
        while (frame := mux.next_frame()) is not None:
            frames.append(frame)
        return frames

    return run


TM_STREAMS = {
    "1000-octet packets": b"".join(_mux(TM_VCID_BULK, BULK_PACKETS)()),
    "122-octet packets": b"".join(_mux(TM_VCID_REALTIME, HK_PACKETS)()),
}
TM_PACKETS = {"1000-octet packets": BULK_PACKETS, "122-octet packets": HK_PACKETS}


def _decode_tm(stream: bytes, chunk: int) -> Callable[[], list[bytes]]:
    def run() -> list[bytes]:
        sync, demux, out = FrameSynchronizer(scid=500), PacketExtractor(), []
        for i in range(0, len(stream), chunk):
            for frame in sync.feed(stream[i : i + chunk]):
                out += demux.feed(frame)
        return out

    return run


@dataclass(frozen=True)
class Case:
    name: str
    run: Callable[[], list[bytes]]
    line_octets: int
    """Octets on the line per run."""
    expected: list[bytes]
    """What a run returns: CLTUs, frame data fields with fill, line frames or packets."""

    def check(self) -> None:
        assert self.run() == self.expected


def _cases() -> list[Case]:
    cases = [
        Case("CLTU encode, 1024-octet frame", _encode_cltu, len(CLTU), [CLTU]),
    ]
    fill = b"\x55" * (-len(TC_FRAME) % 7)
    for chunk in (CHUNK, BURST):
        cases.append(
            Case(
                f"CLTU decode, {chunk}-octet chunks",
                _decode_cltus(chunk),
                len(CLTU_STREAM),
                [TC_FRAME + fill] * CLTU_COUNT,
            )
        )
    for label, vcid, packets in (
        ("1000-octet packets", TM_VCID_BULK, BULK_PACKETS),
        ("122-octet packets", TM_VCID_REALTIME, HK_PACKETS),
    ):
        stream = TM_STREAMS[label]
        frames = [stream[i : i + 4 + TM_FRAME_LENGTH] for i in range(0, len(stream), 1119)]
        cases.append(Case(f"TM frame encode, {label}", _mux(vcid, packets), len(stream), frames))
    for label, stream in TM_STREAMS.items():
        for chunk in (CHUNK, BURST):
            cases.append(
                Case(
                    f"TM frame decode, {label}, {chunk}-octet chunks",
                    _decode_tm(stream, chunk),
                    len(stream),
                    TM_PACKETS[label],
                )
            )
    return cases


CASES = _cases()


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_throughput(benchmark, report, case: Case) -> None:  # type: ignore[no-untyped-def]
    """MB/s of line octets through one codec, from the mean (and the best) time per run."""
    case.check()
    benchmark.group = "link codec throughput"
    benchmark.extra_info["line_octets_per_run"] = case.line_octets
    benchmark(case.run)
    if not benchmark.enabled:  # --benchmark-disable: the smoke run checks results only
        return
    stats = benchmark.stats.stats
    mb_s, best_mb_s = case.line_octets / stats.mean / 1e6, case.line_octets / stats.min / 1e6
    lines = mb_s * 1e6 / LINE_OCTETS_PER_S
    benchmark.extra_info.update(
        {"MB/s": round(mb_s, 2), "best MB/s": round(best_mb_s, 2), "x 921600 baud": round(lines)}
    )
    report(
        "link codec throughput, one core (target >= 10 MB/s; mean, best)",
        f"{case.name:<50} {mb_s:6.1f} MB/s {best_mb_s:6.1f} MB/s  {lines:5.0f} x 921600 baud",
    )
    # Noise must not fail the run: only a gross regression does.
    assert mb_s >= 2, f"{case.name}: {mb_s:.1f} MB/s, far below the 10 MB/s target"
