"""The upper confidence bound of an SDC rate measured in a cell's trials."""

from __future__ import annotations

import math

CONFIDENCE = 0.95


def sdc_upper_bound(sdc: int, trials: int, confidence: float = CONFIDENCE) -> float:
    """One-sided Clopper-Pearson upper bound of the SDC rate (about 3/N when none was seen)."""
    if trials < 1 or not 0 <= sdc <= trials:
        raise ValueError(f"expected 0 <= sdc <= trials and trials >= 1, found {sdc}/{trials}")
    if sdc == trials:
        return 1.0
    alpha = 1.0 - confidence
    if sdc == 0:
        return 1.0 - alpha ** (1.0 / trials)
    low, high = sdc / trials, 1.0
    for _ in range(100):  # bisection to far below the printed precision
        mid = (low + high) / 2
        if _binomial_cdf(sdc, trials, mid) > alpha:
            low = mid
        else:
            high = mid
    return high


def _binomial_cdf(k: int, n: int, p: float) -> float:
    log_p, log_q = math.log(p), math.log1p(-p)
    terms = [
        math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * log_p
        + (n - i) * log_q
        for i in range(k + 1)
    ]  # fmt: skip
    top = max(terms)
    return math.exp(top) * sum(math.exp(t - top) for t in terms)
