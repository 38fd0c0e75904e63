"""Known-answer tests: a fixed input per model whose output is recorded at registration.

Running it again and comparing catches what checksums of host buffers cannot: weights copied
into GPU memory, state inside onnxruntime's kernels (constants read once at session creation),
a corrupted graph. The input is derived from the model's SHA-256, so it needs no storage.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from typing import Any, cast

import numpy as np

from flight.jobs.model_check import ModelSignature
from flight.jobs.redundancy import Outputs, fingerprint, within_tolerance


@dataclass(frozen=True, slots=True)
class KnownAnswer:
    """The recorded answer: the provider it was computed on, its digest and its values."""

    provider: str
    digest: bytes
    outputs: Outputs

    def matches(self, outputs: Outputs, tolerance: float) -> bool:
        """Bit for bit when `tolerance` is 0, else every value within tolerance."""
        if tolerance == 0.0:
            return digest(outputs) == self.digest
        if outputs.keys() != self.outputs.keys():
            return False
        return all(
            within_tolerance(outputs[name], self.outputs[name], tolerance) for name in outputs
        )


def known_answer_input(signature: ModelSignature, sha256: bytes) -> dict[str, np.ndarray]:
    """The model's fixed input: dynamic axes 1, floats normal, integers and booleans zero.

    Integers stay zero because they are usually indices (token IDs), which random values could
    push out of range.
    """
    rng = np.random.default_rng(int.from_bytes(sha256[:8], "big"))
    feeds: dict[str, np.ndarray] = {}
    for spec in signature.inputs:
        shape = tuple(1 if d is None else d for d in spec.shape)
        dtype = np.dtype(spec.dtype)
        if dtype.kind == "f":
            feeds[spec.name] = rng.standard_normal(shape).astype(dtype)
        else:
            feeds[spec.name] = np.zeros(shape, dtype=dtype)
    return feeds


def digest(outputs: Outputs) -> bytes:
    """SHA-256 over every output's bit-exact fingerprint, in name order."""
    h = hashlib.sha256()
    for name in sorted(outputs):
        h.update(name.encode() + b"\0" + fingerprint(outputs[name]))
    return h.digest()


def record(provider: str, outputs: Outputs) -> KnownAnswer:
    return KnownAnswer(provider, digest(outputs), {k: np.array(v) for k, v in outputs.items()})


def to_bytes(answer: KnownAnswer) -> bytes:
    """The answer's values as .npz (the provider and digest live in the registry index)."""
    buffer = io.BytesIO()
    cast(Any, np.savez)(buffer, **answer.outputs)
    return buffer.getvalue()


def from_bytes(provider: str, digest_: bytes, data: bytes) -> KnownAnswer:
    with np.load(io.BytesIO(data), allow_pickle=False) as archive:
        outputs = {name: archive[name] for name in archive.files}
    return KnownAnswer(provider, digest_, outputs)
