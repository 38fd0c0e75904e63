"""Gap finding (groundsw.gaps): sequence count jumps and restarts in the real-time packets, and
what of a gap is still missing once packets have been retrieved."""

from __future__ import annotations

from groundsw.gaps import (
    MODULUS,
    Gap,
    GapDetector,
    Hole,
    PacketMark,
    holes,
    is_filled,
    retrieval_range,
)

APID = 100
T0 = 1_795_600_800.0


def mark(seq: int, t: float, started: bool = False) -> PacketMark:
    return PacketMark(APID, seq % MODULUS, T0 + t, started)


def feed(detector: GapDetector, marks: list[PacketMark]) -> list[Gap]:
    return [gap for m in marks if (gap := detector.observe(m)) is not None]


# -- finding gaps -------------------------------------------------------------------------------


def test_a_stream_that_follows_has_no_gap_even_across_the_wrap() -> None:
    stream = [mark(16380 + i, i) for i in range(8)]  # 16380 .. 16383, 0 .. 3
    assert feed(GapDetector(), stream) == []


def test_a_jump_is_a_gap_of_the_packets_between_with_the_times_either_side() -> None:
    (gap,) = feed(GapDetector(), [mark(10, 0), mark(11, 1), mark(15, 5.5), mark(16, 6)])
    assert (gap.apid, gap.first_missing, gap.missing, gap.next_seq) == (APID, 12, 3, 15)
    assert (gap.start_time, gap.end_time) == (T0 + 1, T0 + 5.5)
    assert not gap.restart
    assert gap.counts_text() == "12..14 (3)"


def test_a_jump_across_the_wrap_counts_modulo_16384() -> None:
    (gap,) = feed(GapDetector(), [mark(16382, 0), mark(2, 4)])
    assert (gap.first_missing, gap.missing, gap.next_seq) == (16383, 3, 2)
    assert gap.counts_text() == "16383..1 (3)"
    (one,) = feed(GapDetector(), [mark(16383, 0), mark(1, 2)])
    assert (one.first_missing, one.missing) == (0, 1)
    assert one.counts_text() == "0 (1)"


def test_a_restart_is_a_gap_of_unknown_size_up_to_the_start_event() -> None:
    (gap,) = feed(GapDetector(), [mark(500, 0), mark(501, 1), mark(0, 30, started=True)])
    assert (gap.first_missing, gap.missing, gap.next_seq) == (502, None, 0)
    assert gap.restart
    assert (gap.start_time, gap.end_time) == (T0 + 1, T0 + 30)
    assert gap.counts_text() == "from 502, number unknown (restart)"


def test_a_restart_whose_count_follows_lost_nothing() -> None:
    assert feed(GapDetector(), [mark(16383, 0), mark(0, 9, started=True), mark(1, 10)]) == []


def test_the_same_packet_twice_is_no_gap() -> None:
    assert feed(GapDetector(), [mark(7, 0), mark(7, 0), mark(8, 1)]) == []


def test_each_apid_has_its_own_count() -> None:
    other = PacketMark(200, 900, T0)
    gaps = feed(GapDetector(), [mark(1, 0), other, mark(2, 1), PacketMark(200, 901, T0 + 1)])
    assert gaps == []


def test_a_detector_seeded_with_the_last_archived_packet_finds_a_gap_across_a_restart() -> None:
    detector = GapDetector([mark(40, 0)])
    assert detector.last(APID) == mark(40, 0)
    (gap,) = feed(detector, [mark(45, 100)])
    assert (gap.first_missing, gap.missing, gap.start_time) == (41, 4, T0)


# -- what is still missing ----------------------------------------------------------------------


def known_gap() -> Gap:
    (gap,) = feed(GapDetector(), [mark(10, 0), mark(20, 10)])  # 11..19 missing, 1 s apart
    return gap


def test_with_nothing_retrieved_the_whole_gap_is_one_hole() -> None:
    gap = known_gap()
    assert holes(gap, []) == [Hole(11, 9, T0, T0 + 10)]
    # The packets either side, archived live, change nothing.
    assert holes(gap, [mark(10, 0), mark(20, 10)]) == [Hole(11, 9, T0, T0 + 10)]
    assert retrieval_range(holes(gap, [])) == (int(T0), int(T0) + 10)


def test_retrieved_packets_in_any_order_with_duplicates_fill_it() -> None:
    gap = known_gap()
    retrieved = [mark(s, s - 10) for s in (19, 11, 15, 12, 13, 14, 16, 17, 18)]
    found = holes(gap, [mark(10, 0), *retrieved, *retrieved[:3], mark(20, 10)])
    assert found == []
    assert is_filled(found, retrieval_completed=False)


def test_a_retrieved_packet_that_fills_part_leaves_holes_bounded_by_what_is_held() -> None:
    gap = known_gap()
    found = holes(gap, [mark(10, 0), mark(11, 1), mark(12, 2), mark(15, 5), mark(20, 10)])
    assert found == [Hole(13, 2, T0 + 2, T0 + 5), Hole(16, 4, T0 + 5, T0 + 10)]
    assert not is_filled(found, retrieval_completed=True)
    assert retrieval_range(found) == (int(T0) + 2, int(T0) + 10)


def test_holes_across_the_wrap() -> None:
    (gap,) = feed(GapDetector(), [mark(16381, 0), mark(3, 6)])  # 16382, 16383, 0, 1, 2
    assert holes(gap, [mark(16382, 1), mark(16383, 2), mark(0, 3), mark(2, 5)]) == [
        Hole(1, 1, T0 + 3, T0 + 5)
    ]
    assert holes(gap, [mark(s, i + 1) for i, s in enumerate((16382, 16383, 0, 1, 2))]) == []


def test_packets_outside_the_gap_or_sent_before_it_in_the_same_millisecond_do_not_count() -> None:
    gap = known_gap()
    before_in_same_ms = mark(9, 0)  # sent just before the packet before the gap, same time
    later = mark(12, 11)  # a count of the gap's, but after it (the next wrap)
    other_apid = PacketMark(200, 11, T0 + 1)
    found = holes(gap, [before_in_same_ms, later, other_apid])
    assert found == [Hole(11, 9, T0, T0 + 10)]


def test_packets_of_one_millisecond_are_taken_in_count_order() -> None:
    (gap,) = feed(GapDetector(), [mark(10, 0), mark(14, 0)])  # all four in the same ms
    assert holes(gap, [mark(13, 0), mark(11, 0), mark(12, 0)]) == []


def test_a_restart_gap_is_filled_only_by_a_completed_retrieval() -> None:
    (gap,) = feed(GapDetector(), [mark(500, 0), mark(0, 30, started=True)])
    assert holes(gap, []) == [Hole(501, None, T0, T0 + 30)]
    retrieved = [mark(501, 1), mark(502, 2)]
    found = holes(gap, retrieved)
    assert found == [Hole(503, None, T0 + 2, T0 + 30)]
    assert not is_filled(found, retrieval_completed=False)
    assert is_filled(found, retrieval_completed=True)
    assert retrieval_range(found) == (int(T0) + 2, int(T0) + 30)


def test_a_restart_inside_a_gap_whose_start_event_was_lost_live() -> None:
    (gap,) = feed(GapDetector(), [mark(3000, 0), mark(3, 10)])  # looks like a jump
    assert gap.missing == (3 - 3001) % MODULUS
    retrieved = [mark(3001, 1), mark(3002, 2), mark(0, 6, started=True), mark(1, 7), mark(2, 8)]
    found = holes(gap, retrieved)
    assert found == [Hole(3003, None, T0 + 2, T0 + 6)]
    assert is_filled(found, retrieval_completed=True)
    # A hole of known size left besides: still missing whatever the retrieval said.
    found = holes(gap, [r for r in retrieved if r.seq != 1])
    assert found[-1] == Hole(1, 1, T0 + 6, T0 + 8)
    assert not is_filled(found, retrieval_completed=True)
