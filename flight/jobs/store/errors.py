"""The job store's errors."""

from __future__ import annotations


class JobStoreError(Exception):
    """Base of the job store's errors."""


class UnknownJob(JobStoreError):
    """No job with that id is in the store (never submitted, or deleted)."""


class InvalidTransition(JobStoreError):
    """The job's current state does not allow the requested change."""


class StoreCorrupt(JobStoreError):
    """The store file is not a job store, or an operation met a damaged database."""


class RecordCorrupt(JobStoreError):
    """The job's record failed its checksums beyond repair: set aside (JOB_RECORD_CORRUPT)."""

    def __init__(self, job_id: int) -> None:
        super().__init__(f"job {job_id}: its record failed its checksums and could not be repaired")
        self.job_id = job_id
