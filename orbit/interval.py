"""A span of time, and what of a window lies outside a list of spans: the sunlight between
eclipses, a planner's free time between jobs. Plain floats: no numpy, no orbit."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Interval:
    """A span of time in UNIX seconds: [start, end)."""

    start: float
    end: float

    @property
    def duration_s(self) -> float:
        return self.end - self.start

    def contains(self, t: float) -> bool:
        return self.start <= t < self.end


def complement(spans: Iterable[Interval], start: float, end: float) -> list[Interval]:
    """The parts of [start, end) outside every one of `spans` (in time order; they may overlap
    each other and reach past either end of the window)."""
    outside: list[Interval] = []
    t = start
    for span in spans:
        if span.end <= t:
            continue
        if span.start >= end:
            break
        if span.start > t:
            outside.append(Interval(t, span.start))
        t = max(t, span.end)
    if t < end:
        outside.append(Interval(t, end))
    return outside
