"""The link tests' content rules (their commands and packets are in the dictionary, ST[17]).

TC[17,131] asks for `count` TM[17,132] packets of `size` octets of source data each: a u32
index, then octets (index + k) mod 256, so that the ground can check every octet it receives.
"""

from __future__ import annotations

MIN_TEST_PACKET = 4
MAX_DOWNLINK_TEST_OCTETS = 16 * 1024 * 1024

_RAMP = bytes(range(256)) * 258  # covers any u16 size from any starting octet


def test_pattern(index: int, size: int) -> bytes:
    """Source data of the `index`-th TM[17,132]: the index, then a counting pattern."""
    start = index & 0xFF
    return index.to_bytes(4, "big") + _RAMP[start : start + size - MIN_TEST_PACKET]
