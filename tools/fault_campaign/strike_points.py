"""Where a trial's fault strikes a job: before its first run and after each run of its first
attempt, in the arrays the runs read (the job's own executor, the flight code's accept loop)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import onnxruntime as ort

from flight.jobs.executor import Executor, ModelSource, SessionCache
from flight.jobs.redundancy import Redundancy, RunResult

#: Called with the number of runs done so far (0: before the first) and the job's feeds.
StrikeHook = Callable[[int, dict[str, np.ndarray]], None]


def no_strike(runs: int, feeds: dict[str, np.ndarray]) -> None:
    """A trial that strikes nothing (the fault-free jobs)."""
    return None


class StrikingExecutor(Executor):
    """The payload's executor, which hands the next `execute` (a job's first runs) to an armed
    strike: with the feeds the runs read, before the first run and after each run.

    JobCompute keeps a job's feeds to itself; the executor is where they meet the runs, so the
    strike goes here rather than into flight code."""

    def __init__(self, cache: SessionCache) -> None:
        super().__init__(cache)
        self._strike: StrikeHook | None = None

    def arm(self, strike: StrikeHook) -> None:
        """Strike during the next `execute` only (the reruns after a check are not struck)."""
        self._strike = strike

    def disarm(self) -> None:
        """Forget a strike that had no runs to strike (the job failed before it ran)."""
        self._strike = None

    def execute(
        self,
        key: str,
        source: ModelSource,
        feeds: dict[str, np.ndarray],
        mode: Redundancy,
        *,
        tolerance: float = 0.0,
        abft_threshold: float = 0.0,
        before_rerun: Callable[[], None] | None = None,
        on_run: Callable[[int], None] | None = None,
        run_options: ort.RunOptions | None = None,
    ) -> RunResult:
        """Executor.execute, with the armed strike (if any) before and after each run."""
        strike, self._strike = self._strike, None
        if strike is not None:
            strike(0, feeds)
            told = on_run

            def struck(runs: int) -> None:
                strike(runs, feeds)
                if told is not None:
                    told(runs)

            on_run = struck
        return super().execute(
            key,
            source,
            feeds,
            mode,
            tolerance=tolerance,
            abft_threshold=abft_threshold,
            before_rerun=before_rerun,
            on_run=on_run,
            run_options=run_options,
        )
