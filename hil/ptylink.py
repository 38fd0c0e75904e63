"""An emulated serial link: two pseudo-terminal pairs joined by a relay paced to the baud rate.

The payload opens `flight_port`, the ground opens `ground_port`. A pty has no line speed of its
own, so the relay releases octets no faster than an 8N1 line at the configured baud would
(ten line bits per octet). The relay holds the slave ends open itself, so either program can
close and reopen its port (a payload restart) without the other side seeing a hang-up.
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import threading
import time
import tty
from dataclasses import dataclass, field

from spacelink.icd import LINE_BITS_PER_OCTET

_READ_CHUNK = 65536
# Octets one direction may hold while its reader is not reading before the oldest are dropped
# (a real UART would overrun much sooner; this only keeps a stalled test from eating memory).
MAX_BACKLOG = 4 * 1024 * 1024
# The pacing lets a burst of at most this many line-seconds through at once.
_BURST_SECONDS = 0.002


@dataclass
class DirectionStats:
    """Octets carried one way, and octets dropped because the reader did not keep up."""

    octets_in: int = 0
    octets_out: int = 0
    overflow_drops: int = 0


@dataclass
class _Direction:
    name: str
    source_fd: int
    sink_fd: int
    octets_per_second: float | None
    stats: DirectionStats = field(default_factory=DirectionStats)
    backlog: bytearray = field(default_factory=bytearray)
    credit: float = 0.0
    last: float = field(default_factory=time.monotonic)

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

    def seconds_until_sendable(self) -> float:
        if not self.backlog or self.octets_per_second is None:
            return 0.0
        return max(0.0, (1.0 - self.credit) / self.octets_per_second)


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

    def __init__(self, baud: int | None = 115200) -> None:
        self.baud = baud
        self._flight = _PtyPair()
        self._ground = _PtyPair()
        rate = baud / LINE_BITS_PER_OCTET if baud else None
        self.uplink = _Direction("uplink", self._ground.master, self._flight.master, rate)
        self.downlink = _Direction("downlink", self._flight.master, self._ground.master, rate)
        self._stop = threading.Event()
        self._wake_r, self._wake_w = os.pipe()
        self._thread = threading.Thread(target=self._run, name="ptylink", daemon=True)
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

    def stop(self) -> None:
        self._stop.set()
        os.write(self._wake_w, b"x")
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
                for d in directions:
                    if d.backlog:
                        timeout = min(timeout, max(d.seconds_until_sendable(), 0.0005))
                readable, _, _ = select.select(
                    [self.uplink.source_fd, self.downlink.source_fd, self._wake_r], [], [], timeout
                )
                for d in directions:
                    if d.source_fd in readable:
                        self._pull(d)
                now = time.monotonic()
                for d in directions:
                    d.refill(now)
                    self._push(d)
        except BaseException as exc:  # surfaced to the bench, which stops the run
            self.error = exc
            raise

    @staticmethod
    def _pull(d: _Direction) -> None:
        try:
            data = os.read(d.source_fd, _READ_CHUNK)
        except BlockingIOError:
            return
        except OSError as exc:
            if exc.errno == errno.EIO:  # no slave open: nothing to carry
                return
            raise
        d.stats.octets_in += len(data)
        d.backlog += data
        if len(d.backlog) > MAX_BACKLOG:
            excess = len(d.backlog) - MAX_BACKLOG
            del d.backlog[:excess]
            d.stats.overflow_drops += excess

    @staticmethod
    def _push(d: _Direction) -> None:
        count = d.sendable()
        if count <= 0:
            return
        try:
            written = os.write(d.sink_fd, d.backlog[:count])
        except BlockingIOError:
            return
        del d.backlog[:written]
        d.stats.octets_out += written
        if d.octets_per_second is not None:
            d.credit -= written
