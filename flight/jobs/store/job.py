"""A job as the store hands it out: its states and its record's fields, and their limits."""

from __future__ import annotations

import enum
from collections.abc import Collection
from dataclasses import dataclass

from flight.jobs.redundancy import Redundancy

MAX_JOB_ID = 0xFFFF_FFFF
MAX_PRIORITY = 255
SHA256_LEN = 32


class JobState(enum.IntEnum):
    """Where a job is in its life; the last four are final."""

    QUEUED = 0
    RUNNING = 1
    SUCCEEDED = 2
    FAILED = 3
    CANCELLED = 4
    TIMED_OUT = 5


FINAL_STATES: frozenset[JobState] = frozenset(
    {JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED, JobState.TIMED_OUT}
)
ACTIVE_STATES: frozenset[JobState] = frozenset({JobState.QUEUED, JobState.RUNNING})
STATE_VALUES = frozenset(int(s) for s in JobState)


@dataclass(frozen=True, slots=True)
class Job:
    """One inference job as last committed to the store."""

    job_id: int
    model: str
    input_file: str
    priority: int
    redundancy: Redundancy
    deadline_s: float | None
    submitted_at: float
    state: JobState
    attempts: int
    started_at: float | None
    finished_at: float | None
    result_file: str | None
    result_sha256: bytes | None
    failure_code: int | None
    failure_text: str | None
    progress: int
    model_version: int = 0
    # The request ID (4 octets), source ID (2) and acknowledgement flags (1) of the TC that
    # submitted the job: its later verification reports go to that request, across restarts.
    request: bytes = b""
    runs: int = 0
    disagreements: int = 0
    result_size: int | None = None
    # Losses of its compute the job may have caused (its worker crashed or hung under it, or
    # the payload ended while it ran); it fails at a limit, so that a poison job cannot loop.
    losses: int = 0

    @property
    def deadline_at(self) -> float | None:
        """Clock time after which the job is overdue; None when it has no deadline."""
        return None if self.deadline_s is None else self.submitted_at + self.deadline_s

    @property
    def is_final(self) -> bool:
        """True once the job can no longer change state."""
        return self.state in FINAL_STATES


def state_names(states: Collection[JobState]) -> str:
    """States as a refusal names them: "QUEUED or RUNNING"."""
    return " or ".join(s.name for s in sorted(states))
