"""A job's compute: its input checked against its SHA-256 and its model, the runs its redundancy
asks, and the checks of the model (weights, known answer) before the result is accepted, with
reruns when a check found and corrected an upset the runs may have seen.

The payload's job runner calls `prepare` for the next job while the current one computes, `run`
for the runs, and `accept` on its bookkeeping thread; what a job needs travels as plain values
(`JobInput`), so the same calls serve a worker process.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, cast

import numpy as np

from flight.compute.run_control import RunControl
from flight.files.upload_store import FileStoreError
from flight.jobs.executor import Executor, ExecutorError, ModelSource
from flight.jobs.model_check import InputMismatch, InputProblem, check_input, load_input
from flight.jobs.redundancy import Redundancy, VotingError
from flight.jobs.registry import ModelCorrupt, ModelEntry, RegistryError
from flight.protection.model_guard import (
    AbftUnsupported,
    GuardError,
    KnownAnswerFailed,
    ModelGuard,
    WeightsUncorrectable,
)
from flight.protection.upsets import UpsetLocation, UpsetLog
from flight.protection.weights import crcs_of

log = logging.getLogger(__name__)

# Times a job is run again after a check found (and corrected) an upset, before it fails.
MAX_RERUNS = 2

EXPECTED_RUNS = {Redundancy.NONE: 1, Redundancy.DMR: 2, Redundancy.TMR: 3, Redundancy.ABFT: 1}

_INPUT_FAILURES = {
    InputProblem.NOT_NPY: "INPUT_NOT_NPY",
    InputProblem.WRONG_COUNT: "INPUT_WRONG_COUNT",
    InputProblem.WRONG_DTYPE: "INPUT_WRONG_DTYPE",
    InputProblem.WRONG_RANK: "INPUT_WRONG_RANK",
    InputProblem.WRONG_DIMENSION: "INPUT_WRONG_SHAPE",
}


class JobNotPrepared(Exception):
    """A run or check asked for a job this compute holds nothing of (prepared elsewhere, or
    in a worker that was lost since)."""


class InputCorrupt(Exception):
    """A job's input no longer matches the SHA-256 recorded when its file was stored."""


def input_failure(problem: InputMismatch) -> str:
    """The dictionary failure name for an input that does not fit its model."""
    return _INPUT_FAILURES[problem.reason]


def guard_failure(exc: Exception) -> str:
    """The dictionary failure name for a model check that could not restore the model."""
    if isinstance(exc, AbftUnsupported):
        return "ABFT_UNSUPPORTED"
    if isinstance(exc, KnownAnswerFailed):
        return "KNOWN_ANSWER_FAILED"
    if isinstance(exc, WeightsUncorrectable):
        return "WEIGHTS_UNCORRECTABLE"
    if isinstance(exc, ModelCorrupt):
        return "MODEL_CORRUPT"
    return "INFERENCE_FAILED"


def _input_or_store_failure(exc: Exception) -> str:
    if isinstance(exc, InputMismatch):
        return input_failure(exc)
    if isinstance(exc, InputCorrupt):
        return "INPUT_CORRUPT"
    if isinstance(exc, RegistryError):
        return "UNKNOWN_MODEL"
    return "NO_SUCH_FILE"


@dataclass(frozen=True)
class JobInput:
    """What a job's compute needs: its model, its mode and its input file's octets as stored."""

    job_id: int
    entry: ModelEntry
    redundancy: Redundancy
    input_octets: bytes
    input_sha256: bytes
    input_name: str


@dataclass(frozen=True)
class Computed:
    """The runs' outputs and what the voting saw."""

    outputs: dict[str, np.ndarray]
    runs: int
    disagreements: int
    outvoted: int = 0
    # Repair generation of the model's weights when the runs began (-1: not owned).
    generation: int = -1
    # Seconds the runs took where they ran (0.0: not measured there): a run limit learnt from
    # the caller's clock would count the wait for a restarted worker as run time.
    seconds: float = 0.0


@dataclass(frozen=True)
class ComputeFailed:
    """A job that cannot have a result: the dictionary failure name, why, runs done."""

    failure: str
    text: str
    runs: int = 0


@dataclass(frozen=True)
class ComputeLost:
    """The compute was lost under the job (its worker crashed, hung, ran out of memory or was
    restarted): the job did nothing wrong that is known, and may run again."""

    reason: str
    detail: str


@dataclass
class _Prepared:
    job: JobInput
    feeds: dict[str, np.ndarray]
    # CRC-32 of each input array when it was loaded: an upset in memory shows after the runs.
    feed_crcs: dict[str, int]


class JobComputer(Protocol):
    """What the job runner asks of the compute, in this process or a worker's."""

    def prepare(self, job: JobInput) -> ComputeFailed | None: ...

    def queue(self, job_id: int, control: RunControl) -> None: ...

    def run(
        self, job_id: int, control: RunControl, on_run: Callable[[int], None] | None = None
    ) -> Computed | ComputeFailed | ComputeLost: ...

    def accept(
        self,
        job_id: int,
        computed: Computed,
        control: RunControl,
        on_run: Callable[[int], None] | None = None,
    ) -> Computed | ComputeFailed | ComputeLost: ...

    def discard(self, job_id: int) -> None: ...


class JobCompute:
    """Prepares, runs and accepts jobs on one executor and (optionally) its model guard."""

    def __init__(
        self, executor: Executor, upsets: UpsetLog, guard: ModelGuard | None = None
    ) -> None:
        """`guard`: checks the model before a result is accepted (none: results are not
        checked beyond the job's own redundancy, and ABFT is refused)."""
        self.executor = executor
        self.guard = guard
        self.upsets = upsets
        self._prepared: dict[int, _Prepared] = {}
        self._lock = threading.Lock()

    def prepare(self, job: JobInput) -> ComputeFailed | None:
        """Load and check the job's input for its run; the failure when it cannot run."""
        try:
            feeds = self._load_input(job)
        except (InputMismatch, InputCorrupt) as exc:
            return ComputeFailed(_input_or_store_failure(exc), str(exc))
        with self._lock:
            self._prepared[job.job_id] = _Prepared(job, feeds, crcs_of(feeds))
        return None

    def queue(self, job_id: int, control: RunControl) -> None:
        """Nothing to send ahead: runs in this process start when `run` is called."""

    def prepared(self, job_id: int) -> JobInput | None:
        """The prepared job of that ID, if any."""
        found = self._get(job_id)
        return found.job if found is not None else None

    def discard(self, job_id: int) -> None:
        """Forget a prepared job (ended, or put back in the queue)."""
        with self._lock:
            self._prepared.pop(job_id, None)

    def run(
        self,
        job_id: int,
        control: RunControl,
        on_run: Callable[[int], None] | None = None,
    ) -> Computed | ComputeFailed:
        """The runs of a prepared job (JobNotPrepared if it is not); `control.terminate` stops
        them from another thread."""
        return self._compute(self._need(job_id), control, on_run)

    def accept(
        self,
        job_id: int,
        computed: Computed,
        control: RunControl,
        on_run: Callable[[int], None] | None = None,
    ) -> Computed | ComputeFailed:
        """The outcome once the model and the input are checked: when a check found (and
        corrected) an upset that the runs may have seen, the job runs again (`on_run` told
        of each rerun's runs)."""
        prepared = self._need(job_id)
        runs = computed.runs
        outcome = computed
        for _ in range(MAX_RERUNS + 1):
            try:
                suspect = self._suspect(prepared, outcome)
            except (GuardError, RegistryError, ExecutorError) as exc:
                return ComputeFailed(guard_failure(exc), str(exc), runs)
            except (FileStoreError, OSError, InputMismatch, InputCorrupt) as exc:
                return ComputeFailed(_input_or_store_failure(exc), str(exc), runs)
            if suspect is None:
                return dataclasses.replace(outcome, runs=runs)
            log.warning("job %d: %s; running it again", job_id, suspect)
            self._restore_input(prepared)
            rerun = self._compute(prepared, control, on_run)
            if isinstance(rerun, ComputeFailed):
                return dataclasses.replace(rerun, runs=runs + rerun.runs)
            outcome = rerun
            runs += rerun.runs
        return ComputeFailed("WEIGHTS_UNCORRECTABLE", "upsets found after every rerun", runs)

    def _need(self, job_id: int) -> _Prepared:
        prepared = self._get(job_id)
        if prepared is None:
            raise JobNotPrepared(f"job {job_id} was not prepared here")
        return prepared

    def _get(self, job_id: int) -> _Prepared | None:
        with self._lock:
            return self._prepared.get(job_id)

    def _load_input(self, job: JobInput) -> dict[str, np.ndarray]:
        """The job's input, checked against the SHA-256 recorded when its file was stored."""
        if hashlib.sha256(job.input_octets).digest() != job.input_sha256:
            self.upsets.uncorrectable(UpsetLocation.INPUT, f"file {job.input_name}")
            raise InputCorrupt(
                f"input {job.input_name} no longer matches the SHA-256 recorded at its upload"
            )
        return check_input(job.entry.signature, load_input(job.input_octets))

    def _restore_input(self, prepared: _Prepared) -> bool:
        """Input arrays changed since they were loaded get their loaded values back, in place
        (from the file's octets, checked against its SHA-256 again); True when they had."""
        if crcs_of(prepared.feeds) == prepared.feed_crcs:
            return False
        fresh = self._load_input(prepared.job)
        for name, array in prepared.feeds.items():
            np.copyto(array, fresh[name])
        return True

    def _suspect(self, prepared: _Prepared, outcome: Computed) -> str | None:
        """What makes the runs' result suspect (found and corrected now), or None."""
        job = prepared.job
        if self.guard is not None:
            return self.guard.result_suspect(
                job.entry, job.redundancy, outcome.generation, prepared.feeds, prepared.feed_crcs
            )
        if crcs_of(prepared.feeds) != prepared.feed_crcs:
            self.upsets.corrected(UpsetLocation.INPUT, f"job {job.job_id} input in memory")
            return "its input changed in memory"
        return None

    def _compute(
        self,
        prepared: _Prepared,
        control: RunControl,
        on_run: Callable[[int], None] | None,
    ) -> Computed | ComputeFailed:
        job = prepared.job
        entry = job.entry
        runs = 0

        def counted(n: int) -> None:
            nonlocal runs
            runs = n
            if on_run is not None:
                on_run(n)

        key, source = entry.key, cast(ModelSource, entry.path)
        generation, threshold = -1, 0.0
        before_rerun = None
        try:
            if job.redundancy == Redundancy.ABFT:
                if self.guard is None:
                    return ComputeFailed("ABFT_UNSUPPORTED", "ABFT needs the model guard", runs)
                form = self.guard.abft_form(entry)
                key, source, threshold = form.key, form.source, form.threshold
            elif self.guard is not None:
                source = self.guard.source(entry)
            if self.guard is not None:
                loaded = self.executor.cache.get(key, source)
                generation = self.guard.generation(entry, key)
                guard = self.guard

                def before_rerun() -> None:
                    # A failed checksum may come from an upset in the weights or the input,
                    # which a rerun would repeat.
                    guard.repair_weights(loaded)
                    if self._restore_input(prepared):
                        self.upsets.corrected(
                            UpsetLocation.INPUT, f"job {job.job_id} input in memory"
                        )

            result = self.executor.execute(
                key,
                source,
                prepared.feeds,
                job.redundancy,
                tolerance=entry.tolerance,
                abft_threshold=threshold,
                before_rerun=before_rerun,
                on_run=counted,
                run_options=control.options,
            )
        except GuardError as exc:
            return ComputeFailed(guard_failure(exc), str(exc), runs)
        except (FileStoreError, OSError, InputMismatch, InputCorrupt) as exc:
            return ComputeFailed(_input_or_store_failure(exc), str(exc), runs)
        except VotingError as exc:
            self.upsets.uncorrectable(UpsetLocation.OUTPUT, f"job {job.job_id}: {exc}", runs)
            return ComputeFailed("VOTE_FAILED", str(exc), runs)
        except ModelCorrupt as exc:
            return ComputeFailed("MODEL_CORRUPT", str(exc), runs)
        except ExecutorError as exc:
            return ComputeFailed("INFERENCE_FAILED", str(exc), runs)
        repaired = False
        if job.redundancy == Redundancy.ABFT and result.outvoted and self.guard is not None:
            # The weights were repaired between the failed run and its rerun (and counted
            # there): the rerun computed on the repaired weights, which the check after the
            # job compares with.
            now = self.guard.generation(entry, key)
            repaired, generation = now != generation, now
        if result.outvoted and not repaired:
            runs_text = ", ".join(str(i + 1) for i in sorted(result.outvoted))
            self.upsets.corrected(
                UpsetLocation.OUTPUT, f"job {job.job_id} run {runs_text}", len(result.outvoted)
            )
        return Computed(
            result.outputs, result.runs, result.disagreements, result.outvoted_mask, generation
        )
