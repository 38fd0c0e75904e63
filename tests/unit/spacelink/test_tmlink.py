"""The downlink: TM frames, sync-marker search, VC multiplexing and packet reassembly (ICD 6)."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from spacelink.crc import crc16_ccitt
from spacelink.icd import ATTACHED_SYNC_MARKER, TM_DATA_LENGTH, LinkParameters
from spacelink.randomizer import randomize
from spacelink.spacepacket import PusTm, idle_packet
from spacelink.tmdemux import PacketExtractor
from spacelink.tmframe import (
    FHP_IDLE_ONLY,
    FHP_NO_PACKET_START,
    FrameSynchronizer,
    TmFrame,
    encode_channel_frame,
)
from spacelink.tmmux import VirtualChannelMux
from tests.unit.spacelink.strategies import chunked

CLCW = 0x01000000 | 42


def mux() -> VirtualChannelMux:
    return VirtualChannelMux(LinkParameters(), lambda: CLCW)


def drain(m: VirtualChannelMux) -> bytes:
    out = b""
    while (frame := m.next_frame()) is not None:
        out += frame
    return out


def packet(n: int, size: int) -> bytes:
    """A numbered TM packet of exactly `size` octets (22 of them headers and PEC)."""
    return PusTm(100, 128, 1, n.to_bytes(4, "big") + bytes(size - 26)).pack()


@given(
    st.builds(
        TmFrame,
        scid=st.integers(0, 0x3FF),
        vcid=st.integers(0, 7),
        mc_count=st.integers(0, 255),
        vc_count=st.integers(0, 255),
        fhp=st.integers(0, 0x7FF),
        data=st.binary(min_size=TM_DATA_LENGTH, max_size=TM_DATA_LENGTH),
        ocf=st.integers(0, 2**32 - 1),
    )
)
def test_tm_frame_round_trip(frame: TmFrame) -> None:
    packed = frame.pack()
    assert len(packed) == 1115 and crc16_ccitt(packed) == 0
    assert TmFrame.unpack(packed) == frame


def test_tm_frame_header_layout() -> None:
    packed = TmFrame(500, 1, 2, 3, 0x7FF, bytes(TM_DATA_LENGTH), CLCW).pack()
    # 00 0111110100 001 1: SCID 500, VC 1, OCF; MC 2; VC 3; 00011 111 11111111: FHP 7FF
    assert packed[:6] == bytes.fromhex("1f43 02 03 1fff")
    assert packed[-6:-2] == CLCW.to_bytes(4, "big")


def test_channel_frame_is_marker_plus_randomized_frame() -> None:
    frame = TmFrame(500, 0, 0, 0, 0, bytes(TM_DATA_LENGTH), 0).pack()
    line = encode_channel_frame(frame)
    assert line[:4] == ATTACHED_SYNC_MARKER and randomize(line[4:]) == frame


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 1), st.integers(26, 4000)), min_size=1, max_size=25),
    st.data(),
)
def test_any_packets_on_two_channels_come_out_once_in_order(
    plan: list[tuple[int, int]], data: st.DataObject
) -> None:
    m = mux()
    sent: dict[int, list[bytes]] = {0: [], 1: []}
    for n, (vcid, size) in enumerate(plan):
        p = packet(n, size)
        sent[vcid].append(p)
        m.push(vcid, p)
    garbage = data.draw(st.binary(max_size=50))
    stream = garbage + drain(m) + data.draw(st.binary(max_size=50))
    sync, demux = FrameSynchronizer(scid=500), PacketExtractor()
    got: dict[int, list[bytes]] = {0: [], 1: []}
    for piece in data.draw(chunked(stream)):
        for frame in sync.feed(piece):
            got[frame.vcid] += demux.feed(frame)
    assert got == sent
    assert sync.stats.fecf_errors == 0


def test_realtime_channel_goes_first() -> None:
    m = mux()
    m.push(1, packet(0, 3000))
    m.push(0, packet(1, 100))
    sync = FrameSynchronizer()
    first = sync.feed(m.next_frame() or b"")[0]
    assert first.vcid == 0
    m.push(0, packet(2, 100))  # arrives while bulk is pending: still next
    assert sync.feed(m.next_frame() or b"")[0].vcid == 0
    assert sync.feed(m.next_frame() or b"")[0].vcid == 1


def test_partial_frame_is_completed_with_one_idle_packet() -> None:
    m = mux()
    m.push(0, packet(0, 100))
    (frame,) = FrameSynchronizer().feed(m.next_frame() or b"")
    assert frame.fhp == 0
    idle = frame.data[100:]
    assert idle == idle_packet(TM_DATA_LENGTH - 100)
    assert m.next_frame() is None


def test_idle_remainder_spans_into_the_next_frame_without_forcing_one() -> None:
    m = mux()
    m.push(0, packet(0, TM_DATA_LENGTH - 3))  # leaves 3 octets: too few for an idle packet
    sync, demux = FrameSynchronizer(), PacketExtractor()
    (f1,) = sync.feed(m.next_frame() or b"")
    assert m.next_frame() is None  # the idle remainder alone does not make a frame
    m.push(0, packet(1, 50))
    (f2,) = sync.feed(m.next_frame() or b"")
    assert f2.fhp == 4  # 7-octet idle packet: 3 octets in f1, 4 here
    assert demux.feed(f1) + demux.feed(f2) == [packet(0, TM_DATA_LENGTH - 3), packet(1, 50)]
    assert demux.stats.idle_packets == 2


def test_idle_frame_on_vc7() -> None:
    m = mux()
    assert m.next_frame() is None
    (frame,) = FrameSynchronizer().feed(m.next_frame(idle=True) or b"")
    assert (frame.vcid, frame.fhp, frame.ocf) == (7, FHP_IDLE_ONLY, CLCW)
    assert PacketExtractor().feed(frame) == []


def test_frame_counters_wrap() -> None:
    m = mux()
    sync = FrameSynchronizer()
    frames = []
    for n in range(300):
        m.push(n % 2, packet(n, 30))
        frames += sync.feed(m.next_frame() or b"")
    assert [f.mc_count for f in frames] == [n % 256 for n in range(300)]
    assert [f.vc_count for f in frames if f.vcid == 1] == [n % 256 for n in range(150)]


def frames_for(sizes: list[int], vcid: int = 1) -> tuple[list[bytes], list[bytes]]:
    m = mux()
    packets = [packet(n, s) for n, s in enumerate(sizes)]
    for p in packets:
        m.push(vcid, p)
    line = []
    while (f := m.next_frame()) is not None:
        line.append(f)
    return packets, line


def test_corrupt_frame_is_counted_and_the_stream_recovers() -> None:
    packets, line = frames_for([500] * 12)
    bad = bytearray(line[2])
    bad[300] ^= 0x04
    line[2] = bytes(bad)
    sync, demux = FrameSynchronizer(), PacketExtractor()
    got = []
    for frame in sync.feed(b"".join(line)):
        got += demux.feed(frame)
    assert sync.stats.fecf_errors == 1 and sync.stats.frames == len(line) - 1
    assert demux.stats.frame_gaps == 1 and demux.stats.packets_lost_in_gaps == 1
    lost = [p for p in packets if p not in got]
    assert 1 <= len(lost) <= 3 and got == [p for p in packets if p in got]


def test_marker_with_bit_errors_is_tolerated_while_locked() -> None:
    _, line = frames_for([500] * 14)
    hit = bytearray(line[3])
    hit[0] ^= 0x81  # two bit errors in the sync marker
    line[3] = bytes(hit)
    sync = FrameSynchronizer()
    assert len(sync.feed(b"".join(line))) == len(line)
    assert sync.stats.markers_with_errors == 1


def test_garbage_between_frames_is_skipped_and_counted() -> None:
    _, line = frames_for([500] * 8)
    junk = random.Random(7).randbytes(777).replace(ATTACHED_SYNC_MARKER, b"")
    sync = FrameSynchronizer()
    frames = sync.feed(line[0] + junk + line[1] + line[2])
    assert len(frames) == 3 and sync.stats.octets_skipped >= len(junk)


def test_lost_frame_drops_only_the_packet_spanning_it() -> None:
    packets, line = frames_for([1500] * 6)
    sync, demux = FrameSynchronizer(), PacketExtractor()
    got = []
    for n, frame in enumerate(sync.feed(b"".join(line))):
        if n != 3:
            got += demux.feed(frame)
    assert packets[0] in got and packets[-1] in got
    assert demux.stats.frame_gaps == 1 and len(got) >= len(packets) - 2


def test_first_header_pointer_disagreement_forces_resync() -> None:
    packets, line = frames_for([800, 800, 800])
    sync = FrameSynchronizer()
    frames = sync.feed(b"".join(line))
    lying = TmFrame(
        frames[1].scid,
        frames[1].vcid,
        frames[1].mc_count,
        frames[1].vc_count,
        frames[1].fhp + 5,
        frames[1].data,
        frames[1].ocf,
    )
    demux = PacketExtractor()
    got = demux.feed(frames[0]) + demux.feed(lying) + demux.feed(frames[2])
    assert demux.stats.fhp_mismatches == 1
    assert packets[0] not in got or packets[1] not in got


def test_no_packet_start_frame_while_unsynced_is_skipped() -> None:
    _, line = frames_for([3000])
    frames = FrameSynchronizer().feed(b"".join(line))
    assert frames[1].fhp == FHP_NO_PACKET_START
    demux = PacketExtractor()
    assert demux.feed(frames[1]) == [] and demux.feed(frames[2]) == []
