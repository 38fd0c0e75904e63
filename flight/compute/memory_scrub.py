"""The memory half of a scrub pass, where the compute is: every loaded weight checked against
its CRC-32 (read at a set rate, in slices), repaired through the model guard, and the known
answers that are due run. The payload's scrubber drives passes and adds the stored models and
the protected state."""

from __future__ import annotations

import logging
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass

from flight.jobs.executor import ExecutorError
from flight.jobs.registry import RegistryError
from flight.protection.model_guard import GuardError, ModelGuard
from flight.protection.upsets import Outcome, Upset

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class MemoryReport:
    """What a memory scrub checked and found."""

    octets: int
    tensors: int
    corrected: int
    uncorrectable: int


@dataclass(frozen=True, slots=True)
class ScrubSettings:
    """How a memory scrub runs: its read rate (unless at full speed), how old a known answer
    may be before it runs again, and whether a job computes (answers then wait)."""

    full_speed: bool
    rate_octets_s: float
    answer_interval_s: float
    busy: bool


class UpsetCount:
    """Upsets reported from one thread while it scrubs (subscribe it to the upset log)."""

    def __init__(self) -> None:
        self.thread: threading.Thread | None = None
        self.corrected = 0
        self.uncorrectable = 0

    def __call__(self, upset: Upset) -> None:
        if threading.current_thread() is not self.thread:
            return
        if upset.outcome is Outcome.CORRECTED:
            self.corrected += upset.count
        else:
            self.uncorrectable += upset.count


class MemoryScrub:
    """Scrubs the weights and known answers of one guard's loaded models."""

    def __init__(
        self,
        guard: ModelGuard,
        monotonic: Callable[[], float] = time.monotonic,
        stopping: threading.Event | None = None,
    ) -> None:
        self.guard = guard
        self._monotonic = monotonic
        self._stopping = stopping or threading.Event()
        self._count = UpsetCount()
        self._lock = threading.Lock()  # one scrub at a time
        guard.upsets.subscribe(self._count)

    def protected_octets(self) -> int:
        loaded = self.guard.executor.cache.loaded()
        return sum(m.weights.octets for m in loaded if m.weights is not None)

    def scrub(self, settings: ScrubSettings) -> MemoryReport:
        """One pass over the loaded weights, then the due known answers; synchronous."""
        with self._lock:
            count = self._count
            count.thread, count.corrected, count.uncorrectable = threading.current_thread(), 0, 0
            try:
                octets, tensors = self._weights(settings)
                if not settings.busy:
                    self._answers(settings.answer_interval_s)
                return MemoryReport(octets, tensors, count.corrected, count.uncorrectable)
            finally:
                count.thread = None

    def _weights(self, settings: ScrubSettings) -> tuple[int, int]:
        octets = tensors = 0
        began = self._monotonic()
        for loaded in self.guard.executor.cache.loaded():
            weights = loaded.weights
            if weights is None:
                continue
            suspects: list[str] = []
            crc = 0
            for name, piece, last in weights.slices():
                crc = zlib.crc32(piece, crc)
                octets += len(piece)
                if last:
                    tensors += 1
                    if crc != weights.crcs[name]:
                        suspects.append(name)
                    crc = 0
                if not settings.full_speed:
                    ahead = octets / settings.rate_octets_s - (self._monotonic() - began)
                    if ahead > 0:
                        self._stopping.wait(ahead)
                if self._stopping.is_set():
                    return octets, tensors
            if suspects:
                try:
                    self.guard.repair_weights(loaded, suspects)
                except (GuardError, RegistryError, ExecutorError) as exc:
                    log.error("scrub: %s", exc)
        return octets, tensors

    def _answers(self, interval_s: float) -> None:
        for loaded in self.guard.executor.cache.loaded():
            if self._stopping.is_set():
                return
            if self._monotonic() - loaded.answer_checked < interval_s:
                continue
            entry = self.guard.entry_of(loaded.key)
            if entry is None:
                continue
            try:
                self.guard.check_answer(entry, interval_s)
            except (GuardError, RegistryError, ExecutorError) as exc:
                log.error("scrub: known answer of %s: %s", entry.label(), exc)
