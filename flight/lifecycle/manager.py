"""The payload process's side of its supervision, wired once for the main loop: the run record,
the health monitor and the watchdog kicks, the supervisor's notify socket, and the lifecycle
actions the ground commands (service 134)."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, MutableMapping
from pathlib import Path
from typing import Any

from flight.config import LifecycleConfig
from flight.lifecycle.arming import LifecycleAction
from flight.lifecycle.board import Board, LinuxBoard, RebootFailed
from flight.lifecycle.health import Finding, HealthMonitor
from flight.lifecycle.reset_reason import PreviousRun, ResetReason
from flight.lifecycle.run_record import RunLedger
from flight.lifecycle.sd_notify import Notifier, take_settings
from flight.lifecycle.watchdog import KickTarget, NotifyTarget, WatchdogDevice, WatchdogKicker
from flight.protection.upsets import UpsetLog

log = logging.getLogger(__name__)

# The exit status of a commanded restart (sysexits' EX_TEMPFAIL): any supervisor that restarts
# on failure restarts it; the systemd unit lists it as a success (SuccessExitStatus).
RESTART_EXIT_STATUS = 75
# A reboot command returns once the reboot is under way and the system stops the payload soon
# after; still running this long after, the reboot did not happen.
REBOOT_GRACE_S = 120.0
WATCHDOG_TEST_CHECK = "watchdog test"
MAX_EVENT_TEXT = 255


class ActionUnavailable(Exception):
    """The action cannot run on this payload (base of the precise reasons)."""


class NoWorker(ActionUnavailable):
    """No inference worker to restart (no restart hook provided)."""


class RebootNotAllowed(ActionUnavailable):
    """[lifecycle] allow_reboot is false."""


class RebootNotConfigured(ActionUnavailable):
    """[lifecycle] reboot_command is empty."""


class NoWatchdog(ActionUnavailable):
    """Nothing is kicked: a watchdog test would prove nothing and restart nothing."""


class ActionFailed(Exception):
    """The action ran and failed (base of the precise reasons)."""


class WorkerRestartFailed(ActionFailed):
    """The worker restart hook raised."""


def _text(value: str) -> str:
    return value.encode()[:MAX_EVENT_TEXT].decode(errors="ignore")


class LifecycleManager:
    """Built by the payload at start (the previous run's reason is known from then on), ticked by
    its main loop, and told when the link is served and when the payload stops.

    For the parts of the payload: `health.register(name, check)` adds a health check that the
    watchdog waits on; `restart_worker` is the hook LifecycleAction.WORKER calls."""

    def __init__(
        self,
        ledger: RunLedger,
        previous: PreviousRun,
        board: Board,
        settings: LifecycleConfig,
        raise_event: Callable[..., None],
        stop: Callable[[], None],
        monotonic: Callable[[], float],
        notifier: Notifier | None = None,
        watchdog_s: float | None = None,
        device: KickTarget | None = None,
    ) -> None:
        """`watchdog_s`: the supervisor's watchdog time ($WATCHDOG_USEC), kicked through
        `notifier`; `device`: a hardware watchdog."""
        self.ledger = ledger
        self.previous = previous
        self.board = board
        self.settings = settings
        self._raise_event = raise_event
        self._stop = stop
        self._monotonic = monotonic
        self.notifier = notifier
        self.health = HealthMonitor()
        self.restart_worker: Callable[[], None] | None = None
        self.restart_counts = ledger.counts()
        targets: list[KickTarget] = [] if device is None else [device]
        interval = settings.kick_interval_s
        if notifier is not None and watchdog_s is not None:
            targets.append(NotifyTarget(notifier))
            # systemd asks for a kick every half of the watchdog time at least.
            interval = min(interval, watchdog_s / 2)
        self.kicker = WatchdogKicker(
            self.health,
            targets,
            interval,
            monotonic,
            self._withheld,
            self._kick_failed,
            self._resumed,
        )
        self.restart_requested = False
        self._reboot_asked_at: float | None = None

    @classmethod
    def open(
        cls,
        state_dir: Path,
        settings: LifecycleConfig,
        upsets: UpsetLog,
        raise_event: Callable[..., None],
        stop: Callable[[], None],
        monotonic: Callable[[], float],
        *,
        board: Board | None = None,
        environ: MutableMapping[str, str] | None = None,
    ) -> LifecycleManager:
        """Read why the previous run ended and record this one as running; take the
        supervisor's variables from `environ` (default: this process's). OSError when the state
        directory cannot be written; NotifyError for a $NOTIFY_SOCKET that cannot be used."""
        board = board or LinuxBoard()
        notify = take_settings(os.environ if environ is None else environ, os.getpid())
        ledger = RunLedger(state_dir, upsets)
        previous = ledger.begin(board.boot_id())
        log.info("previous run ended: %s (%s)", previous.reason.name, previous.detail)
        device = (
            WatchdogDevice(Path(settings.watchdog_device)) if settings.watchdog_device else None
        )
        notifier = None if notify.socket is None else Notifier(notify.socket)
        return cls(
            ledger,
            previous,
            board,
            settings,
            raise_event,
            stop,
            monotonic,
            notifier,
            notify.watchdog_s,
            device,
        )

    # -- what the payload reports ------------------------------------------------------------

    def started_values(self) -> dict[str, Any]:
        """PAYLOAD_STARTED's lifecycle arguments."""
        return {
            "reset_reason": int(self.previous.reason),
            "board_uptime": int(self.board.uptime_s()) & 0xFFFFFFFF,
            "previous": _text(self.previous.detail),
        }

    def getters(self) -> dict[str, Callable[[], object]]:
        def count(reason: ResetReason) -> Callable[[], int]:
            return lambda: self.restart_counts[reason] & 0xFFFFFFFF

        return {
            "RESET_REASON": lambda: int(self.previous.reason),
            "BOARD_UPTIME": lambda: int(self.board.uptime_s()) & 0xFFFFFFFF,
            "WATCHDOG_STATUS": lambda: int(self.kicker.status),
            **{f"RESTARTS_{reason.name}": count(reason) for reason in ResetReason},
        }

    # -- the main loop -----------------------------------------------------------------------

    def serving(self, status: str) -> None:
        """The link is served: READY=1 to the supervisor, and the first kick."""
        if self.notifier is not None:
            self.notifier.ready(status)
        self.kicker.tick()

    def tick(self) -> None:
        self.kicker.tick()
        asked = self._reboot_asked_at
        if asked is not None and self._monotonic() - asked >= REBOOT_GRACE_S:
            self._reboot_asked_at = None
            self.ledger.resume()
            log.error("the board has not rebooted %.0f s after the reboot command", REBOOT_GRACE_S)
            self._raise_event("REBOOT_OVERDUE", seconds=int(REBOOT_GRACE_S))

    @property
    def stop_reason(self) -> str:
        """PAYLOAD_STOPPING's reason (dictionary enum StopReason)."""
        return "COMMAND_RESTART" if self.restart_requested else "SIGNAL"

    def stopping(self) -> None:
        if self.notifier is not None:
            self.notifier.stopping(f"stopping: {self.stop_reason.lower().replace('_', ' ')}")

    def finish(self, port_error: BaseException | None) -> int | None:
        """Record how this run ends and let go of the watchdog; the exit status a commanded
        restart asks for (None: the payload's own)."""
        if self.restart_requested:
            reason, detail = ResetReason.COMMAND_RESTART, "restart commanded by the ground"
        elif port_error is not None:
            reason, detail = ResetReason.CRASH, _text(f"serial port failed: {port_error}")
        else:
            reason, detail = ResetReason.CLEAN, "stopped by a signal"
        try:
            self.ledger.end(reason, detail)
        except OSError as exc:  # the stop goes on: the next start reports it as a crash
            log.error("cannot record the run's end (%s): %s", reason.name, exc)
        # Every end that reaches here is deliberate: the hardware watchdog must not fire while the
        # supervisor restarts the payload.
        self.kicker.close(disarm=True)
        if self.notifier is not None:
            self.notifier.close()
        return RESTART_EXIT_STATUS if self.restart_requested else None

    # -- lifecycle actions -------------------------------------------------------------------

    def check_available(self, action: LifecycleAction) -> None:
        """ActionUnavailable (its precise subclass) when `action` cannot run here."""
        if action is LifecycleAction.WORKER and self.restart_worker is None:
            raise NoWorker("no inference worker to restart")
        if action is LifecycleAction.BOARD:
            if not self.settings.allow_reboot:
                raise RebootNotAllowed("reboot is not allowed ([lifecycle] allow_reboot)")
            if not self.settings.reboot_command:
                raise RebootNotConfigured("no reboot command ([lifecycle] reboot_command)")
        if action is LifecycleAction.WATCHDOG and not self.kicker.targets:
            raise NoWatchdog("no watchdog is kicked: no device, no supervisor's watchdog")

    def perform(self, action: LifecycleAction) -> None:
        """Carry out an action that was armed and confirmed. PAYLOAD only asks the main loop to
        stop, so that the command's completion goes down first; ActionUnavailable, ActionFailed
        or RebootFailed when it cannot be done."""
        self.check_available(action)
        log.warning("lifecycle action %s", action.name)
        if action is LifecycleAction.WORKER:
            hook = self.restart_worker
            assert hook is not None  # checked above
            try:
                hook()
            except Exception as exc:
                raise WorkerRestartFailed(f"worker restart failed: {exc}") from exc
        elif action is LifecycleAction.PAYLOAD:
            self.restart_requested = True
            self._stop()
        elif action is LifecycleAction.BOARD:
            self._reboot()
        else:
            self.health.register(
                WATCHDOG_TEST_CHECK, lambda: "watchdog test commanded by the ground"
            )

    def _reboot(self) -> None:
        # Recorded first: the command may take the board down before it returns.
        self.ledger.end(ResetReason.COMMAND_REBOOT, "reboot commanded by the ground")
        try:
            self.board.reboot(list(self.settings.reboot_command))
        except RebootFailed:
            self.ledger.resume()
            raise
        self._reboot_asked_at = self._monotonic()

    # -- kicks -------------------------------------------------------------------------------

    def _withheld(self, finding: Finding) -> None:
        self._raise_event(
            "WATCHDOG_WITHHELD", check=_text(finding.check), reason=_text(finding.reason)
        )
        if self.notifier is not None:
            self.notifier.status(f"watchdog withheld: {finding.check}: {finding.reason}")

    def _resumed(self, finding: Finding, seconds: float) -> None:
        self._raise_event(
            "WATCHDOG_RESUMED", check=_text(finding.check), seconds=min(int(seconds), 0xFFFF)
        )
        if self.notifier is not None:
            self.notifier.status(f"watchdog kicked again: {finding.check} healthy")

    def _kick_failed(self, target: str, why: str) -> None:
        self._raise_event("WATCHDOG_KICK_FAILED", target=_text(target), detail=_text(why))
