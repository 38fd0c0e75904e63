"""The compute gate: every inference asks it before it starts, so that the thermal governor can
space inferences (duty cycle) or hold them, and it counts the time spent computing.

Runs may overlap: a job's run on the compute lane and a known-answer check of the job before it
on the service lane. The gate counts a busy period from the start of the first run to the end of
the last, and spaces the next run after the whole period."""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import time
from collections.abc import Callable, Iterator
from typing import Protocol

log = logging.getLogger(__name__)

# How often a waiting inference looks at its cancellation flag (onnxruntime's RunOptions cannot
# wake a Python wait): the delay of a cancel, a deadline or a stop while held.
POLL_S = 0.05


def spacing_s(run_s: float, duty: float) -> float:
    """Idle time after a run of `run_s` seconds that keeps the share of time computing at `duty`."""
    if duty >= 1.0:
        return 0.0
    if duty <= 0.0:
        return math.inf
    return run_s * (1.0 - duty) / duty


class DutyMeter:
    """The compute's duty between two reads of a busy counter (the gate's `busy_seconds`): what
    drives the bench's thermal and battery models. A counter that broke counts as full duty (a
    model heats and drains rather than hides the load)."""

    def __init__(self, busy_seconds: Callable[[], float]) -> None:
        self._busy_seconds = busy_seconds
        # (time, busy seconds) the intervals so far have accounted for; None before the first.
        self._last: tuple[float, float] | None = None

    def advance(self, now: float) -> tuple[float, float] | None:
        """(then, duty): the time of the last read and the share of the time since then spent
        computing, up to `now`. None at the first read (it only starts the clock) and when no
        time passed or the clock went back (the busy time waits for the next read)."""
        busy = self._busy_seconds()
        if self._last is None:
            self._last = (now, busy)
            return None
        then, busy_then = self._last
        if not now > then:
            return None
        real_dt = now - then
        duty = busy_duty(busy - busy_then, real_dt)
        self._last = (now, carried_busy(busy_then, busy, duty, real_dt))
        return then, duty


def busy_duty(busy_dt: float, real_dt: float) -> float:
    """The share of `real_dt` spent computing, in [0, 1]; a broken counter counts as full
    duty."""
    duty = busy_dt / real_dt
    if not math.isfinite(duty):
        log.warning("busy counter advanced by %r over %r s: counted as full duty", busy_dt, real_dt)
        return 1.0
    return min(max(duty, 0.0), 1.0)


def carried_busy(busy_then: float, busy: float, duty: float, real_dt: float) -> float:
    """The busy counter's value up to which a step at `duty` over `real_dt` accounted for it.
    A worker reports its busy time in lumps (with its heartbeat, every half second), and a read
    more often than that finds a lump larger than the step: what full duty cannot hold is
    carried into the next steps rather than lost. A counter that went back or broke is taken
    as it is."""
    delta = busy - busy_then
    if not (math.isfinite(delta) and delta > 0):
        return busy
    return min(busy, busy_then + duty * real_dt)


class GateControl(Protocol):
    """What the thermal governor sets and reads of the compute's gate, wherever it is."""

    @property
    def duty(self) -> float: ...

    @property
    def held(self) -> bool: ...

    def allow(self, duty: float, *, held: bool = False) -> None: ...

    def busy_seconds(self) -> float: ...


class ComputeGate:
    """Admits inferences at the allowed duty cycle, holds them while told to; thread-safe."""

    def __init__(self, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._monotonic = monotonic
        self._cond = threading.Condition()
        self._duty = 1.0
        self._held = False
        self._closed = False
        self._busy_s = 0.0
        # Runs in progress, and when the busy period they belong to began.
        self._running = 0
        self._busy_since = 0.0
        self._last_end = -math.inf
        self._last_run_s = 0.0

    @property
    def duty(self) -> float:
        """The share of time inferences may take (0 while held)."""
        return 0.0 if self._held else self._duty

    @property
    def held(self) -> bool:
        return self._held

    def allow(self, duty: float, *, held: bool = False) -> None:
        """Let inferences take `duty` of the time (0 < duty <= 1), or none while `held`."""
        with self._cond:
            self._duty = min(1.0, max(duty, 1e-6))
            self._held = held
            self._cond.notify_all()

    def close(self) -> None:
        """Stop waiting for good: every waiting and later inference is admitted at once."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def busy_seconds(self) -> float:
        """Seconds spent in inferences since start, the one in progress included."""
        with self._cond:
            busy = self._busy_s
            if self._running:
                busy += self._monotonic() - self._busy_since
            return busy

    def admit(self, cancelled: Callable[[], bool] = lambda: False) -> None:
        """Wait until an inference may start: not held, and the last run's spacing over.
        Returns early when `cancelled()` turns true (the caller then does not compute)."""
        with self._cond:
            while not self._closed and not cancelled():
                if not self._held:
                    due = self._last_end + spacing_s(self._last_run_s, self._duty)
                    wait = due - self._monotonic()
                    if wait <= 0:
                        return
                else:
                    wait = POLL_S
                self._cond.wait(min(wait, POLL_S))

    @contextlib.contextmanager
    def running(self) -> Iterator[None]:
        """Around one inference: its time counts as busy; the busy period it ends (the last
        of overlapping runs) sets the spacing after it."""
        with self._cond:
            if not self._running:
                self._busy_since = self._monotonic()
            self._running += 1
        try:
            yield
        finally:
            with self._cond:
                self._running -= 1
                if not self._running:
                    end = self._monotonic()
                    self._last_run_s = end - self._busy_since
                    self._last_end = end
                    self._busy_s += self._last_run_s
