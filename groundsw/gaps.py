"""Gaps in a payload's telemetry, found from the packets received: pure logic, no I/O.

The payload numbers its TM packets per APID (14-bit sequence count, wrapping at 16384) and
starts again at 0 when it restarts, with PAYLOAD_STARTED first. Fed the real-time (VC 0)
packets in arrival order, `GapDetector` finds where packets are missing: a jump in the count
(n packets missing between the onboard times of the packets either side), or a restart whose
count does not follow the last packet before it (an unknown number missing up to the start).

Whether a gap has been filled since is `holes`: the packets the archive now holds in the gap's
time range (received live, retrieved from the payload's packet store, or bulk packets that
took counts from the same APID) walked in onboard-time order from the packet before the gap to
the packet after it. What is still missing are the places where the count does not follow.
A hole before a restart has no known size: it is closed once a retrieval of its time range
has completed.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable
from dataclasses import dataclass

from spacelink.spacepacket import MAX_SEQUENCE_COUNT

MODULUS = MAX_SEQUENCE_COUNT + 1  # 16384
# Retrievals answered (completed or failed) after which a gap still open is given up.
MAX_ATTEMPTS = 3


class GapState(enum.StrEnum):
    OPEN = "open"
    RETRIEVING = "retrieving"
    RECOVERED = "recovered"
    UNRECOVERABLE = "unrecoverable"


@dataclass(frozen=True, slots=True)
class PacketMark:
    """What gap finding needs of a TM packet."""

    apid: int
    seq: int
    onboard_time: float
    started: bool = False  # the PAYLOAD_STARTED event: the payload's first packet


@dataclass(frozen=True, slots=True)
class Gap:
    """Packets of one APID missing between two received ones (`start_time` and `end_time`:
    the onboard times of the packets before and after)."""

    apid: int
    first_missing: int  # sequence count of the first packet missing
    missing: int | None  # how many; None: unknown (the payload restarted in between)
    next_seq: int  # sequence count of the packet after the gap
    start_time: float
    end_time: float
    state: GapState = GapState.OPEN
    attempts: int = 0
    reason: str | None = None
    created_at: float = 0.0
    updated_at: float = 0.0
    id: int | None = None  # the archive's

    @property
    def restart(self) -> bool:
        return self.missing is None

    @property
    def before_seq(self) -> int:
        return (self.first_missing - 1) % MODULUS

    @property
    def closed(self) -> bool:
        return self.state in (GapState.RECOVERED, GapState.UNRECOVERABLE)

    def counts_text(self) -> str:
        """The sequence counts missing, as operators read them: `1201..1204 (4)`."""
        if self.missing is None:
            return f"from {self.first_missing}, number unknown (restart)"
        last = (self.first_missing + self.missing - 1) % MODULUS
        if self.missing == 1:
            return f"{self.first_missing} (1)"
        return f"{self.first_missing}..{last} ({self.missing})"

    def describe(self) -> str:
        return f"APID {self.apid} sequence counts {self.counts_text()}"


@dataclass(frozen=True, slots=True)
class Hole:
    """Part of a gap still missing: after the packet at `start_time`, before the one at
    `end_time`."""

    first_missing: int
    missing: int | None  # None: unknown, up to a restart
    start_time: float
    end_time: float


def follows(before: int, after: int) -> bool:
    return after == (before + 1) % MODULUS


def gap_between(before: PacketMark, after: PacketMark) -> Gap | None:
    """The gap between two packets of one APID received one after the other, if any."""
    if follows(before.seq, after.seq):
        return None  # a restart whose count follows (0 after 16383) lost nothing either
    if after.seq == before.seq and after.onboard_time == before.onboard_time:
        return None  # the same packet twice
    first = (before.seq + 1) % MODULUS
    return Gap(
        apid=before.apid,
        first_missing=first,
        missing=None if after.started else (after.seq - first) % MODULUS,
        next_seq=after.seq,
        start_time=before.onboard_time,
        end_time=after.onboard_time,
    )


class GapDetector:
    """Finds gaps in the real-time packets, fed in arrival order. `last`: the last packet of
    each APID received before (from the archive), so that a gap across a ground restart is
    found too."""

    def __init__(self, last: Iterable[PacketMark] = ()) -> None:
        self._last: dict[int, PacketMark] = {mark.apid: mark for mark in last}

    def observe(self, mark: PacketMark) -> Gap | None:
        """The gap this packet closes behind it, if any."""
        before = self._last.get(mark.apid)
        self._last[mark.apid] = mark
        return None if before is None else gap_between(before, mark)

    def last(self, apid: int) -> PacketMark | None:
        return self._last.get(apid)


def holes(gap: Gap, marks: Iterable[PacketMark]) -> list[Hole]:
    """What of `gap` is still missing, given the packets of its APID held with onboard times
    in [start_time, end_time] (any order, duplicates allowed; the packets either side of the
    gap among them or not)."""
    before = gap.before_seq

    def order(mark: PacketMark) -> tuple[float, int]:
        # Packets of one millisecond in the order of their counts, from the packet before.
        return mark.onboard_time, (mark.seq - before) % MODULUS

    after = PacketMark(gap.apid, gap.next_seq, gap.end_time, started=gap.restart)
    inside = sorted(
        (
            m
            for m in marks
            if m.apid == gap.apid
            and gap.start_time <= m.onboard_time <= gap.end_time
            # those sharing the first packet's millisecond but sent before it
            and not (m.onboard_time == gap.start_time and order(m)[1] >= MODULUS // 2)
        ),
        key=order,
    )
    inside.append(after)
    found: list[Hole] = []
    expected, since = gap.first_missing, gap.start_time
    seen: set[tuple[int, float]] = set()
    for mark in inside:
        key = (mark.seq, mark.onboard_time)
        if key in seen or key == (before, gap.start_time):
            continue
        seen.add(key)
        if mark.seq != expected:
            count = None if mark.started else (mark.seq - expected) % MODULUS
            found.append(Hole(expected, count, since, mark.onboard_time))
        if key == (after.seq, after.onboard_time):
            break
        expected, since = (mark.seq + 1) % MODULUS, mark.onboard_time
    return found


def is_filled(found: list[Hole], retrieval_completed: bool) -> bool:
    """Nothing missing: no hole of known size, and any before a restart covered by a
    completed retrieval."""
    if any(h.missing is not None for h in found):
        return False
    return not found or retrieval_completed


def retrieval_range(found: list[Hole]) -> tuple[int, int]:
    """The whole seconds (UNIX) a by-time-range retrieval must cover to fill every hole."""
    start = min(h.start_time for h in found)
    end = max(h.end_time for h in found)
    return math.floor(start), math.ceil(end)
