"""Why the previous run of the payload ended: the reasons, and how they are told apart.

Pure logic. The payload records its own orderly ends (a clean stop, a commanded restart or
reboot); the supervisor's exit recorder records what it saw of the others; whatever is left
unrecorded is told from the kernel's boot id (same boot: a crash; another boot: the board
restarted under the payload).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class ResetReason(enum.IntEnum):
    """Why the previous run ended (dictionary enum ResetReason)."""

    UNKNOWN = 0
    CLEAN = 1
    COMMAND_RESTART = 2
    COMMAND_REBOOT = 3
    WATCHDOG = 4
    CRASH = 5
    POWER = 6


class RunState(enum.Enum):
    """What the run record says of the run it describes."""

    NONE = ""  # no run recorded yet on this state directory
    RUNNING = "RUNNING"  # started, and nothing recorded its end (yet)
    ENDED = "ENDED"  # its end is recorded, with a reason


@dataclass(frozen=True, slots=True)
class PreviousRun:
    """The previous run's reason, and what is known of it in words."""

    reason: ResetReason
    detail: str


@dataclass(frozen=True, slots=True)
class ServiceExit:
    """What a supervisor saw of the payload's end: systemd's $SERVICE_RESULT, $EXIT_CODE
    ("exited", "killed", "dumped") and $EXIT_STATUS (a number, or a signal name: "KILL")."""

    result: str
    exit_code: str = ""
    exit_status: str = ""

    def describe(self) -> str:
        how = " ".join(part for part in (self.exit_code, self.exit_status) if part)
        return f"{self.result}: {how}" if how else self.result


# systemd.exec(5), $SERVICE_RESULT. "timeout": no READY within TimeoutStartSec or no exit within
# TimeoutStopSec; like a missed kick, the supervisor killed a payload that did not answer in time.
_BY_SERVICE_RESULT = {
    "success": ResetReason.CLEAN,  # exited 0, or by SIGTERM/SIGINT/SIGHUP/SIGPIPE before recording
    "watchdog": ResetReason.WATCHDOG,
    "timeout": ResetReason.WATCHDOG,
    "exit-code": ResetReason.CRASH,
    "signal": ResetReason.CRASH,
    "core-dump": ResetReason.CRASH,
    "protocol": ResetReason.CRASH,  # e.g. exited before it said READY=1
}
SERVICE_RESULTS = (*_BY_SERVICE_RESULT, "start-limit-hit", "resources")


def reason_of_exit(seen: ServiceExit) -> ResetReason:
    """The reason a supervisor's report gives; UNKNOWN for a result that says nothing of the
    payload's own end ("resources", "start-limit-hit": it did not run)."""
    return _BY_SERVICE_RESULT.get(seen.result, ResetReason.UNKNOWN)


def previous_run(
    state: RunState, reason: str, detail: str, recorded_boot: str, current_boot: str
) -> PreviousRun:
    """The previous run's reason from its record and the kernel's boot ids (either may be ""
    where the kernel gives none: then the boot is taken as the same)."""
    if state is RunState.NONE:
        return PreviousRun(ResetReason.UNKNOWN, "no earlier run recorded")
    recorded = ResetReason.__members__.get(reason) if state is RunState.ENDED else None
    if state is RunState.ENDED and recorded is None:
        return PreviousRun(ResetReason.UNKNOWN, f"unreadable end record {reason!r}")
    if recorded_boot and current_boot and recorded_boot != current_boot:
        if recorded is ResetReason.COMMAND_REBOOT:
            return PreviousRun(recorded, detail or "rebooted by command")
        before = f"ended {recorded.name}" if recorded is not None else "was still running"
        return PreviousRun(
            ResetReason.POWER,
            f"the board restarted without a commanded reboot; the run before {before}",
        )
    if recorded is None:
        return PreviousRun(ResetReason.CRASH, "ended without recording why (same boot)")
    if recorded is ResetReason.COMMAND_REBOOT:
        return PreviousRun(recorded, f"{detail}; the board did not restart".lstrip("; "))
    return PreviousRun(recorded, detail)
