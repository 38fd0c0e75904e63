"""The book of calls pending on a worker: lanes in turn, time limits from the head, what a lost
worker leaves (the supervisor's tests drive it through real processes; these pin its rules)."""

from __future__ import annotations

from flight.worker.calls import CallBook, PendingCall
from flight.worker.connection import encode
from flight.worker.protocol import Lane


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def call(id: int, lane: Lane, timeout_s: float = 5.0, at: float = 100.0) -> PendingCall:
    return PendingCall(id, lane, timeout_s, at)


def test_a_lanes_time_limit_runs_from_when_its_call_became_the_first() -> None:
    clock = Clock()
    book = CallBook(clock)
    first, second = call(1, Lane.COMPUTE), call(2, Lane.COMPUTE)
    book.enlist(first)
    book.enlist(second)
    clock.now = 104.0
    assert book.overdue(clock.now, clock.now + 0.1) == (None, 104.1)
    assert book.answered(1) is first
    clock.now = 108.0  # the second has been first for 4 s of its 5
    assert book.overdue(clock.now, clock.now + 10) == (None, 109.0)
    clock.now = 109.0
    assert book.overdue(clock.now, clock.now + 10)[0] is second


def test_a_lost_worker_leaves_the_first_call_of_each_lane_begun_and_the_others_not() -> None:
    book = CallBook(Clock())
    calls = [call(1, Lane.COMPUTE), call(2, Lane.COMPUTE), call(3, Lane.SERVICE)]
    for pending in calls:
        book.enlist(pending)
    assert sorted((p.id, began) for p, began in book.lose_sent()) == [
        (1, True),
        (2, False),
        (3, True),
    ]
    assert book.get(2) is None and book.clear() == []


def test_calls_held_for_a_worker_are_sent_in_order_taken_back_or_expired() -> None:
    clock = Clock()
    book = CallBook(clock)
    held = [call(i, Lane.SERVICE, at=100.0 + i) for i in (1, 2, 3)]
    for pending in held:
        book.hold(pending, encode(pending.id))
    assert book.withdraw_unsent(held[1]) and not book.withdraw_unsent(held[1])
    clock.now = 131.5  # the first waited 30.5 s, the third 28.5 s
    assert book.expire_unsent(30.0) == [held[0]]
    assert book.send_unsent() == [held[2]]
    assert book.answered(3) is held[2] and book.answered(3) is None


def test_a_call_cancelled_while_queued_is_answered_out_of_turn() -> None:
    book = CallBook(Clock())
    first, queued = call(1, Lane.COMPUTE), call(2, Lane.COMPUTE)
    book.enlist(first)
    book.enlist(queued)
    assert book.answered(2) is queued
    assert [p.id for p, _ in book.lose_sent()] == [1]
