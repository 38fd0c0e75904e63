"""Fault models: what each one changes in a buffer, reproducibly from a seed, and nothing else."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flight.protection.faults import (
    FaultModel,
    Injection,
    NothingToInject,
    inject,
    inject_bytes,
    words_of,
)

GUARD = 16  # octets of untouched memory kept either side of a buffer


def framed(octets: int, seed: int = 0) -> tuple[np.ndarray, slice]:
    """Random memory with a buffer of `octets` in its middle (C-contiguous, writable)."""
    memory = np.random.default_rng(seed).integers(0, 256, octets + 2 * GUARD, dtype=np.uint8)
    return memory, slice(GUARD, GUARD + octets)


def changed_words(before: np.ndarray, after: np.ndarray) -> list[int]:
    """Indices of the 32-bit words that differ."""
    a, b = before.view(np.uint32), after.view(np.uint32)
    return [int(i) for i in np.flatnonzero(a != b)]


def bits_between(before: np.ndarray, after: np.ndarray) -> int:
    return int(np.unpackbits(before.view(np.uint8) ^ after.view(np.uint8)).sum())


def float_buffer(shape: tuple[int, ...], seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


# --- every model ---------------------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(
    model=st.sampled_from(list(FaultModel)),
    octets=st.integers(4, 600),
    seed=st.integers(0, 2**32 - 1),
)
def test_a_fault_changes_at_least_one_bit_and_says_exactly_what(
    model: FaultModel, octets: int, seed: int
) -> None:
    memory, inside = framed(octets, seed)
    before = memory.copy()
    buffer = memory[inside]

    injection = inject(buffer, model, np.random.default_rng(seed))

    # Nothing outside the buffer, nor in a trailing part word.
    usable = octets - octets % 4
    outside = np.ones(memory.size, dtype=bool)
    outside[GUARD : GUARD + usable] = False
    assert np.array_equal(memory[outside], before[outside])
    words = changed_words(before[GUARD : GUARD + usable], memory[GUARD : GUARD + usable])
    assert injection.bits == bits_between(before, memory) >= 1
    assert words, "every fault changes at least one bit"
    assert injection.word <= words[0] and words[-1] < injection.word + injection.words
    assert injection.word + injection.words <= usable // 4


@pytest.mark.parametrize("model", list(FaultModel))
def test_a_seed_gives_the_same_fault_and_other_seeds_others(model: FaultModel) -> None:
    base = float_buffer((16, 16))
    results = []
    for seed in (7, 7, 8, 9):
        buffer = base.copy()
        injection = inject(buffer, model, np.random.default_rng(seed))
        results.append((injection, buffer.tobytes()))
    assert results[0] == results[1]
    assert len({r[1] for r in results}) == 3


@pytest.mark.parametrize("model", list(FaultModel))
def test_every_model_changes_the_buffer_for_every_seed(model: FaultModel) -> None:
    """No fault is masked by the injector: a VALUE draw equal to the old value is drawn again."""
    base = np.zeros(2, np.float32)  # two words: the draws hit the same words often
    for seed in range(300):
        buffer = base.copy()
        injection = inject(buffer, model, np.random.default_rng(seed))
        assert injection.bits == bits_between(base, buffer) >= 1


def test_bit_flips_exactly_one_bit() -> None:
    base = float_buffer((32,))
    for seed in range(100):
        buffer = base.copy()
        injection = inject(buffer, FaultModel.BIT, np.random.default_rng(seed))
        assert (injection.words, injection.bits) == (1, 1)
        assert changed_words(base, buffer) == [injection.word]
        assert bits_between(base, buffer) == 1


def test_multi_bit_flips_two_to_four_bits_of_one_word() -> None:
    base = float_buffer((32,))
    counts = set()
    for seed in range(200):
        buffer = base.copy()
        injection = inject(buffer, FaultModel.MULTI_BIT, np.random.default_rng(seed))
        assert changed_words(base, buffer) == [injection.word] and injection.words == 1
        assert 2 <= injection.bits == bits_between(base, buffer) <= 4
        counts.add(injection.bits)
    assert counts == {2, 3, 4}


def test_value_replaces_one_word() -> None:
    base = float_buffer((32,))
    for seed in range(100):
        buffer = base.copy()
        injection = inject(buffer, FaultModel.VALUE, np.random.default_rng(seed))
        assert changed_words(base, buffer) == [injection.word] and injection.words == 1
        assert injection.bits == bits_between(base, buffer)


@pytest.mark.parametrize(
    ("shape", "row_words"),
    [((8, 32), 32), ((4, 3, 5), 15), ((6, 1, 1), 1), ((300,), 300), ((3, 40), 40)],
)
def test_a_row_fault_stays_within_one_row_of_the_first_axis(
    shape: tuple[int, ...], row_words: int
) -> None:
    base = float_buffer(shape)
    lengths = set()
    for seed in range(200):
        buffer = base.copy()
        injection = inject(buffer, FaultModel.ROW, np.random.default_rng(seed))
        first, last = injection.word, injection.word + injection.words - 1
        assert first // row_words == last // row_words, injection
        assert 1 <= injection.words <= 16 and injection.words <= row_words
        # Every word of the run is replaced (each one differs from before).
        assert changed_words(base, buffer) == list(range(first, last + 1))
        assert injection.bits == bits_between(base, buffer)
        lengths.add(injection.words)
    if row_words >= 16:
        assert lengths == set(range(2, 17))


def test_a_row_fault_honours_an_explicit_row_length() -> None:
    base = float_buffer((1000,))
    rows = set()
    for seed in range(200):
        buffer = base.copy()
        injection = inject(buffer, FaultModel.ROW, np.random.default_rng(seed), row_length=10)
        assert injection.word // 10 == (injection.word + injection.words - 1) // 10
        rows.add(injection.word // 10)
    assert len(rows) > 50  # spread over the buffer, not stuck in the first row


@pytest.mark.parametrize("dtype", [np.int8, np.float16])
def test_a_row_fault_stays_within_one_row_of_a_narrow_dtype(dtype: type) -> None:
    base: np.ndarray = np.arange(8 * 32).reshape(8, 32).astype(dtype)  # rows of 32 or 64 octets
    row_octets = base[0].nbytes
    for seed in range(50):
        buffer = base.copy()
        inject(buffer, FaultModel.ROW, np.random.default_rng(seed))
        rows = np.flatnonzero((buffer.view(np.uint8) != base.view(np.uint8)).any(axis=1))
        assert len(rows) == 1, f"seed {seed}: rows {rows.tolist()} of {row_octets} octets"


# --- byte buffers --------------------------------------------------------------------------------


@pytest.mark.parametrize("model", list(FaultModel))
def test_inject_bytes_corrupts_a_bytearray_in_place(model: FaultModel) -> None:
    original = bytes(range(256)) * 3
    for seed in range(50):
        data = bytearray(original)
        injection = inject_bytes(data, model, np.random.default_rng(seed))
        before = np.frombuffer(original, np.uint8)
        after = np.frombuffer(bytes(data), np.uint8)
        assert injection.bits == bits_between(before, after) >= 1
        octets = np.flatnonzero(before != after)
        assert (
            injection.word * 4 <= octets[0] and octets[-1] < (injection.word + injection.words) * 4
        )
        if model == FaultModel.ROW:  # rows of 64 octets
            assert octets[0] // 64 == octets[-1] // 64


def test_inject_bytes_leaves_a_trailing_part_word_alone() -> None:
    for seed in range(100):
        data = bytearray(b"\xaa" * 7)
        inject_bytes(data, FaultModel.ROW, np.random.default_rng(seed))
        assert data[4:] == b"\xaa\xaa\xaa"


@pytest.mark.parametrize("octets", [0, 1, 2, 3])
def test_nothing_to_inject_in_less_than_a_word(octets: int) -> None:
    for model in FaultModel:
        with pytest.raises(NothingToInject):
            inject(np.zeros(octets, np.uint8), model, np.random.default_rng(0))
        with pytest.raises(NothingToInject):
            inject_bytes(bytearray(octets), model, np.random.default_rng(0))
    with pytest.raises(NothingToInject, match=f"{octets} octets"):
        words_of(np.zeros(octets, np.uint8))
    assert issubclass(NothingToInject, ValueError)


def test_buffers_that_cannot_be_corrupted_in_place_are_refused() -> None:
    strided = np.zeros((4, 4), np.float32)[:, ::2]
    frozen = np.zeros(4, np.float32)
    frozen.flags.writeable = False
    for buffer in (strided, frozen):
        with pytest.raises(ValueError, match="C-contiguous, writable"):
            inject(buffer, FaultModel.BIT, np.random.default_rng(0))


def test_an_unknown_model_is_refused() -> None:
    with pytest.raises(ValueError, match="fault model: expected one of"):
        inject(np.zeros(4, np.float32), 9, np.random.default_rng(0))  # type: ignore[arg-type]


def test_describe() -> None:
    assert Injection(5, 1, 3).describe() == "word 5, 3 bit(s)"
    assert Injection(5, 4, 60).describe() == "words 5..8, 60 bit(s)"
