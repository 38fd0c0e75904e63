"""The messages between the payload and a worker: frozen dataclasses, pickled on the wire.

Requests carry opaque bodies (picklable objects the worker's handler table knows by type); the
worker answers each with a Reply or a Failure, and sends Heartbeats and Notices by itself.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

#: Bumped whenever a message changes shape; a worker of another version is refused at start.
PROTOCOL_VERSION = 1

#: What a heartbeat's status may hold: counters and short texts for housekeeping.
StatusValue = int | float | str | bool
Status = dict[str, StatusValue]


class Lane(enum.StrEnum):
    """Each lane is served one request at a time by its own worker thread."""

    COMPUTE = "compute"  # inference runs: long
    SERVICE = "service"  # checks, scrubs, queries: answered while a run computes


# payload → worker


@dataclass(frozen=True, slots=True)
class Request:
    id: int
    lane: Lane
    body: Any


@dataclass(frozen=True, slots=True)
class Cancel:
    """Reaches the call's cancel hooks at once, whatever its lane is doing."""

    id: int


# worker → payload


@dataclass(frozen=True, slots=True)
class Hello:
    """The worker's handlers are built: it serves from now on."""

    pid: int
    name: str
    version: int = PROTOCOL_VERSION


@dataclass(frozen=True, slots=True)
class StartFailed:
    """The handler factory raised: the worker exits after sending this."""

    error_type: str
    text: str


@dataclass(frozen=True, slots=True)
class Reply:
    id: int
    value: Any


@dataclass(frozen=True, slots=True)
class Failure:
    """The handler raised `error_type` (its class name) with message `text`."""

    id: int
    error_type: str
    text: str


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """`sent_at` is the worker's monotonic clock; `status` comes from the factory's callback."""

    seq: int
    sent_at: float
    status: Status = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Quiet:
    """No heartbeat may come for up to `seconds` from now (0: the quiet is over).

    Sent before native code that holds the GIL for long (onnxruntime builds a session, or
    TensorRT an engine, without letting it go): the heartbeat thread cannot run meanwhile.
    """

    seconds: float


@dataclass(frozen=True, slots=True)
class Notice:
    """Something the worker tells by itself (an upset found, a registry update)."""

    kind: str
    body: Any


ToWorker = Request | Cancel
FromWorker = Hello | StartFailed | Reply | Failure | Heartbeat | Quiet | Notice

#: The error type of a Failure for a request cancelled before it ran.
CANCELLED = "CallCancelled"
#: The error type of a Failure for a request whose body type has no handler.
UNKNOWN_REQUEST = "UnknownRequest"
#: The error type of a Failure for a reply that could not be pickled.
UNSENDABLE_REPLY = "UnsendableReply"
