"""The job runner's compute in a supervised worker process.

Each call goes to the worker named by the supervisor; what the worker tells by itself comes
back as notices (an upset its checks found, a known answer or ABFT threshold for the registry, a
finished run for the job's progress). A run has a time limit derived from its model's measured
run time: past it the supervisor kills the worker, since a run in native code cannot be stopped
safely. A worker lost under a job makes it ComputeLost, which the runner queues again.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flight.compute.engine import RunDone
from flight.compute.job_compute import (
    EXPECTED_RUNS,
    Computed,
    ComputeFailed,
    ComputeLost,
    JobInput,
    JobNotPrepared,
)
from flight.compute.memory_scrub import MemoryReport, ScrubSettings
from flight.compute.model_view import AnswerRecorded, CopyDamaged, ThresholdCalibrated
from flight.compute.run_control import RunControl
from flight.jobs.registry import ModelEntry, ModelRegistry, RegistryError
from flight.jobs.run_times import RunTimes
from flight.protection.faults import FaultModel
from flight.protection.injection import Injected, TargetMissing
from flight.protection.upsets import Upset, UpsetLog
from flight.worker.calls import PendingCall
from flight.worker.errors import WorkerCallError, WorkerError, WorkerLost
from flight.worker.events import EventKind, WorkerEvent
from flight.worker.handlers import (
    Accept,
    Allow,
    ArmFault,
    ArmOutputFault,
    Disarm,
    Discard,
    Forget,
    InjectWeights,
    Prepare,
    RecordAnswer,
    Run,
    Scrub,
    WorkerFault,
)
from flight.worker.protocol import Lane, Notice
from flight.worker.supervisor import Supervisor

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunLimits:
    """How long a job's runs may take before its worker is taken for hung.

    Until a model's run time is measured (its first job also creates its session, which on
    TensorRT builds an engine), `first_s`; then `factor` times the measured time of the runs
    the job asks, and never less than `floor_s`.
    """

    first_s: float = 300.0
    factor: float = 10.0
    floor_s: float = 5.0
    #: Preparation, checks and known answers (the service lane).
    service_s: float = 120.0

    def for_runs(self, measured_run_s: float | None, runs: int) -> float:
        if measured_run_s is None:
            return self.first_s
        return max(self.floor_s, self.factor * measured_run_s * runs)


class WorkerCompute:
    """JobComputer on a supervised worker; also the model guard's record of known answers."""

    def __init__(
        self,
        supervisor: Supervisor,
        registry: ModelRegistry,
        upsets: UpsetLog,
        limits: RunLimits | None = None,
    ) -> None:
        self.supervisor = supervisor
        self.registry = registry
        self.upsets = upsets
        self.limits = limits or RunLimits()
        self._lock = threading.Lock()
        self._prepared: dict[int, JobInput] = {}
        # Poison faults to arm again in the next worker before it runs a job.
        self._rearm = False
        self._on_run: dict[int, Callable[[int], None]] = {}
        # Runs finished before their job's caller listened (a run sent ahead starts at once).
        self._runs_told: dict[int, int] = {}
        # Runs sent ahead of their turn (queue()), by job.
        self._queued: dict[int, PendingCall] = {}
        # What each model's runs took in the worker: the run limits are set from it.
        self.run_times = RunTimes(unknown_run_s=0.0)
        self._gate = (1.0, False)
        # Faults armed at every run of a model: armed again in each new worker.
        self._poison: list[ArmFault] = []
        # Counters of the worker up now, and the sums of those lost before it.
        self._last_status: dict[str, float] = {}
        self._carried: dict[str, float] = {}

    # -- what the supervisor tells ------------------------------------------------------------

    def on_event(self, event: WorkerEvent) -> None:
        """A worker started (it knows nothing yet: the gate goes to it again) or was lost
        (what it counted is kept, so that the counters never go back)."""
        if event.kind is EventKind.LOST:
            with self._lock:
                for key, value in self._last_status.items():
                    self._carried[key] = self._carried.get(key, 0.0) + value
                self._last_status = {}
                self._rearm = bool(self._poison)
        if event.kind is EventKind.STARTED:
            with self._lock:
                duty, held = self._gate
            self._send_gate(duty, held)

    def on_notice(self, notice: Notice) -> None:
        body = notice.body
        if isinstance(body, RunDone):
            with self._lock:
                callback = self._on_run.get(body.job_id)
                if callback is None:
                    self._runs_told[body.job_id] = body.runs
            if callback is not None:
                callback(body.runs)
        elif isinstance(body, Upset):
            self.upsets.report(body)
        elif isinstance(body, AnswerRecorded | ThresholdCalibrated | CopyDamaged):
            self._keep(body)

    def _keep(self, update: AnswerRecorded | ThresholdCalibrated | CopyDamaged) -> None:
        try:
            entry = self.registry.entry(update.name, update.version)
            if isinstance(update, AnswerRecorded):
                self.registry.set_answer(entry, update.answer)
            elif isinstance(update, ThresholdCalibrated):
                self.registry.set_abft_threshold(entry, update.threshold)
            else:
                self.registry.verify_copies(entry)
        except (RegistryError, OSError) as exc:  # deleted meanwhile, or the disk refused
            log.error("model %s v%d: %s not kept: %s", update.name, update.version,
                      type(update).__name__, exc)  # fmt: skip

    # -- JobComputer ----------------------------------------------------------------------------

    def prepare(self, job: JobInput) -> ComputeFailed | None:
        with self._lock:
            self._prepared[job.job_id] = job
        return self._prepare_in_worker(job)

    def _prepare_in_worker(self, job: JobInput) -> ComputeFailed | None:
        try:
            failed = self.supervisor.call(
                Lane.SERVICE, Prepare(job), timeout_s=self.limits.service_s
            )
        except WorkerError as exc:
            # A worker lost now is found again at the run, which prepares the job anew.
            log.warning("job %d: not prepared in the worker: %s", job.job_id, exc)
            return None
        return failed

    def queue(self, job_id: int, control: RunControl) -> None:
        """Sends the prepared job's run ahead of its turn: the worker starts it the moment the
        run before it ends, so that a call's round trip does not stand between two runs."""
        job = self._job(job_id)
        if job is None:
            return
        try:
            pending = self._submit(job, Lane.COMPUTE, Run(job_id))
        except WorkerError:  # no worker: the run is sent when its turn comes
            return
        with self._lock:
            self._queued[job_id] = pending
        control.on_terminate(functools.partial(self._cancel, pending.id))

    def run(
        self, job_id: int, control: RunControl, on_run: Callable[[int], None] | None = None
    ) -> Computed | ComputeFailed | ComputeLost:
        job = self._job(job_id)
        if job is None:
            return ComputeFailed("EXECUTION_FAILED", f"job {job_id} was not prepared")
        with self._lock:
            sent = self._queued.pop(job_id, None)
        outcome = self._on_worker(job, Lane.COMPUTE, Run(job_id), control, on_run, sent)
        # The worker tells each run but the last, which its outcome tells.
        last = EXPECTED_RUNS[job.redundancy]
        if on_run is not None and not isinstance(outcome, ComputeLost) and outcome.runs == last:
            on_run(outcome.runs)
        if isinstance(outcome, Computed) and outcome.runs:
            # As the worker measured them: not the wait for a worker (re)starting.
            self.run_times.learn(job.entry.key, outcome.runs, outcome.seconds)
        return outcome

    def accept(
        self,
        job_id: int,
        computed: Computed,
        control: RunControl,
        on_run: Callable[[int], None] | None = None,
    ) -> Computed | ComputeFailed | ComputeLost:
        job = self._job(job_id)
        if job is None:
            return ComputeFailed("EXECUTION_FAILED", f"job {job_id} was not prepared")
        try:
            return self._on_worker(job, Lane.SERVICE, Accept(job_id, computed), control, on_run)
        finally:
            with self._lock:  # the worker forgets a job once it accepted it
                self._prepared.pop(job_id, None)

    def discard(self, job_id: int) -> None:
        with self._lock:
            held = self._prepared.pop(job_id, None) is not None
            self._on_run.pop(job_id, None)
            self._runs_told.pop(job_id, None)
            sent = self._queued.pop(job_id, None)
        if sent is not None:  # put back in the queue before its turn came
            self.supervisor.cancel(sent.id)
        if held:
            with contextlib.suppress(WorkerError):  # no worker: it held nothing of the job
                self.supervisor.submit(
                    Lane.SERVICE, Discard(job_id), timeout_s=self.limits.service_s
                )

    def _job(self, job_id: int) -> JobInput | None:
        with self._lock:
            return self._prepared.get(job_id)

    def _on_worker(
        self,
        job: JobInput,
        lane: Lane,
        body: Any,
        control: RunControl,
        on_run: Callable[[int], None] | None,
        sent: PendingCall | None = None,
    ) -> Computed | ComputeFailed | ComputeLost:
        """`body` on the worker (`sent`: already on its way); a worker that holds nothing of the
        job (a new one) is given it first."""
        self._listen(job.job_id, on_run)
        prepared_again = False
        try:
            while True:
                pending = sent if sent is not None else self._submit(job, lane, body)
                sent = None
                control.on_terminate(functools.partial(self._cancel, pending.id))
                try:
                    outcome: Computed | ComputeFailed = pending.result()
                    return outcome
                except WorkerLost as exc:
                    if exc.began:
                        raise
                    continue  # lost with a worker before its turn came: to the next one
                except WorkerCallError as exc:
                    if exc.error_type != JobNotPrepared.__name__ or prepared_again:
                        # A bug in the worker's handler, not the job's input or model.
                        return ComputeFailed("EXECUTION_FAILED", str(exc))
                prepared_again = True
                failed = self._prepare_in_worker(job)
                if failed is not None:
                    return failed
        except WorkerLost as exc:
            log.warning("job %d: its worker was lost (%s): %s", job.job_id, exc.reason.name,
                        exc.detail)  # fmt: skip
            return ComputeLost(exc.reason.name, exc.detail)
        except WorkerError as exc:  # no worker came up
            return ComputeLost("UNAVAILABLE", str(exc))
        finally:
            with self._lock:
                self._on_run.pop(job.job_id, None)

    def _listen(self, job_id: int, on_run: Callable[[int], None] | None) -> None:
        """`on_run` told of the job's runs, those done already (a run sent ahead) at once."""
        if on_run is None:
            return
        with self._lock:
            self._on_run[job_id] = on_run
            told = self._runs_told.pop(job_id, None)
        for n in range(1, (told or 0) + 1):  # none of them was reported: each is, in order
            on_run(n)

    def _submit(self, job: JobInput, lane: Lane, body: Any) -> PendingCall:
        """Sends `body` with the time limit of the job's runs on that lane."""
        runs = EXPECTED_RUNS[job.redundancy] * (3 if lane is Lane.SERVICE else 1)
        timeout = self.limits.for_runs(self.run_times.slowest(job.entry.key), runs)
        if lane is Lane.SERVICE:
            timeout = max(timeout, self.limits.service_s)
        else:
            self._rearm_poison()
        return self.supervisor.submit(lane, body, timeout_s=timeout)

    def _rearm_poison(self) -> None:
        """A new worker gets the poison models armed before its first run, in full: sent beside
        the run (on the other lane) it could lose the race to it."""
        with self._lock:
            poison = list(self._poison) if self._rearm else []
        for fault in poison:
            self.supervisor.call(Lane.SERVICE, fault, timeout_s=self.limits.service_s)
        with self._lock:
            self._rearm = False

    def _cancel(self, call_id: int) -> None:
        self.supervisor.cancel(call_id)

    # -- models and the thermal gate --------------------------------------------------------------

    def record_answer(self, entry: ModelEntry) -> ModelEntry:
        """Run the model's fixed input in the worker and record its known answer here."""
        answered: ModelEntry = self.supervisor.call(
            Lane.SERVICE, RecordAnswer(entry), timeout_s=self.limits.first_s
        )
        # Its notice, read before the reply, has normally been kept already.
        current = self.registry.entry(entry.name, entry.version)
        answer = answered.answer
        if answer is not None and (
            current.answer is None or current.answer.digest != answer.digest
        ):
            current = self.registry.set_answer(current, answer)
        return current

    def forget(self, entry: ModelEntry) -> None:
        """A model deleted or reloaded: the worker drops its sessions."""
        with contextlib.suppress(WorkerError):  # no worker: it holds no session
            self.supervisor.submit(Lane.SERVICE, Forget(entry), timeout_s=self.limits.service_s)
        self.run_times.forget(entry.key)

    def allow(self, duty: float, *, held: bool = False) -> None:
        """The thermal governor's duty cycle and hold, for the worker's gate."""
        with self._lock:
            self._gate = (duty, held)
        self._send_gate(duty, held)

    def _send_gate(self, duty: float, held: bool) -> None:
        self._send(Allow(duty, held))

    def arm_fault(self, fault: WorkerFault, model_key: str = "", *, every: bool = False) -> None:
        """A test command's functional fault: struck at the next run (of that model), or at
        every run of it in this worker and the ones after (a poison model)."""
        armed = ArmFault(fault, model_key, every)
        if every:
            with self._lock:
                self._poison.append(armed)
        self.supervisor.call(Lane.SERVICE, armed, timeout_s=self.limits.service_s)

    def clear_faults(self) -> None:
        """Every armed fault dropped, in this worker and the ones after."""
        with self._lock:
            self._poison.clear()
        self._send(Disarm())

    def stop(self) -> None:
        self.supervisor.stop()

    def counter(self, name: str) -> float:
        """A counter of the engines' status (runs, disagreements, answer_runs, busy_seconds)
        summed over every worker since the payload started."""
        status = self.supervisor.status()
        value = status.get(name)
        with self._lock:
            if isinstance(value, int | float):
                self._last_status[name] = float(value)
            return self._carried.get(name, 0.0) + self._last_status.get(name, 0.0)

    def _send(self, body: Any) -> None:
        with contextlib.suppress(WorkerError):  # no worker: sent when the next one starts
            self.supervisor.submit(Lane.SERVICE, body, timeout_s=self.limits.service_s)

    # -- MemoryScrubber and ComputeFaults ---------------------------------------------------------

    def scrub(self, settings: ScrubSettings) -> MemoryReport:
        """The worker's weights and due known answers (nothing when no worker is up)."""
        try:
            report: MemoryReport = self.supervisor.call(
                Lane.SERVICE, Scrub(settings), timeout_s=self.limits.first_s
            )
        except WorkerError as exc:
            log.warning("scrub: the worker's memory not scrubbed: %s", exc)
            return MemoryReport(0, 0, 0, 0)
        return report

    def protected_octets(self) -> int:
        return int(self.supervisor.status().get("protected_octets", 0))

    def inject_weights(self, entry: ModelEntry, model: FaultModel, seed: int) -> Injected:
        try:
            injected: Injected = self.supervisor.call(
                Lane.SERVICE, InjectWeights(entry, model, seed), timeout_s=self.limits.first_s
            )
        except WorkerCallError as exc:
            raise TargetMissing(exc.text or str(exc)) from exc
        except WorkerError as exc:
            raise TargetMissing(f"no worker holds the weights: {exc}") from exc
        return injected

    def arm_output_fault(self, model: FaultModel, seed: int) -> None:
        try:
            self.supervisor.call(
                Lane.SERVICE, ArmOutputFault(model, seed), timeout_s=self.limits.service_s
            )
        except WorkerError as exc:
            raise TargetMissing(f"no worker to arm: {exc}") from exc

    def measured_run_s(self, entry: ModelEntry) -> float:
        """The measured seconds per run of a model (NaN until one ran)."""
        measured = self.run_times.slowest(entry.key)
        return math.nan if measured is None else measured


class WorkerGate:
    """The thermal governor's gate of a worker's compute: settings sent to the worker, the busy
    time read from its heartbeats (summed over every worker)."""

    def __init__(self, compute: WorkerCompute) -> None:
        self._compute = compute
        self._duty = 1.0
        self._held = False

    @property
    def duty(self) -> float:
        return 0.0 if self._held else self._duty

    @property
    def held(self) -> bool:
        return self._held

    def allow(self, duty: float, *, held: bool = False) -> None:
        self._duty, self._held = min(1.0, max(duty, 1e-6)), held
        self._compute.allow(self._duty, held=held)

    def busy_seconds(self) -> float:
        return self._compute.counter("busy_seconds")
