"""Service 134, payload lifecycle: LIFECYCLE_ARM and LIFECYCLE_EXECUTE (arm, then execute)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from flight.commanding import CommandContext, CommandError, named_failure
from flight.lifecycle.arming import (
    ArmedForOther,
    ArmExpired,
    Arming,
    ArmRefused,
    LifecycleAction,
    NotArmed,
    WrongConfirmation,
)
from flight.lifecycle.board import RebootFailed
from flight.lifecycle.manager import (
    ActionUnavailable,
    LifecycleManager,
    NoWatchdog,
    NoWorker,
    RebootNotAllowed,
    RebootNotConfigured,
    WorkerRestartFailed,
)
from flight.router import CommandRouter
from telemetry_defs.model import Dictionary

log = logging.getLogger(__name__)

_UNAVAILABLE = {
    NoWorker: "LIFECYCLE_NO_WORKER",
    RebootNotAllowed: "LIFECYCLE_REBOOT_NOT_ALLOWED",
    RebootNotConfigured: "LIFECYCLE_REBOOT_NOT_CONFIGURED",
    NoWatchdog: "LIFECYCLE_NO_WATCHDOG",
}


class LifecycleService:
    """TC[134,1] LIFECYCLE_ARM and TC[134,2] LIFECYCLE_EXECUTE."""

    def __init__(
        self,
        dictionary: Dictionary,
        manager: LifecycleManager,
        arming: Arming,
        raise_event: Callable[..., None],
    ) -> None:
        self._d = dictionary
        self.manager = manager
        self.arming = arming
        self._raise_event = raise_event

    def register(self, router: CommandRouter) -> None:
        router.register_command(
            self._d.command("LIFECYCLE_ARM"), self._arm, check_start=self._check_arm
        )
        router.register_command(
            self._d.command("LIFECYCLE_EXECUTE"), self._execute, check_start=self._take_arm
        )

    def _unavailable(self, exc: ActionUnavailable) -> CommandError:
        return named_failure(self._d, _UNAVAILABLE[type(exc)], str(exc))

    def _check_arm(self, args: dict[str, Any]) -> None:
        try:
            self.manager.check_available(LifecycleAction(args["action"]))
        except ActionUnavailable as exc:
            raise self._unavailable(exc) from None

    def _arm(self, args: dict[str, Any], ctx: CommandContext) -> None:
        action = LifecycleAction(args["action"])
        self.arming.arm(action)
        log.warning("lifecycle action %s armed for %g s", action.name, self.arming.timeout_s)
        self._raise_event("LIFECYCLE_ARMED", action=int(action), seconds=int(self.arming.timeout_s))

    def _take_arm(self, args: dict[str, Any]) -> None:
        """At the start of execution: the arm is used up, and must have matched."""
        action = LifecycleAction(args["action"])
        try:
            self.arming.take(action, args["confirm"])
        except ArmRefused as exc:
            raise self._refusal(exc) from None
        try:
            self.manager.check_available(action)
        except ActionUnavailable as exc:
            raise self._unavailable(exc) from None

    def _refusal(self, exc: ArmRefused) -> CommandError:
        message, action = str(exc), int(exc.action)
        if isinstance(exc, ArmedForOther):
            return named_failure(
                self._d, "LIFECYCLE_ARMED_FOR_OTHER", message, action=action, armed=int(exc.armed)
            )
        if isinstance(exc, WrongConfirmation):
            return named_failure(
                self._d, "LIFECYCLE_BAD_CONFIRMATION", message, received=exc.received
            )
        name = "LIFECYCLE_ARM_EXPIRED" if isinstance(exc, ArmExpired) else "LIFECYCLE_NOT_ARMED"
        assert isinstance(exc, ArmExpired | NotArmed)
        return named_failure(self._d, name, message, action=action)

    def _execute(self, args: dict[str, Any], ctx: CommandContext) -> None:
        action = LifecycleAction(args["action"])
        self._raise_event("LIFECYCLE_EXECUTING", action=int(action))
        try:
            self.manager.perform(action)
        except ActionUnavailable as exc:
            raise self._unavailable(exc) from None
        except RebootFailed as exc:
            raise named_failure(self._d, "LIFECYCLE_REBOOT_FAILED", str(exc)) from None
        except WorkerRestartFailed as exc:
            raise named_failure(self._d, "LIFECYCLE_WORKER_RESTART_FAILED", str(exc)) from None
