"""Benchmarks run under `make bench` only; numbers go to benchmark.extra_info and the output."""

from __future__ import annotations

import timeit
from collections.abc import Callable


def best_seconds(fn: Callable[[], object], number: int = 2000, repeat: int = 7) -> float:
    """Best per-call time of `fn` over several repeats: the least noisy estimate on a busy host."""
    return min(timeit.repeat(fn, number=number, repeat=repeat)) / number
