"""The payload's link accounting: everything received is either accepted or counted by reason."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from spacelink.cltu import CltuStats
from spacelink.errors import DiscardReason


@dataclass(slots=True)
class LinkCounters:
    """Accepted and discarded units per layer; the discard reasons are ICD-level checks."""

    octets_received: int = 0
    cltu: CltuStats = field(default_factory=CltuStats)
    frames_accepted: int = 0
    control_commands: int = 0
    packets_accepted: int = 0
    discarded: Counter[DiscardReason] = field(default_factory=Counter)
    tm_packets_sent: int = 0
    tm_frames_sent: int = 0

    def discard(self, reason: DiscardReason) -> None:
        self.discarded[reason] += 1

    def summary(self) -> str:
        """One line for the log: the totals and every non-zero discard counter."""
        c = self.cltu
        parts = [
            f"rx {self.octets_received} octets",
            f"CLTUs {c.cltus}",
            f"codeblocks {c.codeblocks} ({c.corrected_codeblocks} corrected,"
            f" {c.uncorrectable_codeblocks} uncorrectable)",
            f"frames {self.frames_accepted} accepted",
            f"packets {self.packets_accepted} accepted",
            f"tx {self.tm_frames_sent} frames {self.tm_packets_sent} packets",
        ]
        if c.octets_outside_cltu:
            parts.append(f"{c.octets_outside_cltu} octets outside CLTUs")
        discards = ", ".join(
            f"{r.value} {n}"
            for r, n in sorted(self.discarded.items(), key=lambda item: item[0].value)
            if n
        )
        if discards:
            parts.append(f"discarded: {discards}")
        return "; ".join(parts)
