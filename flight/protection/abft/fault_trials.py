"""Fault injection into a model with checksums, and the outcome of each fault.

Evaluation runs models through a `RunnerFactory` (onnxruntime at the edge, in the caller). A
compute fault of flight.protection.faults (VALUE and ROW write random bits) goes into a layer's
output through an Add of an extra graph input, so one session serves every trial and runs the
whole optimised graph; its run with a zero fault is the fault-free reference. A weight fault is
a bit flipped in a checked layer's weight initializer of the transformed model, run in a new
session.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from flight.protection.abft.checked_model import AbftError, AbftModel, Runner, RunnerFactory
from flight.protection.abft.coverage_report import CoverageReport, Outcome, Trial
from flight.protection.abft.graph_info import GraphInfo
from flight.protection.abft.threshold import TINY_MAGNITUDE, check, largest
from flight.protection.faults import FaultModel, inject

FAULT_INPUT = "abft_fault"


def with_fault_input(model: onnx.ModelProto, tensor: str) -> onnx.ModelProto:
    """The model with `tensor` replaced by `tensor + abft_fault` for every reader (an extra
    input of the tensor's shape), and `tensor` (with its fault) as an extra output."""
    info = GraphInfo(model)
    if tensor not in info.producer:
        raise AbftError(f"{tensor!r} is not the output of a node")
    shape = info.shape_dims(tensor)
    if shape is None or info.elem_type.get(tensor) != TensorProto.FLOAT:
        raise AbftError(f"{tensor!r}: expected a float32 tensor of known rank")
    out = copy.deepcopy(model)
    clean = f"{tensor}/abft_clean"
    for node in out.graph.node:
        for i, name in enumerate(node.output):
            if name == tensor:
                node.output[i] = clean
    out.graph.node.append(
        helper.make_node("Add", [clean, FAULT_INPUT], [tensor], name=f"{tensor}/abft_fault")
    )
    out.graph.input.append(helper.make_tensor_value_info(FAULT_INPUT, TensorProto.FLOAT, shape))
    if all(o.name != tensor for o in out.graph.output):
        out.graph.output.append(helper.make_tensor_value_info(tensor, TensorProto.FLOAT, shape))
    return out


def injection_runner(
    abft: AbftModel, make_runner: RunnerFactory, feeds: Mapping[str, np.ndarray], target: str
) -> tuple[Runner, list[np.ndarray], np.ndarray]:
    """A runner of `abft.model` with a fault input at `target` (see `with_fault_input`), its
    fault-free outputs on `feeds` with the target's values appended last, and a zero fault."""
    model = with_fault_input(abft.model, target)
    index = [o.name for o in model.graph.output].index(target)
    dims = GraphInfo(abft.model).shape_dims(target) or []
    batch = next(iter(feeds.values())).shape[0] if feeds else 1
    shape = []
    for axis, dim in enumerate(dims):
        if isinstance(dim, int) and dim > 0:
            shape.append(dim)
        elif axis == 0:
            shape.append(batch)
        else:
            raise AbftError(f"{target}: axis {axis} has no known length")
    zero = np.zeros(shape, np.float32)
    runner = make_runner(model)
    clean = list(runner({**feeds, FAULT_INPUT: zero}))
    again = runner({**feeds, FAULT_INPUT: zero})
    if any(a.tobytes() != b.tobytes() for a, b in zip(clean, again, strict=True)):
        raise AbftError("two fault-free runs differ: the runner is not deterministic")
    return runner, [*clean, clean[index]], zero


def fault_coverage(
    abft: AbftModel,
    make_runner: RunnerFactory,
    feeds: Mapping[str, np.ndarray],
    fault: FaultModel,
    trials: int,
    *,
    seed: int,
    threshold: float,
    targets: Sequence[str] | None = None,
) -> CoverageReport:
    """Inject `trials` compute faults of model `fault` into layer outputs, run `abft.model` on
    `feeds` each time and classify the outcome; the same seed gives the same trials.

    By default the target is a checked layer's output, drawn with probability proportional to
    the layer's multiply-adds (a compute fault strikes where time is spent); `targets` names
    tensors to draw from uniformly instead, checked or not. ROW corrupts a run of 2 to 16
    values of one row (the last axis) of the tensor.
    """
    names, weights = _targets(abft, targets)
    rng = np.random.default_rng(seed)
    runners: dict[str, tuple[Runner, list[np.ndarray], np.ndarray]] = {}
    results = []
    for _ in range(trials):
        target = names[int(rng.choice(len(names), p=weights))]
        if target not in runners:
            runners[target] = injection_runner(abft, make_runner, feeds, target)
        runner, clean, delta = runners[target]
        faulty = clean[-1].copy()
        row = faulty.shape[-1] if faulty.ndim else 1
        injection = inject(faulty, fault, rng, row_length=row)
        span = slice(injection.word, injection.word + injection.words)
        flat = delta.reshape(-1)
        # The Add gives the corrupted values exactly when the difference is representable,
        # which holds for all but a few values whose exponent a fault moved far away.
        with np.errstate(invalid="ignore", over="ignore"):
            flat[span] = faulty.reshape(-1)[span] - clean[-1].reshape(-1)[span]
        got = runner({**feeds, FAULT_INPUT: delta})
        flat[span] = 0.0
        results.append(
            _classify(
                target, injection.word, injection.words, injection.bits, got, clean, abft, threshold
            )
        )
    return CoverageReport(fault, threshold, tuple(results))


def weight_fault_coverage(
    abft: AbftModel,
    make_runner: RunnerFactory,
    feeds: Mapping[str, np.ndarray],
    trials: int,
    *,
    seed: int,
    threshold: float,
    fault: FaultModel = FaultModel.BIT,
) -> CoverageReport:
    """Faults in the weights of checked layers, injected into the transformed model (a new
    runner per trial, so the optimiser folds the faulty weight as it would in flight); the
    weight is drawn with probability proportional to its size."""
    by_name = {t.name: i for i, t in enumerate(abft.model.graph.initializer)}
    names = sorted({layer.weight for layer in abft.layers if layer.weight in by_name})
    if not names:
        raise AbftError("no checked layer has its weights in an initializer")
    golden = {n: numpy_helper.to_array(abft.model.graph.initializer[by_name[n]]) for n in names}
    sizes = np.array([golden[n].size for n in names], dtype=np.float64)
    rng = np.random.default_rng(seed)
    clean = list(make_runner(abft.model)(feeds))
    faulty_model = copy.deepcopy(abft.model)
    results = []
    for _ in range(trials):
        name = names[int(rng.choice(len(names), p=sizes / sizes.sum()))]
        tensor = faulty_model.graph.initializer[by_name[name]]
        faulty = np.ascontiguousarray(golden[name], dtype=np.float32).copy()
        injection = inject(faulty, fault, rng, row_length=faulty.shape[-1])
        tensor.CopyFrom(numpy_helper.from_array(faulty, name))
        try:
            got = make_runner(faulty_model)(feeds)
        finally:
            tensor.CopyFrom(numpy_helper.from_array(golden[name], name))
        results.append(
            _classify(
                name, injection.word, injection.words, injection.bits, got, clean, abft, threshold
            )
        )
    return CoverageReport(fault, threshold, tuple(results))


def _targets(abft: AbftModel, targets: Sequence[str] | None) -> tuple[list[str], np.ndarray]:
    if targets is None:
        names = [layer.output for layer in abft.layers]
        weights = np.array([layer.macs for layer in abft.layers], dtype=np.float64)
    else:
        if not targets:
            raise AbftError("targets: expected at least one tensor name")
        names = list(targets)
        weights = np.ones(len(names))
    return names, weights / weights.sum()


def _classify(
    target: str,
    index: int,
    values: int,
    bits: int,
    got: Sequence[np.ndarray],
    clean: Sequence[np.ndarray],
    abft: AbftModel,
    threshold: float,
) -> Trial:
    residual_index = abft.residual_index
    residual = largest(got[residual_index])
    originals = [i for i in range(len(abft.model.graph.output)) if i != residual_index]
    identical = all(
        got[i].shape == clean[i].shape and got[i].tobytes() == clean[i].tobytes() for i in originals
    )
    if not check(got[residual_index], threshold):
        outcome = Outcome.DETECTED
    else:
        outcome = Outcome.MASKED if identical else Outcome.SDC
    error = 0.0 if identical else _relative_error(got, clean, originals)
    return Trial(target, index, values, bits, residual, outcome, not identical, error)


def _relative_error(
    got: Sequence[np.ndarray], clean: Sequence[np.ndarray], indices: Sequence[int]
) -> float:
    worst = 0.0
    for i in indices:
        a, b = got[i].astype(np.float64), clean[i].astype(np.float64)
        if not np.isfinite(a).all():
            return math.inf
        scale = max(float(np.abs(b).max(initial=0.0)), TINY_MAGNITUDE)
        worst = max(worst, float(np.abs(a - b).max(initial=0.0)) / scale)
    return worst
