"""ABFT checksums as a graph transformation: the original outputs stay bit for bit (in a plain
session and in the payload's, which optimises once and loads the optimised graph), healthy runs
stay under the calibrated threshold, faults in checked layers (outputs and weights) are detected,
faults elsewhere are not claimed, and the coverage evaluation is reproducible from its seed; on
the demo CNN, a small PyTorch export and two the size of real networks (ResNet-18-style,
MobileNetV2-style)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import cache
from pathlib import Path
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
def exported(kind: str) -> onnx.ModelProto:
    return onnx.load_model_from_string(torch_models.exported_image_model(kind))


MODELS: dict[str, Callable[[], onnx.ModelProto]] = {
    "cnn": lambda: cnn_classifier(seed=1),
    "vision": lambda: exported("vision"),
    "resnet": lambda: exported("resnet"),
    "mobilenet": lambda: exported("mobilenet"),
}


@cache
def transformed(kind: str) -> tuple[onnx.ModelProto, AbftModel]:
    model = MODELS[kind]()
    return model, add_checksums(model)


@cache
def runners(kind: str) -> tuple[Runner, Runner]:
    """Runners of the model `kind` and of its ABFT form, made once."""
    model, abft = transformed(kind)
    return make_runner(model), make_runner(abft.model)


@cache
def prepared(kind: str) -> tuple[onnx.ModelProto, AbftModel, float]:
    """The model, its ABFT form and a threshold calibrated on 16 seeded inputs."""
    model, abft = transformed(kind)
    threshold = calibrate(runners(kind)[1], abft, random_feeds(model, 16, seed=100))
    return model, abft, threshold.threshold


def bits(arrays: Sequence[np.ndarray]) -> list[tuple[tuple[int, ...], bytes]]:
    return [(a.shape, a.tobytes()) for a in arrays]


def sample_feeds(model: onnx.ModelProto) -> list[dict[str, np.ndarray]]:
    """Seeded inputs of batch 1 and 3, and a black image (an all-zero input)."""
    feeds = [*random_feeds(model, 2, seed=0), *random_feeds(model, 1, seed=2, batch=3)]
    return [*feeds, {name: np.zeros_like(value) for name, value in feeds[0].items()}]


KINDS = list(MODELS)

# Of the large models, a layer of each kind: the stem, Conv + BatchNormalization (+ ReLU or
# ReLU6), a residual sum, a sum with a shortcut's Conv, the head; a depthwise Conv.
LAYERS = {
    "resnet": ["/stem/stem.0/Conv", "/blocks/blocks.3/conv1/Conv", "/blocks/blocks.3/conv2/Conv",
               "/blocks/blocks.4/shortcut/shortcut.0/Conv", "/head/Gemm"],
    "mobilenet": ["/features/features.4/layers/layers.0/Conv",
                  "/features/features.4/layers/layers.3/Conv",
                  "/features/features.4/layers/layers.6/Conv"],
}  # fmt: skip


@pytest.mark.parametrize("kind", KINDS)
def test_original_outputs_are_unchanged_bit_for_bit(kind: str) -> None:
    model, abft, _ = prepared(kind)
    onnx.checker.check_model(abft.model, full_check=True)
    original, checked = runners(kind)
    for feeds in sample_feeds(model):
        outputs = checked(feeds)
        assert bits(outputs[: abft.residual_index]) == bits(original(feeds))
        # One residual per batch item.
        (batch, *_) = next(iter(feeds.values())).shape
        assert outputs[abft.residual_index].shape == (batch,)


@pytest.mark.parametrize("kind", KINDS)
def test_original_outputs_are_unchanged_in_the_payloads_sessions(kind: str, tmp_path: Path) -> None:
    """The payload optimises a model once, then loads the optimised graph with optimisation and
    prepacking off and its weights handed over: the checks must not change what that graph
    computes either."""
    model, abft, threshold = prepared(kind)
    cache = SessionCache(2, ProviderChoice(CPU), 1)
    sessions = []
    for key, proto in [("original", model), ("abft", abft.model)]:
        path = tmp_path / f"{key}.onnx"
        path.write_bytes(proto.SerializeToString())
        sessions.append(cache.get(key, path).session)
    original, checked = sessions
    for feeds in sample_feeds(model):
        outputs = checked.run(None, feeds)
        assert bits(outputs[: abft.residual_index]) == bits(original.run(None, feeds))
        assert check(outputs[abft.residual_index], threshold)


def test_every_conv_and_gemm_is_checked_after_its_batch_normalization() -> None:
    _, abft, _ = prepared("cnn")
    assert [layer.op_type for layer in abft.layers] == ["Conv"] * 6 + ["Gemm"]
    assert abft.layer("block1.conv").output == "block1.bn"
    assert abft.layer("fc").output == "fc"
    assert abft.skipped == () and abft.checked_share == 1.0
    _, vision, _ = prepared("vision")
    # The depthwise convolution and the 1x1 maps of the squeeze-and-excitation are checked too.
    assert len(vision.layers) == 6 and vision.skipped == ()
    assert vision.layer("/depthwise/depthwise.0/Conv").output.endswith(
        "BatchNormalization_output_0"
    )
    # One checksum per column of the 1x1 map and group of 2 of its 16 channels.
    expand = vision.layer("/se/expand/Conv")
    assert (expand.checksums, expand.span) == (8, 2)


def test_residual_additions_are_checked_where_onnxruntime_fuses_them() -> None:
    """A Conv whose output a residual Add alone reads is checked on the sum (onnxruntime adds
    the other operand inside the Conv); a downsampling shortcut's Conv shares that check."""
    _, resnet, _ = prepared("resnet")
    assert len(resnet.layers) == 21 and resnet.skipped == ()
    first = resnet.layer("/blocks/blocks.0/conv1/Conv")
    assert first.output == "/blocks/blocks.0/bn1/BatchNormalization_output_0"
    assert resnet.layer("/blocks/blocks.0/conv2/Conv").output == "/blocks/blocks.0/Add_output_0"
    second, shortcut = (
        resnet.layer(f"/blocks/blocks.2/{n}/Conv") for n in ("conv2", "shortcut/shortcut.0")
    )
    assert second.output == shortcut.output == "/blocks/blocks.2/Add_output_0"
    _, mobilenet, _ = prepared("mobilenet")
    assert len(mobilenet.layers) == 53 and mobilenet.skipped == ()
    projection = mobilenet.layer("/features/features.5/layers/layers.6/Conv")
    assert projection.output == "/features/features.5/Add_output_0"
    # ReLU6 (a Clip) after a checked tensor reads a unit Conv it is fused into, not the tensor.
    checked = {layer.output for layer in mobilenet.layers}
    clips = [n for n in mobilenet.model.graph.node if n.op_type == "Clip"]
    assert len(clips) == 35 and not any(clip.input[0] in checked for clip in clips)
    assert all(clip.input[0].endswith("unit_conv") for clip in clips)


@pytest.mark.parametrize("kind", KINDS)
def test_healthy_inputs_stay_under_the_threshold(kind: str) -> None:
    model, abft, threshold = prepared(kind)
    run = runners(kind)[1]
    count = 6 if kind in LAYERS else 12  # the large models: half as many
    healthy = random_feeds(model, count, seed=200) + random_feeds(model, 2, seed=201, batch=4)
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


@pytest.mark.parametrize("kind", KINDS)
def test_a_large_fault_in_any_checked_layer_is_detected(kind: str) -> None:
    model, abft, threshold = prepared(kind)
    (feeds,) = random_feeds(model, 1, seed=7)
    names = LAYERS.get(kind, [layer.node for layer in abft.layers])
    for layer in map(abft.layer, names):
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


def test_a_fault_in_a_skip_operand_is_not_mistaken_for_the_convs() -> None:
    """A residual block's input feeds its first Conv and the sum: a fault there is a fault of
    the block before (after its check), which both checks account for."""
    model, abft, threshold = prepared("resnet")
    (feeds,) = random_feeds(model, 1, seed=7)
    residual, changed = inject_once(abft, "/blocks/blocks.0/Relu_1_output_0", feeds, 0.5)
    assert changed and check(residual, threshold)


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


@pytest.mark.parametrize(
    ("kind", "node"),
    [("cnn", "block2.conv"), ("resnet", "/blocks/blocks.2/shortcut/shortcut.0/Conv"),
     ("mobilenet", "/features/features.4/layers/layers.3/Conv")],  # depthwise
)  # fmt: skip
def test_a_large_weight_fault_is_detected(kind: str, node: str) -> None:
    model, abft, threshold = prepared(kind)
    (feeds,) = random_feeds(model, 1, seed=7)
    # The top exponent bit of one weight: a value of 1e38 or so, in the weights alone.
    faulty = abft.model.__deepcopy__()
    name = abft.layer(node).weight
    tensor = next(t for t in faulty.graph.initializer if t.name == name)
    weights = numpy_helper.to_array(tensor).copy()
    weights.reshape(-1).view(np.uint32)[100] ^= np.uint32(1 << 30)
    tensor.CopyFrom(numpy_helper.from_array(weights, tensor.name))
    assert not check(make_runner(faulty)(feeds)[abft.residual_index], threshold)


def test_weight_faults_are_tallied() -> None:
    model, abft, threshold = prepared("cnn")
    (feeds,) = random_feeds(model, 1, seed=7)

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
    residual: str | None = None,
    activation: str = "Relu",
) -> onnx.ModelProto:
    """One Conv (then, by default, a per-channel Mul and Add of constants) and an activation;
    the Conv reads a Tanh of the model input, or the input itself (`on_input`). `residual`
    adds its input ("identity") or a 1x1 Conv of it ("conv", a shortcut) before the
    activation, as output "sum"."""
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
    if residual is not None:
        skip = "t"
        if residual == "conv":
            shortcut = rng.standard_normal((out_channels, channels, 1, 1)).astype(np.float32)
            inits.append(numpy_helper.from_array(shortcut, "w_shortcut"))
            nodes.append(helper.make_node("Conv", ["t", "w_shortcut"], ["s"], name="shortcut",
                                          strides=[stride, stride]))  # fmt: skip
            skip = "s"
        nodes.append(helper.make_node("Add", [last, skip], ["sum"]))
        last = "sum"
    if activation == "Clip":
        inits += [
            numpy_helper.from_array(np.array(v, np.float32), n) for v, n in [(0, "lo"), (6, "hi")]
        ]
        nodes.append(helper.make_node("Clip", [last, "lo", "hi"], ["out"]))
    else:
        nodes.append(helper.make_node(activation, [last], ["out"]))
    graph = helper.make_graph(
        nodes,
        "conv",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", channels, size, size])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["n", out_channels, "h", "w"])],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=7)


CONVS: dict[str, dict[str, Any]] = {
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


# With the Conv's bias alone (no Mul and Add after it), onnxruntime adds a shortcut's Conv
# output inside the Conv, into which it also fuses the activation (the ResNet- and
# MobileNet-style exports have that for identity residuals too).
CONVS.update({
    "identity residual": {"channels": 24, "residual": "identity"},
    "identity residual, no affine nodes": {"channels": 24, "residual": "identity",
                                           "affine_after": False},
    "shortcut residual, strided": {"residual": "conv", "stride": 2},
    "shortcut residual added in the Conv": {"residual": "conv", "affine_after": False},
    "ReLU6": {"activation": "Clip", "group": 4},
    "LeakyRelu after a residual": {"channels": 24, "residual": "identity",
                                   "activation": "LeakyRelu", "affine_after": False},
})  # fmt: skip
# Column checksums over 8 channel groups (the default) and each channel alone on every variant;
# blocks of several columns (kernels widened over them) on those that stride, dilate or group.
CHECKSUMS = {"groups 8": {}, "each channel, 16 positions": {"groups": 0, "min_positions": 16}}
WIDE_BLOCKS = ["strided", "strided, last row unread", "dilated", "depthwise strided",
               "same upper", "shortcut residual, strided", "ReLU6"]  # fmt: skip
CONV_CASES = [
    *((name, checksums) for name in CONVS for checksums in CHECKSUMS),
    *((name, "groups 8, 16 positions") for name in WIDE_BLOCKS),
]
CHECKSUMS["groups 8, 16 positions"] = {"min_positions": 16}


@pytest.mark.parametrize(("variant", "checksums"), CONV_CASES)
def test_conv_variants_are_checked_exactly(variant: str, checksums: str) -> None:
    settings = CONVS[variant]
    model = conv_model(**settings)
    abft = add_checksums(model, **CHECKSUMS[checksums])
    layer, *shortcut = abft.layers
    expected = "shifted" if settings.get("affine_after", True) else "y"
    assert layer.output == ("sum" if "residual" in settings else expected)
    assert [s.node for s in shortcut] == (
        ["shortcut"] if settings.get("residual") == "conv" else []
    )
    assert all(s.output == layer.output for s in shortcut)
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
    for settings in [{"groups": -1}, {"min_positions": 0}, {"min_fan_in": -1}]:
        with pytest.raises(AbftError, match="expected"):
            add_checksums(model, **settings)


def test_memory_bound_layers_can_be_left_out_by_their_fan_in() -> None:
    """min_fan_in leaves out the depthwise convolutions (9 products per output value), whose
    checks cost about as much as the layers; what the others check stays exact."""
    model = exported("mobilenet")
    abft = add_checksums(model, min_fan_in=10)
    assert len(abft.layers) == 53 - 17 and len(abft.skipped) == 17
    assert all("9 products per output value" in s.reason and s.macs > 0 for s in abft.skipped)
    assert 0.9 < abft.checked_share < 0.97
    # The ReLU6 of an unchecked depthwise Conv reads it directly: its fusion is intact.
    skipped = {s.node for s in abft.skipped}
    ends = {
        n.output[0]
        for n in abft.model.graph.node
        if n.op_type == "BatchNormalization"
        and any(c.name in skipped and c.output[0] == n.input[0] for c in abft.model.graph.node)
    }
    assert sum(1 for n in abft.model.graph.node if n.op_type == "Clip" and n.input[0] in ends) == 17
    (feeds,) = random_feeds(model, 1, seed=5)
    outputs = make_runner(abft.model)(feeds)
    assert bits(outputs[:1]) == bits(make_runner(model)(feeds))
    assert largest(outputs[1]) < 1e-4


def test_a_residual_add_fused_into_an_unchecked_conv_is_not_read() -> None:
    """onnxruntime adds a residual in place into the Conv of the Add's first operand when that
    has one reader: a Conv left unchecked there keeps its one reader, and the checked Conv of
    the second operand is checked on its own output."""
    model = conv_model(channels=24, residual="conv", affine_after=False)
    add = next(n for n in model.graph.node if n.op_type == "Add" and n.output[0] == "sum")
    add.input.reverse()  # the shortcut's Conv first
    abft = add_checksums(model, min_macs=300_000)
    (layer,) = abft.layers
    (skipped,) = abft.skipped
    assert (layer.output, skipped.node, skipped.macs) == ("y", "shortcut", 24 * 24 * 400)
    assert abft.checked_share == pytest.approx(layer.macs / (layer.macs + skipped.macs))
    original, checked = make_runner(model), make_runner(abft.model)
    for feeds in random_feeds(model, 2, seed=4, batch=2):
        outputs = checked(feeds)
        assert bits(outputs[:1]) == bits(original(feeds))
        assert largest(outputs[1]) < 1e-4


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
