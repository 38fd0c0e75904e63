"""The octet ranges both ends of a file transfer keep, against a per-octet model."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from spacelink.ranges import RangeSet

range_lists = st.lists(st.tuples(st.integers(0, 300), st.integers(0, 60)), max_size=40)


@given(range_lists, st.integers(0, 400))
def test_rangeset_matches_an_octet_mask(ranges: list[tuple[int, int]], size: int) -> None:
    mask = [False] * 400
    rs = RangeSet()
    for offset, length in ranges:
        rs.add(offset, length)
        for i in range(offset, offset + length):
            mask[i] = True
    assert rs.covered_bytes == sum(mask)
    covered = [False] * 400
    previous_end = -1
    for offset, length in rs:
        assert length > 0 and offset > previous_end  # sorted, disjoint and not even adjacent
        previous_end = offset + length
        covered[offset : offset + length] = [True] * length
    assert covered == mask
    gaps = [False] * size
    for offset, length in rs.missing(size):
        assert length > 0 and offset + length <= size
        gaps[offset : offset + length] = [True] * length
    assert gaps == [not m for m in mask[:size]]


@given(range_lists, st.randoms(use_true_random=False))
def test_rangeset_ignores_order(ranges: list[tuple[int, int]], rng: random.Random) -> None:
    shuffled = list(ranges)
    rng.shuffle(shuffled)
    assert RangeSet(ranges) == RangeSet(shuffled)


def test_rangeset_merges_touching_ranges_and_rejects_negative() -> None:
    rs = RangeSet([(10, 5), (0, 5), (5, 5), (20, 1)])
    assert rs.ranges == ((0, 15), (20, 1))
    assert rs.missing(25) == ((15, 5), (21, 4))
    assert rs.missing(12) == ()
    rs.add(3, 0)
    assert len(rs) == 2
    with pytest.raises(ValueError, match="offset >= 0"):
        rs.add(-1, 4)


@given(range_lists, st.integers(0, 300), st.integers(1, 60))
def test_joins_says_whether_adding_keeps_the_number_of_ranges(
    ranges: list[tuple[int, int]], offset: int, length: int
) -> None:
    rs = RangeSet(ranges)
    held = len(rs)
    joins = rs.joins(offset, length)
    rs.add(offset, length)
    # A range that joins others merges with them (never more ranges); one that does not is new.
    assert (len(rs) <= held) == joins
