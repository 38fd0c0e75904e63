"""The bench's baseplate: the spacecraft's interface temperature under the thermal model, held
constant or following a profile the bench writes from a propagated orbit (warmer in sunlight,
colder in eclipse: hil/environment.py). Times are the payload's clock (UNIX seconds), so that a
bench running its orbit faster than real time writes the profile already compressed.

The profile file holds one breakpoint per line, `time celsius`, in increasing time order, `#`
comments and blank lines ignored; between two breakpoints the temperature is linear, before the
first and after the last it holds the nearest one. The bench replaces the file whole, and the
payload reads it again when it changes, keeping the last good profile when a new content cannot
be parsed (flight/followed_file.py, as the sunlight file). Until the file is first read, the
baseplate is the configured constant.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from flight.followed_file import FollowedFile, number_pairs, replace_lines

# Any interface temperature a spacecraft could give, with room: a value beyond is a unit error.
MIN_C, MAX_C = -150.0, 200.0


class BaseplateError(ValueError):
    """A baseplate profile that makes no sense; says which line and what was found."""


class Baseplate(Protocol):
    """The baseplate's temperature (C) at a time of the payload's clock."""

    def at(self, t: float) -> float: ...


class ConstantBaseplate:
    """The same temperature at every time (a bench without an orbit)."""

    def __init__(self, celsius: float) -> None:
        self.celsius = celsius

    def at(self, t: float) -> float:
        return self.celsius


class BaseplateProfile:
    """Linear between breakpoints (time, celsius), held beyond the first and the last."""

    def __init__(self, points: Sequence[tuple[float, float]]) -> None:
        if not points:
            raise BaseplateError("a baseplate profile needs at least one breakpoint")
        times = [t for t, _ in points]
        if any(b <= a for a, b in itertools.pairwise(times)):
            raise BaseplateError("baseplate breakpoints must be in increasing time order")
        self._times = times
        self._values = [c for _, c in points]

    def at(self, t: float) -> float:
        i = bisect.bisect_right(self._times, t)
        if i == 0:
            return self._values[0]
        if i == len(self._times):
            return self._values[-1]
        t0, t1 = self._times[i - 1], self._times[i]
        c0, c1 = self._values[i - 1], self._values[i]
        return c0 + (c1 - c0) * (t - t0) / (t1 - t0)


class BaseplateFile(FollowedFile[Baseplate]):
    """The profile of a file the bench writes, read again whenever the file changes; `fallback_c`
    until it has been read once."""

    def __init__(self, path: Path, fallback_c: float) -> None:
        super().__init__(path, _read_profile, ConstantBaseplate(fallback_c), "baseplate file")

    def at(self, t: float) -> float:
        return self.current().at(t)


def parse_profile(text: str) -> list[tuple[float, float]]:
    """The `time celsius` lines of a baseplate file; BaseplateError naming the line that is
    wrong."""
    points: list[tuple[float, float]] = []
    for number, line, t, celsius in number_pairs(text):
        if not (math.isfinite(t) and math.isfinite(celsius) and MIN_C <= celsius <= MAX_C):
            raise BaseplateError(
                f"line {number}: expected 'time celsius' with a temperature in "
                f"[{MIN_C:g}, {MAX_C:g}] C: {line!r}"
            )
        if points and t <= points[-1][0]:
            raise BaseplateError(f"line {number}: time {t!r} is not after the line before's")
        points.append((t, celsius))
    if not points:
        raise BaseplateError("no breakpoint in the file")
    return points


def _read_profile(text: str) -> Baseplate:
    return BaseplateProfile(parse_profile(text))


def write_profile(path: Path, points: Sequence[tuple[float, float]]) -> None:
    """Replace the baseplate file `path` with `points` whole (for the bench)."""
    header = "# baseplate: time celsius (UNIX seconds, the payload's clock)"
    replace_lines(path, [header, *(f"{t!r} {celsius:.3f}" for t, celsius in points)])
