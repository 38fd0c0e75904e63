"""Runs queued jobs one at a time on a worker thread, from the queue to the stored result.

The worker picks the next job as soon as one is queued (no polling latency), records every
change of its state in the job store (a durable commit) before reporting it, runs onnxruntime,
stores the result atomically, and reports to the TC that submitted the job. The main loop only
enforces the running job's deadline and carries out cancellations; a run cut short is stopped
through onnxruntime's RunOptions, and whatever it still returns is dropped, since the store
refuses a second final state.
"""

from __future__ import annotations

import contextlib
import io
import logging
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import onnxruntime as ort  # type: ignore[import-untyped]

from flight.commanding import VerificationReporter, detail_octets
from flight.files.failures import store_failure_name
from flight.files.upload_store import FileStoreError, UploadStore
from flight.jobs.executor import Executor, ExecutorError
from flight.jobs.model_check import InputMismatch, InputProblem, check_input, load_input
from flight.jobs.redundancy import Redundancy, VotingError
from flight.jobs.registry import ModelEntry, ModelRegistry, RegistryError
from flight.jobs.scheduler import Scheduler
from flight.jobs.store import InvalidTransition, Job, JobState, JobStore, JobStoreError
from flight.services.events import EventReporter
from flight.telemetry import TmPublisher
from spacelink.pus import Stage
from spacelink.spacepacket import AckFlags, RequestId
from telemetry_defs.model import Dictionary

log = logging.getLogger(__name__)

# Request ID (4 octets), source ID, acknowledgement flags.
_REQUEST = struct.Struct(">4sHB")

# Progress steps of JOB_SUBMIT (dictionary enum JobStep).
STEP_QUEUED = 1
STEP_STARTED = 2
STEP_RUN_DONE = 3
STEP_RESULT_STORED = 4

_INPUT_FAILURES = {
    InputProblem.NOT_NPY: "INPUT_NOT_NPY",
    InputProblem.WRONG_COUNT: "INPUT_WRONG_COUNT",
    InputProblem.WRONG_DTYPE: "INPUT_WRONG_DTYPE",
    InputProblem.WRONG_RANK: "INPUT_WRONG_RANK",
    InputProblem.WRONG_DIMENSION: "INPUT_WRONG_SHAPE",
}
_EXPECTED_RUNS = {Redundancy.NONE: 1, Redundancy.DMR: 2, Redundancy.TMR: 3}


def pack_request(request_id: RequestId, source_id: int, ack: AckFlags) -> bytes:
    """What the job store keeps of the submitting TC, to report to it later."""
    return _REQUEST.pack(request_id.pack(), source_id, int(ack))


def input_failure(problem: InputMismatch) -> str:
    """The dictionary failure name for an input that does not fit its model."""
    return _INPUT_FAILURES[problem.reason]


def result_file_name(job_id: int, outputs: int) -> str:
    return f"job-{job_id}.npy" if outputs == 1 else f"job-{job_id}.npz"


def serialise_outputs(outputs: dict[str, np.ndarray]) -> bytes:
    """One output as .npy, several as .npz keyed by output name."""
    buffer = io.BytesIO()
    if len(outputs) == 1:
        np.save(buffer, next(iter(outputs.values())), allow_pickle=False)
    else:
        cast(Any, np.savez)(buffer, **outputs)  # the stubs fear a key named allow_pickle
    return buffer.getvalue()


# How often an idle worker looks at the queue anyway: deadlines of queued jobs expire on time.
IDLE_POLL_S = 1.0


@dataclass(frozen=True)
class _Work:
    job: Job
    entry: ModelEntry
    input_path: Path
    run_options: ort.RunOptions


@dataclass(frozen=True)
class _Finished:
    result: bytes
    outputs: int
    runs: int
    disagreements: int


@dataclass(frozen=True)
class _Failed:
    failure: str
    text: str
    runs: int = 0


class JobRunner:
    """The job worker, and what the main loop and the services ask of it."""

    def __init__(
        self,
        dictionary: Dictionary,
        store: JobStore,
        registry: ModelRegistry,
        files: UploadStore,
        executor: Executor,
        tm: TmPublisher,
        events: EventReporter,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._d = dictionary
        self.store = store
        self.registry = registry
        self._files = files
        self.executor = executor
        self._tm = tm
        self._events = events
        self._clock = clock
        self._monotonic = monotonic
        self.scheduler = Scheduler(store, clock, on_expired=self._expired)
        self._wake = threading.Event()
        # Held by JOB_SUBMIT while it stores and acknowledges a job: the worker does not start
        # a job before its submission is reported.
        self.submitting = threading.Lock()
        self._stopping = threading.Event()
        self._paused = False
        self._current: _Work | None = None
        self.last_duration_ms = 0
        self._thread = threading.Thread(target=self._worker, name="job-worker", daemon=True)

    # -- lifetime -----------------------------------------------------------------------------

    def start(self) -> None:
        """Requeue what a crash interrupted, then start the worker."""
        for job in self.store.recover():
            self._events.raise_event("JOB_REQUEUED", job_id=job.job_id, attempts=job.attempts)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        current = self._current
        if current is not None:
            current.run_options.terminate = True
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    # -- what services and the main loop ask ------------------------------------------------

    @property
    def paused(self) -> bool:
        """True: no queued job starts (JOB_QUEUE_HOLD)."""
        return self._paused

    @paused.setter
    def paused(self, hold: bool) -> None:
        self._paused = hold
        self._wake.set()

    def wake(self) -> None:
        """A job was queued: the worker looks at the queue now."""
        self._wake.set()

    @property
    def current_job(self) -> int:
        current = self._current
        return current.job.job_id if current is not None else 0

    def reporter(self, job: Job) -> VerificationReporter | None:
        """Reports to the TC that submitted `job` (None for a job submitted otherwise)."""
        if len(job.request) != _REQUEST.size:
            return None
        request_id, source_id, ack = _REQUEST.unpack(job.request)
        return VerificationReporter(
            self._tm, RequestId.unpack(request_id), source_id, AckFlags(ack)
        )

    def model_in_use(self, name: str, version: int) -> bool:
        for job in self.store.list({JobState.QUEUED, JobState.RUNNING}, limit=1_000_000):
            if job.model == name and job.model_version in (0, version):
                return True
        return False

    def cancel(self, job_id: int) -> Job:
        """Cancel a queued or running job (UnknownJob, InvalidTransition from the store)."""
        job = self.store.cancel(job_id)
        current = self._current
        if current is not None and current.job.job_id == job_id:
            current.run_options.terminate = True
        self._ended(job, "JOB_CANCELLED", f"job {job_id} cancelled by the ground")
        return job

    def tick(self) -> None:
        """Main loop: stop the running job when its deadline passes."""
        current = self._current
        if current is None or current.run_options.terminate:
            return
        if self.scheduler.overdue(current.job):
            current.run_options.terminate = True
            try:
                job = self.store.mark_timed_out(current.job.job_id)
            except JobStoreError as exc:
                log.info("job %d not timed out: %s", current.job.job_id, exc)
                return
            self._ended(job, "JOB_TIMED_OUT", f"deadline of {job.deadline_s:g} s passed")

    # -- the worker ---------------------------------------------------------------------------

    def _worker(self) -> None:
        while not self._stopping.is_set():
            self._wake.wait(IDLE_POLL_S)
            self._wake.clear()
            while not self._stopping.is_set() and not self._paused:
                try:
                    if not self._run_next():
                        break
                except Exception:  # the worker must outlive any bug in one job
                    log.exception("job worker: unexpected error")
                    break

    def _run_next(self) -> bool:
        """Run the next queued job to its end; False when there is none."""
        try:
            with self.submitting:
                job = self.scheduler.next_job()
                if job is None:
                    return False
                job = self.store.mark_running(job.job_id)
        except InvalidTransition:
            return True  # cancelled between the pick and the start: pick again
        except JobStoreError as exc:
            log.error("cannot start the next job: %s", exc)
            return False
        try:
            entry = self.registry.entry(job.model, job.model_version)
            input_path = self._files.path_of(job.input_file)
        except (RegistryError, FileStoreError) as exc:
            name = "UNKNOWN_MODEL" if isinstance(exc, RegistryError) else "NO_SUCH_FILE"
            self._fail(job, name, str(exc))
            return True
        reporter = self.reporter(job)
        if reporter is not None:
            reporter.success(Stage.PROGRESS, STEP_STARTED)
        work = _Work(job, entry, input_path, ort.RunOptions())
        self._current = work
        started = self._monotonic()
        log.info("job %d started (attempt %d): %s v%d", job.job_id, job.attempts, entry.name,
                 entry.version)  # fmt: skip
        try:
            outcome = self._compute(work)
            if work.run_options.terminate:
                log.info("job %d stopped: its outcome is dropped", job.job_id)
            elif isinstance(outcome, _Failed):
                self._fail(job, outcome.failure, outcome.text, runs=outcome.runs)
            else:
                self._store_result(job, outcome, started)
        finally:
            self._current = None
        return True

    def _store_result(self, job: Job, outcome: _Finished, started: float) -> None:
        name = result_file_name(job.job_id, outcome.outputs)
        try:
            # A result left by an attempt that a crash cut short before it was recorded.
            if any(f.name == name for f in self._files.files()):
                self._files.delete(name)
            stored = self._files.put(name, outcome.result)
        except (FileStoreError, OSError) as exc:
            self._fail(job, store_failure_name(exc), f"result not stored: {exc}", outcome.runs)
            return
        try:
            job = self.store.mark_succeeded(
                job.job_id,
                stored.name,
                stored.sha256,
                result_size=stored.size,
                runs=outcome.runs,
                disagreements=outcome.disagreements,
            )
        except JobStoreError as exc:
            # Cancelled or timed out at the last moment: that final state stands.
            log.info("job %d: result not recorded: %s", job.job_id, exc)
            with contextlib.suppress(FileStoreError, OSError):
                self._files.delete(name)
            return
        duration_ms = int((self._monotonic() - started) * 1000)
        self.last_duration_ms = duration_ms
        reporter = self.reporter(job)
        if reporter is not None:
            reporter.success(Stage.PROGRESS, STEP_RESULT_STORED)
            reporter.success(Stage.COMPLETION)
        if outcome.disagreements:
            self._events.raise_event(
                "VOTE_DISAGREEMENT",
                job_id=job.job_id,
                runs=outcome.runs,
                disagreements=outcome.disagreements,
            )
        self._events.raise_event(
            "JOB_SUCCEEDED",
            job_id=job.job_id,
            runs=min(outcome.runs, 255),
            disagreements=min(outcome.disagreements, 255),
            duration=min(duration_ms, 0xFFFFFFFF),
        )
        log.info("job %d succeeded in %d ms: %s", job.job_id, duration_ms, stored.name)

    def _fail(self, job: Job, failure: str, text: str, runs: int = 0) -> None:
        code = self._d.failure_named(failure).code
        try:
            job = self.store.mark_failed(job.job_id, code, text, runs=runs)
        except JobStoreError as exc:
            log.info("job %d: failure (%s) not recorded: %s", job.job_id, text, exc)
            return
        self._ended(job, failure, text)

    def _ended(self, job: Job, failure: str, text: str) -> None:
        """Report a job that ended without a result: to its TC and as an event."""
        code = self._d.failure_named(failure).code
        reporter = self.reporter(job)
        if reporter is not None:
            reporter.failure(Stage.COMPLETION, code, detail_octets(text))
        self._events.raise_event(
            "JOB_FAILED",
            job_id=job.job_id,
            state=int(job.state),
            code=code,
            detail=text.encode()[:200].decode(errors="ignore"),
        )
        log.info("job %d ended %s: %s %s", job.job_id, job.state.name, failure, text)

    def _expired(self, job: Job) -> None:
        self._ended(job, "JOB_TIMED_OUT", f"deadline of {job.deadline_s:g} s passed in queue")

    def _compute(self, work: _Work) -> _Finished | _Failed:
        job = work.job
        reporter = self.reporter(job)
        expected = _EXPECTED_RUNS[job.redundancy]
        runs = 0

        def on_run(n: int) -> None:
            nonlocal runs
            runs = n
            if reporter is not None:
                reporter.success(Stage.PROGRESS, STEP_RUN_DONE)
            # A job cancelled or timed out meanwhile refuses progress.
            with contextlib.suppress(JobStoreError):
                self.store.mark_progress(job.job_id, min(95, 95 * n // expected))

        try:
            feeds = check_input(work.entry.signature, load_input(work.input_path.read_bytes()))
            result = self.executor.execute(
                work.entry.key,
                work.entry.path,
                feeds,
                job.redundancy,
                on_run=on_run,
                run_options=work.run_options,
            )
            data = serialise_outputs(result.outputs)
        except InputMismatch as exc:
            return _Failed(input_failure(exc), str(exc))
        except VotingError as exc:
            return _Failed("VOTE_FAILED", str(exc), runs)
        except ExecutorError as exc:
            return _Failed("INFERENCE_FAILED", str(exc), runs)
        except OSError as exc:
            return _Failed("NO_SUCH_FILE", f"input {job.input_file}: {exc}")
        except Exception as exc:  # a bug must fail the job, not kill the worker
            log.exception("job %d crashed", job.job_id)
            return _Failed("EXECUTION_FAILED", repr(exc), runs)
        return _Finished(data, len(result.outputs), result.runs, result.disagreements)
