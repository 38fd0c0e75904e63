"""What systemd does with a Type=notify service that has Restart=always and WatchdogSec, as a
state machine: events in (started, notified, exited, time passing), actions out (spawn, signal,
record the exit). Pure logic; `hil/supervisor.py` runs it on a real process.

Read from systemd.service(5) and systemd.exec(5): the watchdog runs from READY=1 on; a missed
kick is answered with WatchdogSignal (SIGABRT, with SIGCONT so that a stopped process takes it),
then SIGKILL after TimeoutAbortSec; no READY=1 within TimeoutStartSec is answered with SIGTERM,
then SIGKILL after TimeoutStopSec; STOPPING=1 starts the stop timeout instead of the watchdog;
every end runs ExecStopPost with $SERVICE_RESULT, $EXIT_CODE and $EXIT_STATUS; the service is
started again RestartSec later unless it was stopped on purpose, and not more than
StartLimitBurst times within StartLimitIntervalSec (then it stays down: "start-limit-hit").
One deliberate difference: when a deliberate start's process ends before READY=1, the start
fails and is not retried (the bench's caller is told at once instead of waiting on retries).
"""

from __future__ import annotations

import enum
import signal
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass

# Signals after which systemd counts an exit as clean (systemd.service(5), SuccessExitStatus=).
CLEAN_SIGNALS = frozenset({signal.SIGHUP, signal.SIGINT, signal.SIGTERM, signal.SIGPIPE})


class Phase(enum.Enum):
    IDLE = "idle"  # never started, or stopped on purpose
    STARTING = "starting"  # spawned, waiting for READY=1
    RUNNING = "running"
    STOPPING = "stopping"  # a stop signal sent, or the service said STOPPING=1
    ABORTING = "aborting"  # the watchdog signal sent
    KILLING = "killing"  # SIGKILL sent
    AUTO_RESTART = "auto-restart"  # waiting RestartSec before the next start
    FAILED = "failed"  # not started again: start limit hit, or a deliberate start failed


@dataclass(frozen=True)
class ServicePolicy:
    """The unit's settings the supervisor honours (None: no watchdog)."""

    watchdog_s: float | None = 30.0  # WatchdogSec
    start_timeout_s: float = 30.0  # TimeoutStartSec
    stop_timeout_s: float = 10.0  # TimeoutStopSec
    abort_timeout_s: float = 5.0  # TimeoutAbortSec
    restart_delay_s: float = 0.5  # RestartSec
    start_limit_interval_s: float = 60.0  # StartLimitIntervalSec
    start_limit_burst: int = 5  # StartLimitBurst
    success_exit_statuses: tuple[int, ...] = ()  # SuccessExitStatus
    watchdog_signal: signal.Signals = signal.SIGABRT  # WatchdogSignal


@dataclass(frozen=True, slots=True)
class Spawn:
    """Start the service's process now."""


@dataclass(frozen=True, slots=True)
class SendSignal:
    signal: signal.Signals


@dataclass(frozen=True, slots=True)
class RecordExit:
    """Run ExecStopPost with these as $SERVICE_RESULT, $EXIT_CODE, $EXIT_STATUS."""

    result: str
    exit_code: str
    exit_status: str


Action = Spawn | SendSignal | RecordExit


def exit_words(returncode: int) -> tuple[str, str]:
    """$EXIT_CODE and $EXIT_STATUS of a Popen return code: ("exited", "3"), ("killed", "KILL").
    A core dump cannot be told from a Popen code: it shows as "killed"."""
    if returncode >= 0:
        return "exited", str(returncode)
    try:
        return "killed", signal.Signals(-returncode).name.removeprefix("SIG")
    except ValueError:
        return "killed", str(-returncode)


class ServiceMachine:
    """One service: its phase, its timers and what it did, driven by a monotonic clock."""

    def __init__(self, policy: ServicePolicy) -> None:
        self.policy = policy
        self.phase = Phase.IDLE
        self.deadline: float | None = None  # when tick() has something to do
        self.status = ""  # the last STATUS= the service sent
        self.failure = ""  # why the phase is FAILED
        self._result: str | None = None  # a result the supervisor decided (watchdog, timeout)
        self._deliberate = False  # stopped on purpose: not started again
        self._must_get_ready = False  # a deliberate start: fails rather than retries
        self._starts: deque[float] = deque()

    # -- commands -----------------------------------------------------------------------------

    def start(self, now: float) -> list[Action]:
        """A deliberate start (systemctl reset-failed + start)."""
        if self.phase not in (Phase.IDLE, Phase.FAILED):
            raise RuntimeError(f"cannot start: the service is {self.phase.value}")
        self._starts.clear()
        self._deliberate = False
        self._must_get_ready = True
        self.failure = ""
        return self._start(now)

    def stop(self, sig: signal.Signals, now: float, timeout_s: float | None = None) -> list[Action]:
        """A deliberate stop with `sig`, SIGKILL when the process is still there `timeout_s`
        later (default TimeoutStopSec); it is not started again."""
        self._deliberate = True
        if self.phase in (Phase.IDLE, Phase.FAILED):
            return []
        if self.phase is Phase.AUTO_RESTART:
            self._enter(Phase.IDLE, None)
            return []
        if sig == signal.SIGKILL:
            self._enter(Phase.KILLING, None)
            return [SendSignal(signal.SIGKILL)]
        if self.phase in (Phase.STARTING, Phase.RUNNING):
            stop_s = self.policy.stop_timeout_s if timeout_s is None else timeout_s
            self._enter(Phase.STOPPING, now + stop_s)
            return [SendSignal(sig), *_cont(sig)]
        return []  # stopping, aborting or killing already: its timers go on

    # -- what the process does ----------------------------------------------------------------

    def notified(self, message: Mapping[str, str], now: float) -> list[Action]:
        """An sd_notify datagram from the service's main process, as VAR -> value."""
        if "STATUS" in message:
            self.status = message["STATUS"]
        if self.phase is Phase.STARTING and message.get("READY") == "1":
            self._must_get_ready = False
            self._enter(Phase.RUNNING, self._watchdog_deadline(now))
        elif self.phase is Phase.RUNNING and message.get("WATCHDOG") == "1":
            self.deadline = self._watchdog_deadline(now)
        if self.phase is Phase.RUNNING and message.get("WATCHDOG") == "trigger":
            return self._watchdog_fired(now)
        if self.phase in (Phase.STARTING, Phase.RUNNING) and message.get("STOPPING") == "1":
            self._enter(Phase.STOPPING, now + self.policy.stop_timeout_s)
        return []

    def exited(self, returncode: int, now: float) -> list[Action]:
        """The main process ended with this Popen return code."""
        exit_code, exit_status = exit_words(returncode)
        result = self._result or self._result_of(returncode)
        actions: list[Action] = [RecordExit(result, exit_code, exit_status)]
        self._result = None
        if self._deliberate:
            self._enter(Phase.IDLE, None)
        elif self._must_get_ready:
            self._must_get_ready = False
            self.failure = f"ended before READY=1 ({result}: {exit_code} {exit_status})"
            self._enter(Phase.FAILED, None)
        else:
            self._enter(Phase.AUTO_RESTART, now + self.policy.restart_delay_s)
        return actions

    def tick(self, now: float) -> list[Action]:
        """Whatever a timer that ran out asks for."""
        if self.deadline is None or now < self.deadline:
            return []
        if self.phase is Phase.STARTING:
            self._result = "timeout"
            self._enter(Phase.STOPPING, now + self.policy.stop_timeout_s)
            return [SendSignal(signal.SIGTERM), *_cont(signal.SIGTERM)]
        if self.phase is Phase.RUNNING:
            return self._watchdog_fired(now)
        if self.phase in (Phase.STOPPING, Phase.ABORTING):
            if self.phase is Phase.STOPPING:
                self._result = self._result or "timeout"
            self._enter(Phase.KILLING, None)
            return [SendSignal(signal.SIGKILL)]
        if self.phase is Phase.AUTO_RESTART:
            return self._start(now)
        self.deadline = None
        return []

    # -- inside ---------------------------------------------------------------------------------

    def _start(self, now: float) -> list[Action]:
        window = now - self.policy.start_limit_interval_s
        while self._starts and self._starts[0] <= window:
            self._starts.popleft()
        if len(self._starts) >= self.policy.start_limit_burst:
            self.failure = (
                f"start-limit-hit: {len(self._starts)} starts within "
                f"{self.policy.start_limit_interval_s:g} s"
            )
            self._enter(Phase.FAILED, None)
            return []
        self._starts.append(now)
        self._enter(Phase.STARTING, now + self.policy.start_timeout_s)
        return [Spawn()]

    def _watchdog_fired(self, now: float) -> list[Action]:
        self._result = "watchdog"
        self._enter(Phase.ABORTING, now + self.policy.abort_timeout_s)
        sig = self.policy.watchdog_signal
        return [SendSignal(sig), *_cont(sig)]

    def _watchdog_deadline(self, now: float) -> float | None:
        watchdog = self.policy.watchdog_s
        return None if watchdog is None else now + watchdog

    def _result_of(self, returncode: int) -> str:
        clean = (
            returncode == 0
            or returncode in self.policy.success_exit_statuses
            or (returncode < 0 and -returncode in {int(s) for s in CLEAN_SIGNALS})
        )
        if clean:
            # Type=notify: a process that ends well before READY=1 broke the protocol.
            return "protocol" if self.phase is Phase.STARTING else "success"
        if returncode > 0:
            return "exit-code"
        return "signal"

    def _enter(self, phase: Phase, deadline: float | None) -> None:
        self.phase = phase
        self.deadline = deadline


def _cont(sig: signal.Signals) -> list[Action]:
    """systemd follows a signal with SIGCONT, so that a stopped process acts on it."""
    return [] if sig in (signal.SIGKILL, signal.SIGCONT) else [SendSignal(signal.SIGCONT)]
