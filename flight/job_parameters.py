"""The JOBS_STATUS parameters, read live from the job store, the runner, the compute and the
file store."""

from __future__ import annotations

from collections.abc import Callable

from flight.files.upload_store import UploadStore
from flight.jobs.registry import ModelRegistry
from flight.jobs.runner import JobRunner
from flight.jobs.store import JobState, JobStore, JobStoreError

# What JOBS_FAILED counts: every way a job ends without a result.
_FAILED = (JobState.FAILED, JobState.CANCELLED, JobState.TIMED_OUT)


def job_parameters(
    jobs: JobStore,
    runner: JobRunner,
    registry: ModelRegistry,
    files: UploadStore,
    *,
    provider: Callable[[], int],
    compute_counter: Callable[[str], float],
    active_downloads: Callable[[], int],
) -> dict[str, Callable[[], object]]:
    """Sources of the JOBS_STATUS parameters; `provider` gives the ExecutionProvider value in
    use, `compute_counter` the compute's counters by name."""

    def counts() -> dict[JobState, int]:
        try:
            return jobs.counts()
        except JobStoreError:
            return dict.fromkeys(JobState, 0)

    return {
        "JOBS_QUEUED": lambda: counts()[JobState.QUEUED],
        "JOBS_RUNNING": lambda: counts()[JobState.RUNNING],
        "JOBS_SUCCEEDED": lambda: counts()[JobState.SUCCEEDED],
        "JOBS_FAILED": lambda: sum(counts()[s] for s in _FAILED),
        "CURRENT_JOB": lambda: runner.current_job,
        "CURRENT_JOB_PROGRESS": lambda: runner.progress if runner.current_job else 0,
        "EXECUTION_PROVIDER": provider,
        "INFERENCE_RUNS": lambda: int(compute_counter("runs")) & 0xFFFFFFFF,
        "VOTE_DISAGREEMENTS": lambda: int(compute_counter("disagreements")) & 0xFFFFFFFF,
        "LAST_JOB_DURATION": lambda: min(runner.last_duration_ms, 0xFFFFFFFF),
        "MODELS_REGISTERED": lambda: min(len(registry.entries()), 0xFFFF),
        "FILES_STORED": lambda: min(len(files.files()), 0xFFFF),
        "STORE_USED": lambda: min(files.used_bytes(), 0xFFFFFFFF),
        "UPLOADS_IN_PROGRESS": lambda: min(len(files.transfers()), 0xFFFF),
        "DOWNLOADS_ACTIVE": active_downloads,
        "STORAGE_HOLD": lambda: runner.storage_hold.holding,
    }
