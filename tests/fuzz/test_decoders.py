"""Every decoder under hypothesis: random octets and mutated valid encodings (issue 8).

An input must decode or raise one of the decoder's documented errors (tools/fuzz_targets.py),
and its peak of traced memory must stay within a bound proportional to its size.
FUZZ_EXAMPLES sets the examples per target and strategy (200 by default); `python -m tools.fuzz`
runs the millions.
"""

from __future__ import annotations

import contextlib
import os
import tracemalloc

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from spacelink.spacepacket import PusTm
from tools import model_gen
from tools.fuzz_targets import PARAMS, TARGETS, FuzzTarget

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "200"))
NAMES = sorted(TARGETS)
# Memory bound per input: what a decoder may hold per input octet, plus room for small caches.
OCTET_FACTOR = 64
HEADROOM = 4 * 1024**2

FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,  # CI timing is noisy; hangs are the long runner's business
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
if os.environ.get("CI"):
    FUZZ = settings(FUZZ, database=None)  # no example database written in CI


@pytest.fixture(scope="module", autouse=True)
def warmed() -> None:
    """Every target's seeds run once, so that caches filled on first use are not counted."""
    for target in TARGETS.values():
        for seed in target.seeds:
            run(target, seed)


def run(target: FuzzTarget, data: bytes) -> None:
    """One input through a target; an error outside its accepted ones fails the test."""
    with contextlib.suppress(*target.accepted):
        target.run(data)


def run_bounded(target: FuzzTarget, data: bytes) -> None:
    """`run`, with the peak of memory the call allocates checked against the bound."""
    # Traced for the call only: tracing hypothesis' own work as well would double the run time.
    tracemalloc.start()
    try:
        run(target, data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    bound = OCTET_FACTOR * len(data) + HEADROOM
    assert peak <= bound, f"{peak} bytes allocated at the peak for {len(data)} octets"


@st.composite
def mutated(draw: st.DrawFn, target: FuzzTarget) -> bytes:
    """A seed under 1 to 4 bit flips, octet sets, truncations, extensions, deletions and splices;
    half of them with the target's checksums and length fields repaired afterwards."""
    data = bytearray(draw(st.sampled_from(target.seeds)))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "set", "truncate", "extend", "delete", "splice"]))
        pos = draw(st.integers(0, len(data)))
        if op == "flip" and pos < len(data):
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "set" and pos < len(data):
            data[pos] = draw(st.sampled_from([0x00, 0x01, 0x7F, 0x80, 0xFF]) | st.integers(0, 255))
        elif op == "truncate":
            del data[pos:]
        elif op == "extend":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=64))
        elif op == "delete":
            del data[pos : pos + draw(st.integers(1, 32))]
        elif op == "splice":
            other = draw(st.sampled_from(target.seeds))
            data[pos:] = other[draw(st.integers(0, len(other))) :]
    out = bytes(data)
    if target.fixup is not None and draw(st.booleans()):
        out = target.fixup(out)
    return out


@pytest.mark.parametrize("name", NAMES)
@FUZZ
@given(data=st.binary(max_size=2048))
def test_random_octets_decode_or_raise_a_documented_error(name: str, data: bytes) -> None:
    run_bounded(TARGETS[name], data)


@pytest.mark.parametrize("name", NAMES)
@FUZZ
@given(draw=st.data())
def test_mutated_valid_encodings_decode_or_raise_a_documented_error(
    name: str, draw: st.DataObject
) -> None:
    target = TARGETS[name]
    run_bounded(target, draw.draw(mutated(target), label="input"))


def test_every_seed_decodes_cleanly_and_the_registry_covers_every_decoder() -> None:
    expected = {
        "cltu", "tc_frame", "control_command", "uplink_chain", "space_packet",
        "command_arguments", "tm_frame", "tm_sync", "tm_rs_sync", "tm_demux", "tm_packet", "clcw",
        "npy_input", "onnx_model", "sdls",
    }  # fmt: skip
    assert expected <= set(TARGETS)
    refused = {
        # seeds that exercise a refusal on purpose: other dtypes than the signature's float32,
        # operators outside the allow-list, a bfloat16 input
        "npy_input": 3,
        "onnx_model": 3,
    }
    for name, target in TARGETS.items():
        assert target.seeds, name
        failures = 0
        for seed in target.seeds:
            try:
                target.run(seed)
            except target.accepted:
                failures += 1
        assert failures == refused.get(name, 0), name


# -- regressions: inputs that crashed a decoder before its fix ----------------------------------


def npy_file(header: bytes, body: bytes = b"") -> bytes:
    """A version 1.0 .npy file with this header text (padded as numpy pads it)."""
    header = header.ljust(117) + b"\n"
    return b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header + body


def onnx_with_bad_weight_shape() -> bytes:
    """A bias of 4 floats declared as a scalar: the checker lets it pass, numpy cannot shape it."""
    model = model_gen.mlp(widths=(8, 6, 4))
    bias = next(t for t in model.graph.initializer if t.name == "fc2.bias")
    del bias.dims[:]
    return model_gen.model_bytes(model)


def onnx_with_unknown_tensor_type() -> bytes:
    model = model_gen.mlp(widths=(8, 6, 4))
    model.graph.initializer[1].data_type = 65
    return model_gen.model_bytes(model)


def onnx_with_bad_utf8_name() -> bytes:
    """A subgraph output name that is not UTF-8: the checker's error message cannot be decoded."""
    data = model_gen.model_bytes(model_gen.loop_model())
    at = data.rfind(b"cond_out")
    return data[: at + 3] + b"\xe4" + data[at + 4 :]


# TM[3,25] THERMAL_STATUS with THERMAL_CRITICAL = 1310720.0 (its range is 20..95).
_THERMAL_STATUS = (
    "0006c4bb9000c4bb9000c4bb9000c4bb9000000000000000000000000000000000000000000000"
    "41a0000041a0000049a00000"
)


def tm_packet(service: int, subtype: int, source_data: bytes) -> bytes:
    return PusTm(PARAMS.apid, service, subtype, source_data).pack()


_F4 = b"{'descr': '<f4', 'fortran_order': False, 'shape': "
_F8 = _F4.replace(b"f4", b"f8")


@FUZZ
@given(name=st.sampled_from(NAMES), data=st.binary(max_size=64))
# npy_input: numpy's header tokenizer raised tokenize.TokenError (not a ValueError).
@example(name="npy_input", data=npy_file(_F4 + b"(2, 8), } '''", bytes(64)))
@example(name="npy_input", data=npy_file(_F4 + b"(2, 8", bytes(64)))
# npy_input: 8 octets of data declaring 10^13 doubles: numpy allocated them first
# (MemoryError; with 10^8 doubles, 763 MiB for a 136-octet file).
@example(name="npy_input", data=npy_file(_F8 + b"(10000000000000,), }", bytes(8)))
@example(name="npy_input", data=npy_file(_F8 + b"(100000000,), }", bytes(8)))
# onnx_model: weights that do not fill their shape passed the checker, then ValueError from
# numpy_helper.to_array in weight_checksums.
@example(name="onnx_model", data=onnx_with_bad_weight_shape())
# onnx_model: the checker raised ValueError (unknown data type 65) and UnicodeDecodeError.
@example(name="onnx_model", data=onnx_with_unknown_tensor_type())
@example(name="onnx_model", data=onnx_with_bad_utf8_name())
# tm_packet: an enum or a range outside its definition raised ValueOutOfRange from decode_tm,
# which the ground's live view and archive do not catch (they catch CodecError).
@example(name="tm_packet", data=tm_packet(5, 3, bytes.fromhex("003e03d940500000")))
@example(name="tm_packet", data=tm_packet(3, 25, bytes.fromhex(_THERMAL_STATUS)))
def test_inputs_that_crashed_before(name: str, data: bytes) -> None:
    run_bounded(TARGETS[name], data)
