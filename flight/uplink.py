"""Uplink receive chain: octets -> CLTUs -> TC frames -> security processing (when the uplink is
authenticated, docs/security.md) -> FARM-1 -> space packets (ICD 2-5)."""

from __future__ import annotations

import logging
from collections.abc import Callable

from flight.counters import LinkCounters
from spacelink.cltu import CltuDecoder, CltuEnd
from spacelink.cop1 import Farm1
from spacelink.errors import DiscardReason, FrameError
from spacelink.icd import TC_HEADER_LENGTH, LinkParameters
from spacelink.spacepacket import PRIMARY_HEADER_LENGTH, packet_length_from_header
from spacelink.tcframe import FrameType, TcFrame, frame_length_from_header

log = logging.getLogger(__name__)

# A frame's security processing: the frame and its primary header as received in, the frame
# with its plain data field out, or None when it is refused (counted and reported by it).
Authenticate = Callable[[TcFrame, bytes], TcFrame | None]


class UplinkReceiver:
    """Turns received octets into the TC packets FARM-1 lets through, counting every discard."""

    def __init__(
        self,
        params: LinkParameters,
        farm: Farm1,
        counters: LinkCounters,
        authenticate: Authenticate | None = None,
    ) -> None:
        """`authenticate`: every frame's security processing, None on an unauthenticated link."""
        self._params = params
        self._authenticate = authenticate
        self.farm = farm
        self.counters = counters
        self._decoder = CltuDecoder(stats=counters.cltu)
        self.lockout_ns: int | None = None  # N(S) of the frame that last sent FARM-1 to Lockout

    def feed(self, data: bytes, *, buffer_available: bool = True) -> list[bytes]:
        """Packets (raw, unchecked beyond the frame) in the order they were accepted."""
        self.counters.octets_received += len(data)
        packets: list[bytes] = []
        for cltu in self._decoder.feed(data):
            frame = self._frame(cltu.data, cut=cltu.end is CltuEnd.UNCORRECTABLE)
            if frame is not None and self._authenticate is not None:
                frame = self._authenticate(frame, cltu.data[:TC_HEADER_LENGTH])
            if frame is None:
                continue
            verdict = self.farm.receive(frame, buffer_available=buffer_available)
            if not verdict.accepted:
                assert verdict.reason is not None
                self.counters.discard(verdict.reason)
                if verdict.reason is DiscardReason.FARM_LOCKOUT:
                    self.lockout_ns = frame.seq
                log.debug("frame N(S)=%d discarded: %s", frame.seq, verdict.reason.value)
                continue
            self.counters.frames_accepted += 1
            if frame.frame_type is FrameType.BC:
                self.counters.control_commands += 1
                log.info("COP-1 control command %s: FARM %s", verdict.control, self.farm.clcw())
                continue
            packets.extend(self._packets(frame.data))
        return packets

    def octets_awaited(self) -> int:
        """Octets the CLTU being received still needs by its frame's length field (0 between
        CLTUs)."""
        return self._decoder.octets_awaited(frame_length_from_header)

    def _frame(self, data: bytes, *, cut: bool) -> TcFrame | None:
        try:
            frame = TcFrame.unpack(data)
        except FrameError as exc:
            # A frame cut short by an uncorrectable codeblock is lost to that codeblock, which
            # is what the operator needs to see; its length or FECF check only confirms it.
            self.counters.discard(DiscardReason.CODEBLOCK_UNCORRECTABLE if cut else exc.reason)
            log.debug("TC frame discarded: %s", exc)
            return None
        if frame.scid != self._params.scid:
            self.counters.discard(DiscardReason.FRAME_SCID)
            return None
        if frame.vcid != self._params.tc_vcid:
            self.counters.discard(DiscardReason.FRAME_VCID)
            return None
        return frame

    def _packets(self, data: bytes) -> list[bytes]:
        # A frame holds whole packets back to back. A packet whose declared length runs past the
        # frame is still passed on (truncated), so that the router can answer it with a
        # bad-length failure report; nothing after it can be delimited.
        out: list[bytes] = []
        pos = 0
        while pos < len(data):
            if len(data) - pos < PRIMARY_HEADER_LENGTH:
                self.counters.discard(DiscardReason.PACKET_TOO_SHORT)
                break
            end = pos + packet_length_from_header(data, pos)
            out.append(data[pos:end])
            pos = end
        return out
