"""The thermal monitor: a thread that reads the sensors, asks the governor, and carries out its
decisions (compute gate, job queue, safe mode, power mode, events); and the housekeeping view of
all that."""

from __future__ import annotations

import collections
import enum
import logging
import math
import threading
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Protocol

from flight.poll_thread import PollThread
from flight.thermal.duty import GateControl
from flight.thermal.governor import Decision, Governor, Level, Thresholds
from flight.thermal.power import PowerControl, PowerModeError
from flight.thermal.readings import Reading, Sensor, ThermalSource

log = logging.getLogger(__name__)

# The window of DUTY_MEASURED.
DUTY_WINDOW_S = 10.0
# The POWER_MODE value when the payload does not control it.
POWER_MODE_UNKNOWN = 255

LEVEL_EVENTS = {
    Level.NOMINAL: "THERMAL_NOMINAL",
    Level.THROTTLED: "THERMAL_THROTTLED",
    Level.PAUSED: "THERMAL_PAUSED",
    Level.CRITICAL: "THERMAL_CRITICAL",
}


class SafeModeReason(enum.IntEnum):
    """Why safe mode was entered or left (dictionary enum SafeModeReason)."""

    THERMAL = 1
    GROUND = 2


class SafeModeRefused(Exception):
    """Safe mode cannot be left now; the message says why."""


class ThermalActions(Protocol):
    """What the monitor asks of the job runner."""

    def hold_jobs(self, hold: bool) -> None:
        """Hold (or release) the queue: no job starts while held."""
        ...

    def requeue_started(self) -> int:
        """Stop the started jobs and queue them again; how many there were."""
        ...


class SafeModeStore(Protocol):
    """Where safe mode is kept across restarts (the protected state)."""

    def safe_mode(self) -> SafeModeReason | None: ...

    def set_safe_mode(self, reason: SafeModeReason | None) -> None: ...


class EventSink(Protocol):
    def raise_event(self, name: str, **values: object) -> None: ...


@dataclass(frozen=True, slots=True)
class PowerModes:
    """nvpmodel mode numbers for each state (None: left as it is)."""

    nominal: int | None = None
    throttled: int | None = None
    safe: int | None = None

    def wanted(self, level: Level, safe: bool) -> int | None:
        if safe or level == Level.CRITICAL:
            return self.safe
        if level >= Level.THROTTLED:
            return self.throttled
        return self.nominal


class ThermalMonitor:
    """Polls the thermal source every `poll_s` and governs the payload by it."""

    def __init__(
        self,
        source: ThermalSource,
        gate: GateControl,
        actions: ThermalActions,
        events: EventSink,
        store: SafeModeStore,
        power: PowerControl,
        modes: PowerModes | None = None,
        *,
        poll_s: float = 0.5,
        monotonic: Callable[[], float] = time.monotonic,
        governor: Governor | None = None,
    ) -> None:
        self.source = source
        self.gate = gate
        self.actions = actions
        self.events = events
        self.store = store
        self.power = power
        self.modes = modes or PowerModes()
        self.poll_s = poll_s
        self.governor = governor or Governor()
        self.used: frozenset[Sensor] = frozenset(Sensor)
        self.auto_exit = False
        self._monotonic = monotonic
        self._lock = threading.RLock()
        self._poller = PollThread("thermal-monitor", self.poll_once, lambda: self.poll_s)
        self._last_poll: float | None = None
        self._readings: dict[Sensor, Reading] = {}
        self._decision: Decision | None = None
        self._safe = store.safe_mode()
        self._held: bool | None = None
        self.peak_c = -math.inf
        self.time_in: dict[Level, float] = dict.fromkeys(Level, 0.0)
        self._duty_samples: collections.deque[tuple[float, float]] = collections.deque()
        self._power_wanted: int | None = None
        self.power_mode: int | None = None

    # -- lifetime -----------------------------------------------------------------------------

    def start(self) -> None:
        """First poll now (the queue is held from the start if it must be), then the thread."""
        if self._safe is not None:
            log.warning("payload starts in safe mode (%s): jobs held", self._safe.name)
        self.power_mode = self.power.current()
        self.poll_once()
        self._poller.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._poller.stop(timeout)

    @property
    def thread(self) -> threading.Thread | None:
        """The polling thread, once started (for the health checks)."""
        return self._poller.thread

    # -- settings from the parameters ---------------------------------------------------------

    def set_thresholds(self, thresholds: Thresholds) -> None:
        with self._lock:
            self.governor.thresholds = thresholds

    def set_used(self, sensors: Collection[Sensor]) -> None:
        with self._lock:
            self.used = frozenset(sensors)

    # -- one cycle ------------------------------------------------------------------------------

    def poll_once(self) -> None:
        """Read, decide, act. Never raises: a failure holds the jobs until a poll succeeds."""
        try:
            self._poll()
        except Exception:  # the payload must not compute blind because of a bug here
            log.exception("thermal monitor: poll failed; jobs held")
            self.gate.allow(self.governor.duty, held=True)
            self.actions.hold_jobs(True)
            self._held = True

    def _poll(self) -> None:
        with self._lock:
            now = self._monotonic()
            real_dt = 0.0 if self._last_poll is None else now - self._last_poll
            readings = self.source.read()
            decision = self.governor.update(readings, real_dt * self.source.time_scale, self.used)
            # Only now: the time before a failed poll counts at the next good one.
            self._last_poll = now
            previous = self._decision
            self._readings, self._decision = readings, decision
            if previous is not None:
                self.time_in[previous.level] += real_dt
            self._sample_duty(now)
            for reading in readings.values():
                if reading.ok and reading.sensor in self.used and reading.celsius is not None:
                    self.peak_c = max(self.peak_c, reading.celsius)
        self._report_sensors(decision)
        if decision.changed:
            self._report_level(decision)
        if decision.level == Level.CRITICAL and self._safe is None:
            self.enter_safe(SafeModeReason.THERMAL)
        elif self._safe is SafeModeReason.THERMAL and self.auto_exit and self._cool(decision):
            self.exit_safe(SafeModeReason.THERMAL)
        self._apply(decision)

    def _cool(self, decision: Decision) -> bool:
        t = self.governor.thresholds
        return (
            not (decision.faults & self.used)
            and decision.temperature < t.throttle_c - t.hysteresis_c
        )

    def _apply(self, decision: Decision) -> None:
        # Under the lock: a safe mode entered by command meanwhile must not be released here.
        with self._lock:
            safe = self._safe is not None
            held = decision.held or safe
            self.gate.allow(self.governor.duty, held=held)
            if held != self._held:
                self.actions.hold_jobs(held)
                self._held = held
        self._set_power(self.modes.wanted(decision.level, safe))

    def _set_power(self, mode: int | None) -> None:
        if mode is None or mode == self._power_wanted:
            return
        self._power_wanted = mode  # one attempt per change: a failing nvpmodel is not hammered
        previous = self.power_mode
        if mode == previous:  # already there (at start, typically): nothing to change
            return
        try:
            self.power.set(mode)
        except PowerModeError as exc:
            log.error("power mode %d not set: %s", mode, exc)
            self.events.raise_event(
                "POWER_MODE_FAILED",
                mode=mode,
                detail=str(exc).encode()[:255].decode(errors="ignore"),
            )
            return
        self.power_mode = mode
        self.events.raise_event(
            "POWER_MODE_CHANGED",
            previous=POWER_MODE_UNKNOWN if previous is None else previous,
            mode=mode,
        )

    def _report_sensors(self, decision: Decision) -> None:
        for reading in decision.failed:
            fault = reading.fault
            log.warning("sensor %s: %s (%s)", reading.sensor.name, fault, reading.detail)
            self.events.raise_event(
                "THERMAL_SENSOR_FAILED",
                sensor=int(reading.sensor),
                fault=int(fault) if fault is not None else 0,
                detail=reading.detail.encode()[:255].decode(errors="ignore"),
            )
        for reading in decision.recovered:
            log.info("sensor %s reads again: %.1f C", reading.sensor.name, reading.celsius)
            self.events.raise_event(
                "THERMAL_SENSOR_RECOVERED",
                sensor=int(reading.sensor),
                temperature=reading.celsius,
            )

    def _report_level(self, decision: Decision) -> None:
        log.warning(
            "thermal level %s -> %s: %s at %.1f C",
            decision.previous.name,
            decision.level.name,
            decision.sensor.name,
            decision.temperature,
        )
        self.events.raise_event(
            LEVEL_EVENTS[decision.level],
            previous=int(decision.previous),
            sensor=int(decision.sensor),
            temperature=decision.temperature,
        )

    # -- safe mode ------------------------------------------------------------------------------

    @property
    def safe(self) -> SafeModeReason | None:
        """Why the payload is in safe mode, or None."""
        return self._safe

    def enter_safe(self, reason: SafeModeReason) -> int:
        """Hold the queue, stop and requeue the started jobs; how many were requeued."""
        with self._lock:
            if self._safe is not None:
                return 0
            self._safe = reason
            self.store.set_safe_mode(reason)
            self.gate.allow(self.governor.duty, held=True)
            self.actions.hold_jobs(True)
            self._held = True
        requeued = self.actions.requeue_started()
        log.warning("safe mode entered (%s): %d job(s) queued again", reason.name, requeued)
        self.events.raise_event(
            "SAFE_MODE_ENTERED", reason=int(reason), jobs_requeued=min(requeued, 255)
        )
        if self._decision is not None:
            self._set_power(self.modes.wanted(self._decision.level, True))
        return requeued

    def why_not_exit(self) -> str | None:
        """Why safe mode cannot be left now, or None when it can."""
        decision = self._decision
        if decision is None:
            return "no temperature read yet"
        if decision.level >= Level.PAUSED:
            return (
                f"thermal level {decision.level.name}: {decision.sensor.name} at "
                f"{decision.temperature:.1f} C"
            )
        failed = sorted(decision.faults & self.used)
        if failed:
            return "no reading from " + ", ".join(sensor.name for sensor in failed)
        return None

    def exit_safe(self, reason: SafeModeReason) -> None:
        """Leave safe mode (SafeModeRefused when it cannot be left now)."""
        with self._lock:
            if self._safe is None:
                return
            why = self.why_not_exit()
            if why is not None:
                raise SafeModeRefused(why)
            self._safe = None
            self.store.set_safe_mode(None)
            decision = self._decision
        log.warning("safe mode left (%s)", reason.name)
        self.events.raise_event("SAFE_MODE_EXITED", reason=int(reason))
        if decision is not None:
            self._apply(decision)

    # -- what housekeeping shows ------------------------------------------------------------

    def temperature(self, sensor: Sensor) -> float:
        reading = self._readings.get(sensor)
        if reading is None or not reading.ok or reading.celsius is None:
            return math.nan
        return reading.celsius

    @property
    def level(self) -> Level:
        return self._decision.level if self._decision is not None else Level.NOMINAL

    @property
    def fault_mask(self) -> int:
        decision = self._decision
        if decision is None:
            return 0
        return sum(1 << sensor for sensor in decision.faults)

    def duty_measured(self) -> float:
        """Share of the last DUTY_WINDOW_S spent in inferences."""
        samples = self._duty_samples
        if len(samples) < 2:
            return 0.0
        (t0, b0), (t1, b1) = samples[0], samples[-1]
        return min(1.0, max(0.0, (b1 - b0) / (t1 - t0))) if t1 > t0 else 0.0

    def _sample_duty(self, now: float) -> None:
        samples = self._duty_samples
        samples.append((now, self.gate.busy_seconds()))
        while len(samples) > 2 and now - samples[1][0] >= DUTY_WINDOW_S:
            samples.popleft()

    def seconds_in(self, level: Level) -> float:
        """Time at `level` since start, the current stay included."""
        with self._lock:
            total = self.time_in[level]
            current = self._decision
            if current is not None and current.level == level and self._last_poll is not None:
                total += self._monotonic() - self._last_poll
            return total
