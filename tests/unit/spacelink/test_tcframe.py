"""TC transfer frames and COP-1 control commands (ICD 3, 4)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from spacelink.crc import crc16_ccitt
from spacelink.errors import DiscardReason, FrameError
from spacelink.tcframe import FrameType, SetVr, TcFrame, Unlock, parse_control_command
from tests.unit.spacelink.strategies import tc_frames


@given(tc_frames(), st.binary(max_size=6).map(lambda b: b"\x55" * len(b)))
def test_round_trip_with_cltu_fill_after_the_frame(frame: TcFrame, fill: bytes) -> None:
    packed = frame.pack()
    assert len(packed) == 5 + len(frame.data) + 2 <= 1024
    assert TcFrame.unpack(packed + fill) == frame


def test_header_layout_matches_the_icd() -> None:
    packed = TcFrame(500, 0, 7, b"\xaa\xbb", bypass=True).pack()
    # 00 1 0 00 0111110100: type-B data, SCID 500; VCID 0, length 9-1; N(S) 7
    assert packed[:5] == bytes.fromhex("21f4 0008 07")
    assert crc16_ccitt(packed) == 0


@pytest.mark.parametrize("kind", list(FrameType))
def test_frame_types(kind: FrameType) -> None:
    bypass, control = kind.value
    frame = TcFrame(1, 2, 3 if not bypass else 0, b"\x00", bypass=bypass, control=control)
    assert TcFrame.unpack(frame.pack()).frame_type is kind


def test_data_field_limits() -> None:
    TcFrame(500, 0, 0, bytes(1017)).pack()
    for size in (0, 1018):
        with pytest.raises(ValueError):
            TcFrame(500, 0, 0, bytes(size)).pack()


def reject(data: bytes) -> DiscardReason:
    with pytest.raises(FrameError) as info:
        TcFrame.unpack(data)
    return info.value.reason


GOOD = TcFrame(500, 0, 1, b"hello").pack()


def refecf(raw: bytes) -> bytes:
    return raw[:-2] + crc16_ccitt(raw[:-2]).to_bytes(2, "big")


def test_frame_checks() -> None:
    assert reject(GOOD[:7]) is DiscardReason.FRAME_TOO_SHORT
    assert reject(GOOD[:-1]) is DiscardReason.FRAME_LENGTH
    assert reject(GOOD[:-1] + bytes([GOOD[-1] ^ 1])) is DiscardReason.FRAME_FECF
    assert reject(refecf(bytes([GOOD[0] | 0x40]) + GOOD[1:])) is DiscardReason.FRAME_VERSION
    assert reject(refecf(bytes([GOOD[0] | 0x10]) + GOOD[1:])) is DiscardReason.FRAME_TYPE


@given(st.integers(0, 255))
def test_control_commands(value: int) -> None:
    assert parse_control_command(Unlock().pack()) == Unlock()
    assert parse_control_command(SetVr(value).pack()) == SetVr(value)
    assert SetVr(value).pack() == bytes((0x82, 0x00, value))


@pytest.mark.parametrize("data", [b"", b"\x01", b"\x00\x00", b"\x82\x00", b"\x82\x01\x05"])
def test_bad_control_commands(data: bytes) -> None:
    with pytest.raises(FrameError) as info:
        parse_control_command(data)
    assert info.value.reason is DiscardReason.CONTROL_COMMAND
