"""The graph transformation: a model's checked layers found, their checks added in graph order,
and the original outputs kept bit for bit what the original model gives.

Placement follows onnxruntime's CPU optimiser, so the original outputs stay bit for bit what
the original model gives, in a plain session and in the payload's (optimised once, the
optimised graph loaded with optimisation and prepacking off): see layer_analysis for the affine
nodes and residual Adds a check reads past. The check's extra reader of the tapped tensor does
stop the fusion of a following activation into the Conv; the activation then runs as its own
node, on the same values. Relu, Sigmoid, Tanh and HardSigmoid run alone in the blocked-channel
(NCHWc) layout the optimiser picks for convolutions; Clip (ReLU6) and LeakyRelu do not, so they
read a depthwise 1x1 Conv of unit weights inserted for them to be fused into (x * 1 is x). The
pooling, the checksum convolutions and the comparison stay in that layout: Abs and the
reductions run on the small checksum tensors only.

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
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper

from flight.protection.abft.check_builder import Builder
from flight.protection.abft.checked_model import (
    RESIDUAL_OUTPUT,
    AbftError,
    AbftModel,
    CheckedLayer,
    SkippedNode,
)
from flight.protection.abft.conv_checksums import check_site
from flight.protection.abft.graph_info import GraphInfo, node_name
from flight.protection.abft.layer_analysis import Conv, Site, Skip, conv_of, sites
from flight.protection.abft.matmul_checksums import check_matmul

#: A block checksum of a Conv sums at least this many output positions: whole columns, and as
#: many adjacent columns as that takes; a map with fewer positions is checked across channels.
#: With channel groups one column suffices (the checksum convolution costs about 1/(rows x
#: channels per group) of the layer); each channel alone (groups 0) wants 32 or more.
DEFAULT_MIN_POSITIONS = 1
#: A Conv's block checksums sum its output channels in this many groups (channel c in group
#: c mod 8): the checksum convolution reads 8 summed kernels instead of one per channel, which
#: on a small map cost as much to stream as the layer's own weights.
DEFAULT_GROUPS = 8
# Activations onnxruntime fuses into a Conv but does not run on their own in its blocked
# (NCHWc) layout: once a check reads the Conv's output, it would convert the tensor to the
# plain layout and back around them (two passes more).
_CONV_ONLY_ACTIVATIONS = ("Clip", "LeakyRelu")


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
    graph = GraphInfo(model)
    builder = Builder(graph)
    skipped: list[SkippedNode] = []
    convs: list[Conv] = []
    matmuls: list[onnx.NodeProto] = []
    position: dict[str, int] = {}
    for index, node in enumerate(model.graph.node):
        if node.op_type not in ("Conv", "Gemm", "MatMul") or node.domain not in ("", "ai.onnx"):
            continue
        name = node_name(node)
        position[name] = index
        try:
            if node.op_type == "Conv":
                convs.append(conv_of(graph, node, min_macs, min_fan_in))
            else:
                matmuls.append(node)
        except Skip as skip:
            skipped.append(SkippedNode(name, node.op_type, str(skip), skip.macs))
    conv_sites = sites(graph, convs)
    checks: list[Site | onnx.NodeProto] = [*conv_sites, *matmuls]
    # In graph order: the payload's sessions then run each check right after its layer.
    checks.sort(key=lambda c: position[c.convs[0].name if isinstance(c, Site) else node_name(c)])
    layers: list[CheckedLayer] = []
    for index, item in enumerate(checks):
        try:
            if isinstance(item, Site):
                layers.extend(check_site(builder, item, index, min_positions, groups))
            else:
                layers.append(check_matmul(builder, item, index, min_macs, min_fan_in))
        except Skip as skip:
            assert isinstance(item, onnx.NodeProto)
            skipped.append(SkippedNode(node_name(item), item.op_type, str(skip), skip.macs))
    if not layers:
        reasons = "; ".join(f"{s.node}: {s.reason}" for s in skipped) or "none in the graph"
        raise AbftError(f"no Conv, Gemm or MatMul node can be checked ({reasons})")
    builder.finish()
    out = copy.deepcopy(model)
    _keep_in_layout(out, builder, conv_sites)
    out.graph.node.extend(builder.nodes)
    out.graph.initializer.extend(builder.initializers)
    batch = graph.batch_dim if builder.per_item else None
    out.graph.output.append(
        helper.make_tensor_value_info(
            RESIDUAL_OUTPUT, TensorProto.FLOAT, [] if batch is None else [batch]
        )
    )
    return AbftModel(out, tuple(layers), tuple(skipped))


def _keep_in_layout(out: onnx.ModelProto, b: Builder, sites: Sequence[Site]) -> None:
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
        prefix = f"abft/{node_name(node)}"
        ones = b.constant(prefix, np.ones((channels[tensor], 1, 1, 1)))
        unit = b.fresh(f"{prefix}/unit_conv")
        node.input[0] = unit
        conv = helper.make_node("Conv", [tensor, ones], [unit], name=unit, group=channels[tensor])
        out.graph.node.insert(index, conv)
