"""Reed-Solomon TM coding (ICD 6a): CPU time per codeblock against the line it must keep up with.

At 921600 baud (8N1) one direction carries 92 160 octets/s, 72 coded frames of 1279 line octets
(marker + codeblock). The target: encoding and clean decoding of one second of that traffic take
under 10 % of a second of one core, so that neither end notices the coding; decoding at a bit
error rate of 1e-4 (about one corrupted octet per codeblock) is reported beside them.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable

import numpy as np
import pytest

from spacelink.icd import TmCoding
from spacelink.reed_solomon import decode_codeblock, encode_codeblock
from spacelink.tmframe import channel_frame_octets
from tests.bench.timing import LINE_OCTETS_PER_S, best_seconds

CODEBLOCKS_PER_S = LINE_OCTETS_PER_S / channel_frame_octets(TmCoding.RS)  # 72.06
FRAME = random.Random(2026).randbytes(1115)
BLOCK = encode_codeblock(FRAME)


def _noisy_blocks(ber: float, count: int = 512) -> list[bytes]:
    rng = np.random.default_rng(7)
    clean = np.frombuffer(BLOCK, dtype=np.uint8)
    flips = rng.random((count, clean.size * 8)) < ber
    return [(clean ^ np.packbits(row)).tobytes() for row in flips]


NOISY = _noisy_blocks(1e-4)
_noisy = itertools.cycle(NOISY)


def _decode_noisy() -> object:
    result = decode_codeblock(next(_noisy))
    assert result.frame == FRAME
    return result


CASES: dict[str, Callable[[], object]] = {
    "encode": lambda: encode_codeblock(FRAME),
    "decode, clean": lambda: decode_codeblock(BLOCK),
    "decode, BER 1e-4": _decode_noisy,
}


@pytest.mark.parametrize("case", list(CASES))
def test_rs_per_codeblock(benchmark, report, case: str) -> None:  # type: ignore[no-untyped-def]
    """Time per 1275-octet codeblock, and that time at 72 codeblocks/s as a share of a core."""
    benchmark.group = "Reed-Solomon per codeblock (5 interleaved RS(255,223) codewords)"
    benchmark(CASES[case])
    if benchmark.enabled:
        seconds = benchmark.stats.stats.mean
        share = seconds * CODEBLOCKS_PER_S
        benchmark.extra_info["share of a core at 921600 baud"] = round(share, 5)
        report(
            "Reed-Solomon TM coding (ICD 6a)",
            f"{case:<17} {seconds * 1e6:7.1f} us per codeblock, {share:.2%} of one core "
            f"at {CODEBLOCKS_PER_S:.0f} codeblocks/s (921600 baud)",
        )


def test_encode_and_clean_decode_keep_up_with_the_line(benchmark, report) -> None:  # type: ignore[no-untyped-def]
    """Encode + clean decode of one second of 921600-baud traffic: < 10 % of a second of CPU."""
    fast = not benchmark.enabled  # --benchmark-disable: a quick smoke run
    assert decode_codeblock(BLOCK).frame == FRAME
    fns = [CASES["encode"], CASES["decode, clean"], CASES["decode, BER 1e-4"]]

    def measure() -> list[float]:
        return best_seconds(fns, repeat=2 if fast else 7, loop_s=0.01 if fast else 0.1)

    benchmark.group = "Reed-Solomon share of the line rate (timeit)"
    encode_s, clean_s, noisy_s = benchmark.pedantic(measure, rounds=1, iterations=1)
    share = (encode_s + clean_s) * CODEBLOCKS_PER_S
    noisy_share = (encode_s + noisy_s) * CODEBLOCKS_PER_S
    benchmark.extra_info.update(
        {
            "encode_us": round(encode_s * 1e6, 1),
            "clean_decode_us": round(clean_s * 1e6, 1),
            "ber_1e-4_decode_us": round(noisy_s * 1e6, 1),
            "encode+clean decode share of a core": round(share, 5),
        }
    )
    report(
        "Reed-Solomon TM coding (ICD 6a)",
        f"one second at 921600 baud ({CODEBLOCKS_PER_S:.0f} codeblocks): encode + clean decode "
        f"{share:.2%} of a core (target < 10 %), encode + decode at BER 1e-4 {noisy_share:.2%}",
    )
    assert share < 0.10, f"encode + clean decode take {share:.1%} of a core at 921600 baud"
