"""Which pass takes each result down, and when it is on the ground.

The ground fetches results while the link is up, one at a time, the most urgent ready result
first (the earliest deadline; then the first ready). A download is resumable (groundsw job
result), so one that a pass's end cuts goes on in the next pass. The first and last minutes of
a pass are the acquisition's and the fade's: `LinkModel.pass_margin_s` of each end is not used.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from groundsw.plan.model import LinkModel, OrbitWindows, PlanJob
from groundsw.transfer import downlink_seconds
from orbit.interval import Interval

# A download is done when less than this is left (floating point, not the link's resolution).
_DONE_S = 1e-6


@dataclass(frozen=True, slots=True)
class Ready:
    """A result on board from `at`; `key` orders equally urgent ones (the plan's order)."""

    job: PlanJob
    at: float
    key: int


@dataclass(frozen=True, slots=True)
class Delivery:
    """A result on the ground at `at`, its last octets taken by pass number `pass_index`."""

    at: float
    pass_index: int


def result_seconds(job: PlanJob, link: LinkModel, time_scale: float = 1.0) -> float:
    """Orbit seconds of link time one result takes: its requests and reports and its octets."""
    line = downlink_seconds(job.result_octets, link.baud) if job.result_octets else 0.0
    return (link.result_overhead_s + line) * time_scale


def usable_passes(
    windows: OrbitWindows, link: LinkModel, time_scale: float = 1.0
) -> list[tuple[int, Interval]]:
    """(pass number, the part of the pass the downlink can use) within the planning window."""
    margin = link.pass_margin_s * time_scale
    usable = []
    for index, p in enumerate(windows.passes):
        start, end = max(p.start + margin, windows.start), min(p.end - margin, windows.end)
        if end > start:
            usable.append((index, Interval(start, end)))
    return usable


def deliveries(
    ready: Sequence[Ready], windows: OrbitWindows, link: LinkModel, time_scale: float = 1.0
) -> dict[int, Delivery]:
    """When each ready result is on the ground, by its `key`; a result not down by the end of
    the window is absent."""
    waiting = sorted(ready, key=lambda r: (r.at, r.key))
    done: dict[int, Delivery] = {}
    current: Ready | None = None
    left = 0.0
    for index, span in usable_passes(windows, link, time_scale):
        t = span.start
        while t < span.end:
            if current is None:
                candidates = [r for r in waiting if r.at <= t]
                if not candidates:
                    later = [r.at for r in waiting if r.at > t]
                    if not later or min(later) >= span.end:
                        break
                    t = min(later)
                    continue
                current = min(candidates, key=_urgency)
                waiting.remove(current)
                left = result_seconds(current.job, link, time_scale)
            step = min(left, span.end - t)
            t += step
            left -= step
            if left <= _DONE_S:
                done[current.key] = Delivery(t, index)
                current = None
    return done


def _urgency(r: Ready) -> tuple[float, float, int]:
    deadline = r.job.deadline if r.job.deadline is not None else math.inf
    return (deadline, r.at, r.key)
