"""Reed-Solomon TM channel coding (ICD 6a), proven against code we did not write.

The references:
- `reed_solomon_ccsds` (PyPI, KP Labs): a port of Phil Karn's libfec CCSDS codec, dual basis and
  interleaving included; its conversion tables are libfec's Taltab and Tal1tab.
- `reedsolo` (PyPI): a generic RS codec in the conventional basis, set to the CCSDS code. It
  takes the generator as a field element, not an exponent: alpha^11 is 0xAD in this field
  (`generator=11` would build another code, see tomerfiliba-org/reedsolomon issue 76).
- Published vectors: the codeword of libfec's own test (SpaceTeam/libfec,
  tests/decode_rs_ccsds_test.cpp: message 100 i mod 255, check symbols as the C encoder made
  them), and the dual-basis codeword of reed-solomon-ccsds's tests (message a sine).
- CCSDS 131.0-B 4.4.2: the dual basis {l_i} of {1, beta, ..., beta^7}, beta = alpha^117, has
  Tr(l_i beta^j) = 1 if i = j, else 0; checked with reedsolo's field arithmetic.
"""

from __future__ import annotations

import math
import random

import pytest
import reed_solomon_ccsds
import reedsolo
from hypothesis import given, settings
from hypothesis import strategies as st
from reed_solomon_ccsds import reed_solomon as ccsds_tables

from spacelink.reed_solomon import (
    CODEBLOCK_LENGTH,
    FROM_DUAL_BASIS,
    INTERLEAVING,
    PARITY,
    TO_DUAL_BASIS,
    DecodedBlock,
    decode_codeblock,
    encode_codeblock,
)

FRAME = 1115
DATA = 223
SLOW_REFERENCE = settings(max_examples=25, deadline=None)  # reed_solomon_ccsds: ~70 ms a block
SOME = settings(max_examples=100, deadline=None)

# reedsolo, conventional basis: F(x) = 0x187, roots (alpha^11)^j for j = 112 ... 143.
REEDSOLO = reedsolo.RSCodec(nsym=32, nsize=255, fcr=112, prim=0x187, generator=0xAD, c_exp=8)
LIBFEC_TALTAB = ccsds_tables.TAL_TO_DUAL_BASIS.tobytes()  # conventional -> dual
LIBFEC_TAL1TAB = ccsds_tables.TAL_TO_CONVENTIONAL.tobytes()  # dual -> conventional

frames = st.binary(min_size=FRAME, max_size=FRAME)


def codeword(block: bytes, j: int) -> bytes:
    """Codeword j (0 ... 4) of an interleaved codeblock (or its data part of a frame)."""
    return bytes(block[j::INTERLEAVING])


def interleave(codewords: list[bytes]) -> bytes:
    return bytes(octet for column in zip(*codewords, strict=True) for octet in column)


def damaged(block: bytes, errors: dict[int, list[int]], rng: random.Random) -> bytes:
    """`block` with a random non-zero error at each listed symbol (0 ... 254) of each codeword."""
    out = bytearray(block)
    for j, symbols in errors.items():
        for symbol in symbols:
            out[symbol * INTERLEAVING + j] ^= rng.randrange(1, 256)
    return bytes(out)


# ---------------------------------------------------------------------------------------------
# The dual basis (CCSDS 131.0-B 4.4.2, Annex F)


def test_dual_basis_tables_are_libfecs() -> None:
    assert TO_DUAL_BASIS == LIBFEC_TALTAB
    assert FROM_DUAL_BASIS == LIBFEC_TAL1TAB
    # The first entries as printed in libfec's ccsds_tab.c (Taltab, then Tal1tab).
    assert TO_DUAL_BASIS[:8] == bytes.fromhex("007bafd499e2364d")
    assert FROM_DUAL_BASIS[:8] == bytes.fromhex("00ccac6079b5d519")
    assert sorted(TO_DUAL_BASIS) == list(range(256))


def test_dual_basis_is_the_standards_definition() -> None:
    """l_i, the element whose dual-basis bits are all 0 but z_i (z_0 the MSB), has
    Tr(l_i beta^j) = [i = j] with beta = alpha^117, in reedsolo's arithmetic of the field."""
    reedsolo.init_tables(prim=0x187, generator=2, c_exp=8)
    beta = reedsolo.gf_pow(2, 117)

    def trace(x: int) -> int:
        total = 0
        for _ in range(8):
            total ^= x
            x = reedsolo.gf_mul(x, x)
        return total

    for i in range(8):
        basis_element = FROM_DUAL_BASIS[0x80 >> i]
        for j in range(8):
            product = reedsolo.gf_mul(basis_element, reedsolo.gf_pow(beta, j))
            assert trace(product) == (1 if i == j else 0), (i, j)


# ---------------------------------------------------------------------------------------------
# Published codewords

# SpaceTeam/libfec tests/decode_rs_ccsds_test.cpp: data[i] = 100 i mod 255 and the 32 check
# symbols libfec's encode_rs_ccsds gave it (dual basis).
LIBFEC_MESSAGE = bytes(100 * i % 255 for i in range(DATA))
LIBFEC_CHECK = bytes(
    [
        *(90, 133, 76, 30, 219, 142, 41, 71, 226, 23, 102, 13, 237, 204, 8, 100),
        *(57, 7, 67, 77, 106, 101, 228, 84, 13, 141, 124, 153, 82, 84, 248, 200),
    ]
)
# kplabs-pl/reed-solomon-ccsds tests/test_reed_solomon.py, GOOD_BLOCK_DUAL_BASIS: a sine,
# floor(128 sin(2 pi i / 111.5)) as signed octets, and its dual-basis check symbols.
SINE_MESSAGE = bytes(
    math.floor(128 * math.sin(2 * math.pi * i / 111.5)) & 0xFF for i in range(DATA)
)
SINE_CHECK = bytes.fromhex("428dffb344be5f286db866a351fbb6ff f4766e2b808064862e87ace4f8631951")


def test_published_codewords_in_every_slot_of_the_interleaver() -> None:
    zeros = bytes(DATA)
    words = [LIBFEC_MESSAGE, SINE_MESSAGE, zeros, SINE_MESSAGE, LIBFEC_MESSAGE]
    block = encode_codeblock(interleave(words))
    check = block[FRAME:]
    assert codeword(check, 0) == codeword(check, 4) == LIBFEC_CHECK
    assert codeword(check, 1) == codeword(check, 3) == SINE_CHECK
    assert codeword(check, 2) == bytes(PARITY)


def test_libfecs_decoder_test_case() -> None:
    """libfec's test inverts the first 16 symbols of its codeword; 16 is E, all corrected."""
    frame = interleave([LIBFEC_MESSAGE] * INTERLEAVING)
    block = bytearray(encode_codeblock(frame))
    for symbol in range(16):
        block[symbol * INTERLEAVING + 2] ^= 0xFF
    assert decode_codeblock(bytes(block)) == DecodedBlock(frame, 16, 0)


# ---------------------------------------------------------------------------------------------
# Encoder against the independent implementations


@SLOW_REFERENCE
@given(frames)
def test_codeblock_equals_libfec_ports(frame: bytes) -> None:
    expected = reed_solomon_ccsds.encode(frame, dual_basis=True, interleaving=INTERLEAVING)
    assert encode_codeblock(frame) == expected


@SOME
@given(frames)
def test_check_symbols_equal_reedsolos_after_basis_conversion(frame: bytes) -> None:
    block = encode_codeblock(frame)
    assert len(block) == CODEBLOCK_LENGTH and block[:FRAME] == frame
    for j in range(INTERLEAVING):
        conventional = bytes(LIBFEC_TAL1TAB[s] for s in codeword(frame, j))
        reference = REEDSOLO.encode(conventional)
        assert reference[:DATA] == conventional
        assert codeword(block[FRAME:], j) == bytes(LIBFEC_TALTAB[s] for s in reference[DATA:])


@pytest.mark.parametrize("length", [0, 1114, 1116, 1275])
def test_encoder_takes_only_a_whole_frame(length: int) -> None:
    with pytest.raises(ValueError, match="1115"):
        encode_codeblock(bytes(length))


@pytest.mark.parametrize("length", [0, 1115, 1274, 1276])
def test_decoder_takes_only_a_whole_codeblock(length: int) -> None:
    with pytest.raises(ValueError, match="1275"):
        decode_codeblock(bytes(length))


@pytest.mark.parametrize("limit", [-1, 17])
def test_a_codeword_corrects_at_most_e_symbols(limit: int) -> None:
    with pytest.raises(ValueError, match="16"):
        decode_codeblock(bytes(CODEBLOCK_LENGTH), max_corrections=limit)


# ---------------------------------------------------------------------------------------------
# Decoder: everything up to E = 16 symbols a codeword is corrected


def test_a_clean_codeblock_decodes_to_its_frame() -> None:
    frame = random.Random(1).randbytes(FRAME)
    assert decode_codeblock(encode_codeblock(frame)) == DecodedBlock(frame, 0, 0)


@SOME
@given(frames, st.lists(st.integers(0, 16), min_size=5, max_size=5), st.randoms())
def test_up_to_16_symbol_errors_per_codeword_are_corrected(
    frame: bytes, counts: list[int], rng: random.Random
) -> None:
    """Random positions (check symbols included) and random values, in every codeword."""
    errors = {j: rng.sample(range(255), n) for j, n in enumerate(counts)}
    result = decode_codeblock(damaged(encode_codeblock(frame), errors, rng))
    assert result == DecodedBlock(frame, sum(counts), 0)


@SLOW_REFERENCE
@given(frames, st.lists(st.integers(0, 16), min_size=5, max_size=5), st.randoms())
def test_corrections_agree_with_libfec_port_and_reedsolo(
    frame: bytes, counts: list[int], rng: random.Random
) -> None:
    errors = {j: rng.sample(range(255), n) for j, n in enumerate(counts)}
    block = damaged(encode_codeblock(frame), errors, rng)
    corrected, data = reed_solomon_ccsds.decode(block, dual_basis=True, interleaving=INTERLEAVING)
    assert corrected == counts and data == frame
    for j in range(INTERLEAVING):
        received = bytes(LIBFEC_TAL1TAB[s] for s in codeword(block, j))
        message, _, positions = REEDSOLO.decode(received)
        assert bytes(LIBFEC_TALTAB[s] for s in message) == codeword(frame, j)
        assert sorted(positions) == sorted(errors[j])
    assert decode_codeblock(block) == DecodedBlock(frame, sum(counts), 0)


# A burst of b bits touches at most (b + 6) // 8 + 1 octets, spread over the five codewords:
# up to 633 bits that is 80 octets, 16 in each codeword.
@SOME
@given(frames, st.integers(1, 633), st.data())
def test_any_burst_up_to_633_bits_is_corrected(
    frame: bytes, length: int, data: st.DataObject
) -> None:
    start = data.draw(st.integers(0, CODEBLOCK_LENGTH * 8 - length))
    pattern = data.draw(st.integers(0, (1 << length) - 1)) | 1 | (1 << (length - 1))
    block = encode_codeblock(frame)
    shift = CODEBLOCK_LENGTH * 8 - start - length
    hit = (int.from_bytes(block, "big") ^ (pattern << shift)).to_bytes(CODEBLOCK_LENGTH, "big")
    octets = sum(a != b for a, b in zip(block, hit, strict=True))
    assert decode_codeblock(hit) == DecodedBlock(frame, octets, 0)


# ---------------------------------------------------------------------------------------------
# Decoder: beyond E, a failure is detected, never a wrong frame


def test_more_than_16_errors_in_a_codeword_never_give_a_wrong_frame() -> None:
    """300 codeblocks with 17 to 40 symbol errors in one or more codewords. A bounded-distance
    decoder could miscorrect with probability ~1e-14 a codeword: none may come out."""
    rng = random.Random(20240611)
    for _ in range(300):
        frame = rng.randbytes(FRAME)
        bad = rng.sample(range(INTERLEAVING), rng.randint(1, INTERLEAVING))
        counts = [rng.randint(17, 40) if j in bad else rng.randint(0, 16) for j in range(5)]
        errors = {j: rng.sample(range(255), n) for j, n in enumerate(counts)}
        result = decode_codeblock(damaged(encode_codeblock(frame), errors, rng))
        assert result.frame is None
        assert result.uncorrectable_codewords == len(bad)
        assert result.corrected_symbols == sum(n for j, n in enumerate(counts) if j not in bad)


@SOME
@given(frames, st.integers(0, 4), st.integers(9, 24), st.randoms())
def test_a_decoder_held_to_8_corrections_detects_9_to_24_errors(
    frame: bytes, j: int, count: int, rng: random.Random
) -> None:
    """With the minimum distance 33, 8 corrections leave 24 errors always detected."""
    block = encode_codeblock(frame)
    hit = damaged(block, {j: rng.sample(range(255), count)}, rng)
    assert decode_codeblock(hit, max_corrections=8) == DecodedBlock(None, 0, 1)
    few = damaged(block, {j: rng.sample(range(255), 8)}, rng)
    assert decode_codeblock(few, max_corrections=8) == DecodedBlock(frame, 8, 0)


def test_random_octets_are_not_a_codeblock() -> None:
    rng = random.Random(5)
    for _ in range(20):
        result = decode_codeblock(rng.randbytes(CODEBLOCK_LENGTH))
        assert result.frame is None and result.uncorrectable_codewords == INTERLEAVING
