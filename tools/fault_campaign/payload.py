"""The payload under test: its job path on one model, in a directory, and the trials of the
targets it holds (weights, inputs, outputs, result files)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from flight.compute.job_compute import EXPECTED_RUNS, ComputeFailed, JobCompute, JobInput
from flight.compute.memory_scrub import MemoryScrub
from flight.compute.run_control import RunControl
from flight.files.upload_store import FileStoreError, UploadStore
from flight.jobs.executor import SessionCache, reference_session
from flight.jobs.model_check import check_input, load_input
from flight.jobs.providers import CPU, ProviderChoice
from flight.jobs.redundancy import Outputs, Redundancy
from flight.jobs.registry import ModelRegistry
from flight.jobs.runner import result_file_name, serialise_outputs
from flight.protection.faults import FaultModel, inject
from flight.protection.injection import FaultInjector, FaultTarget, GuardFaults, choose_by_size
from flight.protection.model_guard import ModelGuard
from flight.protection.scrubber import Scrubber
from flight.protection.upsets import Upset, UpsetLocation, UpsetLog
from flight.protection.weights import WeightSet
from tools.fault_campaign.outcomes import (
    SCRUB_ONLY,
    CampaignError,
    TrialResult,
    classify,
    job_outcome,
    same_outputs,
)
from tools.fault_campaign.output_faults import OutputFaults
from tools.fault_campaign.strike_points import StrikeHook, StrikingExecutor, no_strike

MODEL_NAME = "campaign"
INPUT_FILE = "campaign-input.npy"
RESULT_JOB_ID = 1


def _frozen_clock() -> float:
    """The payload's monotonic clock during the campaign: it never advances.

    A known answer that passed vouches for a job for ANSWER_FRESH_S, so with real time whether
    a job's check runs the known answer would depend on how fast the trials go. Frozen, it
    never runs again once recorded (as for a job in a stream): a fixed, conservative rule.
    """
    return 0.0


class Payload:
    """The payload's job path on a model, in a directory: registry, session cache and executor
    (one intra-op thread), model guard, the job runner's compute, scrubber, upload store with
    the job's input file."""

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
        self.executor = StrikingExecutor(cache)
        self.guard = ModelGuard(self.registry, self.executor, self.upsets, _frozen_clock)
        # The job runner's compute in the payload's process, as ComputeEngine builds it.
        self.compute = JobCompute(self.executor, self.upsets, self.guard)
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
            clean = self.run_job(mode, no_strike)
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
        """Close the upload store (the directory is the caller's to remove)."""
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
        """Start a trial: nothing found yet, no output fault left armed."""
        self.found.clear()
        self.output_faults.disarm()

    # -- the job runner's compute (flight/compute/job_compute.py), as the runner calls it -----

    def job_input(self, mode: Redundancy) -> JobInput:
        """The job as the runner hands it to the compute: its input file's octets and SHA-256."""
        return JobInput(
            RESULT_JOB_ID,
            self.entry,
            mode,
            self.files.read(INPUT_FILE),
            self.files.info(INPUT_FILE).sha256,
            INPUT_FILE,
        )

    def load_input(self) -> dict[str, np.ndarray]:
        """The job's input from its stored file (the reference run's feeds, the report's shape)."""
        return check_input(self.entry.signature, load_input(self.files.read(INPUT_FILE)))

    def run_job(self, mode: Redundancy, strike: StrikeHook) -> Outputs | None:
        """One job under `mode` through JobCompute's prepare, run and accept: the accepted
        outputs, or None when the job failed. `strike` as StrikingExecutor.arm."""
        try:
            job = self.job_input(mode)
        except (FileStoreError, OSError):
            return None
        if self.compute.prepare(job) is not None:
            return None
        control = RunControl()
        self.executor.arm(strike)
        try:
            computed = self.compute.run(job.job_id, control)
            if isinstance(computed, ComputeFailed):
                return None
            accepted = self.compute.accept(job.job_id, computed, control)
        finally:
            self.executor.disarm()
            self.compute.discard(job.job_id)
        return None if isinstance(accepted, ComputeFailed) else accepted.outputs

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
        moment = int(rng.integers(EXPECTED_RUNS[mode]))

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
        moment = int(rng.integers(EXPECTED_RUNS[mode]))

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
        self.output_faults.arm(1 + int(rng.integers(EXPECTED_RUNS[mode])), fault, rng)
        outputs = self.run_job(mode, no_strike)
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
