"""Where the payload's jobs compute: a supervised worker process (the default), or this process
(`[jobs] worker = false`: a board that cannot spare the memory of a second process)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from flight.compute.engine import EngineSettings
from flight.compute.job_compute import JobComputer
from flight.compute.local import LocalCompute
from flight.config import JobsConfig
from flight.jobs.executor import default_intra_op_threads
from flight.jobs.providers import OnnxruntimeBackend, ProviderChoice, select_provider
from flight.jobs.registry import ModelEntry, ModelRegistry
from flight.jobs.worker_compute import WorkerCompute, WorkerGate
from flight.protection.injection import ComputeFaults
from flight.protection.scrubber import MemoryScrubber
from flight.protection.upsets import UpsetLog
from flight.thermal.duty import GateControl
from flight.worker.config import WorkerConfig
from flight.worker.events import WorkerEvent
from flight.worker.handlers import OPTION_SESSION_CACHE, OPTION_THREADS
from flight.worker.limits import Limits
from flight.worker.protocol import Notice
from flight.worker.supervisor import Supervisor

WORKER_FACTORY = "flight.worker.handlers:build"
WORKER_NAME = "board0"


class PayloadCompute(JobComputer, MemoryScrubber, ComputeFaults, Protocol):
    """Everything the payload asks of its compute, wherever it runs."""

    def record_answer(self, entry: ModelEntry) -> ModelEntry: ...

    def forget(self, entry: ModelEntry) -> None: ...

    def counter(self, name: str) -> float: ...

    def stop(self) -> None:
        """No more compute: a worker is stopped, a gate in this process admits what waits."""


@dataclass
class ComputeSetup:
    """The compute, the thermal governor's gate of it, and its supervisor if it is a worker."""

    compute: PayloadCompute
    gate: GateControl
    supervisor: Supervisor | None
    #: The provider chosen (known at once in this process, when the worker says in a worker).
    provider: ProviderChoice | None


def worker_cpus(cores: int | None = None) -> frozenset[int] | None:
    """The cores a worker may use: all but the first when the board has more than two (the link
    keeps one), else all of them (None: not restricted)."""
    count = cores if cores is not None else (os.cpu_count() or 1)
    return frozenset(range(1, count)) if count > 2 else None


def open_compute(
    jobs: JobsConfig,
    state_dir: Path,
    registry: ModelRegistry,
    upsets: UpsetLog,
    *,
    provider: ProviderChoice | None,
    on_event: Callable[[WorkerEvent], None],
    on_notice: Callable[[Notice], None],
    monotonic: Callable[[], float] = time.monotonic,
) -> ComputeSetup:
    """The compute `jobs` asks for; a worker is started later (`supervisor.start()`)."""
    threads = jobs.intra_op_threads or default_intra_op_threads()
    if not jobs.worker:
        chosen = provider or select_provider(OnnxruntimeBackend())
        local = LocalCompute(
            EngineSettings(chosen, jobs.session_cache, threads), registry, upsets, monotonic
        )
        return ComputeSetup(local, local.gate, None, chosen)
    memory = jobs.worker_memory_mb << 20 if jobs.worker_memory_mb else None
    sockets = state_dir / "worker"
    sockets.mkdir(mode=0o700, exist_ok=True)
    holder: list[WorkerCompute] = []

    def event(e: WorkerEvent) -> None:
        holder[0].on_event(e)
        on_event(e)

    def notice(n: Notice) -> None:
        holder[0].on_notice(n)
        on_notice(n)

    supervisor = Supervisor(
        WorkerConfig(
            WORKER_FACTORY,
            name=WORKER_NAME,
            socket_dir=sockets,
            options={OPTION_SESSION_CACHE: str(jobs.session_cache), OPTION_THREADS: str(threads)},
            limits=Limits(data_bytes=memory, cpus=worker_cpus()),
        ),
        on_event=event,
        on_notice=notice,
    )
    worker = WorkerCompute(supervisor, registry, upsets)
    holder.append(worker)
    return ComputeSetup(worker, WorkerGate(worker), supervisor, None)
