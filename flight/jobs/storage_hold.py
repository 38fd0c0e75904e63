"""The storage hold: no job starts while the disk of the results has no room for a result.

A job whose result cannot be stored for lack of disk is not failed (its customer would lose an
accepted job to a transient fill: a burst of logs, a large upload in progress): it is queued
again and the queue waits until the disk has room for that result. Pure logic: the room is
given as a callable, the clock too.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

#: How often the disk is looked at while held: statvfs is cheap, but not free on every pass.
POLL_S = 2.0


@dataclass(frozen=True, slots=True)
class Released:
    """The hold ended: how long it lasted, and the room found."""

    held_s: float
    room: int


class StorageHold:
    """Entered when a result of `needed` octets found no room; left once `room()` reaches the
    largest such result. Thread-safe: the bookkeeper and the compute thread both ask."""

    def __init__(
        self,
        room: Callable[[], int],
        monotonic: Callable[[], float] = time.monotonic,
        poll_s: float = POLL_S,
    ) -> None:
        self._room = room
        self._monotonic = monotonic
        self._poll_s = poll_s
        self._lock = threading.Lock()
        self._needed = 0
        self._since: float | None = None
        self._next_look = 0.0

    @property
    def holding(self) -> bool:
        """Whether the queue is held (as last found: `release_if_room` looks again)."""
        return self._since is not None

    def enter(self, needed: int) -> bool:
        """A result of `needed` octets found no room; True when this starts the hold."""
        with self._lock:
            self._needed = max(self._needed, needed)
            self._next_look = self._monotonic() + self._poll_s
            if self._since is not None:
                return False
            self._since = self._monotonic()
            return True

    def release_if_room(self) -> Released | None:
        """Look at the disk (at most every poll period); the release when the hold ends now."""
        with self._lock:
            if self._since is None:
                return None
            now = self._monotonic()
            if now < self._next_look:
                return None
            self._next_look = now + self._poll_s
            room = self._room()
            if room < self._needed:
                return None
            released = Released(now - self._since, room)
            self._since = None
            self._needed = 0
            return released
