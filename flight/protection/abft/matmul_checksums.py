"""The checksum of a Gemm or MatMul: the mean of a matrix row's outputs against the same product
with the mean of the weight columns."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper

from flight.protection.abft.check_builder import Builder
from flight.protection.abft.checked_model import CheckedLayer
from flight.protection.abft.graph_info import node_name
from flight.protection.abft.layer_analysis import Skip, fold_affine, within_cost_limits


def check_matmul(
    b: Builder, node: onnx.NodeProto, index: int, min_macs: int, min_fan_in: int
) -> CheckedLayer:
    """Add the check of Gemm or MatMul `node`; raises Skip when it cannot be checked or a cost
    limit leaves it out."""
    g = b.graph
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    if len(node.input) < 2 or node.input[1] not in g.constants:
        raise Skip("its second operand (the weights) is not a constant")
    w = g.constants[node.input[1]].astype(np.float64)
    if w.ndim != 2:
        raise Skip(f"the weights have {w.ndim} axes, expected 2")
    bias = np.zeros(w.shape[1] if node.op_type == "MatMul" else 0)
    if node.op_type == "Gemm":
        if attrs.get("transA", 0):
            raise Skip("transA=1 (the input is transposed)")
        w = (w.T if attrs.get("transB", 0) else w) * float(attrs.get("alpha", 1.0))
        bias = np.zeros(w.shape[1])
        if len(node.input) > 2 and node.input[2]:
            c = g.constants.get(node.input[2])
            if c is None or c.size not in (1, w.shape[1]) or c.ndim > 2 or c.shape[:-1] > (1,):
                raise Skip("its C input is not a constant row or scalar")
            bias = np.broadcast_to(c.astype(np.float64).reshape(-1), w.shape[1]) * float(
                attrs.get("beta", 1.0)
            )
    x = node.input[0]
    if node.op_type == "Gemm":
        rank, rows = 2, 1
    else:
        x_shape = g.static_shape(x)
        if x_shape is None or not x_shape:
            raise Skip("the shape of its input is not known, or it is a vector")
        rank, rows = len(x_shape) + 1, int(np.prod(x_shape[:-1]))
    # y = x @ w + bias; the affine nodes act per column: fold them into w's transpose.
    affine = fold_affine(g, node.output[0], w.T, bias, channel_axis=rank - 1, rank=rank)
    macs = rows * w.shape[0] * w.shape[1]
    within_cost_limits(macs, w.shape[0], min_macs, min_fan_in)
    prefix = f"abft/{index}"
    column = affine.weight.mean(axis=0).reshape(-1, 1)
    product = b.node("MatMul", [x, b.constant(prefix, column)], f"{prefix}/product")
    predicted = b.node("Add", [product, b.constant(prefix, [affine.bias.mean()])],
                       f"{prefix}/checksum")  # fmt: skip
    sums = b.reduce("ReduceMean", f"{prefix}/row", affine.output, [rank - 1], 1)
    diff = b.node("Sub", [sums, predicted], f"{prefix}/diff")
    b.compare(prefix, diff, affine.output, rows * w.shape[1], rank, affine.output)
    return CheckedLayer(
        node_name(node), node.op_type, affine.output, node.input[1], rows, w.shape[1], macs
    )
