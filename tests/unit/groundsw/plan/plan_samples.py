"""Skies, batteries and jobs the planner's tests share: a made-up orbit whose numbers are easy
to check by hand, and the shipped sample orbit over a Munich-like station."""

from __future__ import annotations

import calendar
import functools
from pathlib import Path

from groundsw.plan.model import (
    LinkModel,
    OrbitWindows,
    PlanJob,
    PlanSettings,
    PowerModel,
    Redundancy,
    ThermalLimit,
)
from orbit import Interval, parse_station, read_tle

T0 = 1_800_000_000.0  # 2027-01-15T08:00:00Z: any time does for a made-up sky
HOUR = 3600.0
SAMPLE_TLE = Path(__file__).resolve().parents[4] / "orbit" / "data" / "aipayload-1.tle"
MUNICH = "48.1,11.6,550"
# The sample orbit's first pass over Munich is at 23:13 on its epoch's day: planning from 23:00
# puts the upload at once.
SAMPLE_START = float(calendar.timegm((2026, 11, 30, 23, 0, 0)))
NO_MARGIN = LinkModel(baud=115200, result_overhead_s=0.0, pass_margin_s=0.0)


def made_up_sky(
    passes: list[tuple[float, float]], eclipses: list[tuple[float, float]], hours: float = 12.0
) -> OrbitWindows:
    """Passes and eclipses given in hours from T0."""
    return OrbitWindows(
        start=T0,
        end=T0 + hours * HOUR,
        passes=tuple(Interval(T0 + a * HOUR, T0 + b * HOUR) for a, b in passes),
        eclipses=tuple(Interval(T0 + a * HOUR, T0 + b * HOUR) for a, b in eclipses),
    )


def job(
    name: str,
    compute_s: float,
    deadline_h: float | None = None,
    priority: int = 0,
    octets: int = 0,
) -> PlanJob:
    return PlanJob(
        name,
        "cnn",
        f"{name}.npy",
        compute_s=compute_s,
        result_octets=octets,
        priority=priority,
        deadline=None if deadline_h is None else T0 + deadline_h * HOUR,
    )


def settings(hours: float = 12.0, lead_s: float = 0.0, **kwargs: float) -> PlanSettings:
    return PlanSettings(T0, horizon_s=hours * HOUR, lead_s=lead_s, **kwargs)


FULL_DUTY = ThermalLimit(1.0)


@functools.cache
def sample_windows(hours: float = 24.0) -> OrbitWindows:
    from groundsw.plan.orbit_windows import orbit_windows

    return orbit_windows(
        read_tle(SAMPLE_TLE), parse_station(MUNICH), SAMPLE_START, SAMPLE_START + hours * HOUR
    )


def sample_day_jobs() -> list[PlanJob]:
    """The day of docs/planning.md: ten jobs of four customers, priorities that are not their
    urgency, results of 400 kB."""

    def tmr(name: str, hours: float, priority: int, run_s: float, runs: Redundancy) -> PlanJob:
        return PlanJob(
            name,
            "cnn",
            f"{name}.npy",
            compute_s=run_s * runs.runs,
            result_octets=400_000,
            priority=priority,
            redundancy=runs,
            deadline=SAMPLE_START + hours * HOUR,
        )

    return [
        tmr("wildfire-1", 2.5, 0, 240, Redundancy.TMR),
        tmr("wildfire-2", 2.5, 0, 240, Redundancy.TMR),
        tmr("flood-1", 4.0, 10, 300, Redundancy.TMR),
        tmr("flood-2", 4.0, 10, 300, Redundancy.TMR),
        tmr("ships-1", 5.5, 200, 600, Redundancy.NONE),
        tmr("ships-2", 7.0, 200, 600, Redundancy.NONE),
        tmr("crops-1", 7.0, 100, 300, Redundancy.TMR),
        tmr("crops-2", 8.5, 100, 300, Redundancy.TMR),
        tmr("ice-1", 8.5, 50, 400, Redundancy.DMR),
        tmr("ice-2", 10.0, 50, 400, Redundancy.DMR),
    ]


SAMPLE_POWER = PowerModel(initial_soc_pct=55.0)
