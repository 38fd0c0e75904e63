"""The model guard on real onnxruntime (CPU) and a real registry: known answers, weight repair,
session reloads, the checks before a job's result is accepted, and the two stored copies it
loads models from."""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest

from flight.jobs.executor import (
    Executor,
    LoadedModel,
    SessionCache,
    create_session,
    reference_session,
)
from flight.jobs.providers import CPU, CUDA, ProviderChoice
from flight.jobs.redundancy import Redundancy
from flight.jobs.registry import COPIES_DIR, ModelCorrupt, ModelEntry, ModelRegistry
from flight.protection import known_answer
from flight.protection.model_guard import (
    ANSWER_FRESH_S,
    KnownAnswerFailed,
    ModelGuard,
    WeightsUncorrectable,
)
from flight.protection.upsets import Outcome, UpsetLog
from flight.protection.weights import WeightSet, crc_of
from tests.unit.flight.protection.test_weights import (
    MAX_MODEL_BYTES,
    by_magnitude,
    flip_word,
    gemm_model,
    run,
    same_bits,
)

ON_CPU = ProviderChoice(CPU)


# --- a payload's protection, with an injected clock ----------------------------------------------


@dataclass
class Clock:
    """A monotonic clock the test moves."""

    now: float = 100.0

    def __call__(self) -> float:
        return self.now


class UpsetSession:
    """A real session whose state inside onnxruntime is upset: the first output of every run has
    one bit flipped (as a corrupted constant in a kernel would, until the session is replaced)."""

    def __init__(self, session: ort.InferenceSession) -> None:
        self._session = session

    def run(self, output_names: list[str] | None, feeds: dict[str, np.ndarray]) -> list[Any]:
        values = self._session.run(output_names, feeds)
        upset = np.array(values[0], order="C")
        upset.reshape(-1).view(np.uint8)[0] ^= 0x01
        values[0] = upset
        return values

    def __getattr__(self, name: str) -> Any:
        return getattr(self._session, name)


@dataclass
class Factory:
    """The real session factory; sessions created after the first `clean` ones are upset."""

    clean: int = 1_000_000
    created: int = 0

    def __call__(
        self, model: bytes, options: ort.SessionOptions, providers: list[str]
    ) -> ort.InferenceSession:
        self.created += 1
        session = create_session(model, options, providers)
        return session if self.created <= self.clean else UpsetSession(session)


@dataclass
class Payload:
    """The registry, session cache, executor and guard of a payload, sharing one upset log."""

    root: Path
    clock: Clock
    upsets: UpsetLog
    registry: ModelRegistry
    cache: SessionCache
    guard: ModelGuard
    factory: Factory = field(default_factory=Factory)

    @property
    def executor(self) -> Executor:
        return self.guard.executor

    def counts(self) -> dict[str, int]:
        """The upset counters that are not zero."""
        return {k: v for k, v in self.upsets.counts().items() if v}

    def loaded(self, entry: ModelEntry) -> LoadedModel:
        loaded = self.cache.peek(entry.key)
        assert loaded is not None
        return loaded

    def weights(self, entry: ModelEntry) -> WeightSet:
        """The owned weights of the loaded model."""
        weights = self.loaded(entry).weights
        assert weights is not None
        return weights


def open_payload(
    root: Path, *, own_weights: bool | None = None, factory: Factory | None = None
) -> Payload:
    clock = Clock()
    upsets = UpsetLog()
    registry = ModelRegistry(root / "models", max_model_bytes=MAX_MODEL_BYTES, upsets=upsets)
    factory = factory or Factory()
    cache = SessionCache(
        2, ON_CPU, intra_op_num_threads=1, factory=factory, own_weights=own_weights
    )
    guard = ModelGuard(registry, Executor(cache), upsets, monotonic=clock)
    return Payload(root, clock, upsets, registry, cache, guard, factory)


def register(
    payload: Payload, data: bytes | None = None, name: str = "m", *, answer: bool = True
) -> ModelEntry:
    """Register a model (the one-Gemm MLP by default) and record its known answer."""
    entry = payload.registry.register(name, 1, gemm_model() if data is None else data)
    return payload.guard.record_answer(entry) if answer else entry


def upset_weight(loaded: LoadedModel, tensor: str = "fc1.weight") -> None:
    assert loaded.weights is not None
    array = loaded.weights.arrays[tensor]
    flip_word(array, by_magnitude(array)[0])


def job_feeds(seed: int = 4) -> dict[str, np.ndarray]:
    return {"features": np.random.default_rng(seed).standard_normal((3, 8)).astype(np.float32)}


def reference_outputs(entry: ModelEntry, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return run(reference_session(entry.path.read_bytes()), feeds)


@pytest.fixture
def payload(tmp_path: Path) -> Payload:
    return open_payload(tmp_path)


# --- known answers -------------------------------------------------------------------------------


def test_the_recorded_answer_is_what_the_reference_session_computes(payload: Payload) -> None:
    entry = register(payload)
    answer = entry.answer
    assert answer is not None and answer.provider == CPU
    feeds = known_answer.known_answer_input(entry.signature, entry.sha256)
    assert same_bits(answer.outputs, reference_outputs(entry, feeds))
    assert answer.digest == known_answer.digest(answer.outputs)
    assert payload.registry.entry("m").answer == answer
    assert payload.loaded(entry).answer_checked == payload.clock.now
    assert payload.guard.answer_runs == 1


def test_a_passing_known_answer_finds_nothing(payload: Payload) -> None:
    entry = register(payload)
    payload.clock.now += 50
    assert payload.guard.check_answer(entry) is False
    assert payload.guard.answer_runs == 2
    assert payload.loaded(entry).answer_checked == payload.clock.now
    assert payload.counts() == {}


def test_an_answer_that_passed_within_max_age_is_not_run_again(payload: Payload) -> None:
    entry = register(payload)
    payload.clock.now += 9.9
    assert payload.guard.check_answer(entry, max_age_s=10.0) is False
    assert payload.guard.answer_runs == 1
    payload.clock.now += 0.1
    assert payload.guard.check_answer(entry, max_age_s=10.0) is False
    assert payload.guard.answer_runs == 2


def test_a_weight_upset_is_repaired_in_place(payload: Payload) -> None:
    entry = register(payload)
    loaded = payload.loaded(entry)
    assert loaded.weights is not None
    upset_weight(loaded)
    feeds = job_feeds()
    assert not same_bits(run(loaded.session, feeds), reference_outputs(entry, feeds))

    assert payload.guard.check_answer(entry) is True

    assert payload.counts() == {"WEIGHTS.corrected": 1}
    assert payload.cache.peek(entry.key) is loaded and payload.cache.creations == 1
    assert loaded.weights.corrupt() == [] and loaded.weights.generation == 1
    assert same_bits(run(loaded.session, feeds), reference_outputs(entry, feeds))


def test_an_upset_outside_the_owned_weights_reloads_the_session(payload: Payload) -> None:
    entry = register(payload)
    loaded = payload.loaded(entry)
    loaded.session = UpsetSession(loaded.session)

    assert payload.guard.check_answer(entry) is True

    assert payload.counts() == {"KNOWN_ANSWER.corrected": 1}
    reloaded = payload.loaded(entry)
    assert reloaded is not loaded and payload.cache.creations == 2
    assert reloaded.answer_checked == payload.clock.now
    feeds = job_feeds()
    assert same_bits(run(reloaded.session, feeds), reference_outputs(entry, feeds))


def test_a_persistent_mismatch_is_uncorrectable(tmp_path: Path) -> None:
    payload = open_payload(tmp_path, factory=Factory(clean=1))  # every reload is upset too
    entry = register(payload)
    loaded = payload.loaded(entry)
    loaded.session = UpsetSession(loaded.session)

    with pytest.raises(KnownAnswerFailed, match=r"model m v1: the known answer .* differs"):
        payload.guard.check_answer(entry)

    assert payload.counts() == {"KNOWN_ANSWER.uncorrectable": 1}
    assert entry.key not in payload.cache  # the next job loads the model afresh
    assert payload.upsets.total(Outcome.CORRECTED) == 0


def test_a_model_without_an_answer_gets_one_at_its_first_check(payload: Payload) -> None:
    entry = register(payload, answer=False)
    assert entry.answer is None
    assert payload.guard.check_answer(entry) is False
    answer = payload.registry.entry("m").answer
    assert answer is not None and answer.provider == CPU
    assert payload.guard.answer_runs == 1
    assert payload.guard.check_answer(entry) is False
    assert payload.guard.answer_runs == 2


def test_an_answer_recorded_on_another_provider_is_recorded_again(payload: Payload) -> None:
    entry = register(payload)
    assert entry.answer is not None
    foreign = known_answer.KnownAnswer(CUDA, b"\0" * 32, {"logits": np.zeros((1, 4), np.float32)})
    payload.registry.set_answer(entry, foreign)
    assert payload.guard.check_answer(entry) is False
    answer = payload.registry.entry("m").answer
    assert answer is not None and answer.provider == CPU
    assert same_bits(answer.outputs, entry.answer.outputs)
    assert payload.counts() == {}


def test_an_answer_recorded_late_is_recorded_from_intact_weights(payload: Payload) -> None:
    entry = register(payload, answer=False)
    upset_weight(payload.guard.load(entry))  # struck while the model waited for its check
    payload.guard.check_answer(entry)
    answer = payload.registry.entry("m").answer
    assert answer is not None
    feeds = known_answer.known_answer_input(entry.signature, entry.sha256)
    assert same_bits(answer.outputs, reference_outputs(entry, feeds))


def test_weights_that_cannot_be_derived_again_are_uncorrectable(payload: Payload) -> None:
    entry = register(payload)
    upset_weight(payload.loaded(entry))
    for path in (entry.path, entry.copy_path):  # the golden source is the stored model
        path.write_bytes(b"\0" * entry.size)

    with pytest.raises(WeightsUncorrectable, match="golden weights not derivable"):
        payload.guard.check_answer(entry)

    assert payload.counts() == {"WEIGHTS.uncorrectable": 1, "MODEL_FILE.uncorrectable": 2}
    assert entry.key not in payload.cache


# --- the checks before a job's result is accepted ------------------------------------------------


def job(
    payload: Payload,
    entry: ModelEntry,
    mode: Redundancy,
    on_run: Callable[[int], None] | None = None,
) -> tuple[int, dict[str, np.ndarray], dict[str, int], dict[str, np.ndarray]]:
    """Run a job as the runner does: (generation before the runs, feeds, their CRCs, outputs)."""
    payload.guard.load(entry)
    generation = payload.guard.generation(entry)
    feeds = job_feeds()
    crcs = {name: crc_of(array) for name, array in feeds.items()}
    result = payload.executor.execute(
        entry.key, payload.guard.source(entry), feeds, mode, on_run=on_run
    )
    return generation, feeds, crcs, result.outputs


@pytest.mark.parametrize("mode", [Redundancy.NONE, Redundancy.DMR, Redundancy.TMR])
def test_a_clean_job_is_accepted(payload: Payload, mode: Redundancy) -> None:
    entry = register(payload)
    generation, feeds, crcs, outputs = job(payload, entry, mode)
    payload.clock.now += 2 * ANSWER_FRESH_S
    assert payload.guard.result_suspect(entry, mode, generation, feeds, crcs) is None
    assert same_bits(outputs, reference_outputs(entry, feeds))
    assert payload.counts() == {}


def test_an_input_changed_after_its_crc_makes_the_result_suspect(payload: Payload) -> None:
    entry = register(payload)
    generation, feeds, crcs, _ = job(payload, entry, Redundancy.TMR)
    feeds["features"].reshape(-1).view(np.uint8)[7] ^= 0x20
    reason = payload.guard.result_suspect(entry, Redundancy.TMR, generation, feeds, crcs)
    assert reason == "its input changed in memory"
    assert payload.counts() == {"INPUT.corrected": 1}


@pytest.mark.parametrize("mode", [Redundancy.DMR, Redundancy.TMR])
@pytest.mark.parametrize("scrubbed_first", [False, True], ids=["found", "scrubbed"])
def test_weights_upset_during_redundant_runs_make_the_result_suspect(
    payload: Payload, mode: Redundancy, scrubbed_first: bool
) -> None:
    entry = register(payload)
    loaded = payload.guard.load(entry)
    assert loaded.weights is not None

    def upset_after_first_run(n: int) -> None:
        if n == 1:
            upset_weight(loaded)

    generation, feeds, crcs, outputs = job(payload, entry, mode, upset_after_first_run)
    # The later runs share the upset weights: they outvote the clean first run.
    assert not same_bits(outputs, reference_outputs(entry, feeds))
    if scrubbed_first:
        assert loaded.weights.check_and_repair().repaired == ("fc1.weight",)

    reason = payload.guard.result_suspect(entry, mode, generation, feeds, crcs)

    assert reason == "the model's weights were repaired"
    assert loaded.weights.corrupt() == []
    assert payload.counts() == ({} if scrubbed_first else {"WEIGHTS.corrected": 1})


def test_a_single_run_job_relies_on_the_known_answer(payload: Payload) -> None:
    entry = register(payload)
    loaded = payload.guard.load(entry)
    generation, feeds, crcs, _ = job(
        payload, entry, Redundancy.NONE, lambda n: upset_weight(loaded)
    )
    payload.clock.now += ANSWER_FRESH_S
    reason = payload.guard.result_suspect(entry, Redundancy.NONE, generation, feeds, crcs)
    assert reason == "the model's known answer failed and was restored"
    assert payload.counts() == {"WEIGHTS.corrected": 1}


def test_a_fresh_known_answer_is_not_run_again(payload: Payload) -> None:
    entry = register(payload)
    runs = payload.guard.answer_runs
    generation, feeds, crcs, _ = job(payload, entry, Redundancy.NONE)
    payload.clock.now += ANSWER_FRESH_S * 0.9
    assert payload.guard.result_suspect(entry, Redundancy.NONE, generation, feeds, crcs) is None
    assert payload.guard.answer_runs == runs
    payload.clock.now += ANSWER_FRESH_S * 0.1
    assert payload.guard.result_suspect(entry, Redundancy.NONE, generation, feeds, crcs) is None
    assert payload.guard.answer_runs == runs + 1


def test_generation_and_clean_weights_of_models_not_loaded(tmp_path: Path) -> None:
    payload = open_payload(tmp_path)
    entry = register(payload, answer=False)
    assert payload.guard.generation(entry) == -1
    assert payload.guard.weights_clean_since(entry, -1) is False  # evicted: runs are suspect
    payload.guard.load(entry)
    assert payload.guard.generation(entry) == 0
    assert payload.guard.weights_clean_since(entry, 0) is True

    kept = open_payload(tmp_path / "accelerator", own_weights=False)
    entry = register(kept, answer=False)
    kept.guard.load(entry)
    assert kept.guard.generation(entry) == -1
    assert kept.guard.weights_clean_since(entry, -1) is True  # the known answer checks them


def test_repair_weights_finds_the_entry_by_key(payload: Payload) -> None:
    entry = register(payload)
    loaded = payload.loaded(entry)
    assert loaded.weights is not None
    upset_weight(loaded, "fc1.bias")
    payload.guard.repair_weights(loaded, ["fc1.weight"])  # not the suspect: nothing found
    assert loaded.weights.corrupt() == ["fc1.bias"]
    payload.guard.repair_weights(loaded, ["fc1.bias"])
    assert loaded.weights.corrupt() == []
    assert payload.upsets.counts()["WEIGHTS.corrected"] == 1


# --- the two stored copies the guard loads from --------------------------------------------------


def flip_file(path: Path, octet: int) -> None:
    data = bytearray(path.read_bytes())
    data[octet] ^= 0x10
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("copy", ["path", "copy_path"])
def test_one_corrupt_copy_is_repaired_from_the_other(payload: Payload, copy: str) -> None:
    entry = register(payload, answer=False)
    data = gemm_model()
    flip_file(getattr(entry, copy), len(data) // 2)

    assert payload.registry.read_verified(entry) == data
    assert payload.registry.verify_copies(entry) == (1 if copy == "copy_path" else 2)

    assert entry.path.read_bytes() == data and entry.copy_path.read_bytes() == data
    assert payload.counts() == {"MODEL_FILE.corrected": 1}
    assert payload.registry.intact[("m", 1)] == 2


def test_a_missing_first_copy_is_restored(payload: Payload) -> None:
    entry = register(payload, answer=False)
    entry.path.unlink()
    assert payload.registry.read_verified(entry) == gemm_model()
    assert entry.path.read_bytes() == gemm_model()
    assert payload.counts() == {"MODEL_FILE.corrected": 1}


def test_a_model_loads_from_its_intact_copy(payload: Payload) -> None:
    entry = register(payload, answer=False)
    flip_file(entry.path, 100)
    loaded = payload.guard.load(entry)
    feeds = job_feeds()
    assert same_bits(run(loaded.session, feeds), reference_outputs(entry, feeds))
    assert payload.counts() == {"MODEL_FILE.corrected": 1}


def test_both_copies_corrupt_is_uncorrectable(payload: Payload) -> None:
    entry = register(payload, answer=False)
    flip_file(entry.path, 10)
    flip_file(entry.copy_path, 20)
    with pytest.raises(ModelCorrupt, match="model m v1: both stored copies fail the SHA-256"):
        payload.registry.read_verified(entry)
    assert payload.counts() == {"MODEL_FILE.uncorrectable": 2}
    assert payload.registry.intact[("m", 1)] == 0
    with pytest.raises(ModelCorrupt):
        payload.registry.verify_copies(entry)


def test_an_old_registry_gets_its_second_copies_at_open(tmp_path: Path) -> None:
    payload = open_payload(tmp_path)
    first = register(payload, answer=False)
    second = register(payload, answer=False, name="n")
    shutil.rmtree(payload.registry.root / COPIES_DIR)  # a registry from before the copies

    reopened = ModelRegistry(payload.registry.root, max_model_bytes=MAX_MODEL_BYTES)

    for entry in (first, second):
        assert entry.copy_path.read_bytes() == entry.path.read_bytes()
        assert hashlib.sha256(entry.copy_path.read_bytes()).digest() == entry.sha256
    assert reopened.intact == {("m", 1): 2, ("n", 1): 2}
