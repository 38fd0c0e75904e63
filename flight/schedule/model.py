"""The time-based schedule as values (ECSS-E-ST-70-41C 6.11): what is scheduled, the checks
the standard asks of every change, and what is due. No I/O and no clock: the store makes each
change durable and the service passes the time in."""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from spacelink.cdstime import CdsTime
from spacelink.pus_schedule import ScheduleRequestId, TimeTaggedTc


class DropReason(enum.IntEnum):
    """Why an activity was deleted unreleased (dictionary enum ScheduleDropReason)."""

    DISABLED = 0
    MISSED = 1
    DAMAGED = 2


@dataclass(frozen=True, slots=True)
class Activity:
    """A scheduled TC: its request ID, release time (UNIX ms, the CDS code's resolution), the
    whole packet, and its place in insertion order (equal times release in that order)."""

    request_id: ScheduleRequestId
    release_ms: int
    packet: bytes
    order: int

    def tagged(self) -> TimeTaggedTc:
        return TimeTaggedTc(release_time(self.release_ms), self.packet)

    def sort_key(self) -> tuple[int, int]:
        return self.release_ms, self.order


def release_ms(time: CdsTime) -> int:
    """A CDS time as UNIX milliseconds (exact: both count whole milliseconds)."""
    return round(time.to_unix() * 1000)


def release_time(ms: int) -> CdsTime:
    return CdsTime.from_unix(ms / 1000)


class ScheduleError(Exception):
    """A change the schedule refuses; the service reports it with its failure code."""


class TooEarly(ScheduleError):
    def __init__(self, request_id: ScheduleRequestId, release: int, earliest: int) -> None:
        super().__init__(
            f"activity {request_id} would be due at {release_time(release)}, earlier than "
            f"{release_time(earliest)} (now plus the time margin)"
        )
        self.request_id, self.release_ms, self.earliest_ms = request_id, release, earliest


class ScheduleFull(ScheduleError):
    def __init__(self, scheduled: int, capacity: int, adding: int) -> None:
        super().__init__(
            f"{adding} activities do not fit: {scheduled} of {capacity} places are taken"
        )
        self.scheduled, self.capacity = scheduled, capacity


class DuplicateRequest(ScheduleError):
    def __init__(self, request_id: ScheduleRequestId) -> None:
        super().__init__(f"request ID {request_id} is already scheduled or given twice")
        self.request_id = request_id


class UnknownRequest(ScheduleError):
    def __init__(self, request_id: ScheduleRequestId) -> None:
        super().__init__(f"no scheduled activity has request ID {request_id}")
        self.request_id = request_id


@dataclass(frozen=True, slots=True)
class Limits:
    """`margin_ms`: how far ahead of now a release time must be (inserted or shifted);
    `capacity`: activities at most."""

    margin_ms: int
    capacity: int


@dataclass(frozen=True, slots=True)
class Fate:
    """What becomes of a due activity: released (`drop` None) or dropped for `drop`."""

    activity: Activity
    drop: DropReason | None
    late_ms: int


class TimeSchedule:
    """The activities in release order and the execution function's state."""

    def __init__(
        self, limits: Limits, activities: Iterable[Activity] = (), enabled: bool = True
    ) -> None:
        self.limits = limits
        self.enabled = enabled
        self._by_id: dict[ScheduleRequestId, Activity] = {a.request_id: a for a in activities}
        # The activities in release order, sorted again only after a change: the main loop asks
        # for the next release and what is due at every pass.
        self._order: list[Activity] | None = None

    def __len__(self) -> int:
        return len(self._by_id)

    def _ordered(self) -> list[Activity]:
        if self._order is None:
            self._order = sorted(self._by_id.values(), key=Activity.sort_key)
        return self._order

    def activities(self) -> list[Activity]:
        """Every activity, in release order."""
        return list(self._ordered())

    def find(self, request_ids: Sequence[ScheduleRequestId]) -> list[Activity]:
        """The activities with these IDs, in release order; UnknownRequest for the first
        missing one."""
        found = {}
        for request_id in request_ids:
            activity = self._by_id.get(request_id)
            if activity is None:
                raise UnknownRequest(request_id)
            found[request_id] = activity
        return sorted(found.values(), key=Activity.sort_key)

    def next_release_ms(self) -> int | None:
        order = self._ordered()
        return order[0].release_ms if order else None

    # -- checks: the activities a change would leave, the schedule untouched -----------------

    def check_insert(self, tagged: Sequence[TimeTaggedTc], now_ms: int) -> list[Activity]:
        """The activities `tagged` becomes, in request order; ScheduleError when any is refused
        (this mission refuses the request whole: docs/schedule.md)."""
        if len(self._by_id) + len(tagged) > self.limits.capacity:
            raise ScheduleFull(len(self._by_id), self.limits.capacity, len(tagged))
        earliest = now_ms + self.limits.margin_ms
        order = max((a.order for a in self._by_id.values()), default=-1) + 1
        seen: set[ScheduleRequestId] = set()
        made = []
        for i, one in enumerate(tagged):
            request_id = one.request_id
            if request_id in self._by_id or request_id in seen:
                raise DuplicateRequest(request_id)
            seen.add(request_id)
            at = release_ms(one.release)
            if at < earliest:
                raise TooEarly(request_id, at, earliest)
            made.append(Activity(request_id, at, one.packet, order + i))
        return made

    def check_shift(
        self, request_ids: Sequence[ScheduleRequestId] | None, offset_ms: int, now_ms: int
    ) -> list[Activity]:
        """The activities shifted by `offset_ms` (all of them when `request_ids` is None);
        TooEarly when one would be due before now plus the margin, as the standard refuses."""
        chosen = self.activities() if request_ids is None else self.find(request_ids)
        earliest = now_ms + self.limits.margin_ms
        shifted = [replace(a, release_ms=a.release_ms + offset_ms) for a in chosen]
        for activity in shifted:
            if activity.release_ms < earliest:
                raise TooEarly(activity.request_id, activity.release_ms, earliest)
        return shifted

    # -- changes, once the store holds them ---------------------------------------------------

    def put(self, activities: Iterable[Activity]) -> None:
        """Add activities, or replace those with the same request IDs (a shift)."""
        for activity in activities:
            self._by_id[activity.request_id] = activity
        self._order = None

    def remove(self, request_ids: Iterable[ScheduleRequestId]) -> None:
        for request_id in request_ids:
            self._by_id.pop(request_id, None)
        self._order = None

    def reset(self) -> None:
        """ECSS-E-ST-70-41C 6.11.4.4: every activity deleted, the execution function disabled."""
        self._by_id.clear()
        self._order = None
        self.enabled = False

    # -- release ------------------------------------------------------------------------------

    def due(self, now_ms: int, missed_grace_ms: int | None = None) -> list[Fate]:
        """What becomes of every activity due at `now_ms`, in release order. Disabled: each is
        dropped (its time is gone, as sat-rs reads the standard). `missed_grace_ms`, at start
        only: an activity whose time passed longer ago than that while the payload was down is
        dropped as missed; a later one is released now."""
        fates = []
        for activity in self._ordered():
            if activity.release_ms > now_ms:
                break
            late = now_ms - activity.release_ms
            drop = None
            if not self.enabled:
                drop = DropReason.DISABLED
            elif missed_grace_ms is not None and late > missed_grace_ms:
                drop = DropReason.MISSED
            fates.append(Fate(activity, drop, late))
        return fates
