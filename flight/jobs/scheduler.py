"""What to run next: overdue jobs timed out first, then the highest priority, first come; only
at or above a lowest priority when the power budget sets one.

Pure decisions over the job store; the executor owns the threads and the clock's consumers.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from flight.jobs.store import Job, JobStore

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Pick:
    """The job to run next, or (when the best queued job is below the lowest priority allowed)
    the job held back; both None when nothing is queued."""

    job: Job | None
    held: Job | None = None


class Scheduler:
    """Picks the next job from the store; expired jobs are timed out on the way."""

    def __init__(
        self,
        store: JobStore,
        clock: Callable[[], float] = time.time,
        on_expired: Callable[[Job], None] | None = None,
    ) -> None:
        self._store = store
        self._clock = clock
        # Timed-out jobs must be reported to the ground; the store has committed them by then.
        self._on_expired = on_expired

    def pick(self, min_priority: int = 0) -> Pick:
        """Time out overdue jobs, then the queued job to run next at or above `min_priority`.
        The queue runs by priority, so the best queued job is the only candidate: below the
        limit it is held back, and every job behind it too."""
        for job in self._store.expire(self._clock()):
            if self._on_expired is not None:
                self._on_expired(job)
        best = self._store.next_runnable()
        if best is not None and best.priority < min_priority:
            return Pick(None, best)
        return Pick(best)

    def overdue(self, job: Job, now: float | None = None) -> bool:
        """Whether a job's deadline has passed at `now` (the scheduler's clock when omitted)."""
        deadline_at = job.deadline_at
        if deadline_at is None:
            return False
        return (self._clock() if now is None else now) > deadline_at
