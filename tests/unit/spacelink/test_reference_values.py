"""The ICD's check values: CRC-16/CCITT-FALSE and the randomizer sequence."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from spacelink.crc import crc16_ccitt, crc32, crcmod_has_c_extension
from spacelink.randomizer import pn_sequence, randomize


def test_crc16_check_value() -> None:
    assert crc16_ccitt(b"123456789") == 0x29B1


@given(st.binary(max_size=200), st.binary(max_size=200))
def test_crc16_is_incremental(a: bytes, b: bytes) -> None:
    assert crc16_ccitt(b, crc16_ccitt(a)) == crc16_ccitt(a + b)


def test_crc16_runs_on_crcmods_c_extension() -> None:
    assert crcmod_has_c_extension()


def test_crc32_check_value() -> None:
    assert crc32(b"123456789") == 0xCBF43926


def test_randomizer_sequence_starts_as_the_icd_says() -> None:
    assert pn_sequence(8) == bytes.fromhex("FF480EC09A0D70BC")


def test_randomizer_period_is_255_octets() -> None:
    seq = pn_sequence(600)
    assert seq[:255] == seq[255:510] and len(set(seq[:255])) > 200


@given(st.binary(max_size=2000))
def test_randomize_is_its_own_inverse(data: bytes) -> None:
    assert randomize(randomize(data)) == data
    if data:
        assert randomize(data)[0] == data[0] ^ 0xFF
