"""The restart backoff, on a fake clock."""

from __future__ import annotations

from flight.worker.backoff import BackoffPolicy, RestartBackoff
from tests.fake_clock import FakeClock

POLICY = BackoffPolicy(first_s=0.1, factor=2.0, max_s=1.0, reset_after_s=60.0)


def test_losses_in_a_row_wait_longer_and_longer_up_to_the_cap() -> None:
    backoff = RestartBackoff(POLICY, FakeClock(0.0))
    delays = []
    for _ in range(6):
        backoff.ready()
        delays.append(backoff.lost())
    assert delays == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]


def test_failed_starts_count_as_losses_in_a_row() -> None:
    backoff = RestartBackoff(POLICY, FakeClock(0.0))
    assert [backoff.lost() for _ in range(3)] == [0.1, 0.2, 0.4]


def test_a_worker_healthy_for_a_while_starts_the_count_again() -> None:
    clock = FakeClock(0.0)
    backoff = RestartBackoff(POLICY, clock)
    backoff.ready()
    backoff.lost()
    backoff.ready()
    assert backoff.lost() == 0.2
    backoff.ready()
    clock.advance(59.0)
    assert backoff.lost() == 0.4  # not long enough
    backoff.ready()
    clock.advance(60.0)
    assert backoff.lost() == 0.1
    assert backoff.losses_in_a_row == 1


def test_a_worker_that_answered_a_compute_call_is_not_in_a_start_loop() -> None:
    backoff = RestartBackoff(POLICY, FakeClock(0.0))
    for _ in range(3):
        backoff.ready()
        backoff.lost()
    backoff.ready()
    backoff.proven()
    assert backoff.lost() == 0.1  # a fault struck a worker at work: back at once
    backoff.ready()
    assert backoff.lost() == 0.2  # lost again before it did any work: the loop counts
