"""Demo and test ONNX models, built with `onnx.helper` from fixed seeds.

The same seed and opset always give a byte-identical file, so tests and the demo can refer to a
model by its parameters. Weights are stored inline (no external data), as the board requires.

CLI:
    python -m tools.model_gen cnn OUT.onnx [--seed S] [--opset N]
    python -m tools.model_gen mlp OUT.onnx [--seed S] [--opset N]
    python -m tools.model_gen input MODEL.onnx OUT.npy [--batch B] [--seed S]
"""

from __future__ import annotations

import argparse
import io
import itertools
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
import onnx
from google.protobuf.message import DecodeError  # type: ignore[import-untyped]
from onnx import TensorProto, helper, numpy_helper

PRODUCER_NAME = "tools.model_gen"
PRODUCER_VERSION = "1"
BATCH_AXIS = "batch"

CNN_INPUT = "image"
CNN_OUTPUT = "probabilities"
CNN_CLASSES = 10
CNN_IMAGE_SHAPE = (3, 64, 64)
# Resize needs opset 10+ with the scales input form used here; HardSwish arrived in opset 14.
CNN_MIN_OPSET = 11
HARDSWISH_OPSET = 14

MLP_INPUT = "features"
MLP_OUTPUT = "logits"
MLP_WIDTHS = (256, 1024, 512, 256, 16)
MLP_MIN_OPSET = 9

EXTERNAL_DATA_LOCATION = "model.onnx.data"


class _Graph:
    """Collects nodes and initializers with PyTorch-like tensor names while a model is built."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []

    def weight(self, name: str, array: np.ndarray) -> str:
        self.initializers.append(numpy_helper.from_array(array.astype(np.float32), name))
        return name

    def he(self, name: str, shape: tuple[int, ...], fan_in: int) -> str:
        # He-normal scaling keeps activations in range, so the softmax is not saturated.
        return self.weight(name, self.rng.standard_normal(shape) * np.sqrt(2.0 / fan_in))

    def node(self, op: str, inputs: Sequence[str], output: str, **attrs: Any) -> str:
        self.nodes.append(helper.make_node(op, list(inputs), [output], name=output, **attrs))
        return output

    def conv_bn(self, prefix: str, x: str, c_in: int, c_out: int, k: int, stride: int = 1) -> str:
        w = self.he(f"{prefix}.conv.weight", (c_out, c_in, k, k), c_in * k * k)
        pad = k // 2
        y = self.node(
            "Conv",
            [x, w],
            f"{prefix}.conv",
            kernel_shape=[k, k],
            strides=[stride, stride],
            pads=[pad, pad, pad, pad],
        )
        bn = [
            self.weight(f"{prefix}.bn.weight", 1.0 + 0.1 * self.rng.standard_normal(c_out)),
            self.weight(f"{prefix}.bn.bias", 0.1 * self.rng.standard_normal(c_out)),
            self.weight(f"{prefix}.bn.running_mean", 0.1 * self.rng.standard_normal(c_out)),
            self.weight(f"{prefix}.bn.running_var", self.rng.uniform(0.5, 1.5, c_out)),
        ]
        return self.node("BatchNormalization", [y, *bn], f"{prefix}.bn", epsilon=1e-5)

    def hardswish(self, prefix: str, x: str, opset: int) -> str:
        if opset >= HARDSWISH_OPSET:
            return self.node("HardSwish", [x], f"{prefix}.hardswish")
        # PyTorch's export of hardswish before opset 14: x * hardsigmoid(x, 1/6, 1/2).
        gate = self.node("HardSigmoid", [x], f"{prefix}.hardsigmoid", alpha=1.0 / 6, beta=0.5)
        return self.node("Mul", [x, gate], f"{prefix}.hardswish")


def _check_opset(opset: int, minimum: int, what: str) -> None:
    newest = onnx.defs.onnx_opset_version()
    if not minimum <= opset <= newest:
        raise ValueError(f"{what} needs an opset from {minimum} to {newest}, got {opset}")


def _batch_dim(batch: int | None) -> int | str:
    return BATCH_AXIS if batch is None else batch


def _model(graph: onnx.GraphProto, opset: int) -> onnx.ModelProto:
    opset_ids = [helper.make_opsetid("", opset)]
    return helper.make_model(
        graph,
        opset_imports=opset_ids,
        # The oldest IR that carries this opset, as exporters write it, so old runtimes load it.
        ir_version=helper.find_min_ir_version_for(opset_ids),
        producer_name=PRODUCER_NAME,
        producer_version=PRODUCER_VERSION,
    )


def cnn_classifier(seed: int = 1, opset: int = 13, *, batch: int | None = None) -> onnx.ModelProto:
    """Small CNN classifier: image [N,3,64,64] -> probabilities [N,10]; batch None is dynamic."""
    _check_opset(opset, CNN_MIN_OPSET, "the CNN")
    g = _Graph(np.random.default_rng(seed))
    # Full-resolution early layers: about 0.4 GMAC per image for 0.9 M weights.
    x = g.hardswish("stem", g.conv_bn("stem", CNN_INPUT, 3, 32, 3), opset)  # 64x64
    x = g.node("Relu", [g.conv_bn("block1", x, 32, 64, 3)], "block1.relu")
    x = g.node("MaxPool", [x], "block1.pool", kernel_shape=[2, 2], strides=[2, 2])  # 32x32
    skip = g.hardswish("block2", g.conv_bn("block2", x, 64, 128, 3), opset)
    x = g.node("MaxPool", [skip], "block2.pool", kernel_shape=[2, 2], strides=[2, 2])  # 16x16
    x = g.node("Relu", [g.conv_bn("block3", x, 128, 256, 3)], "block3.relu")
    # Upsample and join the skip branch, as an FPN-style exporter writes it.
    roi = g.weight("up.roi", np.zeros(0, np.float32))
    scales = g.weight("up.scales", np.array([1.0, 1.0, 2.0, 2.0]))
    x = g.node(
        "Resize",
        [x, roi, scales],
        "up.resize",
        mode="nearest",
        coordinate_transformation_mode="asymmetric",
        nearest_mode="floor",
    )  # 32x32
    x = g.node("Concat", [skip, x], "fuse.concat", axis=1)
    x = g.hardswish("fuse", g.conv_bn("fuse", x, 128 + 256, 192, 1), opset)
    x = g.node("Relu", [g.conv_bn("head", x, 192, 256, 3, stride=2)], "head.relu")  # 16x16
    return _classifier(g, x, 256, "cnn_classifier", CNN_IMAGE_SHAPE, batch, opset)


SMALL_CNN_IMAGE_SHAPE = (3, 32, 32)


def small_cnn(seed: int = 11, opset: int = 13, *, batch: int | None = None) -> onnx.ModelProto:
    """A small CNN classifier for tests that upload many models and inputs over a slow link:
    image [N,3,32,32] -> probabilities [N,10] through four Conv+BN+ReLU layers of 8 to 32
    channels and two pools (62 kB of weights, a 12 kB input)."""
    _check_opset(opset, CNN_MIN_OPSET, "the small CNN")
    g = _Graph(np.random.default_rng(seed))
    x = g.node("Relu", [g.conv_bn("stem", CNN_INPUT, 3, 8, 3)], "stem.relu")
    x = g.node("Relu", [g.conv_bn("block1", x, 8, 16, 3)], "block1.relu")
    x = g.node("MaxPool", [x], "block1.pool", kernel_shape=[2, 2], strides=[2, 2])
    x = g.node("Relu", [g.conv_bn("block2", x, 16, 32, 3)], "block2.relu")
    x = g.node("MaxPool", [x], "block2.pool", kernel_shape=[2, 2], strides=[2, 2])
    x = g.node("Relu", [g.conv_bn("block3", x, 32, 32, 3)], "block3.relu")
    return _classifier(g, x, 32, "small_cnn", SMALL_CNN_IMAGE_SHAPE, batch, opset)


def _classifier(
    g: _Graph,
    features: str,
    channels: int,
    name: str,
    image_shape: tuple[int, ...],
    batch: int | None,
    opset: int,
) -> onnx.ModelProto:
    """A CNN's classifier head on its `features` (`channels` deep): global average pool, a
    fully connected layer to CNN_CLASSES, softmax; the model image [N, *image_shape] ->
    probabilities [N, CNN_CLASSES]."""
    x = g.node("GlobalAveragePool", [features], "head.pool")
    x = g.node("Flatten", [x], "head.flatten", axis=1)
    w = g.he("fc.weight", (CNN_CLASSES, channels), channels)
    b = g.weight("fc.bias", np.zeros(CNN_CLASSES))
    x = g.node("Gemm", [x, w, b], "fc", alpha=1.0, beta=1.0, transB=1)
    g.node("Softmax", [x], CNN_OUTPUT, axis=1)
    n = _batch_dim(batch)
    graph = helper.make_graph(
        g.nodes,
        name,
        [helper.make_tensor_value_info(CNN_INPUT, TensorProto.FLOAT, [n, *image_shape])],
        [helper.make_tensor_value_info(CNN_OUTPUT, TensorProto.FLOAT, [n, CNN_CLASSES])],
        g.initializers,
    )
    return _model(graph, opset)


def mlp(
    seed: int = 2,
    opset: int = 13,
    *,
    batch: int | None = None,
    widths: Sequence[int] = MLP_WIDTHS,
) -> onnx.ModelProto:
    """Multi-layer perceptron: features [N,256] -> logits [N,16] through Gemm+Relu layers
    (`widths` from input to output; small ones make models of a few kB for link tests)."""
    _check_opset(opset, MLP_MIN_OPSET, "the MLP")
    g = _Graph(np.random.default_rng(seed))
    x = MLP_INPUT
    layers = list(itertools.pairwise(widths))
    for i, (n_in, n_out) in enumerate(layers, start=1):
        w = g.he(f"fc{i}.weight", (n_out, n_in), n_in)
        b = g.weight(f"fc{i}.bias", 0.01 * g.rng.standard_normal(n_out))
        last = i == len(layers)
        x = g.node("Gemm", [x, w, b], MLP_OUTPUT if last else f"fc{i}", transB=1)
        if not last:
            x = g.node("Relu", [x], f"fc{i}.relu")
    n = _batch_dim(batch)
    graph = helper.make_graph(
        g.nodes,
        "mlp",
        [helper.make_tensor_value_info(MLP_INPUT, TensorProto.FLOAT, [n, widths[0]])],
        [helper.make_tensor_value_info(MLP_OUTPUT, TensorProto.FLOAT, [n, widths[-1]])],
        g.initializers,
    )
    return _model(graph, opset)


SLOW_INPUT = "scale"
SLOW_OUTPUT = "mean"


def slow_model(
    seed: int = 3, opset: int = 13, *, layers: int = 48, size: int = 384, channels: int = 32
) -> onnx.ModelProto:
    """A model that computes long on a tiny input: scale [1,1] times a constant image of
    `channels` x `size` x `size`, through `layers` 3x3 convolutions sharing one kernel, reduced
    to mean [1,1]. For tests that need a job running while something else happens."""
    g = _Graph(np.random.default_rng(seed))
    shape = g.weight("image.shape", np.array([1, channels, size, size]))
    g.initializers[-1] = numpy_helper.from_array(
        np.array([1, channels, size, size], dtype=np.int64), shape
    )
    image = g.node(
        "ConstantOfShape",
        [shape],
        "image",
        value=numpy_helper.from_array(np.array([1.0], dtype=np.float32)),
    )
    x = g.node("Mul", [image, SLOW_INPUT], "scaled")
    # Positive weights summing to one per output channel keep the values near the scale.
    weights = g.rng.uniform(0.5, 1.5, (channels, channels, 3, 3))
    kernel = g.weight("conv.weight", weights / weights.sum(axis=(1, 2, 3), keepdims=True))
    for i in range(layers):
        x = g.node("Conv", [x, kernel], f"conv{i}", kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    g.node("ReduceMean", [x], SLOW_OUTPUT, axes=[1, 2, 3], keepdims=0)
    graph = helper.make_graph(
        g.nodes,
        "slow",
        [helper.make_tensor_value_info(SLOW_INPUT, TensorProto.FLOAT, [1, 1])],
        [helper.make_tensor_value_info(SLOW_OUTPUT, TensorProto.FLOAT, [1])],
        g.initializers,
    )
    return _model(graph, opset)


def fixed_batch_cnn(seed: int = 1, opset: int = 13) -> onnx.ModelProto:
    """The CNN exported with a fixed batch axis: image [1,3,64,64]."""
    return cnn_classifier(seed, opset, batch=1)


def loop_model(opset: int = 13) -> onnx.ModelProto:
    """A Loop (outside the allow-list) whose body uses Sin (outside it too): y = sin^n(x)."""
    body = helper.make_graph(
        [
            helper.make_node("Identity", ["cond_in"], ["cond_out"]),
            helper.make_node("Sin", ["acc_in"], ["acc_out"]),
        ],
        "loop_body",
        [
            helper.make_tensor_value_info("iteration", TensorProto.INT64, []),
            helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
            helper.make_tensor_value_info("acc_in", TensorProto.FLOAT, [BATCH_AXIS, 4]),
        ],
        [
            helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
            helper.make_tensor_value_info("acc_out", TensorProto.FLOAT, [BATCH_AXIS, 4]),
        ],
    )
    graph = helper.make_graph(
        [helper.make_node("Loop", ["trip_count", "keep_going", "x"], ["y"], body=body)],
        "loop",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [BATCH_AXIS, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [BATCH_AXIS, 4])],
        [
            numpy_helper.from_array(np.array(3, np.int64), "trip_count"),
            numpy_helper.from_array(np.array(True), "keep_going"),
        ],
    )
    return _model(graph, opset)


def custom_domain_model(opset: int = 13) -> onnx.ModelProto:
    """An onnxruntime contrib operator (com.microsoft Gelu), as some exporters' fusions emit."""
    graph = helper.make_graph(
        [helper.make_node("Gelu", ["x"], ["y"], domain="com.microsoft")],
        "custom_domain",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [BATCH_AXIS, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [BATCH_AXIS, 8])],
    )
    model = _model(graph, opset)
    model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    return model


def unsupported_type_model(opset: int = 13) -> onnx.ModelProto:
    """A model whose input is bfloat16, which has no numpy dtype: x [N,8] -> Cast -> float32."""
    graph = helper.make_graph(
        [helper.make_node("Cast", ["x"], ["y"], to=TensorProto.FLOAT)],
        "bfloat16_input",
        [helper.make_tensor_value_info("x", TensorProto.BFLOAT16, [BATCH_AXIS, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [BATCH_AXIS, 8])],
    )
    return _model(graph, opset)


def inconsistent_mlp(seed: int = 2, opset: int = 13) -> onnx.ModelProto:
    """The MLP with its second weight matrix transposed wrongly, which the checker refuses."""
    model = mlp(seed, opset)
    weight = next(t for t in model.graph.initializer if t.name == "fc2.weight")
    wrong = numpy_helper.to_array(weight)[:, :-1]  # 1023 inputs where layer 1 gives 1024
    weight.CopyFrom(numpy_helper.from_array(np.ascontiguousarray(wrong), "fc2.weight"))
    return model


def external_data_model(seed: int = 2, opset: int = 13) -> tuple[onnx.ModelProto, bytes]:
    """The MLP as saved with external data: (model pointing at model.onnx.data, that file)."""
    model = mlp(seed, opset)
    data = io.BytesIO()
    for tensor in model.graph.initializer:
        raw = tensor.raw_data
        onnx.external_data_helper.set_external_data(
            tensor, EXTERNAL_DATA_LOCATION, offset=data.tell(), length=len(raw)
        )
        data.write(raw)
        tensor.ClearField("raw_data")
    return model, data.getvalue()


def truncated(model: onnx.ModelProto, fraction: float = 0.6) -> bytes:
    """The model's file cut short, as after an interrupted copy."""
    data = model_bytes(model)
    return data[: int(len(data) * fraction)]


def model_bytes(model: onnx.ModelProto) -> bytes:
    """The serialized model, as `save` writes it."""
    return model.SerializeToString(deterministic=True)


def save(model: onnx.ModelProto, path: Path | str) -> None:
    """Write the model to `path` in one piece (via a temporary file and a rename)."""
    _write_atomically(Path(path), model_bytes(model))


def random_input(model: onnx.ModelProto, batch: int = 1, seed: int = 0) -> np.ndarray:
    """A standard-normal float32 array for the model's first input; the batch axis gets `batch`."""
    if batch < 1:
        raise ValueError(f"the batch size must be at least 1, got {batch}")
    initializers = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    if not inputs:
        raise ValueError("the model has no inputs")
    first = inputs[0]
    tensor_type = first.type.tensor_type
    if tensor_type.elem_type != TensorProto.FLOAT:
        found = TensorProto.DataType.Name(tensor_type.elem_type)
        raise ValueError(f"input {first.name} is {found}; only FLOAT inputs can be generated")
    shape: list[int] = []
    for axis, dim in enumerate(tensor_type.shape.dim):
        if dim.dim_value > 0:
            shape.append(dim.dim_value)
        elif axis == 0:
            shape.append(batch)
        else:
            raise ValueError(f"input {first.name} has a dynamic axis {axis} besides the batch")
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _write_atomically(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class _Parser(argparse.ArgumentParser):
    """Reports a usage error as one line on stderr (exit 2) rather than the usage text."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"model_gen: {message}\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m tools.model_gen", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name, default_seed in (("cnn", 1), ("mlp", 2)):
        p = sub.add_parser(name, help=f"write the {name.upper()} demo model")
        p.add_argument("out", type=Path, help="the .onnx file to write")
        p.add_argument("--seed", type=int, default=default_seed)
        p.add_argument("--opset", type=int, default=13)
    p = sub.add_parser("input", help="write a random input (.npy) for a model")
    p.add_argument("model", type=Path, help="the .onnx model")
    p.add_argument("out", type=Path, help="the .npy file to write")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `python -m tools.model_gen`; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "input":
            try:
                model = onnx.ModelProto()
                model.ParseFromString(args.model.read_bytes())
            except DecodeError as exc:
                raise ValueError(f"{args.model} is not an ONNX model ({exc})") from exc
            buffer = io.BytesIO()
            np.save(buffer, random_input(model, args.batch, args.seed), allow_pickle=False)
            _write_atomically(args.out, buffer.getvalue())
        else:
            build = cnn_classifier if args.command == "cnn" else mlp
            save(build(args.seed, args.opset), args.out)
    except (ValueError, OSError) as exc:
        print(f"model_gen: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
