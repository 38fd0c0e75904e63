"""The scrubber: a thread that checks every loaded weight, the stored models, the protected
state and the known answers periodically, and repairs what it finds. The weights and the known
answers live where the compute is (this process, or a worker's): a pass asks it to scrub them
(flight/compute/memory_scrub.py) and adds the stored models and the state, which live here.

A pass starts every period; within a pass the weights are read at no more than the set rate
(its share of a core), in slices, so a pass over large models does not starve the link or the
jobs. A pass that outlasts its period is reported: the promise that a weight upset is found
within one period holds only while passes fit in it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from flight.compute.memory_scrub import MemoryReport, ScrubSettings, UpsetCount
from flight.jobs.registry import ModelRegistry, RegistryError
from flight.protection.upsets import UpsetLog

log = logging.getLogger(__name__)

# Stored model copies are read from disk (SHA-256) on every tenth pass: they change far less
# often than memory is hit, and reading them costs I/O on the board's flash.
MODEL_FILES_EVERY = 10


@dataclass(frozen=True, slots=True)
class PassReport:
    """What one scrub pass checked and found (dictionary packet SCRUB_REPORT)."""

    octets: int
    tensors: int
    model_files: int
    detected: int
    corrected: int
    uncorrectable: int
    duration_s: float


class MemoryScrubber(Protocol):
    """Where the weights are: scrubs them (and runs due known answers) when asked."""

    def scrub(self, settings: ScrubSettings) -> MemoryReport: ...

    def protected_octets(self) -> int: ...


class Scrubber:
    """Periodic scrub passes (`start`), or one pass on demand (`run_pass`, `request_pass`)."""

    def __init__(
        self,
        memory: MemoryScrubber,
        registry: ModelRegistry,
        upsets: UpsetLog,
        *,
        period_s: float = 60.0,
        rate_octets_s: float = 64e6,
        answer_interval_s: float = 300.0,
        scrub_state: Callable[[], None] | None = None,
        busy: Callable[[], bool] = lambda: False,
        on_late: Callable[[PassReport, float], None] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        """`scrub_state`: votes and repairs the protected state; `busy`: a job is computing
        (periodic known answers wait for a pause, they would share its cores)."""
        self.memory = memory
        self.registry = registry
        self.period_s = period_s
        self.rate_octets_s = rate_octets_s
        self.answer_interval_s = answer_interval_s
        self.scrub_state = scrub_state
        self._busy = busy
        self._on_late = on_late
        self._monotonic = monotonic
        self._count = UpsetCount()
        upsets.subscribe(self._count)
        self.passes = 0
        self.started_at = monotonic()
        self.last_pass_at: float | None = None
        self.last_report: PassReport | None = None
        self._requests: list[Callable[[PassReport], None]] = []
        self._requests_lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="scrubber", daemon=True)

    # -- lifetime -----------------------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def request_pass(self, on_done: Callable[[PassReport], None]) -> None:
        """Run a full-speed pass now on the scrubber's thread; `on_done(report)` after it."""
        with self._requests_lock:
            self._requests.append(on_done)
        self._wake.set()

    def wake(self) -> None:
        """A setting changed: the next pass is scheduled again."""
        self._wake.set()

    @property
    def protected_octets(self) -> int:
        return self.memory.protected_octets()

    def last_pass_age_s(self) -> float:
        since = self.last_pass_at if self.last_pass_at is not None else self.started_at
        return self._monotonic() - since

    # -- passes -------------------------------------------------------------------------------

    def _loop(self) -> None:
        # The first pass waits a period: the stores were checked as they opened, and a stop
        # soon after the start must not wait for a pass.
        next_at = self._monotonic() + self.period_s
        while not self._stopping.is_set():
            self._wake.wait(max(0.0, next_at - self._monotonic()))
            self._wake.clear()
            if self._stopping.is_set():
                return
            with self._requests_lock:
                requests, self._requests = self._requests, []
            if not requests and self._monotonic() < next_at:
                # Woken by a setting: the next pass comes one new period after the last (an
                # operator who lengthens the period postpones it too).
                next_at = (self.last_pass_at or self.started_at) + self.period_s
                continue
            started = self._monotonic()
            try:
                report = self.run_pass(full_speed=bool(requests))
            except Exception:  # the scrubber must outlive any bug in one pass
                log.exception("scrub pass failed")
                report = PassReport(0, 0, 0, 0, 0, 0, self._monotonic() - started)
            for on_done in requests:
                try:
                    on_done(report)
                except Exception:
                    log.exception("scrub pass report failed")
            period = self.period_s
            if report.duration_s > period and self._on_late is not None and not requests:
                self._on_late(report, period)
            next_at = started + period

    def run_pass(self, full_speed: bool = False) -> PassReport:
        """One pass: weights and due known answers (where the compute is), stored models
        (every tenth pass, or when `full_speed`), state. Synchronous, on the calling thread."""
        started = self._monotonic()
        memory = self.memory.scrub(
            ScrubSettings(full_speed, self.rate_octets_s, self.answer_interval_s, self._busy())
        )
        count = self._count
        count.thread, count.corrected, count.uncorrectable = threading.current_thread(), 0, 0
        try:
            files = 0
            if full_speed or self.passes % MODEL_FILES_EVERY == 0:
                files = self._scrub_model_files()
            if self.scrub_state is not None:
                self.scrub_state()
        finally:
            count.thread = None
        self.passes += 1
        self.last_pass_at = self._monotonic()
        corrected = memory.corrected + count.corrected
        uncorrectable = memory.uncorrectable + count.uncorrectable
        report = PassReport(
            octets=memory.octets,
            tensors=memory.tensors,
            model_files=files,
            detected=corrected + uncorrectable,
            corrected=corrected,
            uncorrectable=uncorrectable,
            duration_s=self.last_pass_at - started,
        )
        self.last_report = report
        log.debug("scrub pass %d: %s", self.passes, report)
        return report

    def _scrub_model_files(self) -> int:
        checked = 0
        for entry in self.registry.entries():
            try:
                self.registry.verify_copies(entry)
            except (RegistryError, OSError) as exc:
                log.error("scrub: %s", exc)
            checked += 2
        return checked
