"""Stopping a job's runs from another thread, wherever they compute."""

from __future__ import annotations

import threading
from collections.abc import Callable

import onnxruntime as ort


class RunControl:
    """A job's stop flag: onnxruntime's RunOptions for runs in this process, and listeners that
    carry the stop to runs elsewhere (a worker process)."""

    def __init__(self) -> None:
        self.options = ort.RunOptions()
        self._listeners: list[Callable[[], None]] = []
        self._lock = threading.Lock()

    @property
    def terminate(self) -> bool:
        return bool(self.options.terminate)

    @terminate.setter
    def terminate(self, value: bool) -> None:
        with self._lock:
            self.options.terminate = value
            listeners = list(self._listeners) if value else []
        for listener in listeners:
            listener()

    def on_terminate(self, listener: Callable[[], None]) -> None:
        """Call `listener` when the runs are stopped (at once if they already are)."""
        with self._lock:
            self._listeners.append(listener)
            stopped = bool(self.options.terminate)
        if stopped:
            listener()
