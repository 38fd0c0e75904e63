"""What a caller of a worker can be told: the worker was lost, the call failed in it, none came."""

from __future__ import annotations

from flight.worker.losses import LossReason


class WorkerError(Exception):
    """Base of the errors of the worker machinery."""


class WorkerLost(WorkerError):
    """The worker died, hung or was killed while a call was on it; the call's result is unknown.

    `began`: the call may have begun (it was the first of its lane); a call still queued behind
    another never reached its handler, and may be sent again as it is.
    """

    def __init__(self, reason: LossReason, detail: str, *, began: bool = True) -> None:
        super().__init__(f"worker lost ({reason.name}): {detail}")
        self.reason = reason
        self.detail = detail
        self.began = began


class WorkerCallError(WorkerError):
    """A handler raised: `error_type` is its exception's class name, `text` its message."""

    def __init__(self, error_type: str, text: str) -> None:
        super().__init__(f"{error_type}: {text}" if text else error_type)
        self.error_type = error_type
        self.text = text


class WorkerCallCancelled(WorkerCallError):
    """The call was cancelled before it ran (a running call ends as its handler decides)."""


class WorkerUnavailable(WorkerError):
    """No worker took the call: none came up in time, or the supervisor is stopped."""


class WorkerStartError(WorkerError):
    """A worker could not be started: it exited, failed to connect or its factory raised."""


class ProtocolError(WorkerError):
    """A peer sent something that is not a message of this protocol."""


class MessageEncodeError(ProtocolError):
    """A message could not be pickled; nothing of it was sent."""
