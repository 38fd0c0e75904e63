"""What the transformation reads of a model: its constants, producers, readers and inferred
shapes."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper, shape_inference


class GraphInfo:
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
        self.inputs = {v.name for v in graph_inputs(model)}
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
        inputs = graph_inputs(model)
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
        """The inferred axes of `name` (a length, a symbolic name or None), when known."""
        return self.dims.get(name)

    def batch_aligned(self, name: str) -> bool:
        """True when the first axis of `name` is the model's batch axis."""
        dims = self.dims.get(name)
        return bool(dims) and self.batch_dim is not None and dims[0] == self.batch_dim  # type: ignore[index]


def graph_inputs(model: onnx.ModelProto) -> list[onnx.ValueInfoProto]:
    """The model's inputs that are not initializers: those a caller feeds."""
    initializers = {t.name for t in model.graph.initializer}
    return [v for v in model.graph.input if v.name not in initializers]


def node_name(node: onnx.NodeProto) -> str:
    """A node's name, or its first output's when it has none (exporters often leave it out)."""
    return node.name or node.output[0]
