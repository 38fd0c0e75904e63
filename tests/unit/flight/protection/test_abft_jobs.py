"""ABFT as a job mode: the model with checksums runs on payload-owned weights, its threshold is
calibrated once and kept, a failed check reruns after the weights are repaired."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from flight.jobs.executor import Executor, LoadedModel, SessionCache, reference_session
from flight.jobs.providers import CPU, ProviderChoice
from flight.jobs.redundancy import Redundancy, VotingError
from flight.jobs.registry import ModelEntry, ModelRegistry
from flight.protection.model_guard import AbftForm, AbftUnsupported, ModelGuard
from flight.protection.upsets import UpsetLocation, UpsetLog
from tools.model_gen import cnn_classifier, model_bytes, random_input


def make_guard(root: Path) -> ModelGuard:
    registry = ModelRegistry(root, max_model_bytes=2**30)
    return ModelGuard(registry, Executor(SessionCache(4, ProviderChoice(CPU), 1)), UpsetLog())


@pytest.fixture
def cnn(tmp_path: Path) -> tuple[ModelGuard, ModelEntry, bytes]:
    guard = make_guard(tmp_path)
    data = model_bytes(cnn_classifier(seed=1))
    return guard, guard.record_answer(guard.registry.register("cnn", 1, data)), data


def upset_the_largest_weight(guard: ModelGuard, form: AbftForm) -> LoadedModel:
    """The checked form, loaded, with one high bit flipped in its largest weight tensor."""
    loaded = guard.executor.cache.get(form.key, form.source)
    assert loaded.weights is not None
    arrays = loaded.weights.arrays
    largest = max(arrays, key=lambda name: arrays[name].nbytes)
    arrays[largest].reshape(-1).view(np.uint32)[5] ^= np.uint32(1 << 30)
    return loaded


def feeds() -> dict[str, np.ndarray]:
    return {"image": random_input(cnn_classifier(seed=1), batch=2, seed=3)}


def test_abft_outputs_are_the_models_bit_for_bit(
    cnn: tuple[ModelGuard, ModelEntry, bytes], tmp_path: Path
) -> None:
    guard, entry, data = cnn
    form = guard.abft_form(entry)
    assert 0 < form.threshold < 1e-3
    result = guard.executor.execute(
        form.key, form.source, feeds(), Redundancy.ABFT, abft_threshold=form.threshold
    )
    expected = reference_session(data).run(None, feeds())[0]
    assert list(result.outputs) == ["probabilities"]
    assert result.outputs["probabilities"].tobytes() == expected.tobytes()
    assert (result.runs, result.disagreements) == (1, 0)
    # Calibrated once: kept in the registry across a reopen.
    reopened = ModelRegistry(guard.registry.root, max_model_bytes=2**30)
    assert reopened.entry("cnn").abft_threshold == form.threshold


def test_a_weight_upset_fails_the_checksums_and_the_rerun_runs_on_repaired_weights(
    cnn: tuple[ModelGuard, ModelEntry, bytes],
) -> None:
    guard, entry, data = cnn
    form = guard.abft_form(entry)
    loaded = upset_the_largest_weight(guard, form)

    def repair() -> None:
        guard.repair_weights(loaded)

    result = guard.executor.execute(
        form.key, form.source, feeds(), Redundancy.ABFT,
        abft_threshold=form.threshold, before_rerun=repair,
    )  # fmt: skip
    expected = reference_session(data).run(None, feeds())[0]
    assert result.outputs["probabilities"].tobytes() == expected.tobytes()
    assert (result.runs, result.outvoted) == (2, frozenset({0}))
    assert guard.upsets.at(UpsetLocation.WEIGHTS) == 1


def test_checksums_that_fail_twice_fail_the_job(
    cnn: tuple[ModelGuard, ModelEntry, bytes],
) -> None:
    guard, entry, _ = cnn
    form = guard.abft_form(entry)
    upset_the_largest_weight(guard, form)
    with pytest.raises(VotingError, match="ABFT"):
        guard.executor.execute(
            form.key, form.source, feeds(), Redundancy.ABFT, abft_threshold=form.threshold
        )


def test_a_model_without_checkable_layers_is_refused(tmp_path: Path) -> None:
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "relu",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    guard = make_guard(tmp_path)
    entry = guard.registry.register("relu", 1, model.SerializeToString())
    onnx.checker.check_model(model)
    with pytest.raises(AbftUnsupported, match="relu v1"):
        guard.abft_form(entry)
