"""Fault injection into the real buffers and files the protection watches: each target is
corrupted as it says, reproducibly from a seed, and a missing target is refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from flight.files.upload_store import UploadStore
from flight.jobs.redundancy import Redundancy
from flight.protection.faults import FaultModel, inject
from flight.protection.injection import (
    ExternalTarget,
    FaultInjector,
    FaultTarget,
    GuardFaults,
    Injected,
    TargetMissing,
    choose_by_size,
)
from tests.unit.flight.protection.test_model_guard import (
    Payload,
    job_feeds,
    open_payload,
    reference_outputs,
    register,
)
from tests.unit.flight.protection.test_weights import cnn, same_bits

BIG = 1 << 40


def bits_between(before: bytes, after: bytes) -> int:
    a, b = np.frombuffer(before, np.uint8), np.frombuffer(after, np.uint8)
    return int(np.unpackbits(a ^ b).sum())


def injector(
    payload: Payload, external: dict[FaultTarget, ExternalTarget] | None = None
) -> FaultInjector:
    files = UploadStore(
        payload.root / "files", quota_bytes=1 << 24, reserve_bytes=0, free_space=lambda _: BIG
    )
    return FaultInjector(GuardFaults(payload.guard), payload.registry, files, external)


@pytest.fixture
def payload(tmp_path: Path) -> Payload:
    return open_payload(tmp_path)


# --- weights -------------------------------------------------------------------------------------


@pytest.mark.parametrize("model", list(FaultModel))
def test_a_weight_fault_corrupts_one_owned_tensor(payload: Payload, model: FaultModel) -> None:
    entry = register(payload)
    loaded = payload.loaded(entry)
    assert loaded.weights is not None
    before = {k: a.tobytes() for k, a in loaded.weights.arrays.items()}

    injected = injector(payload).inject(FaultTarget.WEIGHTS, model, "m", 1, seed=3)

    (tensor,) = loaded.weights.corrupt()
    assert injected.where.startswith(f"m v1 {tensor} word")
    after = loaded.weights.arrays[tensor].tobytes()
    assert injected.bits == bits_between(before[tensor], after) >= 1
    assert payload.guard.weights_clean_since(entry, 0) is False  # found and repaired
    assert {k: a.tobytes() for k, a in loaded.weights.arrays.items()} == before


def test_a_weight_fault_loads_the_model_when_needed(payload: Payload) -> None:
    entry = register(payload, answer=False)
    assert entry.key not in payload.cache
    injector(payload).inject(FaultTarget.WEIGHTS, FaultModel.VALUE, "m", 0, seed=1)
    assert len(payload.weights(entry).corrupt()) == 1


def test_weight_faults_strike_tensors_in_proportion_to_their_size(tmp_path: Path) -> None:
    payload = open_payload(tmp_path)
    entry = register(payload, cnn(), answer=False)
    loaded = payload.guard.load(entry)
    assert loaded.weights is not None
    arrays = loaded.weights.arrays
    golden = {k: a.copy() for k, a in arrays.items()}
    struck: dict[str, int] = {}
    inject_into = injector(payload)
    for seed in range(60):
        where = inject_into.inject(FaultTarget.WEIGHTS, FaultModel.BIT, "m", 1, seed).where
        struck[where.split()[2]] = struck.get(where.split()[2], 0) + 1
        for name in loaded.weights.corrupt():
            np.copyto(arrays[name], golden[name])
    largest = max(arrays, key=lambda k: arrays[k].nbytes)  # 1.7 of the 3.6 MB
    assert struck[largest] >= 15
    assert sum(struck.values()) == 60
    assert not {k for k in struck if arrays[k].nbytes < 1024}


def test_a_weight_fault_is_reproducible_from_its_seed(tmp_path: Path) -> None:
    results = []
    for run in ("a", "a2", "b"):
        payload = open_payload(tmp_path / run)
        entry = register(payload, answer=False)
        seed = 11 if run != "b" else 12
        injected = injector(payload).inject(FaultTarget.WEIGHTS, FaultModel.ROW, "m", 1, seed)
        loaded = payload.loaded(entry)
        assert loaded.weights is not None
        results.append((injected, {k: a.tobytes() for k, a in loaded.weights.arrays.items()}))
    assert results[0] == results[1]
    assert results[0] != results[2]


def test_weights_kept_by_the_provider_are_no_target(tmp_path: Path) -> None:
    payload = open_payload(tmp_path, own_weights=False)
    register(payload, answer=False)
    with pytest.raises(TargetMissing, match="the known answer checks them"):
        injector(payload).inject(FaultTarget.WEIGHTS, FaultModel.BIT, "m", 1, seed=0)


def test_choose_by_size_follows_the_octets() -> None:
    arrays = {"small": np.zeros(1, np.float32), "large": np.zeros(99, np.float32)}
    picks = [choose_by_size(arrays, np.random.default_rng(seed)) for seed in range(2000)]
    assert 0.97 < picks.count("large") / len(picks) < 1.0
    assert choose_by_size({"only": np.zeros(1)}, np.random.default_rng(0)) == "only"


# --- files ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("model", list(FaultModel))
def test_a_model_file_fault_corrupts_one_stored_copy(payload: Payload, model: FaultModel) -> None:
    entry = register(payload, answer=False)
    good = entry.path.read_bytes()
    copies: dict[int, int] = {}
    for seed in range(6):
        injected = injector(payload).inject(FaultTarget.MODEL_FILE, model, "m", 1, seed)
        contents = [entry.path.read_bytes(), entry.copy_path.read_bytes()]
        (bad,) = [i for i, data in enumerate(contents) if data != good]
        assert injected.where.startswith(f"m v1 copy {bad + 1} octet ")
        assert injected.bits == bits_between(good, contents[bad])
        assert len(contents[bad]) == len(good)
        copies[bad] = copies.get(bad, 0) + 1
        assert payload.registry.read_verified(entry) == good
        payload.registry.verify_copies(entry)  # repaired, for the next seed
    assert set(copies) == {0, 1}  # the seed picks the copy
    assert payload.upsets.counts()["MODEL_FILE.corrected"] == 6


def test_a_result_file_fault_corrupts_the_stored_file(payload: Payload) -> None:
    inject_into = injector(payload)
    data = np.random.default_rng(2).standard_normal(300).astype(np.float32).tobytes()
    inject_into.files.put("job-7.npy", data)

    injected = inject_into.inject(FaultTarget.RESULT_FILE, FaultModel.MULTI_BIT, "job-7.npy", 0, 5)

    after = inject_into.files.path_of("job-7.npy").read_bytes()
    assert 2 <= injected.bits == bits_between(data, after) <= 4
    assert injected.where.startswith("job-7.npy octet ")
    assert not inject_into.files.intact("job-7.npy")


# --- outputs and external targets ----------------------------------------------------------------


@pytest.mark.parametrize("mode", [Redundancy.DMR, Redundancy.TMR])
def test_an_output_fault_upsets_one_run_of_the_next_redundant_job(
    payload: Payload, mode: Redundancy
) -> None:
    entry = register(payload)
    injected = injector(payload).inject(FaultTarget.OUTPUT, FaultModel.VALUE, "m", 1, seed=4)
    assert injected == Injected("one run of the next DMR or TMR job", 0)
    feeds = job_feeds()
    reference = reference_outputs(entry, feeds)
    execute = payload.executor.execute
    source = payload.guard.source(entry)

    single = execute(entry.key, source, feeds, Redundancy.NONE)  # not armed for single runs
    assert same_bits(single.outputs, reference)

    voted = execute(entry.key, source, feeds, mode)
    assert same_bits(voted.outputs, reference)
    assert voted.voted and voted.disagreements == 1 and len(voted.outvoted) == 1
    assert voted.runs == 3

    again = execute(entry.key, source, feeds, mode)  # one job only
    assert not again.voted and same_bits(again.outputs, reference)


def test_an_external_target_gets_the_model_and_a_seeded_generator(payload: Payload) -> None:
    state = np.arange(16, dtype=np.float32)
    calls: list[FaultModel] = []

    def corrupt_state(model: FaultModel, rng: np.random.Generator) -> Injected:
        calls.append(model)
        injection = inject(state, model, rng)
        return Injected(f"state {injection.describe()}", injection.bits)

    inject_into = injector(payload, {FaultTarget.STATE: corrupt_state})
    first = inject_into.inject(FaultTarget.STATE, FaultModel.BIT, "", 0, seed=9)
    kept = state.copy()
    state[:] = np.arange(16, dtype=np.float32)
    second = inject_into.inject(FaultTarget.STATE, FaultModel.BIT, "", 0, seed=9)
    assert first == second and first.bits == 1
    assert np.array_equal(state, kept)
    assert calls == [FaultModel.BIT, FaultModel.BIT]


# --- missing targets -----------------------------------------------------------------------------


def test_missing_targets_are_refused(payload: Payload) -> None:
    register(payload, answer=False)
    inject_into = injector(payload)
    inject_into.files.put("tiny.bin", b"abc")
    cases = [
        (FaultTarget.WEIGHTS, "nope", 1, "no model nope"),
        (FaultTarget.WEIGHTS, "m", 2, "no model m version 2"),
        (FaultTarget.MODEL_FILE, "nope", 0, "no model nope"),
        (FaultTarget.RESULT_FILE, "missing.npy", 0, "missing.npy"),
        (FaultTarget.RESULT_FILE, "tiny.bin", 0, "no 32-bit word"),
        (FaultTarget.STATE, "", 0, "STATE: no such target on this payload"),
        (FaultTarget.JOB_STORE, "", 0, "JOB_STORE: no such target on this payload"),
    ]
    for target, name, version, message in cases:
        with pytest.raises(TargetMissing, match=message):
            inject_into.inject(target, FaultModel.BIT, name, version, seed=0)
    assert inject_into.files.path_of("tiny.bin").read_bytes() == b"abc"


def test_a_model_file_gone_from_disk_is_a_missing_target(payload: Payload) -> None:
    entry = register(payload, answer=False)
    entry.path.unlink()
    entry.copy_path.unlink()
    with pytest.raises(TargetMissing, match="No such file"):
        injector(payload).inject(FaultTarget.MODEL_FILE, FaultModel.BIT, "m", 1, seed=0)
