"""Packs TM packets into frames per virtual channel (ICD 6): the payload's downlink framer.

Packets continue from one frame to the next of the same virtual channel; the first header
pointer marks where the first packet starts in each frame. A frame that must go out before it
is full is completed with one idle packet. VC 0 (real-time) always goes before VC 1 (bulk).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from spacelink.icd import (
    TM_VCID_BULK,
    TM_VCID_IDLE,
    TM_VCID_REALTIME,
    LinkParameters,
)
from spacelink.spacepacket import PRIMARY_HEADER_LENGTH, idle_packet
from spacelink.tmframe import (
    FHP_IDLE_ONLY,
    FHP_NO_PACKET_START,
    TmFrame,
    encode_channel_frame,
)

MIN_IDLE_PACKET = PRIMARY_HEADER_LENGTH + 1
IDLE_DATA_OCTET = 0x55


@dataclass(slots=True)
class _ChannelQueue:
    packets: deque[bytes] = field(default_factory=deque)
    idle: deque[bool] = field(default_factory=deque)  # parallel to packets
    offset: int = 0  # octets of packets[0] already sent
    octets: int = 0  # octets of real packets still to send (an idle remainder is not due)
    frame_count: int = 0


@dataclass(slots=True)
class MuxStats:
    frames: dict[int, int] = field(default_factory=dict)
    packets: int = 0
    idle_packets: int = 0


class VirtualChannelMux:
    """Queues packets per virtual channel and builds the next frame for the line on demand."""

    PRIORITY = (TM_VCID_REALTIME, TM_VCID_BULK)

    def __init__(self, params: LinkParameters, clcw: Callable[[], int]) -> None:
        self._params = params
        self._clcw = clcw
        self._data_length = params.tm_data_length
        self._channels: dict[int, _ChannelQueue] = {
            vcid: _ChannelQueue() for vcid in (*self.PRIORITY, TM_VCID_IDLE)
        }
        self._mc_count = 0
        self.stats = MuxStats()

    def push(self, vcid: int, packet: bytes) -> None:
        """Queue one whole packet on a data virtual channel (0 or 1)."""
        if vcid not in self.PRIORITY:
            raise ValueError(f"packets go on VC 0 or 1, not {vcid}")
        channel = self._channels[vcid]
        channel.packets.append(packet)
        channel.idle.append(False)
        channel.octets += len(packet)
        self.stats.packets += 1

    def pending_octets(self, vcid: int) -> int:
        return self._channels[vcid].octets

    def has_data(self) -> bool:
        return any(self._channels[v].octets for v in self.PRIORITY)

    def next_frame(self, *, idle: bool = False) -> bytes | None:
        """The line octets of the next frame: data first by priority, an idle frame if `idle`."""
        for vcid in self.PRIORITY:
            if self._channels[vcid].octets:
                return encode_channel_frame(self._data_frame(vcid).pack(), self._params.tm_coding)
        if idle:
            return encode_channel_frame(self._idle_frame().pack(), self._params.tm_coding)
        return None

    def _data_frame(self, vcid: int) -> TmFrame:
        channel = self._channels[vcid]
        room = self._data_length
        data = bytearray()
        fhp = FHP_NO_PACKET_START
        while len(data) < room:
            if not channel.packets:
                self._queue_idle_fill(channel, room - len(data))
            packet = channel.packets[0]
            if channel.offset == 0 and fhp == FHP_NO_PACKET_START:
                fhp = len(data)
            take = min(len(packet) - channel.offset, room - len(data))
            data += packet[channel.offset : channel.offset + take]
            channel.offset += take
            if not channel.idle[0]:
                channel.octets -= take
            if channel.offset == len(packet):
                channel.packets.popleft()
                channel.idle.popleft()
                channel.offset = 0
        return self._frame(vcid, fhp, bytes(data))

    def _queue_idle_fill(self, channel: _ChannelQueue, room: int) -> None:
        # One idle packet completes the frame (ICD 6). When fewer than 7 octets are left it
        # cannot fit, so it starts here and ends in the channel's next frame, as 132.0-B allows.
        channel.packets.append(idle_packet(max(room, MIN_IDLE_PACKET)))
        channel.idle.append(True)
        self.stats.idle_packets += 1

    def _idle_frame(self) -> TmFrame:
        return self._frame(
            TM_VCID_IDLE, FHP_IDLE_ONLY, bytes([IDLE_DATA_OCTET]) * self._data_length
        )

    def _frame(self, vcid: int, fhp: int, data: bytes) -> TmFrame:
        channel = self._channels[vcid]
        frame = TmFrame(
            scid=self._params.scid,
            vcid=vcid,
            mc_count=self._mc_count,
            vc_count=channel.frame_count,
            fhp=fhp,
            data=data,
            ocf=self._clcw(),
        )
        self._mc_count = (self._mc_count + 1) & 0xFF
        channel.frame_count = (channel.frame_count + 1) & 0xFF
        self.stats.frames[vcid] = self.stats.frames.get(vcid, 0) + 1
        return frame
