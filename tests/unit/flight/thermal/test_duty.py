"""The compute gate: the spacing rule, and admissions by real threads on a fake clock that the
test moves (the waiter's loop is observed through its cancellation checks, never timed)."""

from __future__ import annotations

import math
import threading

import pytest

from flight.thermal.duty import ComputeGate, spacing_s
from tests.fake_clock import FakeClock

WAIT_S = 10.0  # for a thread to do what it was asked: a bound on a hang, not a timing assert
T0 = 1_000.0


class Checks:
    """A `cancelled` callable that counts the waiter's loop turns and turns true on request."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.calls = 0
        self.cancel = False
        self.admitted = False

    def __call__(self) -> bool:
        with self._cond:
            self.calls += 1
            self._cond.notify_all()
            return self.cancel

    def turns(self, n: int = 2) -> bool:
        """Wait until the waiter has looked at the gate `n` more times (the last but one of
        those looks saw everything done before this call, and decided to wait again), or was
        admitted; True when still waiting."""
        with self._cond:
            target = self.calls + n
            looked = self._cond.wait_for(lambda: self.calls >= target or self.admitted, WAIT_S)
            assert looked, "the waiter neither looks at the gate nor returns"
            return not self.admitted

    def admit(self) -> None:
        """The waiter returned from admit."""
        with self._cond:
            self.admitted = True
            self._cond.notify_all()

    def set(self) -> None:
        with self._cond:
            self.cancel = True


class Waiter:
    """A thread in `gate.admit`."""

    def __init__(self, gate: ComputeGate, checks: Checks | None = None) -> None:
        self.checks = checks if checks is not None else Checks()
        self.admitted = threading.Event()
        self._thread = threading.Thread(target=self._admit, args=(gate,), daemon=True)
        self._thread.start()

    def _admit(self, gate: ComputeGate) -> None:
        gate.admit(self.checks)
        self.admitted.set()
        self.checks.admit()

    def still_waiting(self) -> bool:
        """True when the waiter has looked again since the last change and is still waiting."""
        return self.checks.turns()

    def done(self) -> bool:
        """Admitted within the generous bound."""
        self._thread.join(WAIT_S)
        return self.admitted.is_set()


def run_for(gate: ComputeGate, clock: FakeClock, seconds: float) -> None:
    """One inference that takes `seconds` on the fake clock."""
    with gate.running():
        clock.advance(seconds)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
def gate(clock: FakeClock) -> ComputeGate:
    return ComputeGate(clock)


# --- spacing_s -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("run_s", "duty", "idle_s"),
    [
        (2.0, 1.0, 0.0),
        (2.0, 1.5, 0.0),
        (2.0, 0.5, 2.0),
        (2.0, 0.25, 6.0),
        (0.04, 0.8, 0.01),
        (0.0, 0.1, 0.0),
    ],
)
def test_spacing_keeps_the_share_of_time_computing_at_the_duty(
    run_s: float, duty: float, idle_s: float
) -> None:
    assert spacing_s(run_s, duty) == pytest.approx(idle_s)
    if 0.0 < duty < 1.0 and run_s > 0.0:
        assert run_s / (run_s + spacing_s(run_s, duty)) == pytest.approx(duty)


@pytest.mark.parametrize("duty", [0.0, -0.5])
def test_spacing_at_no_duty_is_forever(duty: float) -> None:
    assert spacing_s(1.0, duty) == math.inf


# --- admit ---------------------------------------------------------------------------------------


def test_admit_returns_at_once_at_full_duty(gate: ComputeGate, clock: FakeClock) -> None:
    assert Waiter(gate).done()
    run_for(gate, clock, 5.0)
    assert Waiter(gate).done()  # no spacing after a run at duty 1


def test_the_next_admit_waits_the_spacing_of_the_last_run(
    gate: ComputeGate, clock: FakeClock
) -> None:
    gate.allow(0.25)
    run_for(gate, clock, 2.0)  # 2 s at 25 %: 6 s of rest
    waiter = Waiter(gate)
    assert waiter.still_waiting()
    clock.advance(5.0)
    assert waiter.still_waiting()
    clock.advance(0.99)
    assert waiter.still_waiting()
    clock.advance(0.01)  # exactly 6 s after the run ended
    assert waiter.done()


def test_the_spacing_counts_from_the_end_of_the_run(gate: ComputeGate, clock: FakeClock) -> None:
    gate.allow(0.5)
    run_for(gate, clock, 1.0)
    clock.advance(1.0)  # the rest already passed: the next starts at once
    assert Waiter(gate).done()


def test_a_duty_change_during_a_wait_applies(gate: ComputeGate, clock: FakeClock) -> None:
    gate.allow(0.25)
    run_for(gate, clock, 2.0)  # 6 s of rest at 25 %
    clock.advance(3.0)
    waiter = Waiter(gate)
    assert waiter.still_waiting()
    gate.allow(0.5)  # 2 s of rest at 50 %: already over
    assert waiter.done()


def test_a_lower_duty_during_a_wait_lengthens_it(gate: ComputeGate, clock: FakeClock) -> None:
    gate.allow(0.5)
    run_for(gate, clock, 2.0)  # 2 s of rest
    waiter = Waiter(gate)
    assert waiter.still_waiting()
    gate.allow(0.2)  # 8 s of rest
    clock.advance(2.0)
    assert waiter.still_waiting()
    clock.advance(6.0)
    assert waiter.done()


def test_held_blocks_until_released(gate: ComputeGate) -> None:
    gate.allow(1.0, held=True)
    assert gate.held
    assert gate.duty == 0.0
    waiter = Waiter(gate)
    assert waiter.still_waiting()
    assert waiter.still_waiting()
    gate.allow(1.0)
    assert not gate.held
    assert waiter.done()


def test_held_blocks_even_after_the_spacing(gate: ComputeGate, clock: FakeClock) -> None:
    gate.allow(0.5, held=True)
    clock.advance(3600.0)
    waiter = Waiter(gate)
    assert waiter.still_waiting()
    gate.allow(0.5)
    assert waiter.done()


def test_cancelled_releases_a_held_waiter(gate: ComputeGate) -> None:
    gate.allow(1.0, held=True)
    checks = Checks()
    waiter = Waiter(gate, checks)
    assert waiter.still_waiting()
    checks.set()
    assert waiter.done()
    assert gate.held  # the gate itself is still held


def test_cancelled_releases_a_spaced_waiter(gate: ComputeGate, clock: FakeClock) -> None:
    gate.allow(0.01)
    run_for(gate, clock, 10.0)
    checks = Checks()
    waiter = Waiter(gate, checks)
    assert waiter.still_waiting()
    checks.set()
    assert waiter.done()


def test_close_releases_waiters_and_admits_later_ones(gate: ComputeGate) -> None:
    gate.allow(1.0, held=True)
    waiters = [Waiter(gate) for _ in range(3)]
    for waiter in waiters:
        assert waiter.still_waiting()
    gate.close()
    assert all(waiter.done() for waiter in waiters)
    assert Waiter(gate).done()


def test_a_zero_duty_is_clamped_not_a_division_by_zero(gate: ComputeGate, clock: FakeClock) -> None:
    gate.allow(0.0)
    assert gate.duty > 0.0
    run_for(gate, clock, 1.0)
    waiter = Waiter(gate)
    clock.advance(1e5)  # far beyond any ordinary rest, still short of 1 s at 1e-6
    assert waiter.still_waiting()
    gate.allow(1.0)
    assert waiter.done()


def test_allow_clamps_above_one(gate: ComputeGate) -> None:
    gate.allow(3.0)
    assert gate.duty == 1.0


# --- busy time -----------------------------------------------------------------------------------


def test_busy_seconds_counts_completed_runs(gate: ComputeGate, clock: FakeClock) -> None:
    assert gate.busy_seconds() == 0.0
    run_for(gate, clock, 1.5)
    clock.advance(10.0)  # idle time is not busy
    run_for(gate, clock, 0.25)
    assert gate.busy_seconds() == pytest.approx(1.75)


def test_busy_seconds_counts_the_run_in_progress(gate: ComputeGate, clock: FakeClock) -> None:
    run_for(gate, clock, 1.0)
    with gate.running():
        clock.advance(0.5)
        assert gate.busy_seconds() == pytest.approx(1.5)
        clock.advance(0.5)
        assert gate.busy_seconds() == pytest.approx(2.0)
    clock.advance(5.0)
    assert gate.busy_seconds() == pytest.approx(2.0)


def test_overlapping_runs_count_one_busy_period_and_space_after_it(
    gate: ComputeGate, clock: FakeClock
) -> None:
    # A job's run on the compute lane and the known-answer check of the job before it on the
    # service lane: the check starts during the run and ends after it.
    gate.allow(0.5)
    clock.advance(1000.0)  # well into the clock: an overlap once counted the time since 0
    run = gate.running()
    run.__enter__()
    clock.advance(1.0)
    with gate.running():
        clock.advance(0.5)
        run.__exit__(None, None, None)  # the job's run ends; the check goes on
        assert gate.busy_seconds() == pytest.approx(1.5)
        clock.advance(0.5)
    assert gate.busy_seconds() == pytest.approx(2.0)  # the busy period, not 1.0 + 1.0
    waiter = Waiter(gate)
    assert waiter.still_waiting()
    clock.advance(1.9)
    assert waiter.still_waiting()
    clock.advance(0.1)  # the 2 s period at duty 0.5: 2 s of spacing after its end
    assert waiter.done()


def test_a_failed_run_still_counts_and_spaces(gate: ComputeGate, clock: FakeClock) -> None:
    gate.allow(0.5)
    with pytest.raises(RuntimeError), gate.running():
        clock.advance(2.0)
        raise RuntimeError("onnxruntime refused")
    assert gate.busy_seconds() == pytest.approx(2.0)
    waiter = Waiter(gate)
    assert waiter.still_waiting()
    clock.advance(2.0)
    assert waiter.done()


def test_inferences_through_the_gate_keep_the_duty(gate: ComputeGate, clock: FakeClock) -> None:
    # Back-to-back callers at duty 0.25: the clock moves only when one computes or the test
    # lets the rest pass, so the share of busy time over the whole stream is the duty. (Times
    # exact in binary: the fake clock never passes a due time by rounding.)
    gate.allow(0.25)
    for _ in range(5):
        assert Waiter(gate).done()
        run_for(gate, clock, 0.25)
        waiter = Waiter(gate)
        assert waiter.still_waiting()
        clock.advance(spacing_s(0.25, 0.25))
        assert waiter.done()
    assert gate.busy_seconds() / (clock.now - T0) == pytest.approx(0.25)
