"""The time-based schedule (ST[11]): its model and its durable store; the service that serves it
is flight/services/schedule.py."""

from flight.schedule.model import (
    Activity,
    DropReason,
    DuplicateRequest,
    Fate,
    Limits,
    ScheduleError,
    ScheduleFull,
    TimeSchedule,
    TooEarly,
    UnknownRequest,
)
from flight.schedule.store import Loaded, LostRecord, ScheduleStore, ScheduleStoreError

__all__ = [
    "Activity",
    "DropReason",
    "DuplicateRequest",
    "Fate",
    "Limits",
    "Loaded",
    "LostRecord",
    "ScheduleError",
    "ScheduleFull",
    "ScheduleStore",
    "ScheduleStoreError",
    "TimeSchedule",
    "TooEarly",
    "UnknownRequest",
]
