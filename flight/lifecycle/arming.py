"""Arm, then execute: a disruptive lifecycle action (a restart, a reboot) runs only when the same
action was armed shortly before and the execute carries the confirmation constant, so that no
single command, corrupted or replayed or sent by mistake, can restart or reboot.

Pure logic on a monotonic clock. An execute uses up the arm whether it runs or is refused: after
any mismatch the ground arms again.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass

# LIFECYCLE_EXECUTE's `confirm`: ASCII "EXEC". The dictionary's description of the argument
# gives the same number (checked by tests/unit/telemetry_defs/test_code_agreement.py).
CONFIRMATION = 0x45584543
ARM_TIMEOUT_S = 30.0


class LifecycleAction(enum.IntEnum):
    """Dictionary enum LifecycleAction."""

    WORKER = 1  # restart the inference worker
    PAYLOAD = 2  # restart the payload process
    BOARD = 3  # reboot the board
    WATCHDOG = 4  # stop kicking the watchdog: proves that the supervisor restarts the payload


class ArmRefused(Exception):
    """An execute that does not match a live arm."""

    def __init__(self, message: str, action: LifecycleAction) -> None:
        super().__init__(message)
        self.action = action


class NotArmed(ArmRefused):
    """Nothing is armed (never, or the arm was used by an earlier execute)."""


class ArmExpired(ArmRefused):
    """The arm for this action is older than the arm time."""


class ArmedForOther(ArmRefused):
    """Another action is armed."""

    def __init__(self, message: str, action: LifecycleAction, armed: LifecycleAction) -> None:
        super().__init__(message, action)
        self.armed = armed


class WrongConfirmation(ArmRefused):
    """The execute's confirmation is not the constant."""

    def __init__(self, message: str, action: LifecycleAction, received: int) -> None:
        super().__init__(message, action)
        self.received = received


@dataclass(frozen=True, slots=True)
class Arm:
    action: LifecycleAction
    expires: float  # monotonic seconds


class Arming:
    """At most one armed action at a time; a new arm replaces the previous one."""

    def __init__(self, monotonic: Callable[[], float], timeout_s: float = ARM_TIMEOUT_S) -> None:
        if timeout_s <= 0:
            raise ValueError(f"arm time must be above 0, found {timeout_s!r}")
        self._monotonic = monotonic
        self.timeout_s = timeout_s
        self._arm: Arm | None = None

    @property
    def armed(self) -> LifecycleAction | None:
        """The action armed now (None: none, or its arm expired)."""
        arm = self._arm
        return arm.action if arm is not None and self._monotonic() < arm.expires else None

    def arm(self, action: LifecycleAction) -> None:
        self._arm = Arm(action, self._monotonic() + self.timeout_s)

    def take(self, action: LifecycleAction, confirm: int) -> None:
        """Use up the arm for `action`: returns when it was armed, unexpired, and `confirm` is
        the constant; an ArmRefused says which of these failed."""
        arm, self._arm = self._arm, None
        if arm is None:
            raise NotArmed(f"{action.name} is not armed", action)
        late = self._monotonic() - arm.expires
        if late >= 0:
            raise ArmExpired(f"the arm of {arm.action.name} expired {late:.1f} s ago", action)
        if arm.action is not action:
            raise ArmedForOther(
                f"{arm.action.name} is armed, not {action.name}", action, arm.action
            )
        if confirm != CONFIRMATION:
            raise WrongConfirmation(
                f"confirmation 0x{confirm:08X} is not 0x{CONFIRMATION:08X}", action, confirm
            )
