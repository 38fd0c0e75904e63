"""Why a queued job does not start now: the ground's hold (JOB_QUEUE_HOLD), the thermal
governor's (paused, or safe mode), the disk's (no room for a result) and the power budget's
(too little charge for its priority, eclipse, or not enough energy left above the floor).

The first three hold every job; the power budget holds by priority and by each job's energy:
the scheduler picks the best queued job at or above the lowest priority it lets start, then the
budget looks at that job's estimated energy. Held jobs stay queued; a job prepared before a hold
goes back to the queue without its attempt counted. A power hold raises POWER_JOBS_HELD when it
begins and POWER_JOBS_RESUMED when a job starts again (or none waits any more).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from flight.jobs.run_times import RunTimes
from flight.jobs.storage_hold import StorageHold
from flight.jobs.store import Job, JobState, JobStore
from flight.power.governor import HoldReason
from flight.services.events import EventReporter

log = logging.getLogger(__name__)

# Seconds a run of a model is reckoned to take before one of its runs was measured.
DEFAULT_UNKNOWN_RUN_S = 10.0
# Reasons that keep every queued job waiting: the queue keeps its order, so nothing starts
# ahead of a held best job.
_ALL_JOBS = frozenset({HoldReason.FLOOR, HoldReason.ENERGY, HoldReason.NO_READING})


class PowerPolicy(Protocol):
    """What the job queue asks of the power budget."""

    def min_priority(self) -> int:
        """The lowest priority a job may have to start now (above 255: none may)."""
        ...

    def refusal(self, priority: int, seconds: float) -> HoldReason | None:
        """Why a job of `priority` that computes for `seconds` may not
        start now; None when it may."""
        ...

    def soc_pct(self) -> float:
        """The battery's state of charge as last read (NaN: unknown)."""
        ...


@dataclass(frozen=True, slots=True)
class _PowerHold:
    since: float
    job_id: int
    reason: HoldReason
    min_priority: int


class QueueHolds:
    """The holds of the job queue and the power budget's say over each job. Thread-safe: the
    bookkeeper, the compute thread and the monitors all ask or set."""

    def __init__(
        self,
        events: EventReporter,
        storage: StorageHold,
        store: JobStore,
        estimate_s: Callable[[Job], float],
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        """`estimate_s`: the seconds a job is reckoned to compute (from `run_times`)."""
        self._events = events
        self.storage = storage
        self._store = store
        self._estimate_s = estimate_s
        self._monotonic = monotonic
        #: JOB_QUEUE_HOLD: no job starts.
        self.paused = False
        #: The thermal governor paused, or safe mode: no job starts.
        self.thermal = False
        #: The power budget (None: the payload does not budget power; nothing is held for it).
        self.power: PowerPolicy | None = None
        self.run_times = RunTimes(DEFAULT_UNKNOWN_RUN_S)
        self._lock = threading.Lock()
        self._power_hold: _PowerHold | None = None

    def all_held(self) -> bool:
        """No job starts now: the ground's, the thermal governor's or the disk's hold (the disk
        is looked at again, and STORAGE_RESUMED raised when it has room)."""
        if self.storage.holding:
            released = self.storage.release_if_room()
            if released is None:
                return True
            log.warning("the disk has room again after %.1f s: jobs start again", released.held_s)
            self._events.raise_event(
                "STORAGE_RESUMED",
                held=min(int(released.held_s * 1000), 0xFFFFFFFF),
                room=min(released.room, 0xFFFFFFFF),
            )
        return self.paused or self.thermal

    def held_before_compute(self) -> bool:
        """A prepared job must not start computing: the thermal governor or the disk holds."""
        return self.thermal or self.storage.holding

    # -- the power budget ---------------------------------------------------------------------

    def min_priority(self) -> int:
        """The lowest priority the scheduler may pick now (0: any)."""
        power = self.power
        return 0 if power is None else power.min_priority()

    def power_refuses(self, job: Job) -> bool:
        """Whether the power budget keeps `job` from starting now, by its priority and its
        estimated energy; the hold's event when one begins, the resume's when one ends."""
        power = self.power
        if power is None:
            return False
        reason = power.refusal(job.priority, self._estimate_s(job))
        if reason is None:
            self.power_released(job.job_id)
            return False
        self.power_held(job, reason)
        return True

    def power_held(self, job: Job, reason: HoldReason | None = None) -> None:
        """`job`, the best queued one, is kept from starting by the power budget."""
        power = self.power
        if power is None:
            return
        if reason is None:  # held back by priority: the budget says why
            reason = power.refusal(job.priority, 0.0)
            if reason is None:  # the budget changed in between: looked at again next time
                return
        limit = power.min_priority()
        with self._lock:
            if self._power_hold is not None:
                return
            self._power_hold = _PowerHold(self._monotonic(), job.job_id, reason, limit)
        soc = power.soc_pct()
        log.warning("job %d (priority %d) held by the power budget: %s, SoC %.1f %%",
                    job.job_id, job.priority, reason.name, soc)  # fmt: skip
        self._events.raise_event(
            "POWER_JOBS_HELD",
            job_id=job.job_id,
            priority=job.priority,
            reason=int(reason),
            soc=soc,
            min_priority=min(limit, 0xFFFF),
        )

    def power_released(self, job_id: int = 0) -> None:
        """The power budget lets `job_id` start (0: no job waits any more)."""
        with self._lock:
            hold, self._power_hold = self._power_hold, None
        if hold is None:
            return
        held_s = self._monotonic() - hold.since
        power = self.power
        soc = power.soc_pct() if power is not None else math.nan
        log.warning("jobs start again after a power hold of %.1f s (SoC %.1f %%)", held_s, soc)
        self._events.raise_event(
            "POWER_JOBS_RESUMED",
            job_id=job_id,
            held=min(int(held_s * 1000), 0xFFFFFFFF),
            soc=soc,
        )

    def power_held_jobs(self) -> int:
        """Queued jobs the power budget keeps from starting now."""
        hold, power = self._power_hold, self.power
        if hold is None or power is None:
            return 0
        if hold.reason in _ALL_JOBS:  # the best job is held: every job behind it waits too
            return self._store.counts()[JobState.QUEUED]  # from the index: no record read
        limit = power.min_priority()
        queued = self._store.list({JobState.QUEUED}, limit=1_000_000)
        return sum(1 for job in queued if job.priority < limit)
