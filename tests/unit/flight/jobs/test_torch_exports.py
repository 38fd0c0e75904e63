"""Models exported from PyTorch at opsets 11 to 17 pass the onboard validation, keep their
dynamic batch axis, run on the payload's executor as they run in PyTorch, and an input that
does not fit their fixed axes is refused with its reason."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from flight.jobs.executor import Executor, SessionCache  # noqa: E402
from flight.jobs.model_check import (  # noqa: E402
    InputMismatch,
    InputProblem,
    check_input,
    validate_model,
)
from flight.jobs.providers import CPU, ProviderChoice  # noqa: E402
from flight.jobs.redundancy import Redundancy  # noqa: E402
from tools import torch_models  # noqa: E402

OPSETS = range(11, 18)
INPUT = {"vision": "image", "resnet": "image", "mobilenet": "image", "mlp": "features"}
# The small models at every opset; those the size of real networks (9 to 11 MB, up to a second
# to export) at the first and the last.
CASES = [
    *((kind, opset) for kind in ("vision", "mlp") for opset in OPSETS),
    *((kind, opset) for kind in ("resnet", "mobilenet") for opset in (OPSETS[0], OPSETS[-1])),
]


@pytest.mark.parametrize(("kind", "opset"), CASES)
def test_pytorch_exports_validate_and_run_as_in_pytorch(
    kind: str, opset: int, tmp_path: Path
) -> None:
    model = torch_models.build(kind, seed=3, opset=opset)
    example = torch_models.example_input(kind, batch=1)
    data = torch_models.export(model, example, opset, INPUT[kind])
    signature = validate_model(data, max_size=64 * 2**20)
    assert signature.opset == opset
    (spec,) = signature.inputs
    assert spec.name == INPUT[kind] and spec.dtype == "float32" and spec.shape[0] is None
    if kind == "vision":
        assert {"Conv", "BatchNormalization", "Resize", "Concat"} <= signature.operators
        assert {"HardSigmoid"} <= signature.operators  # and HardSwish, or its opset-13 form
    if kind == "resnet":
        assert {"Conv", "BatchNormalization", "Relu", "Add", "MaxPool"} <= signature.operators
    if kind == "mobilenet":
        assert {"Conv", "BatchNormalization", "Clip", "Add"} <= signature.operators  # ReLU6
    if kind in ("resnet", "mobilenet"):
        assert len(data) > 8 * 2**20  # the size of a real network's weights
    if kind == "mlp" and opset >= 17:
        assert "LayerNormalization" in signature.operators

    batch = torch_models.example_input(kind, batch=3, seed=9)
    path = tmp_path / "model.onnx"
    path.write_bytes(data)
    executor = Executor(SessionCache(1, ProviderChoice(CPU)))
    feeds = check_input(signature, batch.numpy())
    result = executor.execute("k", path, feeds, Redundancy.TMR)
    (output,) = result.outputs.values()
    with torch.no_grad():
        expected = model(batch).numpy()
    assert output.shape == expected.shape and result.disagreements == 0
    np.testing.assert_allclose(output, expected, rtol=1e-4, atol=1e-5)


def test_an_unknown_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="expected one of"):
        torch_models.build("transformer")


def test_an_input_that_breaks_a_fixed_axis_is_refused() -> None:
    model = torch_models.build("vision", seed=3)
    data = torch_models.export(model, torch_models.example_input("vision"), 13, "image")
    signature = validate_model(data, max_size=10 * 2**20)
    wrong = np.zeros((2, 3, 32, 64), np.float32)  # the batch may vary, the height may not
    with pytest.raises(InputMismatch) as refused:
        check_input(signature, wrong)
    assert refused.value.reason is InputProblem.WRONG_DIMENSION
    assert "axis 2 is 32" in str(refused.value)
