"""Algorithm-based fault tolerance (ABFT): checksums of Conv, Gemm and MatMul nodes added to a
model as an ONNX graph transformation, so that they run on any provider.

By linearity, a sum of a layer's outputs equals the layer applied to a sum of its inputs. For a
Conv the checksums are spatial blocks summed over channel groups: the mean of every output
column (or of enough adjacent columns for `min_positions` positions), summed over the output
channels of each of 8 groups (channel c in group c mod 8), compared with the convolution of the
input's means over the rows each output row reads, by kernels summed over each group. That
convolution's output is one row high and 8 channels deep: it costs about 1/(rows x channels
per group) of the layer, and its 8 summed kernels are a small read, where kernels for every
channel cost as much to stream as the layer's own weights on a small map (`groups` 0 checks
every channel alone, as this module first did). The input's means take one pass over it: for a
Conv that keeps the height (stride 1, at most one padding row above and below, a ResNet's 3x3
and 1x1 layers) they are its column means less its first and last row, which a two-row
convolution dilated over the height subtracts; otherwise a pooling window as tall as the output
per kernel row, and a matrix product for the model input, which is in the plain layout. A map
with fewer positions than `min_positions` (with `groups` 0 and a large `min_positions`) and
every Gemm or MatMul are checked across channels instead: the mean of a position's (or a matrix
row's) outputs against the same product with the mean of the weight columns. Grouped and
depthwise convolutions are checked like the others.

Placement follows onnxruntime's CPU optimiser, so the original outputs stay bit for bit what
the original model gives, in a plain session and in the payload's (optimised once, the
optimised graph loaded with optimisation and prepacking off). A per-channel affine node after a
Conv (BatchNormalization, Mul or Add of a constant), or a per-column one after a Gemm or
MatMul, is folded into the checksum and the check reads its output: tapping the Conv's own
output would stop the optimiser from fusing the BatchNormalization into the Conv, and change the
rounding. A residual Add that alone reads a Conv's output is added inside the Conv of its first
such operand (the other operand is the buffer the Conv accumulates into), which a reader of the
Conv's output would stop: the check reads the sum and subtracts the other operand's column means
(those the next Conv's check takes of the same tensor, a ResNet block's input), or, when both
operands are Convs (a downsampling shortcut), one check of the sum covers both. An Add that
goes into an unchecked Conv leaves the checked one to be checked on its own output. The check's
extra reader of the tapped tensor does stop the fusion of a following activation into the Conv;
the activation then runs as its own node, on the same values. Relu, Sigmoid, Tanh and
HardSigmoid run alone in the blocked-channel (NCHWc) layout the optimiser picks for
convolutions; Clip (ReLU6) and LeakyRelu do not, so they read a depthwise 1x1 Conv of unit
weights inserted for them to be fused into (x * 1 is x). The pooling, the checksum convolutions
and the comparison stay in that layout: Abs and the reductions run on the small checksum
tensors only.

The check nodes follow their layers in graph order. In the payload's sessions onnxruntime then
runs each check right after its layer, while the tensors it reads are in cache (its depth-first
order from the single residual output takes the highest node index first, and the optimised
graph it saves lists the checks after the whole network, last layer first); a plain session runs
them after the whole network. Measured in the payload's sessions on one thread (the bench: best
of 7 interleaved loops; the host is shared and noisy to +-3 %): the demo CNN 1.10 to 1.14 x a
run (each channel alone 1.12 to 1.15), a PyTorch ResNet-18-style export at 224x224 1.08 to 1.12
(plain sessions 1.14 to 1.23; this module's first design, which read the Conv under a residual
Add and changed its rounding, 1.15), a MobileNetV2-style one 1.55 to 1.65 and 1.33 with its
depthwise layers left out (`min_fan_in` 10: 93 % of the multiply-adds checked), the 80 us
MobileNetV3-style toy 1.6 to 1.7. Memory-bound layers are the limit: a check makes a pass over
the layer's input and output and its activation one more, which cost about as much as a
depthwise or few-channel 1x1 layer.

Every checked layer gives, per batch item, the largest |checksum difference| divided by the mean
magnitude of the compared sums (mean |output| for the channel checksums), so that one threshold
serves every layer and every input scale; the ratios of all checks are computed together, one
row per check. `abft_residual` is the largest over the layers, one value per batch item, NaN
when a non-finite value reached a check (which `check` counts as a fault: onnxruntime's
ReduceMax skips NaN; a sum of the magnitudes times zero, added to the largest ratio, does not).

Evaluation runs models through a `RunnerFactory` (onnxruntime at the edge, in the caller). A
compute fault of flight.protection.faults (VALUE and ROW write random bits) goes into a layer's
output through an Add of an extra graph input, so one session serves every trial and runs the
whole optimised graph; its run with a zero fault is the fault-free reference. A weight fault is
a bit flipped in a checked layer's weight initializer of the transformed model, run in a new
session.
"""

from __future__ import annotations

import copy
import enum
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
from numpy.typing import ArrayLike
from onnx import TensorProto, helper, numpy_helper, shape_inference

from flight.protection.faults import FaultModel, inject

RESIDUAL_OUTPUT = "abft_residual"
FAULT_INPUT = "abft_fault"
#: A block checksum of a Conv sums at least this many output positions: whole columns, and as
#: many adjacent columns as that takes; a map with fewer positions is checked across channels.
#: With channel groups one column suffices (the checksum convolution costs about 1/(rows x
#: channels per group) of the layer); each channel alone (groups 0) wants 32 or more.
DEFAULT_MIN_POSITIONS = 1
#: A Conv's block checksums sum its output channels in this many groups (channel c in group
#: c mod 8): the checksum convolution reads 8 summed kernels instead of one per channel, which
#: on a small map cost as much to stream as the layer's own weights.
DEFAULT_GROUPS = 8
#: Threshold = margin x the largest healthy residual of the calibration: 8 is three bits of
#: headroom over the rounding noise seen, for inputs unlike the calibration's.
DEFAULT_MARGIN = 8.0
# Floor of a layer's magnitude, so that an all-zero layer (a black image) gives 0, not 0/0.
_TINY_MAGNITUDE = 1e-30
# The default domain's opset from which Reduce* take their axes as an input, not an attribute.
_AXES_AS_INPUT_OPSET = 18
_AFFINE_OPS = ("BatchNormalization", "Mul", "Add")
# Activations onnxruntime fuses into a Conv but does not run on their own in its blocked
# (NCHWc) layout: once a check reads the Conv's output, it would convert the tensor to the
# plain layout and back around them (two passes more).
_CONV_ONLY_ACTIVATIONS = ("Clip", "LeakyRelu")

#: Runs a model on named inputs and returns its outputs in graph order.
Runner = Callable[[Mapping[str, np.ndarray]], Sequence[np.ndarray]]
#: Makes a runner for a model (an onnxruntime session with the payload's options, in practice).
RunnerFactory = Callable[[onnx.ModelProto], Runner]


class AbftError(ValueError):
    """A model this module cannot transform, calibrate or evaluate, with the reason."""


@dataclass(frozen=True, slots=True)
class CheckedLayer:
    """A node whose outputs are checked: `output` is the tensor compared with its checksums (the
    node's output, or that of the affine nodes folded into it), `weight` the initializer of its
    weights; `checksums` per batch item, each over `span` output values."""

    node: str
    op_type: str
    output: str
    weight: str
    checksums: int
    span: int
    macs: int


@dataclass(frozen=True, slots=True)
class SkippedNode:
    """A Conv, Gemm or MatMul left unchecked, and why; `macs` per batch item when known (the
    nodes a cost limit leaves out), else 0."""

    node: str
    op_type: str
    reason: str
    macs: int = 0


@dataclass(frozen=True, slots=True)
class AbftModel:
    """A model with checksums: its original outputs, then `abft_residual`."""

    model: onnx.ModelProto
    layers: tuple[CheckedLayer, ...]
    skipped: tuple[SkippedNode, ...]

    @property
    def residual_index(self) -> int:
        return [o.name for o in self.model.graph.output].index(RESIDUAL_OUTPUT)

    @property
    def checked_share(self) -> float:
        """The checked layers' share of the multiply-adds of the layers checked or left out by
        a cost limit."""
        checked = sum(layer.macs for layer in self.layers)
        return checked / (checked + sum(s.macs for s in self.skipped))

    def layer(self, node: str) -> CheckedLayer:
        """The checked layer of node `node`."""
        for layer in self.layers:
            if layer.node == node:
                return layer
        raise AbftError(f"node {node!r} is not checked; checked: {[x.node for x in self.layers]}")


def add_checksums(
    model: onnx.ModelProto,
    *,
    min_positions: int = DEFAULT_MIN_POSITIONS,
    min_macs: int = 0,
    min_fan_in: int = 0,
    groups: int = DEFAULT_GROUPS,
) -> AbftModel:
    """The model with a checksum for every Conv, Gemm and MatMul with constant weights whose
    shapes are known, and the output `abft_residual`. Left unchecked: nodes under `min_macs`
    multiply-adds per batch item (their checks would cost more than their faults), and nodes
    whose outputs each sum fewer than `min_fan_in` products (a depthwise 3x3 Conv: 9; such a
    layer is memory-bound, and its check's passes over the activations cost about as much).
    A Conv's block checksums sum its output channels in `groups` groups (0: each alone)."""
    if min_positions < 1:
        raise AbftError(f"min_positions: expected 1 or more, found {min_positions}")
    if groups < 0:
        raise AbftError(f"groups: expected 0 or more, found {groups}")
    if min_macs < 0 or min_fan_in < 0:
        raise AbftError(f"min_macs, min_fan_in: expected 0 or more, found {min_macs}, {min_fan_in}")
    if any(o.name == RESIDUAL_OUTPUT for o in model.graph.output):
        raise AbftError(f"the model already has an output {RESIDUAL_OUTPUT}")
    graph = _GraphInfo(model)
    builder = _Builder(graph)
    skipped: list[SkippedNode] = []
    convs: list[_Conv] = []
    matmuls: list[onnx.NodeProto] = []
    position: dict[str, int] = {}
    for index, node in enumerate(model.graph.node):
        if node.op_type not in ("Conv", "Gemm", "MatMul") or node.domain not in ("", "ai.onnx"):
            continue
        name = node.name or node.output[0]
        position[name] = index
        try:
            if node.op_type == "Conv":
                convs.append(_conv_of(graph, node, min_macs, min_fan_in))
            else:
                matmuls.append(node)
        except _Skip as skip:
            skipped.append(SkippedNode(name, node.op_type, str(skip), skip.macs))
    sites = _sites(graph, convs)
    checks: list[_Site | onnx.NodeProto] = [*sites, *matmuls]
    # In graph order: the payload's sessions then run each check right after its layer.
    checks.sort(key=lambda c: position[c.convs[0].name if isinstance(c, _Site) else _name(c)])
    layers: list[CheckedLayer] = []
    for index, item in enumerate(checks):
        try:
            if isinstance(item, _Site):
                layers.extend(_check_site(builder, item, index, min_positions, groups))
            else:
                layers.append(_check_matmul(builder, item, index, min_macs, min_fan_in))
        except _Skip as skip:
            assert isinstance(item, onnx.NodeProto)
            skipped.append(SkippedNode(_name(item), item.op_type, str(skip), skip.macs))
    if not layers:
        reasons = "; ".join(f"{s.node}: {s.reason}" for s in skipped) or "none in the graph"
        raise AbftError(f"no Conv, Gemm or MatMul node can be checked ({reasons})")
    builder.finish()
    out = copy.deepcopy(model)
    _keep_in_layout(out, builder, sites)
    out.graph.node.extend(builder.nodes)
    out.graph.initializer.extend(builder.initializers)
    batch = graph.batch_dim if builder.per_item else None
    out.graph.output.append(
        helper.make_tensor_value_info(
            RESIDUAL_OUTPUT, TensorProto.FLOAT, [] if batch is None else [batch]
        )
    )
    return AbftModel(out, tuple(layers), tuple(skipped))


def check(residual: float | np.ndarray, threshold: float) -> bool:
    """True when a run passed its checks: every residual at or under `threshold` (NaN fails)."""
    return bool(np.all(np.asarray(residual, dtype=np.float64) <= threshold))


def largest(residual: float | np.ndarray) -> float:
    """The largest value of a residual, NaN when any is NaN."""
    values = np.asarray(residual, dtype=np.float64)
    return float("nan") if np.isnan(values).any() else float(values.max(initial=0.0))


@dataclass(frozen=True, slots=True)
class Calibration:
    """Threshold = `margin` x `healthy_max`, the largest residual over `runs` healthy runs."""

    threshold: float
    healthy_max: float
    margin: float
    runs: int


def calibrate(
    run: Runner,
    abft: AbftModel,
    feeds: Iterable[Mapping[str, np.ndarray]],
    margin: float = DEFAULT_MARGIN,
) -> Calibration:
    """The threshold from the residuals of `run` (on `abft.model`) over fault-free `feeds`."""
    if margin < 1:
        raise AbftError(f"margin: expected 1 or more, found {margin}")
    healthy = []
    for feed in feeds:
        residual = largest(run(feed)[abft.residual_index])
        if not math.isfinite(residual):
            raise AbftError("a fault-free run gave a non-finite residual: the model overflows")
        healthy.append(residual)
    if not healthy:
        raise AbftError("calibration needs at least one input")
    worst = max(healthy)
    # A model whose checks were exact on every input still needs a threshold over rounding.
    floor = float(np.finfo(np.float32).eps)
    return Calibration(margin * max(worst, floor), worst, margin, len(healthy))


def random_feeds(
    model: onnx.ModelProto, count: int, seed: int, batch: int = 1
) -> list[dict[str, np.ndarray]]:
    """`count` seeded inputs for the model's float inputs: standard normal values times a scale
    drawn log-uniformly from 0.1 to 10, so that a threshold is not tied to one input scale."""
    rng = np.random.default_rng(seed)
    inputs = _graph_inputs(model)
    feeds = []
    for _ in range(count):
        scale = 10.0 ** rng.uniform(-1.0, 1.0)
        feed = {}
        for value in inputs:
            shape = _input_shape(value, batch)
            feed[value.name] = (rng.standard_normal(shape) * scale).astype(np.float32)
        feeds.append(feed)
    return feeds


class Outcome(enum.Enum):
    """What became of an injected fault."""

    MASKED = "masked"  # not detected, and the outputs are bit for bit the fault-free ones
    DETECTED = "detected"  # the residual went over the threshold (or NaN)
    SDC = "sdc"  # silent data corruption: the outputs differ and nothing was detected


@dataclass(frozen=True, slots=True)
class Trial:
    """One injected fault: where (`target` tensor, first flat `index`, `values` touched, `bits`
    changed), the residual it gave, its outcome, whether the outputs `changed` at all and the
    largest output change relative to the largest fault-free output (inf when non-finite)."""

    target: str
    index: int
    values: int
    bits: int
    residual: float
    outcome: Outcome
    changed: bool
    output_error: float


@dataclass(frozen=True, slots=True)
class CoverageReport:
    """The trials of one fault model and their tally."""

    fault: FaultModel
    threshold: float
    trials: tuple[Trial, ...]
    counts: dict[Outcome, int] = field(init=False)

    def __post_init__(self) -> None:
        counts = dict.fromkeys(Outcome, 0)
        for trial in self.trials:
            counts[trial.outcome] += 1
        object.__setattr__(self, "counts", counts)

    def share(self, outcome: Outcome) -> float:
        return self.counts[outcome] / len(self.trials) if self.trials else 0.0

    def coverage(self) -> float:
        """Detected share of the faults that changed the outputs, which TMR would all detect
        (1.0 when none did)."""
        changed = [t for t in self.trials if t.changed]
        if not changed:
            return 1.0
        return sum(1 for t in changed if t.outcome is Outcome.DETECTED) / len(changed)

    def detected_intact(self) -> int:
        """Faults detected although the outputs came out intact (a re-run that was not needed)."""
        return sum(1 for t in self.trials if t.outcome is Outcome.DETECTED and not t.changed)

    def sdc_above(self, tolerance: float) -> int:
        """SDC trials whose relative output change exceeds `tolerance`."""
        return sum(
            1 for t in self.trials if t.outcome is Outcome.SDC and t.output_error > tolerance
        )

    def summary(self, tolerance: float = 1e-3) -> str:
        """One line: the tally, the SDC that moved an output by more than `tolerance` (relative
        to the largest output) and the coverage."""
        tally = ", ".join(f"{o.value} {self.counts[o]} ({self.share(o):.1%})" for o in Outcome)
        return (
            f"{self.fault.name}: {len(self.trials)} trials, {tally}; detected with intact"
            f" outputs {self.detected_intact()}; SDC with an output change > {tolerance:g}:"
            f" {self.sdc_above(tolerance)}; coverage of output-changing faults"
            f" {self.coverage():.2%}"
        )


def with_fault_input(model: onnx.ModelProto, tensor: str) -> onnx.ModelProto:
    """The model with `tensor` replaced by `tensor + abft_fault` for every reader (an extra
    input of the tensor's shape), and `tensor` (with its fault) as an extra output."""
    info = _GraphInfo(model)
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


# --- the transformation --------------------------------------------------------------------


class _Skip(Exception):
    """A node that cannot be checked; the message says why."""

    def __init__(self, reason: str, macs: int = 0) -> None:
        super().__init__(reason)
        self.macs = macs


class _GraphInfo:
    """Constants, producers, readers and inferred shapes of a model's main graph."""

    def __init__(self, model: onnx.ModelProto) -> None:
        self.model = model
        self.opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 1)
        graph = model.graph
        self.constants: dict[str, np.ndarray] = {
            t.name: numpy_helper.to_array(t) for t in graph.initializer
        }
        self.producer: dict[str, onnx.NodeProto] = {}
        self.readers: dict[str, list[onnx.NodeProto]] = {}
        for node in graph.node:
            for name in node.output:
                self.producer[name] = node
            for name in node.input:
                self.readers.setdefault(name, []).append(node)
        for node in graph.node:  # Constant nodes and Identity of constants, as exporters write
            if node.op_type == "Constant" and node.attribute:
                value = helper.get_attribute_value(node.attribute[0])
                if isinstance(value, onnx.TensorProto):
                    self.constants[node.output[0]] = numpy_helper.to_array(value)
            elif node.op_type == "Identity" and node.input[0] in self.constants:
                self.constants[node.output[0]] = self.constants[node.input[0]]
        self.outputs = {o.name for o in graph.output}
        self.inputs = {v.name for v in _graph_inputs(model)}
        self.names = {v.name for v in graph.input} | set(self.producer) | set(self.constants)
        inferred = shape_inference.infer_shapes(model, data_prop=True)
        self.dims: dict[str, list[int | str | None]] = {}
        self.elem_type: dict[str, int] = {}
        for value in [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]:
            tensor_type = value.type.tensor_type
            self.elem_type[value.name] = tensor_type.elem_type
            if tensor_type.HasField("shape"):
                self.dims[value.name] = [
                    d.dim_value if d.HasField("dim_value") else (d.dim_param or None)
                    for d in tensor_type.shape.dim
                ]
        inputs = _graph_inputs(model)
        first = self.dims.get(inputs[0].name) if inputs else None
        self.batch_dim: int | str | None = first[0] if first else None

    def static_shape(self, name: str) -> tuple[int, ...] | None:
        """The shape of `name` without its first axis, when every other axis is known."""
        dims = self.dims.get(name)
        if not dims:
            return None
        rest = [d for d in dims[1:] if isinstance(d, int)]
        return tuple(rest) if len(rest) == len(dims) - 1 else None

    def shape_dims(self, name: str) -> list[int | str | None] | None:
        return self.dims.get(name)

    def batch_aligned(self, name: str) -> bool:
        """True when the first axis of `name` is the model's batch axis."""
        dims = self.dims.get(name)
        return bool(dims) and self.batch_dim is not None and dims[0] == self.batch_dim  # type: ignore[index]


class _Builder:
    """Collects the nodes and initializers of the checks, with unique names."""

    def __init__(self, graph: _GraphInfo) -> None:
        self.graph = graph
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.per_item = False
        # Per-item checks: (max |diff|, sum |magnitude|, 1 / values per item); whole-tensor
        # checks: their residual.
        self._items: list[tuple[str, str, float]] = []
        self._whole: list[str] = []
        #: Nodes more than one check reads, by what they compute.
        self.shared: dict[str, str] = {}
        self._names: set[str] = set()

    def fresh(self, base: str) -> str:
        name = base
        n = 1
        while name in self._names or name in self.graph.names:
            n += 1
            name = f"{base}_{n}"
        self._names.add(name)
        return name

    def constant(self, prefix: str, array: ArrayLike, dtype: type = np.float32) -> str:
        name = self.fresh(f"{prefix}/const")
        self.initializers.append(numpy_helper.from_array(np.asarray(array, dtype=dtype), name))
        return name

    def node(self, op: str, inputs: Sequence[str], output: str, **attrs: Any) -> str:
        name = output if output == RESIDUAL_OUTPUT else self.fresh(output)
        self.nodes.append(helper.make_node(op, list(inputs), [name], name=name, **attrs))
        return name

    def reduce(
        self, op: str, prefix: str, x: str, axes: Sequence[int] | None, keepdims: int
    ) -> str:
        """A Reduce* node, with its axes as an attribute or an input as the opset wants."""
        output = f"{prefix}/{op}"
        if axes is None:
            return self.node(op, [x], output, keepdims=keepdims)
        if self.graph.opset >= _AXES_AS_INPUT_OPSET or (
            op == "ReduceSum" and self.graph.opset >= 13
        ):
            axes_input = self.constant(prefix, np.array(axes), np.int64)
            return self.node(op, [x, axes_input], output, keepdims=keepdims)
        return self.node(op, [x], output, axes=list(axes), keepdims=keepdims)

    def compare(
        self, prefix: str, diff: str, magnitude_of: str, count: int, rank: int, tensor: str
    ) -> None:
        """Add a check: max |diff| / max(mean |magnitude_of|, tiny), per batch item when
        `tensor` has the batch axis (else over everything); `count` values per item."""
        if not self.graph.batch_aligned(tensor):
            largest_diff = self.reduce(
                "ReduceMax", prefix, self.node("Abs", [diff], f"{prefix}/abs_diff"), None, 0
            )
            mean = self.reduce(
                "ReduceMean", prefix, self.node("Abs", [magnitude_of], f"{prefix}/abs_sums"),
                None, 0,
            )  # fmt: skip
            floor = self.constant(prefix, np.array(_TINY_MAGNITUDE))
            magnitude = self.node("Max", [mean, floor], f"{prefix}/magnitude")
            self._whole.append(self.node("Div", [largest_diff, magnitude], f"{prefix}/residual"))
            return
        self.per_item = True
        axes = list(range(1, rank))
        abs_diff = self.node("Abs", [diff], f"{prefix}/abs_diff")
        largest_diff = self.reduce("ReduceMax", prefix, abs_diff, axes, 0)
        total = self.reduce("ReduceL1", prefix, magnitude_of, axes, 0)
        self._items.append((largest_diff, total, 1.0 / count))

    def finish(self) -> None:
        """The output `abft_residual`: the largest ratio over the checks. Their ratios are
        computed together, one row per check, which spares each check three nodes."""
        parts = list(self._whole)
        if self._items:
            prefix = "abft/all"
            rows = self.constant(prefix, np.array([len(self._items), -1]), np.int64)
            largest_diffs = self.node("Concat", [i[0] for i in self._items], f"{prefix}/diffs",
                                      axis=0)  # fmt: skip
            totals = self.node("Concat", [i[1] for i in self._items], f"{prefix}/totals", axis=0)
            by_check = self.node("Reshape", [largest_diffs, rows], f"{prefix}/diff_rows")
            total_rows = self.node("Reshape", [totals, rows], f"{prefix}/total_rows")
            per_value = self.constant(prefix, np.array([[i[2]] for i in self._items]))
            mean = self.node("Mul", [total_rows, per_value], f"{prefix}/mean")
            floor = self.constant(prefix, np.array(_TINY_MAGNITUDE))
            magnitude = self.node("Max", [mean, floor], f"{prefix}/magnitude")
            ratio = self.node("Div", [by_check, magnitude], f"{prefix}/ratio")
            worst = self.reduce("ReduceMax", prefix, ratio, [0], 0)
            # ReduceMax skips NaN; a sum does not, and 0 x NaN or 0 x inf is NaN: a non-finite
            # value that reached a check makes the residual NaN.
            total = self.reduce("ReduceSum", prefix, total_rows, [0], 0)
            zero = self.constant(prefix, np.array(0.0))
            guard = self.node("Mul", [total, zero], f"{prefix}/non_finite")
            parts.append(self.node("Add", [worst, guard], f"{prefix}/residual"))
        if len(parts) == 1:
            self.node("Identity", parts, RESIDUAL_OUTPUT)
        else:
            self.node("Max", parts, RESIDUAL_OUTPUT)


@dataclass(frozen=True, slots=True)
class _Affine:
    """The checked tensor: `output` = W * x + b per output channel, W and b with the folded
    affine nodes (float64)."""

    output: str
    weight: np.ndarray
    bias: np.ndarray


@dataclass(frozen=True, slots=True)
class _Conv:
    """A Conv node's geometry, with the affine nodes after it folded into `affine`."""

    node: onnx.NodeProto
    x: str
    c_in: int
    height: int
    width: int
    out_h: int
    out_w: int
    kernel: list[int]
    strides: list[int]
    dilations: list[int]
    pads: list[int]
    groups: int
    affine: _Affine
    macs: int

    @property
    def name(self) -> str:
        return _name(self.node)


@dataclass(frozen=True, slots=True)
class _Site:
    """A checked tensor: the sum of the outputs of `convs` (one Conv, or both operands of a
    residual Add), plus the Add's other operand `skip` when that is not a checked Conv."""

    output: str
    convs: tuple[_Conv, ...]
    skip: str | None


def _conv_of(g: _GraphInfo, node: onnx.NodeProto, min_macs: int, min_fan_in: int) -> _Conv:
    if len(node.input) < 2 or node.input[1] not in g.constants:
        raise _Skip("its weights are not a constant")
    w = g.constants[node.input[1]].astype(np.float64)
    if w.ndim != 4:
        raise _Skip(f"only 2-D convolutions are checked, the weights have {w.ndim} axes")
    bias = np.zeros(w.shape[0])
    if len(node.input) > 2 and node.input[2]:
        if node.input[2] not in g.constants:
            raise _Skip("its bias is not a constant")
        bias = g.constants[node.input[2]].astype(np.float64).reshape(-1)
    x = node.input[0]
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    groups = int(attrs.get("group", 1))
    affine = _fold_affine(g, node.output[0], w, bias, channel_axis=1, rank=4)
    x_shape, y_shape = g.static_shape(x), g.static_shape(affine.output)
    if x_shape is None or y_shape is None or len(x_shape) != 3 or len(y_shape) != 3:
        raise _Skip("the shapes of its input and output are not known")
    c_in, height, width = x_shape
    c_out, out_h, out_w = y_shape
    kernel = [int(k) for k in attrs.get("kernel_shape", w.shape[2:])]
    strides = [int(s) for s in attrs.get("strides", [1, 1])]
    dilations = [int(d) for d in attrs.get("dilations", [1, 1])]
    pads = _explicit_pads(attrs, (height, width), (out_h, out_w), kernel, strides, dilations)
    fan_in = (c_in // groups) * kernel[0] * kernel[1]
    macs = c_out * fan_in * out_h * out_w
    if macs < min_macs:
        raise _Skip(f"{macs} multiply-adds, under min_macs {min_macs}", macs)
    if fan_in < min_fan_in:
        raise _Skip(f"{fan_in} products per output value, under min_fan_in {min_fan_in}", macs)
    return _Conv(
        node, x, c_in, height, width, out_h, out_w, kernel, strides, dilations, pads, groups,
        affine, macs,
    )  # fmt: skip


def _residual_add(g: _GraphInfo, tensor: str) -> onnx.NodeProto | None:
    """The Add that alone reads `tensor` and adds another computed tensor of its shape (a
    residual connection), or None."""
    readers = g.readers.get(tensor, [])
    if tensor in g.outputs or len(readers) != 1 or readers[0].op_type != "Add":
        return None
    add = readers[0]
    if add.domain not in ("", "ai.onnx") or len(add.input) != 2 or len(set(add.input)) != 2:
        return None
    other = add.input[1] if add.input[0] == tensor else add.input[0]
    if other in g.constants or g.static_shape(tensor) is None:
        return None
    if g.shape_dims(other) != g.shape_dims(tensor):
        return None
    return add


def _sites(g: _GraphInfo, convs: Sequence[_Conv]) -> list[_Site]:
    """The checked tensors of `convs`: a Conv's (affine) output, or the residual Add that
    reads it. onnxruntime fuses such an Add into the Conv of its first operand that has no
    other reader (the other operand is added in place): a check reading that Conv's own
    output would stop the fusion and change the rounding, so the check reads the sum."""
    ends = {conv.affine.output: conv for conv in convs}
    fusable = _single_reader_conv_ends(g)
    taken: set[str] = set()
    sites = []
    for conv in convs:
        if conv.name in taken:
            continue
        add = _residual_add(g, conv.affine.output)
        if add is None:
            sites.append(_Site(conv.affine.output, (conv,), None))
            continue
        other = add.input[1] if add.input[0] == conv.affine.output else add.input[0]
        partner = ends.get(other)
        if partner is not None and _residual_add(g, other) is add:
            # Conv + Conv (a downsampling shortcut): one check of the sum covers both.
            taken.add(partner.name)
            sites.append(_Site(add.output[0], (conv, partner), None))
        elif other == add.input[0] and other in fusable:
            # The Add goes into the other, unchecked Conv, which must keep its one reader;
            # this Conv's output is the operand added in place, which may have more.
            sites.append(_Site(conv.affine.output, (conv,), None))
        else:
            sites.append(_Site(add.output[0], (conv,), other))
    return sites


def _single_reader_conv_ends(g: _GraphInfo) -> set[str]:
    """The (affine) outputs of the Conv nodes with constant weights that have one reader."""
    ends = set()
    for node in g.model.graph.node:
        if node.op_type != "Conv" or len(node.input) < 2 or node.input[1] not in g.constants:
            continue
        weight = g.constants[node.input[1]]
        if weight.ndim != 4:
            continue
        end = _fold_affine(g, node.output[0], weight, np.zeros(weight.shape[0]), 1, 4).output
        if len(g.readers.get(end, [])) == 1 and end not in g.outputs:
            ends.add(end)
    return ends


def _keep_in_layout(out: onnx.ModelProto, b: _Builder, sites: Sequence[_Site]) -> None:
    """Give each activation of _CONV_ONLY_ACTIVATIONS that reads a checked tensor a depthwise
    1x1 Conv of unit weights to be fused into, which keeps onnxruntime's blocked layout: the
    same values (x * 1 is x), and the same pass over the tensor the activation makes alone."""
    channels = {site.output: site.convs[0].affine.weight.shape[0] for site in sites}
    for index in reversed(range(len(out.graph.node))):
        node = out.graph.node[index]
        if node.op_type not in _CONV_ONLY_ACTIVATIONS or node.domain not in ("", "ai.onnx"):
            continue
        if not node.input or node.input[0] not in channels:
            continue
        tensor = node.input[0]
        prefix = f"abft/{_name(node)}"
        ones = b.constant(prefix, np.ones((channels[tensor], 1, 1, 1)))
        unit = b.fresh(f"{prefix}/unit_conv")
        node.input[0] = unit
        conv = helper.make_node("Conv", [tensor, ones], [unit], name=unit, group=channels[tensor])
        out.graph.node.insert(index, conv)


def _check_site(
    b: _Builder, site: _Site, index: int, min_positions: int, groups: int
) -> list[CheckedLayer]:
    """Add the check of `site`: block checksums over channel groups (each channel alone when
    its channels do not fall into `groups` groups of two or more), else across channels."""
    first = site.convs[0]
    c_out, out_h, out_w = first.affine.weight.shape[0], first.out_h, first.out_w
    prefix = f"abft/{index}"
    block = next((f for f in _divisors(out_w) if out_h * f >= min_positions), None)
    if block is not None:
        n_groups = groups if 0 < groups < c_out and c_out % groups == 0 else c_out
        diff, sums = _spatial_checksums(b, prefix, site, block, n_groups)
        checksums, span = n_groups * (out_w // block), out_h * block * (c_out // n_groups)
        b.compare(prefix, diff, sums, checksums, 4, site.output)
    else:
        diff = _channel_checksums(b, prefix, site)
        checksums, span = out_h * out_w, c_out
        b.compare(prefix, diff, site.output, c_out * out_h * out_w, 4, site.output)
    return [
        CheckedLayer(conv.name, "Conv", site.output, conv.node.input[1], checksums, span, conv.macs)
        for conv in site.convs
    ]


def _input_rows(b: _Builder, prefix: str, conv: _Conv) -> tuple[str, int]:
    """rows[i] = the mean over output rows h of input row h*s_h + i (zero rows in the
    padding), and the number of such rows."""
    top = conv.pads[0]
    s_h = conv.strides[0]
    d_h = conv.dilations[0]
    # Rows the convolution reads below the input (negative: input rows it never reads).
    below = s_h * (conv.out_h - 1) + d_h * (conv.kernel[0] - 1) - top - (conv.height - 1)
    pad_below = max(below, 0)
    row_count = conv.height + top + pad_below - s_h * (conv.out_h - 1)
    if conv.x in b.graph.inputs:
        # A model input is in the plain layout, where a matrix product over the height is
        # several times faster than a pooling window as tall as the map (the stem's input).
        rows_of = np.zeros((row_count, conv.height))
        for i in range(row_count):
            for h in range(conv.out_h):
                if 0 <= h * s_h + i - top < conv.height:
                    rows_of[i, h * s_h + i - top] = 1.0 / conv.out_h
        rows = b.node("MatMul", [b.constant(prefix, rows_of), conv.x], f"{prefix}/row_means")
    elif s_h == 1 and top < conv.out_h and pad_below < conv.out_h:
        rows = b.node("AveragePool", [conv.x], f"{prefix}/row_means",
                      kernel_shape=[conv.out_h, 1], pads=[top, 0, pad_below, 0],
                      count_include_pad=1)  # fmt: skip
    else:
        ones = np.full((conv.c_in, 1, conv.out_h, 1), 1.0 / conv.out_h)
        rows = b.node("Conv", [conv.x, b.constant(prefix, ones)], f"{prefix}/row_means",
                      kernel_shape=[conv.out_h, 1], pads=[top, 0, pad_below, 0],
                      dilations=[s_h, 1], group=conv.c_in)  # fmt: skip
    return rows, row_count


def _column_means(b: _Builder, x: str, height: int) -> str:
    """The mean of every column of `x` over its `height` rows, computed once per tensor (the
    skip operand of a residual Add is usually the input of the block's first Conv)."""
    key = f"{x}/column_means"
    if key not in b.shared:
        b.shared[key] = b.node("AveragePool", [x], f"abft/{x}/column_means",
                               kernel_shape=[height, 1])  # fmt: skip
    return b.shared[key]


def _edge_rows(conv: _Conv) -> dict[int, list[int]] | None:
    """For a Conv that keeps the height (stride 1) and reads at most one padding row above
    and below: kernel rows by the input row they miss (0 or the last), else None."""
    top = conv.pads[0]
    d_h, k_h = conv.dilations[0], conv.kernel[0]
    if conv.strides[0] != 1 or conv.out_h != conv.height or conv.height < 2:
        return None
    offsets = [i * d_h - top for i in range(k_h)]
    if any(abs(o) > 1 for o in offsets):
        return None
    # Kernel row i reads input rows o..H-1+o: o = +1 misses row 0, o = -1 the last row.
    return {0: [i for i, o in enumerate(offsets) if o == 1],
            conv.height - 1: [i for i, o in enumerate(offsets) if o == -1]}  # fmt: skip


def _widened(weight: np.ndarray, block: int, s_w: int, d_w: int) -> np.ndarray:
    """The kernel whose convolution equals `weight`'s convolution of the means of `block`
    columns s_w apart: `block` columns wider."""
    k_w = weight.shape[3]
    kernel = np.zeros((*weight.shape[:3], (k_w - 1) * d_w + (block - 1) * s_w + 1))
    for kw in range(k_w):
        for j in range(block):
            kernel[..., kw * d_w + j * s_w] += weight[..., kw] / block
    return kernel


def _predicted(
    b: _Builder, prefix: str, conv: _Conv, block: int, weight: np.ndarray, bias: np.ndarray,
    groups: int, into: str,
) -> str:  # fmt: skip
    """`into` plus the convolution `weight` (grouped as the Conv, or dense with `groups` 0
    when it holds kernels summed over output channels) of the input's means over each block of
    output positions: the block sums the Conv's output should have."""
    left, right = conv.pads[1], conv.pads[3]
    s_w, d_w = conv.strides[1], conv.dilations[1]
    edges = _edge_rows(conv) if groups == 0 and conv.x not in b.graph.inputs else None
    if edges is not None:
        # The rows a kernel row reads are every row but at most the first or the last: one
        # pass for the column means, and a convolution of those two rows subtracts them.
        wide = _widened(weight, block, s_w, d_w)
        summed = b.constant(prefix, wide.sum(axis=2, keepdims=True))
        main = b.node(
            "Conv",
            [_column_means(b, conv.x, conv.height), summed, b.constant(prefix, bias)],
            f"{prefix}/checksum", kernel_shape=[1, wide.shape[3]], pads=[0, left, 0, right],
            strides=[1, s_w * block],
        )  # fmt: skip
        into = b.node("Add", [main, into], f"{prefix}/diff")
        if not any(edges.values()):
            return into
        edge = np.stack(
            [-wide[:, :, rows].sum(axis=2) / conv.height for rows in edges.values()], axis=2
        )
        missed = b.node(
            "Conv", [conv.x, b.constant(prefix, edge)], f"{prefix}/edge_rows",
            kernel_shape=[2, edge.shape[3]], pads=[0, left, 0, right],
            dilations=[conv.height - 1, 1], strides=[1, s_w * block],
        )  # fmt: skip
        return b.node("Add", [missed, into], f"{prefix}/diff")
    rows, row_count = _input_rows(b, prefix, conv)
    # One output row, whatever rows the convolution leaves unread at the bottom.
    stride_h = max(1, row_count)
    if block == 1:
        source, kernel, geometry = rows, weight, {"pads": [0, left, 0, right]}
        dilations, strides = conv.dilations, [stride_h, s_w]
    elif groups == 0:
        # Kernels summed over output channels are few: the mean over a block's columns goes
        # into them, as kernels `block` columns wider, instead of into a node.
        kernel = _widened(weight, block, s_w, d_w)
        source, geometry = rows, {"pads": [0, left, 0, right]}
        dilations, strides = [conv.dilations[0], 1], [stride_h, s_w * block]
    else:
        ones = np.full((conv.c_in, 1, 1, block), 1.0 / block)
        source = b.node("Conv", [rows, b.constant(prefix, ones)], f"{prefix}/block_means",
                        kernel_shape=[1, block], pads=[0, left, 0, right], dilations=[1, s_w],
                        group=conv.c_in)  # fmt: skip
        kernel, geometry = weight, {}
        dilations, strides = conv.dilations, [stride_h, s_w * block]
    predicted = b.node(
        "Conv",
        [source, b.constant(prefix, kernel), b.constant(prefix, bias)],
        f"{prefix}/checksum",
        kernel_shape=list(kernel.shape[2:]),
        dilations=dilations,
        strides=strides,
        group=max(groups, 1),
        **geometry,
    )
    return b.node("Add", [predicted, into], f"{prefix}/diff")


def _spatial_checksums(
    b: _Builder, prefix: str, site: _Site, block: int, groups: int
) -> tuple[str, str]:
    """Mean over each block of (all rows x `block` columns) of every output channel, summed
    over the channels of each of `groups` groups (channel c in group c mod groups), minus the
    convolution of the input's means over the block with the group's summed kernels:
    (difference, the output's block sums)."""
    first = site.convs[0]
    c_out, out_h = first.affine.weight.shape[0], first.out_h
    sums = b.node("AveragePool", [site.output], f"{prefix}/block_sums",
                  kernel_shape=[out_h, block], strides=[1, block])  # fmt: skip
    if site.skip is not None:
        # The skip operand's column means (already there when a checked Conv reads it), minus.
        minus = b.constant(prefix, np.full((c_out, 1, 1, block), -1.0 / block))
        columns = _column_means(b, site.skip, out_h)
        skip = b.node("Conv", [columns, minus], f"{prefix}/skip_sums", kernel_shape=[1, block],
                      strides=[1, block], group=c_out)  # fmt: skip
        sums = b.node("Add", [skip, sums], f"{prefix}/conv_sums")
    member = np.eye(c_out)
    if groups < c_out:
        member = np.zeros((groups, c_out))
        member[np.arange(c_out) % groups, np.arange(c_out)] = 1.0
        sums = b.node("Conv", [sums, b.constant(prefix, member[:, :, None, None])],
                      f"{prefix}/group_sums")  # fmt: skip
    diff = sums
    for conv in site.convs:
        weight, bias, conv_groups = conv.affine.weight, conv.affine.bias, conv.groups
        if groups < c_out:
            weight = np.tensordot(member, _ungrouped(weight, conv.groups), axes=1)
            bias, conv_groups = member @ bias, 0
        # Negated, so that the difference is an Add, which the optimiser fuses into the Conv.
        diff = _predicted(b, prefix, conv, block, -weight, -bias, conv_groups, diff)
    return diff, sums


def _channel_checksums(b: _Builder, prefix: str, site: _Site) -> str:
    """Mean over output channels at every position, minus one-channel convolutions with the
    mean kernels (and the skip operand's channel mean): the difference."""
    predicted = ""
    for conv in site.convs:
        full = _ungrouped(conv.affine.weight, conv.groups)
        kernel = full.mean(axis=0, keepdims=True)
        term = b.node(
            "Conv",
            [conv.x, b.constant(prefix, kernel), b.constant(prefix, [conv.affine.bias.mean()])],
            f"{prefix}/checksum",
            kernel_shape=conv.kernel,
            strides=conv.strides,
            dilations=conv.dilations,
            pads=conv.pads,
        )
        predicted = b.node("Add", [term, predicted], f"{prefix}/predicted") if predicted else term
    if site.skip is not None:
        c_out = site.convs[0].affine.weight.shape[0]
        mean = b.constant(prefix, np.full((1, c_out, 1, 1), 1.0 / c_out))
        term = b.node("Conv", [site.skip, mean], f"{prefix}/skip_sums")
        predicted = b.node("Add", [term, predicted], f"{prefix}/predicted")
    sums = b.reduce("ReduceMean", f"{prefix}/channel", site.output, [1], 1)
    return b.node("Sub", [sums, predicted], f"{prefix}/diff")


def _check_matmul(
    b: _Builder, node: onnx.NodeProto, index: int, min_macs: int, min_fan_in: int
) -> CheckedLayer:
    g = b.graph
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    if len(node.input) < 2 or node.input[1] not in g.constants:
        raise _Skip("its second operand (the weights) is not a constant")
    w = g.constants[node.input[1]].astype(np.float64)
    if w.ndim != 2:
        raise _Skip(f"the weights have {w.ndim} axes, expected 2")
    bias = np.zeros(w.shape[1] if node.op_type == "MatMul" else 0)
    if node.op_type == "Gemm":
        if attrs.get("transA", 0):
            raise _Skip("transA=1 (the input is transposed)")
        w = (w.T if attrs.get("transB", 0) else w) * float(attrs.get("alpha", 1.0))
        bias = np.zeros(w.shape[1])
        if len(node.input) > 2 and node.input[2]:
            c = g.constants.get(node.input[2])
            if c is None or c.size not in (1, w.shape[1]) or c.ndim > 2 or c.shape[:-1] > (1,):
                raise _Skip("its C input is not a constant row or scalar")
            bias = np.broadcast_to(c.astype(np.float64).reshape(-1), w.shape[1]) * float(
                attrs.get("beta", 1.0)
            )
    x = node.input[0]
    if node.op_type == "Gemm":
        rank, rows = 2, 1
    else:
        x_shape = g.static_shape(x)
        if x_shape is None or not x_shape:
            raise _Skip("the shape of its input is not known, or it is a vector")
        rank, rows = len(x_shape) + 1, int(np.prod(x_shape[:-1]))
    # y = x @ w + bias; the affine nodes act per column: fold them into w's transpose.
    affine = _fold_affine(g, node.output[0], w.T, bias, channel_axis=rank - 1, rank=rank)
    macs = rows * w.shape[0] * w.shape[1]
    if macs < min_macs:
        raise _Skip(f"{macs} multiply-adds, under min_macs {min_macs}", macs)
    if w.shape[0] < min_fan_in:
        fan_in = w.shape[0]
        raise _Skip(f"{fan_in} products per output value, under min_fan_in {min_fan_in}", macs)
    prefix = f"abft/{index}"
    column = affine.weight.mean(axis=0).reshape(-1, 1)
    product = b.node("MatMul", [x, b.constant(prefix, column)], f"{prefix}/product")
    predicted = b.node("Add", [product, b.constant(prefix, [affine.bias.mean()])],
                       f"{prefix}/checksum")  # fmt: skip
    sums = b.reduce("ReduceMean", f"{prefix}/row", affine.output, [rank - 1], 1)
    diff = b.node("Sub", [sums, predicted], f"{prefix}/diff")
    b.compare(prefix, diff, affine.output, rows * w.shape[1], rank, affine.output)
    return CheckedLayer(
        _name(node), node.op_type, affine.output, node.input[1], rows, w.shape[1], macs
    )


def _fold_affine(
    g: _GraphInfo, output: str, weight: np.ndarray, bias: np.ndarray, channel_axis: int, rank: int
) -> _Affine:
    """Follow the per-channel affine nodes that read `output` alone (the optimiser fuses them
    into the node), folding them into weight [C, ...] and bias [C]."""
    while output not in g.outputs:
        readers = g.readers.get(output, [])
        if len(readers) != 1 or readers[0].op_type not in _AFFINE_OPS:
            break
        node = readers[0]
        scale_shift = _channel_affine(g, node, output, weight.shape[0], channel_axis, rank)
        if scale_shift is None:
            break
        scale, shift = scale_shift
        weight = weight * scale.reshape((-1,) + (1,) * (weight.ndim - 1))
        bias = bias * scale + shift
        output = node.output[0]
    return _Affine(output, weight, bias)


def _channel_affine(
    g: _GraphInfo, node: onnx.NodeProto, x: str, channels: int, channel_axis: int, rank: int
) -> tuple[np.ndarray, np.ndarray] | None:
    """(scale, shift) per channel of an affine node reading `x`, None when it is not one."""
    if node.op_type == "BatchNormalization":
        if channel_axis != 1:  # it normalises axis 1, not the columns of a matrix product
            return None
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        names = node.input[1:5]
        if len(node.output) != 1 or attrs.get("training_mode", 0):
            return None
        if len(names) != 4 or any(name not in g.constants for name in names):
            return None
        gamma, beta, mean, var = (g.constants[n].astype(np.float64).reshape(-1) for n in names)
        scale = gamma / np.sqrt(var + float(attrs.get("epsilon", 1e-5)))
        return scale, beta - mean * scale
    other = node.input[1] if node.input[0] == x else node.input[0]
    if other not in g.constants or list(node.input).count(x) != 1:
        return None
    value = g.constants[other].astype(np.float64)
    if value.ndim > rank:
        return None
    value = value.reshape((1,) * (rank - value.ndim) + value.shape)
    # Broadcast over every axis but the channel axis: a per-channel constant (or a scalar).
    if any(n != 1 for axis, n in enumerate(value.shape) if axis != channel_axis):
        return None
    per_channel = np.broadcast_to(value.reshape(-1), channels).copy()
    if value.shape[channel_axis] not in (1, channels):
        return None
    if node.op_type == "Mul":
        return per_channel, np.zeros(channels)
    return np.ones(channels), per_channel


def _ungrouped(weight: np.ndarray, groups: int) -> np.ndarray:
    """A grouped convolution's weights [C_out, C_in/g, kh, kw] as dense ones [C_out, C_in, ...]."""
    c_out, c_in_group = weight.shape[:2]
    full = np.zeros((c_out, c_in_group * groups, *weight.shape[2:]))
    per_group = c_out // groups
    for c in range(c_out):
        start = (c // per_group) * c_in_group
        full[c, start : start + c_in_group] = weight[c]
    return full


def _explicit_pads(
    attrs: Mapping[str, Any],
    size: tuple[int, int],
    out: tuple[int, int],
    kernel: list[int],
    strides: list[int],
    dilations: list[int],
) -> list[int]:
    """The pads [top, left, bottom, right] a Conv uses, auto_pad resolved."""
    auto = attrs.get("auto_pad", b"NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else str(auto)
    if auto in ("NOTSET", ""):
        return [int(p) for p in attrs.get("pads", [0, 0, 0, 0])]
    if auto == "VALID":
        return [0, 0, 0, 0]
    begin, end = [], []
    for axis in range(2):
        total = max(
            0,
            (out[axis] - 1) * strides[axis] + (kernel[axis] - 1) * dilations[axis] + 1 - size[axis],
        )
        first = total // 2 if auto == "SAME_UPPER" else total - total // 2
        begin.append(first)
        end.append(total - first)
    return [*begin, *end]


def _name(node: onnx.NodeProto) -> str:
    return node.name or node.output[0]


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


# --- evaluation ----------------------------------------------------------------------------


def _graph_inputs(model: onnx.ModelProto) -> list[onnx.ValueInfoProto]:
    initializers = {t.name for t in model.graph.initializer}
    return [v for v in model.graph.input if v.name not in initializers]


def _input_shape(value: onnx.ValueInfoProto, batch: int) -> tuple[int, ...]:
    tensor_type = value.type.tensor_type
    if tensor_type.elem_type != TensorProto.FLOAT:
        raise AbftError(f"input {value.name}: only float32 inputs can be generated")
    shape = []
    for axis, dim in enumerate(tensor_type.shape.dim):
        if dim.HasField("dim_value"):
            shape.append(dim.dim_value)
        elif axis == 0:
            shape.append(batch)
        else:
            raise AbftError(f"input {value.name} has a dynamic axis {axis} besides the batch")
    return tuple(shape)


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


def injection_runner(
    abft: AbftModel, make_runner: RunnerFactory, feeds: Mapping[str, np.ndarray], target: str
) -> tuple[Runner, list[np.ndarray], np.ndarray]:
    """A runner of `abft.model` with a fault input at `target` (see `with_fault_input`), its
    fault-free outputs on `feeds` with the target's values appended last, and a zero fault."""
    model = with_fault_input(abft.model, target)
    index = [o.name for o in model.graph.output].index(target)
    dims = _GraphInfo(abft.model).shape_dims(target) or []
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
        scale = max(float(np.abs(b).max(initial=0.0)), _TINY_MAGNITUDE)
        worst = max(worst, float(np.abs(a - b).max(initial=0.0)) / scale)
    return worst
