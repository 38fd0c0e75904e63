"""The compute of one board: onnxruntime sessions, the weights they compute from, the model guard
and the jobs' runs, behind calls that take and return plain values. A worker process serves
these calls to the payload; the payload never reaches inside."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from flight.compute.job_compute import (
    EXPECTED_RUNS,
    Computed,
    ComputeFailed,
    JobCompute,
    JobInput,
)
from flight.compute.memory_scrub import MemoryScrub
from flight.compute.model_view import CatalogUpdate, ModelView
from flight.compute.run_control import RunControl
from flight.jobs.executor import Executor, SessionCache
from flight.jobs.providers import ProviderChoice
from flight.jobs.registry import ModelEntry
from flight.protection.faults import FaultModel
from flight.protection.injection import Injected, inject_weights
from flight.protection.model_guard import ABFT_SUFFIX, ModelCatalog, ModelGuard
from flight.protection.upsets import Upset, UpsetLog
from flight.thermal.duty import ComputeGate


@dataclass(frozen=True)
class EngineSettings:
    """How a board's compute is set up: the provider chosen, sessions kept, threads per run."""

    provider: ProviderChoice
    session_cache: int
    intra_op_threads: int


@dataclass(frozen=True)
class EngineStatus:
    """What the payload shows of the compute in housekeeping, since the engine started."""

    provider: str
    runs: int
    disagreements: int
    answer_runs: int
    busy_seconds: float
    sessions: int
    protected_octets: int


@dataclass(frozen=True)
class RunDone:
    """One run of a job finished (the payload reports the job's progress)."""

    job_id: int
    runs: int


#: What the engine tells by itself: an upset its checks found, a record for the registry, a
#: finished run.
Notice = Upset | CatalogUpdate | RunDone


class ComputeEngine:
    """Sessions, guard and job compute of one board; `tell` carries its notices out."""

    def __init__(
        self,
        settings: EngineSettings,
        tell: Callable[[Notice], None],
        *,
        catalog: ModelCatalog | None = None,
        upsets: UpsetLog | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        """`catalog`: the registry when the engine runs in the payload's process (a view of it,
        fed by requests, in a worker); `upsets`: the payload's log in its process (a log whose
        findings go out as notices in a worker)."""
        if upsets is None:
            upsets = UpsetLog()
            upsets.subscribe(tell)
        self.upsets = upsets
        self.models = ModelView(tell)
        self.catalog: ModelCatalog = catalog or self.models
        self.sessions = SessionCache(
            settings.session_cache, settings.provider, settings.intra_op_threads
        )
        self.gate = ComputeGate(monotonic)
        self.guard = ModelGuard(
            self.catalog, Executor(self.sessions, self.gate), self.upsets, monotonic
        )
        self.jobs = JobCompute(self.guard.executor, self.upsets, self.guard)
        self.memory = MemoryScrub(self.guard, monotonic)
        self._tell = tell
        self._controls: dict[int, RunControl] = {}
        self._lock = threading.Lock()

    # -- jobs -----------------------------------------------------------------------------------

    def prepare(self, job: JobInput) -> ComputeFailed | None:
        """Check a job's input for its run (the failure when it cannot run)."""
        self.models.learn(job.entry)
        return self.jobs.prepare(job)

    def run(self, job_id: int) -> Computed | ComputeFailed:
        """The runs of a prepared job; `cancel(job_id)` stops them. Each run but the job's
        last is told as it ends (RunDone): the outcome, which follows at once, tells that one."""
        control = self._control(job_id)
        job = self.jobs.prepared(job_id)
        last = EXPECTED_RUNS[job.redundancy] if job is not None else 0

        def done(n: int) -> None:
            if n < last:
                self._tell(RunDone(job_id, n))

        return self.jobs.run(job_id, control, done)

    def accept(self, job_id: int, computed: Computed) -> Computed | ComputeFailed:
        """The checks before a result is accepted, with reruns after a corrected upset."""
        control = self._control(job_id)
        return self.jobs.accept(job_id, computed, control, lambda n: self._tell(RunDone(job_id, n)))

    def model_key(self, job_id: int) -> str:
        """The model key of a prepared job ("" if none is)."""
        job = self.jobs.prepared(job_id)
        return job.entry.key if job is not None else ""

    def cancel(self, job_id: int) -> None:
        self._control(job_id).terminate = True

    def discard(self, job_id: int) -> None:
        """Forget a job (ended or put back): its input and its stop flag."""
        self.jobs.discard(job_id)
        with self._lock:
            self._controls.pop(job_id, None)

    def _control(self, job_id: int) -> RunControl:
        with self._lock:
            return self._controls.setdefault(job_id, RunControl())

    # -- models ---------------------------------------------------------------------------------

    def record_answer(self, entry: ModelEntry) -> ModelEntry:
        """Run the model's fixed input and record its known answer (in a worker, sent back as
        a notice)."""
        self.models.learn(entry)
        return self.guard.record_answer(entry)

    def inject_weights(self, entry: ModelEntry, model: FaultModel, seed: int) -> Injected:
        """A test command's upset in a weight of the loaded model (loaded now if need be)."""
        self.models.learn(entry)
        return inject_weights(self.guard, entry, model, seed)

    def arm_output_fault(self, model: FaultModel, seed: int) -> None:
        """Corrupt one run's output of the next DMR or TMR job (a test command)."""
        self.guard.executor.arm_output_fault(model, seed)

    def forget(self, entry: ModelEntry) -> None:
        """A model deleted or reloaded: its sessions go (the plain and the ABFT form)."""
        self.sessions.evict(entry.key)
        self.sessions.evict(entry.key + ABFT_SUFFIX)
        self.models.forget(entry.name, entry.version)

    # -- the thermal governor's gate ------------------------------------------------------------

    def allow(self, duty: float, held: bool) -> None:
        self.gate.allow(duty, held=held)

    def status(self) -> EngineStatus:
        executor = self.guard.executor
        loaded = self.sessions.loaded()
        return EngineStatus(
            provider=self.sessions.provider.provider,
            runs=executor.run_count,
            disagreements=executor.disagreement_count,
            answer_runs=self.guard.answer_runs,
            busy_seconds=self.gate.busy_seconds(),
            sessions=len(loaded),
            protected_octets=sum(m.weights.octets for m in loaded if m.weights is not None),
        )
