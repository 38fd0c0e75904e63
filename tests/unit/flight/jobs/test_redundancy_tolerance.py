"""Redundant runs compared within a tolerance (providers that are not bit-exact run to run):
the comparison's edge cases, the vote, and the tolerance a model is registered with."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from flight.jobs.executor import Executor, SessionCache
from flight.jobs.providers import CPU, CUDA, ProviderChoice
from flight.jobs.redundancy import (
    Outputs,
    Redundancy,
    RunResult,
    VotingError,
    run_redundant,
    within_tolerance,
)
from flight.jobs.registry import BadTolerance, ModelRegistry
from tools import model_gen

F32 = np.float32


def a32(*values: float) -> np.ndarray:
    return np.array(values, dtype=F32)


# --- within_tolerance ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b", "tolerance", "expected"),
    [
        # relative above 1, absolute below: tolerance x max(1, |a|, |b|)
        pytest.param(a32(1000.0), a32(1000.9), 1e-3, True, id="relative: 0.9 of 1000"),
        pytest.param(a32(1000.0), a32(1001.5), 1e-3, False, id="relative: 1.5 of 1000"),
        pytest.param(a32(0.001), a32(0.0019), 1e-3, True, id="absolute near zero"),
        pytest.param(a32(0.0), a32(0.0011), 1e-3, False, id="absolute beyond"),
        pytest.param(a32(-5.0), a32(5.0), 1.0, False, id="signs differ"),
        pytest.param(a32(1.0, 2.0), a32(1.0, 2.1), 1e-2, False, id="one value out of two"),
        pytest.param(a32(0.0), a32(-0.0), 0.0, True, id="-0.0 equals 0.0 as a value"),
        pytest.param(a32(0.0), a32(-0.0), 1e-6, True, id="-0.0 within a tolerance"),
        pytest.param(a32(math.nan), a32(math.nan), 1e-3, True, id="NaN agrees with NaN"),
        pytest.param(a32(math.nan), a32(1.0), 1e9, False, id="NaN against a number"),
        pytest.param(a32(1.0), a32(math.nan), 1e9, False, id="a number against NaN"),
        pytest.param(a32(math.inf), a32(math.inf), 1e-3, True, id="inf agrees with inf"),
        pytest.param(a32(-math.inf), a32(-math.inf), 0.0, True, id="-inf agrees with -inf"),
        pytest.param(a32(math.inf), a32(math.nan), 1e9, False, id="inf against NaN"),
        pytest.param(a32(math.inf), a32(1.0), 0.0, False, id="inf against a number, exact"),
        pytest.param(
            np.array([65504.0], np.float16), np.array([65504.0], np.float16), 0.0, True, id="f16"
        ),
        pytest.param(a32(), a32(), 0.0, True, id="empty"),
        pytest.param(np.array(2.0, F32), np.array(2.15, F32), 0.1, True, id="0-d"),
    ],
)
def test_within_tolerance_on_floats(
    a: np.ndarray, b: np.ndarray, tolerance: float, expected: bool
) -> None:
    assert within_tolerance(a, b, tolerance) is expected
    assert within_tolerance(b, a, tolerance) is expected  # symmetric


def test_the_tolerance_bound_is_inclusive() -> None:
    a, b = np.array([0.0]), np.array([0.25])  # exact in binary
    assert within_tolerance(a, b, 0.25)
    assert not within_tolerance(a, b, 0.2499)
    # Above 1 the bound scales with the larger magnitude: 256 <= 0.2 x 1280, > 0.19 x 1280.
    big_a, big_b = np.array([1024.0]), np.array([1280.0])
    assert within_tolerance(big_a, big_b, 0.2)
    assert not within_tolerance(big_a, big_b, 0.19)


@pytest.mark.parametrize(
    "other",
    [
        pytest.param(a32(-math.inf), id="-inf"),
        pytest.param(a32(1.0), id="1.0"),
        pytest.param(a32(3e38), id="the largest"),
    ],
)
def test_inf_agrees_only_with_the_same_inf(other: np.ndarray) -> None:
    assert not within_tolerance(a32(math.inf), other, 1e-3)


def test_tmr_outvotes_a_run_made_infinite_by_an_upset() -> None:
    upset = {"y": a32(math.inf, 10.0)}
    result = run_redundant(scripted(upset, y(1.0), y(1.0)), Redundancy.TMR, TOL)
    assert result.outputs["y"][0] == F32(1.0)
    assert result.outvoted == {0}


def test_complex_values_are_compared_in_both_parts() -> None:
    a, b = np.array([1 + 1j], np.complex64), np.array([1 + 5j], np.complex64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", np.exceptions.ComplexWarning)
        assert not within_tolerance(a, b, 1e-3)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        pytest.param(a32(1.0), np.array([1.0]), id="float32 vs float64"),
        pytest.param(a32(1.0), np.array([1], np.int32), id="float vs int"),
        pytest.param(a32(1.0, 2.0), a32(1.0, 2.0).reshape(2, 1), id="shape"),
        pytest.param(a32(1.0), a32(1.0, 1.0), id="length"),
    ],
)
def test_dtype_and_shape_must_match(a: np.ndarray, b: np.ndarray) -> None:
    assert not within_tolerance(a, b, 1.0)


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        (np.array([7, 8]), np.array([7, 8]), True),
        (np.array([7, 8]), np.array([7, 9]), False),  # integers are exact, whatever the tolerance
        (np.array([True]), np.array([False]), False),
        (np.array([3], np.uint8), np.array([3], np.uint8), True),
        (np.array(["a"], object), np.array(["a"], object), True),
        (np.array(["a"], object), np.array(["b"], object), False),
        ([{"cat": 0.5}], [{"cat": 0.5}], True),  # onnxruntime's sequence of maps
        ([{"cat": 0.5}], [{"cat": 0.5000001}], False),
    ],
)
def test_non_float_outputs_must_be_equal(a: object, b: object, expected: bool) -> None:
    assert within_tolerance(a, b, 10.0) is expected


# --- voting within a tolerance -------------------------------------------------------------------


def scripted(*results: Outputs) -> Callable[[], Outputs]:
    it: Iterator[Outputs] = iter(results)
    return lambda: next(it)


def y(value: float) -> Outputs:
    return {"y": a32(value, 10.0)}


TOL = 1e-3  # at 1.0: differences up to 0.001 agree


def test_dmr_runs_within_the_tolerance_agree() -> None:
    result = run_redundant(scripted(y(1.0), y(1.0005)), Redundancy.DMR, TOL)
    assert result == RunResult(result.outputs, runs=2, disagreements=0, voted=False)
    assert result.outputs["y"][0] == F32(1.0)  # the first run's outputs


@pytest.mark.parametrize(
    ("runs", "winner", "outvoted"),
    [
        ((1.0, 1.0005, 1.5), 0, {2}),  # 0 and 1 agree; the first of the tie is kept
        ((1.5, 1.0, 1.0005), 1, {0}),
        ((1.0, 1.5, 1.0005), 0, {1}),
        # A chain: 0~1 and 1~2 agree, 0 and 2 do not. Run 1 agrees with most, and nothing
        # disagrees with it: nothing is outvoted.
        ((1.0, 1.0008, 1.0016), 1, set()),
        ((1.0016, 1.0, 1.0008), 2, set()),
    ],
)
def test_tmr_keeps_the_run_agreeing_with_most_others(
    runs: tuple[float, float, float], winner: int, outvoted: set[int]
) -> None:
    result = run_redundant(scripted(*(y(v) for v in runs)), Redundancy.TMR, TOL)
    assert result.outputs["y"][0] == F32(runs[winner])
    assert result.outvoted == outvoted
    assert result.outvoted_mask == sum(1 << i for i in outvoted)
    assert (result.runs, result.disagreements, result.voted) == (3, len(outvoted), bool(outvoted))


def test_tmr_votes_each_output_on_its_own() -> None:
    runs = [
        {"y": a32(1.0), "z": a32(7.0)},
        {"y": a32(2.0), "z": a32(7.0001)},  # outvoted in y
        {"y": a32(1.0001), "z": a32(9.0)},  # outvoted in z
    ]
    result = run_redundant(scripted(*runs), Redundancy.TMR, TOL)
    assert list(result.outputs) == ["y", "z"]
    assert result.outputs["y"][0] == F32(1.0) and result.outputs["z"][0] == F32(7.0)
    assert result.outvoted == {1, 2} and result.outvoted_mask == 0b110
    assert result.disagreements == 2


@pytest.mark.parametrize("upset", [0, 1])
def test_dmr_tie_breaker_within_the_tolerance(upset: int) -> None:
    runs = [y(1.0), y(1.0)]
    runs[upset] = y(3.0)
    third = y(1.0004)  # agrees with the clean run within the tolerance, not bit for bit
    result = run_redundant(scripted(*runs, third), Redundancy.DMR, TOL)
    assert result.outputs["y"][0] == F32(1.0)  # the clean run's values (first of the tie)
    assert result.outvoted == {upset} and result.outvoted_mask == 1 << upset
    assert (result.runs, result.disagreements, result.voted) == (3, 1, True)


def test_no_majority_within_the_tolerance_is_a_voting_error() -> None:
    with pytest.raises(VotingError, match=r"TMR: runs 1, 2 and 3 all differ in output 'y'"):
        run_redundant(scripted(y(1.0), y(1.1), y(1.2)), Redundancy.TMR, TOL)
    with pytest.raises(VotingError, match=r"DMR: runs 1 and 2 differ in output 'y'"):
        run_redundant(scripted(y(1.0), y(1.1), y(1.2)), Redundancy.DMR, TOL)


def test_a_missing_output_cannot_win_within_the_tolerance() -> None:
    result = run_redundant(scripted({}, y(1.0), y(1.0002)), Redundancy.TMR, TOL)
    assert result.outputs["y"][0] == F32(1.0) and result.outvoted == {0}
    with pytest.raises(VotingError, match="expected in at least two runs, found in one"):
        run_redundant(scripted({}, {}, y(1.0)), Redundancy.TMR, TOL)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        pytest.param(a32(1.0), a32(np.nextafter(F32(1.0), F32(2.0))), id="one ulp"),
        pytest.param(a32(0.0), a32(-0.0), id="-0.0"),
        pytest.param(
            np.array([0x7FC00000], np.uint32).view(F32),
            np.array([0x7FC00001], np.uint32).view(F32),
            id="NaN payloads",
        ),
    ],
)
def test_tolerance_zero_is_bit_exact(a: np.ndarray, b: np.ndarray) -> None:
    exact = run_redundant(scripted({"y": a}, {"y": b}, {"y": a.copy()}), Redundancy.DMR, 0.0)
    assert (exact.runs, exact.outvoted) == (3, frozenset({1}))
    assert exact.outputs["y"].tobytes() == a.tobytes()
    tolerant = run_redundant(scripted({"y": a}, {"y": b}), Redundancy.DMR, 1e-6)
    assert (tolerant.runs, tolerant.voted) == (2, False)


def test_the_default_tolerance_is_zero() -> None:
    result = run_redundant(scripted(y(0.0), {"y": a32(-0.0, 10.0)}, y(0.0)), Redundancy.TMR)
    assert result.outvoted == {1}


# --- where the tolerance comes from --------------------------------------------------------------


def test_a_bit_exact_provider_ignores_the_model_tolerance() -> None:
    assert Executor(SessionCache(1, ProviderChoice(CPU))).tolerance(0.05) == 0.0
    gpu = Executor(SessionCache(1, ProviderChoice(CUDA)))
    assert not gpu.bit_exact
    assert gpu.tolerance(0.05) == 0.05 and gpu.tolerance(0.0) == 0.0


def test_the_registry_keeps_a_model_tolerance(tmp_path: Path) -> None:
    data = model_gen.model_bytes(model_gen.mlp(widths=(8, 4)))
    registry = ModelRegistry(tmp_path, max_model_bytes=1 << 20)
    assert registry.register("exact", 1, data).tolerance == 0.0
    assert registry.register("loose", 1, data, tolerance=2e-3).tolerance == 2e-3
    reopened = ModelRegistry(tmp_path, max_model_bytes=1 << 20)
    assert reopened.entry("loose").tolerance == 2e-3
    assert reopened.entry("exact").tolerance == 0.0


@pytest.mark.parametrize("tolerance", [-1e-9, math.nan, math.inf, -math.inf])
def test_the_registry_refuses_a_tolerance_that_is_not_finite_and_positive(
    tmp_path: Path, tolerance: float
) -> None:
    data = model_gen.model_bytes(model_gen.mlp(widths=(8, 4)))
    registry = ModelRegistry(tmp_path, max_model_bytes=1 << 20)
    with pytest.raises(BadTolerance, match="expected a finite value of 0 or more"):
        registry.register("m", 1, data, tolerance=tolerance)
    assert registry.entries() == []
