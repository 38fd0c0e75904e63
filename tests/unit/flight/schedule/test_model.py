"""The schedule's rules (ECSS-E-ST-70-41C 6.11) as pure values: the time margin at insertion and
time-shift, room, request IDs, reset disabling the execution function, release order, what a
disabled schedule and a payload that was down do with activities that came due."""

from __future__ import annotations

import pytest

from flight.schedule import (
    DropReason,
    DuplicateRequest,
    Limits,
    ScheduleFull,
    TimeSchedule,
    TooEarly,
    UnknownRequest,
)
from flight.schedule.model import release_ms, release_time
from spacelink.pus_schedule import ScheduleRequestId, TimeTaggedTc
from spacelink.spacepacket import PusTc

NOW = 1_800_000_000_000  # UNIX ms
LIMITS = Limits(margin_ms=1000, capacity=4)


def tc(seq: int, at_ms: int) -> TimeTaggedTc:
    return TimeTaggedTc(release_time(at_ms), PusTc(100, 17, 1, seq_count=seq, source_id=1).pack())


def rid(seq: int) -> ScheduleRequestId:
    return ScheduleRequestId(1, 100, seq)


def schedule_of(*pairs: tuple[int, int], enabled: bool = True) -> TimeSchedule:
    schedule = TimeSchedule(LIMITS, enabled=enabled)
    schedule.put(schedule.check_insert([tc(s, at) for s, at in pairs], NOW))
    return schedule


def test_release_times_are_whole_milliseconds_both_ways() -> None:
    assert release_ms(release_time(NOW + 123)) == NOW + 123


def test_an_activity_sooner_than_the_margin_is_refused_and_nothing_changes() -> None:
    schedule = schedule_of((1, NOW + 5000))
    with pytest.raises(TooEarly) as caught:
        schedule.check_insert([tc(2, NOW + 2000), tc(3, NOW + 999)], NOW)
    assert (caught.value.release_ms, caught.value.earliest_ms) == (NOW + 999, NOW + 1000)
    assert caught.value.request_id == rid(3)
    assert [a.request_id for a in schedule.activities()] == [rid(1)]
    assert schedule.check_insert([tc(4, NOW + 1000)], NOW)[0].release_ms == NOW + 1000


def test_room_and_request_ids_are_checked() -> None:
    schedule = schedule_of((1, NOW + 5000), (2, NOW + 6000))
    with pytest.raises(ScheduleFull) as full:
        schedule.check_insert([tc(3, NOW + 7000), tc(4, NOW + 7000), tc(5, NOW + 7000)], NOW)
    assert (full.value.scheduled, full.value.capacity) == (2, 4)
    with pytest.raises(DuplicateRequest):
        schedule.check_insert([tc(2, NOW + 7000)], NOW)
    with pytest.raises(DuplicateRequest):
        schedule.check_insert([tc(3, NOW + 7000), tc(3, NOW + 8000)], NOW)
    with pytest.raises(UnknownRequest):
        schedule.find([rid(1), rid(9)])


def test_equal_times_release_in_insertion_order_and_due_stops_at_now() -> None:
    schedule = schedule_of((3, NOW + 2000), (1, NOW + 2000), (2, NOW + 1500), (4, NOW + 9000))
    fates = schedule.due(NOW + 2000)
    assert [f.activity.request_id.seq_count for f in fates] == [2, 3, 1]
    assert [f.late_ms for f in fates] == [500, 0, 0]
    assert all(f.drop is None for f in fates)
    assert schedule.next_release_ms() == NOW + 1500  # due() does not remove: the service does
    schedule.remove([rid(2), rid(3)])
    assert schedule.next_release_ms() == NOW + 2000
    assert [f.activity.request_id for f in schedule.due(NOW + 2000)] == [rid(1)]


def test_disabled_schedule_drops_what_comes_due() -> None:
    schedule = schedule_of((1, NOW + 2000), (2, NOW + 5000), enabled=False)
    [fate] = schedule.due(NOW + 3000)
    assert fate.drop is DropReason.DISABLED and fate.activity.request_id == rid(1)


def test_at_start_activities_missed_longer_than_the_grace_are_dropped() -> None:
    schedule = schedule_of((1, NOW + 2000), (2, NOW + 50_000), (3, NOW + 90_000))
    fates = schedule.due(NOW + 70_000, missed_grace_ms=60_000)
    assert [(f.activity.request_id.seq_count, f.drop) for f in fates] == [
        (1, DropReason.MISSED),
        (2, None),
    ]
    assert fates[0].late_ms == 68_000


def test_shift_moves_release_times_and_refuses_the_past() -> None:
    schedule = schedule_of((1, NOW + 5000), (2, NOW + 8000))
    shifted = schedule.check_shift([rid(2)], -3000, NOW)
    assert [(a.request_id, a.release_ms) for a in shifted] == [(rid(2), NOW + 5000)]
    with pytest.raises(TooEarly) as caught:
        schedule.check_shift(None, -4500, NOW)  # the first one would be due 500 ms from now
    assert caught.value.request_id == rid(1)
    every = schedule.check_shift(None, 60_000, NOW)
    schedule.put(every)
    assert [a.release_ms for a in schedule.activities()] == [NOW + 65_000, NOW + 68_000]
    assert [a.order for a in schedule.activities()] == [0, 1]  # the order of insertion kept


def test_reset_deletes_everything_and_disables_execution() -> None:
    schedule = schedule_of((1, NOW + 5000))
    schedule.reset()
    assert len(schedule) == 0 and schedule.enabled is False
    assert schedule.next_release_ms() is None


def test_the_code_s_protocol_values_are_the_dictionary_s() -> None:
    from flight.protection.upsets import UpsetLocation
    from spacelink.pus_schedule import SCHEDULE_SERVICE, Subtype
    from telemetry_defs.loader import default_dictionary

    d = default_dictionary()
    assert {m.name: m.value for m in DropReason} == dict(d.enums["ScheduleDropReason"].values)
    assert d.enums["UpsetLocation"].values["SCHEDULE"] == UpsetLocation.SCHEDULE
    tcs = {c.subtype for c in d.commands.values() if c.service == SCHEDULE_SERVICE}
    tms = {p.subtype for p in d.packets.values() if p.service == SCHEDULE_SERVICE}
    assert tcs | tms == {int(s) for s in Subtype}
