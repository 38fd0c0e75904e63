"""Timing helpers of the benchmarks: best-of-N loops, interleaved so that drift hits all alike."""

from __future__ import annotations

import timeit
from collections.abc import Callable, Sequence

LINE_OCTETS_PER_S = 921600 / 10
"""A 921600-baud 8N1 line: ten line bits per octet, 92 160 octets/s."""


def loops_for(fn: Callable[[], object], seconds: float) -> int:
    """How many calls of `fn` take about `seconds` (at least one)."""
    number = 1
    while (taken := timeit.timeit(fn, number=number)) < seconds / 4:
        number *= 2
    return max(1, round(number * seconds / taken))


def best_seconds(
    fns: Sequence[Callable[[], object]], *, repeat: int = 7, loop_s: float = 0.02
) -> list[float]:
    """Best per-call time of each of `fns` over `repeat` loops of about `loop_s` seconds.

    The loops of the functions alternate, so a busy spell on the host hits them all alike, and
    the minimum over the repeats is kept: noise only ever adds time.
    """
    numbers = [loops_for(fn, loop_s) for fn in fns]
    best = [float("inf")] * len(fns)
    for _ in range(repeat):
        for i, (fn, number) in enumerate(zip(fns, numbers, strict=True)):
            best[i] = min(best[i], timeit.timeit(fn, number=number) / number)
    return best
