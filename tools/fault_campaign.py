"""Fault-injection campaign: seeded trials of each fault model against the real payload code.

Every trial injects one fault (flight/protection/faults.py) into one target of a payload built
in a temporary directory (the model registry, the session cache and executor, the model guard,
the scrubber, the upload store, the uplink receive chain), lets the payload do what it does in
flight, and classifies what came out: masked, detected and corrected, detected and
uncorrectable, or silent data corruption (SDC). The report is Markdown with a PNG chart; the
same seed gives the same classification table.

CLI:
    python -m tools.fault_campaign --trials N --seed S --out DIR [--model cnn|mlp] [--only T ...]
"""

from __future__ import annotations

import argparse
import contextlib
import enum
import hashlib
import io
import logging
import math
import os
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
import onnx
import onnxruntime as ort

from flight.compute.job_compute import MAX_RERUNS, InputCorrupt
from flight.compute.memory_scrub import MemoryScrub
from flight.counters import LinkCounters
from flight.files.upload_store import FileStoreError, UploadStore
from flight.jobs.executor import (
    Executor,
    ExecutorError,
    SessionCache,
    create_session,
    reference_session,
)
from flight.jobs.model_check import InputMismatch, check_input, load_input
from flight.jobs.providers import CPU, ProviderChoice
from flight.jobs.redundancy import Outputs, Redundancy, VotingError, fingerprint
from flight.jobs.registry import ModelCorrupt, ModelRegistry, RegistryError
from flight.jobs.runner import result_file_name, serialise_outputs
from flight.jobs.store import JOBS_DB_FILE, Job, JobStore, JobStoreError
from flight.protection.faults import FaultModel, inject, inject_bytes
from flight.protection.injection import FaultInjector, FaultTarget, GuardFaults, choose_by_size
from flight.protection.model_guard import GuardError, ModelGuard
from flight.protection.scrubber import Scrubber
from flight.protection.upsets import Upset, UpsetLocation, UpsetLog
from flight.protection.weights import WeightSet, crc_of
from flight.uplink import UplinkReceiver
from spacelink.cltu import encode_cltu
from spacelink.cop1 import Farm1
from spacelink.icd import TC_MAX_DATA_LENGTH, LinkParameters
from spacelink.spacepacket import (
    PEC_LENGTH,
    PRIMARY_HEADER_LENGTH,
    TC_SECONDARY_HEADER_LENGTH,
    PusTc,
)
from spacelink.tcframe import TcFrame
from telemetry_defs.loader import default_dictionary
from tools import model_gen

log = logging.getLogger(__name__)

REPORT_NAME = "fault_campaign.md"
CHART_NAME = "fault_campaign.png"
# The targets of the issue: 0 SDC under scrubbing and TMR in this many trials per fault model.
TARGET_TRIALS = 10_000
CONFIDENCE = 0.95
SMALL_MLP_WIDTHS = (64, 256, 128, 10)
MODEL_NAME = "campaign"
INPUT_FILE = "campaign-input.npy"
RESULT_JOB_ID = 1
# The uplink carries file-upload chunks, the bulk of a pass's TC traffic.
UPLOAD_CHUNK = "FILE_UPLOAD_CHUNK"
# Alternating ones and zeros between CLTUs (CCSDS 231.0 idle sequence): it also ends a CLTU
# whose tail sequence a fault made decodable, as the next CLTU's start would.
IDLE_SEQUENCE = b"\x55" * 16


class CampaignError(Exception):
    """The campaign cannot run: the payload's clean result differs from the reference."""


class Outcome(enum.Enum):
    """The class of one trial."""

    MASKED = "masked"
    CORRECTED = "detected, corrected"
    UNCORRECTABLE = "detected, uncorrectable"
    SDC = "silent data corruption"


class Target(enum.Enum):
    """Where a trial's fault goes (the --only names)."""

    WEIGHTS = "weights"
    INPUTS = "inputs"
    OUTPUTS = "outputs"
    JOB_STORE = "jobstore"
    RESULT_FILES = "results"
    UPLINK = "uplink"


TARGET_TITLES = {
    Target.WEIGHTS: "Weight buffers",
    Target.INPUTS: "Input tensors",
    Target.OUTPUTS: "Replica outputs",
    Target.JOB_STORE: "Job-store records",
    Target.RESULT_FILES: "Result files",
    Target.UPLINK: "Uplink frames",
}

SCRUB_ONLY = "scrub pass alone"
STORE_READ = "record check on read"
STORE_REOPEN = "check at reopen"
STORE_FILE = "file octets, reopen"
_MODES = tuple(mode.name for mode in Redundancy)
PROTECTIONS: dict[Target, tuple[str, ...]] = {
    Target.WEIGHTS: (*_MODES, SCRUB_ONLY),
    Target.INPUTS: _MODES,
    Target.OUTPUTS: _MODES,
    Target.JOB_STORE: (STORE_READ, STORE_REOPEN, STORE_FILE),
    Target.RESULT_FILES: ("SHA-256",),
    Target.UPLINK: ("BCH + FECF + COP-1",),
}
# Runs a job makes before its check when nothing disagrees.
BASE_RUNS = {Redundancy.NONE: 1, Redundancy.DMR: 2, Redundancy.TMR: 3, Redundancy.ABFT: 1}


@dataclass(frozen=True)
class CampaignModel:
    """A model the campaign can run, and how it is described in the report."""

    name: str
    description: str
    build: Callable[[], onnx.ModelProto]


MODELS = {
    "cnn": CampaignModel(
        "cnn",
        "the demo CNN classifier, `tools.model_gen.cnn_classifier()` (image [1,3,64,64] -> 10 "
        "classes)",
        model_gen.cnn_classifier,
    ),
    "mlp": CampaignModel(
        "mlp",
        f"a small MLP, `tools.model_gen.mlp(widths={SMALL_MLP_WIDTHS})` (Gemm+Relu, features "
        f"[1,{SMALL_MLP_WIDTHS[0]}] -> {SMALL_MLP_WIDTHS[-1]} logits)",
        lambda: model_gen.mlp(widths=SMALL_MLP_WIDTHS),
    ),
}


# -- classification ---------------------------------------------------------------------------


def classify(delivered: bool, correct: bool, detected: bool) -> Outcome:
    """The class of a trial: what the system delivered (a job's accepted result, a download,
    the weights after a scrub pass), whether it equals the fault-free one, whether a check
    reported the fault. Nothing delivered means a check refused it: detected, uncorrectable.
    A wrong delivery is SDC even when some check fired: the error still got through."""
    if not delivered:
        return Outcome.UNCORRECTABLE
    if not correct:
        return Outcome.SDC
    return Outcome.CORRECTED if detected else Outcome.MASKED


def classify_frame(received: Sequence[bytes], sent: Sequence[bytes], corrected: int) -> Outcome:
    """An uplink trial: a rejected frame is retransmitted by COP-1 (detected, corrected), one
    accepted after BCH correction is corrected, an identical one untouched is masked, and an
    accepted frame with other packets is SDC."""
    if list(received) == list(sent):
        return Outcome.CORRECTED if corrected else Outcome.MASKED
    if not received:
        return Outcome.CORRECTED
    return Outcome.SDC


def same_outputs(a: Outputs, b: Outputs) -> bool:
    """Bit for bit: the same output names, dtypes, shapes and bytes."""
    return a.keys() == b.keys() and all(fingerprint(a[k]) == fingerprint(b[k]) for k in a)


def sdc_upper_bound(sdc: int, trials: int, confidence: float = CONFIDENCE) -> float:
    """One-sided Clopper-Pearson upper bound of the SDC rate (about 3/N when none was seen)."""
    if trials < 1 or not 0 <= sdc <= trials:
        raise ValueError(f"expected 0 <= sdc <= trials and trials >= 1, found {sdc}/{trials}")
    if sdc == trials:
        return 1.0
    alpha = 1.0 - confidence
    if sdc == 0:
        return 1.0 - alpha ** (1.0 / trials)
    low, high = sdc / trials, 1.0
    for _ in range(100):  # bisection to far below the printed precision
        mid = (low + high) / 2
        if _binomial_cdf(sdc, trials, mid) > alpha:
            low = mid
        else:
            high = mid
    return high


def _binomial_cdf(k: int, n: int, p: float) -> float:
    log_p, log_q = math.log(p), math.log1p(-p)
    terms = [
        math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * log_p
        + (n - i) * log_q
        for i in range(k + 1)
    ]  # fmt: skip
    top = max(terms)
    return math.exp(top) * sum(math.exp(t - top) for t in terms)


# -- results ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TrialResult:
    """One trial's class, and a fact some targets count beside it (FLAG_COLUMNS)."""

    outcome: Outcome
    flag: bool = False


# What the flag of a trial says, for the targets that set it.
FLAG_COLUMNS = {
    Target.WEIGHTS: "Found by one scrub pass",
    Target.UPLINK: "Frames rejected (COP-1 retransmits)",
    Target.JOB_STORE: "Store would not open",
}


@dataclass
class Cell:
    """The trials of one fault model against one target under one protection."""

    target: Target
    fault: FaultModel
    protection: str
    counts: Counter[Outcome] = field(default_factory=Counter)
    flagged: int = 0
    seconds: float = 0.0

    @property
    def trials(self) -> int:
        return sum(self.counts.values())

    def add(self, result: TrialResult) -> None:
        self.counts[result.outcome] += 1
        if result.flag:
            self.flagged += 1


@dataclass
class CampaignResult:
    """Every cell run, and what the report says about the setup."""

    seed: int
    trials: int
    model: CampaignModel
    model_facts: str
    cells: list[Cell]
    seconds: float
    # The scrubber's default period and rate, and the octets of weights a pass reads.
    scrub_period_s: float = 0.0
    scrub_rate_octets_s: float = 0.0
    weight_octets: int = 0
    abft: AbftResult | None = None
    # Findings beside the counts, per target (a check that failed in an unexpected way).
    notes: dict[Target, list[str]] = field(default_factory=dict)

    def of(self, target: Target) -> list[Cell]:
        return [cell for cell in self.cells if cell.target is target]


# -- the payload under test -------------------------------------------------------------------


def _frozen_clock() -> float:
    """The payload's monotonic clock during the campaign: it never advances.

    A known answer that passed vouches for a job for ANSWER_FRESH_S, so with real time whether
    a job's check runs the known answer would depend on how fast the trials go. Frozen, it
    never runs again once recorded (as for a job in a stream): a fixed, conservative rule.
    """
    return 0.0


class OutputFaults:
    """Corrupts one output of the armed run of the sessions it creates (a replica upset)."""

    def __init__(self) -> None:
        self._armed: tuple[int, FaultModel, np.random.Generator] | None = None
        self._runs = 0

    def arm(self, run: int, model: FaultModel, rng: np.random.Generator) -> None:
        """Corrupt an output of the `run`-th session run from now (1-based)."""
        self._armed, self._runs = (run, model, rng), 0

    def disarm(self) -> bool:
        """Forget an armed fault; True when it had not struck."""
        armed, self._armed = self._armed, None
        return armed is not None

    def factory(
        self, model: bytes, options: ort.SessionOptions, providers: list[str]
    ) -> ort.InferenceSession:
        """A SessionCache factory: a real session, wrapped."""
        return _FaultySession(create_session(model, options, providers), self)

    def after_run(self, names: list[str], values: list[Any]) -> list[Any]:
        if self._armed is None:
            return values
        self._runs += 1
        run, model, rng = self._armed
        if self._runs != run:
            return values
        self._armed = None
        arrays = {
            name: value
            for name, value in zip(names, values, strict=True)
            if isinstance(value, np.ndarray) and value.nbytes >= 4
        }
        name = choose_by_size(arrays, rng)
        index = names.index(name)
        upset = np.array(values[index], order="C")
        inject(upset, model, rng)
        values[index] = upset
        return values


class _FaultySession:
    """An onnxruntime session whose outputs pass through OutputFaults."""

    def __init__(self, session: ort.InferenceSession, faults: OutputFaults) -> None:
        self._session = session
        self._faults = faults

    def run(
        self,
        output_names: list[str] | None,
        feeds: dict[str, np.ndarray],
        run_options: ort.RunOptions | None = None,
    ) -> list[Any]:
        if run_options is None:
            values = self._session.run(output_names, feeds)
        else:
            values = self._session.run(output_names, feeds, run_options)
        names = output_names or [output.name for output in self._session.get_outputs()]
        return self._faults.after_run(list(names), list(values))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._session, name)


#: Called with the number of runs done so far (0: before the first) and the job's feeds.
StrikeHook = Callable[[int, dict[str, np.ndarray]], None]


def _no_strike(runs: int, feeds: dict[str, np.ndarray]) -> None:
    return None


class Payload:
    """The payload's job path on a model, in a directory: registry, session cache and executor
    (one intra-op thread), model guard, scrubber, upload store with the job's input file."""

    def __init__(self, root: Path, model: bytes, model_input: np.ndarray) -> None:
        self.upsets = UpsetLog()
        # What every check reported during the current trial.
        self.found: list[Upset] = []
        self.upsets.subscribe(self.found.append)
        self.registry = ModelRegistry(
            root / "models", max_model_bytes=max(len(model), 1 << 20), upsets=self.upsets
        )
        self.files = UploadStore(root / "files", quota_bytes=1 << 34, reserve_bytes=0)
        self.output_faults = OutputFaults()
        # Two sessions: the model and its form with ABFT checksums (job mode ABFT).
        cache = SessionCache(2, ProviderChoice(CPU), 1, factory=self.output_faults.factory)
        self.executor = Executor(cache)
        self.guard = ModelGuard(self.registry, self.executor, self.upsets, _frozen_clock)
        memory = MemoryScrub(self.guard, _frozen_clock)
        self.scrubber = Scrubber(memory, self.registry, self.upsets, monotonic=_frozen_clock)
        self.injector = FaultInjector(GuardFaults(self.guard), self.registry, self.files)
        self.entry = self.guard.record_answer(self.registry.register(MODEL_NAME, 1, model))
        buffer = io.BytesIO()
        np.save(buffer, model_input, allow_pickle=False)
        self.files.put(INPUT_FILE, buffer.getvalue())
        feeds = self.load_input()
        names = [output.name for output in reference_session(model, 1).get_outputs()]
        values = reference_session(model, 1).run(None, feeds)
        self.golden: Outputs = dict(zip(names, values, strict=True))
        for mode in Redundancy:
            clean = self.run_job(mode, _no_strike)
            if clean is None or not same_outputs(clean, self.golden) or self.found:
                raise CampaignError(
                    f"the payload's fault-free {mode.name} job does not reproduce the reference "
                    "session's outputs bit for bit: trials could not be classified"
                )
        # The fault-free bytes of every loaded weight set, by session key (model, ABFT form).
        self.golden_weights = {
            loaded.key: {name: array.copy() for name, array in loaded.weights.arrays.items()}
            for loaded in self.executor.cache.loaded()
            if loaded.weights is not None
        }

    def close(self) -> None:
        self.files.close()

    def weights(self) -> WeightSet:
        """The weight set the loaded session computes from (loaded again if evicted)."""
        weights = self.guard.load(self.entry).weights
        if weights is None:
            raise CampaignError("the session keeps its own weights: nothing to inject into")
        return weights

    def weights_pristine(self) -> bool:
        """Every loaded weight equals its fault-free bytes (an evicted model reloads clean)."""
        return all(
            np.array_equal(_octets(array), _octets(self.golden_weights[loaded.key][name]))
            for loaded in self.executor.cache.loaded()
            if loaded.weights is not None
            for name, array in loaded.weights.arrays.items()
        )

    def restore_weights(self) -> None:
        """Undo what a trial left in the weights (a fault no check found)."""
        for loaded in self.executor.cache.loaded():
            if loaded.weights is not None:
                for name, array in loaded.weights.arrays.items():
                    np.copyto(array, self.golden_weights[loaded.key][name])

    def begin_trial(self) -> None:
        self.found.clear()
        self.output_faults.disarm()

    # -- the job runner's path (flight/jobs/runner.py _prepare_next, _compute, _accepted) -----

    def load_input(self) -> dict[str, np.ndarray]:
        """The job's input from its stored file, checked against the file's SHA-256."""
        data = self.files.path_of(INPUT_FILE).read_bytes()
        if hashlib.sha256(data).digest() != self.files.info(INPUT_FILE).sha256:
            self.upsets.uncorrectable(UpsetLocation.INPUT, f"file {INPUT_FILE}")
            raise InputCorrupt(f"input {INPUT_FILE} no longer matches its SHA-256")
        return check_input(self.entry.signature, load_input(data))

    def compute(
        self,
        mode: Redundancy,
        feeds: dict[str, np.ndarray],
        on_run: Callable[[int], None] | None = None,
    ) -> tuple[Outputs, int] | None:
        """The job's runs (outputs and the weights' repair generation before them), or None
        when they failed (runner.py `_compute`)."""
        entry = self.entry
        key, source, threshold = entry.key, self.guard.source(entry), 0.0
        try:
            if mode == Redundancy.ABFT:
                form = self.guard.abft_form(entry)
                key, source, threshold = form.key, form.source, form.threshold
            loaded = self.executor.cache.get(key, source)
            generation = self.guard.generation(entry, key)
            result = self.executor.execute(
                key,
                source,
                feeds,
                mode,
                tolerance=entry.tolerance,
                abft_threshold=threshold,
                before_rerun=lambda: self.guard.repair_weights(loaded),
                on_run=on_run,
            )
        except VotingError as exc:
            self.upsets.uncorrectable(UpsetLocation.OUTPUT, f"campaign job: {exc}")
            return None
        except (GuardError, ModelCorrupt, ExecutorError):
            return None
        repaired = False
        if mode == Redundancy.ABFT and result.outvoted:
            # The weights were repaired (and counted) between the failed run and its rerun.
            now = self.guard.generation(entry, key)
            repaired, generation = now != generation, now
        if result.outvoted and not repaired:
            self.upsets.corrected(UpsetLocation.OUTPUT, "campaign job", len(result.outvoted))
        return result.outputs, generation

    def run_job(self, mode: Redundancy, strike: StrikeHook) -> Outputs | None:
        """One job under `mode` with the runner's accept loop: the accepted outputs, or None
        when the job failed. `strike` is called before the first run and after each run of
        the first attempt."""
        try:
            feeds = self.load_input()
        except (FileStoreError, OSError, InputMismatch, InputCorrupt):
            return None
        feed_crcs = {name: crc_of(array) for name, array in feeds.items()}
        strike(0, feeds)
        first = self.compute(mode, feeds, lambda runs: strike(runs, feeds))
        if first is None:
            return None
        outputs, generation = first
        for _ in range(MAX_RERUNS + 1):
            try:
                suspect = self.guard.result_suspect(self.entry, mode, generation, feeds, feed_crcs)
            except (GuardError, RegistryError, ExecutorError):
                return None
            if suspect is None:
                return outputs
            if {name: crc_of(array) for name, array in feeds.items()} != feed_crcs:
                try:
                    feeds = self.load_input()
                except (FileStoreError, OSError, InputMismatch, InputCorrupt):
                    return None
                feed_crcs = {name: crc_of(array) for name, array in feeds.items()}
            rerun = self.compute(mode, feeds)
            if rerun is None:
                return None
            outputs, generation = rerun
        return None

    # -- trials -----------------------------------------------------------------------------

    def weight_trial(
        self, fault: FaultModel, protection: str, rng: np.random.Generator
    ) -> TrialResult:
        """A weight upset before the job's first run or between two of its runs; the job's
        accepted result is classified, then one full-speed scrub pass runs."""
        self.begin_trial()
        seed = int(rng.integers(1 << 63))
        if protection == SCRUB_ONLY:
            self._inject_weight(fault, seed, Redundancy.NONE)
            report = self.scrubber.run_pass(full_speed=True)
            pristine = self.weights_pristine()
            self.restore_weights()
            outcome = classify(report.uncorrectable == 0, pristine, report.detected > 0)
            return TrialResult(outcome, report.detected > 0)
        mode = Redundancy[protection]
        moment = int(rng.integers(BASE_RUNS[mode]))

        def strike(runs: int, feeds: dict[str, np.ndarray]) -> None:
            if runs == moment:
                self._inject_weight(fault, seed, mode)

        outputs = self.run_job(mode, strike)
        detected = bool(self.found)
        self.scrubber.run_pass(full_speed=True)
        found = any(u.location is UpsetLocation.WEIGHTS for u in self.found)
        self.restore_weights()
        return TrialResult(job_outcome(outputs, self.golden, detected), found)

    def _inject_weight(self, fault: FaultModel, seed: int, mode: Redundancy) -> None:
        """A fault in the weights the job's session computes from: the model's through
        FAULT_INJECT's path, or (ABFT) those of its form with checksums, drawn the same way."""
        if mode != Redundancy.ABFT:
            self.weights()  # loads the model again if a failed check evicted it
            self.injector.inject(FaultTarget.WEIGHTS, fault, MODEL_NAME, 1, seed)
            return
        form = self.guard.abft_form(self.entry)
        weights = self.executor.cache.get(form.key, form.source).weights
        if weights is None:
            raise CampaignError("the ABFT form keeps its own weights: nothing to inject into")
        rng = np.random.default_rng(seed)
        arrays = {name: a for name, a in weights.arrays.items() if a.nbytes >= 4}
        inject(arrays[choose_by_size(arrays, rng)], fault, rng)

    def input_trial(
        self, fault: FaultModel, protection: str, rng: np.random.Generator
    ) -> TrialResult:
        """An upset in the loaded input array (after its CRC was taken) before the first run
        or between two runs."""
        self.begin_trial()
        mode = Redundancy[protection]
        moment = int(rng.integers(BASE_RUNS[mode]))

        def strike(runs: int, feeds: dict[str, np.ndarray]) -> None:
            if runs == moment:
                arrays = {name: a for name, a in feeds.items() if a.nbytes >= 4}
                inject(feeds[choose_by_size(arrays, rng)], fault, rng)

        outputs = self.run_job(mode, strike)
        return TrialResult(job_outcome(outputs, self.golden, bool(self.found)))

    def output_trial(
        self, fault: FaultModel, protection: str, rng: np.random.Generator
    ) -> TrialResult:
        """An upset in one output of one of the job's runs."""
        self.begin_trial()
        mode = Redundancy[protection]
        self.output_faults.arm(1 + int(rng.integers(BASE_RUNS[mode])), fault, rng)
        outputs = self.run_job(mode, _no_strike)
        if self.output_faults.disarm():
            raise CampaignError("an armed output fault did not strike: the runs were skipped")
        return TrialResult(job_outcome(outputs, self.golden, bool(self.found)))

    def result_file_trial(
        self, fault: FaultModel, protection: str, rng: np.random.Generator
    ) -> TrialResult:
        """An upset in a stored result file; the file service checks it before a download."""
        self.begin_trial()
        name = result_file_name(RESULT_JOB_ID, len(self.golden))
        if not self.files.exists(name):
            self.files.put(name, serialise_outputs(self.golden))
        path = self.files.path_of(name)
        original = path.read_bytes()
        self.injector.inject(FaultTarget.RESULT_FILE, fault, name, 0, int(rng.integers(1 << 63)))
        delivered = self.files.intact(name)
        correct = path.read_bytes() == original
        with open(path, "r+b") as file:  # back to the stored result for the next trial
            file.write(original)
        return TrialResult(classify(delivered, correct, not delivered))


def _octets(array: np.ndarray) -> np.ndarray:
    return array.reshape(-1).view(np.uint8)


def job_outcome(outputs: Outputs | None, golden: Outputs, detected: bool) -> Outcome:
    """A job's class from its accepted outputs (None: the job failed) and the golden ones."""
    return classify(
        outputs is not None, outputs is not None and same_outputs(outputs, golden), detected
    )


# -- the job store ----------------------------------------------------------------------------

# The payload's clock while the store's records are made: records are the same in every run.
STORE_CLOCK_S = 1_800_000_000.0


def _store_clock() -> float:
    return STORE_CLOCK_S


class JobStoreTrials:
    """A job store holding a job in each kind of state; every trial starts from its file."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.upsets = UpsetLog()
        self.found: list[Upset] = []
        self.upsets.subscribe(self.found.append)
        # Errors of other types than JobStoreError that got out of the store, by where.
        self.escaped: Counter[str] = Counter()
        directory = root / "made"
        directory.mkdir(parents=True)
        store = JobStore(directory / JOBS_DB_FILE, _store_clock, self.upsets)
        try:
            self.expected = self._fill(store)
        finally:
            store.close()
        self.pristine = (directory / JOBS_DB_FILE).read_bytes()
        if self.found:
            raise CampaignError("the fault-free job store reported upsets")

    @staticmethod
    def _fill(store: JobStore) -> dict[int, Job]:
        failure = default_dictionary().failure_named("VOTE_FAILED").code
        ids = [
            store.submit(MODEL_NAME, INPUT_FILE, priority, Redundancy.TMR, deadline, request=b"r")
            .job_id
            for priority, deadline in ((5, 600.0), (9, None), (0, 3600.0), (200, 60.0))
        ]  # fmt: skip
        for job_id in ids[1:]:
            store.mark_running(job_id)
        store.mark_succeeded(
            ids[2], result_file_name(ids[2], 1), bytes(range(32)), result_size=168, runs=3
        )
        store.mark_failed(ids[3], failure, "TMR: runs 1, 2 and 3 all differ", runs=3)
        return {job_id: store.get(job_id) for job_id in ids}

    def _fresh_file(self, data: bytes) -> Path:
        """The store's file alone in a new directory (a rebuild leaves damaged copies)."""
        directory = self.root / "trial"
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir()
        path = directory / JOBS_DB_FILE
        path.write_bytes(data)
        return path

    def trial(self, fault: FaultModel, protection: str, rng: np.random.Generator) -> TrialResult:
        """A fault in one stored field of one record (or in the file's octets); then the read
        or the reopen; every job the store gives back compared with what was committed."""
        self.found.clear()
        if protection == STORE_FILE:
            data = bytearray(self.pristine)
            inject_bytes(data, fault, rng)
            path = self._fresh_file(bytes(data))
        else:
            path = self._fresh_file(self.pristine)
            store = JobStore(path, _store_clock, self.upsets)
            try:
                self._corrupt_record(store, fault, rng)
                if protection == STORE_READ:
                    return self._read_back(store)
            finally:
                store.close()
        try:
            store = JobStore(path, _store_clock, self.upsets)
        except JobStoreError:
            return TrialResult(Outcome.UNCORRECTABLE, flag=True)
        except Exception as exc:  # the store's contract is JobStoreError: counted for the report
            self.escaped[f"{type(exc).__name__} from JobStore()"] += 1
            return TrialResult(Outcome.UNCORRECTABLE, flag=True)
        try:
            return self._read_back(store)
        finally:
            store.close()

    def _corrupt_record(self, store: JobStore, fault: FaultModel, rng: np.random.Generator) -> None:
        for _ in range(100):
            job_id = sorted(self.expected)[int(rng.integers(len(self.expected)))]
            sites = [site for site in store.record_sites(job_id) if site.octets >= 4]
            sizes = np.array([site.octets for site in sites], dtype=np.float64)
            site = sites[int(rng.choice(len(sites), p=sizes / sizes.sum()))]
            try:
                store.corrupt_record(site, lambda octets: inject_bytes(octets, fault, rng))
                return
            except ValueError:
                continue  # a value SQLite cannot store (a NaN in a NOT NULL real): draw again
        raise CampaignError(f"no {fault.name} fault could be stored in 100 draws")

    def _read_back(self, store: JobStore) -> TrialResult:
        delivered = correct = True
        for job_id, expected in self.expected.items():
            try:
                job = store.get(job_id)
            except JobStoreError:
                delivered = False
                continue
            except Exception as exc:  # as at open: counted for the report
                self.escaped[f"{type(exc).__name__} from JobStore.get"] += 1
                delivered = False
                continue
            correct = correct and job == expected
        detected = any(u.location is UpsetLocation.JOB_STORE for u in self.found)
        return TrialResult(classify(delivered, correct, detected or not delivered))


# -- the uplink -------------------------------------------------------------------------------


class Uplink:
    """TC frames carrying file-upload chunks, as CLTUs into the payload's receive chain."""

    def __init__(self, params: LinkParameters | None = None) -> None:
        self.params = params or LinkParameters()
        self._command = default_dictionary().command(UPLOAD_CHUNK)
        arguments = len(self._chunk(b"\0")) - 1
        overhead = PRIMARY_HEADER_LENGTH + TC_SECONDARY_HEADER_LENGTH + PEC_LENGTH + arguments
        #: The longest chunk that fills a TC frame.
        self.max_chunk = TC_MAX_DATA_LENGTH - overhead

    def _chunk(self, data: bytes, transfer_id: int = 0, offset: int = 0) -> bytes:
        return self._command.encode({"transfer_id": transfer_id, "offset": offset, "data": data})

    def trial(self, fault: FaultModel, protection: str, rng: np.random.Generator) -> TrialResult:
        """One CLTU of a random chunk size, corrupted on the line, into a fresh receiver."""
        size = 1 + int(rng.integers(self.max_chunk))
        data = self._chunk(rng.bytes(size), int(rng.integers(1 << 16)), int(rng.integers(1 << 24)))
        packet = PusTc(
            self.params.apid,
            self._command.service,
            self._command.subtype,
            data,
            seq_count=int(rng.integers(1 << 14)),
        ).pack()
        frame = TcFrame(self.params.scid, self.params.tc_vcid, 0, packet).pack()
        line = bytearray(encode_cltu(frame))
        inject_bytes(line, fault, rng)
        receiver = UplinkReceiver(self.params, Farm1(self.params.tc_vcid), LinkCounters())
        received = receiver.feed(bytes(line) + IDLE_SEQUENCE)
        corrected = receiver.counters.cltu.corrected_codeblocks
        return TrialResult(classify_frame(received, [packet], corrected), flag=not received)


# -- ABFT next to TMR -------------------------------------------------------------------------

ABFT_SECTION = "abft"
ABFT_CALIBRATION_INPUTS = 32
# An SDC whose largest output change, relative to the largest output, exceeds this is counted
# apart: ABFT's threshold sits above rounding noise, so it cannot see the smallest changes.
ABFT_LARGE_CHANGE = 1e-3
ABFT_KINDS = ("layer outputs", "weights")


@dataclass(frozen=True, slots=True)
class AbftRow:
    """ABFT's trials of one fault model in one kind of fault (compute or weights)."""

    fault: FaultModel
    kind: str
    masked: int
    detected: int
    sdc: int
    sdc_large: int
    coverage: float

    @property
    def trials(self) -> int:
        return self.masked + self.detected + self.sdc


@dataclass(frozen=True, slots=True)
class AbftResult:
    """ABFT's coverage trials, or why there are none."""

    rows: tuple[AbftRow, ...] = ()
    threshold: float = 0.0
    margin: float = 0.0
    layers: int = 0
    skipped: int = 0
    unavailable: str = ""


def _abft_runner(model: onnx.ModelProto) -> Callable[[Any], Sequence[np.ndarray]]:
    """Runs a model as the payload's CPU sessions compute (prepacking off, one thread)."""
    session = reference_session(model_gen.model_bytes(model), 1)

    def run(feeds: Any) -> Sequence[np.ndarray]:
        return list(session.run(None, dict(feeds)))

    return run


def run_abft(
    model: onnx.ModelProto, feeds: dict[str, np.ndarray], trials: int, seed: int
) -> AbftResult:
    """ABFT's detection of compute faults (in checked layers' outputs) and weight faults, with
    flight/protection/abft.py's own coverage functions; unavailable when it offers none."""
    try:
        from flight.protection import abft
    except ImportError as exc:
        return AbftResult(unavailable=f"flight/protection/abft.py cannot be imported ({exc})")
    try:
        checked = abft.add_checksums(model)
        calibration = abft.calibrate(
            _abft_runner(checked.model),
            checked,
            abft.random_feeds(model, ABFT_CALIBRATION_INPUTS, seed),
        )
        rows = []
        for fault in FaultModel:
            for index, kind in enumerate(ABFT_KINDS):
                key = (len(Target), int(fault), index)
                fault_seed = int(np.random.SeedSequence(seed, spawn_key=key).generate_state(1)[0])
                if kind == ABFT_KINDS[0]:
                    report = abft.fault_coverage(
                        checked, _abft_runner, feeds, fault, trials,
                        seed=fault_seed, threshold=calibration.threshold,
                    )  # fmt: skip
                else:
                    report = abft.weight_fault_coverage(
                        checked, _abft_runner, feeds, trials,
                        seed=fault_seed, threshold=calibration.threshold, fault=fault,
                    )  # fmt: skip
                counts = report.counts
                rows.append(
                    AbftRow(
                        fault,
                        kind,
                        masked=counts[abft.Outcome.MASKED],
                        detected=counts[abft.Outcome.DETECTED],
                        sdc=counts[abft.Outcome.SDC],
                        sdc_large=report.sdc_above(ABFT_LARGE_CHANGE),
                        coverage=report.coverage(),
                    )
                )
    except abft.AbftError as exc:
        return AbftResult(unavailable=f"ABFT cannot check this model: {exc}")
    return AbftResult(
        tuple(rows),
        calibration.threshold,
        calibration.margin,
        len(checked.layers),
        len(checked.skipped),
    )


def coverage_of(cell: Cell | None) -> str:
    """Detected share of the faults a cell did not mask, as the ABFT table shows it."""
    if cell is None:
        return "not run"
    detected = cell.counts[Outcome.CORRECTED] + cell.counts[Outcome.UNCORRECTABLE]
    unmasked = detected + cell.counts[Outcome.SDC]
    return f"{detected / unmasked:.2%}" if unmasked else "all masked"


# -- the campaign -----------------------------------------------------------------------------

TrialFunction = Callable[[FaultModel, str, np.random.Generator], TrialResult]


@dataclass(frozen=True)
class CampaignConfig:
    """What to run: trials per cell, the seed, the model, the targets (in report order)."""

    trials: int
    seed: int
    model: CampaignModel
    targets: tuple[Target, ...] = tuple(Target)
    abft: bool = True


def trial_rng(
    seed: int, target: Target, fault: FaultModel, protection: int, trial: int
) -> np.random.Generator:
    """The generator of one trial: a function of the seed and the trial's place only, so a cell
    draws the same faults whatever else the campaign runs."""
    key = (list(Target).index(target), int(fault), protection, trial)
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


@contextlib.contextmanager
def quiet_payload_logs() -> Iterator[None]:
    """The payload logs every upset it finds; thousands of trials would flood the terminal."""
    loggers = [logging.getLogger(name) for name in ("flight", "spacelink")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def model_facts(payload: Payload) -> str:
    """The model as the report describes it: weights as the payload holds them, the input."""
    weights = payload.weights()
    spec = payload.entry.signature.inputs[0]
    shape = ",".join(str(d) for d in payload.load_input()[spec.name].shape)
    return (
        f"{weights.octets:,} octets of weights in {len(weights.arrays)} tensors (as "
        f"onnxruntime optimised them), input {spec.name} {spec.dtype}[{shape}]"
    )


def scratch_parent() -> str | None:
    """Where the payload's files go: memory-backed when the system has it, since every commit
    and result is synced, and a disk's sync latency would dominate the trials without
    changing a class; None is the system's temporary directory."""
    shm = Path("/dev/shm")
    return str(shm) if shm.is_dir() and os.access(shm, os.W_OK) else None


# The targets that need the payload's job path (and so a loaded model).
PAYLOAD_TARGETS = (Target.WEIGHTS, Target.INPUTS, Target.OUTPUTS, Target.RESULT_FILES)


def run_campaign(
    config: CampaignConfig, progress: Callable[[str], None] = lambda line: None
) -> CampaignResult:
    """Run every cell of `config` and return the counts; `progress` gets a line per cell."""
    started = time.perf_counter()
    model = config.model.build()
    needs_payload = any(t in config.targets for t in PAYLOAD_TARGETS)
    cells: list[Cell] = []
    facts = "not loaded (no target needed it)"
    scrub: tuple[float, float, int] = (0.0, 0.0, 0)
    with contextlib.ExitStack() as stack:
        stack.enter_context(quiet_payload_logs())
        scratch = tempfile.TemporaryDirectory(prefix="fault-campaign-", dir=scratch_parent())
        root = Path(stack.enter_context(scratch))
        trials: dict[Target, TrialFunction] = {Target.UPLINK: Uplink().trial}
        store_trials = None
        if Target.JOB_STORE in config.targets:
            store_trials = JobStoreTrials(root / "jobstore")
            trials[Target.JOB_STORE] = store_trials.trial
        if needs_payload:
            model_input = model_gen.random_input(model, 1, config.seed)
            payload = Payload(root / "payload", model_gen.model_bytes(model), model_input)
            stack.callback(payload.close)
            facts = model_facts(payload)
            scrubber = payload.scrubber
            scrub = (scrubber.period_s, scrubber.rate_octets_s, payload.weights().octets)
            trials |= {
                Target.WEIGHTS: payload.weight_trial,
                Target.INPUTS: payload.input_trial,
                Target.OUTPUTS: payload.output_trial,
                Target.RESULT_FILES: payload.result_file_trial,
            }
        for target in config.targets:
            for fault in FaultModel:
                for index, protection in enumerate(PROTECTIONS[target]):
                    cell = Cell(target, fault, protection)
                    began = time.perf_counter()
                    for trial in range(config.trials):
                        rng = trial_rng(config.seed, target, fault, index, trial)
                        cell.add(trials[target](fault, protection, rng))
                    cell.seconds = time.perf_counter() - began
                    cells.append(cell)
                    counts = ", ".join(f"{o.value} {cell.counts[o]}" for o in Outcome)
                    progress(
                        f"{target.value} {fault.name} {protection}: {counts} ({cell.seconds:.1f} s)"
                    )
        notes: dict[Target, list[str]] = {}
        if store_trials is not None and store_trials.escaped:
            notes[Target.JOB_STORE] = [
                f"{where}: {count} trial(s)"
                for where, count in sorted(store_trials.escaped.items())
            ]
        abft_result = None
        if config.abft:
            began = time.perf_counter()
            feeds = {model.graph.input[0].name: model_gen.random_input(model, 1, config.seed)}
            abft_result = run_abft(model, feeds, config.trials, config.seed)
            progress(f"abft: {len(abft_result.rows)} rows ({time.perf_counter() - began:.1f} s)")
    return CampaignResult(
        seed=config.seed,
        trials=config.trials,
        model=config.model,
        model_facts=facts,
        cells=cells,
        seconds=time.perf_counter() - started,
        scrub_period_s=scrub[0],
        scrub_rate_octets_s=scrub[1],
        weight_octets=scrub[2],
        abft=abft_result,
        notes=notes,
    )


# -- the report -------------------------------------------------------------------------------

TARGET_METHODS = {
    Target.WEIGHTS: (
        "A fault in one weight tensor the session computes from (picked in proportion to its "
        "size, `FaultInjector`, FAULT_INJECT's path), striking before the job's first run or "
        "between two of its runs. The job runs as the job runner runs it: runs, the model "
        "guard's `result_suspect`, up to {reruns} reruns; its accepted outputs are compared "
        "with the reference session's bit for bit. One full-speed scrub pass follows. In the "
        "row *{scrub}* the fault is followed by the scrub pass only, and the weights after it "
        "are compared with the fault-free ones (weights still wrong after a pass that reported "
        "nothing would be SDC). In mode ABFT the job runs the model's form with checksums, on "
        "weights of its own, and the fault goes there."
    ),
    Target.INPUTS: (
        "A fault in the job's input array after it was loaded and its CRC-32 taken, before the "
        "first run or between two runs; the rerun reloads the input from its stored file."
    ),
    Target.OUTPUTS: (
        "A fault in one output tensor of one of the job's runs (any of them, uniformly), through "
        "a session wrapper; the executor votes and the accept loop runs as above. In mode ABFT "
        "the run's outputs include the checksum residual, which the draw may hit; a fault in "
        "the model's outputs strikes after the checked layers, where no checksum sees it."
    ),
    Target.JOB_STORE: (
        "Four jobs (queued, running, succeeded, failed) in a job store; a fault in one stored "
        "field of one record (`JobStore.corrupt_record`: fields in proportion to their octets, "
        "the record's CRC and copy included), then that job read back (*{read}*) or the store "
        "closed and opened again (*{reopen}*); or a fault anywhere in the database file's "
        "octets, then the store opened (*{file}*). Every job the store gives back is compared "
        "with what was committed; a job refused (set aside as corrupt) is detected and "
        "uncorrectable. A fault SQLite cannot store (a NaN in a NOT NULL real) is drawn again."
    ),
    Target.RESULT_FILES: (
        "A fault in a stored result file (FAULT_INJECT's path), then the check the file "
        "service makes before a download (`UploadStore.intact`). A refused download is "
        "detected and uncorrectable: the job must run again."
    ),
    Target.UPLINK: (
        "A FILE_UPLOAD_CHUNK TC (1 to {chunk} octets of data) in a TC frame, as a CLTU "
        "followed by an idle sequence, corrupted on the line and fed to a fresh "
        "`UplinkReceiver`. A rejected frame is detected, and corrected by COP-1's "
        "retransmission; a frame accepted after BCH corrections is corrected; SDC is an "
        "accepted frame with other packets."
    ),
}


def _percent(rate: float) -> str:
    return f"{100 * rate:.3f} %"


def _table(cells: list[Cell], flag: str | None) -> list[str]:
    head = ["Fault model", "Protection", *(o.value for o in Outcome), "Trials", "SDC rate"]
    head.append(f"SDC {CONFIDENCE:.0%} upper bound")
    if flag is not None:
        head.append(flag)
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for cell in cells:
        n, sdc = cell.trials, cell.counts[Outcome.SDC]
        row = [cell.fault.name, cell.protection, *(str(cell.counts[o]) for o in Outcome)]
        row += [str(n), _percent(sdc / n), _percent(sdc_upper_bound(sdc, n))]
        if flag is not None:
            row.append(f"{cell.flagged}/{n}")
        lines.append("| " + " | ".join(row) + " |")
    return lines


@dataclass(frozen=True, slots=True)
class Verdict:
    """A target of the issue: what it asks, what was measured, pass/fail/not shown."""

    claim: str
    measured: str
    status: str


def verdicts(result: CampaignResult) -> list[Verdict]:
    """The issue's two targets against the measured cells."""
    claim = (
        f"With scrubbing and TMR: 0 silent data corruptions in {TARGET_TRIALS:,} trials over "
        "weights and outputs, for every fault model"
    )
    tmr = [
        c
        for c in result.cells
        if c.target in (Target.WEIGHTS, Target.OUTPUTS) and c.protection == Redundancy.TMR.name
    ]
    first: Verdict
    if {c.target for c in tmr} != {Target.WEIGHTS, Target.OUTPUTS}:
        first = Verdict(claim, "weights and outputs were not both run", "not measured")
    else:
        measured = "; ".join(
            f"{c.fault.name} {c.target.value}: {c.counts[Outcome.SDC]}/{c.trials} SDC" for c in tmr
        )
        if any(c.counts[Outcome.SDC] for c in tmr):
            status = "FAIL"
        elif min(c.trials for c in tmr) < TARGET_TRIALS:
            status = f"not shown (fewer than {TARGET_TRIALS:,} trials per cell)"
        else:
            status = "PASS"
        first = Verdict(claim, measured, status)
    claim = "Every weight fault detected within one scrub period"
    weights = result.of(Target.WEIGHTS)
    if not weights:
        return [first, Verdict(claim, "weights were not run", "not measured")]
    found = sum(c.flagged for c in weights)
    total = sum(c.trials for c in weights)
    measured = (
        f"{found}/{total} weight faults found by the job's checks or by the first full scrub "
        "pass after them (every row, every fault model)"
    )
    return [first, Verdict(claim, measured, "PASS" if found == total else "FAIL")]


def classification_tables(result: CampaignResult) -> list[str]:
    """The per-target tables: a function of the seed, the model and the trials only."""
    lines: list[str] = []
    for target in Target:
        cells = result.of(target)
        if not cells:
            continue
        method = TARGET_METHODS[target].format(
            reruns=MAX_RERUNS,
            scrub=SCRUB_ONLY,
            chunk=Uplink().max_chunk,
            read=STORE_READ,
            reopen=STORE_REOPEN,
            file=STORE_FILE,
        )
        lines += [f"## {TARGET_TITLES[target]}", "", method, ""]
        lines += _table(cells, FLAG_COLUMNS.get(target))
        lines.append("")
        if result.notes.get(target):
            lines += [
                "Errors of other types than the layer's own got out of the code under test "
                "(counted above as detected, uncorrectable; the payload would not handle them): "
                + "; ".join(result.notes[target])
                + ".",
                "",
            ]
    return lines


def abft_section(result: CampaignResult) -> list[str]:
    """ABFT's coverage beside TMR's, by fault model and kind of fault."""
    if result.abft is None:
        return []
    lines = ["## ABFT next to TMR", ""]
    found = result.abft
    if found.unavailable:
        return [*lines, f"ABFT coverage is not available: {found.unavailable}.", ""]
    lines += [
        f"`flight/protection/abft.py` checks {found.layers} layers of the model "
        f"({found.skipped} skipped); its threshold, {found.threshold:.3g}, is "
        f"{found.margin:g} times the largest residual of {ABFT_CALIBRATION_INPUTS} fault-free "
        "random inputs. Its own coverage functions inject a compute fault into a checked "
        "layer's output (layers drawn by their multiply-adds) or a fault into a checked layer's "
        "weights, and run the model once. Coverage is the detected share of the faults that "
        "were not masked. The last two columns are the same share in the rows above of the job "
        "modes TMR and ABFT, run through the payload: replica outputs beside compute faults, "
        "weight buffers beside weight faults (there the weights' CRC-32, checked before a "
        "result is accepted, finds them in both modes: the three TMR runs read the same "
        "weights, so their vote alone could not). A replica-output fault strikes after the "
        "checked layers, which is why job mode ABFT misses it.",
        "",
        f"| Fault model | Faults in | Trials | ABFT masked | ABFT detected | ABFT SDC | SDC with "
        f"output change > {ABFT_LARGE_CHANGE:g} | ABFT coverage | TMR coverage | "
        "Job mode ABFT coverage |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    cells = {(c.target, c.fault, c.protection): c for c in result.cells}
    for row in found.rows:
        target = Target.OUTPUTS if row.kind == ABFT_KINDS[0] else Target.WEIGHTS
        tmr = cells.get((target, row.fault, Redundancy.TMR.name))
        job = cells.get((target, row.fault, Redundancy.ABFT.name))
        lines.append(
            f"| {row.fault.name} | {row.kind} | {row.trials} | {row.masked} | {row.detected} | "
            f"{row.sdc} | {row.sdc_large} | {row.coverage:.2%} | {coverage_of(tmr)} | "
            f"{coverage_of(job)} |"
        )
    return [*lines, ""]


def render_report(result: CampaignResult, chart: str = CHART_NAME) -> str:
    """The Markdown report."""
    ran = [t.value for t in Target if result.of(t)]
    if result.abft is not None:
        ran.append(ABFT_SECTION)
    only = "" if len(ran) == len(Target) + 1 else f" --only {' '.join(ran)}"
    command = (
        f"python -m tools.fault_campaign --trials {result.trials} --seed {result.seed} "
        f"--model {result.model.name}{only} --out DIR"
    )
    lines = [
        "# Fault-injection campaign",
        "",
        f"Made by `{command}`; the same seed gives the same tables.",
        "",
        f"- Seed: {result.seed}; trials per cell: {result.trials:,}; "
        f"{sum(c.trials for c in result.cells):,} trials in all.",
        f"- Model: {result.model.description}; {result.model_facts}.",
        "- Payload: the real flight code in a temporary directory (model registry with two "
        "copies, session cache on the CPU provider with one intra-op thread, executor, model "
        "guard, scrubber, upload store, uplink receive chain); the job runner's accept loop "
        "as in `flight/jobs/runner.py`.",
        f"- Fault models (`flight/protection/faults.py`): {', '.join(m.name for m in FaultModel)}"
        " (one bit; 2 to 4 bits of one 32-bit word; a whole word replaced; 2 to 16 words of "
        "one row replaced).",
        f"- Run time: {result.seconds:.0f} s on this machine (not part of the tables).",
        "",
        "## Targets",
        "",
        "| Target | Measured | Result |",
        "|---|---|---|",
    ]
    for verdict in verdicts(result):
        lines.append(f"| {verdict.claim} | {verdict.measured} | {verdict.status} |")
    if result.weight_octets:
        pass_ms = 1000 * result.weight_octets / result.scrub_rate_octets_s
        lines += [
            "",
            f"A scrub pass reads every loaded weight: at the scrubber's default rate "
            f"({result.scrub_rate_octets_s / 1e6:.0f} MB/s) this model's "
            f"{result.weight_octets:,} octets take {pass_ms:.1f} ms of a "
            f"{result.scrub_period_s:.0f} s period, so a weight fault the job's checks miss is "
            f"found at most one period and one pass ({result.scrub_period_s + pass_ms / 1000:.3f}"
            " s) after it strikes.",
        ]
    lines += ["", f"![Classification of every cell]({chart})", ""]
    lines += abft_section(result)
    lines += classification_tables(result)
    lines += [
        "## How a trial runs",
        "",
        "- Each trial draws its fault from a generator seeded by (seed, target, fault model, "
        "protection, trial number) and starts from a clean payload: weights a fault left are "
        "restored, a result file rewritten, a frame sent to a fresh receiver.",
        "- The payload's monotonic clock is frozen: the known answer recorded at registration "
        "counts as fresh, as for a job in a stream, so a job's check is the input CRC and (DMR, "
        "TMR) the weights' CRC-32; the known answer runs only after a session was reloaded. "
        "This keeps the classes independent of how fast the trials go.",
        "- Masked: the delivered result is bit for bit the fault-free one and no check fired. "
        "Detected, corrected: the same, after a check fired. Detected, uncorrectable: a check "
        "refused the result (the job failed, the download was refused). SDC: a result other "
        "than the fault-free one was delivered.",
        f"- SDC upper bound: one-sided Clopper-Pearson at {CONFIDENCE:.0%} (about 3/N when no "
        "SDC was seen).",
        "",
    ]
    return "\n".join(lines)


COLOURS = {
    Outcome.MASKED: "#9e9e9e",
    Outcome.CORRECTED: "#43a047",
    Outcome.UNCORRECTABLE: "#fb8c00",
    Outcome.SDC: "#e53935",
}


ABFT_DETECTED_COLOUR = "#1e88e5"


def _bars(axis: Any, labels: list[str], parts: list[tuple[str, str, list[float]]]) -> None:
    """Horizontal bars of `labels`, stacked from (legend label, colour, shares) parts."""
    left = np.zeros(len(labels))
    for label, colour, shares in parts:
        axis.barh(labels, shares, left=left, color=colour, label=label)
        left += np.array(shares)
    axis.set_xlim(0, 1)
    axis.invert_yaxis()
    axis.tick_params(labelsize=7)


def draw_chart(result: CampaignResult, path: Path) -> None:
    """Stacked bars of the four classes per cell, one panel per target, and ABFT's masked,
    detected and SDC shares in a panel of their own (PNG, no display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    targets = [t for t in Target if result.of(t)]
    abft_rows = list(result.abft.rows) if result.abft is not None else []
    rows = [len(result.of(t)) for t in targets] + ([len(abft_rows)] if abft_rows else [])
    if not rows:
        raise ValueError("no cells to draw")
    figure, axes = plt.subplots(
        len(rows),
        1,
        figsize=(9, 1.2 + 0.24 * sum(rows) + 0.5 * len(rows)),
        gridspec_kw={"height_ratios": [r + 1.5 for r in rows]},
        squeeze=False,
    )
    for axis, target in zip(axes[:, 0], targets, strict=False):
        cells = result.of(target)
        parts = [(o.value, COLOURS[o], [c.counts[o] / c.trials for c in cells]) for o in Outcome]
        _bars(axis, [f"{c.fault.name} / {c.protection}" for c in cells], parts)
        axis.set_title(TARGET_TITLES[target], fontsize=10, loc="left")
    if abft_rows:
        axis = axes[-1, 0]
        parts = [
            (
                Outcome.MASKED.value,
                COLOURS[Outcome.MASKED],
                [r.masked / r.trials for r in abft_rows],
            ),
            ("ABFT detected", ABFT_DETECTED_COLOUR, [r.detected / r.trials for r in abft_rows]),
            (Outcome.SDC.value, COLOURS[Outcome.SDC], [r.sdc / r.trials for r in abft_rows]),
        ]
        _bars(axis, [f"{r.fault.name} / {r.kind}" for r in abft_rows], parts)
        axis.set_title("ABFT (detection only)", fontsize=10, loc="left")
    axes[-1, 0].set_xlabel(f"share of trials ({result.trials:,} per bar, seed {result.seed})")
    legend: dict[str, Any] = {}
    for axis in axes[:, 0]:
        for handle, name in zip(*axis.get_legend_handles_labels(), strict=True):
            legend.setdefault(name, handle)
    figure.legend(
        list(legend.values()), list(legend), loc="upper center", ncol=5, fontsize=8, frameon=False
    )
    figure.tight_layout(rect=(0, 0, 1, 0.97))
    figure.savefig(path, dpi=110)
    plt.close(figure)


def write_report(result: CampaignResult, out: Path) -> tuple[Path, Path]:
    """Write DIR/fault_campaign.md and DIR/fault_campaign.png; their paths."""
    out.mkdir(parents=True, exist_ok=True)
    report, chart = out / REPORT_NAME, out / CHART_NAME
    draw_chart(result, chart)
    report.write_text(render_report(result, CHART_NAME), encoding="utf-8")
    return report, chart


# -- the command line -------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    """Reports a usage error as one sentence on stderr (exit 2) rather than the usage text."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"fault_campaign: {message.rstrip('.')}.\n")


def _parser() -> _Parser:
    parser = _Parser(prog="python -m tools.fault_campaign", description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=200, help="trials per cell")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, required=True, help="directory of the report")
    parser.add_argument("--model", choices=sorted(MODELS), default="cnn")
    parser.add_argument(
        "--only",
        nargs="+",
        choices=[*(t.value for t in Target), ABFT_SECTION],
        help="run these targets (and the ABFT comparison) only",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `python -m tools.fault_campaign`; returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.trials < 1:
        parser.error(f"--trials expects at least 1, found {args.trials}")
    if args.seed < 0:
        parser.error(f"--seed expects 0 or more, found {args.seed}")
    if args.out.exists() and not args.out.is_dir():
        parser.error(f"--out expects a directory, found a file at {args.out}")
    chosen = set(args.only or [*(t.value for t in Target), ABFT_SECTION])
    config = CampaignConfig(
        trials=args.trials,
        seed=args.seed,
        model=MODELS[args.model],
        targets=tuple(t for t in Target if t.value in chosen),
        abft=ABFT_SECTION in chosen,
    )
    try:
        result = run_campaign(config, lambda line: print(line, file=sys.stderr, flush=True))
        report, chart = write_report(result, args.out)
    except (CampaignError, OSError) as exc:
        print(f"fault_campaign: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {report} and {chart}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
