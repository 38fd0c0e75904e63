"""Algorithm-based fault tolerance (ABFT): checksums of Conv, Gemm and MatMul nodes added to a
model as an ONNX graph transformation, so that they run on any provider.

By linearity, a sum of a layer's outputs equals the layer applied to a sum of its inputs. For a
Conv the checksums are spatial: the mean over blocks of output positions (every output row
times `f` adjacent columns) of each output channel, compared with the convolution of the
input's row means, a convolution whose output is one row high and so costs 1/(rows * f) of the
layer. A Conv whose output has too few positions for a block (the 1x1 maps of a
squeeze-and-excitation) and every Gemm or MatMul are checked across channels instead: the mean
of a position's (or a matrix row's) outputs against the same product with the mean of the weight
columns. Grouped and depthwise convolutions are checked like the others (the checksum
convolution keeps their groups).

Placement follows onnxruntime's CPU optimiser, so the original outputs stay bit for bit what
the original model gives. A per-channel affine node after a Conv (BatchNormalization, Mul or
Add of a constant), or a per-column one after a Gemm or MatMul, is folded into the checksum and
the check reads its output: tapping the Conv's own output would stop the optimiser from fusing
the BatchNormalization into the Conv, and change the rounding. The check's extra reader of the
tapped tensor does stop the fusion of a following activation into the Conv; the activation then
runs as its own node, on the same values. The pooling, the checksum convolution and the
comparison stay in the blocked-channel (NCHWc) layout the optimiser picks for convolutions:
Abs and the reductions run on the small checksum tensors only. Measured on the demo CNN (CPU,
ORT_ENABLE_ALL, one thread), this costs 12 to 15 % of a run; a one-channel checksum convolution
with a ReduceSum across channels cost 47 % (both leave the NCHWc layout), eight group checksum
channels 18 %, and whole-map sums 10 % but with rounding noise some 100 times larger.

Every checked layer gives, per batch item, the largest |checksum difference| divided by the mean
magnitude of the compared sums (mean |output| for the channel checksums), so that one threshold
serves every layer and every input scale; `abft_residual` is the largest over the layers, one
value per batch item, NaN when a non-finite value reached a check (which `check` counts as a
fault: onnxruntime's ReduceMax skips NaN, the mean and the division do not).

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
#: A checksum of a Conv sums at least this many output positions (the cost of its convolution
#: is about 1/MIN_POSITIONS of the layer's); smaller maps are checked across channels.
DEFAULT_MIN_POSITIONS = 32
#: Threshold = margin x the largest healthy residual of the calibration: 8 is three bits of
#: headroom over the rounding noise seen, for inputs unlike the calibration's.
DEFAULT_MARGIN = 8.0
# Floor of a layer's magnitude, so that an all-zero layer (a black image) gives 0, not 0/0.
_TINY_MAGNITUDE = 1e-30
# The default domain's opset from which Reduce* take their axes as an input, not an attribute.
_AXES_AS_INPUT_OPSET = 18
_AFFINE_OPS = ("BatchNormalization", "Mul", "Add")

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
    """A Conv, Gemm or MatMul left unchecked, and why."""

    node: str
    op_type: str
    reason: str


@dataclass(frozen=True, slots=True)
class AbftModel:
    """A model with checksums: its original outputs, then `abft_residual`."""

    model: onnx.ModelProto
    layers: tuple[CheckedLayer, ...]
    skipped: tuple[SkippedNode, ...]

    @property
    def residual_index(self) -> int:
        return [o.name for o in self.model.graph.output].index(RESIDUAL_OUTPUT)

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
) -> AbftModel:
    """The model with a checksum for every Conv, Gemm and MatMul with constant weights whose
    shapes are known, and the output `abft_residual`; nodes under `min_macs` multiply-adds per
    batch item are left unchecked (their checks would cost more than their faults)."""
    if min_positions < 1:
        raise AbftError(f"min_positions: expected 1 or more, found {min_positions}")
    if any(o.name == RESIDUAL_OUTPUT for o in model.graph.output):
        raise AbftError(f"the model already has an output {RESIDUAL_OUTPUT}")
    graph = _GraphInfo(model)
    builder = _Builder(graph)
    layers: list[CheckedLayer] = []
    skipped: list[SkippedNode] = []
    residuals: list[str] = []
    for node in list(model.graph.node):
        if node.op_type not in ("Conv", "Gemm", "MatMul") or node.domain not in ("", "ai.onnx"):
            continue
        name = node.name or node.output[0]
        try:
            if node.op_type == "Conv":
                layer, residual = _check_conv(builder, node, len(layers), min_positions, min_macs)
            else:
                layer, residual = _check_matmul(builder, node, len(layers), min_macs)
        except _Skip as skip:
            skipped.append(SkippedNode(name, node.op_type, str(skip)))
            continue
        layers.append(layer)
        residuals.append(residual)
    if not layers:
        reasons = "; ".join(f"{s.node}: {s.reason}" for s in skipped) or "none in the graph"
        raise AbftError(f"no Conv, Gemm or MatMul node can be checked ({reasons})")
    builder.node("Max", residuals, RESIDUAL_OUTPUT)
    out = copy.deepcopy(model)
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
        self._names: set[str] = set()

    def _fresh(self, base: str) -> str:
        name = base
        n = 1
        while name in self._names or name in self.graph.names:
            n += 1
            name = f"{base}_{n}"
        self._names.add(name)
        return name

    def constant(self, prefix: str, array: ArrayLike, dtype: type = np.float32) -> str:
        name = self._fresh(f"{prefix}/const")
        self.initializers.append(numpy_helper.from_array(np.asarray(array, dtype=dtype), name))
        return name

    def node(self, op: str, inputs: Sequence[str], output: str, **attrs: Any) -> str:
        name = output if output == RESIDUAL_OUTPUT else self._fresh(output)
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

    def residual(self, prefix: str, diff: str, magnitude_of: str, rank: int, tensor: str) -> str:
        """Per batch item (or over everything): max |diff| / max(mean |magnitude_of|, tiny)."""
        per_item = self.graph.batch_aligned(tensor)
        self.per_item |= per_item
        axes = list(range(1, rank)) if per_item else None
        largest_diff = self.reduce(
            "ReduceMax", prefix, self.node("Abs", [diff], f"{prefix}/abs_diff"), axes, 0
        )
        mean = self.reduce(
            "ReduceMean", prefix, self.node("Abs", [magnitude_of], f"{prefix}/abs_sums"), axes, 0
        )
        floor = self.constant(prefix, np.array(_TINY_MAGNITUDE))
        magnitude = self.node("Max", [mean, floor], f"{prefix}/magnitude")
        return self.node("Div", [largest_diff, magnitude], f"{prefix}/residual")


@dataclass(frozen=True, slots=True)
class _Affine:
    """The checked tensor: `output` = W * x + b per output channel, W and b with the folded
    affine nodes (float64)."""

    output: str
    weight: np.ndarray
    bias: np.ndarray


def _check_conv(
    b: _Builder, node: onnx.NodeProto, index: int, min_positions: int, min_macs: int
) -> tuple[CheckedLayer, str]:
    g = b.graph
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
    macs = c_out * (c_in // groups) * kernel[0] * kernel[1] * out_h * out_w
    if macs < min_macs:
        raise _Skip(f"{macs} multiply-adds, under min_macs {min_macs}")
    prefix = f"abft/{index}"
    block = next((f for f in _divisors(out_w) if out_h * f >= min_positions), None)
    conv = _Conv(x, c_in, height, width, out_h, out_w, kernel, strides, dilations, pads, groups)
    if block is not None:
        diff, sums = _spatial_checksums(b, prefix, conv, affine, block)
        checksums, span, magnitude_of = c_out * out_w // block, out_h * block, sums
    else:
        diff = _channel_checksums(b, prefix, conv, affine)
        checksums, span, magnitude_of = out_h * out_w, c_out, affine.output
    residual = b.residual(prefix, diff, magnitude_of, 4, affine.output)
    name = node.name or node.output[0]
    return CheckedLayer(name, "Conv", affine.output, node.input[1], checksums, span, macs), residual


@dataclass(frozen=True, slots=True)
class _Conv:
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


def _spatial_checksums(
    b: _Builder, prefix: str, conv: _Conv, affine: _Affine, block: int
) -> tuple[str, str]:
    """Mean over each block of (all rows x `block` columns) of every output channel, minus the
    convolution of the input's row means: (difference, the output's block means)."""
    top, left, _, right = conv.pads
    s_h, s_w = conv.strides
    d_h = conv.dilations[0]
    # Rows the convolution reads below the input (negative: input rows it never reads).
    below = s_h * (conv.out_h - 1) + d_h * (conv.kernel[0] - 1) - top - (conv.height - 1)
    pad_below = max(below, 0)
    # rows[i] = mean over output rows h of input row h*s_h + i (zero rows in the padding).
    if conv.x in b.graph.inputs:
        # A model input is in the plain layout, where a matrix product over the height is
        # several times faster than a pooling window as tall as the map (the stem's input).
        rows_of = np.zeros((conv.height + top + pad_below - s_h * (conv.out_h - 1), conv.height))
        for i in range(rows_of.shape[0]):
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
    row_count = conv.height + top + pad_below - s_h * (conv.out_h - 1)
    # One output row, whatever rows the convolution leaves unread at the bottom.
    stride_h = max(1, row_count)
    if block == 1:
        source, widths = rows, {"pads": [0, left, 0, right], "strides": [stride_h, s_w]}
    else:
        ones = np.full((conv.c_in, 1, 1, block), 1.0 / block)
        source = b.node("Conv", [rows, b.constant(prefix, ones)], f"{prefix}/block_means",
                        kernel_shape=[1, block], pads=[0, left, 0, right], dilations=[1, s_w],
                        group=conv.c_in)  # fmt: skip
        widths = {"strides": [stride_h, s_w * block]}
    # Negated, so that the difference is an Add, which the optimiser fuses into the Conv.
    predicted = b.node(
        "Conv",
        [source, b.constant(prefix, -affine.weight), b.constant(prefix, -affine.bias)],
        f"{prefix}/checksum",
        kernel_shape=conv.kernel,
        dilations=conv.dilations,
        group=conv.groups,
        **widths,
    )
    sums = b.node("AveragePool", [affine.output], f"{prefix}/block_sums",
                  kernel_shape=[conv.out_h, block], strides=[1, block])  # fmt: skip
    return b.node("Add", [sums, predicted], f"{prefix}/diff"), sums


def _channel_checksums(b: _Builder, prefix: str, conv: _Conv, affine: _Affine) -> str:
    """Mean over output channels at every position, minus a one-channel convolution with the
    mean kernel: the difference."""
    full = _ungrouped(affine.weight, conv.groups)
    kernel = full.mean(axis=0, keepdims=True)
    top, left, bottom, right = conv.pads
    predicted = b.node(
        "Conv",
        [conv.x, b.constant(prefix, kernel), b.constant(prefix, [affine.bias.mean()])],
        f"{prefix}/checksum",
        kernel_shape=conv.kernel,
        strides=conv.strides,
        dilations=conv.dilations,
        pads=[top, left, bottom, right],
    )
    sums = b.reduce("ReduceMean", f"{prefix}/channel", affine.output, [1], 1)
    return b.node("Sub", [sums, predicted], f"{prefix}/diff")


def _check_matmul(
    b: _Builder, node: onnx.NodeProto, index: int, min_macs: int
) -> tuple[CheckedLayer, str]:
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
        raise _Skip(f"{macs} multiply-adds, under min_macs {min_macs}")
    prefix = f"abft/{index}"
    column = affine.weight.mean(axis=0).reshape(-1, 1)
    product = b.node("MatMul", [x, b.constant(prefix, column)], f"{prefix}/product")
    predicted = b.node("Add", [product, b.constant(prefix, [affine.bias.mean()])],
                       f"{prefix}/checksum")  # fmt: skip
    sums = b.reduce("ReduceMean", f"{prefix}/row", affine.output, [rank - 1], 1)
    diff = b.node("Sub", [sums, predicted], f"{prefix}/diff")
    residual = b.residual(prefix, diff, affine.output, rank, affine.output)
    name = node.name or node.output[0]
    layer = CheckedLayer(name, node.op_type, affine.output, node.input[1], rows, w.shape[1], macs)
    return layer, residual


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
