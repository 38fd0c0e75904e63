"""A disk that reads as full for a while: the DISK_FULL fault (FAULT_INJECT) of the store.

Filling the real disk on a board (or a CI machine) to test this would take its space from
everything else on it; the store asks its free space through this callable instead, which can
be told to answer "nothing" for a time, as a transient fill would.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

from flight.files.upload_store import disk_free_bytes


class DiskFill:
    """Free space of the disk holding a path: the real one, or 0 while a fill lasts."""

    def __init__(
        self,
        free_space: Callable[[Path], int] = disk_free_bytes,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._free_space = free_space
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._full_until = 0.0

    def fill_for(self, seconds: float) -> None:
        """The disk reads as full from now for `seconds` (a later fill extends it)."""
        with self._lock:
            self._full_until = max(self._full_until, self._monotonic() + seconds)

    @property
    def full(self) -> bool:
        with self._lock:
            return self._monotonic() < self._full_until

    def __call__(self, path: Path) -> int:
        return 0 if self.full else self._free_space(path)
