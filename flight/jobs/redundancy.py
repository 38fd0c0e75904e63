"""Redundant execution of inference jobs: the modes a job can ask for, and the vote.

A radiation upset during inference flips bits in an output without any error being raised, so
redundant runs are compared bit for bit: two runs of the same session on the same inputs must
produce the same bytes, and any difference is an upset (or a non-deterministic kernel). On
providers that are not bit-exact from run to run (cuDNN, TensorRT), runs are compared within a
per-model tolerance instead.
"""

from __future__ import annotations

import enum
import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

logger = logging.getLogger(__name__)


class Redundancy(enum.IntEnum):
    """How many times a job's inference runs and is voted on."""

    NONE = 0
    DMR = 1
    TMR = 2
    ABFT = 3


Outputs = dict[str, np.ndarray]


@dataclass(frozen=True, slots=True)
class RunResult:
    """The outputs a job keeps, how many runs it took and which runs were outvoted.

    `voted` is True when the runs disagreed and a majority decided the outputs; `outvoted`
    holds the outvoted runs' indices from 0.
    """

    outputs: Outputs
    runs: int
    disagreements: int
    voted: bool
    outvoted: frozenset[int] = frozenset()

    @property
    def outvoted_mask(self) -> int:
        """Bit i set: run i+1 was outvoted (event VOTE_DISAGREEMENT)."""
        return sum(1 << i for i in self.outvoted)


class VotingError(Exception):
    """Redundant runs disagreed and no majority exists for at least one output."""


def fingerprint(value: object) -> bytes:
    """Bit-exact identity of an output: dtype, shape and a digest of the raw bytes.

    Bytes rather than values, so NaNs compare by their bit pattern and -0.0 differs from 0.0.
    """
    if isinstance(value, np.ndarray) and not value.dtype.hasobject:
        digest = hashlib.blake2b(np.ascontiguousarray(value).data)
        digest.update(f"|{value.dtype.str}|{value.shape}".encode())
        return digest.digest()
    # String tensors and onnxruntime's sequence/map outputs: repr round-trips floats exactly,
    # and tolist() because numpy's own repr elides the middle of large arrays.
    if isinstance(value, np.ndarray):
        value = (value.dtype.str, value.shape, value.tolist())
    return hashlib.blake2b(f"{type(value).__name__}|{value!r}".encode()).digest()


def _prints(outputs: Outputs) -> dict[str, bytes]:
    return {name: fingerprint(value) for name, value in outputs.items()}


def within_tolerance(a: object, b: object, tolerance: float) -> bool:
    """Same dtype and shape, and every value within tolerance x max(1, |a|, |b|).

    NaNs agree with NaNs; non-float tensors must be equal.
    """
    if not isinstance(a, np.ndarray) or not isinstance(b, np.ndarray):
        return fingerprint(a) == fingerprint(b)
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    if a.dtype.kind not in "fc":
        return fingerprint(a) == fingerprint(b)
    wide = np.complex128 if a.dtype.kind == "c" else np.float64
    with np.errstate(invalid="ignore", over="ignore"):
        x, y = a.astype(wide), b.astype(wide)
        scale = np.maximum(1.0, np.maximum(np.abs(x), np.abs(y)))
        # Only finite values can be near each other: inf x tolerance would admit anything.
        finite = np.isfinite(x) & np.isfinite(y)
        close = finite & (np.abs(x - y) <= tolerance * scale)
    both_nan = np.isnan(x) & np.isnan(y)
    same_inf = np.isinf(x) & (x == y)
    return bool(np.all(close | both_nan | same_inf))


def run_redundant(
    run: Callable[[], Outputs], mode: Redundancy, tolerance: float = 0.0
) -> RunResult:
    """Run `run` once (NONE), twice with a tie-breaker on mismatch (DMR) or three times (TMR).

    Runs agree bit for bit when `tolerance` is 0, else within it (`within_tolerance`).
    """
    if mode == Redundancy.NONE:
        return RunResult(run(), runs=1, disagreements=0, voted=False)
    if mode == Redundancy.DMR:
        first, second = run(), run()
        results = [_Run(first, tolerance), _Run(second, tolerance)]
        if results[0].agrees_all(results[1]):
            return RunResult(first, runs=2, disagreements=0, voted=False)
        differing = results[0].differing(results[1])
        logger.warning("DMR runs 1 and 2 differ in %s: running a tie-breaker", differing)
        results.append(_Run(run(), tolerance))
        return _vote(results, mode)
    if mode == Redundancy.TMR:
        return _vote([_Run(outputs, tolerance) for outputs in (run(), run(), run())], mode)
    raise ValueError(f"redundancy mode: expected one of {list(Redundancy)}, found {mode!r}")


def run_checked(
    run: Callable[[], Outputs],
    passes: Callable[[Outputs], bool],
    before_rerun: Callable[[], None] | None = None,
) -> RunResult:
    """ABFT: one run whose own checks pass, or a rerun when they fail (run 1 is outvoted);
    `before_rerun` repairs what may have caused the failure (the weights).

    Raises VotingError when the checks fail on the rerun too.
    """
    first = run()
    if passes(first):
        return RunResult(first, runs=1, disagreements=0, voted=False)
    logger.warning("ABFT: the checksums of run 1 failed: running it again")
    if before_rerun is not None:
        before_rerun()
    second = run()
    if passes(second):
        return RunResult(second, runs=2, disagreements=1, voted=True, outvoted=frozenset({0}))
    raise VotingError("ABFT: the checksums failed on run 1 and again on its rerun")


class _Run:
    """One run's outputs and how it compares with another run's, per output tensor."""

    def __init__(self, outputs: Outputs, tolerance: float) -> None:
        self.outputs = outputs
        self.tolerance = tolerance
        # Bit-exact comparison hashes each output once instead of comparing every pair.
        self.prints = _prints(outputs) if tolerance == 0.0 else {}

    def has(self, name: str) -> bool:
        return name in self.outputs

    def agrees(self, other: _Run, name: str) -> bool:
        if not self.has(name) or not other.has(name):
            return False
        if self.tolerance == 0.0:
            return self.prints[name] == other.prints[name]
        return within_tolerance(self.outputs[name], other.outputs[name], self.tolerance)

    def agrees_all(self, other: _Run) -> bool:
        names = self.outputs.keys() | other.outputs.keys()
        return all(self.agrees(other, name) for name in names)

    def differing(self, other: _Run) -> list[str]:
        names = self.outputs.keys() | other.outputs.keys()
        return sorted(name for name in names if not self.agrees(other, name))


def _vote(results: list[_Run], mode: Redundancy) -> RunResult:
    """Majority per output tensor over three runs; a run counts as a disagreement if it lost.

    The winner of a tensor is the run that agrees with the most others (the first on a tie):
    within a tolerance, agreement is not transitive, so a plain count of equal values would not do.
    """
    # In the model's output order, as a single run would give them.
    names = list(dict.fromkeys(name for r in results for name in r.outputs))
    voted: Outputs = {}
    outvoted: set[int] = set()
    for name in names:
        support = [
            sum(1 for j, other in enumerate(results) if j != i and r.agrees(other, name))
            if r.has(name)
            else -1
            for i, r in enumerate(results)
        ]
        winner = max(range(len(results)), key=lambda i: (support[i], -i))
        if support[winner] < 1:
            raise VotingError(_no_majority_message(mode, name, [r.has(name) for r in results]))
        voted[name] = results[winner].outputs[name]
        outvoted.update(
            i for i, r in enumerate(results) if i != winner and not r.agrees(results[winner], name)
        )
    if outvoted:
        logger.warning(
            "%s: run(s) %s outvoted", mode.name, ", ".join(str(i + 1) for i in sorted(outvoted))
        )
    return RunResult(
        voted,
        runs=len(results),
        disagreements=len(outvoted),
        voted=bool(outvoted),
        outvoted=frozenset(outvoted),
    )


def _no_majority_message(mode: Redundancy, name: str, present: list[bool]) -> str:
    if present.count(False) >= 2:
        return f"{mode.name}: output {name!r} expected in at least two runs, found in one"
    if mode == Redundancy.DMR:
        return (
            f"DMR: runs 1 and 2 differ in output {name!r} and tie-breaker run 3 agrees with neither"
        )
    return f"TMR: runs 1, 2 and 3 all differ in output {name!r}, no two agree"
