"""Checks of a loaded model: its known answer and its weights, with repair and reporting.

The job runner asks before it accepts a job's result (the check runs after the job's runs, on
the bookkeeping thread, so it costs no compute time in a stream of jobs and also catches an
upset that struck during the runs); the scrubber asks periodically. A failed known answer is
first blamed on the owned weights (checked and repaired in place); if they are intact the
session is reloaded from the stored model, which replaces every buffer onnxruntime holds.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import onnx

from flight.jobs.executor import Executor, ExecutorError, LoadedModel
from flight.jobs.redundancy import Redundancy
from flight.jobs.registry import ModelEntry
from flight.protection import abft, known_answer
from flight.protection.abft import AbftModel
from flight.protection.known_answer import KnownAnswer
from flight.protection.upsets import UpsetLocation, UpsetLog
from flight.protection.weights import RepairReport, WeightError, crcs_of

log = logging.getLogger(__name__)

# A known answer that passed this recently vouches for a job's result without running again:
# in a stream of jobs the check costs at most one inference per second.
ANSWER_FRESH_S = 1.0


class GuardError(Exception):
    """A model check that could not restore the model; the message says what failed."""


class KnownAnswerFailed(GuardError):
    """The known answer stayed wrong after the weights were repaired and the session reloaded."""


class WeightsUncorrectable(GuardError):
    """Weight tensors stayed corrupt after repair from the stored model."""


class AbftUnsupported(GuardError):
    """The model has no layer that ABFT checksums can cover."""


# The session cache key of a model's form with ABFT checksums: the model's key plus this.
ABFT_SUFFIX = "+abft"
# Seeded inputs an ABFT threshold is calibrated on (once per model, at its first ABFT job).
ABFT_CALIBRATION_RUNS = 16


@dataclass(frozen=True, slots=True)
class AbftForm:
    """What an ABFT job runs: the checked model's cache key, its source and threshold."""

    key: str
    source: Callable[[], bytes]
    threshold: float


class ModelCatalog(Protocol):
    """What the guard needs of the registered models: the registry in the payload process, a
    view of it in a worker process."""

    def read_verified(self, entry: ModelEntry) -> bytes: ...
    def entry(self, name: str, version: int = 0) -> ModelEntry: ...
    def entries(self) -> list[ModelEntry]: ...
    def set_answer(self, entry: ModelEntry, answer: KnownAnswer) -> ModelEntry: ...
    def set_abft_threshold(self, entry: ModelEntry, threshold: float) -> ModelEntry: ...


class ModelGuard:
    """Known answers and weight checks of the executor's loaded models."""

    def __init__(
        self,
        registry: ModelCatalog,
        executor: Executor,
        upsets: UpsetLog,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.registry = registry
        self.executor = executor
        self.upsets = upsets
        self._monotonic = monotonic
        self.answer_runs = 0
        # One check per model at a time: the scrubber and the bookkeeper may meet on one model.
        self._lock = threading.Lock()

    @property
    def provider(self) -> str:
        return self.executor.cache.provider.provider

    def source(self, entry: ModelEntry) -> Callable[[], bytes]:
        """The model's bytes from a stored copy that passes its SHA-256."""
        return lambda: self.registry.read_verified(entry)

    def load(self, entry: ModelEntry) -> LoadedModel:
        return self.executor.cache.get(entry.key, self.source(entry))

    # -- ABFT -------------------------------------------------------------------------------

    def abft_form(self, entry: ModelEntry) -> AbftForm:
        """The model with checksums, loaded, and its threshold (calibrated on first use).

        Raises AbftUnsupported when no layer of the model can be checked.
        """
        key = entry.key + ABFT_SUFFIX

        def transformed() -> AbftModel:
            model = onnx.load_model_from_string(self.registry.read_verified(entry))
            try:
                return abft.add_checksums(model)
            except abft.AbftError as exc:
                raise AbftUnsupported(f"model {entry.label()}: {exc}") from exc

        def source() -> bytes:
            return transformed().model.SerializeToString()

        current = self.registry.entry(entry.name, entry.version)
        if current.abft_threshold is not None:
            return AbftForm(key, source, current.abft_threshold)
        checked = transformed()
        loaded = self.executor.cache.get(key, source)
        feeds = abft.random_feeds(
            checked.model, ABFT_CALIBRATION_RUNS, int.from_bytes(entry.sha256[:4], "big")
        )

        def run(feed: Mapping[str, np.ndarray]) -> Sequence[np.ndarray]:
            with self.executor.gate.running():  # heat the thermal governor counts
                return list(loaded.session.run(None, dict(feed)))

        try:
            calibration = abft.calibrate(run, checked, feeds)
        except abft.AbftError as exc:
            raise AbftUnsupported(f"model {entry.label()}: {exc}") from exc
        log.info(
            "model %s: ABFT on %d layers, threshold %.3g (%d runs)",
            entry.label(), len(checked.layers), calibration.threshold, calibration.runs,
        )  # fmt: skip
        self.registry.set_abft_threshold(entry, calibration.threshold)
        return AbftForm(key, source, calibration.threshold)

    # -- known answers ------------------------------------------------------------------------

    def record_answer(self, entry: ModelEntry) -> ModelEntry:
        """Run the model's fixed input and record the output as its known answer."""
        loaded = self.load(entry)
        if loaded.weights is not None:
            # An upset recorded as the answer would fail every later check of intact weights.
            self._repair(entry, loaded)
        answer = known_answer.record(self.provider, self._run_answer(entry, loaded))
        loaded.answer_checked = self._monotonic()
        return self.registry.set_answer(entry, answer)

    def check_answer(self, entry: ModelEntry, max_age_s: float = 0.0) -> bool:
        """Check the known answer unless one passed within `max_age_s`; repair on a mismatch.

        True when the check found and corrected something (a result computed before it is
        suspect). Raises KnownAnswerFailed, WeightsUncorrectable, ModelCorrupt (registry),
        ExecutorError.
        """
        with self._lock:
            loaded = self.load(entry)
            if self._monotonic() - loaded.answer_checked < max_age_s:
                return False
            current = self.registry.entry(entry.name, entry.version)
            answer = current.answer
            if answer is None or answer.provider != self.provider:
                # Registered before answers were kept, or the provider changed since.
                self.record_answer(current)
                return False
            if self._matches(current, loaded, answer):
                return False
            log.warning("model %s: known answer mismatch", entry.label())
            if loaded.weights is not None:
                report = self._repair(entry, loaded)
                if report.repaired and self._matches(current, loaded, answer):
                    return True
            # The weights are intact (or were not the cause): reload every buffer.
            self.executor.cache.evict(entry.key)
            loaded = self.load(entry)
            if self._matches(current, loaded, answer):
                self.upsets.corrected(UpsetLocation.KNOWN_ANSWER, entry.label())
                return True
            self.executor.cache.evict(entry.key)
            self.upsets.uncorrectable(UpsetLocation.KNOWN_ANSWER, entry.label())
            raise KnownAnswerFailed(
                f"model {entry.label()}: the known answer recorded at registration differs "
                "after the weights were checked and the session reloaded"
            )

    def _run_answer(self, entry: ModelEntry, loaded: LoadedModel) -> known_answer.Outputs:
        feeds = known_answer.known_answer_input(entry.signature, entry.sha256)
        names = [output.name for output in loaded.session.get_outputs()]
        self.answer_runs += 1
        try:
            # Counted by the thermal governor but not held by it: a check of a few ms, and
            # holding it would hold the result of a job that has already computed.
            with self.executor.gate.running():
                values = loaded.session.run(None, feeds)
        except Exception as exc:  # onnxruntime's errors derive from Exception alone
            raise ExecutorError(
                f"model {entry.label()}: known-answer input refused: {type(exc).__name__}: {exc}"
            ) from exc
        return dict(zip(names, values, strict=True))

    def _matches(self, entry: ModelEntry, loaded: LoadedModel, answer: KnownAnswer) -> bool:
        outputs = self._run_answer(entry, loaded)
        if answer.matches(outputs, self.executor.tolerance(entry.tolerance)):
            loaded.answer_checked = self._monotonic()
            return True
        return False

    def result_suspect(
        self,
        entry: ModelEntry,
        redundancy: Redundancy,
        generation: int,
        feeds: dict[str, np.ndarray],
        feed_crcs: dict[str, int],
    ) -> str | None:
        """Why a job's result cannot be accepted as it is (an upset found and corrected now,
        that its runs may have seen: the job must run again), or None.

        Checks the input arrays against their CRCs from load time; for DMR and TMR jobs every
        weight (redundant runs share the weights, so only this catches a weight upset); and the
        known answer unless one passed within ANSWER_FRESH_S. Raises what check_answer raises.
        """
        if crcs_of(feeds) != feed_crcs:
            self.upsets.corrected(UpsetLocation.INPUT, f"{entry.label()} job input in memory")
            return "its input changed in memory"
        key = entry.key + ABFT_SUFFIX if redundancy == Redundancy.ABFT else entry.key
        if redundancy != Redundancy.NONE and not self.weights_clean_since(entry, generation, key):
            return "the model's weights were repaired"
        if self.check_answer(entry, ANSWER_FRESH_S):
            return "the model's known answer failed and was restored"
        return None

    # -- weights ------------------------------------------------------------------------------

    def generation(self, entry: ModelEntry, key: str | None = None) -> int:
        """The repair generation of the model's loaded weights (-1: not loaded, or not owned);
        `key`: of another form of the model (ABFT)."""
        loaded = self.executor.cache.peek(key or entry.key)
        if loaded is None or loaded.weights is None:
            return -1
        return loaded.weights.generation

    def weights_clean_since(
        self, entry: ModelEntry, generation: int, key: str | None = None
    ) -> bool:
        """Check every weight of the loaded model (repairing what fails): True when all were
        intact and no repair happened since `generation` was read."""
        loaded = self.executor.cache.peek(key or entry.key)
        if loaded is None:
            # Evicted meanwhile (perhaps reloaded after a failed check): the runs are suspect.
            return False
        if loaded.weights is None:
            return True  # weights onnxruntime keeps to itself: the known answer checks them
        report = self._repair(entry, loaded)
        return report.clean and loaded.weights.generation == generation

    def repair_weights(self, loaded: LoadedModel, suspects: list[str] | None = None) -> None:
        """Check (and repair) the weights of a loaded model, whose entry is looked up by key."""
        entry = self.entry_of(loaded.key)
        if entry is not None and loaded.weights is not None:
            self._repair(entry, loaded, suspects)

    def _repair(
        self, entry: ModelEntry, loaded: LoadedModel, suspects: list[str] | None = None
    ) -> RepairReport:
        assert loaded.weights is not None
        try:
            report = loaded.weights.check_and_repair(suspects)
        except WeightError as exc:
            self.executor.cache.evict(entry.key)
            self.upsets.uncorrectable(UpsetLocation.WEIGHTS, f"{entry.label()}: {exc}")
            raise WeightsUncorrectable(str(exc)) from exc
        if report.repaired:
            names = ", ".join(report.repaired)
            self.upsets.corrected(
                UpsetLocation.WEIGHTS, f"{entry.label()}: {names}", len(report.repaired)
            )
        if report.failed:
            # A fresh load derives every buffer again; this one must not be used any more.
            self.executor.cache.evict(entry.key)
            names = ", ".join(report.failed)
            self.upsets.uncorrectable(
                UpsetLocation.WEIGHTS, f"{entry.label()}: {names}", len(report.failed)
            )
            raise WeightsUncorrectable(
                f"model {entry.label()}: tensors {names} differ from their golden CRC-32 after "
                "repair from the stored model"
            )
        return report

    def entry_of(self, key: str) -> ModelEntry | None:
        """The registered model a cache key (plain or ABFT form) belongs to."""
        key = key.removesuffix(ABFT_SUFFIX)
        for entry in self.registry.entries():
            if entry.key == key:
                return entry
        return None
