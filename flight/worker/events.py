"""What the supervisor tells of its workers: starts and losses (WorkerEvent), and its counters."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass

from flight.worker.losses import LossReason


class EventKind(enum.Enum):
    STARTED = "started"
    LOST = "lost"


@dataclass(frozen=True, slots=True)
class WorkerEvent:
    """Told to the listener: a worker started, or was lost (and will start again)."""

    kind: EventKind
    name: str
    at: float  # wall clock
    pid: int | None
    reason: LossReason | None = None
    detail: str = ""
    restart_in_s: float | None = None


@dataclass(frozen=True, slots=True)
class SupervisorCounters:
    starts: int
    #: Losses (each followed by a restart) by reason, START_FAILED included.
    restarts: Mapping[LossReason, int]
    last_loss_reason: LossReason | None
    last_loss_detail: str
    last_loss_at: float | None  # wall clock
    heartbeat_age_s: float | None  # None while no worker is up
    pid: int | None
    calls: int
    calls_lost: int
