"""The executor on real onnxruntime (CPU), the session cache, and voting over upset runs."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from flight.jobs import redundancy
from flight.jobs.executor import (
    Executor,
    InferenceError,
    SessionCache,
    SessionError,
    create_session,
    reference_session,
)
from flight.jobs.providers import CPU, CUDA, ProviderChoice
from flight.jobs.redundancy import Redundancy, RunResult, VotingError, run_redundant

ON_CPU = ProviderChoice(CPU)
# ABFT runs a model with checksums: tests/unit/flight/protection/test_abft_jobs.py.
VOTING_MODES = [Redundancy.NONE, Redundancy.DMR, Redundancy.TMR]


# --- a small real model ---------------------------------------------------------------------


def build_model(seed: int = 7) -> bytes:
    """Conv(3→4, 3x3) + Relu + Flatten + Gemm(→10), fixed-seed weights, on a 1x3x8x8 input."""
    rng = np.random.default_rng(seed)
    w = numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "w")
    b = numpy_helper.from_array(rng.standard_normal(4).astype(np.float32), "b")
    gw = numpy_helper.from_array(rng.standard_normal((4 * 6 * 6, 10)).astype(np.float32), "gw")
    gb = numpy_helper.from_array(rng.standard_normal(10).astype(np.float32), "gb")
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("Flatten", ["r"], ["f"]),
        helper.make_node("Gemm", ["f", "gw", "gb"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [
            helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10]),
            helper.make_tensor_value_info("r", TensorProto.FLOAT, [1, 4, 6, 6]),
        ],
        [w, b, gw, gb],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    onnx.checker.check_model(model)
    return model.SerializeToString()


@pytest.fixture
def model(tmp_path: Path) -> tuple[str, Path]:
    data = build_model()
    path = tmp_path / "tiny.onnx"
    path.write_bytes(data)
    return hashlib.sha256(data).hexdigest(), path


def feeds(seed: int = 1) -> dict[str, np.ndarray]:
    return {"x": np.random.default_rng(seed).standard_normal((1, 3, 8, 8)).astype(np.float32)}


class CountingFactory:
    """The real session factory, counting creations and remembering what it was asked."""

    def __init__(self, wrap: Callable[[Any], Any] = lambda s: s) -> None:
        self.created: list[Path] = []
        self.calls: list[tuple[ort.SessionOptions, list[str]]] = []
        self.wrap = wrap

    def __call__(
        self, path: Path, options: ort.SessionOptions, providers: list[str]
    ) -> ort.InferenceSession:
        self.created.append(path)
        self.calls.append((options, providers))
        return self.wrap(create_session(path, options, providers))


def flip_bit(array: np.ndarray, byte: int = 0, bit: int = 0) -> np.ndarray:
    """A copy of `array` with one bit flipped: a single-event upset in an output buffer."""
    upset = array.copy()
    upset.reshape(-1).view(np.uint8)[byte] ^= 1 << bit
    return upset


class UpsetSession:
    """A real session whose outputs get one bit flipped on the chosen (1-based) run numbers."""

    def __init__(self, session: ort.InferenceSession, upsets: dict[int, tuple[str, int]]) -> None:
        self._session = session
        self._upsets = upsets  # run number -> (output name, byte to flip)
        self.runs = 0

    def run(self, output_names: list[str] | None, feeds: dict[str, np.ndarray]) -> list[Any]:
        self.runs += 1
        values = self._session.run(output_names, feeds)
        if self.runs in self._upsets:
            name, byte = self._upsets[self.runs]
            index = [o.name for o in self._session.get_outputs()].index(name)
            values[index] = flip_bit(values[index], byte)
        return values

    def __getattr__(self, name: str) -> Any:
        return getattr(self._session, name)


# --- executor on real onnxruntime -----------------------------------------------------------


@pytest.mark.parametrize("mode", VOTING_MODES)
def test_outputs_are_bit_identical_to_a_direct_session_run(
    model: tuple[str, Path], mode: Redundancy
) -> None:
    key, path = model
    direct = reference_session(path.read_bytes())
    expected = dict(zip(["y", "r"], direct.run(None, feeds()), strict=True))

    executor = Executor(SessionCache(2, ON_CPU, intra_op_num_threads=1))
    result = executor.execute(key, path, feeds(), mode)

    assert list(result.outputs) == ["y", "r"]
    for name, value in expected.items():
        assert result.outputs[name].dtype == value.dtype
        assert result.outputs[name].shape == value.shape
        assert result.outputs[name].tobytes() == value.tobytes()
    assert result.runs == {Redundancy.NONE: 1, Redundancy.DMR: 2, Redundancy.TMR: 3}[mode]
    assert (result.disagreements, result.voted) == (0, False)


def test_run_statistics(model: tuple[str, Path]) -> None:
    key, path = model
    executor = Executor(SessionCache(2, ON_CPU))
    for mode in VOTING_MODES:
        executor.execute(key, path, feeds(), mode)
    assert executor.run_count == 6
    assert executor.disagreement_count == 0


def test_cache_hit_does_not_recreate_the_session(model: tuple[str, Path]) -> None:
    key, path = model
    factory = CountingFactory()
    cache = SessionCache(2, ON_CPU, factory=factory)
    executor = Executor(cache)
    first = cache.get(key, path)
    for mode in VOTING_MODES:
        executor.execute(key, path, feeds(), mode)
    assert cache.get(key, path) is first
    assert len(factory.created) == 1 and cache.creations == 1


def test_only_a_session_creation_is_wrapped_by_around_build(model: tuple[str, Path]) -> None:
    # A worker announces a quiet around it (creation holds the GIL); a hit must cost nothing.
    key, path = model
    cache = SessionCache(2, ON_CPU)
    builds: list[str] = []

    @contextlib.contextmanager
    def around() -> Iterator[None]:
        builds.append("begin")
        yield
        builds.append("end")

    cache.around_build = around
    cache.get(key, path)
    cache.get(key, path)
    assert builds == ["begin", "end"]


def test_sessions_are_created_as_specified(model: tuple[str, Path]) -> None:
    key, path = model
    factory = CountingFactory()
    SessionCache(1, ON_CPU, intra_op_num_threads=2, factory=factory).get(key, path)
    options, providers = factory.calls[0]
    assert providers == [CPU]
    assert options.intra_op_num_threads == 2
    assert options.log_severity_level == 3
    # The graph was optimised once (ORT_ENABLE_ALL) into the form whose weights the payload owns.
    assert options.graph_optimization_level == ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    assert options.get_session_config_entry("session.disable_prepacking") == "1"
    assert options.use_deterministic_compute


def test_an_accelerator_keeps_the_cpu_behind_it(model: tuple[str, Path]) -> None:
    key, path = model
    asked: list[list[str]] = []

    def factory(p: Path, options: ort.SessionOptions, providers: list[str]) -> Any:
        asked.append(providers)
        return create_session(p, options, [CPU])  # no GPU here

    SessionCache(1, ProviderChoice(CUDA), factory=factory).get(key, path)
    assert asked == [[CUDA, CPU]]


def test_least_recently_used_session_is_evicted(model: tuple[str, Path]) -> None:
    _, path = model
    factory = CountingFactory()
    cache = SessionCache(2, ON_CPU, factory=factory)
    a = cache.get("a", path)
    cache.get("b", path)
    assert cache.get("a", path) is a  # "b" is now the least recently used
    cache.get("c", path)
    assert cache.keys() == ["a", "c"]
    assert "b" not in cache and len(cache) == 2
    cache.get("b", path)
    assert len(factory.created) == 4
    assert cache.keys() == ["c", "b"]


def test_evict_forces_a_reload(model: tuple[str, Path]) -> None:
    key, path = model
    factory = CountingFactory()
    cache = SessionCache(2, ON_CPU, factory=factory)
    first = cache.get(key, path)
    assert cache.evict(key) is True
    assert cache.evict(key) is False
    assert cache.get(key, path) is not first
    assert len(factory.created) == 2


def test_a_session_created_while_its_model_is_evicted_is_not_cached(
    model: tuple[str, Path],
) -> None:
    key, path = model
    cache: SessionCache

    def factory(p: Path, options: ort.SessionOptions, providers: list[str]) -> Any:
        cache.evict(key)  # the model service reloads the model meanwhile
        return create_session(p, options, providers)

    cache = SessionCache(2, ON_CPU, factory=factory)
    assert cache.get(key, path) is not None
    assert key not in cache


def test_cache_rejects_bad_configuration() -> None:
    with pytest.raises(ValueError, match="expected at least 1, found 0"):
        SessionCache(0, ON_CPU)
    with pytest.raises(ValueError, match="found -1"):
        SessionCache(1, ON_CPU, intra_op_num_threads=-1)


def test_corrupt_model_raises_session_error(tmp_path: Path) -> None:
    path = tmp_path / "corrupt.onnx"
    path.write_bytes(b"\x00garbage" * 10)
    cache = SessionCache(1, ON_CPU)
    with pytest.raises(SessionError, match=r"corrupt\.onnx: expected a loadable ONNX model"):
        cache.get("k", path)
    assert len(cache) == 0


def test_wrong_inputs_raise_inference_error(model: tuple[str, Path]) -> None:
    key, path = model
    executor = Executor(SessionCache(1, ON_CPU))
    bad = {"x": np.zeros((1, 3, 9, 9), dtype=np.float32)}
    with pytest.raises(InferenceError, match=r"expected inputs x: tensor\(float\)\[1, 3, 8, 8\]"):
        executor.execute(key, path, bad, Redundancy.NONE)
    assert executor.run_count == 1


def test_feeds_reach_onnxruntime_uncopied_and_mode_none_hashes_nothing(
    model: tuple[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    key, path = model
    seen: list[dict[str, np.ndarray]] = []

    class Spy(UpsetSession):
        def run(
            self, output_names: list[str] | None, feeds: dict[str, np.ndarray], options: Any = None
        ) -> list[Any]:
            seen.append(feeds)
            return super().run(output_names, feeds)

    def no_hashing(value: object) -> bytes:
        raise AssertionError("mode NONE must not fingerprint outputs")

    monkeypatch.setattr(redundancy, "fingerprint", no_hashing)
    executor = Executor(SessionCache(1, ON_CPU, factory=CountingFactory(lambda s: Spy(s, {}))))
    inputs = feeds()
    executor.execute(key, path, inputs, Redundancy.NONE)
    assert len(seen) == 1 and seen[0] is inputs


# --- voting over injected upsets, through the real executor -----------------------------------


def upset_executor(upsets: dict[int, tuple[str, int]]) -> Executor:
    return Executor(
        SessionCache(1, ON_CPU, factory=CountingFactory(lambda s: UpsetSession(s, upsets)))
    )


def reference(path: Path) -> dict[str, np.ndarray]:
    session = reference_session(path.read_bytes())
    return dict(zip(["y", "r"], session.run(None, feeds()), strict=True))


def assert_same(outputs: dict[str, np.ndarray], expected: dict[str, np.ndarray]) -> None:
    assert outputs.keys() == expected.keys()
    for name in expected:
        assert outputs[name].tobytes() == expected[name].tobytes(), name


def test_dmr_single_upset_is_corrected_by_the_tie_breaker(model: tuple[str, Path]) -> None:
    key, path = model
    executor = upset_executor({2: ("y", 5)})
    result = executor.execute(key, path, feeds(), Redundancy.DMR)
    assert_same(result.outputs, reference(path))
    assert (result.runs, result.disagreements, result.voted) == (3, 1, True)
    assert (executor.run_count, executor.disagreement_count) == (3, 1)


def test_tmr_single_upset_is_outvoted(model: tuple[str, Path]) -> None:
    key, path = model
    result = upset_executor({1: ("r", 17)}).execute(key, path, feeds(), Redundancy.TMR)
    assert_same(result.outputs, reference(path))
    assert (result.runs, result.disagreements, result.voted) == (3, 1, True)


def test_tmr_upsets_in_different_outputs_are_voted_per_tensor(model: tuple[str, Path]) -> None:
    key, path = model
    result = upset_executor({1: ("y", 0), 3: ("r", 9)}).execute(key, path, feeds(), Redundancy.TMR)
    assert_same(result.outputs, reference(path))
    assert (result.disagreements, result.voted) == (2, True)


def test_tmr_with_three_different_runs_fails(model: tuple[str, Path]) -> None:
    key, path = model
    executor = upset_executor({1: ("y", 0), 2: ("y", 4)})  # run 3 is clean: all three differ
    with pytest.raises(VotingError, match=r"TMR: runs 1, 2 and 3 all differ in output 'y'"):
        executor.execute(key, path, feeds(), Redundancy.TMR)
    assert executor.run_count == 3


def test_dmr_with_every_run_different_fails(model: tuple[str, Path]) -> None:
    key, path = model
    executor = upset_executor({1: ("y", 0), 3: ("y", 8)})  # run 2 clean, 1 and 3 upset apart
    with pytest.raises(
        VotingError, match=r"DMR: runs 1 and 2 differ in output 'y' and tie-breaker"
    ):
        executor.execute(key, path, feeds(), Redundancy.DMR)


def test_no_redundancy_passes_an_upset_through(model: tuple[str, Path]) -> None:
    key, path = model
    result = upset_executor({1: ("y", 0)}).execute(key, path, feeds(), Redundancy.NONE)
    assert result.outputs["y"].tobytes() != reference(path)["y"].tobytes()
    assert (result.runs, result.disagreements, result.voted) == (1, 0, False)


# --- the vote itself, with fake runs -----------------------------------------------------------


def scripted(*results: dict[str, np.ndarray]) -> Callable[[], dict[str, np.ndarray]]:
    it: Iterator[dict[str, np.ndarray]] = iter(results)
    return lambda: next(it)


def out(value: np.ndarray) -> dict[str, np.ndarray]:
    return {"y": value}


GOOD = np.array([1.0, -2.5, 3.25], dtype=np.float32)
BAD = flip_bit(GOOD, byte=11, bit=7)


def test_none_runs_once() -> None:
    result = run_redundant(scripted(out(GOOD)), Redundancy.NONE)
    assert result == RunResult(out(GOOD), runs=1, disagreements=0, voted=False)


def test_dmr_agreement_takes_two_runs() -> None:
    result = run_redundant(scripted(out(GOOD), out(GOOD.copy())), Redundancy.DMR)
    assert (result.runs, result.disagreements, result.voted) == (2, 0, False)


@pytest.mark.parametrize("upset_run", [0, 1])
def test_dmr_tie_breaker_sides_with_the_clean_run(upset_run: int) -> None:
    runs = [out(GOOD), out(GOOD)]
    runs[upset_run] = out(BAD)
    result = run_redundant(scripted(*runs, out(GOOD)), Redundancy.DMR)
    assert result.outputs["y"].tobytes() == GOOD.tobytes()
    assert (result.runs, result.disagreements, result.voted) == (3, 1, True)


@pytest.mark.parametrize("upset_run", [0, 1, 2])
def test_tmr_majority_wins_whichever_run_is_upset(upset_run: int) -> None:
    runs = [out(GOOD), out(GOOD), out(GOOD)]
    runs[upset_run] = out(BAD)
    result = run_redundant(scripted(*runs), Redundancy.TMR)
    assert result.outputs["y"].tobytes() == GOOD.tobytes()
    assert (result.runs, result.disagreements, result.voted) == (3, 1, True)


def test_nans_compare_by_bits() -> None:
    quiet = np.array([np.nan], dtype=np.float64)
    same = quiet.copy()  # nan != nan as values, yet the runs agree
    assert run_redundant(scripted(out(quiet), out(same)), Redundancy.DMR).runs == 2
    payload = quiet.copy()
    payload.view(np.uint64)[0] |= 1  # another NaN, a different bit pattern
    result = run_redundant(scripted(out(quiet), out(payload), out(quiet)), Redundancy.DMR)
    assert (result.runs, result.disagreements) == (3, 1)


@pytest.mark.parametrize(
    "other",
    [
        -np.zeros(3, dtype=np.float32),  # equal as values, different bits
        np.zeros(3, dtype=np.int32),  # same bytes, different dtype
        np.zeros((3, 1), dtype=np.float32),  # same bytes, different shape
    ],
)
def test_bit_exact_comparison(other: np.ndarray) -> None:
    zeros = np.zeros(3, dtype=np.float32)
    result = run_redundant(scripted(out(zeros), out(other), out(zeros)), Redundancy.DMR)
    assert (result.runs, result.disagreements) == (3, 1)


def test_non_contiguous_and_string_outputs_are_compared() -> None:
    strided = np.arange(12, dtype=np.int64).reshape(3, 4)[:, ::2]
    labels = np.array(["cloud", "sea"], dtype=object)
    a = {"n": strided, "s": labels}
    b = {"n": strided.copy(), "s": np.array(["cloud", "sea"], dtype=object)}
    assert run_redundant(scripted(a, b), Redundancy.DMR).runs == 2
    c = {"n": strided, "s": np.array(["cloud", "see"], dtype=object)}
    assert run_redundant(scripted(a, c, b), Redundancy.DMR).disagreements == 1


def test_output_missing_from_one_run_is_outvoted() -> None:
    result = run_redundant(scripted(out(GOOD), {}, out(GOOD)), Redundancy.TMR)
    assert result.outputs["y"].tobytes() == GOOD.tobytes()
    assert result.disagreements == 1


def test_tmr_with_no_agreement_names_the_output() -> None:
    third = flip_bit(GOOD, byte=0)
    with pytest.raises(VotingError, match="'y'"):
        run_redundant(scripted(out(GOOD), out(BAD), out(third)), Redundancy.TMR)


def test_unknown_mode_is_rejected() -> None:
    with pytest.raises(ValueError, match="redundancy mode: expected one of"):
        run_redundant(scripted(out(GOOD)), 3)  # type: ignore[arg-type]
