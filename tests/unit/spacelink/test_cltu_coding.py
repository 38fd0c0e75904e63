"""CLTU encoding and the error-correcting CLTU decoder (ICD 2)."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from spacelink.cltu import (
    MAX_CODEBLOCKS,
    START_SEQUENCE,
    TAIL_SEQUENCE,
    CltuDecoder,
    CltuEnd,
    DecodedCltu,
    bch_parity_bitwise,
    codeblock_syndromes,
    encode_cltu,
)
from spacelink.icd import TC_MAX_FRAME_LENGTH
from spacelink.tcframe import TcFrame, frame_length_from_header
from tests.unit.spacelink.codec_strategies import (
    HEAVY,
    MEDIUM,
    QUICK,
    bit_distance,
    chunked,
    cltu_garbage,
    flip_bits,
    tc_frames,
)

HEAD_BITS = 16  # the start sequence precedes codeblock 0
frames = st.binary(min_size=1, max_size=TC_MAX_FRAME_LENGTH)
frames_without_eb = st.binary(min_size=1, max_size=300).map(
    lambda f: bytes(b for b in f if b != 0xEB) or b"\x00"
)


def padded(frame: bytes) -> bytes:
    """The information octets of a frame's CLTU: the frame, then fill 55 to a multiple of 7."""
    return frame + b"\x55" * (-len(frame) % 7)


def codeblock_bit(block: int, bit: int) -> int:
    """Position in the CLTU of bit `bit` (0 = MSB, 63 = filler) of codeblock `block`."""
    return HEAD_BITS + block * 64 + bit


def feed_all(decoder: CltuDecoder, pieces: list[bytes]) -> list[DecodedCltu]:
    out: list[DecodedCltu] = []
    for piece in pieces:
        out += decoder.feed(piece)
    return out


# ---------------------------------------------------------------------------------------------
# Round trips


@QUICK
@given(frames)
def test_cltu_round_trip(frame: bytes) -> None:
    cltu = encode_cltu(frame)
    blocks = -(-len(frame) // 7)
    assert len(cltu) == 2 + 8 * blocks + 8
    assert cltu.startswith(START_SEQUENCE) and cltu.endswith(TAIL_SEQUENCE)
    decoder = CltuDecoder()
    (result,) = decoder.feed(cltu)
    assert result == DecodedCltu(padded(frame), CltuEnd.TAIL, 0)
    assert (decoder.stats.cltus, decoder.stats.codeblocks) == (1, blocks)
    assert decoder.stats.octets_outside_cltu == 0


@QUICK
@given(tc_frames(), st.data())
def test_tc_frames_of_every_type_through_a_cltu(frame: TcFrame, data: st.DataObject) -> None:
    decoder = CltuDecoder()
    results = feed_all(decoder, data.draw(chunked(encode_cltu(frame.pack()))))
    assert [r.end for r in results] == [CltuEnd.TAIL]
    assert TcFrame.unpack(results[0].data) == frame


@MEDIUM
@given(st.lists(frames_without_eb, min_size=1, max_size=5), st.data())
def test_cltu_stream_in_random_chunks_with_garbage_around(
    payloads: list[bytes], data: st.DataObject
) -> None:
    garbage = [data.draw(cltu_garbage) for _ in range(len(payloads) + 1)]
    stream = b"".join(g + encode_cltu(f) for g, f in zip(garbage, payloads, strict=False))
    stream += garbage[-1]
    decoder = CltuDecoder()
    results = feed_all(decoder, data.draw(chunked(stream)))
    assert results == [DecodedCltu(padded(f), CltuEnd.TAIL, 0) for f in payloads]
    assert decoder.stats.octets_outside_cltu == sum(map(len, garbage))
    assert decoder.stats.cltus == len(payloads)


def test_start_sequence_split_between_feeds() -> None:
    decoder = CltuDecoder()
    cltu = encode_cltu(b"split")
    assert decoder.feed(b"\x00\x11" + cltu[:1]) == []
    (result,) = decoder.feed(cltu[1:])
    assert result.data == padded(b"split")
    assert decoder.stats.octets_outside_cltu == 2


def test_an_empty_frame_cannot_be_encoded() -> None:
    with pytest.raises(ValueError):
        encode_cltu(b"")


# ---------------------------------------------------------------------------------------------
# Error correction: one bit per codeblock


def test_every_single_bit_error_in_every_codeblock_is_corrected() -> None:
    frame = bytes(range(0x30, 0x30 + 17))  # three codeblocks, the last one with fill
    cltu = encode_cltu(frame)
    for block, bit in itertools.product(range(3), range(64)):
        decoder = CltuDecoder()
        (result,) = decoder.feed(flip_bits(cltu, codeblock_bit(block, bit)))
        assert (result.data, result.end) == (padded(frame), CltuEnd.TAIL), (block, bit)
        corrected = 0 if bit == 63 else 1  # the filler bit is not protected
        assert result.corrected_bits == corrected, (block, bit)
        assert decoder.stats.corrected_codeblocks == corrected, (block, bit)
        assert decoder.stats.uncorrectable_codeblocks == 0


@QUICK
@given(frames, st.data())
def test_one_bit_error_in_any_number_of_codeblocks_is_corrected(
    frame: bytes, data: st.DataObject
) -> None:
    cltu = encode_cltu(frame)
    blocks = -(-len(frame) // 7)
    hits = data.draw(st.dictionaries(st.integers(0, blocks - 1), st.integers(0, 63)))
    damaged = flip_bits(cltu, *(codeblock_bit(b, bit) for b, bit in hits.items()))
    decoder = CltuDecoder()
    pieces = data.draw(chunked(damaged))
    (result,) = feed_all(decoder, pieces)
    assert (result.data, result.end) == (padded(frame), CltuEnd.TAIL)
    real = sum(1 for bit in hits.values() if bit != 63)
    assert result.corrected_bits == decoder.stats.corrected_codeblocks == real


# ---------------------------------------------------------------------------------------------
# Error detection: two bits in a codeblock


def assert_rejected_at(damaged: bytes, frame: bytes, block: int) -> CltuDecoder:
    """Feed the CLTU up to and including `block`: it must end there as uncorrectable."""
    decoder = CltuDecoder()
    (result,) = decoder.feed(damaged[: 2 + 8 * (block + 1)])
    assert result.end is CltuEnd.UNCORRECTABLE
    assert result.data == padded(frame)[: 7 * block]
    assert len(result.data) < len(frame)
    assert decoder.stats.uncorrectable_codeblocks == 1
    return decoder


def test_every_double_bit_error_in_a_codeblock_is_rejected() -> None:
    frame = bytes(range(0x20, 0x20 + 21))  # three full codeblocks
    cltu = encode_cltu(frame)
    block = 1
    assert bit_distance(cltu[2 + 8 * block : 10 + 8 * block], TAIL_SEQUENCE) > 5
    pairs = list(itertools.combinations(range(63), 2))
    assert len(pairs) == 63 * 62 // 2
    for a, b in pairs:
        damaged = flip_bits(cltu, codeblock_bit(block, a), codeblock_bit(block, b))
        assert_rejected_at(damaged, frame, block)


@QUICK
@given(frames, st.data())
def test_double_bit_errors_are_rejected_in_any_frame(frame: bytes, data: st.DataObject) -> None:
    cltu = encode_cltu(frame)
    blocks = -(-len(frame) // 7)
    block = data.draw(st.integers(0, blocks - 1))
    # A codeword within 5 bits of the tail sequence could turn into a tail lookalike: no frame
    # of ours has one, and such a block cannot be told from a damaged tail in any decoder.
    assume(bit_distance(cltu[2 + 8 * block : 10 + 8 * block], TAIL_SEQUENCE) > 5)
    a, b = data.draw(st.lists(st.integers(0, 62), min_size=2, max_size=2, unique=True))
    damaged = flip_bits(cltu, codeblock_bit(block, a), codeblock_bit(block, b))
    assert_rejected_at(damaged, frame, block)


def test_tail_with_any_single_bit_error_still_ends_the_cltu() -> None:
    frame = b"tail check"
    following = encode_cltu(b"next one")
    cltu = encode_cltu(frame)
    tail_start = (len(cltu) - 8) * 8
    for bit in range(64):
        decoder = CltuDecoder()
        results = decoder.feed(flip_bits(cltu, tail_start + bit) + following)
        assert [(r.data, r.end) for r in results] == [
            (padded(frame), CltuEnd.TAIL),
            (padded(b"next one"), CltuEnd.TAIL),
        ], bit
        assert decoder.stats.uncorrectable_codeblocks == 0


@MEDIUM
@given(frames_without_eb, frames_without_eb, cltu_garbage, st.data())
def test_resynchronises_after_an_uncorrectable_codeblock(
    first: bytes, second: bytes, garbage: bytes, data: st.DataObject
) -> None:
    cltu = encode_cltu(first)
    block = data.draw(st.integers(0, -(-len(first) // 7) - 1))
    a, b = data.draw(st.lists(st.integers(0, 62), min_size=2, max_size=2, unique=True))
    damaged = flip_bits(cltu, codeblock_bit(block, a), codeblock_bit(block, b))
    stream = damaged + garbage + encode_cltu(second)
    # The two flips must not forge a start sequence inside the rest of the broken CLTU.
    assume(stream.find(START_SEQUENCE, 2) == len(damaged) + len(garbage))
    assume(bit_distance(cltu[2 + 8 * block : 10 + 8 * block], TAIL_SEQUENCE) > 5)
    decoder = CltuDecoder()
    results = feed_all(decoder, data.draw(chunked(stream)))
    assert [r.end for r in results] == [CltuEnd.UNCORRECTABLE, CltuEnd.TAIL]
    assert results[0].data == padded(first)[: 7 * block]
    assert results[1].data == padded(second)
    assert decoder.stats.uncorrectable_codeblocks == 1


# ---------------------------------------------------------------------------------------------
# Length limit


def long_info(blocks: int) -> bytes:
    return bytes((i * 7 + 1) % 0xEB for i in range(7 * blocks))  # no EB: no false starts


def test_the_longest_frame_fits() -> None:
    assert 7 * MAX_CODEBLOCKS >= TC_MAX_FRAME_LENGTH
    frame = long_info(MAX_CODEBLOCKS)[:TC_MAX_FRAME_LENGTH]
    (result,) = CltuDecoder().feed(encode_cltu(frame))
    assert (result.data, result.end) == (padded(frame), CltuEnd.TAIL)


def test_a_cltu_of_exactly_max_codeblocks_is_accepted() -> None:
    info = long_info(MAX_CODEBLOCKS)
    decoder = CltuDecoder()
    (result,) = decoder.feed(encode_cltu(info))
    assert (result.data, result.end) == (info, CltuEnd.TAIL)
    assert decoder.stats.cltus_too_long == 0


@HEAVY
@given(st.integers(1, 20), st.data())
def test_a_cltu_longer_than_max_codeblocks_ends_as_too_long(
    extra: int, data: st.DataObject
) -> None:
    info = long_info(MAX_CODEBLOCKS + extra)
    stream = encode_cltu(info) + encode_cltu(b"after")
    decoder = CltuDecoder()
    results = feed_all(decoder, data.draw(chunked(stream)))
    assert results[0].end is CltuEnd.TOO_LONG
    assert results[0].data == info[: 7 * MAX_CODEBLOCKS]
    assert decoder.stats.cltus_too_long == 1
    assert (results[-1].data, results[-1].end) == (padded(b"after"), CltuEnd.TAIL)


# ---------------------------------------------------------------------------------------------
# Syndromes, and what a reader can wait for


@MEDIUM
@given(st.binary(min_size=8, max_size=8 * 40).map(lambda b: b[: len(b) - len(b) % 8]))
def test_syndromes_match_the_bit_serial_division(blocks: bytes) -> None:
    # The decoder's translate tables against the polynomial division they were built from.
    expected = bytes(
        bch_parity_bitwise(blocks[i : i + 7]) ^ ((~blocks[i + 7] >> 1) & 0x7F)
        for i in range(0, len(blocks), 8)
    )
    assert codeblock_syndromes(blocks) == expected


def test_the_octets_awaited_count_down_to_the_end_of_the_cltu() -> None:
    frame = TcFrame(0x2A, 0, 5, bytes(range(200))).pack()
    stream = encode_cltu(frame)
    decoder = CltuDecoder()
    assert decoder.octets_awaited(frame_length_from_header) == 0  # between CLTUs
    decoder.feed(stream[:5])  # the start sequence and part of the first codeblock
    assert decoder.octets_awaited(frame_length_from_header) == 5
    for fed in range(10, len(stream), 37):
        decoder.feed(stream[fed - 5 if fed == 10 else fed - 37 : fed])
        assert decoder.octets_awaited(frame_length_from_header) == len(stream) - fed
    out = decoder.feed(stream[fed:])
    assert [c.data[: len(frame)] for c in out] == [frame]
    assert decoder.octets_awaited(frame_length_from_header) == 0


def test_a_header_that_tells_nothing_awaits_one_codeblock_at_a_time() -> None:
    decoder = CltuDecoder()
    decoder.feed(START_SEQUENCE + encode_cltu(b"\x00" * 7)[2:10])
    assert decoder.octets_awaited(lambda first: None) == 8
