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

import numpy as np
import pytest
import reed_solomon_ccsds
import reedsolo
from hypothesis import given, settings
from hypothesis import strategies as st
from reed_solomon_ccsds import reed_solomon as ccsds_tables

from spacelink.icd import ATTACHED_SYNC_MARKER, TM_DATA_LENGTH, LinkParameters, TmCoding
from spacelink.randomizer import pn_sequence
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
from spacelink.tmframe import (
    FrameSynchronizer,
    TmFrame,
    channel_frame_octets,
    encode_channel_frame,
)
from spacelink.tmmux import VirtualChannelMux
from tests.unit.spacelink.codec_strategies import chunked, tm_frames, tm_garbage

FRAME = 1115
DATA = 223
LINE = 4 + CODEBLOCK_LENGTH  # marker + codeblock
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


# ---------------------------------------------------------------------------------------------
# The coded channel: encode_channel_frame, FrameSynchronizer, the multiplexer


def sample_frames(count: int, seed: int = 0) -> list[TmFrame]:
    rng = random.Random(seed)
    return [
        TmFrame(500, rng.randrange(2), n & 0xFF, n & 0xFF, 0, rng.randbytes(TM_DATA_LENGTH), n)
        for n in range(count)
    ]


def rs_line(frames: list[TmFrame]) -> list[bytes]:
    return [encode_channel_frame(f.pack(), TmCoding.RS) for f in frames]


def test_line_octets_per_frame() -> None:
    assert channel_frame_octets(TmCoding.NONE) == 1119
    assert channel_frame_octets(TmCoding.RS) == 1279 == LINE
    assert channel_frame_octets(TmCoding.NONE, 64) == 68
    with pytest.raises(ValueError, match="1115"):
        channel_frame_octets(TmCoding.RS, 64)
    with pytest.raises(ValueError, match="1115"):
        FrameSynchronizer(frame_length=64, coding=TmCoding.RS)
    with pytest.raises(ValueError, match="1115"):
        LinkParameters(tm_frame_length=64, tm_coding=TmCoding.RS)
    assert TmCoding("rs") is TmCoding.RS and TmCoding("none") is TmCoding.NONE


@SLOW_REFERENCE
@given(tm_frames())
def test_coded_channel_frame_is_the_marker_then_the_randomized_codeblock(frame: TmFrame) -> None:
    packed = frame.pack()
    line = encode_channel_frame(packed, TmCoding.RS)
    assert line[:4] == ATTACHED_SYNC_MARKER and len(line) == LINE
    block = bytes(a ^ b for a, b in zip(line[4:], pn_sequence(CODEBLOCK_LENGTH), strict=True))
    assert block == reed_solomon_ccsds.encode(packed, dual_basis=True, interleaving=INTERLEAVING)
    assert encode_channel_frame(packed) == encode_channel_frame(packed, TmCoding.NONE)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_frames_through_a_line_with_ber_1e_4(seed: int) -> None:
    """Every frame comes out and every corrupted octet of every codeblock is counted as
    corrected. Bit errors fall everywhere but on the first marker (searching wants it exact)."""
    frames = sample_frames(60, seed)
    stream = np.frombuffer(b"".join(rs_line(frames)), dtype=np.uint8)
    rng = np.random.default_rng(seed)
    flips = rng.random(stream.size * 8) < 1e-4
    flips[:32] = False
    noisy = stream ^ np.packbits(flips)
    changed = (noisy != stream).reshape(len(frames), LINE)
    sync = FrameSynchronizer(scid=500, coding=TmCoding.RS)
    assert sync.feed(noisy.tobytes()) == frames
    assert changed[:, 4:].sum() > 30  # the run did exercise the decoder
    assert sync.stats.rs_corrected_symbols == changed[:, 4:].sum()
    assert sync.stats.markers_with_errors == changed[:, :4].any(axis=1).sum()
    assert (sync.stats.rs_uncorrectable, sync.stats.fecf_errors, sync.stats.frames) == (0, 0, 60)


@settings(max_examples=25, deadline=None)
@given(st.lists(tm_frames(scid=st.just(500)), min_size=1, max_size=4), st.data())
def test_coded_frames_in_random_chunks_with_garbage_between(
    frames: list[TmFrame], data: st.DataObject
) -> None:
    garbage = [data.draw(tm_garbage) for _ in frames]
    stream = b"".join(g + coded for g, coded in zip(garbage, rs_line(frames), strict=True))
    sync = FrameSynchronizer(scid=500, coding=TmCoding.RS)
    out: list[TmFrame] = []
    for piece in data.draw(chunked(stream)):
        out += sync.feed(piece)
    assert out == frames
    assert sync.stats.octets_skipped == sum(map(len, garbage))
    assert (sync.stats.rs_uncorrectable, sync.stats.fecf_errors) == (0, 0)


@pytest.mark.parametrize("hit", [0, 2])
def test_an_uncorrectable_codeblock_is_counted_and_the_next_one_still_comes_out(hit: int) -> None:
    frames = sample_frames(4)
    line = [bytearray(chunk) for chunk in rs_line(frames)]
    for symbol in range(17):  # codeword 3 of codeblock `hit`, one more error than E
        line[hit][4 + symbol * 7 * INTERLEAVING + 3] ^= 0xA5
    sync = FrameSynchronizer(coding=TmCoding.RS)
    assert sync.feed(b"".join(line)) == frames[:hit] + frames[hit + 1 :]
    assert (sync.stats.rs_uncorrectable, sync.stats.fecf_errors) == (1, 0)
    # Like a bad FECF: dropped whole while locked, searched past the marker while searching.
    assert sync.stats.octets_skipped == (LINE if hit == 0 else 0)


def test_a_codeblock_that_decodes_to_a_bad_fecf_counts_as_a_fecf_error() -> None:
    frames = sample_frames(3)
    bad = bytearray(frames[1].pack())
    bad[-1] ^= 1  # the FECF is wrong, the codeblock built over it is valid
    line = rs_line(frames)
    line[1] = encode_channel_frame(bytes(bad), TmCoding.RS)
    sync = FrameSynchronizer(coding=TmCoding.RS)
    assert sync.feed(b"".join(line)) == [frames[0], frames[2]]
    assert (sync.stats.fecf_errors, sync.stats.rs_uncorrectable) == (1, 0)


def test_the_multiplexer_codes_frames_as_its_parameters_say() -> None:
    coded = VirtualChannelMux(LinkParameters(tm_coding=TmCoding.RS), lambda: 0x0100_0000)
    plain = VirtualChannelMux(LinkParameters(tm_coding=TmCoding.NONE), lambda: 0x0100_0000)
    coded_frame, plain_frame = coded.next_frame(idle=True), plain.next_frame(idle=True)
    assert coded_frame is not None and plain_frame is not None
    assert (len(coded_frame), len(plain_frame)) == (1279, 1119)
    (frame,) = FrameSynchronizer(coding=TmCoding.RS).feed(coded_frame)
    assert FrameSynchronizer().feed(plain_frame) == [frame]
