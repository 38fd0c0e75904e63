"""Bringing the uplink up: how the ground starts the AD service (FOP-1) from the payload's CLCW,
and the timer T1 a line rate needs. Pure: it drives a `Fop1` and does no I/O.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from spacelink.cop1 import Clcw, Fop1
from spacelink.icd import line_seconds

# A CLTU of a maximum frame plus one downlink frame, both ways, with margin: the time a frame
# needs to be acknowledged when nothing is lost.
_T1_LINE_OCTETS = 4 * (1200 + 1120)
_T1_FLOOR_S = 0.5


def default_t1(baud: int) -> float:
    """A T1 that covers a round trip of a maximum TC frame and a TM frame at `baud`."""
    return _T1_FLOOR_S + line_seconds(_T1_LINE_OCTETS, baud)


class InitMode(enum.Enum):
    """How the ground starts the AD service (FOP-1 initiation directives)."""

    AUTO = "auto"  # V(S) := N(R) of a fresh CLCW, which is the check; Unlock if in Lockout
    CLCW = "clcw"  # V(S) := N(R), then Initiate AD with CLCW check (waits for the next CLCW)
    UNLOCK = "unlock"  # V(S) := N(R), then Initiate AD with Unlock
    SET_VR = "setvr"  # Initiate AD with Set V(R) = 0: resets the payload's FARM


@dataclass(frozen=True)
class LinkUp:
    """How the AD service was started: the payload's CLCW found, and the directive used."""

    found: Clcw
    directive: str
    v_s: int

    def __str__(self) -> str:
        return f"CLCW {self.found}; COP-1 {self.directive}, active with V(S)={self.v_s}"


def start_ad_service(fop: Fop1, clcw: Clcw, mode: InitMode, now: float) -> str:
    """Give `fop` the initiation directive `mode` asks for, from the payload's `clcw`; the
    directive used, as `LinkUp` tells it."""
    if mode is InitMode.SET_VR:
        fop.initiate_with_set_vr(0, now)
        return "initiated with Set V(R)=0"
    fop.set_v_s(clcw.report_value)
    if mode is InitMode.UNLOCK or (mode is InitMode.AUTO and clcw.lockout):
        fop.initiate_with_unlock(now)
        return "initiated with Unlock"
    if mode is InitMode.CLCW:
        fop.initiate_with_clcw(now)
        return "initiated with CLCW check"
    fop.initiate_without_clcw(now)
    return "initiated from the CLCW"
