"""The nodes of the checks, and the output `abft_residual` they feed.

Every checked layer gives, per batch item, the largest |checksum difference| divided by the mean
magnitude of the compared sums (mean |output| for the channel checksums), so that one threshold
serves every layer and every input scale; the ratios of all checks are computed together, one
row per check. `abft_residual` is the largest over the layers, one value per batch item, NaN
when a non-finite value reached a check (which `check` counts as a fault: onnxruntime's
ReduceMax skips NaN; a sum of the magnitudes times zero, added to the largest ratio, does not).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import onnx
from numpy.typing import ArrayLike
from onnx import helper, numpy_helper

from flight.protection.abft.checked_model import RESIDUAL_OUTPUT
from flight.protection.abft.graph_info import GraphInfo
from flight.protection.abft.threshold import TINY_MAGNITUDE

# The default domain's opset from which Reduce* take their axes as an input, not an attribute.
_AXES_AS_INPUT_OPSET = 18


class Builder:
    """Collects the nodes and initializers of the checks, with unique names."""

    def __init__(self, graph: GraphInfo) -> None:
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
        """`base`, or `base_2`, `base_3`...: a name neither the model nor a check uses yet."""
        name = base
        n = 1
        while name in self._names or name in self.graph.names:
            n += 1
            name = f"{base}_{n}"
        self._names.add(name)
        return name

    def constant(self, prefix: str, array: ArrayLike, dtype: type = np.float32) -> str:
        """A new initializer holding `array`, by its name."""
        name = self.fresh(f"{prefix}/const")
        self.initializers.append(numpy_helper.from_array(np.asarray(array, dtype=dtype), name))
        return name

    def node(self, op: str, inputs: Sequence[str], output: str, **attrs: Any) -> str:
        """A new node of one output, named as that output; the output's name."""
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
            floor = self.constant(prefix, np.array(TINY_MAGNITUDE))
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
            floor = self.constant(prefix, np.array(TINY_MAGNITUDE))
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
