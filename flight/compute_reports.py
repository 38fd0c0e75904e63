"""What the payload tells the ground of its compute: the execution provider in use, its inference
worker's starts and losses (events and housekeeping), and the worker's functional faults that
FAULT_INJECT arms."""

from __future__ import annotations

import logging
from collections.abc import Callable

from flight.jobs.compute_setup import ComputeSetup
from flight.jobs.providers import CPU, ProviderChoice
from flight.jobs.registry import ModelRegistry
from flight.jobs.worker_compute import WorkerCompute
from flight.protection.injection import FaultTarget, Injected
from flight.services.events import EventReporter
from flight.worker.events import EventKind, SupervisorCounters, WorkerEvent
from flight.worker.handlers import WorkerFault
from flight.worker.protocol import Notice
from flight.worker.supervisor import Supervisor
from telemetry_defs.model import Dictionary

log = logging.getLogger(__name__)

# onnxruntime's provider names as the dictionary enum ExecutionProvider calls them.
PROVIDER_LABELS = {
    "CPUExecutionProvider": "CPU",
    "CUDAExecutionProvider": "CUDA",
    "TensorrtExecutionProvider": "TENSORRT",
}

_WORKER_FAULTS = {
    FaultTarget.WORKER_CRASH: WorkerFault.CRASH,
    FaultTarget.WORKER_HANG: WorkerFault.HANG,
    FaultTarget.SLOW_RUN: WorkerFault.SLOW,
}


class ComputeReports:
    """Events, housekeeping and test faults of the compute; `attach` it to the compute once that
    is open (its worker's events come to `on_event` and `on_notice` from then on)."""

    def __init__(
        self, dictionary: Dictionary, events: EventReporter, registry: ModelRegistry
    ) -> None:
        self._d = dictionary
        self._events = events
        self._registry = registry
        self._losses = dictionary.enums["WorkerLossReason"].values
        #: The provider in use (None: a worker has not said yet; the CPU until it does).
        self.provider: ProviderChoice | None = None
        self.worker: Supervisor | None = None
        self._compute: WorkerCompute | None = None

    def attach(self, setup: ComputeSetup) -> None:
        self.provider = setup.provider
        self.worker = setup.supervisor
        self._compute = setup.compute if isinstance(setup.compute, WorkerCompute) else None

    # -- the provider ---------------------------------------------------------------------------

    def provider_label(self) -> str:
        """The provider in use as the dictionary's ExecutionProvider names it."""
        return PROVIDER_LABELS[self.provider.provider if self.provider else CPU]

    def report_provider(self, choice: ProviderChoice) -> None:
        """EXECUTION_PROVIDER_SELECTED for `choice`, which is in use from now."""
        self.provider = choice
        passed = "; ".join(f"{p}: {why}" for p, why in choice.tried)
        log.info("jobs run on %s (%s)", choice.provider, passed or "first choice")
        self._events.raise_event(
            "EXECUTION_PROVIDER_SELECTED",
            provider=self.provider_label(),
            passed_over=passed.encode()[:255].decode(errors="ignore"),
        )

    # -- the worker -----------------------------------------------------------------------------

    def on_event(self, event: WorkerEvent) -> None:
        """A worker started or was lost: events for the ground (the job it held is the
        runner's)."""
        if event.kind is EventKind.STARTED:
            starts = self.worker.counters().starts if self.worker is not None else 0
            self._events.raise_event("WORKER_STARTED", pid=event.pid or 0, starts=starts)
            return
        reason = event.reason.name if event.reason is not None else "CRASHED"
        if reason not in self._losses:
            return  # STOPPED: the payload itself is stopping it
        delay_ms = int((event.restart_in_s or 0.0) * 1000)
        self._events.raise_event(
            "WORKER_LOST",
            reason=reason,
            restart_in=min(delay_ms, 0xFFFFFFFF),
            detail=event.detail.encode()[:255].decode(errors="ignore"),
        )

    def on_notice(self, notice: Notice) -> None:
        if isinstance(notice.body, ProviderChoice) and self.provider != notice.body:
            self.report_provider(notice.body)

    def arm_fault(self, target: FaultTarget, name: str, version: int) -> Injected:
        """A test command's functional fault of the inference worker."""
        if self._compute is None:
            raise RuntimeError("no inference worker to arm a fault in")
        if target is FaultTarget.POISON_MODEL:
            entry = self._registry.entry(name, version)
            self._compute.arm_fault(WorkerFault.CRASH, entry.key, every=True)
            return Injected(f"every run of {entry.label()} crashes its worker", 0)
        fault = _WORKER_FAULTS[target]
        self._compute.arm_fault(fault)
        return Injected(f"the worker's next run: {fault.name}", 0)

    def parameters(self) -> dict[str, Callable[[], object]]:
        """The getters of the WORKER_STATUS housekeeping."""

        def counters() -> SupervisorCounters | None:
            return self.worker.counters() if self.worker is not None else None

        def last_loss() -> int:
            c = counters()
            reason = c.last_loss_reason if c is not None else None
            return self._losses.get(reason.name, 0) if reason is not None else 0

        def heartbeat_age() -> int:
            c = counters()
            age = c.heartbeat_age_s if c is not None else None
            return 0xFFFFFFFF if age is None else min(int(age * 1000), 0xFFFFFFFE)

        return {
            "WORKER_UP": lambda: self.worker is not None and self.worker.health() is None,
            "WORKER_STARTS": lambda: (c.starts if (c := counters()) else 0) & 0xFFFFFFFF,
            "WORKER_LOSSES": lambda: (
                (sum(c.restarts.values()) if (c := counters()) else 0) & 0xFFFFFFFF
            ),
            "WORKER_LAST_LOSS": last_loss,
            "WORKER_HEARTBEAT_AGE": heartbeat_age,
        }
