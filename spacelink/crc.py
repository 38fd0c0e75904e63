"""CRC-16/CCITT-FALSE (every checksum of the ICD) and CRC-32 (file and weight checksums)."""

from __future__ import annotations

import binascii
import sys
import zlib
from collections.abc import Callable

import crcmod


def crcmod_has_c_extension() -> bool:
    """True when crcmod uses its compiled extension (the fast path the link relies on)."""
    # crcmod/__init__ re-exports names over the submodule, so look the module up directly.
    return bool(getattr(sys.modules["crcmod.crcmod"], "_usingExtension", False))


def _crc16_stdlib(data: bytes | bytearray | memoryview, value: int = 0xFFFF) -> int:
    return binascii.crc_hqx(data, value)


# Polynomial 0x1021, initial 0xFFFF, not reflected, no final XOR: check value 0x29B1 (ICD 3).
# crcmod's C extension runs at ~300 MB/s. crcmod ships as source only: built without a compiler
# (a bare board image) it falls back to pure Python at ~12 MB/s, so then the stdlib's C
# implementation of the same CRC takes over.
crc16: Callable[..., int] = (
    crcmod.mkCrcFun(0x11021, initCrc=0xFFFF, rev=False, xorOut=0x0000)
    if crcmod_has_c_extension()
    else _crc16_stdlib
)


def crc16_ccitt(data: bytes | bytearray | memoryview, value: int = 0xFFFF) -> int:
    """CRC-16/CCITT-FALSE of `data`, continuing from `value` for incremental use."""
    return crc16(data, value)


def crc32(data: bytes | bytearray | memoryview, value: int = 0) -> int:
    """CRC-32 (IEEE 802.3, as zlib), continuing from `value`."""
    return zlib.crc32(data, value)
