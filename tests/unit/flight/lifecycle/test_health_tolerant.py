"""A health check that tolerates a failure shorter than its grace time."""

from __future__ import annotations

from flight.lifecycle.health import tolerant


def test_a_failure_counts_only_once_it_outlasts_the_grace_time() -> None:
    now = [0.0]
    state: list[str | None] = [None]
    check = tolerant(lambda: state[0], 30.0, lambda: now[0])
    assert check() is None
    state[0] = "worker starting"
    assert check() is None  # just began
    now[0] = 29.0
    assert check() is None
    now[0] = 31.0
    assert check() == "worker starting (for 31 s)"
    state[0] = None
    assert check() is None
    state[0] = "lost"
    now[0] = 40.0
    assert check() is None  # a new failure starts its own grace time
