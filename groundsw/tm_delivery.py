"""Where the downlink goes once frames are synchronised: every frame to the frame sinks, every
TM packet decoded and handed to the packet sinks, then verification reports to the records of
their commands and all other packets to the listeners.
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Protocol

from groundsw.payload_link import CommandEvent, EventKind, ReceivedTm, TmFilter, TmListener
from spacelink.errors import PacketError
from spacelink.pus import VERIFICATION_SERVICE, VerificationReport
from spacelink.spacepacket import PusTm, RequestId
from spacelink.tmframe import TmFrame

log = logging.getLogger(__name__)
# Every packet received: what `groundsw -v` shows (groundsw.session logs the frames).
traffic = logging.getLogger("groundsw.traffic")

PacketSink = Callable[[PusTm, bytes, float], None]
FrameSink = Callable[[TmFrame, float], None]


class PacketCounts(Protocol):
    """The counters a delivery keeps up to date (the session's statistics)."""

    tm_packets: int
    tm_packet_errors: int


class TmDelivery:
    """The receivers of the downlink, and the handing of each frame and packet to them."""

    def __init__(
        self,
        lock: threading.RLock,
        counts: PacketCounts,
        arrivals: itertools.count[int],
        on_report: Callable[[RequestId, CommandEvent], None],
    ) -> None:
        """`lock` and `arrivals` are the session's: one order for every event the link tells,
        and receivers changed only between frames. `on_report` takes a verification report's
        event for the record of its command."""
        self._lock = lock
        self._counts = counts
        self._arrivals = arrivals
        self._on_report = on_report
        self._listeners: dict[object, tuple[TmListener, TmFilter | None]] = {}
        self._packet_sinks: list[PacketSink] = []
        self._frame_sinks: list[FrameSink] = []

    def subscribe(self, accept: TmFilter | None = None) -> queue.Queue[ReceivedTm]:
        """A queue that receives every TM packet (other than verification reports) from now on,
        or those `accept` takes."""
        q: queue.Queue[ReceivedTm] = queue.Queue()
        self.listen(q.put, accept, key=q)
        return q

    def listen(
        self, deliver: TmListener, accept: TmFilter | None = None, key: object = None
    ) -> object:
        """Call `deliver` (on the receiving thread: quick) with every TM packet other than
        verification reports, or those `accept` takes; the handle `unsubscribe` takes."""
        handle = key if key is not None else object()
        with self._lock:
            self._listeners[handle] = (deliver, accept)
        return handle

    def unsubscribe(self, handle: object) -> None:
        """Stop a subscription (its queue) or a listener (its handle)."""
        with self._lock:
            self._listeners.pop(handle, None)

    def add_packet_sink(self, sink: PacketSink) -> None:
        """Call `sink(tm, raw, unix_time)` for every TM packet received, reports included.

        It runs on the receiving thread: it must be quick (the archive batches its writes).
        """
        with self._lock:
            self._packet_sinks.append(sink)

    def add_frame_sink(self, sink: FrameSink) -> None:
        """Call `sink(frame, unix_time)` for every TM frame received (on the receiving thread:
        quick)."""
        with self._lock:
            self._frame_sinks.append(sink)

    def frame(self, frame: TmFrame) -> None:
        """Hand a TM frame to the frame sinks (the caller holds the session's lock)."""
        if not self._frame_sinks:
            return
        wall = time.time()
        for frame_sink in self._frame_sinks:
            try:
                frame_sink(frame, wall)
            except Exception:  # a failing archive must not take the link down
                log.exception("frame sink failed")

    def packet(self, raw: bytes, now: float, vcid: int) -> None:
        """Decode one TM packet that arrived at `now` on `vcid` and hand it on (the caller holds
        the session's lock)."""
        try:
            tm = PusTm.unpack(raw)
        except PacketError as exc:
            self._counts.tm_packet_errors += 1
            log.debug("TM packet discarded: %s", exc)
            return
        self._counts.tm_packets += 1
        if traffic.isEnabledFor(logging.DEBUG):
            traffic.debug(
                "TM[%d,%d] seq %d for %d, %d octets",
                tm.service, tm.subtype, tm.seq_count, tm.destination_id, len(raw),
            )  # fmt: skip
        if self._packet_sinks:
            wall = time.time()
            for sink in self._packet_sinks:
                try:
                    sink(tm, raw, wall)
                except Exception:  # a failing archive must not take the link down
                    log.exception("packet sink failed")
        if tm.service == VERIFICATION_SERVICE:
            try:
                report = VerificationReport.unpack(tm.subtype, tm.source_data)
            except PacketError as exc:
                self._counts.tm_packet_errors += 1
                log.debug("verification report discarded: %s", exc)
                return
            self._on_report(
                report.request_id,
                CommandEvent(EventKind.REPORT, now, next(self._arrivals), report),
            )
            return
        received = ReceivedTm(tm, raw, now, next(self._arrivals), vcid)
        for deliver, accept in list(self._listeners.values()):
            if accept is None or accept(tm):
                deliver(received)
