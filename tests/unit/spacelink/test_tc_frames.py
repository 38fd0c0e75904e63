"""TC transfer frames and COP-1 control commands (ICD 3, 4)."""

from __future__ import annotations

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from spacelink.errors import DiscardReason, FrameError
from spacelink.tcframe import FrameType, SetVr, TcFrame, Unlock, parse_control_command
from tests.unit.spacelink.codec_strategies import (
    FRAME_FLAGS,
    QUICK,
    crc16,
    flip_bits,
    reseal,
    tc_frames,
    u8,
)

# ---------------------------------------------------------------------------------------------
# Round trips


@pytest.mark.parametrize("kind", list(FrameType))
@QUICK
@given(data=st.data())
def test_tc_frame_round_trip(kind: FrameType, data: st.DataObject) -> None:
    frame = data.draw(tc_frames(kind))
    packed = frame.pack()
    assert len(packed) == 5 + len(frame.data) + 2 <= 1024
    assert (int.from_bytes(packed[2:4], "big") & 0x3FF) + 1 == len(packed)
    assert int.from_bytes(packed[-2:], "big") == crc16(packed[:-2])
    parsed = TcFrame.unpack(packed)
    assert parsed == frame
    assert parsed.frame_type is kind


@QUICK
@given(tc_frames(), st.integers(0, 6))
def test_cltu_fill_after_the_frame_is_ignored(frame: TcFrame, fill: int) -> None:
    assert TcFrame.unpack(frame.pack() + b"\x55" * fill) == frame


@pytest.mark.parametrize("size", [1, 2, 1016, 1017])
@pytest.mark.parametrize("kind", list(FrameType))
def test_data_field_size_limits(kind: FrameType, size: int) -> None:
    bypass, control = FRAME_FLAGS[kind]
    frame = TcFrame(500, 0, 0, bytes(i & 0xFF for i in range(size)), bypass, control)
    packed = frame.pack()
    assert len(packed) == size + 7
    assert TcFrame.unpack(packed) == frame


@pytest.mark.parametrize("size", [0, 1018, 2000])
def test_data_field_outside_the_limits_is_refused(size: int) -> None:
    with pytest.raises(ValueError):
        TcFrame(500, 0, 0, bytes(size)).pack()


@pytest.mark.parametrize(
    ("frame", "header"),
    [
        # 00 0 0 00 0111110100 | 000101 0000001001 | 11001000: type-A, VCID 5, 10 octets, N(S) 200
        (TcFrame(500, 5, 200, b"abc"), "01f4 1409 c8"),
        # 00 1 0 00 ...: type-B data, VCID 0, 8 octets
        (TcFrame(500, 0, 0, b"x", bypass=True), "21f4 0007 00"),
        # 00 1 1 00 ...: type-B control command, VCID 63, 10 octets
        (TcFrame(500, 63, 0, b"\x82\x00\x07", bypass=True, control=True), "31f4 fc09 00"),
        # SCID 0x3FF, the largest frame
        (TcFrame(0x3FF, 1, 1, bytes(1017)), "03ff 07ff 01"),
    ],
)
def test_header_bits_match_the_icd(frame: TcFrame, header: str) -> None:
    assert frame.pack()[:5] == bytes.fromhex(header)


# ---------------------------------------------------------------------------------------------
# Control commands


def test_unlock() -> None:
    assert Unlock().pack() == b"\x00"
    assert parse_control_command(b"\x00") == Unlock()


@QUICK
@given(u8)
def test_set_vr(value: int) -> None:
    packed = SetVr(value).pack()
    assert packed == bytes([0x82, 0x00, value])
    assert parse_control_command(packed) == SetVr(value)


@QUICK
@given(st.one_of(st.just(Unlock()), st.builds(SetVr, u8)))
def test_control_command_through_a_bc_frame(command: Unlock | SetVr) -> None:
    frame = TcFrame(500, 0, 0, command.pack(), bypass=True, control=True)
    parsed = TcFrame.unpack(frame.pack())
    assert parsed.frame_type is FrameType.BC
    assert parse_control_command(parsed.data) == command


def is_valid_command(data: bytes) -> bool:
    return data == b"\x00" or (len(data) == 3 and data[:2] == b"\x82\x00")


@pytest.mark.parametrize(
    "data", ["", "01", "0000", "00 00 00", "82", "8200", "82 01 05", "83 00 05", "82 00 05 00"]
)
def test_bad_control_commands(data: str) -> None:
    with pytest.raises(FrameError) as info:
        parse_control_command(bytes.fromhex(data))
    assert info.value.reason is DiscardReason.CONTROL_COMMAND


@QUICK
@given(st.binary(max_size=8).filter(lambda d: not is_valid_command(d)))
def test_any_other_control_command_is_refused(data: bytes) -> None:
    with pytest.raises(FrameError) as info:
        parse_control_command(data)
    assert info.value.reason is DiscardReason.CONTROL_COMMAND


# ---------------------------------------------------------------------------------------------
# Error paths


def reason_of(data: bytes) -> DiscardReason:
    with pytest.raises(FrameError) as info:
        TcFrame.unpack(data)
    return info.value.reason


@QUICK
@given(tc_frames(), st.data())
def test_truncated_frames(frame: TcFrame, data: st.DataObject) -> None:
    packed = frame.pack()
    cut = data.draw(st.integers(0, len(packed) - 1))
    expected = DiscardReason.FRAME_TOO_SHORT if cut < 8 else DiscardReason.FRAME_LENGTH
    assert reason_of(packed[:cut]) is expected


@QUICK
@given(tc_frames(max_data=200), st.integers(1, 1023))
def test_length_field_longer_than_the_octets_received(frame: TcFrame, extra: int) -> None:
    raw = bytearray(frame.pack())
    length = len(raw) - 1 + extra
    assume(length <= 0x3FF)
    raw[2] = (raw[2] & 0xFC) | (length >> 8)
    raw[3] = length & 0xFF
    assert reason_of(reseal(bytes(raw))) is DiscardReason.FRAME_LENGTH


@pytest.mark.parametrize("length_field", range(7))
def test_length_field_below_the_minimum_frame(length_field: int) -> None:
    raw = bytearray(TcFrame(500, 0, 0, b"payload").pack())
    raw[3] = length_field
    assert reason_of(bytes(raw)) is DiscardReason.FRAME_LENGTH


@QUICK
@given(tc_frames(), st.integers(0, 0xFFFF))
def test_wrong_fecf(frame: TcFrame, fecf: int) -> None:
    packed = frame.pack()
    assume(fecf != int.from_bytes(packed[-2:], "big"))
    assert reason_of(packed[:-2] + fecf.to_bytes(2, "big")) is DiscardReason.FRAME_FECF


@QUICK
@given(tc_frames(), st.data())
def test_any_single_bit_error_outside_the_length_field_fails_the_fecf(
    frame: TcFrame, data: st.DataObject
) -> None:
    packed = frame.pack()
    bit = data.draw(st.integers(0, len(packed) * 8 - 1).filter(lambda b: not 22 <= b < 32))
    assert reason_of(flip_bits(packed, bit)) is DiscardReason.FRAME_FECF


@QUICK
@given(tc_frames(), st.integers(1, 3))
def test_wrong_transfer_frame_version(frame: TcFrame, version: int) -> None:
    raw = bytearray(frame.pack())
    raw[0] = (raw[0] & 0x3F) | (version << 6)
    assert reason_of(reseal(bytes(raw))) is DiscardReason.FRAME_VERSION


@QUICK
@given(tc_frames(FrameType.AD))
def test_control_command_flag_on_a_type_a_frame(frame: TcFrame) -> None:
    raw = bytearray(frame.pack())
    raw[0] |= 0x10  # control command flag, bypass flag left at 0
    assert reason_of(reseal(bytes(raw))) is DiscardReason.FRAME_TYPE
