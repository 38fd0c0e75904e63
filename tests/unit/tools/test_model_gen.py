"""The demo-model generator: deterministic bytes, valid runnable models at opsets 11..17, CLI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from google.protobuf.message import DecodeError  # type: ignore[import-untyped]
from onnx import TensorProto, numpy_helper

from tools import model_gen

REPO = Path(__file__).resolve().parents[3]
OPSETS = range(11, 18)


def session(model: onnx.ModelProto) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(
        model_gen.model_bytes(model), options, providers=["CPUExecutionProvider"]
    )


def weight_bytes(model: onnx.ModelProto) -> int:
    return sum(numpy_helper.to_array(t).nbytes for t in model.graph.initializer)


def dims(value: onnx.ValueInfoProto) -> list[int | str]:
    return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]


def test_same_seed_same_bytes_other_seed_other_bytes() -> None:
    for build in (model_gen.cnn_classifier, model_gen.mlp):
        first = model_gen.model_bytes(build(seed=7))
        assert model_gen.model_bytes(build(seed=7)) == first
        assert model_gen.model_bytes(build(seed=8)) != first


def test_save_writes_model_bytes(tmp_path: Path) -> None:
    model = model_gen.mlp()
    model_gen.save(model, tmp_path / "m.onnx")
    assert (tmp_path / "m.onnx").read_bytes() == model_gen.model_bytes(model)
    assert [p.name for p in tmp_path.iterdir()] == ["m.onnx"]


@pytest.mark.parametrize("opset", OPSETS)
def test_cnn_at_each_opset_checks_and_runs(opset: int) -> None:
    model = model_gen.cnn_classifier(opset=opset)
    onnx.checker.check_model(model, full_check=True)
    assert model.opset_import[0].version == opset
    assert dims(model.graph.input[0]) == ["batch", 3, 64, 64]
    assert dims(model.graph.output[0]) == ["batch", 10]
    ops = {n.op_type for n in model.graph.node}
    assert {"Conv", "BatchNormalization", "MaxPool", "Resize", "Concat", "Gemm"} <= ops
    assert {"GlobalAveragePool", "Flatten", "Softmax", "Relu"} <= ops
    if opset >= 14:
        assert "HardSwish" in ops and "HardSigmoid" not in ops
    else:
        assert {"HardSigmoid", "Mul"} <= ops and "HardSwish" not in ops
    image = model_gen.random_input(model, batch=3, seed=opset)
    (probabilities,) = session(model).run(None, {"image": image})
    assert probabilities.shape == (3, 10) and probabilities.dtype == np.float32
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    assert (probabilities >= 0).all()


@pytest.mark.parametrize("opset", OPSETS)
def test_mlp_at_each_opset_checks_and_runs(opset: int) -> None:
    model = model_gen.mlp(opset=opset)
    onnx.checker.check_model(model, full_check=True)
    assert dims(model.graph.input[0]) == ["batch", 256]
    features = model_gen.random_input(model, batch=2)
    (logits,) = session(model).run(None, {"features": features})
    assert logits.shape == (2, 16) and np.isfinite(logits).all()


def test_hardswish_forms_agree_across_opsets() -> None:
    image = model_gen.random_input(model_gen.cnn_classifier(), seed=3)
    old = session(model_gen.cnn_classifier(opset=13)).run(None, {"image": image})[0]
    new = session(model_gen.cnn_classifier(opset=14)).run(None, {"image": image})[0]
    np.testing.assert_allclose(old, new, rtol=1e-4, atol=1e-6)


def test_models_hold_a_few_megabytes_of_inline_weights() -> None:
    for model in (model_gen.cnn_classifier(), model_gen.mlp()):
        assert 2_000_000 <= weight_bytes(model) <= 4_000_000
        assert all(t.data_location == TensorProto.DEFAULT for t in model.graph.initializer)


def test_opset_outside_range_is_refused() -> None:
    with pytest.raises(ValueError, match="opset from 11"):
        model_gen.cnn_classifier(opset=10)
    with pytest.raises(ValueError, match="got 99"):
        model_gen.mlp(opset=99)


def test_fixed_batch_cnn_has_batch_one() -> None:
    model = model_gen.fixed_batch_cnn()
    assert dims(model.graph.input[0]) == [1, 3, 64, 64]
    assert dims(model.graph.output[0]) == [1, 10]
    onnx.checker.check_model(model, full_check=True)


def test_external_data_model_loads_back_from_disk(tmp_path: Path) -> None:
    model, data = model_gen.external_data_model()
    assert all(t.data_location == TensorProto.EXTERNAL for t in model.graph.initializer)
    assert all(not t.raw_data for t in model.graph.initializer)
    assert len(data) == weight_bytes(model_gen.mlp())
    (tmp_path / "model.onnx").write_bytes(model_gen.model_bytes(model))
    (tmp_path / model_gen.EXTERNAL_DATA_LOCATION).write_bytes(data)
    loaded = onnx.load(str(tmp_path / "model.onnx"))
    for got, want in zip(loaded.graph.initializer, model_gen.mlp().graph.initializer, strict=True):
        np.testing.assert_array_equal(numpy_helper.to_array(got), numpy_helper.to_array(want))


def test_truncated_model_does_not_parse() -> None:
    data = model_gen.truncated(model_gen.cnn_classifier())
    assert 0 < len(data) < len(model_gen.model_bytes(model_gen.cnn_classifier()))
    with pytest.raises(DecodeError):
        onnx.ModelProto().ParseFromString(data)


def test_bad_variants_are_what_they_claim() -> None:
    loop = model_gen.loop_model()
    assert [n.op_type for n in loop.graph.node] == ["Loop"]
    assert "Sin" in {n.op_type for n in loop.graph.node[0].attribute[0].g.node}
    assert model_gen.custom_domain_model().graph.node[0].domain == "com.microsoft"
    bf16 = model_gen.unsupported_type_model().graph.input[0].type.tensor_type.elem_type
    assert bf16 == TensorProto.BFLOAT16
    with pytest.raises(onnx.shape_inference.InferenceError, match="fc2"):
        onnx.checker.check_model(model_gen.inconsistent_mlp(), full_check=True)


def test_random_input_matches_model_and_is_seeded() -> None:
    model = model_gen.cnn_classifier()
    x = model_gen.random_input(model, batch=2, seed=5)
    assert x.shape == (2, 3, 64, 64) and x.dtype == np.float32
    np.testing.assert_array_equal(x, model_gen.random_input(model, batch=2, seed=5))
    assert not np.array_equal(x, model_gen.random_input(model, batch=2, seed=6))
    assert model_gen.random_input(model_gen.fixed_batch_cnn(), batch=4).shape[0] == 1
    with pytest.raises(ValueError, match="BFLOAT16"):
        model_gen.random_input(model_gen.unsupported_type_model())
    with pytest.raises(ValueError, match="at least 1"):
        model_gen.random_input(model, batch=0)


def run_cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tools.model_gen", *map(str, args)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_cli_writes_model_and_input(tmp_path: Path) -> None:
    result = run_cli("cnn", tmp_path / "cnn.onnx", "--seed", "3", "--opset", "15")
    assert result.returncode == 0, result.stderr
    written = (tmp_path / "cnn.onnx").read_bytes()
    assert written == model_gen.model_bytes(model_gen.cnn_classifier(seed=3, opset=15))
    result = run_cli("input", tmp_path / "cnn.onnx", tmp_path / "x.npy", "--batch", "2")
    assert result.returncode == 0, result.stderr
    x = np.load(tmp_path / "x.npy", allow_pickle=False)
    assert x.shape == (2, 3, 64, 64) and x.dtype == np.float32


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["resnet", "out.onnx"],
        ["cnn"],
        ["mlp", "out.onnx", "--seed", "abc"],
        ["cnn", "out.onnx", "--opset", "5"],
        ["input", "missing.onnx", "x.npy"],
        ["input", "NOT_ONNX", "x.npy"],
        ["cnn", "no/such/dir/out.onnx"],
    ],
)
def test_cli_bad_arguments_exit_2_with_one_line(tmp_path: Path, args: list[str]) -> None:
    (tmp_path / "NOT_ONNX").write_bytes(b"\x00" * 16)
    result = run_cli(*[str(tmp_path / a) if a.endswith((".onnx", "ONNX")) else a for a in args])
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("model_gen: "), result.stderr
    assert not (tmp_path / "out.onnx").exists()


def test_the_small_cnn_is_seeded_small_and_runs() -> None:
    model = model_gen.small_cnn(seed=1)
    assert model_gen.model_bytes(model_gen.small_cnn(seed=1)) == model_gen.model_bytes(model)
    assert model_gen.model_bytes(model_gen.small_cnn(seed=2)) != model_gen.model_bytes(model)
    onnx.checker.check_model(model, full_check=True)
    assert dims(model.graph.input[0]) == ["batch", 3, 32, 32]
    assert weight_bytes(model) < 70_000  # with its input of 12 kB: quick to upload
    image = model_gen.random_input(model, batch=2, seed=1)
    (probabilities,) = session(model).run(None, {"image": image})
    assert probabilities.shape == (2, 10)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
