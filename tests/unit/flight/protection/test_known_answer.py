"""Known answers: the fixed input, the digest, bit-exact and tolerant comparison, and the
recorded answer kept by the registry across a reopen (and dropped when its file is corrupt)."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from flight.jobs.model_check import ModelSignature, TensorSpec
from flight.jobs.providers import CPU
from flight.protection import known_answer
from flight.protection.known_answer import KnownAnswer, digest, known_answer_input
from tests.unit.flight.protection.test_model_guard import open_payload, register
from tests.unit.flight.protection.test_weights import same_bits

SHA_A = bytes(range(32))
SHA_B = bytes(range(1, 33))


def signature(*inputs: TensorSpec) -> ModelSignature:
    return ModelSignature(inputs, (TensorSpec("y", "float32", (None, 4)),), 13, frozenset({"Gemm"}))


SIGNATURE = signature(
    TensorSpec("image", "float32", (None, 3, 4, 4)),
    TensorSpec("scale", "float16", (2,)),
    TensorSpec("tokens", "int64", (1, None)),
    TensorSpec("mask", "bool", (3,)),
    TensorSpec("level", "uint8", ()),
)


# --- the fixed input -----------------------------------------------------------------------------


def test_the_input_follows_the_signature() -> None:
    feeds = known_answer_input(SIGNATURE, SHA_A)
    assert list(feeds) == ["image", "scale", "tokens", "mask", "level"]
    shapes = {name: (a.shape, a.dtype.name) for name, a in feeds.items()}
    assert shapes == {
        "image": ((1, 3, 4, 4), "float32"),  # dynamic axes are 1
        "scale": ((2,), "float16"),
        "tokens": ((1, 1), "int64"),
        "mask": ((3,), "bool"),
        "level": ((), "uint8"),
    }
    # Integers (often indices) and booleans are zero; floats are drawn, none of them zero.
    assert not feeds["tokens"].any() and not feeds["mask"].any() and feeds["level"] == 0
    assert np.all(feeds["image"] != 0) and np.all(np.isfinite(feeds["image"]))
    assert 0.3 < float(np.std(feeds["image"])) < 3.0  # normal, not uniform in [0, 1)


def test_the_input_is_a_function_of_the_signature_and_the_sha() -> None:
    first = known_answer_input(SIGNATURE, SHA_A)
    again = known_answer_input(SIGNATURE, bytes(SHA_A))
    assert same_bits(first, again)
    other = known_answer_input(SIGNATURE, SHA_B)
    assert other["image"].tobytes() != first["image"].tobytes()
    assert other["tokens"].tobytes() == first["tokens"].tobytes()
    # Only the first 8 octets of the SHA seed it: a model is named by its SHA, not its tail.
    tail = known_answer_input(SIGNATURE, SHA_A[:8] + b"\xff" * 24)
    assert same_bits(first, tail)


# --- digest and comparison -----------------------------------------------------------------------

BASE: dict[str, np.ndarray] = {
    "a": np.array([1.0, -2.0, 3.5], np.float32),
    "b": np.array([[7, 8]], np.int64),
}


def test_the_digest_ignores_insertion_order_but_nothing_else() -> None:
    reference = digest(BASE)
    assert digest({"b": BASE["b"], "a": BASE["a"]}) == reference
    variants = {
        "renamed": {"c": BASE["a"], "b": BASE["b"]},
        "negative zero": {**BASE, "a": np.array([1.0, -2.0, 3.5, -0.0], np.float32)},
        "dtype": {**BASE, "b": BASE["b"].astype(np.int32)},
        "shape": {**BASE, "b": BASE["b"].reshape(2, 1)},
        "one bit": {**BASE, "a": BASE["a"].view(np.uint32) ^ np.uint32(1)},
        "one output fewer": {"a": BASE["a"]},
    }
    prints = {name: digest(outputs) for name, outputs in variants.items()}
    assert reference not in prints.values()
    assert len(set(prints.values())) == len(prints)
    assert digest({"z": np.zeros(1, np.float32)}) != digest({"z": -np.zeros(1, np.float32)})


def nudged(outputs: dict[str, np.ndarray], ulps: int) -> dict[str, np.ndarray]:
    a = outputs["a"].copy()
    a.view(np.uint32)[0] += np.uint32(ulps)
    return {**outputs, "a": a}


def test_matches_bit_for_bit_without_a_tolerance() -> None:
    answer = known_answer.record(CPU, BASE)
    assert answer.matches({k: v.copy() for k, v in BASE.items()}, 0.0)
    assert not answer.matches(nudged(BASE, 1), 0.0)
    # Values, not memory layout: a reversed view of the same values is the same answer.
    assert answer.matches({**BASE, "a": np.array([3.5, -2.0, 1.0], np.float32)[::-1]}, 0.0)


def test_matches_within_a_tolerance() -> None:
    answer = known_answer.record(CPU, BASE)
    assert answer.matches(nudged(BASE, 1), 1e-6)
    assert not answer.matches(nudged(BASE, 1 << 16), 1e-6)  # 1.0 -> 1.0078
    assert answer.matches(nudged(BASE, 1 << 16), 1e-2)
    assert not answer.matches({**BASE, "b": BASE["b"] + 1}, 1e-2)  # integers stay exact
    assert not answer.matches({"a": BASE["a"]}, 1e-2)
    assert not answer.matches({**BASE, "c": BASE["a"]}, 1e-2)
    nan = known_answer.record(CPU, {"a": np.array([np.nan, 1.0], np.float32)})
    assert nan.matches({"a": np.array([np.nan, 1.0], np.float32)}, 1e-3)


def test_record_keeps_copies_of_the_outputs() -> None:
    outputs = {k: v.copy() for k, v in BASE.items()}
    answer = known_answer.record(CPU, outputs)
    outputs["a"][0] = 99.0
    assert answer.outputs["a"][0] == 1.0
    assert answer.digest == digest(BASE) and answer.provider == CPU


def test_the_answer_file_round_trips() -> None:
    answer = known_answer.record(CPU, BASE)
    data = known_answer.to_bytes(answer)
    with np.load(io.BytesIO(data), allow_pickle=False) as archive:
        assert sorted(archive.files) == ["a", "b"]  # plain .npz, no pickles
    again = known_answer.from_bytes(CPU, answer.digest, data)
    assert again.provider == CPU and again.digest == answer.digest
    assert same_bits(again.outputs, answer.outputs)
    assert again.matches(BASE, 0.0)


# --- the recorded answer in the registry ---------------------------------------------------------


def test_the_answer_survives_a_registry_reopen(tmp_path: Path) -> None:
    payload = open_payload(tmp_path)
    entry = register(payload)
    assert entry.answer is not None and entry.answer_path.is_file()

    reopened = open_payload(tmp_path)

    answer = reopened.registry.entry("m").answer
    assert answer is not None
    assert (answer.provider, answer.digest) == (CPU, entry.answer.digest)
    assert same_bits(answer.outputs, entry.answer.outputs)
    assert reopened.guard.check_answer(reopened.registry.entry("m")) is False
    assert reopened.guard.answer_runs == 1  # checked, not recorded again: it matched
    assert reopened.counts() == {}


def test_deleting_a_model_deletes_its_answer(tmp_path: Path) -> None:
    payload = open_payload(tmp_path)
    entry = register(payload)
    payload.registry.delete("m", 1)
    assert not entry.answer_path.exists()


def other_values(data: bytes) -> bytes:
    """A valid answer file holding other values (as a wrong rewrite would leave it)."""
    with np.load(io.BytesIO(data), allow_pickle=False) as archive:
        outputs = {name: archive[name].copy() for name in archive.files}
    outputs["logits"].reshape(-1).view(np.uint32)[0] ^= np.uint32(1)
    return known_answer.to_bytes(KnownAnswer(CPU, b"", outputs))


def flip_in_the_values(data: bytes) -> bytes:
    """One bit flipped in the stored array (an upset in the flash)."""
    upset = bytearray(data)
    upset[len(data) // 4] ^= 0x10
    return bytes(upset)


def check_dropped_and_recorded_again(tmp_path: Path, corrupt: Callable[[bytes], bytes]) -> None:
    payload = open_payload(tmp_path)
    entry = register(payload)
    assert entry.answer is not None
    entry.answer_path.write_bytes(corrupt(entry.answer_path.read_bytes()))

    reopened = open_payload(tmp_path)

    dropped = reopened.registry.entry("m")
    assert dropped.answer is None
    assert reopened.guard.check_answer(dropped) is False  # recorded again, nothing repaired
    recorded = reopened.registry.entry("m").answer
    assert recorded is not None and recorded.digest == entry.answer.digest
    again = open_payload(tmp_path).registry.entry("m").answer  # and durably so
    assert again is not None and same_bits(again.outputs, entry.answer.outputs)


# The registry catches (OSError, ValueError, KeyError, TypeError) around np.load, but the zip
# reader raises zipfile.BadZipFile (its own CRC-32 catches a flipped bit before the digest can)
# and an empty file raises EOFError: both escape ModelRegistry() and the registry cannot open.


@pytest.mark.parametrize(
    "corrupt",
    [
        pytest.param(other_values, id="other values"),
        pytest.param(lambda data: b"\x93NUMPY" + data[6:], id="not a zip"),
        pytest.param(lambda data: b"", id="emptied"),
        pytest.param(flip_in_the_values, id="bit flip"),
        pytest.param(lambda data: data[: len(data) // 2], id="truncated"),
    ],
)
def test_a_corrupt_answer_file_is_dropped_at_open(
    tmp_path: Path, corrupt: Callable[[bytes], bytes]
) -> None:
    check_dropped_and_recorded_again(tmp_path, corrupt)


def test_an_answer_file_removed_is_recorded_again(tmp_path: Path) -> None:
    payload = open_payload(tmp_path)
    entry = register(payload)
    entry.answer_path.unlink()
    reopened = open_payload(tmp_path)
    assert reopened.registry.entry("m").answer is None
    reopened.guard.check_answer(reopened.registry.entry("m"))
    assert entry.answer_path.is_file()
    assert reopened.registry.entry("m").answer is not None
