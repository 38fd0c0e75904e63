"""Space packet build and parse: ours against `spacepackets` on the same packets.

Target (issue 2): ours at least as fast, i.e. ratio ours/theirs <= 1. Ratios are measured in one
run, so machine noise cancels; only a loose sanity bound is asserted.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from spacepackets.ecss.tc import PusTc as TheirTc
from spacepackets.ecss.tm import PusTm as TheirTm

from spacelink.cdstime import CdsTime
from spacelink.spacepacket import PusTc, PusTm
from tests.bench.conftest import best_seconds

TIME = CdsTime(25_000, 43_200_000)
TC_SMALL = PusTc(100, 17, 1, seq_count=5, source_id=3)
TC_LARGE = PusTc(100, 200, 1, bytes(range(200)), seq_count=5, source_id=3)
TM_SMALL = PusTm(100, 1, 1, bytes(4), seq_count=5, time=TIME)
TM_LARGE = PusTm(100, 3, 25, bytes(range(100)), seq_count=5, time=TIME)
RAW = {
    name: p.pack()
    for name, p in {
        "tc_small": TC_SMALL,
        "tc_large": TC_LARGE,
        "tm_small": TM_SMALL,
        "tm_large": TM_LARGE,
    }.items()
}


def _their_tc(tc: PusTc) -> Callable[[], bytes]:
    return lambda: TheirTc(
        service=tc.service,
        message_subtype=tc.subtype,
        apid=tc.apid,
        seq_count=tc.seq_count,
        source_id=tc.source_id,
        app_data=tc.app_data,
    ).pack()


def _their_tm(tm: PusTm) -> Callable[[], bytes]:
    stamp = tm.time.pack()
    return lambda: TheirTm(
        service=tm.service,
        message_subtype=tm.subtype,
        timestamp=stamp,
        source_data=tm.source_data,
        apid=tm.apid,
        seq_count=tm.seq_count,
    ).pack()


def _our_tc(tc: PusTc) -> Callable[[], bytes]:
    return lambda: PusTc(
        tc.apid, tc.service, tc.subtype, tc.app_data, tc.seq_count, tc.source_id
    ).pack()


def _our_tm(tm: PusTm) -> Callable[[], bytes]:
    return lambda: PusTm(
        tm.apid, tm.service, tm.subtype, tm.source_data, tm.seq_count, time=tm.time
    ).pack()


CASES: dict[str, tuple[Callable[[], object], Callable[[], object]]] = {
    "TC[17,1] build": (_our_tc(TC_SMALL), _their_tc(TC_SMALL)),
    "TC 200 B build": (_our_tc(TC_LARGE), _their_tc(TC_LARGE)),
    "TC[17,1] parse": (
        lambda: PusTc.unpack(RAW["tc_small"]),
        lambda: TheirTc.unpack(RAW["tc_small"]),
    ),
    "TC 200 B parse": (
        lambda: PusTc.unpack(RAW["tc_large"]),
        lambda: TheirTc.unpack(RAW["tc_large"]),
    ),
    "TM[1,1] build": (_our_tm(TM_SMALL), _their_tm(TM_SMALL)),
    "TM[3,25] build": (_our_tm(TM_LARGE), _their_tm(TM_LARGE)),
    "TM[1,1] parse": (
        lambda: PusTm.unpack(RAW["tm_small"]),
        lambda: TheirTm.unpack(RAW["tm_small"], timestamp_len=7),
    ),
    "TM[3,25] parse": (
        lambda: PusTm.unpack(RAW["tm_large"]),
        lambda: TheirTm.unpack(RAW["tm_large"], timestamp_len=7),
    ),
}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("side", ["ours", "spacepackets"])
def test_packet_codec(benchmark, case: str, side: str) -> None:  # type: ignore[no-untyped-def]
    benchmark.group = f"packet: {case}"
    ours, theirs = CASES[case]
    benchmark(ours if side == "ours" else theirs)


def test_ratio_ours_to_spacepackets() -> None:
    """Per-operation time ratio ours/theirs, best of 7 repeats each."""
    ratios = {
        case: best_seconds(ours) / best_seconds(theirs) for case, (ours, theirs) in CASES.items()
    }
    print("\nours/spacepackets time ratio (target <= 1.0):")
    for case, ratio in ratios.items():
        print(f"  {case:<16} {ratio:5.2f}")
    assert max(ratios.values()) < 3, ratios
