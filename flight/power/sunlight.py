"""When the bench's spacecraft is sunlit: always, on a periodic orbit, or in the intervals a file
lists (which the bench writes from a propagated orbit). Times are the payload's clock (UNIX
seconds), so that a bench running its orbit faster than real time writes intervals already
scaled, and the battery model integrates each interval at its own speed-up.

The file holds one sunlit interval per line, `start end` in UNIX seconds, `#` comments and blank
lines ignored; every time outside them is eclipse. The bench replaces the file whole, and the
payload reads it again when it changes, keeping the last good intervals when a new content
cannot be parsed (flight/followed_file.py).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Protocol

from flight.followed_file import FollowedFile, number_pairs, replace_lines

# A segment of time and whether it is sunlit: (start, end, sunlit), start < end.
Segment = tuple[float, float, bool]


class SunlightError(ValueError):
    """Sunlight parameters or a sunlight file that make no sense; says what was found."""


class Sunlight(Protocol):
    """Whether the spacecraft is sunlit, over the payload's clock."""

    def segments(self, start: float, end: float) -> list[Segment]:
        """[start, end] cut where sunlight changes, in order (empty when end <= start)."""
        ...

    def sunlit_at(self, t: float) -> bool: ...


class AlwaysSunlit:
    """A spacecraft that never enters eclipse (a dawn-dusk orbit, or a bench on the mains)."""

    def segments(self, start: float, end: float) -> list[Segment]:
        return [(start, end, True)] if end > start else []

    def sunlit_at(self, t: float) -> bool:
        return True


class OrbitSunlight:
    """A circular orbit's sunlight: sunlit for `sunlit_fraction` of each `period_s` (orbit
    seconds), starting `phase_s` into a period at `epoch` on the payload's clock; `time_scale`
    orbit seconds pass per second of that clock."""

    def __init__(
        self,
        period_s: float,
        sunlit_fraction: float,
        epoch: float,
        *,
        phase_s: float = 0.0,
        time_scale: float = 1.0,
    ) -> None:
        if not (math.isfinite(period_s) and period_s > 0):
            raise SunlightError(f"orbit period must be above 0 s, found {period_s!r}")
        if not 0.0 <= sunlit_fraction <= 1.0:
            raise SunlightError(f"sunlit fraction must be in [0, 1], found {sunlit_fraction!r}")
        if not (math.isfinite(time_scale) and time_scale > 0):
            raise SunlightError(f"time scale must be above 0, found {time_scale!r}")
        self._period = period_s / time_scale  # on the payload's clock
        self._sunlit = sunlit_fraction * self._period
        # The payload-clock time at which a period (and its sunlit arc) begins.
        self._origin = epoch - (phase_s % period_s) / time_scale

    def _into(self, t: float) -> float:
        return (t - self._origin) % self._period

    def sunlit_at(self, t: float) -> bool:
        return self._into(t) < self._sunlit

    def segments(self, start: float, end: float) -> list[Segment]:
        out: list[Segment] = []
        t = start
        while t < end:
            into = self._into(t)
            period_start = t - into
            if into < self._sunlit:
                change, sunlit = period_start + self._sunlit, True
            else:
                change, sunlit = period_start + self._period, False
            # Floating-point rounding can put `change` at t itself: step to the next edge.
            if change <= t:
                change = math.nextafter(t, math.inf)
            _append(out, t, min(change, end), sunlit)
            t = change
        return out


class IntervalSunlight:
    """Sunlit in the given intervals (start, end), eclipse elsewhere."""

    def __init__(self, intervals: Iterable[tuple[float, float]] = ()) -> None:
        self.intervals = merged(intervals)

    def sunlit_at(self, t: float) -> bool:
        return any(a <= t < b for a, b in self.intervals)

    def segments(self, start: float, end: float) -> list[Segment]:
        out: list[Segment] = []
        t = start
        for a, b in self.intervals:
            if b <= t:
                continue
            if a >= end:
                break
            if a > t:
                _append(out, t, a, False)
            _append(out, max(a, t), min(b, end), True)
            t = min(b, end)
        if t < end:
            _append(out, t, end, False)
        return out


class SunlightFile(FollowedFile[IntervalSunlight]):
    """The intervals of a file the bench writes, read again whenever the file changes. No file
    yet: eclipse (the bench writes it before it matters; the battery model is the side that
    must not be optimistic)."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, _read_intervals, IntervalSunlight(), "sunlight file")

    def sunlit_at(self, t: float) -> bool:
        return self.current().sunlit_at(t)

    def segments(self, start: float, end: float) -> list[Segment]:
        return self.current().segments(start, end)


def parse_intervals(text: str) -> list[tuple[float, float]]:
    """The `start end` lines of a sunlight file; SunlightError naming the line that is wrong."""
    intervals = []
    for number, line, start, end in number_pairs(text):
        if not (math.isfinite(start) and math.isfinite(end) and start < end):
            raise SunlightError(f"line {number}: expected 'start end' with start < end: {line!r}")
        intervals.append((start, end))
    return intervals


def _read_intervals(text: str) -> IntervalSunlight:
    return IntervalSunlight(parse_intervals(text))


def write_intervals(path: Path, intervals: Sequence[tuple[float, float]]) -> None:
    """Replace the sunlight file `path` with `intervals` whole (for the bench)."""
    header = "# sunlit intervals: start end (UNIX seconds, the payload's clock)"
    replace_lines(path, [header, *(f"{start!r} {end!r}" for start, end in intervals)])


def merged(intervals: Iterable[tuple[float, float]]) -> list[tuple[float, float]]:
    """Intervals sorted, with overlapping and touching ones joined; empty ones dropped."""
    out: list[tuple[float, float]] = []
    for a, b in sorted((a, b) for a, b in intervals if b > a):
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def _append(out: list[Segment], start: float, end: float, sunlit: bool) -> None:
    if end > start:
        out.append((start, end, sunlit))
