"""The payload's health: named checks, each saying what is wrong or None; the watchdog is
kicked only while every check passes."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass

log = logging.getLogger(__name__)

HealthCheck = Callable[[], str | None]
"""None: healthy; otherwise why not, in a few words (it goes into an event, 200 octets at most)."""


@dataclass(frozen=True, slots=True)
class Finding:
    """A check that failed: its name and why."""

    check: str
    reason: str


class HealthMonitor:
    """Named health checks, run together. Thread-safe: checks may be added at any time."""

    def __init__(self) -> None:
        self._checks: dict[str, HealthCheck] = {}
        self._lock = threading.Lock()

    def register(self, name: str, check: HealthCheck) -> None:
        """Add a check; ValueError when `name` is taken (two parts must not share a name)."""
        with self._lock:
            if name in self._checks:
                raise ValueError(f"health check {name!r} is already registered")
            self._checks[name] = check

    def unregister(self, name: str) -> None:
        """Remove a check (a part that is shut down on purpose); no error when there is none."""
        with self._lock:
            self._checks.pop(name, None)

    @property
    def names(self) -> tuple[str, ...]:
        with self._lock:
            return tuple(self._checks)

    def first_failure(self) -> Finding | None:
        """The first check that fails, in the order they were registered; None: all pass.
        A check that raises has failed: the exception is its reason."""
        with self._lock:
            checks = list(self._checks.items())
        for name, check in checks:
            try:
                reason = check()
            except Exception as exc:  # a broken check must not take the main loop down
                log.exception("health check %s raised", name)
                reason = f"check raised {exc!r}"
            if reason is not None:
                return Finding(name, reason or "unhealthy")
        return None


def threads_running(threads: Callable[[], Iterable[threading.Thread | None]]) -> HealthCheck:
    """A check that names the threads `threads()` gives that are not running (None: not made)."""

    def check() -> str | None:
        stopped = [
            "(never made)" if t is None else t.name
            for t in threads()
            if t is None or not t.is_alive()
        ]
        if not stopped:
            return None
        return f"{'thread' if len(stopped) == 1 else 'threads'} {', '.join(stopped)} not running"

    return check


def tolerant(check: HealthCheck, grace_s: float, monotonic: Callable[[], float]) -> HealthCheck:
    """`check`, failing only once it has failed without a break for `grace_s` (a part that
    repairs itself within that time, such as a worker its supervisor restarts, is healthy)."""
    failing_since: list[float] = []

    def tolerant_check() -> str | None:
        why = check()
        if why is None:
            failing_since.clear()
            return None
        now = monotonic()
        if not failing_since:
            failing_since.append(now)
        if now - failing_since[0] < grace_s:
            return None
        return f"{why} (for {now - failing_since[0]:.0f} s)"

    return tolerant_check
