"""What to run next: overdue jobs timed out first, then the highest priority, first come.

Pure decisions over the job store; the executor owns the threads and the clock's consumers.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from flight.jobs.store import Job, JobStore

log = logging.getLogger(__name__)


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

    def next_job(self) -> Job | None:
        """Time out overdue jobs, then return the queued job to run next (None when idle)."""
        for job in self._store.expire(self._clock()):
            if self._on_expired is not None:
                self._on_expired(job)
        return self._store.next_runnable()

    def overdue(self, job: Job, now: float | None = None) -> bool:
        """Whether a job's deadline has passed at `now` (the scheduler's clock when omitted)."""
        deadline_at = job.deadline_at
        if deadline_at is None:
            return False
        return (self._clock() if now is None else now) > deadline_at
