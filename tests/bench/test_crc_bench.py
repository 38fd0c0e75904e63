"""CRC-16/CCITT-FALSE over one TM frame: the installed crcmod, its pure-Python fallback, stdlib.

Every packet, TC frame and TM frame carries this CRC, so its speed bounds every codec above.
crcmod is published on PyPI as a source distribution only; where no C compiler is at hand at
install time (a bare Jetson image, say) it silently falls back to pure Python. The stdlib's
`binascii.crc_hqx(data, 0xFFFF)` computes the same CRC in C on every platform.
"""

from __future__ import annotations

import binascii
import random
from collections.abc import Callable

import crcmod
import pytest
from crcmod import _crcfunpy

from spacelink.crc import crc16, crcmod_has_c_extension
from spacelink.icd import TM_FRAME_LENGTH

FRAME = random.Random(7).randbytes(TM_FRAME_LENGTH - 2)  # what the FECF covers
_PY_TABLE = crcmod.Crc(0x11021, initCrc=0xFFFF, rev=False, xorOut=0).table

BACKENDS: dict[str, Callable[[bytes], int]] = {
    "spacelink.crc.crc16 (as installed)": crc16,
    "crcmod pure-Python fallback": lambda data: _crcfunpy._crc16(data, 0xFFFF, _PY_TABLE),
    "binascii.crc_hqx(data, 0xFFFF)": lambda data: binascii.crc_hqx(data, 0xFFFF),
}


@pytest.mark.parametrize("backend", list(BACKENDS))
def test_crc16_backend(benchmark, report, backend: str) -> None:  # type: ignore[no-untyped-def]
    """MB/s of one CRC backend over a 1113-octet frame; all agree on the ICD's check value."""
    fn = BACKENDS[backend]
    assert fn(b"123456789") == 0x29B1
    assert fn(FRAME) == crc16(FRAME)
    benchmark.group = "crc16 over one TM frame"
    benchmark.extra_info["crcmod C extension"] = crcmod_has_c_extension()
    benchmark(fn, FRAME)
    if benchmark.enabled:
        mb_s = len(FRAME) / benchmark.stats.stats.mean / 1e6
        benchmark.extra_info["MB/s"] = round(mb_s, 1)
        report(
            f"crc16 (crcmod C extension in use: {crcmod_has_c_extension()})",
            f"{backend:<36} {mb_s:7.1f} MB/s",
        )
