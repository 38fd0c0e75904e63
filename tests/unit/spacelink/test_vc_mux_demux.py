"""Virtual channel multiplexing, frame synchronisation and packet extraction end to end (ICD 6)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from spacelink.icd import ATTACHED_SYNC_MARKER, TM_DATA_LENGTH, LinkParameters, TmCoding
from spacelink.randomizer import randomize
from spacelink.spacepacket import idle_packet
from spacelink.tmdemux import PacketExtractor
from spacelink.tmframe import FrameSynchronizer, TmFrame
from spacelink.tmmux import VirtualChannelMux
from tests.unit.spacelink.codec_strategies import HEAVY, MEDIUM, QUICK, chunked, space_packet

D = TM_DATA_LENGTH  # 1103 octets of packets per frame
CLCW = 0x0100_0000 | 17
IDLE_APID = 0x7FF

packet_sizes = st.one_of(
    st.integers(7, 4000),
    st.sampled_from([7, 8, 12, 13, 22, D - 7, D - 6, D - 1, D, D + 1, 2 * D]),
)
# ("push", VCID, size) or ("frame", idle flag, 0): an arbitrary interleaving of the two calls.
operations = st.lists(
    st.one_of(
        st.tuples(st.just("push"), st.integers(0, 1), packet_sizes),
        st.tuples(st.just("frame"), st.booleans(), st.just(0)),
    ),
    min_size=1,
    max_size=30,
)


def new_mux(clcw: Callable[[], int] = lambda: CLCW) -> VirtualChannelMux:
    return VirtualChannelMux(LinkParameters(tm_coding=TmCoding.NONE), clcw)


def decode(coded: bytes | None) -> TmFrame:
    assert coded is not None and coded[:4] == ATTACHED_SYNC_MARKER
    return TmFrame.unpack(randomize(coded[4:]))


def drain(mux: VirtualChannelMux) -> list[TmFrame]:
    frames = []
    while (coded := mux.next_frame()) is not None:
        frames.append(decode(coded))
    return frames


def apid_of(packet: bytes) -> int:
    return int.from_bytes(packet[:2], "big") & 0x7FF


# ---------------------------------------------------------------------------------------------
# The whole downlink


@HEAVY
@given(operations, st.data())
def test_every_packet_comes_out_once_and_in_order_per_channel(
    ops: list[tuple[str, int, int]], data: st.DataObject
) -> None:
    mux = new_mux()
    sent: dict[int, list[bytes]] = {0: [], 1: []}
    stream = bytearray()
    for n, (op, arg, size) in enumerate(ops):
        if op == "push":
            packet = space_packet(n, size, apid=n % IDLE_APID)
            mux.push(arg, packet)
            sent[arg].append(packet)
        elif (coded := mux.next_frame(idle=bool(arg))) is not None:
            stream += coded
    while (coded := mux.next_frame()) is not None:
        stream += coded

    sync, demux = FrameSynchronizer(scid=500), PacketExtractor()
    got: dict[int, list[bytes]] = {0: [], 1: [], 7: []}
    for piece in data.draw(chunked(bytes(stream))):
        for frame in sync.feed(piece):
            assert frame.ocf == CLCW
            got[frame.vcid] += demux.feed(frame)
    assert got == {0: sent[0], 1: sent[1], 7: []}
    assert demux.stats.packets == len(sent[0]) + len(sent[1])
    assert (demux.stats.frame_gaps, demux.stats.fhp_mismatches) == (0, 0)
    assert sync.stats.frames == len(stream) // (4 + 1115)
    # Every idle packet the mux made is swallowed; at most one per channel is still unfinished.
    assert mux.stats.idle_packets - 2 <= demux.stats.idle_packets <= mux.stats.idle_packets


@MEDIUM
@given(operations)
def test_priority_idle_frames_and_counters_for_any_call_sequence(
    ops: list[tuple[str, int, int]],
) -> None:
    mux = new_mux()
    demux = PacketExtractor()
    pushed = {0: 0, 1: 0}
    out = {0: 0, 1: 0}
    frames_per_vc = {0: 0, 1: 0, 7: 0}
    total = 0
    for n, (op, arg, size) in enumerate(ops):
        if op == "push":
            mux.push(arg, space_packet(n, size))
            pushed[arg] += 1
            continue
        # Ground truth from the far end: a channel is busy until all its packets came out.
        busy = [vc for vc in (0, 1) if out[vc] < pushed[vc]]
        expected = busy[0] if busy else (7 if arg else None)
        coded = mux.next_frame(idle=bool(arg))
        if expected is None:
            assert coded is None
            continue
        frame = decode(coded)
        assert frame.vcid == expected
        assert (frame.mc_count, frame.vc_count) == (total % 256, frames_per_vc[expected] % 256)
        if expected == 7:
            assert frame.fhp == 0x7FE
        else:
            out[expected] += len(demux.feed(frame))
        total += 1
        frames_per_vc[expected] += 1
        for vc in (0, 1):
            assert (mux.pending_octets(vc) == 0) == (out[vc] == pushed[vc])


def test_real_time_channel_goes_before_bulk() -> None:
    mux = new_mux()
    bulk = space_packet(1, 3 * D)
    mux.push(1, bulk)
    realtime = [space_packet(2 + n, 900) for n in range(3)]
    for packet in realtime:
        mux.push(0, packet)
    first = [decode(mux.next_frame()) for _ in range(3)]
    assert [f.vcid for f in first] == [0, 0, 0]
    mux.push(0, space_packet(9, 50))  # arrives while bulk is waiting: still goes first
    assert decode(mux.next_frame()).vcid == 0
    rest = drain(mux)
    assert {f.vcid for f in rest} == {1} and len(rest) == 3


# ---------------------------------------------------------------------------------------------
# Idle packets and idle frames


@QUICK
@given(st.lists(st.integers(7, 400), min_size=1, max_size=8).filter(lambda s: sum(s) <= D - 7))
def test_a_partly_filled_frame_is_completed_with_one_idle_packet(sizes: list[int]) -> None:
    mux = new_mux()
    packets = [space_packet(n, size) for n, size in enumerate(sizes)]
    for packet in packets:
        mux.push(0, packet)
    frame = decode(mux.next_frame())
    used = sum(sizes)
    assert (frame.vcid, frame.fhp) == (0, 0)
    assert frame.data[:used] == b"".join(packets)
    idle = frame.data[used:]
    assert apid_of(idle) == IDLE_APID
    assert int.from_bytes(idle[4:6], "big") + 7 == len(idle) == D - used  # one packet, exactly
    assert mux.next_frame() is None
    assert mux.stats.idle_packets == 1
    assert PacketExtractor().feed(frame) == packets


def test_an_exactly_filled_frame_needs_no_idle_packet() -> None:
    mux = new_mux()
    mux.push(0, space_packet(1, D))
    frame = decode(mux.next_frame())
    assert frame.data == space_packet(1, D)
    assert mux.next_frame() is None
    assert mux.stats.idle_packets == 0


@QUICK
@given(st.integers(D - 6, D - 1), st.integers(7, 3000))
def test_an_idle_packet_too_big_for_the_rest_spans_into_the_next_frame(
    size: int, next_size: int
) -> None:
    room = D - size  # 1..6 octets: too few for any idle packet
    mux = new_mux()
    first = space_packet(1, size)
    mux.push(0, first)
    f1 = decode(mux.next_frame())
    assert f1.data[:size] == first
    assert mux.pending_octets(0) == 0 and not mux.has_data()
    assert mux.next_frame() is None  # the idle remainder alone makes no frame
    idle_frame = decode(mux.next_frame(idle=True))
    assert idle_frame.vcid == 7

    bulk = space_packet(2, 100)
    mux.push(1, bulk)
    assert decode(mux.next_frame()).vcid == 1  # nor does it hold back another channel

    second = space_packet(3, next_size)
    mux.push(0, second)
    f2 = decode(mux.next_frame())
    assert (f2.vcid, f2.vc_count, f2.fhp) == (0, 1, 7 - room)
    idle = f1.data[size:] + f2.data[: f2.fhp]
    assert apid_of(idle) == IDLE_APID and int.from_bytes(idle[4:6], "big") == 0  # 7 octets
    later = drain(mux)

    demux = PacketExtractor()
    got = []
    for frame in [f1, idle_frame, f2, *later]:
        got += demux.feed(frame)
    assert got == [first, second]
    assert demux.stats.idle_packets >= 1 and demux.stats.frame_gaps == 0


def test_idle_frame_when_nothing_is_queued() -> None:
    mux = new_mux()
    assert mux.next_frame() is None
    assert mux.next_frame(idle=False) is None
    coded = mux.next_frame(idle=True)
    assert coded is not None and len(coded) == 4 + 1115
    frame = decode(coded)
    assert (frame.scid, frame.vcid, frame.fhp, frame.ocf) == (500, 7, 0x7FE, CLCW)
    assert PacketExtractor().feed(frame) == []


def test_frame_counters_wrap_modulo_256() -> None:
    mux = new_mux()
    frames = []
    sent = []
    for n in range(900):
        vc = n % 3
        if vc < 2:
            sent.append(space_packet(n, 40))
            mux.push(vc, sent[-1])
        frames.append(decode(mux.next_frame(idle=True)))
    demux = PacketExtractor()
    assert [p for frame in frames for p in demux.feed(frame)] == sent
    assert demux.stats.frame_gaps == 0  # the counters wrapped without looking like a gap
    assert [f.vcid for f in frames] == [n % 3 if n % 3 < 2 else 7 for n in range(900)]
    assert [f.mc_count for f in frames] == [n % 256 for n in range(900)]
    for vc in (0, 1, 7):
        counts = [f.vc_count for f in frames if f.vcid == vc]
        assert counts == [n % 256 for n in range(len(counts))] and len(counts) > 256


def test_every_frame_carries_the_clcw_of_its_time() -> None:
    values = iter(range(0x0100_0000, 0x0100_0010))
    mux = new_mux(lambda: next(values))
    mux.push(0, space_packet(1, 3 * D))
    ocfs = [decode(mux.next_frame()).ocf for _ in range(3)]
    ocfs.append(decode(mux.next_frame(idle=True)).ocf)
    assert ocfs == [0x0100_0000, 0x0100_0001, 0x0100_0002, 0x0100_0003]


@pytest.mark.parametrize("vcid", [2, 3, 6, 7])
def test_packets_go_only_on_channels_0_and_1(vcid: int) -> None:
    with pytest.raises(ValueError):
        new_mux().push(vcid, space_packet(1, 20))


# ---------------------------------------------------------------------------------------------
# PacketExtractor: lost frames and first header pointers


def frames_for(sizes: list[int], vcid: int = 1) -> tuple[list[bytes], list[TmFrame]]:
    mux = new_mux()
    packets = [space_packet(n, size) for n, size in enumerate(sizes)]
    for packet in packets:
        mux.push(vcid, packet)
    return packets, drain(mux)


@MEDIUM
@given(st.lists(packet_sizes, min_size=2, max_size=12), st.data())
def test_a_lost_frame_drops_only_the_packets_it_carried_part_of(
    sizes: list[int], data: st.DataObject
) -> None:
    packets, frames = frames_for(sizes)
    assume(len(frames) >= 3)
    lost = data.draw(st.integers(1, len(frames) - 2))
    demux = PacketExtractor()
    got = []
    for n, frame in enumerate(frames):
        if n != lost:
            got += demux.feed(frame)
    # The channel carries the packets back to back: frame k holds octets [k*D, (k+1)*D).
    lo, hi = lost * D, (lost + 1) * D
    starts = [sum(sizes[:n]) for n in range(len(sizes))]
    ends = [s + size for s, size in zip(starts, sizes, strict=True)]
    untouched = [p for p, s, e in zip(packets, starts, ends, strict=True) if e <= lo or s >= hi]
    assert got == untouched
    assert demux.stats.frame_gaps == 1
    spanning_into_the_gap = any(s < lo < e for s, e in zip(starts, ends, strict=True))
    assert demux.stats.packets_lost_in_gaps == int(spanning_into_the_gap)


def test_a_lost_frame_costs_the_packet_spanning_it() -> None:
    packets, frames = frames_for([600, 1500, 600, 600, 600])
    # frame 0: P0 + 503 of P1 | frame 1: 997 of P1, P2... | frame 2: ...
    demux = PacketExtractor()
    got = demux.feed(frames[0]) + demux.feed(frames[2]) + demux.feed(frames[3])
    assert packets[0] in got and packets[1] not in got and packets[-1] in got
    assert demux.stats.packets_lost_in_gaps == 1


@MEDIUM
@given(
    st.integers(7, D - 13),
    st.integers(0, D - 2),
    st.lists(st.integers(7, 3000), min_size=1, max_size=4),
    st.data(),
)
def test_first_header_pointer_disagreeing_with_the_partial_packet_forces_resync(
    first: int, span: int, rest: list[int], data: st.DataObject
) -> None:
    # P1 starts in frame 0 (header complete there) and ends `span + 1` octets into frame 1.
    second = (D - first) + span + 1
    packets, frames = frames_for([first, second, *rest])
    assert frames[1].fhp == span + 1
    # Its length field is damaged (the FECF still matches) so it claims to end elsewhere,
    # but still beyond frame 0.
    delta = data.draw(st.integers(-span, 60).filter(lambda d: d != 0))
    field = first + 4
    raw = bytearray(frames[0].data)
    raw[field : field + 2] = (second + delta - 7).to_bytes(2, "big")
    frames[0] = dataclasses.replace(frames[0], data=bytes(raw))
    demux = PacketExtractor()
    got = []
    for frame in frames:
        got += demux.feed(frame)
    assert got == [packets[0], *packets[2:]]
    assert demux.stats.fhp_mismatches == 1


def test_no_packet_start_where_the_partial_packet_ends_forces_resync() -> None:
    packets, frames = frames_for([100, 3000, 500])
    assert frames[1].fhp == 0x7FF  # P1 fills frame 1 and ends in frame 2
    raw = bytearray(frames[0].data)
    raw[104:106] = (2000 - 7).to_bytes(2, "big")  # P1 now claims to end inside frame 1
    frames[0] = dataclasses.replace(frames[0], data=bytes(raw))
    demux = PacketExtractor()
    got = [p for frame in frames for p in demux.feed(frame)]
    assert got == [packets[0], packets[2]]
    assert demux.stats.fhp_mismatches == 1


def test_extraction_starts_at_the_first_header_pointer() -> None:
    packets, frames = frames_for([1500, 200, 200])
    demux = PacketExtractor()
    assert demux.feed(frames[1]) == packets[1:]  # joined mid-packet: P0 is skipped
    assert demux.stats.octets_skipped == frames[1].fhp


def test_a_first_header_pointer_beyond_the_data_field_starts_no_packet() -> None:
    packets, frames = frames_for([300, 300])
    bogus = dataclasses.replace(frames[0], fhp=D + 100, vc_count=frames[0].vc_count - 1)
    demux = PacketExtractor()
    assert demux.feed(bogus) == []
    assert (demux.stats.octets_skipped, demux.stats.fhp_mismatches) == (D, 0)
    assert demux.feed(frames[0]) == packets


def test_an_idle_only_frame_on_a_data_channel_is_not_a_gap() -> None:
    """An independent sender may fill a data VC with an idle-only frame (FHP 7FE)."""
    p, q = space_packet(1, D), space_packet(2, 50)
    frames = [
        TmFrame(500, 0, 0, 0, 0, p, CLCW),
        TmFrame(500, 0, 1, 1, 0x7FE, b"\x55" * D, CLCW),  # ICD 6: 7FE = idle data only
        TmFrame(500, 0, 2, 2, 0, q + idle_packet(D - 50), CLCW),
    ]
    demux = PacketExtractor()
    got = [packet for frame in frames for packet in demux.feed(frame)]
    assert got == [p, q]
    assert demux.stats.frame_gaps == 0
