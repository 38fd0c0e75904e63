"""Which layers can be checked, and what a check of each must cover: a Conv's geometry, the
per-channel affine nodes folded into it, and the residual Add whose sum a check reads.

A Conv, Gemm or MatMul with constant weights and known shapes can be checked; grouped and
depthwise convolutions like the others. A per-channel affine node after a Conv
(BatchNormalization, Mul or Add of a constant), or a per-column one after a Gemm or MatMul, is
folded into the checksum and the check reads its output: tapping the Conv's own output would
stop onnxruntime's optimiser from fusing the BatchNormalization into the Conv, and change the
rounding. A residual Add that alone reads a Conv's output is added inside the Conv of its first
such operand (the other operand is the buffer the Conv accumulates into), which a reader of the
Conv's output would stop: the check reads the sum and subtracts the other operand's column means
(those the next Conv's check takes of the same tensor, a ResNet block's input), or, when both
operands are Convs (a downsampling shortcut), one check of the sum covers both. An Add that
goes into an unchecked Conv leaves the checked one to be checked on its own output.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
from onnx import helper

from flight.protection.abft.graph_info import GraphInfo, node_name

_AFFINE_OPS = ("BatchNormalization", "Mul", "Add")


class Skip(Exception):
    """A node that cannot be checked; the message says why."""

    def __init__(self, reason: str, macs: int = 0) -> None:
        super().__init__(reason)
        self.macs = macs


@dataclass(frozen=True, slots=True)
class Affine:
    """The checked tensor: `output` = W * x + b per output channel, W and b with the folded
    affine nodes (float64)."""

    output: str
    weight: np.ndarray
    bias: np.ndarray


@dataclass(frozen=True, slots=True)
class Conv:
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
    affine: Affine
    macs: int

    @property
    def name(self) -> str:
        """The Conv node's name."""
        return node_name(self.node)


@dataclass(frozen=True, slots=True)
class Site:
    """A checked tensor: the sum of the outputs of `convs` (one Conv, or both operands of a
    residual Add), plus the Add's other operand `skip` when that is not a checked Conv."""

    output: str
    convs: tuple[Conv, ...]
    skip: str | None


def conv_of(g: GraphInfo, node: onnx.NodeProto, min_macs: int, min_fan_in: int) -> Conv:
    """The geometry of Conv `node`; raises Skip when it cannot be checked or a cost limit
    leaves it out."""
    if len(node.input) < 2 or node.input[1] not in g.constants:
        raise Skip("its weights are not a constant")
    w = g.constants[node.input[1]].astype(np.float64)
    if w.ndim != 4:
        raise Skip(f"only 2-D convolutions are checked, the weights have {w.ndim} axes")
    bias = np.zeros(w.shape[0])
    if len(node.input) > 2 and node.input[2]:
        if node.input[2] not in g.constants:
            raise Skip("its bias is not a constant")
        bias = g.constants[node.input[2]].astype(np.float64).reshape(-1)
    x = node.input[0]
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    groups = int(attrs.get("group", 1))
    affine = fold_affine(g, node.output[0], w, bias, channel_axis=1, rank=4)
    x_shape, y_shape = g.static_shape(x), g.static_shape(affine.output)
    if x_shape is None or y_shape is None or len(x_shape) != 3 or len(y_shape) != 3:
        raise Skip("the shapes of its input and output are not known")
    c_in, height, width = x_shape
    c_out, out_h, out_w = y_shape
    kernel = [int(k) for k in attrs.get("kernel_shape", w.shape[2:])]
    strides = [int(s) for s in attrs.get("strides", [1, 1])]
    dilations = [int(d) for d in attrs.get("dilations", [1, 1])]
    pads = _explicit_pads(attrs, (height, width), (out_h, out_w), kernel, strides, dilations)
    fan_in = (c_in // groups) * kernel[0] * kernel[1]
    macs = c_out * fan_in * out_h * out_w
    within_cost_limits(macs, fan_in, min_macs, min_fan_in)
    return Conv(
        node, x, c_in, height, width, out_h, out_w, kernel, strides, dilations, pads, groups,
        affine, macs,
    )  # fmt: skip


def within_cost_limits(macs: int, fan_in: int, min_macs: int, min_fan_in: int) -> None:
    """Raise Skip when a layer of `macs` multiply-adds per batch item, `fan_in` products per
    output value, is under a cost limit of add_checksums."""
    if macs < min_macs:
        raise Skip(f"{macs} multiply-adds, under min_macs {min_macs}", macs)
    if fan_in < min_fan_in:
        raise Skip(f"{fan_in} products per output value, under min_fan_in {min_fan_in}", macs)


def sites(g: GraphInfo, convs: Sequence[Conv]) -> list[Site]:
    """The checked tensors of `convs`: a Conv's (affine) output, or the residual Add that
    reads it. onnxruntime fuses such an Add into the Conv of its first operand that has no
    other reader (the other operand is added in place): a check reading that Conv's own
    output would stop the fusion and change the rounding, so the check reads the sum."""
    ends = {conv.affine.output: conv for conv in convs}
    fusable = _single_reader_conv_ends(g)
    taken: set[str] = set()
    found = []
    for conv in convs:
        if conv.name in taken:
            continue
        add = _residual_add(g, conv.affine.output)
        if add is None:
            found.append(Site(conv.affine.output, (conv,), None))
            continue
        other = add.input[1] if add.input[0] == conv.affine.output else add.input[0]
        partner = ends.get(other)
        if partner is not None and _residual_add(g, other) is add:
            # Conv + Conv (a downsampling shortcut): one check of the sum covers both.
            taken.add(partner.name)
            found.append(Site(add.output[0], (conv, partner), None))
        elif other == add.input[0] and other in fusable:
            # The Add goes into the other, unchecked Conv, which must keep its one reader;
            # this Conv's output is the operand added in place, which may have more.
            found.append(Site(conv.affine.output, (conv,), None))
        else:
            found.append(Site(add.output[0], (conv,), other))
    return found


def fold_affine(
    g: GraphInfo, output: str, weight: np.ndarray, bias: np.ndarray, channel_axis: int, rank: int
) -> Affine:
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
    return Affine(output, weight, bias)


def _residual_add(g: GraphInfo, tensor: str) -> onnx.NodeProto | None:
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


def _single_reader_conv_ends(g: GraphInfo) -> set[str]:
    """The (affine) outputs of the Conv nodes with constant weights that have one reader."""
    ends = set()
    for node in g.model.graph.node:
        if node.op_type != "Conv" or len(node.input) < 2 or node.input[1] not in g.constants:
            continue
        weight = g.constants[node.input[1]]
        if weight.ndim != 4:
            continue
        end = fold_affine(g, node.output[0], weight, np.zeros(weight.shape[0]), 1, 4).output
        if len(g.readers.get(end, [])) == 1 and end not in g.outputs:
            ends.add(end)
    return ends


def _channel_affine(
    g: GraphInfo, node: onnx.NodeProto, x: str, channels: int, channel_axis: int, rank: int
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
