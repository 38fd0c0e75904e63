"""Reassembles space packets from TM frames per virtual channel (ICD 6): the ground's demux.

A gap in a channel's frame count (a frame lost to a bad FECF) drops the packet that spanned
it, and the extractor resumes at the next frame's first header pointer. A first header pointer
that disagrees with the packet being reassembled also forces a resynchronisation, so a
corrupted length field cannot swallow the stream.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from spacelink.icd import IDLE_APID, TM_VCID_IDLE
from spacelink.spacepacket import (
    PRIMARY_HEADER_LENGTH,
    apid_from_header,
    packet_length_from_header,
)
from spacelink.tmframe import FHP_IDLE_ONLY, FHP_NO_PACKET_START, TmFrame


@dataclass(slots=True)
class DemuxStats:
    packets: int = 0
    idle_packets: int = 0
    frame_gaps: int = 0
    packets_lost_in_gaps: int = 0
    fhp_mismatches: int = 0
    octets_skipped: int = 0


@dataclass(slots=True)
class _ChannelState:
    buffer: bytearray = field(default_factory=bytearray)
    next_count: int | None = None
    synced: bool = False


@dataclass(slots=True)
class PacketExtractor:
    """Feed it checked TM frames in arrival order; it returns the whole packets they complete."""

    stats: DemuxStats = field(default_factory=DemuxStats)
    _channels: dict[int, _ChannelState] = field(default_factory=dict)

    def feed(self, frame: TmFrame) -> list[bytes]:
        if frame.vcid == TM_VCID_IDLE:
            return []
        state = self._channels.setdefault(frame.vcid, _ChannelState())
        if state.next_count is not None and frame.vc_count != state.next_count:
            self.stats.frame_gaps += 1
            if state.buffer:
                self.stats.packets_lost_in_gaps += 1
            self._desync(state)
        state.next_count = (frame.vc_count + 1) & 0xFF
        if frame.fhp == FHP_IDLE_ONLY:
            # Idle data only: it counts in the channel's sequence but carries no packet octets,
            # so a packet in progress continues in the channel's next frame.
            return []

        data = frame.data
        if state.synced:
            remaining = self._remaining_of_partial(state.buffer)
            if (
                frame.fhp != FHP_NO_PACKET_START
                and remaining is not None
                and remaining != frame.fhp
            ):
                self.stats.fhp_mismatches += 1
                self._desync(state)
            elif (
                frame.fhp == FHP_NO_PACKET_START and remaining is not None and remaining < len(data)
            ):
                # The partial packet ends inside this frame, yet the frame says no packet starts.
                self.stats.fhp_mismatches += 1
                self._desync(state)
        if not state.synced:
            if frame.fhp == FHP_NO_PACKET_START or frame.fhp >= len(data):
                self.stats.octets_skipped += len(data)
                return []
            self.stats.octets_skipped += frame.fhp
            data = data[frame.fhp :]
            state.synced = True
        state.buffer += data
        return self._extract(state)

    @staticmethod
    def _remaining_of_partial(buffer: bytearray) -> int | None:
        """Octets still missing from the packet at the head of the buffer, if its header is in."""
        if not buffer:
            return 0
        if len(buffer) < PRIMARY_HEADER_LENGTH:
            return None
        return packet_length_from_header(buffer) - len(buffer)

    def _desync(self, state: _ChannelState) -> None:
        self.stats.octets_skipped += len(state.buffer)
        state.buffer.clear()
        state.synced = False

    def _extract(self, state: _ChannelState) -> list[bytes]:
        buf = state.buffer
        packets: list[bytes] = []
        start = 0
        while len(buf) - start >= PRIMARY_HEADER_LENGTH:
            length = packet_length_from_header(buf, start)
            if len(buf) - start < length:
                break
            if apid_from_header(buf, start) == IDLE_APID:
                self.stats.idle_packets += 1
            else:
                packets.append(bytes(buf[start : start + length]))
                self.stats.packets += 1
            start += length
        del buf[:start]
        return packets
