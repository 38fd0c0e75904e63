"""Arm, then execute: each way an execute can fail to match, and the arm used up either way."""

from __future__ import annotations

import pytest

from flight.lifecycle.arming import (
    CONFIRMATION,
    ArmedForOther,
    ArmExpired,
    Arming,
    LifecycleAction,
    NotArmed,
    WrongConfirmation,
)
from tests.fake_clock import FakeClock

PAYLOAD, BOARD = LifecycleAction.PAYLOAD, LifecycleAction.BOARD


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(1000.0)


def test_an_armed_confirmed_execute_passes_once(clock: FakeClock) -> None:
    arming = Arming(clock)
    arming.arm(PAYLOAD)
    assert arming.armed is PAYLOAD
    clock.advance(29.9)
    arming.take(PAYLOAD, CONFIRMATION)
    assert arming.armed is None
    with pytest.raises(NotArmed, match="PAYLOAD is not armed"):
        arming.take(PAYLOAD, CONFIRMATION)  # a replay of the same execute


def test_without_an_arm_nothing_runs(clock: FakeClock) -> None:
    with pytest.raises(NotArmed):
        Arming(clock).take(BOARD, CONFIRMATION)


def test_an_expired_arm_is_refused_and_gone(clock: FakeClock) -> None:
    arming = Arming(clock, timeout_s=30.0)
    arming.arm(PAYLOAD)
    clock.advance(30.0)
    assert arming.armed is None
    with pytest.raises(ArmExpired, match=r"expired 0\.0 s ago"):
        arming.take(PAYLOAD, CONFIRMATION)
    with pytest.raises(NotArmed):
        arming.take(PAYLOAD, CONFIRMATION)


def test_another_action_is_refused_and_uses_the_arm_up(clock: FakeClock) -> None:
    arming = Arming(clock)
    arming.arm(LifecycleAction.WORKER)
    with pytest.raises(ArmedForOther) as refused:
        arming.take(BOARD, CONFIRMATION)
    assert refused.value.armed is LifecycleAction.WORKER
    assert refused.value.action is BOARD
    with pytest.raises(NotArmed):
        arming.take(LifecycleAction.WORKER, CONFIRMATION)


@pytest.mark.parametrize("confirm", [0, CONFIRMATION ^ 1, CONFIRMATION ^ 0x80000000])
def test_a_wrong_confirmation_is_refused_and_uses_the_arm_up(
    clock: FakeClock, confirm: int
) -> None:
    arming = Arming(clock)
    arming.arm(PAYLOAD)
    with pytest.raises(WrongConfirmation) as refused:
        arming.take(PAYLOAD, confirm)
    assert refused.value.received == confirm
    with pytest.raises(NotArmed):
        arming.take(PAYLOAD, CONFIRMATION)


def test_a_new_arm_replaces_the_last(clock: FakeClock) -> None:
    arming = Arming(clock)
    arming.arm(BOARD)
    clock.advance(20.0)
    arming.arm(PAYLOAD)
    clock.advance(20.0)  # 40 s after the first arm, 20 s after the second
    arming.take(PAYLOAD, CONFIRMATION)


def test_the_confirmation_spells_exec() -> None:
    assert CONFIRMATION.to_bytes(4, "big") == b"EXEC"


def test_a_zero_arm_time_is_refused(clock: FakeClock) -> None:
    with pytest.raises(ValueError, match="arm time"):
        Arming(clock, timeout_s=0)
