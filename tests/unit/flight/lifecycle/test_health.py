"""Health checks: registration, the first failure, checks that raise, threads."""

from __future__ import annotations

import threading

import pytest

from flight.lifecycle.health import Finding, HealthMonitor, threads_running


def test_all_passing_is_healthy_and_the_first_failure_is_named() -> None:
    health = HealthMonitor()
    health.register("link", lambda: None)
    assert health.first_failure() is None
    health.register("worker", lambda: "heartbeat 12 s old")
    health.register("later", lambda: "also bad")
    assert health.first_failure() == Finding("worker", "heartbeat 12 s old")
    assert health.names == ("link", "worker", "later")


def test_a_name_is_registered_once_and_can_be_removed() -> None:
    health = HealthMonitor()
    health.register("worker", lambda: "down")
    with pytest.raises(ValueError, match="'worker' is already registered"):
        health.register("worker", lambda: None)
    health.unregister("worker")
    health.unregister("worker")  # no error
    assert health.first_failure() is None


def test_a_check_that_raises_has_failed() -> None:
    health = HealthMonitor()

    def broken() -> str | None:
        raise KeyError("gone")

    health.register("broken", broken)
    finding = health.first_failure()
    assert finding is not None and finding.check == "broken"
    assert finding.reason == "check raised KeyError('gone')"


def test_an_empty_reason_still_fails() -> None:
    health = HealthMonitor()
    health.register("terse", lambda: "")
    assert health.first_failure() == Finding("terse", "unhealthy")


def test_threads_that_stopped_or_were_never_made_are_named() -> None:
    stop = threading.Event()
    alive = threading.Thread(target=stop.wait, name="alive", daemon=True)
    dead = threading.Thread(target=lambda: None, name="job-compute")
    alive.start()
    dead.start()
    dead.join()
    try:
        assert threads_running(lambda: [alive])() is None
        assert threads_running(lambda: [alive, dead])() == "thread job-compute not running"
        assert threads_running(lambda: [dead, None])() == (
            "threads job-compute, (never made) not running"
        )
    finally:
        stop.set()
        alive.join()
