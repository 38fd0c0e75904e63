"""The scrubber on real onnxruntime (CPU) and a real registry: passes that find and repair weight
and model-file upsets, their pacing (on an injected clock), periodic known answers, and the
thread that runs passes on its own and on request."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from flight.compute.memory_scrub import MemoryScrub
from flight.protection import weights
from flight.protection.scrubber import MODEL_FILES_EVERY, PassReport, Scrubber
from flight.protection.upsets import Outcome, UpsetLocation
from tests.unit.flight.protection.test_model_guard import (
    Clock,
    Payload,
    UpsetSession,
    job_feeds,
    open_payload,
    reference_outputs,
    register,
    upset_weight,
)
from tests.unit.flight.protection.test_weights import relu_mlp, run, same_bits

WAIT_S = 30.0  # for a thread to do what it was asked: a bound on a hang, not a timing assert


class ClockEvent(threading.Event):
    """An event whose timed waits pass on the fake clock (instantly) and are recorded."""

    def __init__(self, clock: Clock) -> None:
        super().__init__()
        self.clock = clock
        self.waits: list[float] = []

    def wait(self, timeout: float | None = None) -> bool:
        assert timeout is not None
        self.waits.append(timeout)
        self.clock.now += timeout
        return self.is_set()


class SlowClock(Clock):
    """A clock on which every reading comes `step` seconds after the previous one."""

    step: float = 0.0

    def __call__(self) -> float:
        self.now += self.step
        return self.now


def make_scrubber(payload: Payload, **kwargs: Any) -> tuple[Scrubber, ClockEvent]:
    """A scrubber on the payload's clock whose pacing waits are recorded, not slept."""
    kwargs.setdefault("monotonic", payload.clock)
    # Pacing sleeps on the stop event (so that a stop interrupts it): one that records them.
    paced = ClockEvent(payload.clock)
    memory = MemoryScrub(payload.guard, kwargs["monotonic"], stopping=paced)
    scrubber = Scrubber(memory, payload.registry, payload.upsets, **kwargs)
    return scrubber, paced


@pytest.fixture
def payload(tmp_path: Path) -> Payload:
    return open_payload(tmp_path)


# --- one pass ------------------------------------------------------------------------------------


def test_a_pass_finds_and_repairs_weight_upsets(payload: Payload) -> None:
    entry = register(payload)
    loaded = payload.loaded(entry)
    assert loaded.weights is not None
    upset_weight(loaded, "fc1.weight")
    upset_weight(loaded, "fc1.bias")
    scrubber, _ = make_scrubber(payload, rate_octets_s=1e3)
    started = payload.clock.now

    report = scrubber.run_pass()

    assert report == PassReport(
        octets=loaded.weights.octets,
        tensors=2,
        model_files=2,
        detected=2,
        corrected=2,
        uncorrectable=0,
        duration_s=payload.clock.now - started,
    )
    assert payload.counts() == {"WEIGHTS.corrected": 2}
    assert loaded.weights.corrupt() == [] and loaded.weights.generation == 1
    feeds = job_feeds()
    assert same_bits(run(loaded.session, feeds), reference_outputs(entry, feeds))
    assert (scrubber.passes, scrubber.last_report) == (1, report)
    assert scrubber.last_pass_at == payload.clock.now


def test_a_clean_pass_covers_every_loaded_model(payload: Payload) -> None:
    first = register(payload)
    second = register(payload, relu_mlp(), "n")
    scrubber, _ = make_scrubber(payload)
    report = scrubber.run_pass()
    octets = sum(payload.weights(e).octets for e in (first, second))
    assert (report.octets, report.tensors, report.model_files) == (octets, 2 + 4, 4)
    assert (report.detected, report.corrected, report.uncorrectable) == (0, 0, 0)
    assert scrubber.protected_octets == octets
    assert payload.counts() == {}


def test_an_uncorrectable_upset_is_reported_and_the_model_unloaded(payload: Payload) -> None:
    entry = register(payload)
    upset_weight(payload.loaded(entry))
    for path in (entry.path, entry.copy_path):
        path.write_bytes(b"\0" * entry.size)
    scrubber, _ = make_scrubber(payload)

    report = scrubber.run_pass()  # logs the failure, does not raise

    assert report.corrected == 0
    assert report.uncorrectable == payload.upsets.total(Outcome.UNCORRECTABLE) > 0
    assert report.detected == report.uncorrectable
    assert payload.upsets.counts()["WEIGHTS.uncorrectable"] == 1
    assert entry.key not in payload.cache


def test_model_copies_are_checked_every_tenth_pass_or_at_full_speed(payload: Payload) -> None:
    entry = register(payload)
    scrubber, _ = make_scrubber(payload)
    assert scrubber.run_pass().model_files == 2  # pass 0
    good = entry.copy_path.read_bytes()
    entry.copy_path.write_bytes(good[:-1] + bytes([good[-1] ^ 1]))

    for _ in range(1, MODEL_FILES_EVERY):
        assert scrubber.run_pass().model_files == 0
    assert entry.copy_path.read_bytes() != good

    report = scrubber.run_pass()  # pass 10
    assert (report.model_files, report.detected, report.corrected) == (2, 1, 1)
    assert entry.copy_path.read_bytes() == good
    assert payload.counts() == {"MODEL_FILE.corrected": 1}

    entry.path.write_bytes(b"")
    assert scrubber.run_pass().model_files == 0
    report = scrubber.run_pass(full_speed=True)
    assert (report.model_files, report.corrected) == (2, 1)
    assert entry.path.read_bytes() == good


def test_only_upsets_reported_on_the_scrubber_thread_count_in_its_pass(payload: Payload) -> None:
    def scrub_state() -> None:
        payload.upsets.corrected(UpsetLocation.STATE, "state copy 2")
        elsewhere = threading.Thread(
            target=payload.upsets.uncorrectable, args=(UpsetLocation.JOB_STORE, "job 4")
        )
        elsewhere.start()
        elsewhere.join()

    scrubber, _ = make_scrubber(payload, scrub_state=scrub_state)
    report = scrubber.run_pass()
    assert (report.detected, report.corrected, report.uncorrectable) == (1, 1, 0)
    assert payload.counts() == {"STATE.corrected": 1, "JOB_STORE.uncorrectable": 1}
    payload.upsets.corrected(UpsetLocation.OUTPUT, "between passes")
    assert scrubber.run_pass().detected == 1  # only this pass's own


# --- pacing --------------------------------------------------------------------------------------


def test_weights_are_read_no_faster_than_the_rate(
    payload: Payload, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(weights, "SLICE_OCTETS", 64)
    entry = register(payload, relu_mlp())  # 848 octets: 14 slices of at most 64
    octets = payload.weights(entry).octets
    rate = 1000.0
    scrubber, paced = make_scrubber(payload, rate_octets_s=rate)
    started = payload.clock.now

    report = scrubber.run_pass()

    assert report.octets == octets == 848
    # The clock moves only while the scrubber waits: it waits for each slice's share.
    assert len(paced.waits) == 14
    assert sum(paced.waits) == pytest.approx(octets / rate)
    assert max(paced.waits) == pytest.approx(64 / rate)
    assert report.duration_s == pytest.approx(octets / rate)
    assert payload.clock.now - started == pytest.approx(octets / rate)


def test_a_scrubber_behind_its_rate_does_not_wait(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(weights, "SLICE_OCTETS", 64)
    payload = open_payload(tmp_path)
    register(payload, relu_mlp())
    clock = SlowClock(payload.clock.now)
    clock.step = 1.0  # each slice takes far longer than 64 octets at 1000 octets/s
    scrubber, paced = make_scrubber(payload, rate_octets_s=1000.0, monotonic=clock)
    scrubber.run_pass()
    assert paced.waits == []


def test_a_full_speed_pass_does_not_wait(payload: Payload) -> None:
    register(payload, relu_mlp())
    scrubber, paced = make_scrubber(payload, rate_octets_s=1.0)
    report = scrubber.run_pass(full_speed=True)
    assert paced.waits == [] and report.octets == 848


def test_stopping_ends_a_pass_between_slices(
    payload: Payload, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(weights, "SLICE_OCTETS", 64)
    register(payload, relu_mlp())
    scrubber, paced = make_scrubber(payload, rate_octets_s=1000.0)
    paced.set()  # stop() was called
    report = scrubber.run_pass()
    assert (report.octets, report.tensors) == (64, 0)


# --- periodic known answers ----------------------------------------------------------------------


def test_a_known_answer_runs_when_due_and_not_when_busy(payload: Payload) -> None:
    entry = register(payload)
    busy = [False]
    scrubber, _ = make_scrubber(payload, answer_interval_s=300.0, busy=lambda: busy[0])
    runs = payload.guard.answer_runs

    payload.clock.now += 299.0
    scrubber.run_pass()
    assert payload.guard.answer_runs == runs  # not due

    payload.clock.now += 1.0
    busy[0] = True
    scrubber.run_pass()
    assert payload.guard.answer_runs == runs  # due, but a job is computing

    busy[0] = False
    scrubber.run_pass()
    assert payload.guard.answer_runs == runs + 1
    assert payload.loaded(entry).answer_checked == payload.clock.now
    scrubber.run_pass()
    assert payload.guard.answer_runs == runs + 1  # passed just now: not due again


def test_a_failed_known_answer_in_a_pass_is_corrected_and_counted(payload: Payload) -> None:
    entry = register(payload)
    loaded = payload.loaded(entry)
    loaded.session = UpsetSession(loaded.session)
    scrubber, _ = make_scrubber(payload, answer_interval_s=10.0)
    payload.clock.now += 10.0
    report = scrubber.run_pass()
    assert (report.detected, report.corrected) == (1, 1)
    assert payload.counts() == {"KNOWN_ANSWER.corrected": 1}
    assert payload.loaded(entry) is not loaded


# --- the thread ----------------------------------------------------------------------------------


class Reports:
    """Collects the reports given to on_done, and the thread that gave each."""

    def __init__(self) -> None:
        self.reports: list[PassReport] = []
        self.threads: list[threading.Thread] = []
        self.done = threading.Event()

    def __call__(self, report: PassReport) -> None:
        self.reports.append(report)
        self.threads.append(threading.current_thread())
        self.done.set()

    def wait(self) -> PassReport:
        assert self.done.wait(WAIT_S), "no report"
        self.done.clear()
        return self.reports[-1]


def test_a_requested_pass_runs_at_full_speed_on_the_scrubber_thread(payload: Payload) -> None:
    entry = register(payload)
    scrubber = Scrubber(
        MemoryScrub(payload.guard), payload.registry, payload.upsets, period_s=3600.0
    )
    scrubber.start()
    try:
        upset_weight(payload.loaded(entry))
        reports = Reports()
        scrubber.request_pass(reports)
        report = reports.wait()
        assert report.model_files == 2  # full speed checks the stored copies too
        assert payload.weights(entry).corrupt() == []
        assert payload.counts() == {"WEIGHTS.corrected": 1}
        thread = reports.threads[0]
        assert thread.name == "scrubber" and thread is not threading.current_thread()
        scrubber.request_pass(reports)
        assert reports.wait().detected == 0
        assert scrubber.last_report is reports.reports[-1]
    finally:
        scrubber.stop()
    assert not thread.is_alive()


def test_a_pass_that_fails_still_reports(payload: Payload) -> None:
    register(payload)
    failing = threading.Event()

    def scrub_state() -> None:
        if failing.is_set():
            raise RuntimeError("state store bug")

    scrubber = Scrubber(
        MemoryScrub(payload.guard),
        payload.registry,
        payload.upsets,
        period_s=3600.0,
        scrub_state=scrub_state,
    )
    scrubber.start()
    try:
        reports = Reports()
        failing.set()
        scrubber.request_pass(reports)
        failed = reports.wait()
        assert failed == PassReport(0, 0, 0, 0, 0, 0, failed.duration_s)
        failing.clear()
        scrubber.request_pass(reports)  # the thread survived the failure
        assert (reports.wait().tensors, len(reports.reports)) == (2, 2)
    finally:
        scrubber.stop()


def test_a_pass_longer_than_its_period_is_reported_late(payload: Payload) -> None:
    late: list[tuple[PassReport, float]] = []
    reported = threading.Event()

    def slow_state() -> None:
        payload.clock.now += 10.0  # the pass takes 10 s on the clock

    def on_late(report: PassReport, period: float) -> None:
        late.append((report, period))
        reported.set()

    scrubber = Scrubber(
        MemoryScrub(payload.guard, payload.clock),
        payload.registry,
        payload.upsets,
        period_s=5.0,
        scrub_state=slow_state,
        on_late=on_late,
        monotonic=payload.clock,
    )
    scrubber.start()
    try:
        payload.clock.now += 5.0  # the first pass is due one period after the start
        scrubber.wake()
        assert reported.wait(WAIT_S)
    finally:
        scrubber.stop()
    report, period = late[0]
    assert (report.duration_s, period) == (10.0, 5.0)


def test_the_age_of_the_last_pass(payload: Payload) -> None:
    scrubber, _ = make_scrubber(payload)
    payload.clock.now += 7.0
    assert scrubber.last_pass_age_s() == 7.0  # since the scrubber started
    scrubber.run_pass()
    payload.clock.now += 2.0
    assert scrubber.last_pass_age_s() == 2.0
    assert scrubber.protected_octets == 0
