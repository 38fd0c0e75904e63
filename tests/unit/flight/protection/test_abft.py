"""ABFT checksums as a graph transformation: the original outputs stay bit for bit, healthy runs
stay under the calibrated threshold, faults in checked layers (outputs and weights) are detected,
faults elsewhere are not claimed, and the coverage evaluation is reproducible from its seed."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import cache
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from flight.jobs.executor import SessionCache
from flight.jobs.providers import CPU, ProviderChoice
from flight.protection.abft import (
    FAULT_INPUT,
    RESIDUAL_OUTPUT,
    AbftError,
    AbftModel,
    Outcome,
    Runner,
    Trial,
    add_checksums,
    calibrate,
    check,
    fault_coverage,
    injection_runner,
    largest,
    random_feeds,
    weight_fault_coverage,
)
from flight.protection.faults import FaultModel
from tools.model_gen import cnn_classifier, mlp

torch_models = pytest.importorskip("tools.torch_models")


def make_runner(model: onnx.ModelProto) -> Runner:
    """A session with the payload's options (one intra-op thread, as on the board)."""
    options = SessionCache(1, ProviderChoice(CPU), 1).options()
    session = ort.InferenceSession(model.SerializeToString(), sess_options=options, providers=[CPU])

    def run(feeds: Mapping[str, np.ndarray]) -> Sequence[np.ndarray]:
        return session.run(None, dict(feeds))

    return run


@cache
def vision_model() -> onnx.ModelProto:
    net = torch_models.build("vision", seed=3, opset=13)
    data = torch_models.export(net, torch_models.example_input("vision"), 13, "image")
    return onnx.load_model_from_string(data)


MODELS: dict[str, Callable[[], onnx.ModelProto]] = {
    "cnn": lambda: cnn_classifier(seed=1),
    "vision": vision_model,
}


@cache
def prepared(kind: str) -> tuple[onnx.ModelProto, AbftModel, float]:
    """The model, its ABFT form and a threshold calibrated on 16 seeded inputs."""
    model = MODELS[kind]()
    abft = add_checksums(model)
    threshold = calibrate(make_runner(abft.model), abft, random_feeds(model, 16, seed=100))
    return model, abft, threshold.threshold


def bits(arrays: Sequence[np.ndarray]) -> list[tuple[tuple[int, ...], bytes]]:
    return [(a.shape, a.tobytes()) for a in arrays]


@pytest.mark.parametrize("kind", ["cnn", "vision"])
def test_original_outputs_are_unchanged_bit_for_bit(kind: str) -> None:
    model, abft, _ = prepared(kind)
    onnx.checker.check_model(abft.model, full_check=True)
    original, checked = make_runner(model), make_runner(abft.model)
    for batch, seed in [(1, 0), (1, 1), (3, 2)]:
        (feeds,) = random_feeds(model, 1, seed=seed, batch=batch)
        outputs = checked(feeds)
        assert bits(outputs[: abft.residual_index]) == bits(original(feeds))
        # One residual per batch item.
        assert outputs[abft.residual_index].shape == (batch,)


def test_every_conv_and_gemm_is_checked_after_its_batch_normalization() -> None:
    _, abft, _ = prepared("cnn")
    assert [layer.op_type for layer in abft.layers] == ["Conv"] * 6 + ["Gemm"]
    assert abft.layer("block1.conv").output == "block1.bn"
    assert abft.layer("fc").output == "fc"
    assert abft.skipped == ()
    _, vision, _ = prepared("vision")
    # The depthwise convolution and the 1x1 maps of the squeeze-and-excitation are checked too.
    assert len(vision.layers) == 6 and vision.skipped == ()
    assert vision.layer("/depthwise/depthwise.0/Conv").output.endswith(
        "BatchNormalization_output_0"
    )
    assert vision.layer("/se/expand/Conv").span == 16  # across the channels of a 1x1 map


@pytest.mark.parametrize("kind", ["cnn", "vision"])
def test_healthy_inputs_stay_under_the_threshold(kind: str) -> None:
    model, abft, threshold = prepared(kind)
    run = make_runner(abft.model)
    healthy = random_feeds(model, 12, seed=200) + random_feeds(model, 2, seed=201, batch=4)
    (zeros,) = random_feeds(model, 1, seed=0)
    healthy.append({name: np.zeros_like(value) for name, value in zeros.items()})
    for feeds in healthy:
        residual = run(feeds)[abft.residual_index]
        assert check(residual, threshold), f"false alarm: {residual} over {threshold}"
    # The threshold is a margin over rounding, far from the size of a fault.
    assert threshold < 1e-3


def inject_once(
    abft: AbftModel, target: str, feeds: Mapping[str, np.ndarray], change: float
) -> tuple[np.ndarray, bool]:
    """The residual and whether the original outputs changed, with one value of `target` set
    to `change` times the tensor's largest magnitude above zero (so a Relu passes it on)."""
    run, clean, zero = injection_runner(abft, make_runner, feeds, target)
    values = clean[-1]
    delta = zero.copy()
    position = np.unravel_index(values.size // 3, values.shape)
    delta[position] = change * float(np.abs(values).max()) + abs(float(values[position]))
    faulty = run({**feeds, FAULT_INPUT: delta})
    originals = slice(0, abft.residual_index)
    changed = bits(faulty[originals]) != bits(clean[originals])
    return faulty[abft.residual_index], changed


@pytest.mark.parametrize("kind", ["cnn", "vision"])
def test_a_large_fault_in_any_checked_layer_is_detected(kind: str) -> None:
    model, abft, threshold = prepared(kind)
    (feeds,) = random_feeds(model, 1, seed=7)
    for layer in abft.layers:
        residual, _ = inject_once(abft, layer.output, feeds, 0.5)
        assert not check(residual, threshold), f"{layer.node}: {residual} under {threshold}"
    # A non-finite value counts as a fault although ReduceMax skips NaN.
    residual, _ = inject_once(abft, abft.layers[1].output, feeds, np.nan)
    assert np.isnan(largest(residual)) and not check(residual, threshold)


def test_a_fault_outside_the_checked_layers_is_not_claimed() -> None:
    model, abft, threshold = prepared("cnn")
    (feeds,) = random_feeds(model, 1, seed=7)
    # After the activation and pooling, the fault enters the next layer and its checksum
    # alike; after the softmax, no check reads it at all.
    for target in ["block1.pool", "probabilities"]:
        residual, changed = inject_once(abft, target, feeds, 0.5)
        assert changed and check(residual, threshold), target
    report = fault_coverage(abft, make_runner, feeds, FaultModel.VALUE, 12, seed=3,
                            threshold=threshold, targets=["block2.pool"])  # fmt: skip
    assert report.counts[Outcome.DETECTED] == 0
    assert report.counts[Outcome.SDC] > 0


def test_coverage_is_reproducible_from_its_seed() -> None:
    model, abft, threshold = prepared("vision")
    (feeds,) = random_feeds(model, 1, seed=7)

    def campaign(seed: int) -> tuple[Trial, ...]:
        report = fault_coverage(abft, make_runner, feeds, FaultModel.BIT, 60, seed=seed,
                                threshold=threshold)  # fmt: skip
        assert sum(report.counts.values()) == 60
        return report.trials

    first = campaign(5)
    assert repr(campaign(5)) == repr(first)  # repr: a NaN residual equals itself there
    assert repr(campaign(6)) != repr(first)
    # Bit flips in the exponent are caught, those in the low mantissa bits are not.
    outcomes = {trial.outcome for trial in first}
    assert Outcome.DETECTED in outcomes and len(outcomes) >= 2


def test_fault_models_are_tallied() -> None:
    model, abft, threshold = prepared("cnn")
    (feeds,) = random_feeds(model, 1, seed=7)
    report = fault_coverage(abft, make_runner, feeds, FaultModel.ROW, 8, seed=1,
                            threshold=threshold)  # fmt: skip
    assert {t.target for t in report.trials} <= {layer.output for layer in abft.layers}
    assert all(2 <= t.values <= 16 for t in report.trials)
    assert report.share(Outcome.DETECTED) + report.share(Outcome.SDC) + report.share(
        Outcome.MASKED
    ) == pytest.approx(1.0)
    assert report.summary().startswith("ROW: 8 trials, masked ")
    changed = [t for t in report.trials if t.changed]
    detected = [t for t in changed if t.outcome is Outcome.DETECTED]
    assert report.coverage() == (len(detected) / len(changed) if changed else 1.0)
    assert all(t.changed for t in report.trials if t.outcome is Outcome.SDC)
    assert not any(t.changed for t in report.trials if t.outcome is Outcome.MASKED)


def test_weight_faults_are_detected() -> None:
    model, abft, threshold = prepared("cnn")
    (feeds,) = random_feeds(model, 1, seed=7)
    # The top exponent bit of one weight: a value of 1e38 or so, in the weights alone.
    faulty = abft.model.__deepcopy__()
    tensor = next(t for t in faulty.graph.initializer if t.name == "block2.conv.weight")
    weights = numpy_helper.to_array(tensor).copy()
    weights.reshape(-1).view(np.uint32)[100] ^= np.uint32(1 << 30)
    tensor.CopyFrom(numpy_helper.from_array(weights, tensor.name))
    assert not check(make_runner(faulty)(feeds)[abft.residual_index], threshold)

    report = weight_fault_coverage(abft, make_runner, feeds, 12, seed=4, threshold=threshold)
    assert report.fault is FaultModel.BIT and len(report.trials) == 12
    assert report.counts[Outcome.DETECTED] > 0
    assert {t.target for t in report.trials} <= {layer.weight for layer in abft.layers}


def conv_model(
    *,
    channels: int = 16,
    size: int = 20,
    kernel: int = 3,
    stride: int = 1,
    pads: int | None = 1,
    dilation: int = 1,
    group: int = 1,
    auto_pad: str | None = None,
    bias: bool = True,
    affine_after: bool = True,
    on_input: bool = False,
) -> onnx.ModelProto:
    """One Conv (then, by default, a per-channel Mul and Add of constants) and a Relu; the
    Conv reads a Tanh of the model input, or the input itself (`on_input`)."""
    rng = np.random.default_rng(9)
    out_channels = 24 if group == 1 else channels
    weight = rng.standard_normal((out_channels, channels // group, kernel, kernel))
    inits = [numpy_helper.from_array(weight.astype(np.float32), "w")]
    inputs = ["x" if on_input else "t", "w"]
    if bias:
        bias_values = rng.standard_normal(out_channels).astype(np.float32)
        inits.append(numpy_helper.from_array(bias_values, "b"))
        inputs.append("b")
    attrs: dict[str, Any] = {"kernel_shape": [kernel, kernel], "strides": [stride, stride],
                                "dilations": [dilation, dilation], "group": group}  # fmt: skip
    if auto_pad:
        attrs["auto_pad"] = auto_pad
    elif pads is not None:
        attrs["pads"] = [pads] * 4
    nodes = [
        helper.make_node("Tanh", ["x"], ["t"]),
        helper.make_node("Conv", inputs, ["y"], name="conv", **attrs),
    ]
    last = "y"
    if affine_after:
        scale = rng.uniform(0.5, 2, (out_channels, 1, 1)).astype(np.float32)
        shift = rng.standard_normal((1, out_channels, 1, 1)).astype(np.float32)
        inits += [numpy_helper.from_array(scale, "scale"), numpy_helper.from_array(shift, "shift")]
        nodes += [helper.make_node("Mul", ["y", "scale"], ["scaled"]),
                  helper.make_node("Add", ["shift", "scaled"], ["shifted"])]  # fmt: skip
        last = "shifted"
    nodes.append(helper.make_node("Relu", [last], ["out"]))
    graph = helper.make_graph(
        nodes,
        "conv",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", channels, size, size])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["n", out_channels, "h", "w"])],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=7)


CONVS = {
    "3x3": {},
    "strided": {"stride": 2},
    "strided, last row unread": {"stride": 2, "pads": 0, "size": 22},
    "5x5 no bias": {"kernel": 5, "pads": 2, "bias": False},
    "dilated": {"dilation": 2, "pads": 2},
    "grouped": {"group": 4},
    "depthwise strided": {"group": 16, "stride": 2},
    "same upper": {"auto_pad": "SAME_UPPER", "stride": 2},
    "valid, no affine": {"auto_pad": "VALID", "affine_after": False},
    "1x1 map": {"size": 3, "pads": 0},
    "on the input": {"on_input": True},
    "strided on the input, last row unread": {"on_input": True, "stride": 2, "pads": 0, "size": 22},
}


@pytest.mark.parametrize("settings", CONVS.values(), ids=CONVS.keys())
def test_conv_variants_are_checked_exactly(settings: dict[str, object]) -> None:
    model = conv_model(**settings)  # type: ignore[arg-type]
    abft = add_checksums(model, min_positions=16)
    (layer,) = abft.layers
    assert layer.output == ("shifted" if settings.get("affine_after", True) else "y")
    onnx.checker.check_model(abft.model, full_check=True)
    feeds = random_feeds(model, 3, seed=1, batch=2)
    original, checked = make_runner(model), make_runner(abft.model)
    for feed in feeds:
        outputs = checked(feed)
        assert bits(outputs[:1]) == bits(original(feed))
        # Rounding only: a checksum formula off by one row or column would give O(1).
        assert largest(outputs[1]) < 1e-4
    residual, changed = inject_once(abft, layer.output, feeds[0], 0.05)
    assert changed and largest(residual) > 1e-3


def test_matmul_and_its_bias_are_checked_per_row() -> None:
    rng = np.random.default_rng(2)
    weight = rng.standard_normal((16, 12)).astype(np.float32)
    bias = rng.standard_normal(12).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "w"], ["y"], name="proj"),
            helper.make_node("Add", ["y", "b"], ["z"]),
            helper.make_node("Tanh", ["z"], ["out"]),
        ],
        "proj",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 5, 16])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["n", 5, 12])],
        [numpy_helper.from_array(weight, "w"), numpy_helper.from_array(bias, "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=8)
    abft = add_checksums(model)
    (layer,) = abft.layers
    assert (layer.output, layer.checksums, layer.span) == ("z", 5, 12)
    onnx.checker.check_model(abft.model, full_check=True)
    (feeds,) = random_feeds(model, 1, seed=3, batch=2)
    outputs = make_runner(abft.model)(feeds)
    assert bits(outputs[:1]) == bits(make_runner(model)(feeds))
    assert outputs[1].shape == (2,) and largest(outputs[1]) < 1e-5
    residual, _ = inject_once(abft, "z", feeds, 0.05)
    assert largest(residual) > 1e-3


def test_nodes_without_constant_weights_are_skipped_with_the_reason() -> None:
    model = mlp(widths=(8, 16, 4))
    weight = next(t for t in model.graph.initializer if t.name == "fc1.weight")
    model.graph.initializer.remove(weight)
    as_input = helper.make_tensor_value_info("fc1.weight", TensorProto.FLOAT, [16, 8])
    model.graph.input.append(as_input)
    abft = add_checksums(model)
    assert [layer.node for layer in abft.layers] == ["logits"]
    (skipped,) = abft.skipped
    assert skipped.node == "fc1" and "not a constant" in skipped.reason
    assert abft.model.graph.output[-1].name == RESIDUAL_OUTPUT

    with pytest.raises(AbftError, match="no Conv, Gemm or MatMul node can be checked"):
        add_checksums(mlp(widths=(8, 16, 4)), min_macs=10**6)


def test_check_counts_nan_as_a_fault() -> None:
    assert check(np.array([1e-6, 2e-6], np.float32), 1e-5)
    assert not check(np.array([1e-6, 2e-5], np.float32), 1e-5)
    assert not check(np.array([np.nan, 0.0], np.float32), 1e-5)
    assert largest(np.array([1.0, np.nan])) != largest(np.array([1.0, np.nan]))  # NaN


def test_calibration_is_a_margin_over_the_healthy_maximum() -> None:
    model = conv_model()
    abft = add_checksums(model)
    feeds = random_feeds(model, 5, seed=3)
    run = make_runner(abft.model)
    calibration = calibrate(run, abft, feeds, margin=4.0)
    worst = max(largest(run(f)[abft.residual_index]) for f in feeds)
    assert calibration.healthy_max == pytest.approx(worst)
    assert calibration.threshold == pytest.approx(4.0 * worst)
    assert calibration.runs == 5
    with pytest.raises(AbftError, match="margin"):
        calibrate(run, abft, feeds, margin=0.5)
    with pytest.raises(AbftError, match="at least one input"):
        calibrate(run, abft, [])
