"""Fault models for injection: what a radiation upset does to a buffer, reproducibly from a seed.

Single-bit flips are the textbook upset, but beam tests of GPUs show that they underestimate
what reaches software: several bits of one word (a multi-cell upset), a whole value replaced (an
upset in a register or a datapath) and a run of corrupted values (a shared cache line or a
warp's lanes). Each model here acts in place on a writable buffer of 32-bit words, the unit of
float32 weights and activations, and says exactly what it changed.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np


class FaultModel(enum.IntEnum):
    """How a fault corrupts a buffer (dictionary enum FaultModel)."""

    BIT = 0
    MULTI_BIT = 1
    VALUE = 2
    ROW = 3


@dataclass(frozen=True, slots=True)
class Injection:
    """What one injection changed: the first word index, the words touched, the bits flipped."""

    word: int
    words: int
    bits: int

    def describe(self) -> str:
        if self.words == 1:
            return f"word {self.word}, {self.bits} bit(s)"
        return f"words {self.word}..{self.word + self.words - 1}, {self.bits} bit(s)"


class NothingToInject(ValueError):
    """The buffer has no whole 32-bit word to corrupt."""


def words_of(buffer: np.ndarray) -> np.ndarray:
    """A writable uint32 view of a contiguous array's bytes (whole words only)."""
    flat = buffer.reshape(-1).view(np.uint8)
    usable = flat.size - flat.size % 4
    if usable == 0:
        raise NothingToInject(f"a buffer of {flat.size} octets has no 32-bit word")
    return flat[:usable].view(np.uint32)


def inject(
    buffer: np.ndarray,
    model: FaultModel,
    rng: np.random.Generator,
    *,
    row_length: int | None = None,
) -> Injection:
    """Corrupt `buffer` (C-contiguous, writable) in place by `model`; what changed.

    `row_length`: words per row, for ROW; by default a row is one index of the first axis (an
    output channel of a kernel, a row of a matrix, a sample of a batch).
    A VALUE fault draws random bits until they differ from the old value, so every fault
    changes at least one bit: "masked" then means the system hid it, not the injector.
    """
    if not buffer.flags.c_contiguous or not buffer.flags.writeable:
        raise ValueError("inject: expected a C-contiguous, writable buffer")
    words = words_of(buffer)
    n = words.size
    if model == FaultModel.BIT:
        index = int(rng.integers(n))
        words[index] ^= np.uint32(1 << int(rng.integers(32)))
        return Injection(index, 1, 1)
    if model == FaultModel.MULTI_BIT:
        index = int(rng.integers(n))
        count = int(rng.integers(2, 5))
        bits = rng.choice(32, size=count, replace=False)
        words[index] ^= np.uint32(sum(1 << int(b) for b in bits))
        return Injection(index, 1, count)
    if model == FaultModel.VALUE:
        index = int(rng.integers(n))
        old = int(words[index])
        new = old
        while new == old:
            new = int(rng.integers(1 << 32, dtype=np.uint64))
        words[index] = np.uint32(new)
        return Injection(index, 1, bin(old ^ new).count("1"))
    if model == FaultModel.ROW:
        row = row_length or (max(1, buffer[0].nbytes // 4) if buffer.ndim >= 2 else n)
        row = min(row, n)
        length = min(int(rng.integers(2, 17)), row)
        row_start = int(rng.integers(max(1, n // row))) * row
        start = row_start + int(rng.integers(row - length + 1))
        start = min(start, n - length)
        flipped = 0
        for index in range(start, start + length):
            old = int(words[index])
            new = old
            while new == old:
                new = int(rng.integers(1 << 32, dtype=np.uint64))
            words[index] = np.uint32(new)
            flipped += bin(old ^ new).count("1")
        return Injection(start, length, flipped)
    raise ValueError(f"fault model: expected one of {list(FaultModel)}, found {model!r}")


def inject_bytes(data: bytearray, model: FaultModel, rng: np.random.Generator) -> Injection:
    """Corrupt a byte buffer (a file's contents, a frame) in place; rows are 64 octets."""
    if not data:
        raise NothingToInject("an empty buffer")
    array = np.frombuffer(data, dtype=np.uint8)
    return inject(array, model, rng, row_length=16)
