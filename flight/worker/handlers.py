"""What a compute worker serves: the requests the payload sends it, and the factory that builds
its compute engine (`python -m flight.worker --factory flight.worker.handlers:build`).

Runs go on the compute lane; everything else (a job's preparation, the checks before its
result is accepted, known answers, the thermal gate) on the service lane, so that it is answered
while a run computes, as the job runner's two threads did in one process.
"""

from __future__ import annotations

import dataclasses
import enum
import logging
import os
import signal
import threading
import time
from dataclasses import dataclass
from typing import Any

from flight.compute.engine import ComputeEngine, EngineSettings, Notice, RunDone
from flight.compute.interpreter import configure_interpreter
from flight.compute.job_compute import Computed, ComputeFailed, JobInput
from flight.compute.memory_scrub import ScrubSettings
from flight.jobs.providers import OnnxruntimeBackend, ProviderChoice, select_provider
from flight.jobs.registry import ModelEntry
from flight.protection.faults import FaultModel
from flight.protection.upsets import Upset
from flight.worker.protocol import Lane
from flight.worker.serve import Call, WorkerContext, WorkerHandlers

log = logging.getLogger(__name__)

#: The options the payload gives a compute worker (strings, as on a command line).
OPTION_SESSION_CACHE = "session_cache"
OPTION_THREADS = "intra_op_threads"
OPTION_PROVIDERS = "providers"  # comma-separated allow-list; empty: any

#: Notice kinds.
NOTICE_UPSET = "upset"
NOTICE_CATALOG = "catalog"
NOTICE_RUN = "run"
NOTICE_PROVIDER = "provider"


@dataclass(frozen=True)
class Prepare:
    job: JobInput


@dataclass(frozen=True)
class Run:
    job_id: int


@dataclass(frozen=True)
class Accept:
    """The checks before a job's result is accepted: its last call, the worker forgets the job
    after it."""

    job_id: int
    computed: Computed


@dataclass(frozen=True)
class Discard:
    job_id: int


@dataclass(frozen=True)
class RecordAnswer:
    entry: ModelEntry


@dataclass(frozen=True)
class Forget:
    entry: ModelEntry


class WorkerFault(enum.Enum):
    """A functional fault a test command arms in the worker, struck at a job's run."""

    CRASH = "crash"  # the process dies by SIGSEGV, as a native crash in a driver would
    HANG = "hang"  # the whole process stops (SIGSTOP), as in a driver call that never returns
    SLOW = "slow"  # the run sleeps past its time limit (the process still beats)


@dataclass(frozen=True)
class ArmFault:
    """Strike `fault` at the next run (of model `model_key` only, if given); `every`: at every
    run of it instead of once (a poison model)."""

    fault: WorkerFault
    model_key: str = ""
    every: bool = False


@dataclass(frozen=True)
class Scrub:
    """The memory half of a scrub pass (weights, due known answers)."""

    settings: ScrubSettings


@dataclass(frozen=True)
class InjectWeights:
    entry: ModelEntry
    model: FaultModel
    seed: int


@dataclass(frozen=True)
class ArmOutputFault:
    model: FaultModel
    seed: int


@dataclass(frozen=True)
class Disarm:
    """Every armed fault is dropped."""


@dataclass(frozen=True)
class Allow:
    """The thermal governor's duty cycle and hold."""

    duty: float
    held: bool


LANES: dict[type, Lane] = {
    Run: Lane.COMPUTE,
    Prepare: Lane.SERVICE,
    Accept: Lane.SERVICE,
    Discard: Lane.SERVICE,
    RecordAnswer: Lane.SERVICE,
    Forget: Lane.SERVICE,
    Allow: Lane.SERVICE,
    ArmFault: Lane.SERVICE,
    Disarm: Lane.SERVICE,
    Scrub: Lane.SERVICE,
    InjectWeights: Lane.SERVICE,
    ArmOutputFault: Lane.SERVICE,
}

# How long a SLOW fault sleeps: past any run limit the payload sets.
SLOW_FAULT_S = 3600.0
# Creating a session holds the GIL (the heartbeat stops) for as long as onnxruntime takes, a
# TensorRT engine build minutes: the supervisor is told to wait that long before it calls the
# worker hung.
SESSION_BUILD_S = 900.0


def notice_kind(notice: Notice) -> str:
    if isinstance(notice, Upset):
        return NOTICE_UPSET
    if isinstance(notice, RunDone):
        return NOTICE_RUN
    return NOTICE_CATALOG


def settings_from(options: dict[str, str], provider: ProviderChoice) -> EngineSettings:
    return EngineSettings(
        provider=provider,
        session_cache=int(options.get(OPTION_SESSION_CACHE, "4")),
        intra_op_threads=int(options.get(OPTION_THREADS, "0")),
    )


def build(context: WorkerContext) -> WorkerHandlers:
    """The compute worker's handlers, on an engine whose provider it probes itself."""
    configure_interpreter()  # its compute and service threads share the GIL
    options = dict(context.options)
    allowed = [p for p in options.get(OPTION_PROVIDERS, "").split(",") if p]
    provider = select_provider(OnnxruntimeBackend(), allow=allowed or None)
    context.notify(NOTICE_PROVIDER, provider)
    engine = ComputeEngine(
        settings_from(options, provider),
        lambda notice: context.notify(notice_kind(notice), notice),
    )
    engine.sessions.around_build = lambda: context.quiet(SESSION_BUILD_S)

    armed: list[ArmFault] = []

    def arm(body: ArmFault, call: Call) -> None:
        armed.append(body)
        log.warning("test fault armed: %s", body)

    def strike(job_id: int) -> None:
        key = engine.model_key(job_id)
        for fault in list(armed):
            if fault.model_key and fault.model_key != key:
                continue
            if not fault.every:
                armed.remove(fault)
            log.warning("job %d: test fault %s strikes", job_id, fault.fault.name)
            context.flush()  # the previous run's answer is not the fault's to lose
            if fault.fault is WorkerFault.CRASH:
                logging.shutdown()
                os.kill(os.getpid(), signal.SIGSEGV)
            elif fault.fault is WorkerFault.HANG:
                # Every thread stops, the heartbeat's too (a busy loop in Python would not do:
                # the interpreter hands the GIL to the heartbeat thread every few ms).
                os.kill(os.getpid(), signal.SIGSTOP)
            else:
                time.sleep(SLOW_FAULT_S)
                return
            # A signal a process sends itself can take effect some instructions after kill()
            # returns (seen on a Firecracker guest: a 1 ms run finished before the stop): the
            # run must not go on meanwhile.
            threading.Event().wait()

    def run(body: Run, call: Call) -> Computed | ComputeFailed:
        call.on_cancel(lambda: engine.cancel(body.job_id))
        strike(body.job_id)
        started = time.monotonic()
        outcome = engine.run(body.job_id)
        seconds = time.monotonic() - started
        if not isinstance(outcome, Computed):
            return outcome
        return dataclasses.replace(outcome, seconds=seconds)

    def accept(body: Accept, call: Call) -> Computed | ComputeFailed:
        call.on_cancel(lambda: engine.cancel(body.job_id))
        try:
            return engine.accept(body.job_id, body.computed)
        finally:
            engine.discard(body.job_id)

    handlers: dict[type, Any] = {
        Prepare: lambda body, call: engine.prepare(body.job),
        Run: run,
        Accept: accept,
        Discard: lambda body, call: engine.discard(body.job_id),
        RecordAnswer: lambda body, call: engine.record_answer(body.entry),
        Forget: lambda body, call: engine.forget(body.entry),
        Allow: lambda body, call: engine.allow(body.duty, body.held),
        ArmFault: arm,
        Disarm: lambda body, call: armed.clear(),
        Scrub: lambda body, call: engine.memory.scrub(body.settings),
        InjectWeights: lambda body, call: engine.inject_weights(body.entry, body.model, body.seed),
        ArmOutputFault: lambda body, call: engine.arm_output_fault(body.model, body.seed),
    }

    def status() -> dict[str, Any]:
        values = dataclasses.asdict(engine.status())
        values["protected_octets"] = engine.memory.protected_octets()
        return values

    return WorkerHandlers(handlers, status=status)
