"""The compute in the payload's own process: the engine a worker would serve, called directly.

For a board where a second process costs too much, and for tools and tests; a native crash in
onnxruntime then takes the link down with it, which is why the payload runs a worker by default.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from flight.compute.engine import ComputeEngine, EngineSettings, EngineStatus
from flight.compute.job_compute import Computed, ComputeFailed, JobInput
from flight.compute.memory_scrub import MemoryReport, ScrubSettings
from flight.compute.run_control import RunControl
from flight.jobs.registry import ModelEntry, ModelRegistry
from flight.protection.faults import FaultModel
from flight.protection.injection import Injected
from flight.protection.upsets import UpsetLog
from flight.thermal.duty import ComputeGate


class LocalCompute:
    """JobComputer, MemoryScrubber and ComputeFaults on an engine in this process."""

    def __init__(
        self,
        settings: EngineSettings,
        registry: ModelRegistry,
        upsets: UpsetLog,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        # Nothing to tell: upsets go straight to the payload's log, records to the registry,
        # and each run to the callback the runner gives.
        self.engine = ComputeEngine(
            settings, lambda notice: None, catalog=registry, upsets=upsets, monotonic=monotonic
        )
        self.provider = settings.provider

    @property
    def gate(self) -> ComputeGate:
        return self.engine.gate

    # -- JobComputer
    def prepare(self, job: JobInput) -> ComputeFailed | None:
        return self.engine.prepare(job)

    def queue(self, job_id: int, control: RunControl) -> None:
        self.engine.jobs.queue(job_id, control)

    def run(
        self, job_id: int, control: RunControl, on_run: Callable[[int], None] | None = None
    ) -> Computed | ComputeFailed:
        return self.engine.jobs.run(job_id, control, on_run)

    def accept(
        self,
        job_id: int,
        computed: Computed,
        control: RunControl,
        on_run: Callable[[int], None] | None = None,
    ) -> Computed | ComputeFailed:
        return self.engine.jobs.accept(job_id, computed, control, on_run)

    def discard(self, job_id: int) -> None:
        self.engine.discard(job_id)

    # -- models
    def record_answer(self, entry: ModelEntry) -> ModelEntry:
        return self.engine.record_answer(entry)

    def forget(self, entry: ModelEntry) -> None:
        self.engine.forget(entry)

    # -- MemoryScrubber
    def scrub(self, settings: ScrubSettings) -> MemoryReport:
        return self.engine.memory.scrub(settings)

    def protected_octets(self) -> int:
        return self.engine.memory.protected_octets()

    # -- ComputeFaults
    def inject_weights(self, entry: ModelEntry, model: FaultModel, seed: int) -> Injected:
        return self.engine.inject_weights(entry, model, seed)

    def arm_output_fault(self, model: FaultModel, seed: int) -> None:
        self.engine.arm_output_fault(model, seed)

    def status(self) -> EngineStatus:
        return self.engine.status()

    def counter(self, name: str) -> float:
        """A counter of the engine's status (runs, disagreements, answer_runs, busy_seconds)."""
        return float(getattr(self.engine.status(), name))

    def stop(self) -> None:
        self.engine.gate.close()
