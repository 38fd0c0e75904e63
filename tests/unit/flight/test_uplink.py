"""The uplink receive chain counts every discarded unit by reason (ICD 2-5)."""

from __future__ import annotations

from flight.counters import LinkCounters
from flight.uplink import UplinkReceiver
from spacelink.cltu import encode_cltu
from spacelink.cop1 import Farm1
from spacelink.errors import DiscardReason
from spacelink.icd import LinkParameters
from spacelink.spacepacket import PusTc
from spacelink.tcframe import TcFrame

PARAMS = LinkParameters()


def receiver() -> UplinkReceiver:
    return UplinkReceiver(PARAMS, Farm1(PARAMS.tc_vcid), LinkCounters())


def cltu(seq: int, data: bytes, *, scid: int = PARAMS.scid, vcid: int = PARAMS.tc_vcid) -> bytes:
    return encode_cltu(TcFrame(scid, vcid, seq, data).pack())


def packet(n: int, size: int = 0) -> bytes:
    return PusTc(PARAMS.apid, 17, 1, bytes(size), seq_count=n).pack()


def test_frames_with_several_packets_come_out_in_order() -> None:
    rx = receiver()
    stream = cltu(0, packet(1) + packet(2, 30)) + cltu(1, packet(3))
    assert rx.feed(stream) == [packet(1), packet(2, 30), packet(3)]
    assert rx.counters.frames_accepted == 2


def test_octets_arriving_one_at_a_time() -> None:
    rx = receiver()
    out = []
    for octet in b"\x00\xeb" + cltu(0, packet(1)) + b"\x90\x00":
        out += rx.feed(bytes([octet]))
    assert out == [packet(1)]


def test_each_bad_frame_is_counted_by_reason() -> None:
    rx = receiver()
    bad_fecf = bytearray(TcFrame(PARAMS.scid, 0, 0, packet(1)).pack())
    bad_fecf[-1] ^= 0xFF
    stream = (
        cltu(0, packet(1), scid=PARAMS.scid + 1)
        + cltu(0, packet(1), vcid=3)
        + encode_cltu(bytes(bad_fecf))
        + cltu(5, packet(1))  # N(S) ahead of V(R) = 0
        + cltu(0, packet(9))
    )
    assert rx.feed(stream) == [packet(9)]
    d = rx.counters.discarded
    assert d[DiscardReason.FRAME_SCID] == 1
    assert d[DiscardReason.FRAME_VCID] == 1
    assert d[DiscardReason.FRAME_FECF] == 1
    assert d[DiscardReason.FARM_RETRANSMIT] == 1


def test_single_bit_errors_are_corrected_double_errors_discard_the_frame() -> None:
    rx = receiver()
    one = bytearray(cltu(0, packet(1)))
    one[5] ^= 0x10
    two = bytearray(cltu(1, packet(2)))
    two[5] ^= 0x11
    assert rx.feed(bytes(one) + bytes(two) + cltu(1, packet(3))) == [packet(1), packet(3)]
    assert rx.counters.cltu.corrected_codeblocks == 1
    assert rx.counters.cltu.uncorrectable_codeblocks == 1
    assert rx.counters.discarded[DiscardReason.CODEBLOCK_UNCORRECTABLE] == 1


def test_garbage_between_cltus_is_counted_not_fatal() -> None:
    rx = receiver()
    junk = bytes(range(256)) * 4
    assert rx.feed(junk + cltu(0, packet(1)) + junk) == [packet(1)]
    assert rx.counters.cltu.octets_outside_cltu >= len(junk)


def test_a_packet_running_past_its_frame_is_passed_on_truncated() -> None:
    rx = receiver()
    whole = packet(1, 40)
    assert rx.feed(cltu(0, whole[:-10])) == [whole[:-10]]
    rx2 = receiver()
    assert rx2.feed(cltu(0, packet(1) + b"\x18\x64\xc0")) == [packet(1)]
    assert rx2.counters.discarded[DiscardReason.PACKET_TOO_SHORT] == 1


def test_the_receiver_awaits_the_rest_of_a_frame_by_its_length() -> None:
    rx = receiver()
    stream = cltu(0, packet(1, 300))
    assert rx.octets_awaited() == 0
    assert rx.feed(stream[:100]) == []
    assert rx.octets_awaited() == len(stream) - 100
    assert rx.feed(stream[100:]) == [packet(1, 300)]
    assert rx.octets_awaited() == 0
