"""Owned weights on real onnxruntime (CPU): inference reads them, their CRCs find upsets, and a
repair from the golden source restores them in place."""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from flight.jobs.executor import LoadedModel, SessionCache, reference_session
from flight.jobs.model_check import validate_model
from flight.jobs.providers import CPU, ProviderChoice
from flight.protection import known_answer, weights
from flight.protection.weights import (
    RepairReport,
    WeightError,
    WeightSet,
    crc_of,
    initializer_arrays,
    owned_session_options,
)
from tools import model_gen

ON_CPU = ProviderChoice(CPU)
MAX_MODEL_BYTES = 1 << 24


def gemm_model() -> bytes:
    """One Gemm layer (features[N,8] -> logits[N,4]) with no activation: every weight counts."""
    return model_gen.model_bytes(model_gen.mlp(widths=(8, 4)))


def relu_mlp() -> bytes:
    """Two Gemm layers with a Relu between (features[N,8] -> logits[N,4])."""
    return model_gen.model_bytes(model_gen.mlp(widths=(8, 16, 4)))


def cnn() -> bytes:
    """The 3.6 MB demo CNN: after optimisation its weights are NCHWc-reordered and BN-folded."""
    return model_gen.model_bytes(model_gen.cnn_classifier())


def resize_model() -> bytes:
    """x[1,2,3,3] -> Resize(scales 1,1,2,2) -> *gain +shift -> y[1,2,6,6].

    Nothing here is rewritten by the optimiser, so the Resize scales stay an initializer, which
    the CPU Resize kernel reads once, when the session is created.
    """
    rng = np.random.default_rng(3)
    initializers = [
        numpy_helper.from_array(np.zeros(0, np.float32), "roi"),
        numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales"),
        numpy_helper.from_array(rng.uniform(1, 3, (1, 2, 1, 1)).astype(np.float32), "gain"),
        numpy_helper.from_array(rng.uniform(-1, 1, (1, 2, 1, 1)).astype(np.float32), "shift"),
    ]
    nodes = [
        helper.make_node("Resize", ["x", "roi", "scales"], ["up"], mode="nearest"),
        helper.make_node("Mul", ["up", "gain"], ["scaled"]),
        helper.make_node("Add", ["scaled", "shift"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "resize",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 3, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 6, 6])],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=7)
    onnx.checker.check_model(model, full_check=True)
    return model.SerializeToString()


def load(data: bytes) -> LoadedModel:
    """A model loaded as the payload loads it on the CPU: owned weights."""
    loaded = SessionCache(1, ON_CPU, intra_op_num_threads=1).get("model", lambda: data)
    assert loaded.weights is not None
    return loaded


def answer_feeds(data: bytes) -> dict[str, np.ndarray]:
    """The model's known-answer input."""
    signature = validate_model(data, max_size=MAX_MODEL_BYTES)
    return known_answer.known_answer_input(signature, hashlib.sha256(data).digest())


def run(session: ort.InferenceSession, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(None, feeds), strict=True))


def same_bits(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> bool:
    return a.keys() == b.keys() and all(
        a[k].dtype == b[k].dtype and a[k].shape == b[k].shape and a[k].tobytes() == b[k].tobytes()
        for k in a
    )


def flip_word(array: np.ndarray, index: int) -> int:
    """Flip one bit of float32 element `index` so that its value changes by far: the lowest
    exponent bit (x2 or x0.5), or for a zero the bit that makes it 2.0; the mask, for undo()."""
    words = array.reshape(-1).view(np.uint32)
    mask = 1 << 23 if words[index] & 0x7FFFFFFF else 1 << 30
    words[index] ^= np.uint32(mask)
    return mask


def undo(array: np.ndarray, index: int, mask: int) -> None:
    array.reshape(-1).view(np.uint32)[index] ^= np.uint32(mask)


def by_magnitude(array: np.ndarray) -> list[int]:
    """Element indices, largest magnitude first."""
    return [int(i) for i in np.argsort(-np.abs(array.reshape(-1)), kind="stable")]


# --- what inference reads ------------------------------------------------------------------------


@pytest.mark.parametrize("make", [gemm_model, relu_mlp, cnn, resize_model])
def test_intact_owned_weights_compute_what_the_reference_session_computes(
    make: Callable[[], bytes],
) -> None:
    data = make()
    loaded = load(data)
    feeds = answer_feeds(data)
    if "features" in feeds:  # the MLPs take a batch: more rows, more kernels' paths
        feeds = {"features": np.random.default_rng(5).standard_normal((3, 8)).astype(np.float32)}
    assert same_bits(run(loaded.session, feeds), run(reference_session(data), feeds))


@dataclass(frozen=True)
class Reads:
    """Which owned tensors a run reads (a flip changes the next inference) and which not."""

    at_run_time: frozenset[str]
    not_at_run_time: frozenset[str]


def probe_each_tensor(loaded: LoadedModel, feeds: dict[str, np.ndarray], tries: int = 32) -> Reads:
    """Flip one bit in each owned tensor (restoring it after) and run the model: a tensor is read
    at run time when some single flip changes the outputs (largest elements tried first, at
    most `tries`; a Relu can hide one element's flip when its unit is inactive for `feeds`)."""
    assert loaded.weights is not None
    clean = run(loaded.session, feeds)
    read, unread = set(), set()
    for name, array in loaded.weights.arrays.items():
        if array.size == 0:
            continue  # nothing to flip (an empty Resize roi)
        for index in by_magnitude(array)[:tries]:
            mask = flip_word(array, index)
            assert loaded.weights.corrupt() == [name]  # the scrubber's CRC sees every tensor
            changed = not same_bits(run(loaded.session, feeds), clean)
            undo(array, index, mask)
            if changed:
                read.add(name)
                break
        else:
            unread.add(name)
        assert loaded.weights.corrupt() == []
    assert same_bits(run(loaded.session, feeds), clean)
    return Reads(frozenset(read), frozenset(unread))


@pytest.mark.parametrize("make", [gemm_model, relu_mlp, cnn])
def test_a_bit_flipped_in_any_owned_tensor_changes_the_next_inference(
    make: Callable[[], bytes],
) -> None:
    data = make()
    loaded = load(data)
    assert loaded.weights is not None
    reads = probe_each_tensor(loaded, answer_feeds(data))
    # Every kernel of these models reads its weights from the owned arrays at each run, and the
    # known-answer input alone shows a flip in each.
    assert reads.not_at_run_time == frozenset()
    assert reads.at_run_time == {k for k, a in loaded.weights.arrays.items() if a.size}


def test_the_cnn_resize_scales_live_in_the_kernel_where_only_the_known_answer_sees_them() -> None:
    data = cnn()
    loaded = load(data)
    assert loaded.weights is not None
    original = {t.name for t in onnx.load_model_from_string(data).graph.initializer}
    # The optimiser folds the Resize roi and scales into its NCHWc Upsample node: they are not
    # owned arrays, so no CRC covers them; the known answer runs through that node.
    assert {"up.roi", "up.scales"} <= original
    assert not {"up.roi", "up.scales"} & loaded.weights.arrays.keys()


def test_tensors_read_once_at_creation_are_still_covered() -> None:
    data = resize_model()
    loaded = load(data)
    feeds = answer_feeds(data)
    reads = probe_each_tensor(loaded, feeds)
    # The Resize kernel copies its constant scales when the session is created: a flip in the
    # owned array changes nothing (the CRC still finds it, see probe_each_tensor)...
    assert reads.not_at_run_time == {"scales"}
    assert reads.at_run_time == {"gain", "shift"}
    # ...while the same flip in the kernel's own copy (a session created with it) changes the
    # known answer: the known answer covers what the CRCs cannot reach.
    answer = known_answer.record(CPU, run(loaded.session, feeds))
    model = onnx.load_model_from_string(data)
    for tensor in model.graph.initializer:
        if tensor.name == "scales":
            scales = numpy_helper.to_array(tensor).copy()
            flip_word(scales, by_magnitude(scales)[0])  # 2.0 -> 4.0
            tensor.CopyFrom(numpy_helper.from_array(scales, "scales"))
    upset = reference_session(model.SerializeToString())
    assert not answer.matches(run(upset, feeds), 0.0)
    assert answer.matches(run(loaded.session, feeds), 0.0)


# --- WeightSet -----------------------------------------------------------------------------------


class Golden:
    """A golden source giving copies of fixed arrays, counting its calls."""

    def __init__(self, arrays: dict[str, np.ndarray]) -> None:
        self.arrays = {k: a.copy() for k, a in arrays.items()}
        self.calls = 0

    def __call__(self) -> dict[str, np.ndarray]:
        self.calls += 1
        return {k: a.copy() for k, a in self.arrays.items()}


def sample_arrays() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(11)
    return {
        "a": rng.standard_normal((4, 5)).astype(np.float32),
        "b": rng.standard_normal(7).astype(np.float64),
        "c": rng.integers(-9, 9, (3, 3)).astype(np.int8),
        "d": rng.standard_normal((2, 2, 2)).astype(np.float16),
    }


def test_golden_crcs_are_the_crcs_of_the_arrays_taken_over() -> None:
    arrays = sample_arrays()
    held = dict(arrays)
    ws = WeightSet("m", arrays, Golden(arrays))
    assert ws.arrays is arrays and all(ws.arrays[k] is held[k] for k in held)
    assert ws.crcs == {k: zlib.crc32(a.tobytes()) for k, a in held.items()}
    assert ws.octets == sum(a.nbytes for a in held.values())
    assert ws.generation == 0


@pytest.mark.parametrize("corrupted", [["a"], ["b", "d"], ["a", "b", "c", "d"]])
def test_corrupt_finds_exactly_the_corrupted_tensors(corrupted: list[str]) -> None:
    arrays = sample_arrays()
    ws = WeightSet("m", arrays, Golden(arrays))
    assert ws.corrupt() == []
    for name in corrupted:
        arrays[name].reshape(-1).view(np.uint8)[-1] ^= 0x01  # the very last bit counts too
    assert ws.corrupt() == corrupted


def test_check_and_repair_restores_in_place_and_bumps_the_generation() -> None:
    arrays = sample_arrays()
    originals = {k: a.copy() for k, a in arrays.items()}
    addresses = {k: a.ctypes.data for k, a in arrays.items()}
    golden = Golden(arrays)
    ws = WeightSet("m", arrays, golden)
    arrays["a"].reshape(-1).view(np.uint8)[5] ^= 0x80
    arrays["c"].reshape(-1).view(np.uint8)[0] ^= 0x04

    report = ws.check_and_repair()

    assert report == RepairReport(repaired=("a", "c"), failed=())
    assert not report.clean
    assert golden.calls == 1
    assert ws.generation == 1
    assert ws.corrupt() == []
    for key, array in arrays.items():
        assert array.ctypes.data == addresses[key]  # the session holds these very buffers
        assert array.tobytes() == originals[key].tobytes()


def test_a_clean_check_neither_derives_the_golden_weights_nor_bumps_the_generation() -> None:
    arrays = sample_arrays()
    golden = Golden(arrays)
    ws = WeightSet("m", arrays, golden)
    report = ws.check_and_repair()
    assert report == RepairReport() and report.clean
    assert (golden.calls, ws.generation) == (0, 0)


def test_only_the_suspects_are_checked() -> None:
    arrays = sample_arrays()
    ws = WeightSet("m", arrays, Golden(arrays))
    arrays["a"].reshape(-1)[0] += 1
    assert ws.check_and_repair(["b", "c"]).clean
    assert ws.corrupt() == ["a"] and ws.generation == 0
    assert ws.check_and_repair(["a"]).repaired == ("a",)
    assert ws.corrupt() == []


def test_the_session_computes_golden_outputs_again_after_a_repair() -> None:
    data = cnn()
    loaded = load(data)
    owned = loaded.weights
    assert owned is not None
    feeds = answer_feeds(data)
    clean = run(loaded.session, feeds)
    names = sorted(owned.arrays, key=lambda k: -owned.arrays[k].nbytes)[:3]
    for name in names:
        array = owned.arrays[name]
        flip_word(array, by_magnitude(array)[0])
    assert not same_bits(run(loaded.session, feeds), clean)

    # The golden source derives the optimised weights again from the stored model.
    report = owned.check_and_repair()

    assert set(report.repaired) == set(names) and report.failed == ()
    assert owned.generation == 1
    assert same_bits(run(loaded.session, feeds), clean)
    assert same_bits(clean, run(reference_session(data), feeds))


@pytest.mark.parametrize(
    "wrong",
    [
        pytest.param(lambda a: a + 1, id="other values"),
        pytest.param(lambda a: a.astype(np.float64), id="other dtype"),
        pytest.param(lambda a: a.reshape(-1), id="other shape"),
        pytest.param(None, id="missing"),
    ],
)
def test_a_golden_source_giving_wrong_bytes_fails_the_repair(
    wrong: Callable[[np.ndarray], np.ndarray] | None,
) -> None:
    arrays = sample_arrays()
    bad = dict(arrays)
    if wrong is None:
        del bad["a"]
    else:
        bad["a"] = wrong(arrays["a"])
    ws = WeightSet("m", arrays, Golden(bad))
    arrays["a"].reshape(-1)[3] = 100.0
    arrays["b"].reshape(-1)[0] = 100.0
    upset = arrays["a"].copy()

    report = ws.check_and_repair()

    assert report == RepairReport(repaired=("b",), failed=("a",))
    assert ws.corrupt() == ["a"]
    # Not overwritten with the wrong bytes either: the evidence stays for the next load.
    assert arrays["a"].tobytes() == upset.tobytes()


def test_a_golden_source_that_raises_is_a_weight_error() -> None:
    arrays = sample_arrays()

    def unreadable() -> dict[str, np.ndarray]:
        raise OSError("flash read error")

    ws = WeightSet("m", arrays, unreadable)
    arrays["d"].reshape(-1)[0] = 7
    with pytest.raises(WeightError, match="m: golden weights not derivable: flash read error"):
        ws.check_and_repair()
    assert ws.corrupt() == ["d"]


def test_slices_cover_every_octet_in_order(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(weights, "SLICE_OCTETS", 16)
    arrays = sample_arrays()
    arrays["empty"] = np.zeros(0, np.float32)
    ws = WeightSet("m", arrays, Golden(arrays))
    pieces: dict[str, list[bytes]] = {}
    lasts: dict[str, list[bool]] = {}
    for name, piece, last in ws.slices():
        assert len(piece) <= 16
        pieces.setdefault(name, []).append(bytes(piece))
        lasts.setdefault(name, []).append(last)
    assert list(pieces) == list(arrays)
    for name, array in arrays.items():
        assert b"".join(pieces[name]) == array.tobytes()
        assert lasts[name] == [False] * (len(lasts[name]) - 1) + [True]
    assert len(pieces["a"]) == 5  # 80 octets
    assert pieces["empty"] == [b""]
    # The sliced CRC is the CRC of the whole array.
    assert all(crc_of(a) == zlib.crc32(a.tobytes()) for a in arrays.values())


def test_initializer_arrays_are_writable_and_c_contiguous() -> None:
    arrays = initializer_arrays(relu_mlp())
    assert set(arrays) == {"fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"}
    assert all(a.flags.c_contiguous and a.flags.writeable for a in arrays.values())


def test_owned_session_options_turn_optimisation_and_prepacking_off() -> None:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 3
    result = owned_session_options(options)
    assert result is options
    assert options.graph_optimization_level == ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    assert options.get_session_config_entry("session.disable_prepacking") == "1"
    assert options.intra_op_num_threads == 3
