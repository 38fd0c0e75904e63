"""Runs queued jobs one at a time, from the queue to the stored result, on two threads.

The compute thread only runs onnxruntime. The bookkeeping thread prepares the next job (picks it
as soon as one is queued, records it started, loads and checks its input) while the current one
computes, and records each outcome (result file stored atomically, state committed durably,
then the reports to the TC that submitted the job and the events) while the next computes. The
main loop only enforces deadlines and carries out cancellations; a run cut short is stopped
through onnxruntime's RunOptions, and whatever it still returns is dropped, since the store
refuses a second final state.
"""

from __future__ import annotations

import contextlib
import io
import logging
import queue
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import numpy as np

from flight.commanding import VerificationReporter, detail_octets
from flight.compute.job_compute import (
    EXPECTED_RUNS,
    Computed,
    ComputeFailed,
    ComputeLost,
    JobComputer,
    JobInput,
)
from flight.compute.run_control import RunControl
from flight.files.failures import store_failure_name
from flight.files.upload_store import FileStoreError, UploadStore
from flight.jobs.holds import PowerPolicy, QueueHolds
from flight.jobs.registry import ModelEntry, ModelRegistry, RegistryError
from flight.jobs.scheduler import Scheduler
from flight.jobs.storage_hold import StorageHold
from flight.jobs.store import (
    InvalidTransition,
    Job,
    JobState,
    JobStore,
    JobStoreError,
    LossLimit,
    RecordCorrupt,
)
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


def pack_request(request_id: RequestId, source_id: int, ack: AckFlags) -> bytes:
    """What the job store keeps of the submitting TC, to report to it later."""
    return _REQUEST.pack(request_id.pack(), source_id, int(ack))


def _preparation_failure(exc: Exception) -> str:
    if isinstance(exc, RegistryError):
        return "UNKNOWN_MODEL"
    if isinstance(exc, FileStoreError):
        return store_failure_name(exc)  # gone, or replaced by a link or special file
    return "NO_SUCH_FILE"


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


Outcome = Computed | ComputeFailed | ComputeLost
# Losses of the compute that a job may have caused, and how many it may cause before it fails
# (a restart asked by the ground, or no worker at all, are not the job's doing).
JOB_LOSSES = frozenset({"CRASHED", "MEMORY", "HUNG", "RUN_TIMEOUT"})
MAX_JOB_LOSSES = 2


@dataclass(frozen=True)
class _Work:
    job: Job
    entry: ModelEntry
    control: RunControl


class JobRunner:
    """The job worker, and what the main loop and the services ask of it."""

    def __init__(
        self,
        dictionary: Dictionary,
        store: JobStore,
        registry: ModelRegistry,
        files: UploadStore,
        compute: JobComputer,
        tm: TmPublisher,
        events: EventReporter,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        *,
        compute_apart: bool = False,
    ) -> None:
        """`compute`: runs the jobs (JobCompute in this process, or a worker's);
        `compute_apart`: in another process, so that this process's death is not a job's doing
        and costs the job that was running no loss."""
        self._d = dictionary
        self._compute_apart = compute_apart
        self.store = store
        self.registry = registry
        self._files = files
        self.compute = compute
        self._tm = tm
        self._events = events
        self._clock = clock
        self._monotonic = monotonic
        self.scheduler = Scheduler(store, clock, on_expired=self._expired)
        self._wake = threading.Event()
        # Set when a job may be waiting in the queue; cleared when the queue was found empty.
        # Looking for a next job while one computes costs the run time (the cores are shared),
        # so it is done only when there may be one.
        self._maybe_queued = threading.Event()
        # Held by JOB_SUBMIT while it stores and acknowledges a job: the worker does not start
        # a job before its submission is reported.
        self.submitting = threading.Lock()
        self._stopping = threading.Event()
        self.storage_hold = StorageHold(files.disk_room_bytes, monotonic)
        self.holds = QueueHolds(events, self.storage_hold, store, self._estimate_s, monotonic)
        # The next job, prepared while the current one computes, and the current one.
        self._next: _Work | None = None
        self._current: _Work | None = None
        self._ready: queue.Queue[_Work | None] = queue.Queue(maxsize=1)
        self._done: queue.Queue[tuple[_Work, Outcome, float]] = queue.Queue()
        self.last_duration_ms = 0
        # Progress of the running job, percent.
        self.progress = 0
        self._threads = [
            threading.Thread(target=self._bookkeeper, name="job-bookkeeper", daemon=True),
            threading.Thread(target=self._computer, name="job-compute", daemon=True),
        ]

    # -- lifetime -----------------------------------------------------------------------------

    def start(self) -> None:
        """Requeue what a crash interrupted, then start the worker. A job found running counts
        a loss when the payload died under it while computing in this process (it may be the
        cause), as `_lost` does."""
        for job in self.store.recover(None if self._compute_apart else self._loss_limit()):
            if job.state is JobState.FAILED:
                self._ended(job, "WORKER_LOST", job.failure_text or "")
                continue
            self._events.raise_event(
                "JOB_REQUEUED", job_id=job.job_id, attempts=job.attempts, reason="RESTART"
            )
        self._maybe_queued.set()  # jobs queued before the restart
        for thread in self._threads:
            thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        for work in (self._current, self._next):
            if work is not None:
                work.control.terminate = True
        self._wake.set()
        with contextlib.suppress(queue.Full):
            self._ready.put_nowait(None)
        for thread in self._threads:
            if thread.is_alive():
                thread.join(timeout)

    # -- what services and the main loop ask ------------------------------------------------

    @property
    def paused(self) -> bool:
        """True: no queued job starts (JOB_QUEUE_HOLD)."""
        return self.holds.paused

    @paused.setter
    def paused(self, hold: bool) -> None:
        self.holds.paused = hold
        self._wake.set()

    @property
    def thermal_hold(self) -> bool:
        """True: no queued job starts (the thermal governor paused, or safe mode)."""
        return self.holds.thermal

    def hold_jobs(self, hold: bool) -> None:
        """The thermal monitor holds (or releases) the queue."""
        self.holds.thermal = hold
        if not hold:
            self._maybe_queued.set()
        self._wake.set()

    def budget_power(self, policy: PowerPolicy, unknown_run_s: float) -> None:
        """Let the power budget say which jobs start (before `start`); a model that has not
        run yet is reckoned at `unknown_run_s` a run."""
        self.holds.power = policy
        self.holds.run_times.unknown_run_s = unknown_run_s

    def requeue_started(self) -> int:
        """Stop the running job and queue it again (safe mode), and put back the one prepared
        after it; how many had started computing (0 or 1)."""
        current, prepared = self._current, self._next
        if prepared is not None and prepared is not current:
            self._put_back(prepared)
        self._maybe_queued.set()
        if current is None or current.control.terminate:
            return 0
        job_id = current.job.job_id
        if self._requeue(current.job, "SAFE_MODE", lambda: self.store.requeue(job_id)) is None:
            return 0
        current.control.terminate = True
        return 1

    def wake(self) -> None:
        """A job was queued: the worker looks at the queue now."""
        self._maybe_queued.set()
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

    def input_in_use(self, name: str) -> int:
        """The ID of a queued or running job whose input is the file `name` (0: none)."""
        for job in self.store.list({JobState.QUEUED, JobState.RUNNING}, limit=1_000_000):
            if job.input_file == name:
                return job.job_id
        return 0

    def model_in_use(self, name: str, version: int) -> bool:
        for job in self.store.list({JobState.QUEUED, JobState.RUNNING}, limit=1_000_000):
            if job.model == name and job.model_version in (0, version):
                return True
        return False

    def cancel(self, job_id: int) -> Job:
        """Cancel a queued or running job (UnknownJob, InvalidTransition from the store)."""
        job = self.store.cancel(job_id)
        for work in (self._current, self._next):
            if work is not None and work.job.job_id == job_id:
                work.control.terminate = True
        self._ended(job, "JOB_CANCELLED", f"job {job_id} cancelled by the ground")
        return job

    def tick(self) -> None:
        """Main loop: stop a started job when its deadline passes."""
        for work in (self._current, self._next):
            if work is None or work.control.terminate or not self.scheduler.overdue(work.job):
                continue
            work.control.terminate = True
            try:
                job = self.store.mark_timed_out(work.job.job_id)
            except JobStoreError as exc:
                log.info("job %d not timed out: %s", work.job.job_id, exc)
                continue
            self._ended(job, "JOB_TIMED_OUT", f"deadline of {job.deadline_s:g} s passed")

    # -- the two job threads ------------------------------------------------------------------
    #
    # The bookkeeper prepares the next job (pick, mark running, load and check its input) while
    # the current one computes, and records each result (stored file, durable state, reports)
    # while the next one computes: in a stream of jobs the bookkeeping is off the critical path.

    def _bookkeeper(self) -> None:
        while not self._stopping.is_set():
            self._wake.wait(IDLE_POLL_S)
            self._wake.clear()
            try:
                while True:
                    try:
                        work, outcome, started = self._done.get_nowait()
                    except queue.Empty:
                        break
                    self._record(work, outcome, started)
                if self._stopping.is_set() or self.holds.all_held() or self._next is not None:
                    continue
                prepared = self._prepare_next()
                if prepared is not None:
                    self._next = prepared
                    self._ready.put(prepared)
            except Exception:  # the payload must outlive any bug in one job
                log.exception("job bookkeeper: unexpected error")

    def _computer(self) -> None:
        while True:
            work = self._ready.get()
            if work is None:
                return
            held = self.holds.held_before_compute() or self.holds.power_refuses(work.job)
            if held and self._put_back(work):
                continue
            self._current = work
            self.progress = 0
            self._next = None
            if self._maybe_queued.is_set():
                self._wake.set()  # the bookkeeper prepares the one after
            started = self._monotonic()
            reporter = self.reporter(work.job)
            if reporter is not None and not work.control.terminate:
                reporter.success(Stage.PROGRESS, STEP_STARTED)
            try:
                outcome = self._compute(work)
            except Exception as exc:  # the thread must outlive any bug in one job
                log.exception("job %d crashed", work.job.job_id)
                outcome = ComputeFailed("EXECUTION_FAILED", repr(exc))
            if isinstance(outcome, Computed):
                # Where the runs were timed (a worker), else here: for the power budget.
                seconds = outcome.seconds or self._monotonic() - started
                self.holds.run_times.learn(work.entry.key, outcome.runs, seconds)
            self._current = None
            self._done.put((work, outcome, started))
            self._wake.set()

    def _put_back(self, work: _Work) -> bool:
        """A prepared job that has not started computing goes back to the queue (the thermal
        governor, the disk or the power budget holds it), its attempt not counted; False when
        it ended meanwhile."""
        self._next = None
        self.compute.discard(work.job.job_id)
        try:
            self.store.requeue(work.job.job_id, undo_attempt=True)
        except JobStoreError as exc:
            log.info("job %d not put back: %s", work.job.job_id, exc)
            return work.control.terminate
        # This preparation is spent: the job will be prepared again when it is picked.
        work.control.terminate = True
        log.info("job %d held before it computed: queued again", work.job.job_id)
        self._maybe_queued.set()
        self._wake.set()
        return True

    def _prepare_next(self) -> _Work | None:
        """The next queued job, started and with its input loaded; None when there is none."""
        while not self._stopping.is_set():
            try:
                with self.submitting:
                    pick = self.scheduler.pick(self.holds.min_priority())
                    job = pick.job
                    if job is None or self.holds.power_refuses(job):
                        # Held ones are looked at again at the next poll or power change.
                        if pick.held is not None:
                            self.holds.power_held(pick.held)
                        elif job is None:
                            self.holds.power_released()
                        self._maybe_queued.clear()
                        return None
                    job = self.store.mark_running(job.job_id)
            except InvalidTransition:
                continue  # cancelled between the pick and the start
            except JobStoreError as exc:
                log.error("cannot start the next job: %s", exc)
                return None
            try:
                entry = self.registry.entry(job.model, job.model_version)
                octets = self._files.read(job.input_file)
                sha256 = self._files.info(job.input_file).sha256
            except (RegistryError, FileStoreError, OSError) as exc:
                self._fail(job, _preparation_failure(exc), str(exc))
                continue
            failed = self.compute.prepare(
                JobInput(job.job_id, entry, job.redundancy, octets, sha256, job.input_file)
            )
            if failed is not None:
                self._fail(job, failed.failure, failed.text)
                continue
            log.info("job %d started (attempt %d): %s v%d", job.job_id, job.attempts,
                     entry.name, entry.version)  # fmt: skip
            work = _Work(job, entry, RunControl())
            self.compute.queue(job.job_id, work.control)
            return work
        return None

    def _estimate_s(self, job: Job) -> float:
        """Seconds `job` is reckoned to compute (an unknown model: as one never run)."""
        try:
            key = self.registry.entry(job.model, job.model_version).key
        except RegistryError:
            key = ""  # its preparation fails: it will not compute
        return self.holds.run_times.estimate(key, job.redundancy)

    def _record(self, work: _Work, outcome: Outcome, started: float) -> None:
        job = work.job
        if not work.control.terminate and isinstance(outcome, Computed):
            outcome = self.compute.accept(job.job_id, outcome, work.control, self._on_run(work))
        self.compute.discard(job.job_id)
        if work.control.terminate:
            log.info("job %d stopped: its outcome is dropped", job.job_id)
        elif isinstance(outcome, ComputeLost):
            self._lost(job, outcome)
        elif isinstance(outcome, ComputeFailed):
            self._fail(job, outcome.failure, outcome.text, runs=outcome.runs)
        else:
            self._store_result(job, outcome, started)

    def _lost(self, job: Job, lost: ComputeLost) -> None:
        """The compute was lost under `job`: it runs again, unless it is the second loss it
        brought about (a job that crashes or hangs its worker every time must not loop). The
        count is in the job's record, so that it holds across restarts of the payload."""
        job_id = job.job_id
        if lost.reason in JOB_LOSSES:
            why = f"worker {lost.reason}: {lost.detail}"
            after = self._requeue(
                job, "WORKER_LOST", lambda: self.store.count_loss(job_id, self._loss_limit(), why)
            )
        else:
            after = self._requeue(job, "WORKER_LOST", lambda: self.store.requeue(job_id))
        if after is not None and after.state is JobState.FAILED:
            self._ended(after, "WORKER_LOST", after.failure_text or "")

    def _requeue(self, job: Job, reason: str, stored: Callable[[], Job]) -> Job | None:
        """`stored()` puts `job` back in the queue (or fails it at its last loss): JOB_REQUEUED
        and the queue looked at again; the job as stored, None when it had ended meanwhile."""
        try:
            after = stored()
        except RecordCorrupt as exc:  # set aside: the submitting TC still hears why it ends
            self._ended(job, "JOB_RECORD_CORRUPT", str(exc))
            return None
        except JobStoreError as exc:  # ended meanwhile: that final state stands
            log.info("job %d not queued again (%s): %s", job.job_id, reason, exc)
            return None
        if after.state is not JobState.FAILED:
            self._events.raise_event(
                "JOB_REQUEUED", job_id=after.job_id, attempts=after.attempts, reason=reason
            )
            self._maybe_queued.set()
            self._wake.set()
        return after

    def _loss_limit(self) -> LossLimit:
        """The losses of its compute a job may bring about, and the failure it then ends with."""
        return LossLimit(MAX_JOB_LOSSES, self._d.failure_named("WORKER_LOST").code)

    def _hold_for_disk(self, job: Job, needed: int, exc: Exception) -> None:
        """The disk had no room for `job`'s result: it runs again once there is room."""
        job_id = job.job_id
        if self._requeue(job, "DISK_FULL", lambda: self.store.requeue(job_id)) is None:
            return
        if self.storage_hold.enter(needed):
            room = self._files.disk_room_bytes()
            log.error("job %d: result not stored (%s): queue held until there is room",
                      job.job_id, exc)  # fmt: skip
            self._events.raise_event(
                "STORAGE_HELD",
                job_id=job.job_id,
                needed=min(needed, 0xFFFFFFFF),
                room=min(room, 0xFFFFFFFF),
            )

    def _store_result(self, job: Job, outcome: Computed, started: float) -> None:
        name = result_file_name(job.job_id, len(outcome.outputs))
        data = serialise_outputs(outcome.outputs)
        try:
            # A result left by an attempt that a crash cut short before it was recorded.
            if self._files.exists(name):
                self._files.delete(name)
            stored = self._files.put(name, data)
        except (FileStoreError, OSError) as exc:
            if store_failure_name(exc) == "DISK_FULL":
                self._hold_for_disk(job, len(data), exc)
            else:
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
            if isinstance(exc, RecordCorrupt):
                # The record is set aside: the submitting TC still hears why it ends.
                self._ended(job, "JOB_RECORD_CORRUPT", str(exc))
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
                runs=min(outcome.runs, 255),
                disagreements=min(outcome.disagreements, 255),
                outvoted=outcome.outvoted,
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
        except RecordCorrupt as exc:
            self._ended(job, "JOB_RECORD_CORRUPT", f"{text}; {exc}")
            return
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

    def _on_run(self, work: _Work) -> Callable[[int], None]:
        """What each finished run of `work` reports: a progress report and the percentage."""
        reporter = self.reporter(work.job)
        expected = EXPECTED_RUNS[work.job.redundancy]

        def on_run(n: int) -> None:
            if reporter is not None:
                reporter.success(Stage.PROGRESS, STEP_RUN_DONE)
            # Kept in memory: a database write here would sit on the path of every run.
            self.progress = min(95, 95 * n // expected)

        return on_run

    def _compute(self, work: _Work) -> Outcome:
        return self.compute.run(work.job.job_id, work.control, self._on_run(work))
