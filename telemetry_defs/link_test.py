"""Link-test commands of ST[17] (mission subtypes 128 and up) and their packet layouts.

- TC[17,128] sequence check: u32 number, then any filler. The payload expects 0, 1, 2, ...
  after a reset; a number out of order fails at completion (code 10, data: expected, got).
  With filler up to a full frame it also measures uplink goodput.
- TC[17,129] sequence report: u8 reset -> TM[17,130]: u32 executed, u32 out of order,
  u32 next expected; then the counters restart at 0 if reset is 1.
- TC[17,131] downlink test: u8 VC, u32 count, u16 size -> `count` TM[17,132] packets on that
  VC, each `size` octets of source data: u32 index, then octets (index + k) mod 256.
"""

from __future__ import annotations

from construct import GreedyBytes, Int8ub, Int16ub, Int32ub, Struct

SERVICE = 17
SEQUENCE_CHECK = 128
SEQUENCE_REPORT_REQUEST = 129
SEQUENCE_REPORT = 130
DOWNLINK_TEST = 131
DOWNLINK_TEST_PACKET = 132

MIN_TEST_PACKET = 4
MAX_DOWNLINK_TEST_OCTETS = 16 * 1024 * 1024

sequence_check = Struct("number" / Int32ub, "filler" / GreedyBytes)
sequence_report_request = Struct("reset" / Int8ub)
sequence_report = Struct("executed" / Int32ub, "out_of_order" / Int32ub, "next" / Int32ub)
sequence_violation = Struct("expected" / Int32ub, "got" / Int32ub)
downlink_test = Struct("vcid" / Int8ub, "count" / Int32ub, "size" / Int16ub)
downlink_test_packet_header = Struct("index" / Int32ub)


_RAMP = bytes(range(256)) * 258  # covers any u16 size from any starting octet


def test_pattern(index: int, size: int) -> bytes:
    """Source data of the `index`-th TM[17,132]: the index, then a counting pattern."""
    start = index & 0xFF
    return index.to_bytes(4, "big") + _RAMP[start : start + size - MIN_TEST_PACKET]
