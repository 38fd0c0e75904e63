"""The calls the payload submitted to its worker: each one's wait for its outcome
(PendingCall), and the book of those pending, by lane (CallBook)."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from typing import Any

from flight.worker.connection import Encoded
from flight.worker.protocol import Lane


class PendingCall:
    """A call submitted to the worker; `result()` waits for its outcome."""

    def __init__(self, id: int, lane: Lane, timeout_s: float, submitted_at: float) -> None:
        self.id = id
        self.lane = lane
        self.timeout_s = timeout_s
        self.submitted_at = submitted_at
        # Held until the outcome is in: a bare lock wakes a waiter faster than an Event (whose
        # Condition costs some 20 us more per call, a good part of a call's round trip).
        self._done = threading.Lock()
        self._done.acquire()
        self._value: Any = None
        self._error: BaseException | None = None
        self._encoded: Encoded | None = None  # kept only until sent

    def done(self) -> bool:
        return not self._done.locked()

    def result(self) -> Any:
        """The handler's return value; raises WorkerCallError, WorkerLost or WorkerUnavailable."""
        with self._done:  # released by _resolve, and by each waiter for the next
            pass
        if self._error is not None:
            raise self._error
        return self._value

    def _resolve(self, value: Any = None, error: BaseException | None = None) -> None:
        """Sets the outcome; called once (callers remove the call from the pending set first)."""
        self._value, self._error = value, error
        self._encoded = None
        self._done.release()


class CallBook:
    """The calls pending on a worker: those waiting for one to come up, and those sent, in their
    lanes' order (a lane serves its calls in turn: only the first can have begun, and its time
    limit runs from when it became the first). Not thread-safe: the supervisor's lock guards it."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._calls: dict[int, PendingCall] = {}
        self._unsent: deque[PendingCall] = deque()
        self._lanes: dict[Lane, deque[PendingCall]] = {lane: deque() for lane in Lane}
        self._lane_started: dict[Lane, float] = {}

    def get(self, call_id: int) -> PendingCall | None:
        return self._calls.get(call_id)

    def hold(self, pending: PendingCall, encoded: Encoded) -> None:
        """No worker is up: `pending` waits, its request encoded, for the next one."""
        pending._encoded = encoded
        self._calls[pending.id] = pending
        self._unsent.append(pending)

    def enlist(self, pending: PendingCall) -> None:
        """`pending` is sent to the ready worker: queued in its lane."""
        self._calls[pending.id] = pending
        lane = self._lanes[pending.lane]
        if not lane:
            self._lane_started[pending.lane] = self._clock()
        lane.append(pending)

    def withdraw_unsent(self, pending: PendingCall) -> bool:
        """Takes back a call not sent yet; False if it was sent."""
        if pending not in self._unsent:
            return False
        self._unsent.remove(pending)
        del self._calls[pending.id]
        return True

    def send_unsent(self) -> list[PendingCall]:
        """The calls that waited for a worker, enlisted now that one is ready, oldest first."""
        waiting = list(self._unsent)
        self._unsent.clear()
        for pending in waiting:
            self.enlist(pending)
        return waiting

    def expire_unsent(self, limit_s: float) -> list[PendingCall]:
        """The calls that waited for a worker longer than `limit_s`, taken out."""
        now = self._clock()
        expired = [p for p in self._unsent if now - p.submitted_at > limit_s]
        for pending in expired:
            self.withdraw_unsent(pending)
        return expired

    def answered(self, call_id: int) -> PendingCall | None:
        """The call the worker answered, taken out (None if it is not pending); the next one
        of its lane begins."""
        pending = self._calls.pop(call_id, None)
        if pending is None:
            return None
        lane = self._lanes[pending.lane]
        if lane and lane[0] is pending:
            lane.popleft()
            self._lane_started[pending.lane] = self._clock()
        else:
            lane.remove(pending)  # cancelled while queued: answered out of turn
        return pending

    def overdue(self, now: float, horizon: float) -> tuple[PendingCall | None, float]:
        """A first call of a lane past its time limit (if any), and the earliest deadline of
        the first calls before `horizon`."""
        overdue: PendingCall | None = None
        next_deadline = horizon
        for lane, calls in self._lanes.items():
            if calls:
                deadline = self._lane_started[lane] + calls[0].timeout_s
                if now >= deadline:
                    overdue = calls[0]
                next_deadline = min(next_deadline, deadline)
        return overdue, next_deadline

    def lose_sent(self) -> list[tuple[PendingCall, bool]]:
        """The worker is lost: every call sent to it, taken out, with whether it may have begun
        (the first of its lane)."""
        lost = [(pending, i == 0) for calls in self._lanes.values()
                for i, pending in enumerate(calls)]  # fmt: skip
        for calls in self._lanes.values():
            calls.clear()
        for pending, _ in lost:
            self._calls.pop(pending.id, None)
        return lost

    def clear(self) -> list[PendingCall]:
        """Every call, taken out (the supervisor stops)."""
        orphans = list(self._calls.values())
        self._calls.clear()
        self._unsent.clear()
        for calls in self._lanes.values():
            calls.clear()
        return orphans
