"""CRC-16/CCITT-FALSE (every checksum of the ICD) and CRC-32 (file and weight checksums)."""

from __future__ import annotations

import sys
import zlib
from collections.abc import Callable

import crcmod

# Polynomial 0x1021, initial 0xFFFF, not reflected, no final XOR: check value 0x29B1 (ICD 3).
# crcmod's C extension runs at several hundred MB/s; a table loop in Python would be ~5 MB/s.
crc16: Callable[..., int] = crcmod.mkCrcFun(0x11021, initCrc=0xFFFF, rev=False, xorOut=0x0000)


def crc16_ccitt(data: bytes | bytearray | memoryview, value: int = 0xFFFF) -> int:
    """CRC-16/CCITT-FALSE of `data`, continuing from `value` for incremental use."""
    return crc16(data, value)


def crc32(data: bytes | bytearray | memoryview, value: int = 0) -> int:
    """CRC-32 (IEEE 802.3, as zlib), continuing from `value`."""
    return zlib.crc32(data, value)


def crcmod_has_c_extension() -> bool:
    """True when crcmod uses its compiled extension (the fast path the link relies on)."""
    # crcmod/__init__ re-exports names over the submodule, so look the module up directly.
    return bool(getattr(sys.modules["crcmod.crcmod"], "_usingExtension", False))
