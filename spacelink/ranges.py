"""Octet ranges of a file in transit (service 128): what one end holds and what it misses.

Both ends keep them, the payload for an upload and the ground for a download; pure code.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator


class RangeSet:
    """Disjoint, non-adjacent half-open octet ranges, merged as they are added; pure."""

    def __init__(self, ranges: Iterable[tuple[int, int]] = ()) -> None:
        self._starts: list[int] = []
        self._ends: list[int] = []
        self._covered = 0
        for offset, length in ranges:
            self.add(offset, length)

    def add(self, offset: int, length: int) -> None:
        """Add [offset, offset + length); an empty range changes nothing."""
        if offset < 0 or length < 0:
            raise ValueError(f"a range needs offset >= 0 and length >= 0, got ({offset}, {length})")
        if length == 0:
            return
        start, end = offset, offset + length
        # Ranges that overlap the new one or merely touch it are merged into it.
        first, stop = self._neighbours(start, end)
        if first < stop:
            start = min(start, self._starts[first])
            end = max(end, self._ends[stop - 1])
            self._covered -= sum(
                e - s for s, e in zip(self._starts[first:stop], self._ends[first:stop], strict=True)
            )
        self._starts[first:stop] = [start]
        self._ends[first:stop] = [end]
        self._covered += end - start

    def _neighbours(self, start: int, end: int) -> tuple[int, int]:
        """Indexes [first, stop) of the ranges that overlap or touch [start, end)."""
        return bisect.bisect_left(self._ends, start), bisect.bisect_right(self._starts, end)

    def joins(self, offset: int, length: int) -> bool:
        """Whether adding [offset, offset + length) would merge it into a range already held
        (overlap or touch), so that the set would not hold one more range."""
        first, stop = self._neighbours(offset, offset + length)
        return first < stop

    def update(self, other: RangeSet) -> None:
        """Add every range of `other`."""
        for offset, length in other:
            self.add(offset, length)

    def clear(self) -> None:
        """Forget every range."""
        self._starts.clear()
        self._ends.clear()
        self._covered = 0

    @property
    def covered_bytes(self) -> int:
        """Octets covered by the set."""
        return self._covered

    def gaps(self, size: int) -> Iterator[tuple[int, int]]:
        """The (offset, length) ranges of [0, size) not covered, in order."""
        cursor = 0
        for start, end in zip(self._starts, self._ends, strict=True):
            if start >= size:
                break
            if start > cursor:
                yield cursor, start - cursor
            cursor = end
        if cursor < size:
            yield cursor, size - cursor

    def missing(self, size: int) -> tuple[tuple[int, int], ...]:
        """The (offset, length) ranges of [0, size) not covered, sorted."""
        return tuple(self.gaps(size))

    @property
    def ranges(self) -> tuple[tuple[int, int], ...]:
        """The covered (offset, length) ranges, sorted."""
        return tuple(self)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return ((s, e - s) for s, e in zip(self._starts, self._ends, strict=True))

    def __len__(self) -> int:
        return len(self._starts)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RangeSet):
            return NotImplemented
        return self._starts == other._starts and self._ends == other._ends

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"RangeSet({list(self)!r})"
