"""The upset log: counters by location and outcome, carried over from earlier boots, and the
listeners it tells of each upset."""

from __future__ import annotations

import logging
import threading

import pytest

from flight.protection.upsets import Outcome, Upset, UpsetLocation, UpsetLog


def test_every_counter_starts_at_zero() -> None:
    counts = UpsetLog().counts()
    assert len(counts) == len(UpsetLocation) * len(Outcome)
    assert set(counts.values()) == {0}
    assert "WEIGHTS.corrected" in counts and "RESULT_FILE.uncorrectable" in counts


def test_upsets_are_counted_by_location_and_outcome() -> None:
    log = UpsetLog()
    log.corrected(UpsetLocation.WEIGHTS, "m v1: fc1.weight, fc2.bias", 2)
    log.corrected(UpsetLocation.WEIGHTS, "m v1: fc1.bias")
    log.uncorrectable(UpsetLocation.MODEL_FILE, "m v1", 2)
    log.report(Upset(UpsetLocation.INPUT, Outcome.CORRECTED, "job 3 input"))

    counts = log.counts()
    assert {k: v for k, v in counts.items() if v} == {
        "WEIGHTS.corrected": 3,
        "MODEL_FILE.uncorrectable": 2,
        "INPUT.corrected": 1,
    }
    assert log.total(Outcome.CORRECTED) == 4
    assert log.total(Outcome.UNCORRECTABLE) == 2
    assert log.at(UpsetLocation.WEIGHTS) == 3
    assert log.at(UpsetLocation.MODEL_FILE) == 2
    assert log.at(UpsetLocation.STATE) == 0


def test_counts_is_a_copy() -> None:
    log = UpsetLog()
    counts = log.counts()
    counts["WEIGHTS.corrected"] = 99
    assert log.counts()["WEIGHTS.corrected"] == 0


def test_counts_from_earlier_boots_are_carried_over() -> None:
    log = UpsetLog({"OUTPUT.corrected": 5, "STATE.uncorrectable": 2, "NO_SUCH.corrected": 9})
    log.corrected(UpsetLocation.OUTPUT, "job 9 run 2")
    counts = log.counts()
    assert counts["OUTPUT.corrected"] == 6
    assert counts["STATE.uncorrectable"] == 2
    assert "NO_SUCH.corrected" not in counts  # a counter this build does not know is dropped
    assert UpsetLog(counts).counts() == counts


def test_listeners_hear_every_upset_even_when_one_fails(caplog: pytest.LogCaptureFixture) -> None:
    log = UpsetLog()
    heard: list[Upset] = []

    def broken(upset: Upset) -> None:
        raise RuntimeError("listener bug")

    log.subscribe(broken)
    log.subscribe(heard.append)
    with caplog.at_level(logging.WARNING, logger="flight.protection.upsets"):
        log.corrected(UpsetLocation.RESULT_FILE, "result-7.npz")
        log.uncorrectable(UpsetLocation.JOB_STORE, "jobs.sqlite", 3)

    assert heard == [
        Upset(UpsetLocation.RESULT_FILE, Outcome.CORRECTED, "result-7.npz", 1),
        Upset(UpsetLocation.JOB_STORE, Outcome.UNCORRECTABLE, "jobs.sqlite", 3),
    ]
    assert log.total(Outcome.CORRECTED) == 1 and log.total(Outcome.UNCORRECTABLE) == 3
    levels = [(r.levelno, r.getMessage()) for r in caplog.records if r.exc_info is None]
    assert levels == [
        (logging.WARNING, "upset corrected at RESULT_FILE (1): result-7.npz"),
        (logging.ERROR, "upset uncorrectable at JOB_STORE (3): jobs.sqlite"),
    ]
    assert sum(1 for r in caplog.records if r.getMessage() == "upset listener failed") == 2


def test_the_count_is_updated_before_listeners_are_told() -> None:
    log = UpsetLog()
    seen: list[int] = []
    log.subscribe(lambda upset: seen.append(log.at(upset.location)))
    log.corrected(UpsetLocation.KNOWN_ANSWER, "m v1")
    log.corrected(UpsetLocation.KNOWN_ANSWER, "m v1")
    assert seen == [1, 2]


def test_reports_from_many_threads_are_all_counted() -> None:
    log = UpsetLog()
    heard: list[Upset] = []
    log.subscribe(heard.append)

    def report() -> None:
        for _ in range(500):
            log.corrected(UpsetLocation.STATE, "state copy 2")

    threads = [threading.Thread(target=report) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert log.counts()["STATE.corrected"] == 2000
    assert len(heard) == 2000
