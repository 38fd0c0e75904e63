"""A monitor's polling loop on a thread of its own, started and stopped with the monitor."""

from __future__ import annotations

import threading
from collections.abc import Callable


class PollThread:
    """Calls `poll` every `period()` seconds (read again each time: a parameter may change
    it) on a daemon thread named `name`, until stopped."""

    def __init__(self, name: str, poll: Callable[[], None], period: Callable[[], float]) -> None:
        self.name = name
        self._poll = poll
        self._period = period
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def thread(self) -> threading.Thread | None:
        """The thread, once started (for the health checks)."""
        return self._thread

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None and self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.wait(self._period()):
            self._poll()
