"""Service 131, radiation protection: a scrub pass on demand, and the fault-injection test
command (refused unless the configuration enables test commands)."""

from __future__ import annotations

from typing import Any

from flight.commanding import DEFERRED, CommandContext, named_failure
from flight.protection.faults import FaultModel
from flight.protection.injection import FaultInjector, FaultTarget, TargetMissing
from flight.protection.scrubber import PassReport, Scrubber
from flight.router import CommandRouter
from flight.services.events import EventReporter
from spacelink.pus import Stage
from telemetry_defs.model import Dictionary


class ProtectionService:
    """TC[131,x]: SCRUB_NOW and FAULT_INJECT."""

    def __init__(
        self,
        dictionary: Dictionary,
        scrubber: Scrubber,
        injector: FaultInjector,
        events: EventReporter,
        *,
        test_commands: bool,
    ) -> None:
        self._d = dictionary
        self.scrubber = scrubber
        self.injector = injector
        self._events = events
        self.test_commands = test_commands
        self._scrub_report = dictionary.packets["SCRUB_REPORT"]
        self._inject_report = dictionary.packets["FAULT_INJECT_REPORT"]

    def register(self, router: CommandRouter) -> None:
        router.register_command(self._d.command("SCRUB_NOW"), self._scrub_now)
        router.register_command(
            self._d.command("FAULT_INJECT"), self._inject, check_start=self._check_enabled
        )

    def _scrub_now(self, args: dict[str, Any], ctx: CommandContext) -> object:
        def done(report: PassReport) -> None:
            ctx.reply_packet(
                self._scrub_report,
                {
                    "octets": min(report.octets, 0xFFFFFFFF),
                    "tensors": min(report.tensors, 0xFFFFFFFF),
                    "model_files": min(report.model_files, 0xFFFF),
                    "detected": min(report.detected, 0xFFFF),
                    "corrected": min(report.corrected, 0xFFFF),
                    "uncorrectable": min(report.uncorrectable, 0xFFFF),
                    "duration": min(int(report.duration_s * 1000), 0xFFFFFFFF),
                },
            )
            ctx.reports.success(Stage.COMPLETION)

        # Runs on the scrubber's thread: a pass over large models must not hold the link.
        self.scrubber.request_pass(done)
        return DEFERRED

    def _check_enabled(self, args: Any) -> None:
        if not self.test_commands:
            raise named_failure(
                self._d,
                "TEST_COMMANDS_DISABLED",
                "test commands are disabled ([protection] test_commands)",
            )

    def _inject(self, args: dict[str, Any], ctx: CommandContext) -> None:
        target, model = FaultTarget(args["target"]), FaultModel(args["fault"])
        try:
            injected = self.injector.inject(
                target, model, args["model"], args["version"], args["seed"]
            )
        except TargetMissing as exc:
            raise named_failure(self._d, "FAULT_TARGET_MISSING", str(exc)) from exc
        where = injected.where.encode()[:255].decode(errors="ignore")
        self._events.raise_event(
            "FAULT_INJECTED", target=int(target), fault=int(model), where=where
        )
        ctx.reply_packet(
            self._inject_report,
            {
                "target": int(target),
                "fault": int(model),
                "bits": min(injected.bits, 0xFFFF),
                "where": where,
            },
        )
