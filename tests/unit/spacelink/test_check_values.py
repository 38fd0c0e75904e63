"""Published check values: CRC-16/CCITT-FALSE, the CCSDS randomizer and BCH(63,56) vectors."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from spacelink.cltu import (
    CltuDecoder,
    CltuEnd,
    bch_parity_bitwise,
    bch_parity_octet,
    encode_cltu,
    encode_codeblocks,
)
from spacelink.crc import crc16_ccitt, crc32, crcmod_has_c_extension
from spacelink.randomizer import pn_sequence, randomize
from tests.unit.spacelink.codec_strategies import QUICK

# ---------------------------------------------------------------------------------------------
# CRC-16/CCITT-FALSE (ICD 3)


def test_crc16_check_value() -> None:
    assert crc16_ccitt(b"123456789") == 0x29B1


def test_crc16_runs_on_crcmods_c_extension() -> None:
    """The link's throughput depends on it: the pure-Python fallback is ~100 times slower."""
    assert crcmod_has_c_extension()


def test_crc32_check_value() -> None:
    assert crc32(b"123456789") == 0xCBF43926
    assert crc32(b"6789", crc32(b"12345")) == 0xCBF43926


def test_crc16_of_nothing_is_the_initial_value() -> None:
    assert crc16_ccitt(b"") == 0xFFFF


@QUICK
@given(st.binary(max_size=500), st.binary(max_size=500))
def test_crc16_continues_incrementally(a: bytes, b: bytes) -> None:
    assert crc16_ccitt(b, crc16_ccitt(a)) == crc16_ccitt(a + b)


@QUICK
@given(st.binary(max_size=500))
def test_crc16_residue_of_data_plus_its_crc_is_zero(data: bytes) -> None:
    # Not reflected, no final XOR: the big-endian CRC appended gives a zero remainder.
    assert crc16_ccitt(data + crc16_ccitt(data).to_bytes(2, "big")) == 0


# ---------------------------------------------------------------------------------------------
# Pseudo-randomizer (ICD 6, CCSDS 131.0-B section 10)

# The full 255-octet period as published for CCSDS 131.0-B (copied from SatDump's table).
CCSDS_PN_SEQUENCE = bytes.fromhex(
    "ff480ec09a0d70bc8e2c93ada7b746ce5a977dcc32a2bf3e0a10f18894cdeab1"
    "fe901d81341ae1791c59275b4f6e8d9cb52efb9865457e7c1421e311299bd563"
    "fd203b026835c2f238b24eb69edd1b396a5df730ca8afcf82843c6225337aac7"
    "fa407604d06b85e471649d6d3dba3672d4bbee619515f9f050878c44a66f558f"
    "f480ec09a0d70bc8e2c93ada7b746ce5a977dcc32a2bf3e0a10f18894cdeab1f"
    "e901d81341ae1791c59275b4f6e8d9cb52efb9865457e7c1421e311299bd563f"
    "d203b026835c2f238b24eb69edd1b396a5df730ca8afcf82843c6225337aac7f"
    "a407604d06b85e471649d6d3dba3672d4bbee619515f9f050878c44a66f558"
)


def test_randomizer_sequence_starts_as_the_icd_says() -> None:
    assert pn_sequence(8) == bytes.fromhex("FF 48 0E C0 9A 0D 70 BC")


def test_randomizer_sequence_matches_the_published_period() -> None:
    assert len(CCSDS_PN_SEQUENCE) == 255
    assert pn_sequence(255) == CCSDS_PN_SEQUENCE
    assert pn_sequence(1115) == (CCSDS_PN_SEQUENCE * 5)[:1115]  # one whole TM frame


def test_randomizer_bits_follow_the_generator_polynomial() -> None:
    """h(x) = x^8 + x^7 + x^5 + x^3 + 1: every bit is the XOR of those 7, 5, 3 and 0 back."""
    seq = pn_sequence(64)
    bits = [(seq[i // 8] >> (7 - i % 8)) & 1 for i in range(len(seq) * 8)]
    assert bits[:8] == [1] * 8  # register all ones at the start of a frame
    for n in range(len(bits) - 8):
        assert bits[n + 8] == bits[n + 7] ^ bits[n + 5] ^ bits[n + 3] ^ bits[n], n


@QUICK
@given(st.binary(max_size=3000))
def test_randomize_is_an_involution(data: bytes) -> None:
    once = randomize(data)
    assert len(once) == len(data)
    assert randomize(once) == data
    assert bytes(a ^ b for a, b in zip(once, data, strict=True)) == pn_sequence(len(data))


def test_randomize_accepts_any_buffer_type() -> None:
    data = bytes(range(200))
    assert randomize(bytearray(data)) == randomize(memoryview(data)) == randomize(data)
    assert randomize(b"") == b""


# ---------------------------------------------------------------------------------------------
# BCH(63,56) codeblocks (ICD 2, CCSDS 231.0-B)

# 7 information octets -> parity octet. The first four come from a Zephyr CCSDS implementation,
# the last three from dariolucia's ccsds Java library.
BCH_VECTORS = [
    ("007b00191fc018", 0x64),
    ("10c006000b100e", 0x16),
    ("02000001031900", 0x88),
    ("00bbe915465555", 0xD2),
    ("FF429A5468E804", 0xBE),
    ("F6688C29A63957", 0xC2),
    ("02555555555555", 0x56),
]
VECTOR_FRAME = bytes.fromhex("007b00191fc01810c006000b100e0200000103190000bbe91546")
VECTOR_CLTU = bytes.fromhex(
    "eb90007b00191fc0186410c006000b100e16020000010319008800bbe915465555d2c5c5c5c5c5c5c579"
)
GENERATOR = 0b1100_0101  # g(x) = x^7 + x^6 + x^2 + 1


@pytest.mark.parametrize(("info", "parity"), BCH_VECTORS)
def test_bch_parity_vectors(info: str, parity: int) -> None:
    assert bch_parity_octet(bytes.fromhex(info)) == parity


@pytest.mark.parametrize(("info", "parity"), BCH_VECTORS)
def test_bch_vectors_encode_and_decode_as_codeblocks(info: str, parity: int) -> None:
    block = bytes.fromhex(info) + bytes([parity])
    assert encode_codeblocks(bytes.fromhex(info)) == block
    decoder = CltuDecoder()
    (result,) = decoder.feed(b"\xeb\x90" + block + bytes.fromhex("c5c5c5c5c5c5c579"))
    assert (result.data, result.end, result.corrected_bits) == (block[:7], CltuEnd.TAIL, 0)


def test_full_cltu_vector() -> None:
    assert encode_cltu(VECTOR_FRAME) == VECTOR_CLTU
    decoder = CltuDecoder()
    (result,) = decoder.feed(VECTOR_CLTU)
    assert result.data == VECTOR_FRAME + b"\x55\x55"
    assert result.end is CltuEnd.TAIL
    assert decoder.stats.codeblocks == 4


def gf2_remainder(value: int, modulus: int) -> int:
    while value.bit_length() >= modulus.bit_length():
        value ^= modulus << (value.bit_length() - modulus.bit_length())
    return value


@QUICK
@given(st.binary(min_size=7, max_size=7))
def test_table_parity_equals_the_bitwise_division(info: bytes) -> None:
    assert bch_parity_octet(info) == ((bch_parity_bitwise(info) ^ 0x7F) << 1)


@QUICK
@given(st.binary(min_size=7, max_size=7))
def test_every_codeword_is_a_multiple_of_the_generator(info: bytes) -> None:
    octet = bch_parity_octet(info)
    assert octet & 1 == 0  # the filler bit
    parity = (~octet >> 1) & 0x7F  # sent complemented
    codeword = (int.from_bytes(info, "big") << 7) | parity
    assert gf2_remainder(codeword, GENERATOR) == 0


@QUICK
@given(st.binary(min_size=7, max_size=7), st.integers(1, 62))
def test_cyclic_shifts_of_codewords_are_codewords(info: bytes, shift: int) -> None:
    parity = (~bch_parity_octet(info) >> 1) & 0x7F
    codeword = (int.from_bytes(info, "big") << 7) | parity
    rotated = ((codeword << shift) | (codeword >> (63 - shift))) & (2**63 - 1)
    shifted_info = (rotated >> 7).to_bytes(7, "big")
    assert bch_parity_octet(shifted_info) == ((~rotated & 0x7F) << 1)


@given(st.binary(max_size=3000), st.integers(0, 0xFFFF))
def test_the_stdlib_fallback_computes_the_same_crc(data: bytes, start: int) -> None:
    from spacelink.crc import _crc16_stdlib, crc16

    assert _crc16_stdlib(data, start) == crc16(data, start)
