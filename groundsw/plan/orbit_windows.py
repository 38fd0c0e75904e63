"""The planner's view of an orbit: the passes over one station and the eclipses of a window,
from the `orbit` package. The one module of the planner that imports it (numpy and sgp4): the
planner itself works on plain intervals, so that a test or a bench can give it any sky."""

from __future__ import annotations

from groundsw.plan.model import OrbitWindows
from orbit import Interval, Orbit, OrbitTimeline, Station, Tle


def orbit_windows(source: Orbit | Tle, station: Station, start: float, end: float) -> OrbitWindows:
    """The passes over `station` and the eclipses (umbra) that overlap [start, end)."""
    timeline = OrbitTimeline(source, station, start)
    return windows_of(timeline, start, end)


def windows_of(timeline: OrbitTimeline, start: float, end: float) -> OrbitWindows:
    """The same from a timeline (a bench's, already computed); `start` not before its own."""
    return OrbitWindows(
        start=start,
        end=end,
        passes=tuple(Interval(p.aos, p.los) for p in timeline.passes(start, end)),
        eclipses=tuple(timeline.eclipses(start, end)),
    )
