"""TM transfer frames, their channel coding and the frame synchronizer (ICD 6)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from spacelink.errors import DiscardReason, FrameError
from spacelink.icd import ATTACHED_SYNC_MARKER, TM_DATA_LENGTH, TM_FRAME_LENGTH, TmCoding
from spacelink.randomizer import pn_sequence
from spacelink.tmframe import FrameSynchronizer, TmFrame, encode_channel_frame
from tests.unit.spacelink.codec_strategies import (
    HEAVY,
    MEDIUM,
    QUICK,
    chunked,
    crc16,
    flip_bits,
    reseal,
    tm_frames,
    tm_garbage,
)

LINE_FRAME = 4 + TM_FRAME_LENGTH  # marker + frame
frames_of_500 = st.lists(tm_frames(scid=st.just(500)), min_size=1, max_size=6)


def line(frames: list[TmFrame]) -> list[bytes]:
    return [encode_channel_frame(f.pack()) for f in frames]


def sync_all(sync: FrameSynchronizer, pieces: list[bytes]) -> list[TmFrame]:
    out: list[TmFrame] = []
    for piece in pieces:
        out += sync.feed(piece)
    return out


def sample_frames(count: int, vcid: int = 1) -> list[TmFrame]:
    return [
        TmFrame(500, vcid, n, n, 0, bytes((n * 13 + i) & 0xFF for i in range(TM_DATA_LENGTH)), n)
        for n in range(count)
    ]


# ---------------------------------------------------------------------------------------------
# TmFrame


@QUICK
@given(tm_frames())
def test_tm_frame_round_trip(frame: TmFrame) -> None:
    packed = frame.pack()
    assert len(packed) == TM_FRAME_LENGTH
    assert int.from_bytes(packed[-2:], "big") == crc16(packed[:-2])
    assert packed[-6:-2] == frame.ocf.to_bytes(4, "big")
    assert packed[6:-6] == frame.data
    assert TmFrame.unpack(packed) == frame


def test_tm_frame_header_bits_match_the_icd() -> None:
    frame = TmFrame(500, 7, 0xAB, 0xCD, 0x7FE, bytes(TM_DATA_LENGTH), 0x01020304)
    # 00 0111110100 111 1 | AB | CD | 0 0 0 11 11111111110
    assert frame.pack()[:6] == bytes.fromhex("1f4f abcd 1ffe")
    frame = TmFrame(0x3FF, 0, 0, 0, 0, bytes(TM_DATA_LENGTH), 0)
    assert frame.pack()[:6] == bytes.fromhex("3ff1 0000 1800")


def unpack_reason(data: bytes) -> DiscardReason:
    with pytest.raises(FrameError) as info:
        TmFrame.unpack(data)
    return info.value.reason


@QUICK
@given(tm_frames(), st.data())
def test_any_single_bit_error_fails_the_fecf(frame: TmFrame, data: st.DataObject) -> None:
    bit = data.draw(st.integers(0, TM_FRAME_LENGTH * 8 - 1))
    assert unpack_reason(flip_bits(frame.pack(), bit)) is DiscardReason.TM_FRAME_FECF


@QUICK
@given(tm_frames(), st.integers(1, 3))
def test_wrong_tm_frame_version(frame: TmFrame, version: int) -> None:
    raw = bytearray(frame.pack())
    raw[0] = (raw[0] & 0x3F) | (version << 6)
    assert unpack_reason(reseal(bytes(raw))) is DiscardReason.TM_FRAME_HEADER


@QUICK
@given(tm_frames())
def test_ocf_flag_zero(frame: TmFrame) -> None:
    raw = bytearray(frame.pack())
    raw[1] &= 0xFE
    assert unpack_reason(reseal(bytes(raw))) is DiscardReason.TM_FRAME_HEADER


@pytest.mark.parametrize("mask", [0x80, 0x40, 0x20, 0x08, 0x10])  # sec. header, sync, order, SLID
@QUICK
@given(frame=tm_frames())
def test_data_field_status_other_than_the_icds(mask: int, frame: TmFrame) -> None:
    raw = bytearray(frame.pack())
    raw[4] ^= mask
    assert unpack_reason(reseal(bytes(raw))) is DiscardReason.TM_FRAME_HEADER


@pytest.mark.parametrize("length", [0, 1, 6, 12])
def test_truncated_tm_frame(length: int) -> None:
    packed = sample_frames(1)[0].pack()[:length]
    assert unpack_reason(packed) is DiscardReason.TM_FRAME_HEADER


@QUICK
@given(tm_frames())
def test_channel_frame_is_the_marker_then_the_randomized_frame(frame: TmFrame) -> None:
    packed = frame.pack()
    coded = encode_channel_frame(packed)
    assert coded[:4] == ATTACHED_SYNC_MARKER == bytes.fromhex("1ACFFC1D")
    assert len(coded) == LINE_FRAME
    assert bytes(a ^ b for a, b in zip(coded[4:], packed, strict=True)) == pn_sequence(1115)


# ---------------------------------------------------------------------------------------------
# FrameSynchronizer


@MEDIUM
@given(frames_of_500, st.data())
def test_frames_in_random_chunks_with_garbage_between(
    frames: list[TmFrame], data: st.DataObject
) -> None:
    garbage = [data.draw(tm_garbage) for _ in frames]
    stream = b"".join(g + coded for g, coded in zip(garbage, line(frames), strict=True))
    sync = FrameSynchronizer(scid=500)
    assert sync_all(sync, data.draw(chunked(stream))) == frames
    assert sync.stats.frames == len(frames)
    assert sync.stats.octets_skipped == sum(map(len, garbage))
    assert (sync.stats.fecf_errors, sync.stats.header_errors, sync.stats.scid_errors) == (0, 0, 0)


@QUICK
@given(frames_of_500, tm_garbage)
def test_trailing_garbage_yields_no_frame(frames: list[TmFrame], garbage: bytes) -> None:
    sync = FrameSynchronizer()
    assert sync.feed(b"".join(line(frames)) + garbage) == frames
    assert sync.feed(b"") == []


def test_frames_of_another_spacecraft_are_counted_and_dropped() -> None:
    ours, theirs = sample_frames(3), [TmFrame(501, 0, 0, 0, 0, bytes(TM_DATA_LENGTH), 0)]
    sync = FrameSynchronizer(scid=500)
    assert sync.feed(b"".join(line([ours[0], *theirs, ours[1], ours[2]]))) == ours
    assert sync.stats.scid_errors == 1


@HEAVY
@given(st.integers(2, 6), st.data())
def test_a_corrupted_frame_is_counted_and_the_next_one_still_comes_out(
    count: int, data: st.DataObject
) -> None:
    frames = sample_frames(count)
    coded = line(frames)
    hit = data.draw(st.integers(0, count - 1))
    bit = data.draw(st.integers(32, LINE_FRAME * 8 - 1))  # anywhere after the marker
    coded[hit] = flip_bits(coded[hit], bit)
    sync = FrameSynchronizer()
    out = sync_all(sync, data.draw(chunked(b"".join(coded))))
    assert out == frames[:hit] + frames[hit + 1 :]
    assert sync.stats.fecf_errors == 1
    # Locked, the bad frame is dropped whole; while still searching (the first frame) its
    # octets are searched for the next marker and counted as skipped.
    assert sync.stats.octets_skipped == (LINE_FRAME if hit == 0 else 0)


@MEDIUM
@given(
    tm_garbage, st.binary(max_size=LINE_FRAME - 5).filter(lambda g: ATTACHED_SYNC_MARKER not in g)
)
def test_a_chance_marker_in_the_garbage_costs_no_frame(before: bytes, after: bytes) -> None:
    """A marker lookalike less than a frame before the real one must not swallow it."""
    frames = sample_frames(2)
    stream = before + ATTACHED_SYNC_MARKER + after + b"".join(line(frames))
    sync = FrameSynchronizer()
    assert sync.feed(stream) == frames
    assert sync.stats.octets_skipped == len(before) + 4 + len(after)


def test_a_frame_failing_a_header_check_is_counted() -> None:
    frames = sample_frames(3)
    raw = bytearray(frames[1].pack())
    raw[1] &= 0xFE  # OCF flag 0, with a matching FECF
    coded = line(frames)
    coded[1] = ATTACHED_SYNC_MARKER + bytes(
        a ^ b for a, b in zip(reseal(bytes(raw)), pn_sequence(1115), strict=True)
    )
    sync = FrameSynchronizer()
    assert sync.feed(b"".join(coded)) == [frames[0], frames[2]]
    assert (sync.stats.header_errors, sync.stats.fecf_errors) == (1, 0)


@MEDIUM
@given(
    st.integers(1, 4),
    st.lists(st.integers(0, 31), min_size=1, max_size=3, unique=True),
)
def test_marker_with_up_to_three_bit_errors_is_tolerated_while_locked(
    hit: int, bits: list[int]
) -> None:
    frames = sample_frames(5)
    coded = line(frames)
    coded[hit] = flip_bits(coded[hit], *bits)
    sync = FrameSynchronizer()
    assert sync.feed(b"".join(coded)) == frames
    assert sync.stats.markers_with_errors == 1
    assert sync.stats.octets_skipped == 0


def test_a_damaged_marker_is_counted_once_whatever_the_chunking() -> None:
    frames = sample_frames(4)
    coded = line(frames)
    coded[2] = flip_bits(coded[2], 7)
    stream = b"".join(coded)
    sync = FrameSynchronizer()
    out = sync_all(sync, [stream[i : i + 100] for i in range(0, len(stream), 100)])
    assert out == frames
    assert sync.stats.markers_with_errors == 1


def test_a_marker_too_damaged_to_recognise_keeps_its_frame_while_locked() -> None:
    # Flywheel: the marker is not coded, so a burst across it would otherwise cost a frame.
    frames = sample_frames(4)
    coded = line(frames)
    coded[2] = flip_bits(coded[2], *range(0, 32, 2))
    sync = FrameSynchronizer()
    assert sync.feed(b"".join(coded)) == frames
    assert sync.stats.octets_skipped == 0
    assert sync.stats.markers_with_errors == 1


def test_a_300_bit_burst_across_a_coded_marker_costs_nothing() -> None:
    frames = sample_frames(4)
    coded = [encode_channel_frame(f.pack(), TmCoding.RS) for f in frames]
    # 300 bits from the middle of the marker into the codeblock: every bit of them flipped.
    coded[2] = flip_bits(coded[2], *range(16, 316))
    sync = FrameSynchronizer(coding=TmCoding.RS)
    assert sync.feed(b"".join(coded)) == frames
    assert sync.stats.rs_uncorrectable == 0 and sync.stats.rs_corrected_symbols == 36


def test_a_bad_marker_over_a_bad_frame_loses_only_that_frame() -> None:
    frames = sample_frames(4)
    coded = line(frames)
    coded[2] = flip_bits(coded[2], 0, 9, 18, 27, 100)  # the marker and the frame both wrong
    sync = FrameSynchronizer()
    assert sync.feed(b"".join(coded)) == [frames[0], frames[1], frames[3]]
    assert sync.stats.octets_skipped == LINE_FRAME
    assert sync.stats.fecf_errors == 0  # out of step, not a frame: searched again


def test_a_damaged_marker_is_not_accepted_while_searching() -> None:
    frames = sample_frames(3)
    coded = line(frames)
    coded[0] = flip_bits(coded[0], 5)
    sync = FrameSynchronizer()
    assert sync.feed(b"".join(coded)) == frames[1:]
    assert sync.stats.octets_skipped == LINE_FRAME


@pytest.mark.parametrize("coding", list(TmCoding))
def test_the_octets_awaited_are_the_rest_of_the_frame_once_locked(coding: TmCoding) -> None:
    frames = [encode_channel_frame(f.pack(), coding) for f in sample_frames(2)]
    sync = FrameSynchronizer(scid=500, coding=coding)
    sync.feed(frames[0][:100])
    assert sync.octets_awaited() == 0  # not locked: what comes may not be a frame
    assert len(sync.feed(frames[0][100:] + frames[1][:300])) == 1
    assert sync.octets_awaited() == len(frames[1]) - 300
    assert len(sync.feed(frames[1][300:])) == 1
    assert sync.octets_awaited() == 0  # between frames
