"""Small fakes shared by the ground's unit tests."""

from __future__ import annotations

import os
import queue
from collections.abc import Iterator
from contextlib import contextmanager

from groundsw.session import ReceivedTm
from spacelink.spacepacket import PusTm


class FastClock:
    """Time that moves on by a second at every look: quiet periods (and a silent payload's
    timeouts) pass at once."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


@contextmanager
def umask(mask: int) -> Iterator[None]:
    """Run with the process umask at `mask`: file modes must then come from the code."""
    previous = os.umask(mask)
    try:
        yield
    finally:
        os.umask(previous)


class FakeTelemetry:
    """The subscription side of a ground link: queues that every published packet reaches."""

    def __init__(self) -> None:
        self.subscribers: list[queue.Queue[ReceivedTm]] = []
        self._arrivals = 0

    def subscribe(self) -> queue.Queue[ReceivedTm]:
        q: queue.Queue[ReceivedTm] = queue.Queue()
        self.subscribers.append(q)
        return q

    def unsubscribe(self, q: queue.Queue[ReceivedTm]) -> None:
        self.subscribers.remove(q)

    def publish(self, tm: PusTm, order: int | None = None) -> None:
        """`tm` to every subscriber, as received now (`order`: its arrival number)."""
        self._arrivals += 1
        for q in self.subscribers:
            q.put(ReceivedTm(tm, b"", 0.0, self._arrivals if order is None else order))
