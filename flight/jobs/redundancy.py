"""Redundant execution of inference jobs: the modes a job can ask for, and the vote.

A radiation upset during inference flips bits in an output without any error being raised, so
redundant runs are compared bit for bit: two runs of the same session on the same inputs must
produce the same bytes, and any difference is an upset (or a non-deterministic kernel).
"""

import enum
import hashlib
import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

logger = logging.getLogger(__name__)


class Redundancy(enum.IntEnum):
    """How many times a job's inference runs and is voted on."""

    NONE = 0
    DMR = 1
    TMR = 2


Outputs = dict[str, np.ndarray]


@dataclass(frozen=True, slots=True)
class RunResult:
    """The outputs a job keeps, how many runs it took and how many runs were outvoted.

    `voted` is True when the runs disagreed and a majority decided the outputs.
    """

    outputs: Outputs
    runs: int
    disagreements: int
    voted: bool


class VotingError(Exception):
    """Redundant runs disagreed and no majority exists for at least one output."""


# A tensor missing from a run's outputs: never equal to any real tensor's fingerprint.
_MISSING = b""


def _fingerprint(value: object) -> bytes:
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
    return {name: _fingerprint(value) for name, value in outputs.items()}


def run_redundant(run: Callable[[], Outputs], mode: Redundancy) -> RunResult:
    """Run `run` once (NONE), twice with a tie-breaker on mismatch (DMR) or three times (TMR)."""
    if mode == Redundancy.NONE:
        return RunResult(run(), runs=1, disagreements=0, voted=False)
    if mode == Redundancy.DMR:
        first, second = run(), run()
        first_prints, second_prints = _prints(first), _prints(second)
        if first_prints == second_prints:
            return RunResult(first, runs=2, disagreements=0, voted=False)
        differing = _differing(first_prints, second_prints)
        logger.warning("DMR runs 1 and 2 differ in %s: running a tie-breaker", differing)
        third = run()
        results = [(first, first_prints), (second, second_prints), (third, _prints(third))]
        return _vote(results, mode)
    if mode == Redundancy.TMR:
        results = [(outputs, _prints(outputs)) for outputs in (run(), run(), run())]
        return _vote(results, mode)
    raise ValueError(f"redundancy mode: expected one of {list(Redundancy)}, found {mode!r}")


def _differing(a: dict[str, bytes], b: dict[str, bytes]) -> list[str]:
    return sorted(name for name in a.keys() | b.keys() if a.get(name, _MISSING) != b.get(name))


def _vote(results: list[tuple[Outputs, dict[str, bytes]]], mode: Redundancy) -> RunResult:
    """Majority per output tensor over three runs; a run counts as a disagreement if it lost."""
    # In the model's output order, as a single run would give them.
    names = list(dict.fromkeys(name for _, prints in results for name in prints))
    voted: Outputs = {}
    outvoted: set[int] = set()
    for name in names:
        prints = [p.get(name, _MISSING) for _, p in results]
        winner, votes = Counter(prints).most_common(1)[0]
        if votes < 2 or winner == _MISSING:
            raise VotingError(_no_majority_message(mode, name, prints))
        voted[name] = next(
            o[name] for (o, _), p in zip(results, prints, strict=True) if p == winner
        )
        outvoted.update(i for i, p in enumerate(prints) if p != winner)
    if outvoted:
        logger.warning(
            "%s: run(s) %s outvoted", mode.name, ", ".join(str(i + 1) for i in sorted(outvoted))
        )
    return RunResult(voted, runs=len(results), disagreements=len(outvoted), voted=bool(outvoted))


def _no_majority_message(mode: Redundancy, name: str, prints: list[bytes]) -> str:
    if prints.count(_MISSING) >= 2:
        return f"{mode.name}: output {name!r} expected in at least two runs, found in one"
    if mode == Redundancy.DMR:
        return (
            f"DMR: runs 1 and 2 differ in output {name!r} and tie-breaker run 3 agrees with neither"
        )
    return f"TMR: runs 1, 2 and 3 all differ in output {name!r}, no two agree"
