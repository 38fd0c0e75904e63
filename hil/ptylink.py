"""An emulated serial link: two pseudo-terminal pairs joined by a relay paced to the baud rate.

The payload opens `flight_port`, the ground opens `ground_port`. A pty has no line speed of its
own, so the relay releases octets no faster than an 8N1 line at the configured baud would
(ten line bits per octet). The relay holds the slave ends open itself, so either program can
close and reopen its port (a payload restart) without the other side seeing a hang-up.

Each direction applies its impairments (bit errors, bursts, drops: `hil.impairments`) to the
octets as they enter, holds them for the added latency, then paces them out; during a link
cut, whatever would be on the wire is lost. Settings can change while the link runs.

The link can also be made unavailable, both ways, for as long as the caller says (an orbit
driver between passes, hil/orbit_driver.py): what would be on the wire is lost as in a cut, but
counted apart, so that the line's faults and the orbit's geometry can be told apart.
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import threading
import time
import tty
from collections import deque
from dataclasses import dataclass, field

from hil.impairments import Impairments, LineFaults
from spacelink.icd import LINE_BITS_PER_OCTET

_READ_CHUNK = 65536
# Octets one direction may hold while its reader is not reading before the oldest are dropped
# (a real UART would overrun much sooner; this only keeps a stalled test from eating memory).
MAX_BACKLOG = 4 * 1024 * 1024
# The pacing lets a burst of at most this many line-seconds through at once.
_BURST_SECONDS = 0.002


@dataclass
class DirectionStats:
    """What one direction did: octets in and out, and every way octets were changed or lost."""

    octets_in: int = 0
    octets_out: int = 0
    octets_injected: int = 0
    bits_flipped: int = 0
    bursts: int = 0
    octets_dropped: int = 0
    octets_cut: int = 0
    overflow_drops: int = 0
    octets_corrupted: int = 0
    octets_unavailable: int = 0

    def describe(self) -> str:
        parts = [f"{self.octets_out} octets"]
        for label, value in (
            ("injected", self.octets_injected),
            ("bits flipped", self.bits_flipped),
            ("bursts", self.bursts),
            ("dropped", self.octets_dropped),
            ("lost in cuts", self.octets_cut),
            ("lost out of passes", self.octets_unavailable),
            ("overflow", self.overflow_drops),
        ):
            if value:
                parts.append(f"{label} {value}")
        return ", ".join(parts)


@dataclass
class _Direction:
    name: str
    source_fd: int
    sink_fd: int
    octets_per_second: float | None
    faults: LineFaults
    stats: DirectionStats = field(default_factory=DirectionStats)
    delayed: deque[tuple[float, bytes]] = field(default_factory=deque)
    backlog: bytearray = field(default_factory=bytearray)
    cut_until: float = 0.0
    credit: float = 0.0
    last: float = field(default_factory=time.monotonic)

    def snapshot(self) -> DirectionStats:
        f = self.faults.stats
        s = self.stats
        return DirectionStats(
            s.octets_in,
            s.octets_out,
            s.octets_injected,
            f.bits_flipped,
            f.bursts,
            f.octets_dropped,
            s.octets_cut,
            s.overflow_drops,
            f.octets_corrupted,
            s.octets_unavailable,
        )

    def release_delayed(self, now: float) -> None:
        while self.delayed and self.delayed[0][0] <= now:
            self.backlog += self.delayed.popleft()[1]

    def refill(self, now: float) -> None:
        if self.octets_per_second is None:
            return
        cap = max(1.0, self.octets_per_second * _BURST_SECONDS)
        self.credit = min(cap, self.credit + (now - self.last) * self.octets_per_second)
        self.last = now

    def sendable(self) -> int:
        if self.octets_per_second is None:
            return len(self.backlog)
        return min(len(self.backlog), int(self.credit))

    def seconds_until_due(self, now: float) -> float | None:
        """When this direction next has work; None when idle."""
        due: float | None = None
        if self.backlog:
            due = 0.0
            if self.octets_per_second is not None:
                due = max(0.0, (1.0 - self.credit) / self.octets_per_second)
        if self.delayed:
            wait = max(0.0, self.delayed[0][0] - now)
            due = wait if due is None else min(due, wait)
        return due


class _PtyPair:
    def __init__(self) -> None:
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        os.set_blocking(self.master, False)
        self.path = os.ttyname(self.slave)

    def close(self) -> None:
        for fd in (self.master, self.slave):
            with contextlib.suppress(OSError):
                os.close(fd)


class PtyLink:
    """The relay between the payload's pty and the ground's pty."""

    def __init__(
        self,
        baud: int | None = 115200,
        *,
        uplink: Impairments | None = None,
        downlink: Impairments | None = None,
        seed: int = 0,
    ) -> None:
        self.baud = baud
        self.seed = seed
        self._flight = _PtyPair()
        self._ground = _PtyPair()
        rate = baud / LINE_BITS_PER_OCTET if baud else None
        self.uplink = _Direction(
            "uplink",
            self._ground.master,
            self._flight.master,
            rate,
            LineFaults(uplink or Impairments(), seed=seed * 2),
        )
        self.downlink = _Direction(
            "downlink",
            self._flight.master,
            self._ground.master,
            rate,
            LineFaults(downlink or Impairments(), seed=seed * 2 + 1),
        )
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._wake_r, self._wake_w = os.pipe()
        self._thread = threading.Thread(target=self._run, name="ptylink", daemon=True)
        self._available = True
        self.error: BaseException | None = None

    @property
    def flight_port(self) -> str:
        return self._flight.path

    @property
    def ground_port(self) -> str:
        return self._ground.path

    def start(self) -> PtyLink:
        self._thread.start()
        return self

    def _direction(self, name: str) -> _Direction:
        if name not in ("uplink", "downlink"):
            raise ValueError(f"direction {name!r}: uplink or downlink")
        return self.uplink if name == "uplink" else self.downlink

    def set_impairments(self, direction: str, impairments: Impairments) -> None:
        """Change one direction's faults from now on (the random stream carries on)."""
        with self._lock:
            self._direction(direction).faults.impairments = impairments
        self._wake()

    def impairments(self, direction: str) -> Impairments:
        return self._direction(direction).faults.impairments

    def cut(self, seconds: float, directions: tuple[str, ...] = ("uplink", "downlink")) -> None:
        """Cut the line for `seconds` (both ways unless `directions` says): everything on the
        wire meanwhile is lost."""
        with self._lock:
            until = time.monotonic() + seconds
            for d in (self._direction(name) for name in directions):
                d.cut_until = max(d.cut_until, until)
        self._wake()

    @property
    def available(self) -> bool:
        """Whether the line carries anything (False: out of a pass)."""
        return self._available

    def set_available(self, available: bool) -> None:
        """Make the line carry octets both ways, or lose them all until made available again
        (counted as `octets_unavailable`)."""
        with self._lock:
            self._available = available
        self._wake()

    def inject(self, direction: str, data: bytes) -> None:
        """Put `data` on the line in one direction, behind what is already queued there."""
        with self._lock:
            d = self._direction(direction)
            d.backlog += data
            d.stats.octets_injected += len(data)
        self._wake()

    def stats(self, direction: str) -> DirectionStats:
        """A consistent copy of one direction's counters."""
        with self._lock:
            return self._direction(direction).snapshot()

    def describe(self) -> str:
        up, down = self.stats("uplink"), self.stats("downlink")
        return f"uplink {up.describe()}; downlink {down.describe()}"

    def _wake(self) -> None:
        with contextlib.suppress(OSError):  # already stopped
            os.write(self._wake_w, b"x")

    def stop(self) -> None:
        self._stop.set()
        self._wake()
        self._thread.join(2.0)
        self._flight.close()
        self._ground.close()
        os.close(self._wake_r)
        os.close(self._wake_w)

    def __enter__(self) -> PtyLink:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        directions = (self.uplink, self.downlink)
        try:
            while not self._stop.is_set():
                timeout = 0.2
                now = time.monotonic()
                with self._lock:
                    for d in directions:
                        due = d.seconds_until_due(now)
                        if due is not None:
                            timeout = min(timeout, max(due, 0.0005))
                readable, _, _ = select.select(
                    [self.uplink.source_fd, self.downlink.source_fd, self._wake_r], [], [], timeout
                )
                if self._wake_r in readable:
                    os.read(self._wake_r, 4096)
                with self._lock:
                    now = time.monotonic()
                    for d in directions:
                        if d.source_fd in readable:
                            self._pull(d, now)
                        d.release_delayed(now)
                        d.refill(now)
                        self._push(d, now, self._available)
        except BaseException as exc:  # surfaced to the bench, which stops the run
            self.error = exc
            raise

    @staticmethod
    def _pull(d: _Direction, now: float) -> None:
        try:
            data = os.read(d.source_fd, _READ_CHUNK)
        except BlockingIOError:
            return
        except OSError as exc:
            if exc.errno == errno.EIO:  # no slave open: nothing to carry
                return
            raise
        d.stats.octets_in += len(data)
        data = d.faults.apply(data)
        latency = d.faults.impairments.latency_s
        if latency > 0:
            d.delayed.append((now + latency, data))
            return
        d.backlog += data
        if len(d.backlog) > MAX_BACKLOG:
            excess = len(d.backlog) - MAX_BACKLOG
            del d.backlog[:excess]
            d.stats.overflow_drops += excess

    @staticmethod
    def _push(d: _Direction, now: float, available: bool) -> None:
        count = d.sendable()
        if count <= 0:
            return
        if not available or now < d.cut_until:  # the line is dead: these octets never arrive
            del d.backlog[:count]
            if not available:
                d.stats.octets_unavailable += count
            else:
                d.stats.octets_cut += count
            if d.octets_per_second is not None:
                d.credit -= count
            return
        try:
            written = os.write(d.sink_fd, d.backlog[:count])
        except BlockingIOError:
            return
        del d.backlog[:written]
        d.stats.octets_out += written
        if d.octets_per_second is not None:
            d.credit -= written
