"""What the emulated line does to the octets crossing it, one direction at a time.

Bit errors are independent with probability `ber` per bit; error bursts start at an octet with
probability `burst_rate` and scramble the next `burst_bits` bits (each flipped with probability
1/2, the usual model of a burst); octets are lost with probability `drop_rate`. Everything is
drawn from one seeded generator per direction, so a run can be replayed exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


class ImpairmentError(ValueError):
    """An impairment setting outside its range."""


@dataclass(frozen=True)
class Impairments:
    """One direction's line faults."""

    ber: float = 0.0
    burst_rate: float = 0.0
    burst_bits: int = 0
    drop_rate: float = 0.0
    latency_s: float = 0.0

    def __post_init__(self) -> None:
        for name in ("ber", "burst_rate", "drop_rate"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                raise ImpairmentError(f"{name} {value} is not a probability in [0, 1)")
        if self.burst_bits < 0 or (self.burst_rate and not self.burst_bits):
            raise ImpairmentError(f"burst of {self.burst_bits} bits: give a positive length")
        if self.latency_s < 0:
            raise ImpairmentError(f"latency {self.latency_s} s is negative")

    def __str__(self) -> str:
        parts = []
        if self.ber:
            parts.append(f"BER {self.ber:g}")
        if self.burst_rate:
            parts.append(f"bursts {self.burst_rate:g}/octet of {self.burst_bits} bits")
        if self.drop_rate:
            parts.append(f"drops {self.drop_rate:g}")
        if self.latency_s:
            parts.append(f"latency {self.latency_s * 1000:g} ms")
        return ", ".join(parts) or "clean"

    @property
    def corrupts(self) -> bool:
        return bool(self.ber or self.burst_rate or self.drop_rate)


@dataclass
class ImpairmentStats:
    bits_flipped: int = 0
    octets_corrupted: int = 0  # octets with at least one bit flipped (a coding symbol each)
    bursts: int = 0
    octets_dropped: int = 0


@dataclass
class LineFaults:
    """Applies `Impairments` to successive chunks of one direction's octet stream."""

    impairments: Impairments
    seed: int
    stats: ImpairmentStats = field(default_factory=ImpairmentStats)
    _burst_left: int = 0  # bits of a burst that runs on into the next chunk

    def __post_init__(self) -> None:
        self._rng = np.random.default_rng(self.seed)

    def apply(self, data: bytes) -> bytes:
        imp = self.impairments
        if not data or not (imp.corrupts or self._burst_left):
            return data
        octets = np.frombuffer(data, dtype=np.uint8).copy()
        nbits = octets.size * 8
        flips: list[np.ndarray] = []
        if imp.ber:
            count = int(self._rng.binomial(nbits, imp.ber))
            if count:
                flips.append(self._rng.choice(nbits, size=count, replace=False))
        if self._burst_left:
            span = min(self._burst_left, nbits)
            flips.append(self._burst(0, span))
            self._burst_left -= span
        if imp.burst_rate:
            starts = np.flatnonzero(self._rng.random(octets.size) < imp.burst_rate)
            self.stats.bursts += int(starts.size)
            for start in (starts * 8).tolist():
                span = min(imp.burst_bits, nbits - start)
                flips.append(self._burst(start, span))
                self._burst_left = max(self._burst_left, imp.burst_bits - span)
        if flips:
            positions = np.unique(np.concatenate(flips))
            np.bitwise_xor.at(octets, positions >> 3, (0x80 >> (positions & 7)).astype(np.uint8))
            self.stats.bits_flipped += int(positions.size)
            self.stats.octets_corrupted += int(np.unique(positions >> 3).size)
        if imp.drop_rate:
            keep = self._rng.random(octets.size) >= imp.drop_rate
            self.stats.octets_dropped += int(octets.size - keep.sum())
            octets = octets[keep]
        return octets.tobytes()

    def _burst(self, start: int, span: int) -> np.ndarray:
        hit = self._rng.random(span) < 0.5
        return start + np.flatnonzero(hit)
