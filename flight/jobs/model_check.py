"""Onboard validation of uploaded ONNX models and of the input tensors sent for them.

A model is accepted only if it is self-contained, passes the ONNX checker, uses a supported
opset and only operators on the allow-list; what is accepted is described by a `ModelSignature`
that later input tensors are checked against before they reach onnxruntime.
"""

from __future__ import annotations

import enum
import io
import json
import logging
import math
import struct
import tokenize
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, BinaryIO

import numpy as np
import onnx
from google.protobuf.message import DecodeError  # type: ignore[import-untyped]
from onnx import TensorProto, numpy_helper

log = logging.getLogger(__name__)

MIN_OPSET = 11
MAX_OPSET = 17
# Octets of .npy header read at most: numpy's own limit (max_header_size), checked here before
# the header is read rather than after.
MAX_NPY_HEADER_OCTETS = 10_000
DEFAULT_DOMAIN = "ai.onnx"
_DEFAULT_DOMAINS = frozenset({"", DEFAULT_DOMAIN})

# Feed-forward operators of vision and MLP models as PyTorch and PaddlePaddle export them.
# Control flow (Loop, If, Scan) is left out on purpose: a job must have a bounded run time.
DEFAULT_ALLOWED_OPERATORS: frozenset[str] = frozenset(
    {
        # convolution, normalization, pooling
        "Conv", "ConvTranspose", "BatchNormalization", "InstanceNormalization",
        "LayerNormalization", "LpNormalization", "LRN", "MaxPool", "AveragePool",
        "GlobalAveragePool", "GlobalMaxPool", "Resize", "Upsample", "DepthToSpace",
        "SpaceToDepth",
        # activations
        "Relu", "LeakyRelu", "PRelu", "Elu", "Selu", "Sigmoid", "HardSigmoid", "HardSwish",
        "Tanh", "Softplus", "Softsign", "Clip", "Softmax", "LogSoftmax",
        # linear algebra and element-wise arithmetic
        "Gemm", "MatMul", "Einsum", "Add", "Sub", "Mul", "Div", "Pow", "Sqrt", "Reciprocal",
        "Exp", "Log", "Erf", "Neg", "Abs", "Sign", "Floor", "Ceil", "Round", "Min", "Max",
        "Sum", "Mean", "Mod",
        # reductions and selection
        "ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL2",
        "ArgMax", "ArgMin", "TopK", "CumSum", "NonMaxSuppression",
        # comparison and logic
        "Equal", "Less", "LessOrEqual", "Greater", "GreaterOrEqual", "Not", "And", "Or",
        "Where",
        # shape and data movement
        "Concat", "Reshape", "Flatten", "Transpose", "Squeeze", "Unsqueeze", "Slice", "Split",
        "Gather", "GatherElements", "GatherND", "ScatterND", "Shape", "Size", "Expand", "Tile",
        "Pad", "Range", "NonZero", "Constant", "ConstantOfShape", "Cast", "Identity", "Dropout",
    }
)  # fmt: skip

# ONNX element types that have a numpy dtype onnxruntime accepts from Python.
_NUMPY_DTYPES: dict[int, str] = {
    TensorProto.FLOAT: "float32",
    TensorProto.DOUBLE: "float64",
    TensorProto.FLOAT16: "float16",
    TensorProto.INT8: "int8",
    TensorProto.INT16: "int16",
    TensorProto.INT32: "int32",
    TensorProto.INT64: "int64",
    TensorProto.UINT8: "uint8",
    TensorProto.UINT16: "uint16",
    TensorProto.UINT32: "uint32",
    TensorProto.UINT64: "uint64",
    TensorProto.BOOL: "bool",
}


class RejectReason(enum.IntEnum):
    """Why an uploaded model was refused."""

    NOT_ONNX = 1
    CHECK_FAILED = 2
    OPERATOR_NOT_ALLOWED = 3
    TOO_LARGE = 4
    EXTERNAL_DATA = 5
    OPSET_UNSUPPORTED = 6
    UNSUPPORTED_TYPE = 7


class ModelRejected(Exception):
    """The uploaded file is not a model the payload will run; `reason` says which check failed."""

    def __init__(self, reason: RejectReason, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class InputProblem(enum.IntEnum):
    """Why an input tensor does not fit its model."""

    NOT_NPY = 1
    WRONG_COUNT = 2
    WRONG_DTYPE = 3
    WRONG_RANK = 4
    WRONG_DIMENSION = 5


class InputMismatch(Exception):
    """An input tensor cannot be fed to the model; `reason` says what is wrong with it."""

    def __init__(self, reason: InputProblem, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class TensorSpec:
    """One model input or output: numpy dtype name and shape (None for a dynamic axis)."""

    name: str
    dtype: str
    shape: tuple[int | None, ...]

    def _to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "dtype": self.dtype, "shape": list(self.shape)}

    @classmethod
    def _from_dict(cls, d: Mapping[str, Any]) -> TensorSpec:
        name, dtype, shape = d["name"], d["dtype"], d["shape"]
        if not isinstance(name, str) or dtype not in _NUMPY_DTYPES.values():
            raise ValueError(f"bad tensor name or dtype: {name!r}, {dtype!r}")
        if not isinstance(shape, list) or not all(
            s is None or (type(s) is int and s > 0) for s in shape
        ):
            raise ValueError(f"tensor {name}: bad shape {shape!r}")
        return cls(name, dtype, tuple(shape))


@dataclass(frozen=True, slots=True)
class ModelSignature:
    """What a validated model takes and gives, its opset and the operators it uses."""

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    opset: int
    operators: frozenset[str]

    def to_json(self) -> str:
        """Compact, deterministic JSON (for a SQLite column)."""
        return json.dumps(
            {
                "inputs": [t._to_dict() for t in self.inputs],
                "outputs": [t._to_dict() for t in self.outputs],
                "opset": self.opset,
                "operators": sorted(self.operators),
            },
            sort_keys=True,
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, text: str) -> ModelSignature:
        """Inverse of `to_json`; ValueError if the text is not a stored signature."""
        try:
            d = json.loads(text)
            opset, operators = d["opset"], d["operators"]
            if type(opset) is not int or not all(isinstance(op, str) for op in operators):
                raise ValueError(f"bad opset or operators: {opset!r}, {operators!r}")
            return cls(
                tuple(TensorSpec._from_dict(t) for t in d["inputs"]),
                tuple(TensorSpec._from_dict(t) for t in d["outputs"]),
                opset,
                frozenset(operators),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"not a stored model signature: {exc}") from exc


def validate_model(
    data: bytes,
    *,
    max_size: int,
    allowed_operators: frozenset[str] = DEFAULT_ALLOWED_OPERATORS,
) -> ModelSignature:
    """Check an uploaded model file and describe it; ModelRejected says why it is refused."""
    if len(data) > max_size:
        # Before parsing: protobuf would hold the whole oversized model in memory.
        raise ModelRejected(
            RejectReason.TOO_LARGE, f"the model is {len(data)} bytes, the limit is {max_size}"
        )
    model = _parse(data)
    _refuse_external_data(model)
    # The opset is checked before the checker so that a too new opset is reported as such
    # rather than as whatever the checker makes of operators it does not know.
    opset = _default_opset(model)
    try:
        onnx.checker.check_model(model, full_check=True)
    except (
        onnx.checker.ValidationError,
        onnx.shape_inference.InferenceError,
        # Found by fuzzing: an unknown tensor data type, a name whose octets are not UTF-8.
        ValueError,
    ) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelRejected(RejectReason.CHECK_FAILED, f"ONNX checker: {first_line}") from exc
    operators = _operators(model.graph, allowed_operators)
    initializers = {t.name for t in model.graph.initializer}
    signature = ModelSignature(
        inputs=tuple(
            _tensor_spec(v, "input") for v in model.graph.input if v.name not in initializers
        ),
        outputs=tuple(_tensor_spec(v, "output") for v in model.graph.output),
        opset=opset,
        operators=operators,
    )
    log.info(
        "model accepted: opset %d, %d inputs, %d operator types",
        opset,
        len(signature.inputs),
        len(operators),
    )
    return signature


def weight_checksums(data: bytes) -> dict[str, int]:
    """CRC-32 of every initializer's array bytes, by name: the golden values for scrubbing."""
    model = _parse(data)
    _refuse_external_data(model)
    # to_array() normalizes raw_data and typed fields (float_data...) to the same bytes.
    return {
        t.name: zlib.crc32(_initializer_array(t).tobytes())
        for graph in _graphs(model.graph)
        for t in graph.initializer
    }


def _initializer_array(tensor: TensorProto) -> np.ndarray:
    try:
        return numpy_helper.to_array(tensor)
    except (ValueError, TypeError) as exc:
        # The checker lets through weights whose octets do not fill their declared shape.
        raise ModelRejected(RejectReason.CHECK_FAILED, f"initializer {tensor.name}: {exc}") from exc


@dataclass(frozen=True, slots=True)
class NpyHeader:
    """The array a .npy file's header declares, as `load_input` gives it: its dtype (in native
    byte order) and shape."""

    dtype: np.dtype[Any]
    shape: tuple[int, ...]


def load_input(data: bytes) -> np.ndarray:
    """Read one .npy array (no pickles) into a native-endian, C-contiguous array."""
    # Before numpy reads it: numpy allocates whatever the header declares.
    read_input_header(io.BytesIO(data), len(data))
    stream = io.BytesIO(data)
    try:
        array = np.lib.format.read_array(stream, allow_pickle=False)
    except (ValueError, EOFError, OSError, SyntaxError, TypeError, tokenize.TokenError) as exc:
        raise InputMismatch(InputProblem.NOT_NPY, f"not a plain .npy array: {exc}") from exc
    trailing = len(data) - stream.tell()
    if trailing:
        raise InputMismatch(
            InputProblem.NOT_NPY, f"{trailing} unexpected bytes after the .npy array"
        )
    return np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("="))


def read_input_header(file: BinaryIO, size: int) -> NpyHeader:
    """The header of the .npy file of `size` octets open in `file` (at its start), checked as
    `load_input` checks it (InputMismatch NOT_NPY) without reading the array: at most
    MAX_NPY_HEADER_OCTETS and a few more are read."""
    try:
        header = _read_npy_header(file, size)
    except (ValueError, EOFError, SyntaxError, TypeError, tokenize.TokenError) as exc:
        raise InputMismatch(InputProblem.NOT_NPY, f"not a plain .npy array: {exc}") from exc
    if header.dtype.hasobject:
        raise InputMismatch(InputProblem.NOT_NPY, f"object arrays are refused ({header.dtype})")
    return header


def _read_npy_header(stream: BinaryIO, size: int) -> NpyHeader:
    """Parse the header, refusing one whose shape and dtype do not match the octets after it.

    numpy allocates the whole array the header declares before reading any of it, so a file of
    a few octets could ask for terabytes (MemoryError) if this were not checked first. numpy
    also reads a header of any declared length before refusing a long one: its length is
    checked here first, so that what is read stays bounded.
    """
    version = np.lib.format.read_magic(stream)
    if version not in _NPY_VERSIONS:
        raise ValueError(f".npy format version {version[0]}.{version[1]} is not supported")
    length_format = "<H" if version == (1, 0) else "<I"
    length_field = _read_exactly(stream, struct.calcsize(length_format), "the header length")
    (header_octets,) = struct.unpack(length_format, length_field)
    if header_octets > MAX_NPY_HEADER_OCTETS:
        raise ValueError(
            f"the header is {header_octets} octets long, at most {MAX_NPY_HEADER_OCTETS} are read"
        )
    text = io.BytesIO(length_field + _read_exactly(stream, header_octets, "the header"))
    # Version 3.0 is 2.0 with a UTF-8 header: read as 2.0, only field names could differ.
    if version == (1, 0):
        shape, _, dtype = np.lib.format.read_array_header_1_0(text)
    else:
        shape, _, dtype = np.lib.format.read_array_header_2_0(text)
    if dtype.subdtype is not None:
        # numpy would turn the sub-array into axes of the array: np.save never writes one.
        raise ValueError(f"dtype {dtype} holds a sub-array")
    if dtype.itemsize == 0:
        # No octets to check the shape against: any element count, even one numpy overflows.
        raise ValueError(f"dtype {dtype} has no octets")
    if any(type(n) is not int or n < 0 for n in shape):
        raise ValueError(f"shape {shape} has an axis that is not a size")
    data_offset = np.lib.format.MAGIC_LEN + len(length_field) + header_octets
    declared = math.prod(shape) * dtype.itemsize
    present = size - data_offset
    if declared != present:
        raise ValueError(
            f"the header declares {declared} octets of array data, {present} follow it"
        )
    # As load_input gives the array: np.ascontiguousarray makes a scalar a one-element array.
    return NpyHeader(dtype.newbyteorder("="), shape or (1,))


def _read_exactly(stream: BinaryIO, count: int, what: str) -> bytes:
    data = stream.read(count)
    if len(data) != count:
        raise ValueError(f"the file ends in {what}: {len(data)} of {count} octets")
    return data


_NPY_VERSIONS = ((1, 0), (2, 0), (3, 0))


def check_input(
    signature: ModelSignature, arrays: Mapping[str, np.ndarray] | np.ndarray
) -> dict[str, np.ndarray]:
    """Check arrays against the model's inputs (a bare array for a one-input model); feed dict."""
    names = [spec.name for spec in signature.inputs]
    if isinstance(arrays, np.ndarray):
        arrays = {_only_input(names): arrays}
    missing = [n for n in names if n not in arrays]
    extra = sorted(n for n in arrays if n not in names)
    if missing or extra:
        found = ", ".join(f"missing {n}" for n in missing)
        found += ("; " if missing and extra else "") + ", ".join(f"unknown {n}" for n in extra)
        raise InputMismatch(
            InputProblem.WRONG_COUNT, f"the model's inputs are {', '.join(names)}: {found}"
        )
    feed: dict[str, np.ndarray] = {}
    for spec in signature.inputs:
        array = arrays[spec.name]
        if not isinstance(array, np.ndarray):
            raise InputMismatch(
                InputProblem.WRONG_DTYPE,
                f"input {spec.name}: a {type(array).__name__}, the model needs a numpy array",
            )
        _check_tensor(spec, array.dtype, array.shape)
        feed[spec.name] = array
    return feed


def check_input_header(signature: ModelSignature, header: NpyHeader) -> None:
    """`check_input` of the array a .npy header declares, with the same verdicts and messages,
    before the array is read."""
    names = [spec.name for spec in signature.inputs]
    _only_input(names)
    _check_tensor(signature.inputs[0], header.dtype, header.shape)


def _only_input(names: list[str]) -> str:
    """The name of a one-input model's input; WRONG_COUNT for another model."""
    if len(names) != 1:
        raise InputMismatch(
            InputProblem.WRONG_COUNT,
            f"one array given, the model has {len(names)} inputs ({', '.join(names)})",
        )
    return names[0]


def _check_tensor(spec: TensorSpec, dtype: np.dtype[Any], shape: tuple[int, ...]) -> None:
    if dtype != np.dtype(spec.dtype):
        raise InputMismatch(
            InputProblem.WRONG_DTYPE,
            f"input {spec.name}: dtype is {dtype}, the model needs {spec.dtype}",
        )
    if len(shape) != len(spec.shape):
        raise InputMismatch(
            InputProblem.WRONG_RANK,
            f"input {spec.name}: rank is {len(shape)} (shape {shape}), "
            f"the model needs {len(spec.shape)}",
        )
    for axis, (size, needed) in enumerate(zip(shape, spec.shape, strict=True)):
        if needed is None and size < 1:
            raise InputMismatch(
                InputProblem.WRONG_DIMENSION,
                f"input {spec.name}: axis {axis} is {size}, the model needs at least 1",
            )
        if needed is not None and size != needed:
            raise InputMismatch(
                InputProblem.WRONG_DIMENSION,
                f"input {spec.name}: axis {axis} is {size}, the model needs {needed}",
            )


def _parse(data: bytes) -> onnx.ModelProto:
    model = onnx.ModelProto()
    try:
        model.ParseFromString(data)
    except DecodeError as exc:
        raise ModelRejected(RejectReason.NOT_ONNX, f"not an ONNX model: {exc}") from exc
    # Almost any short byte string parses as some protobuf message; a model has a graph.
    if not model.HasField("graph") or not model.graph.node:
        raise ModelRejected(RejectReason.NOT_ONNX, "not an ONNX model: it has no graph nodes")
    return model


def _graphs(graph: onnx.GraphProto) -> Iterator[onnx.GraphProto]:
    """The graph and every subgraph (Loop, If, Scan bodies) nested in it, depth first."""
    yield graph
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("g"):
                yield from _graphs(attr.g)
            for sub in attr.graphs:
                yield from _graphs(sub)


def _refuse_external_data(model: onnx.ModelProto) -> None:
    for graph in _graphs(model.graph):
        tensors: list[tuple[str, TensorProto]] = [(t.name, t) for t in graph.initializer]
        for sparse in graph.sparse_initializer:
            tensors += [(sparse.values.name, sparse.values), (sparse.values.name, sparse.indices)]
        for node in graph.node:
            for attr in node.attribute:
                label = f"{attr.name} of node {node.name or node.op_type}"
                tensors += [(label, t) for t in [attr.t, *attr.tensors]]
                for sparse in [attr.sparse_tensor, *attr.sparse_tensors]:
                    tensors += [(label, sparse.values), (label, sparse.indices)]
        for label, tensor in tensors:
            if tensor.data_location == TensorProto.EXTERNAL:
                location = next((e.value for e in tensor.external_data if e.key == "location"), "?")
                raise ModelRejected(
                    RejectReason.EXTERNAL_DATA,
                    f"tensor {label} is stored in the external file {location}; "
                    "the model file must hold all its weights",
                )


def _default_opset(model: onnx.ModelProto) -> int:
    versions = {o.version for o in model.opset_import if o.domain in _DEFAULT_DOMAINS}
    if len(versions) != 1:
        found = ", ".join(str(v) for v in sorted(versions)) or "none"
        raise ModelRejected(
            RejectReason.OPSET_UNSUPPORTED,
            f"the model must import one {DEFAULT_DOMAIN} opset, it imports: {found}",
        )
    (opset,) = versions
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise ModelRejected(
            RejectReason.OPSET_UNSUPPORTED,
            f"opset {opset} is not supported (supported: {MIN_OPSET} to {MAX_OPSET})",
        )
    return opset


def _operators(root: onnx.GraphProto, allowed: frozenset[str]) -> frozenset[str]:
    used: set[str] = set()
    for graph in _graphs(root):
        where = "" if graph is root else f" (in subgraph {graph.name})"
        for node in graph.node:
            domain = node.domain or DEFAULT_DOMAIN
            if domain != DEFAULT_DOMAIN or node.op_type not in allowed:
                raise ModelRejected(
                    RejectReason.OPERATOR_NOT_ALLOWED,
                    f"operator {node.op_type} (domain {domain}) is not on the allow-list{where}",
                )
            used.add(node.op_type)
    return frozenset(used)


def _tensor_spec(value: onnx.ValueInfoProto, role: str) -> TensorSpec:
    kind = value.type.WhichOneof("value")
    if kind != "tensor_type":
        raise ModelRejected(
            RejectReason.UNSUPPORTED_TYPE,
            f"{role} {value.name} is a {kind or 'value of no type'}, only tensors are supported",
        )
    tensor = value.type.tensor_type
    dtype = _NUMPY_DTYPES.get(tensor.elem_type)
    if dtype is None:
        try:
            found = TensorProto.DataType.Name(tensor.elem_type)
        except ValueError:
            found = f"number {tensor.elem_type}"
        raise ModelRejected(
            RejectReason.UNSUPPORTED_TYPE,
            f"{role} {value.name} has element type {found}, which has no numpy dtype",
        )
    if not tensor.HasField("shape"):
        # Without a rank there is nothing to check an input against.
        raise ModelRejected(
            RejectReason.UNSUPPORTED_TYPE, f"{role} {value.name} has no shape (unknown rank)"
        )
    shape = tuple(d.dim_value if d.dim_value > 0 else None for d in tensor.shape.dim)
    return TensorSpec(value.name, dtype, shape)
