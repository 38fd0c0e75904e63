"""CLTU coding with BCH(63,56) (ICD 2), checked against independent vectors and exhaustively."""

from __future__ import annotations

import itertools
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spacelink.cltu import (
    MAX_CODEBLOCKS,
    START_SEQUENCE,
    TAIL_SEQUENCE,
    CltuDecoder,
    CltuEnd,
    bch_parity_bitwise,
    bch_parity_octet,
    encode_cltu,
)
from tests.unit.spacelink.strategies import chunked

# 7 information octets -> parity octet, from two independent implementations: the Zephyr
# CCSDS profile of the Akira project, and dariolucia's ccsds Java library (TcEncoderTest).
VECTORS = {
    "007b00191fc018": 0x64,
    "10c006000b100e": 0x16,
    "02000001031900": 0x88,
    "00bbe915465555": 0xD2,
    "ff429a5468e804": 0xBE,
    "f6688c29a63957": 0xC2,
    "02555555555555": 0x56,
}
FRAME = bytes.fromhex("007b00191fc01810c006000b100e0200000103190000bbe91546")
CLTU = bytes.fromhex(
    "eb90007b00191fc0186410c006000b100e16020000010319008800bbe915465555d2c5c5c5c5c5c5c579"
)


@pytest.mark.parametrize(("info", "parity"), VECTORS.items())
def test_independent_parity_vectors(info: str, parity: int) -> None:
    assert bch_parity_octet(bytes.fromhex(info)) == parity


def test_independent_cltu_vector() -> None:
    assert encode_cltu(FRAME) == CLTU
    (decoded,) = CltuDecoder().feed(CLTU)
    assert decoded.data[: len(FRAME)] == FRAME and decoded.end is CltuEnd.TAIL


@given(st.binary(min_size=7, max_size=7))
def test_table_parity_equals_the_polynomial_division(info: bytes) -> None:
    assert bch_parity_octet(info) == ((~bch_parity_bitwise(info)) & 0x7F) << 1


def decode_one(stream: bytes) -> tuple[bytes, CltuEnd, CltuDecoder]:
    decoder = CltuDecoder()
    (result,) = decoder.feed(stream)
    return result.data, result.end, decoder


def flip(data: bytes, *bits: int) -> bytes:
    out = bytearray(data)
    for bit in bits:
        out[bit // 8] ^= 0x80 >> (bit % 8)
    return bytes(out)


def test_every_single_bit_error_is_corrected() -> None:
    frame = bytes(range(40))
    cltu = encode_cltu(frame)
    for block in range(len(frame) // 7 + 1):
        for bit in range(64):
            data, end, decoder = decode_one(flip(cltu, 16 + block * 64 + bit))
            assert data[: len(frame)] == frame and end is CltuEnd.TAIL, (block, bit)
            expected = 0 if bit == 63 else 1  # the filler bit is not protected
            assert decoder.stats.corrected_codeblocks == expected


def test_every_double_bit_error_in_a_codeblock_is_rejected() -> None:
    frame = bytes(range(100, 121))
    cltu = encode_cltu(frame)
    second_block = 16 + 64
    for a, b in itertools.combinations(range(63), 2):
        data, end, decoder = decode_one(flip(cltu, second_block + a, second_block + b))
        assert (data, end) == (frame[:7], CltuEnd.UNCORRECTABLE), (a, b)
        assert decoder.stats.uncorrectable_codeblocks == 1


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=1, max_size=300), st.data())
def test_double_errors_never_pass_as_data(frame: bytes, data: st.DataObject) -> None:
    cltu = encode_cltu(frame)
    blocks = (len(cltu) - 10) // 8
    block = data.draw(st.integers(0, blocks - 1))
    a, b = data.draw(st.lists(st.integers(0, 62), min_size=2, max_size=2, unique=True))
    decoded, end, _ = decode_one(flip(cltu, 16 + block * 64 + a, 16 + block * 64 + b))
    assert end is CltuEnd.UNCORRECTABLE and len(decoded) == block * 7


def test_the_tail_with_any_single_bit_error_still_ends_the_cltu() -> None:
    frame = b"\x01" * 14
    cltu = encode_cltu(frame)
    tail_start = len(cltu) - 8
    for bit in range(64):
        data, end, _ = decode_one(flip(cltu, tail_start * 8 + bit))
        assert data == frame and end is CltuEnd.TAIL


@settings(max_examples=100, deadline=None)
@given(st.lists(st.binary(min_size=1, max_size=200), min_size=1, max_size=5), st.data())
def test_round_trip_in_any_chunking_with_garbage_between(
    frames: list[bytes], data: st.DataObject
) -> None:
    garbage = st.binary(max_size=40).map(lambda g: g.replace(b"\xeb", b"\x00"))
    stream = b"".join(data.draw(garbage) + encode_cltu(f) for f in frames) + data.draw(garbage)
    decoder = CltuDecoder()
    out = []
    for piece in data.draw(chunked(stream)):
        out += decoder.feed(piece)
    assert [o.data[: len(f)] for o, f in zip(out, frames, strict=True)] == frames
    assert all(
        len(o.data) % 7 == 0 and set(o.data[len(f) :]) <= {0x55}
        for o, f in zip(out, frames, strict=True)
    )


def test_resynchronises_after_an_uncorrectable_codeblock_and_after_a_lost_tail() -> None:
    broken = flip(encode_cltu(b"A" * 20), 16, 17)
    no_tail = encode_cltu(b"B" * 20)[:-8]
    results = CltuDecoder().feed(broken + no_tail + encode_cltu(b"C" * 20))
    assert [r.end for r in results] == [CltuEnd.UNCORRECTABLE, CltuEnd.UNCORRECTABLE, CltuEnd.TAIL]
    assert results[1].data[:20] == b"B" * 20  # the next start sequence ended it
    assert results[2].data[:20] == b"C" * 20


def test_a_cltu_longer_than_any_frame_ends_as_too_long() -> None:
    long_data = bytes(random.Random(1).randbytes(7 * (MAX_CODEBLOCKS + 5)))
    stream = encode_cltu(long_data)
    decoder = CltuDecoder()
    (first, *_) = decoder.feed(stream)
    assert first.end is CltuEnd.TOO_LONG and len(first.data) == 7 * MAX_CODEBLOCKS
    assert decoder.stats.cltus_too_long == 1


def test_octets_outside_cltus_are_counted() -> None:
    decoder = CltuDecoder()
    decoder.feed(b"\x00" * 100 + START_SEQUENCE[:1])
    assert decoder.stats.octets_outside_cltu == 100
    (result,) = decoder.feed(encode_cltu(b"xyz")[1:])  # completes the split start sequence
    assert result.data[:3] == b"xyz"


def test_tail_sequence_constant() -> None:
    assert TAIL_SEQUENCE.hex() == "c5c5c5c5c5c5c579" and START_SEQUENCE.hex() == "eb90"
