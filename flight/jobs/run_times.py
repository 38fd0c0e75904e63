"""How long a model's runs take, learnt from the jobs that ran: what the power budget reckons a
job's energy from before it lets the job start, and what a worker's run limits are set from."""

from __future__ import annotations

import math
import threading

from flight.compute.job_compute import EXPECTED_RUNS
from flight.jobs.redundancy import Redundancy

# Weight of the newest run in the running mean: a few runs settle it, and one run that waited
# long at a held gate does not set it for good.
NEWEST_WEIGHT = 0.3
# Weight of the newest run in the decaying mean behind a run limit.
LIMIT_NEWEST_WEIGHT = 0.2


class RunTimes:
    """Seconds per run of each model (by model key), learnt from the jobs that ran; a model
    that has not run yet is reckoned at `unknown_run_s` per run. Thread-safe."""

    def __init__(self, unknown_run_s: float) -> None:
        if not (math.isfinite(unknown_run_s) and unknown_run_s >= 0):
            raise ValueError(f"unknown_run_s must be 0 s or more, got {unknown_run_s!r}")
        self.unknown_run_s = unknown_run_s
        self._lock = threading.Lock()
        self._per_run: dict[str, float] = {}
        self._slowest: dict[str, float] = {}

    def learn(self, model_key: str, runs: int, seconds: float) -> None:
        """A job of `model_key` made `runs` runs in `seconds` (where they ran)."""
        if runs <= 0 or not (math.isfinite(seconds) and seconds > 0):
            return
        per_run = seconds / runs
        with self._lock:
            previous = self._per_run.get(model_key)
            self._per_run[model_key] = (
                per_run
                if previous is None
                else (1 - NEWEST_WEIGHT) * previous + NEWEST_WEIGHT * per_run
            )
            # The slower of the last and a decaying mean: one fast run must not make the next
            # slow one look hung.
            slowest = self._slowest.get(model_key)
            if slowest is not None:
                decayed = (1 - LIMIT_NEWEST_WEIGHT) * slowest + LIMIT_NEWEST_WEIGHT * per_run
                per_run_limit = max(per_run, decayed)
            else:
                per_run_limit = per_run
            self._slowest[model_key] = per_run_limit

    def forget(self, model_key: str) -> None:
        """The model was deleted or reloaded: what its runs took no longer holds."""
        with self._lock:
            self._per_run.pop(model_key, None)
            self._slowest.pop(model_key, None)

    def slowest(self, model_key: str) -> float | None:
        """Seconds per run a time limit is set from (None until the model ran)."""
        with self._lock:
            return self._slowest.get(model_key)

    def per_run(self, model_key: str) -> float:
        with self._lock:
            return self._per_run.get(model_key, self.unknown_run_s)

    def estimate(self, model_key: str, redundancy: Redundancy) -> float:
        """Seconds a job of `model_key` in `redundancy` will compute."""
        return self.per_run(model_key) * EXPECTED_RUNS[Redundancy(redundancy)]
