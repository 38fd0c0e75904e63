"""What the archive gives back: one value object per kind of record."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Sample:
    """One value of a parameter as received."""

    received_at: float
    onboard_time: float | None
    raw: Any
    engineering: float | None
    limit_state: str


@dataclass(frozen=True)
class EventRecord:
    """One event as received."""

    id: int
    received_at: float
    onboard_time: float | None
    name: str
    severity: int
    text: str


@dataclass(frozen=True)
class PacketRecord:
    """One packet as received: raw octets and what the dictionary made of them."""

    id: int
    received_at: float
    service: int
    subtype: int
    name: str | None
    decoded: dict[str, Any] | None
    error: str | None
    raw: bytes
    # The virtual channel it came on first: 0 real-time, 1 bulk (retrieved from the payload's
    # packet store, or file data); None when not known (archived before it was recorded).
    vcid: int | None = None


@dataclass(frozen=True)
class FrameRecord:
    """One TM frame as received: its counters, CLCW and octets (None for an idle frame)."""

    received_at: float
    vcid: int
    mc_count: int
    vc_count: int
    clcw: int
    raw: bytes | None


@dataclass(frozen=True)
class CommandStage:
    """One thing the link said about a command: when (UNIX time), what, and its detail."""

    at: float
    stage: str
    detail: str


@dataclass(frozen=True)
class CommandHistory:
    """One command a client sent (or queued), and every stage of it since."""

    id: int
    submitted_at: float
    client: str
    source_id: int
    request: str
    name: str
    arguments: str
    outcome: str
    stages: tuple[CommandStage, ...]
