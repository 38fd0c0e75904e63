"""Service 132, thermal management: safe mode entered and left by command."""

from __future__ import annotations

from typing import Any

from flight.commanding import CommandContext, named_failure
from flight.router import CommandRouter
from flight.thermal.monitor import SafeModeReason, SafeModeRefused, ThermalMonitor
from telemetry_defs.model import Dictionary


class ThermalService:
    """TC[132,1] SAFE_MODE_ENTER and TC[132,2] SAFE_MODE_EXIT."""

    def __init__(self, dictionary: Dictionary, monitor: ThermalMonitor) -> None:
        self._d = dictionary
        self.monitor = monitor

    def register(self, router: CommandRouter) -> None:
        router.register_command(self._d.command("SAFE_MODE_ENTER"), self._enter)
        router.register_command(
            self._d.command("SAFE_MODE_EXIT"), self._exit, check_start=self._check_exit
        )

    def _enter(self, args: dict[str, Any], ctx: CommandContext) -> None:
        self.monitor.enter_safe(SafeModeReason.GROUND)

    def _check_exit(self, args: Any) -> None:
        if self.monitor.safe is None:
            return  # nothing to leave: the command succeeds without effect
        why = self.monitor.why_not_exit()
        if why is not None:
            raise named_failure(self._d, "THERMAL_NOT_CLEARED", why)

    def _exit(self, args: dict[str, Any], ctx: CommandContext) -> None:
        try:
            self.monitor.exit_safe(SafeModeReason.GROUND)
        except SafeModeRefused as exc:  # hotter since the start check
            raise named_failure(self._d, "THERMAL_NOT_CLEARED", str(exc)) from exc
