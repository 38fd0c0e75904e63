"""The campaign runner: every cell's seeded trials, and the result the report is made from."""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from flight.protection.faults import FaultModel
from tools import model_gen
from tools.fault_campaign.abft_comparison import AbftResult, run_abft
from tools.fault_campaign.job_store import JobStoreTrials
from tools.fault_campaign.models import CampaignModel
from tools.fault_campaign.outcomes import PROTECTIONS, Cell, Outcome, Target, TrialResult
from tools.fault_campaign.payload import Payload
from tools.fault_campaign.uplink import Uplink

TrialFunction = Callable[[FaultModel, str, np.random.Generator], TrialResult]


@dataclass(frozen=True)
class CampaignConfig:
    """What to run: trials per cell, the seed, the model, the targets (in report order)."""

    trials: int
    seed: int
    model: CampaignModel
    targets: tuple[Target, ...] = tuple(Target)
    abft: bool = True


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
        """The cells of one target, in the order they ran."""
        return [cell for cell in self.cells if cell.target is target]


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
