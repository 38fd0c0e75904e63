"""One satellite over one station as a timeline that a bench or a planner asks many times a
second: is the link up, is it sunlit, when is the next pass, when does the light change.

Passes and eclipses are computed a chunk (a day) at a time, ahead of the latest time asked
about, and kept; a question is then a binary search. The timeline only grows forward from
its start: a bench's clock and a planner's horizon both move that way.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

from orbit.eclipses import eclipses
from orbit.errors import OrbitError
from orbit.interval import Interval
from orbit.passes import Pass, passes
from orbit.propagator import Orbit
from orbit.station import Station
from orbit.sun import UMBRA, Shadow
from orbit.tle import Tle

DAY_S = 86400.0


@dataclass(frozen=True, slots=True)
class Change:
    """A change of state at `time` (UNIX seconds): `on` is the state from then on (link up,
    or sunlit)."""

    time: float
    on: bool


class OrbitTimeline:
    """Passes over `station` and eclipses (`shadow`, the umbra by default) from `start` on.

    `horizon_s` bounds how far ahead a `next_...` question looks before answering None (a
    station the orbit never reaches, an orbit in the Sun for weeks at a high beta angle).
    """

    def __init__(
        self,
        source: Orbit | Tle,
        station: Station,
        start: float,
        *,
        shadow: Shadow = UMBRA,
        chunk_s: float = DAY_S,
        horizon_s: float = 7 * DAY_S,
    ) -> None:
        if chunk_s <= 0 or horizon_s <= 0:
            raise ValueError("chunk_s and horizon_s must be positive")
        self.orbit = Orbit.of(source)
        self.station = station
        self.start = start
        self.shadow = shadow
        self._chunk_s = chunk_s
        self._horizon_s = horizon_s
        self._covered_until = start
        self._passes: list[Pass] = []
        self._aos: list[float] = []
        self._eclipses: list[Interval] = []
        self._eclipse_starts: list[float] = []

    @property
    def period_s(self) -> float:
        """The orbital period (seconds) the element set states."""
        return self.orbit.period_s

    def link_up(self, t: float) -> bool:
        """Whether the satellite is above the station's mask at `t`."""
        return self.pass_at(t) is not None

    def pass_at(self, t: float) -> Pass | None:
        """The pass under way at `t`, if any."""
        self._cover(t)
        i = bisect.bisect_right(self._aos, t) - 1
        if i >= 0 and self._passes[i].contains(t):
            return self._passes[i]
        return None

    def sunlit(self, t: float) -> bool:
        """Whether the satellite is out of the shadow at `t`."""
        return self.eclipse_at(t) is None

    def eclipse_at(self, t: float) -> Interval | None:
        """The eclipse under way at `t`, if any."""
        self._cover(t)
        i = bisect.bisect_right(self._eclipse_starts, t) - 1
        if i >= 0 and self._eclipses[i].contains(t):
            return self._eclipses[i]
        return None

    def next_pass(self, t: float) -> Pass | None:
        """The first pass whose AOS is after `t` (not the one under way at `t`); None if there
        is none within the horizon."""
        i = self._search(t, self._aos)
        return None if i is None else self._passes[i]

    def next_eclipse(self, t: float) -> Interval | None:
        """The first eclipse that begins after `t`; None if none within the horizon."""
        i = self._search(t, self._eclipse_starts)
        return None if i is None else self._eclipses[i]

    def next_link_change(self, t: float) -> Change | None:
        """When the link next comes up or goes down after `t`."""
        current = self.pass_at(t)
        if current is not None:
            return Change(current.los, on=False)
        following = self.next_pass(t)
        return None if following is None else Change(following.aos, on=True)

    def next_sunlight_change(self, t: float) -> Change | None:
        """When the satellite next enters or leaves the shadow after `t`."""
        current = self.eclipse_at(t)
        if current is not None:
            return Change(current.end, on=True)
        following = self.next_eclipse(t)
        return None if following is None else Change(following.start, on=False)

    def passes(self, start: float, end: float) -> list[Pass]:
        """The passes that overlap [start, end)."""
        self._cover(end)
        return [p for p in self._passes if p.los > start and p.aos < end]

    def eclipses(self, start: float, end: float) -> list[Interval]:
        """The eclipses that overlap [start, end)."""
        self._cover(end)
        return [e for e in self._eclipses if e.end > start and e.start < end]

    def _search(self, t: float, starts: list[float]) -> int | None:
        """The index of the first start after `t`, computing ahead up to the horizon."""
        self._cover(t)
        while True:
            i = bisect.bisect_right(starts, t)
            if i < len(starts):
                return i
            if self._covered_until >= t + self._horizon_s:
                return None
            self._extend()

    def _cover(self, t: float) -> None:
        if t < self.start:
            raise OrbitError(
                f"{t:.3f} is before the timeline's start, {self.start:.3f}: a timeline only "
                "answers from its start on"
            )
        while self._covered_until <= t:
            self._extend()

    def _extend(self) -> None:
        begin = self._covered_until
        end = begin + self._chunk_s
        # Each chunk gives whole intervals that overlap it: one across the boundary comes
        # again with the next chunk (to a millisecond), and is kept once.
        for found in passes(self.orbit, self.station, begin, end):
            if not self._passes or found.aos > self._passes[-1].los:
                self._passes.append(found)
                self._aos.append(found.aos)
        for eclipse in eclipses(self.orbit, begin, end, self.shadow):
            if not self._eclipses or eclipse.start > self._eclipses[-1].end:
                self._eclipses.append(eclipse)
                self._eclipse_starts.append(eclipse.start)
        self._covered_until = end
