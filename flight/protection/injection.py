"""Fault injection into the running payload (test command FAULT_INJECT): the real buffers and
files the protection watches, corrupted by a fault model from a seed.

Targets that belong to other layers (the protected state, the job store) are given as callables
by whoever owns them, so this module does not reach into their internals.
"""

from __future__ import annotations

import enum
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from flight.files.disk_fill import DiskFill
from flight.files.upload_store import FileStoreError, UploadStore, open_regular
from flight.jobs.registry import ModelEntry, ModelRegistry, RegistryError
from flight.jobs.store import JobStore, JobStoreError
from flight.lifecycle.self_faults import PayloadFault, SelfFaults
from flight.protection.faults import FaultModel, Injection, NothingToInject, inject, inject_bytes
from flight.protection.model_guard import ModelGuard
from flight.protection.triplicate import TripleStore

log = logging.getLogger(__name__)


class FaultTarget(enum.IntEnum):
    """Where a fault goes (dictionary enum FaultTarget)."""

    WEIGHTS = 0
    MODEL_FILE = 1
    STATE = 2
    JOB_STORE = 3
    RESULT_FILE = 4
    OUTPUT = 5
    WORKER_CRASH = 6
    WORKER_HANG = 7
    SLOW_RUN = 8
    POISON_MODEL = 9
    PAYLOAD_CRASH = 10
    PAYLOAD_HANG = 11
    DISK_FULL = 12


#: The functional faults of the compute's worker.
WORKER_FAULTS = frozenset(
    {
        FaultTarget.WORKER_CRASH,
        FaultTarget.WORKER_HANG,
        FaultTarget.SLOW_RUN,
        FaultTarget.POISON_MODEL,
    }
)


#: How long FAULT_INJECT DISK_FULL makes the disk of the results read as full.
DISK_FULL_S = 10.0


class TargetMissing(Exception):
    """Nothing to inject into: no such model or file, or nothing of that kind on board."""


@dataclass(frozen=True, slots=True)
class Injected:
    """Where a fault went and how many bits it changed."""

    where: str
    bits: int


#: Corrupts a target owned elsewhere: (fault model, random generator) -> what it did.
ExternalTarget = Callable[[FaultModel, np.random.Generator], Injected]


class ComputeFaults(Protocol):
    """Where the compute is (this process, or a worker's): faults in its memory."""

    def inject_weights(self, entry: ModelEntry, model: FaultModel, seed: int) -> Injected: ...

    def arm_output_fault(self, model: FaultModel, seed: int) -> None: ...


#: Arms a functional fault of the worker: (target, model name, version) -> what it armed.
WorkerFaults = Callable[[FaultTarget, str, int], Injected]


class GuardFaults:
    """ComputeFaults on a model guard in this process."""

    def __init__(self, guard: ModelGuard) -> None:
        self.guard = guard

    def inject_weights(self, entry: ModelEntry, model: FaultModel, seed: int) -> Injected:
        return inject_weights(self.guard, entry, model, seed)

    def arm_output_fault(self, model: FaultModel, seed: int) -> None:
        self.guard.executor.arm_output_fault(model, seed)


def inject_weights(guard: ModelGuard, entry: ModelEntry, model: FaultModel, seed: int) -> Injected:
    """An upset in one weight (chosen by size) of the model's loaded session."""
    loaded = guard.load(entry)
    if loaded.weights is None:
        raise TargetMissing(
            f"model {entry.label()}: its weights live in the provider's memory, not the "
            "payload's (the known answer checks them)"
        )
    arrays = {k: a for k, a in loaded.weights.arrays.items() if a.nbytes >= 4}
    if not arrays:
        raise TargetMissing(f"model {entry.label()} has no weight of 4 octets or more")
    rng = np.random.default_rng(seed)
    tensor = choose_by_size(arrays, rng)
    injection = inject(arrays[tensor], model, rng)
    return Injected(f"{entry.label()} {tensor} {injection.describe()}", injection.bits)


class FaultInjector:
    """Injects faults into weights, stored models, result files, outputs, and given targets."""

    def __init__(
        self,
        compute: ComputeFaults,
        registry: ModelRegistry,
        files: UploadStore,
        external: dict[FaultTarget, ExternalTarget] | None = None,
    ) -> None:
        self.compute = compute
        self.registry = registry
        self.files = files
        self.external = dict(external or {})
        #: Where functional faults go (None: the compute runs in this process, it has none).
        self.worker: WorkerFaults | None = None

    def inject(
        self, target: FaultTarget, model: FaultModel, name: str, version: int, seed: int
    ) -> Injected:
        """Inject one fault; TargetMissing when there is nothing to corrupt."""
        rng = np.random.default_rng(seed)
        try:
            if target == FaultTarget.WEIGHTS:
                return self.compute.inject_weights(self.registry.entry(name, version), model, seed)
            if target == FaultTarget.MODEL_FILE:
                entry = self.registry.entry(name, version)
                copy = int(rng.integers(2))
                path = entry.path if copy == 0 else entry.copy_path
                return _corrupt_file(path, model, rng, f"{entry.label()} copy {copy + 1}")
            if target == FaultTarget.RESULT_FILE:
                return _corrupt_file(self.files.path_of(name), model, rng, name)
            if target == FaultTarget.OUTPUT:
                self.compute.arm_output_fault(model, seed)
                return Injected("one run of the next DMR or TMR job", 0)
            if target in WORKER_FAULTS:
                if self.worker is None:
                    raise TargetMissing(f"{target.name}: jobs compute in the payload's process")
                return self.worker(target, name, version)
            external = self.external.get(target)
            if external is None:
                raise TargetMissing(f"{target.name}: no such target on this payload")
            return external(model, rng)
        except (RegistryError, FileStoreError, JobStoreError, OSError, NothingToInject) as exc:
            raise TargetMissing(str(exc)) from exc


def state_target(store: TripleStore) -> ExternalTarget:
    """Faults into the protected state: one record of one memory copy, or one file."""

    def corrupt(model: FaultModel, rng: np.random.Generator) -> Injected:
        sites = store.fault_sites()
        site = sites[int(rng.integers(len(sites)))]
        injection = store.corrupt(site, lambda data: inject_bytes(data, model, rng))
        return Injected(f"{site.describe()} octet {injection.word * 4}", injection.bits)

    return corrupt


def job_store_target(store: JobStore) -> ExternalTarget:
    """Faults into one stored field of one job record (the newest jobs first in the draw)."""

    def corrupt(model: FaultModel, rng: np.random.Generator) -> Injected:
        jobs = store.list(limit=100)
        if not jobs:
            raise TargetMissing("the job store holds no job")
        sites = store.record_sites(jobs[int(rng.integers(len(jobs)))].job_id)
        site = sites[int(rng.integers(len(sites)))]
        injection = store.corrupt_record(site, lambda data: inject_bytes(data, model, rng))
        return Injected(f"{site.describe()} octet {injection.word * 4}", injection.bits)

    return corrupt


def payload_targets(faults: SelfFaults, fill: DiskFill) -> dict[FaultTarget, ExternalTarget]:
    """The functional faults of the payload process (struck once the report is sent) and of the
    disk of its results."""

    def payload(fault: PayloadFault, what: str) -> ExternalTarget:
        def arm(model: FaultModel, rng: np.random.Generator) -> Injected:
            faults.arm(fault)
            return Injected(what, 0)

        return arm

    def disk(model: FaultModel, rng: np.random.Generator) -> Injected:
        fill.fill_for(DISK_FULL_S)
        return Injected(f"the disk of the results reads as full for {DISK_FULL_S:g} s", 0)

    return {
        FaultTarget.PAYLOAD_CRASH: payload(PayloadFault.CRASH, "the payload dies by SIGSEGV"),
        FaultTarget.PAYLOAD_HANG: payload(PayloadFault.HANG, "the payload's main loop stops"),
        FaultTarget.DISK_FULL: disk,
    }


def choose_by_size(arrays: dict[str, np.ndarray], rng: np.random.Generator) -> str:
    """A tensor picked with probability proportional to its size: an upset strikes octets."""
    names = sorted(arrays)
    sizes = np.array([arrays[n].nbytes for n in names], dtype=np.float64)
    return names[int(rng.choice(len(names), p=sizes / sizes.sum()))]


def _corrupt_file(path: Path, model: FaultModel, rng: np.random.Generator, label: str) -> Injected:
    # Through a descriptor that refuses a symbolic link: a fault never lands outside the store.
    with os.fdopen(open_regular(path, os.O_RDWR), "r+b") as file:
        data = bytearray(file.read())
        injection: Injection = inject_bytes(data, model, rng)
        # In place and without a sync, as an upset in the flash would leave it.
        start = injection.word * 4
        file.seek(start)
        file.write(data[start : start + injection.words * 4])
    return Injected(f"{label} octet {injection.word * 4}", injection.bits)
