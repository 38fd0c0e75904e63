"""What the transformation gives: the model with checksums, the layers it checks and the nodes
it left out, and the error raised for a model it cannot take."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import onnx

RESIDUAL_OUTPUT = "abft_residual"

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
        """The index of `abft_residual` among the model's outputs."""
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
