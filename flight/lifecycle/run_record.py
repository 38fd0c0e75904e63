"""The run record: how the last run of the payload ended, and restarts counted by reason, kept
in protected state in the state directory (three voted copies, each file replaced atomically
and synced: flight/protection/triplicate.py).

Written by the payload (RUNNING at start; CLEAN, COMMAND_RESTART, COMMAND_REBOOT at its own
orderly ends) and by the supervisor's exit recorder (flight/lifecycle/record_exit.py) after the
payload's process is gone, never by both at once: the recorder takes the state directory's lock.
"""

from __future__ import annotations

import logging
from pathlib import Path

from flight.lifecycle.reset_reason import (
    PreviousRun,
    ResetReason,
    RunState,
    ServiceExit,
    previous_run,
    reason_of_exit,
)
from flight.protection.triplicate import MAX_TEXT_OCTETS, TripleStore
from flight.protection.upsets import UpsetLog

log = logging.getLogger(__name__)

RUN_STATE_DIR = "lifecycle"
_STATE, _REASON, _DETAIL, _BOOT = "run_state", "end_reason", "end_detail", "boot_id"


def _count_key(reason: ResetReason) -> str:
    return f"restarts_{reason.name.lower()}"


def _text(value: str) -> str:
    """Cut to what a protected text value holds, on a character boundary."""
    return value.encode()[:MAX_TEXT_OCTETS].decode(errors="ignore")


class RunLedger:
    """The run record and the restart counters of one state directory."""

    def __init__(self, state_dir: Path, upsets: UpsetLog | None = None) -> None:
        """OSError when the state directory cannot be written."""
        defaults: dict[str, str | int] = {_STATE: "", _REASON: "", _DETAIL: "", _BOOT: ""}
        defaults |= {_count_key(reason): 0 for reason in ResetReason}
        self._store = TripleStore(state_dir / RUN_STATE_DIR, defaults, upsets, name="run record")

    @property
    def state(self) -> RunState:
        try:
            return RunState(self._store.get(_STATE))
        except ValueError:  # not one of ours: as if nothing was recorded
            return RunState.NONE

    @property
    def reason(self) -> str:
        return str(self._store.get(_REASON))

    def begin(self, boot_id: str) -> PreviousRun:
        """At start: why the previous run ended, counted; this run recorded as RUNNING."""
        previous = previous_run(
            self.state,
            self.reason,
            str(self._store.get(_DETAIL)),
            str(self._store.get(_BOOT)),
            boot_id,
        )
        key = _count_key(previous.reason)
        self._store.update(
            {
                _STATE: RunState.RUNNING.value,
                _REASON: "",
                _DETAIL: "",
                _BOOT: _text(boot_id),
                key: int(self._store.get(key)) + 1,
            }
        )
        return previous

    def end(self, reason: ResetReason, detail: str) -> bool:
        """Record this run's end; False (nothing written) when an end is recorded already: a
        commanded reboot stays the reason when the system then stops the payload."""
        if self.state is not RunState.RUNNING:
            log.info("run end %s not recorded: %s is", reason.name, self.reason or "none")
            return False
        self._store.update(
            {_STATE: RunState.ENDED.value, _REASON: reason.name, _DETAIL: _text(detail)}
        )
        return True

    def resume(self) -> None:
        """Back to RUNNING: an end recorded ahead (a reboot) did not happen."""
        self._store.update({_STATE: RunState.RUNNING.value, _REASON: "", _DETAIL: ""})

    def record_exit(self, seen: ServiceExit) -> ResetReason | None:
        """The supervisor's report of a run that ended without recording why; None when the run
        recorded its own end (that stands) or no run is recorded."""
        if self.state is not RunState.RUNNING:
            return None
        reason = reason_of_exit(seen)
        self.end(reason, f"supervisor: {seen.describe()}")
        return reason

    def counts(self) -> dict[ResetReason, int]:
        """Starts of the payload by the reason the run before them ended."""
        values = self._store.values()
        return {reason: int(values[_count_key(reason)]) for reason in ResetReason}
