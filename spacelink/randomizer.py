"""CCSDS pseudo-randomizer (131.0-B section 10): h(x) = x^8 + x^7 + x^5 + x^3 + 1, all-ones seed."""

from __future__ import annotations

from functools import lru_cache


def pn_sequence(length: int) -> bytes:
    """The first `length` octets of the pseudo-random sequence (FF 48 0E C0 9A 0D 70 BC ...)."""
    state = 0xFF  # x1..x8 of the shift register, all ones at the start of every frame
    out = bytearray(length)
    for i in range(length):
        octet = 0
        for _ in range(8):
            octet = (octet << 1) | (state & 1)
            # taps of h(x): feedback = x8 ^ x5 ^ x3 ^ x1 in the Fibonacci form of the register
            feedback = (state ^ (state >> 3) ^ (state >> 5) ^ (state >> 7)) & 1
            state = (state >> 1) | (feedback << 7)
        out[i] = octet
    return bytes(out)


@lru_cache(maxsize=8)
def _pn_int(length: int) -> int:
    return int.from_bytes(pn_sequence(length), "big")


def randomize(data: bytes | bytearray | memoryview) -> bytes:
    """XOR `data` with the sequence from its start; the same call de-randomizes."""
    n = len(data)
    # One big-integer XOR is ~50x faster than a per-octet loop and needs no numpy round trip.
    return (int.from_bytes(data, "big") ^ _pn_int(n)).to_bytes(n, "big")
