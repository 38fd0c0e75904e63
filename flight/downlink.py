"""Downlink transmitter: a thread that feeds the serial line with TM frames at its own pace.

It builds each frame only when the line is about to be free, so that real-time packets queued
meanwhile are not stuck behind frames already committed to the port, and it keeps the CLCW
flowing: an idle frame goes out when the CLCW changes or the line has been quiet for the idle
interval (ICD 6).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from flight.counters import LinkCounters
from spacelink.icd import TM_VCID_BULK, TM_VCID_REALTIME, LinkParameters, line_seconds
from spacelink.tmframe import channel_frame_octets
from spacelink.tmmux import VirtualChannelMux

log = logging.getLogger(__name__)


class DownlinkTransmitter:
    """Owns the VC multiplexer; services enqueue packets, the thread writes frames."""

    def __init__(
        self,
        write: Callable[[bytes], object],
        params: LinkParameters,
        baud: int,
        clcw: Callable[[], int],
        counters: LinkCounters,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._write = write
        self._params = params
        self._baud = baud
        self._clock = clock
        self._clcw = clcw
        self._counters = counters
        self._mux = VirtualChannelMux(params, clcw)
        self._cond = threading.Condition()
        self._stopping = False
        self._clcw_changed = True
        self._sent_clcw: int | None = None  # the CLCW of the last frame built
        # The thread waits for the line to free: news of a packet or a CLCW can wait with it
        # (the next frame is built when the line frees), so it is not woken for them.
        self._waiting_for_line = False
        self._line_free_at = 0.0
        self._last_frame_at = float("-inf")
        self._idle_interval_s = params.idle_interval_s
        self._frame_seconds = line_seconds(
            channel_frame_octets(params.tm_coding, params.tm_frame_length), baud
        )
        self._thread = threading.Thread(target=self._run, name="downlink", daemon=True)
        self.error: BaseException | None = None

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._thread.join(timeout)

    def enqueue(self, vcid: int, packet: bytes) -> None:
        with self._cond:
            self._mux.push(vcid, packet)
            self._counters.tm_packets_sent += 1
            if not self._waiting_for_line:
                self._cond.notify_all()

    def clcw_changed(self) -> None:
        """The FARM state moved: the ground should see the new CLCW within a frame time (a
        frame that already carried it is enough)."""
        with self._cond:
            if self._clcw() == self._sent_clcw:
                return
            self._clcw_changed = True
            if not self._waiting_for_line:
                self._cond.notify_all()

    def set_idle_interval(self, seconds: float) -> None:
        """The longest quiet time before an idle frame (ICD 6: at most a second)."""
        with self._cond:
            self._idle_interval_s = seconds
            self._cond.notify_all()

    def drain(self, timeout: float) -> bool:
        """Wait until every queued packet has gone into a frame; False on timeout."""
        deadline = self._clock() + timeout
        with self._cond:
            while self._mux.pending_octets(TM_VCID_REALTIME) + self._mux.pending_octets(
                TM_VCID_BULK
            ):
                remaining = deadline - self._clock()
                if remaining <= 0 or self.error is not None or not self._thread.is_alive():
                    return False
                self._cond.wait(min(remaining, 0.05))
        return True

    def pending_octets(self, vcid: int) -> int:
        with self._cond:
            return self._mux.pending_octets(vcid)

    def _next_frame(self) -> bytes | None:
        """Wait until a frame is due and the line can take it; None when stopping."""
        with self._cond:
            while not self._stopping:
                now = self._clock()
                # Keep at most about one frame queued ahead of the one on the line.
                until_line = self._line_free_at - now - self._frame_seconds
                if until_line > 0:
                    self._waiting_for_line = True
                    self._cond.wait(until_line)
                    self._waiting_for_line = False
                    continue
                idle_due = self._clcw_changed or (
                    now - self._last_frame_at >= self._idle_interval_s
                )
                clcw = self._clcw()
                frame = self._mux.next_frame(idle=idle_due)
                if frame is None:
                    self._cond.wait(self._last_frame_at + self._idle_interval_s - now)
                    continue
                self._clcw_changed = False
                self._sent_clcw = clcw
                self._last_frame_at = now
                self._line_free_at = max(self._line_free_at, now) + line_seconds(
                    len(frame), self._baud
                )
                self._counters.tm_frames_sent += 1
                return frame
        return None

    def _run(self) -> None:
        try:
            while (frame := self._next_frame()) is not None:
                self._write(frame)
        except Exception as exc:  # the port failed: the main loop reports it and stops
            log.error("downlink stopped: %s", exc)
            self.error = exc
