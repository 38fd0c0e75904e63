"""The payload's watchdog: kicked from the main loop, at most once per interval, only while
every health check passes. While a check fails the kicks stop; a fault that lasts the
watchdog's time gets the payload restarted by its supervisor (systemd, the bench's) or by the
hardware watchdog, and one that clears sooner (a worker restarted by its own supervisor) only
costs the kicks it missed: the watchdog's time is the grace a fault gets.

Where kicks go sits behind `KickTarget`: a Linux watchdog device (`WatchdogDevice`), the
supervisor's notify socket (`NotifyTarget`), or a test's fake.
"""

from __future__ import annotations

import enum
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

from flight.durable import write_all
from flight.lifecycle.health import Finding, HealthMonitor
from flight.lifecycle.sd_notify import Notifier

log = logging.getLogger(__name__)

# One octet per kick. Never "V": a driver that sees it arms the magic close, and a crash right
# after would then close the device without the reset it exists for.
KICK_OCTET = b"\0"
MAGIC_CLOSE = b"V"


class WatchdogStatus(enum.IntEnum):
    """Dictionary enum WatchdogStatus."""

    OFF = 0  # nothing to kick: no watchdog device configured and no supervisor's watchdog
    KICKING = 1
    WITHHELD = 2  # a health check fails: no kicks while it does


class KickTarget(Protocol):
    name: str

    def kick(self) -> None:
        """One kick; OSError when it cannot be delivered."""
        ...

    def close(self, disarm: bool) -> None:
        """No more kicks; `disarm`: a deliberate stop, the watchdog must not fire."""
        ...


class WatchdogDevice:
    """A Linux watchdog device (/dev/watchdog): opened, which starts it, at the first kick, so
    that a slow start is not counted against it; written one octet per kick; closed with the
    magic "V" on a deliberate stop (the driver then stops, unless built with nowayout)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.name = str(path)
        self._fd: int | None = None

    def kick(self) -> None:
        if self._fd is None:
            # Not inherited by child processes: a worker holding it would keep the device busy
            # for the next payload and hide this one's death.
            self._fd = os.open(self.path, os.O_WRONLY | os.O_CLOEXEC)
            log.info("watchdog device %s opened", self.path)
        write_all(self._fd, KICK_OCTET)

    def close(self, disarm: bool) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            if disarm:
                write_all(fd, MAGIC_CLOSE)
        except OSError as exc:
            log.warning("watchdog device %s: magic close failed: %s", self.path, exc)
        finally:
            os.close(fd)
        log.info("watchdog device %s closed%s", self.path, " (disarmed)" if disarm else "")


class NotifyTarget:
    """The supervisor's watchdog: WATCHDOG=1 on its notify socket."""

    name = "supervisor"

    def __init__(self, notifier: Notifier) -> None:
        self._notifier = notifier

    def kick(self) -> None:
        if not self._notifier.watchdog():
            raise OSError(f"cannot notify {self._notifier.address!r}")

    def close(self, disarm: bool) -> None:
        """The supervisor is told of a stop by STOPPING=1 (Notifier.stopping)."""


class WatchdogKicker:
    """Kicks every target every `interval_s` while the health monitor finds nothing wrong."""

    def __init__(
        self,
        health: HealthMonitor,
        targets: Sequence[KickTarget],
        interval_s: float,
        monotonic: Callable[[], float],
        on_withheld: Callable[[Finding], None],
        on_target_failed: Callable[[str, str], None],
        on_resumed: Callable[[Finding, float], None] | None = None,
    ) -> None:
        """`on_withheld(finding)`: once when the kicks stop; `on_resumed(finding, seconds)`: once
        when they start again; `on_target_failed(name, why)`: once per run of failed kicks of
        one target."""
        if interval_s <= 0:
            raise ValueError(f"kick interval must be above 0, found {interval_s!r}")
        self.health = health
        self.targets = list(targets)
        self.interval_s = interval_s
        self._monotonic = monotonic
        self._on_withheld = on_withheld
        self._on_target_failed = on_target_failed
        self._on_resumed = on_resumed
        self._next = float("-inf")
        self._failing: set[str] = set()
        self.withheld: Finding | None = None
        self._withheld_since = 0.0
        self.kicks = 0

    @property
    def status(self) -> WatchdogStatus:
        if self.withheld is not None:
            return WatchdogStatus.WITHHELD
        return WatchdogStatus.KICKING if self.targets else WatchdogStatus.OFF

    def tick(self) -> None:
        """Called from the main loop: checks health and kicks when the interval is up."""
        now = self._monotonic()
        if now < self._next:
            return
        self._next = now + self.interval_s
        finding = self.health.first_failure()
        if finding is not None:
            if self.withheld is None:
                self.withheld, self._withheld_since = finding, now
                log.error("watchdog withheld: %s: %s", finding.check, finding.reason)
                self._on_withheld(finding)
            return
        if self.withheld is not None:
            cleared, self.withheld = self.withheld, None
            log.warning("watchdog kicks resumed: %s is healthy again", cleared.check)
            if self._on_resumed is not None:
                self._on_resumed(cleared, now - self._withheld_since)
        for target in self.targets:
            try:
                target.kick()
            except OSError as exc:
                if target.name not in self._failing:
                    self._failing.add(target.name)
                    log.error("watchdog %s: kick failed: %s", target.name, exc)
                    self._on_target_failed(target.name, str(exc))
                continue
            self._failing.discard(target.name)
        self.kicks += 1

    def close(self, disarm: bool) -> None:
        for target in self.targets:
            target.close(disarm)
