"""[schedule]: the time-based schedule's settings (docs/schedule.md)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ScheduleConfig:
    """[schedule] of the flight configuration."""

    # How far ahead of now a release time must be when an activity is inserted or time-shifted
    # (ECSS-E-ST-70-41C's time margin): less is refused with SCHEDULE_TOO_EARLY.
    time_margin_s: float = 1.0
    # An activity whose time passed while the payload was down is released at start when it is
    # no more than this late, else dropped (SCHEDULE_ACTIVITY_DROPPED, reason MISSED).
    missed_grace_s: float = 60.0
    # Activities the schedule holds at most (SCHEDULE_FULL beyond).
    max_activities: int = 256
    # The execution function's state of a schedule that was never commanded (a new state
    # directory); afterwards it is the one last commanded, kept across restarts.
    enabled_at_first_start: bool = True

    def __post_init__(self) -> None:
        if self.time_margin_s < 0 or self.missed_grace_s < 0:
            raise ValueError("time_margin_s and missed_grace_s must be 0 or more")
        if not 1 <= self.max_activities <= 0xFFFF:
            raise ValueError("max_activities must be 1 to 65535")
