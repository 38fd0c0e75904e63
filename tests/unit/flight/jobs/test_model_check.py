"""Model validation on board: accepted models and their signatures, each rejection reason,
golden weight checksums, and the checks on input tensors."""

from __future__ import annotations

import functools
import io
import pickle
import zlib

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper

from flight.jobs.model_check import (
    DEFAULT_ALLOWED_OPERATORS,
    InputMismatch,
    InputProblem,
    ModelRejected,
    ModelSignature,
    RejectReason,
    TensorSpec,
    check_input,
    load_input,
    validate_model,
    weight_checksums,
)
from tools import model_gen

MAX_SIZE = 8 * 1024 * 1024
OPSETS = range(11, 18)
# Operators that PyTorch and PaddlePaddle exports of vision and MLP models use.
EXPORTED_OPERATORS = """
Conv ConvTranspose BatchNormalization Relu LeakyRelu PRelu Sigmoid HardSigmoid
HardSwish Tanh Clip Softmax LogSoftmax Gemm MatMul Add Sub Mul Div Pow Sqrt Exp Erf
Concat Reshape Flatten Transpose Squeeze Unsqueeze Slice Gather Shape Constant
ConstantOfShape Cast Resize Upsample MaxPool AveragePool GlobalAveragePool GlobalMaxPool
ReduceMean ReduceSum ReduceMax Pad Split Identity Dropout LayerNormalization
InstanceNormalization Where Equal Expand Range Tile ArgMax TopK Min Max Neg Abs Floor
Ceil Round Not Less Greater Einsum"""


@functools.cache
def cnn_bytes(opset: int = 13) -> bytes:
    return model_gen.model_bytes(model_gen.cnn_classifier(opset=opset))


@functools.cache
def mlp_bytes(opset: int = 13) -> bytes:
    return model_gen.model_bytes(model_gen.mlp(opset=opset))


@functools.cache
def cnn_signature() -> ModelSignature:
    return validate_model(cnn_bytes(), max_size=MAX_SIZE)


def npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def rejected(data: bytes, **kwargs: object) -> ModelRejected:
    with pytest.raises(ModelRejected) as info:
        validate_model(data, **{"max_size": MAX_SIZE, **kwargs})  # type: ignore[arg-type]
    return info.value


def mismatch(signature: ModelSignature, arrays: object) -> InputMismatch:
    with pytest.raises(InputMismatch) as info:
        check_input(signature, arrays)  # type: ignore[arg-type]
    return info.value


# --- accepted models -------------------------------------------------------------------------


@pytest.mark.parametrize("opset", OPSETS)
def test_cnn_accepted_at_every_supported_opset(opset: int) -> None:
    signature = validate_model(cnn_bytes(opset), max_size=MAX_SIZE)
    assert signature.inputs == (TensorSpec("image", "float32", (None, 3, 64, 64)),)
    assert signature.outputs == (TensorSpec("probabilities", "float32", (None, 10)),)
    assert signature.opset == opset
    assert {"Conv", "BatchNormalization", "Resize", "Concat", "Softmax"} <= signature.operators
    activation = {"HardSwish"} if opset >= 14 else {"HardSigmoid", "Mul"}
    assert activation <= signature.operators


@pytest.mark.parametrize("opset", OPSETS)
def test_mlp_accepted_at_every_supported_opset(opset: int) -> None:
    signature = validate_model(mlp_bytes(opset), max_size=MAX_SIZE)
    assert signature.inputs == (TensorSpec("features", "float32", (None, 256)),)
    assert signature.outputs == (TensorSpec("logits", "float32", (None, 16)),)
    assert (signature.opset, signature.operators) == (opset, frozenset({"Gemm", "Relu"}))


def test_fixed_batch_axis_is_reported_as_fixed() -> None:
    data = model_gen.model_bytes(model_gen.fixed_batch_cnn())
    signature = validate_model(data, max_size=MAX_SIZE)
    assert signature.inputs[0].shape == (1, 3, 64, 64)
    assert signature.outputs[0].shape == (1, 10)


def test_signature_json_round_trip() -> None:
    signature = cnn_signature()
    text = signature.to_json()
    assert ModelSignature.from_json(text) == signature
    assert text == cnn_signature().to_json()  # deterministic, fit for a database column
    assert '"shape":[null,3,64,64]' in text


@pytest.mark.parametrize(
    "text",
    [
        "",
        "[]",
        '{"inputs": [], "outputs": [], "opset": 13}',
        '{"inputs": [], "outputs": [], "opset": "13", "operators": []}',
        '{"inputs": [{"name": "x", "dtype": "object", "shape": [1]}], "outputs": [],'
        ' "opset": 13, "operators": []}',
        '{"inputs": [{"name": "x", "dtype": "float32", "shape": [0]}], "outputs": [],'
        ' "opset": 13, "operators": []}',
    ],
)
def test_malformed_stored_signature_is_a_value_error(text: str) -> None:
    with pytest.raises(ValueError, match="not a stored model signature"):
        ModelSignature.from_json(text)


def test_default_allow_list_covers_exported_vision_and_mlp_operators() -> None:
    assert set(EXPORTED_OPERATORS.split()) <= DEFAULT_ALLOWED_OPERATORS
    assert all(onnx.defs.has(op) for op in DEFAULT_ALLOWED_OPERATORS)
    assert not {"Loop", "If", "Scan"} & DEFAULT_ALLOWED_OPERATORS


# --- rejected models -------------------------------------------------------------------------


def test_size_is_checked_before_parsing() -> None:
    size = len(cnn_bytes())
    error = rejected(cnn_bytes(), max_size=size - 1)
    assert error.reason == RejectReason.TOO_LARGE
    assert str(error) == f"the model is {size} bytes, the limit is {size - 1}"
    assert rejected(b"\xff" * 100, max_size=99).reason == RejectReason.TOO_LARGE
    validate_model(cnn_bytes(), max_size=len(cnn_bytes()))


@pytest.mark.parametrize(
    "data",
    [
        model_gen.truncated(model_gen.mlp()),
        b"",
        b"hello, world",
        npy(np.zeros((1, 256), np.float32)),
        model_gen.model_bytes(onnx.ModelProto(ir_version=8)),
    ],
    ids=["truncated", "empty", "text", "npy", "no-graph"],
)
def test_not_onnx(data: bytes) -> None:
    error = rejected(data)
    assert error.reason == RejectReason.NOT_ONNX
    assert str(error).startswith("not an ONNX model")


def test_external_data_is_refused() -> None:
    model, _ = model_gen.external_data_model()
    error = rejected(model_gen.model_bytes(model))
    assert error.reason == RejectReason.EXTERNAL_DATA
    assert "fc1.weight" in str(error) and "model.onnx.data" in str(error)


def test_checker_failure_reports_its_first_line() -> None:
    error = rejected(model_gen.model_bytes(model_gen.inconsistent_mlp()))
    assert error.reason == RejectReason.CHECK_FAILED
    assert "\n" not in str(error)
    assert str(error).startswith("ONNX checker: ") and "fc2" in str(error)


def test_loop_is_not_allowed_and_its_body_is_walked() -> None:
    data = model_gen.model_bytes(model_gen.loop_model())
    error = rejected(data)
    assert error.reason == RejectReason.OPERATOR_NOT_ALLOWED
    assert str(error) == "operator Loop (domain ai.onnx) is not on the allow-list"
    error = rejected(data, allowed_operators=DEFAULT_ALLOWED_OPERATORS | {"Loop"})
    assert error.reason == RejectReason.OPERATOR_NOT_ALLOWED
    assert str(error) == (
        "operator Sin (domain ai.onnx) is not on the allow-list (in subgraph loop_body)"
    )
    allowed = DEFAULT_ALLOWED_OPERATORS | {"Loop", "Sin"}
    signature = validate_model(data, max_size=MAX_SIZE, allowed_operators=allowed)
    assert {"Loop", "Sin", "Identity"} <= signature.operators


def test_other_domains_are_refused_even_when_the_name_is_allowed() -> None:
    data = model_gen.model_bytes(model_gen.custom_domain_model())
    error = rejected(data, allowed_operators=DEFAULT_ALLOWED_OPERATORS | {"Gelu"})
    assert error.reason == RejectReason.OPERATOR_NOT_ALLOWED
    assert str(error) == "operator Gelu (domain com.microsoft) is not on the allow-list"


def test_narrower_allow_list_refuses_the_cnn() -> None:
    error = rejected(cnn_bytes(), allowed_operators=DEFAULT_ALLOWED_OPERATORS - {"Resize"})
    assert str(error) == "operator Resize (domain ai.onnx) is not on the allow-list"


@pytest.mark.parametrize(
    ("model", "found"),
    [(model_gen.mlp(opset=10), "opset 10"), (model_gen.cnn_classifier(opset=18), "opset 18")],
)
def test_opset_outside_11_to_17(model: onnx.ModelProto, found: str) -> None:
    error = rejected(model_gen.model_bytes(model))
    assert error.reason == RejectReason.OPSET_UNSUPPORTED
    assert str(error) == f"{found} is not supported (supported: 11 to 17)"


def test_model_without_default_opset_import() -> None:
    model = model_gen.custom_domain_model()
    del model.opset_import[0]
    error = rejected(model_gen.model_bytes(model))
    assert error.reason == RejectReason.OPSET_UNSUPPORTED
    assert "imports: none" in str(error)


def test_input_type_without_numpy_dtype() -> None:
    error = rejected(model_gen.model_bytes(model_gen.unsupported_type_model()))
    assert error.reason == RejectReason.UNSUPPORTED_TYPE
    assert str(error) == "input x has element type BFLOAT16, which has no numpy dtype"


def test_input_of_unknown_rank_is_refused_by_the_checker() -> None:
    model = model_gen.mlp()
    model.graph.input[0].type.tensor_type.ClearField("shape")
    error = rejected(model_gen.model_bytes(model))
    assert error.reason == RejectReason.CHECK_FAILED
    assert "'shape'" in str(error)


# --- golden checksums ------------------------------------------------------------------------


def test_checksums_cover_every_initializer_and_are_stable() -> None:
    model = model_gen.cnn_classifier()
    sums = weight_checksums(cnn_bytes())
    assert set(sums) == {t.name for t in model.graph.initializer}
    weight = next(t for t in model.graph.initializer if t.name == "head.conv.weight")
    assert sums["head.conv.weight"] == zlib.crc32(numpy_helper.to_array(weight).tobytes())
    assert weight_checksums(model_gen.model_bytes(model_gen.cnn_classifier())) == sums


def test_one_changed_weight_byte_changes_only_its_checksum() -> None:
    model = model_gen.mlp()
    before = weight_checksums(model_gen.model_bytes(model))
    weight = next(t for t in model.graph.initializer if t.name == "fc2.weight")
    raw = bytearray(weight.raw_data)
    raw[12345] ^= 0x01
    weight.raw_data = bytes(raw)
    after = weight_checksums(model_gen.model_bytes(model))
    assert [name for name in before if before[name] != after[name]] == ["fc2.weight"]


def test_typed_and_raw_storage_give_the_same_checksum() -> None:
    model = model_gen.mlp()
    before = weight_checksums(model_gen.model_bytes(model))
    bias = next(t for t in model.graph.initializer if t.name == "fc3.bias")
    values = numpy_helper.to_array(bias)
    bias.ClearField("raw_data")
    bias.float_data.extend(values.tolist())
    assert weight_checksums(model_gen.model_bytes(model)) == before


def test_checksums_of_a_non_model() -> None:
    with pytest.raises(ModelRejected) as info:
        weight_checksums(b"garbage")
    assert info.value.reason == RejectReason.NOT_ONNX


# --- input tensors ---------------------------------------------------------------------------


def test_load_input_reads_plain_npy() -> None:
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    np.testing.assert_array_equal(load_input(npy(x)), x)
    swapped = load_input(npy(x.astype(">f4")))
    assert swapped.dtype == np.float32 and swapped.dtype.isnative
    np.testing.assert_array_equal(swapped, x)
    fortran = load_input(npy(np.asfortranarray(x)))
    assert fortran.flags.c_contiguous
    np.testing.assert_array_equal(fortran, x)


def object_npy() -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    return buffer.getvalue()


def npz() -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, x=np.zeros(3, np.float32))
    return buffer.getvalue()


@pytest.mark.parametrize(
    "data",
    [
        object_npy(),
        pickle.dumps(np.zeros(3, np.float32)),
        b"not an array",
        b"",
        npy(np.zeros((4, 256), np.float32))[:-100],
        npy(np.zeros(3, np.float32)) + b"extra",
        npz(),
    ],
    ids=["object-pickle", "pickle", "text", "empty", "truncated", "trailing", "npz"],
)
def test_load_input_refuses_anything_but_plain_npy(data: bytes) -> None:
    with pytest.raises(InputMismatch) as info:
        load_input(data)
    assert info.value.reason == InputProblem.NOT_NPY


def test_check_input_accepts_any_batch_on_a_dynamic_axis() -> None:
    for batch in (1, 5):
        x = np.zeros((batch, 3, 64, 64), np.float32)
        feed = check_input(cnn_signature(), x)
        assert list(feed) == ["image"] and feed["image"] is x
    assert list(check_input(cnn_signature(), {"image": x})) == ["image"]


@pytest.mark.parametrize(
    ("array", "reason", "message"),
    [
        (
            np.zeros((1, 3, 64, 64), np.float64),
            InputProblem.WRONG_DTYPE,
            "input image: dtype is float64, the model needs float32",
        ),
        (
            np.zeros((3, 64, 64), np.float32),
            InputProblem.WRONG_RANK,
            "input image: rank is 3 (shape (3, 64, 64)), the model needs 4",
        ),
        (
            np.zeros((1, 3, 32, 64), np.float32),
            InputProblem.WRONG_DIMENSION,
            "input image: axis 2 is 32, the model needs 64",
        ),
        (
            np.zeros((0, 3, 64, 64), np.float32),
            InputProblem.WRONG_DIMENSION,
            "input image: axis 0 is 0, the model needs at least 1",
        ),
        (
            [[0.0] * 64] * 64,
            InputProblem.WRONG_DTYPE,
            "input image: a list, the model needs a numpy array",
        ),
    ],
)
def test_check_input_mismatches(array: np.ndarray, reason: InputProblem, message: str) -> None:
    array_or_list: object = array if isinstance(array, np.ndarray) else {"image": array}
    error = mismatch(cnn_signature(), array_or_list)
    assert (error.reason, str(error)) == (reason, message)


def test_check_input_wrong_names_and_counts() -> None:
    x = np.zeros((1, 3, 64, 64), np.float32)
    error = mismatch(cnn_signature(), {"img": x})
    assert error.reason == InputProblem.WRONG_COUNT
    assert str(error) == "the model's inputs are image: missing image; unknown img"
    error = mismatch(cnn_signature(), {"image": x, "mask": x})
    assert (error.reason, str(error)) == (
        InputProblem.WRONG_COUNT,
        "the model's inputs are image: unknown mask",
    )
    two_inputs = ModelSignature(
        inputs=(TensorSpec("a", "float32", (2,)), TensorSpec("b", "int64", (None,))),
        outputs=(),
        opset=13,
        operators=frozenset({"Add"}),
    )
    error = mismatch(two_inputs, np.zeros(2, np.float32))
    assert error.reason == InputProblem.WRONG_COUNT
    assert str(error) == "one array given, the model has 2 inputs (a, b)"
    feed = check_input(two_inputs, {"b": np.zeros(7, np.int64), "a": np.ones(2, np.float32)})
    assert sorted(feed) == ["a", "b"]


def test_fixed_batch_model_refuses_batch_two() -> None:
    data = model_gen.model_bytes(model_gen.fixed_batch_cnn())
    signature = validate_model(data, max_size=MAX_SIZE)
    check_input(signature, np.zeros((1, 3, 64, 64), np.float32))
    error = mismatch(signature, np.zeros((2, 3, 64, 64), np.float32))
    assert (error.reason, str(error)) == (
        InputProblem.WRONG_DIMENSION,
        "input image: axis 0 is 2, the model needs 1",
    )


def test_validated_model_runs_on_a_checked_uploaded_input() -> None:
    signature = cnn_signature()
    image = model_gen.random_input(model_gen.cnn_classifier(), batch=2, seed=9)
    feed = check_input(signature, load_input(npy(image)))
    session = ort.InferenceSession(cnn_bytes(), providers=["CPUExecutionProvider"])
    (probabilities,) = session.run([s.name for s in signature.outputs], feed)
    assert probabilities.shape == (2, 10)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
