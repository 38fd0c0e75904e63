"""The power monitor: a thread that reads the power system, asks the governor, and carries out
its decisions (its share of the compute gate, the job queue looked at again, events); what the
job queue asks of the power budget (the `PowerPolicy`), and the housekeeping view of all that."""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from typing import Protocol

from flight.poll_thread import PollThread
from flight.power.governor import (
    NO_JOB,
    HoldReason,
    PowerDecision,
    PowerGovernor,
    PowerLevel,
    PowerSettings,
)
from flight.power.readings import PowerReadings, PowerSource, Quantity
from flight.thermal.duty import GateControl

log = logging.getLogger(__name__)

LEVEL_EVENTS = {
    PowerLevel.NOMINAL: "POWER_NOMINAL",
    PowerLevel.SLOWED: "POWER_SLOWED",
    PowerLevel.LOW: "POWER_LOW",
    PowerLevel.FLOOR: "POWER_FLOOR",
}


class EventSink(Protocol):
    def raise_event(self, name: str, **values: object) -> None: ...


class JobQueue(Protocol):
    """What the monitor asks of the job runner: look at the queue again (the budget changed)."""

    def wake(self) -> None: ...


class PowerMonitor:
    """Polls the power source every `poll_s` and governs the compute by it."""

    def __init__(
        self,
        source: PowerSource,
        governor: PowerGovernor,
        gate: GateControl,
        queue: JobQueue,
        events: EventSink,
        *,
        poll_s: float = 1.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.source = source
        self.governor = governor
        self.gate = gate
        self.queue = queue
        self.events = events
        self.poll_s = poll_s
        self._monotonic = monotonic
        self._lock = threading.RLock()
        self._poller = PollThread("power-monitor", self.poll_once, lambda: self.poll_s)
        self._decision: PowerDecision | None = None
        # Set while a poll fails (a bug): nothing starts until one succeeds.
        self._broken = False
        self._eclipse_since: float | None = None
        self.lowest_soc_pct = math.inf

    # -- lifetime -----------------------------------------------------------------------------

    def start(self) -> None:
        """First poll now (jobs that must wait for the battery wait from the start), then the
        thread."""
        self.poll_once()
        self._poller.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._poller.stop(timeout)

    @property
    def thread(self) -> threading.Thread | None:
        """The polling thread, once started (for the health checks)."""
        return self._poller.thread

    def set_settings(self, settings: PowerSettings) -> None:
        """New levels and priorities: the priorities hold at once, the levels from the next
        poll; the queue is looked at again under them."""
        with self._lock:
            self.governor.settings = settings
        self.queue.wake()

    # -- one cycle ------------------------------------------------------------------------------

    def poll_once(self) -> None:
        """Read, decide, act. Never raises: a failure holds the compute until a poll succeeds."""
        try:
            self._poll()
        except Exception:  # the payload must not drain its battery blind because of a bug here
            log.exception("power monitor: poll failed; compute held")
            with self._lock:
                self._broken = True
            self.gate.allow(0.0, held=True)

    def _poll(self) -> None:
        with self._lock:
            readings = self.source.read()
            decision = self.governor.update(readings)
            previous = self._decision
            self._decision = decision
            self._broken = False
            if readings.soc_pct is not None:
                self.lowest_soc_pct = min(self.lowest_soc_pct, readings.soc_pct)
        self._report_readings(decision)
        if decision.changed:
            self._report_level(decision)
        self._report_sunlight(decision)
        self.gate.allow(decision.duty, held=decision.held)
        if previous is None or _policy(previous) != _policy(decision):
            self.queue.wake()  # held jobs may start now, or must be looked at under new limits

    def _report_readings(self, decision: PowerDecision) -> None:
        for quantity, fault in decision.failed:
            log.warning("power reading %s: %s (%s)", quantity.name, fault.fault.name, fault.detail)
            self.events.raise_event(
                "POWER_READING_FAILED",
                quantity=int(quantity),
                fault=int(fault.fault),
                detail=fault.detail.encode()[:255].decode(errors="ignore"),
            )
        for quantity in decision.recovered:
            log.info("power reading %s reads again", quantity.name)
            self.events.raise_event("POWER_READING_RECOVERED", quantity=int(quantity))

    def _report_level(self, decision: PowerDecision) -> None:
        soc = _nan_if_none(decision.soc_pct)
        log.warning("power level %s -> %s at SoC %.1f %%", decision.previous.name,
                    decision.level.name, soc)  # fmt: skip
        self.events.raise_event(
            LEVEL_EVENTS[decision.level], previous=int(decision.previous), soc=soc
        )

    def _report_sunlight(self, decision: PowerDecision) -> None:
        soc = _nan_if_none(decision.soc_pct)
        if decision.eclipse_entered:
            self._eclipse_since = self._monotonic()
            log.info("eclipse entered at SoC %.1f %%", soc)
            self.events.raise_event("ECLIPSE_ENTERED", soc=soc)
        elif decision.eclipse_left:
            since, self._eclipse_since = self._eclipse_since, None
            lasted = 0 if since is None else int(self._monotonic() - since)
            log.info("eclipse left after %d s at SoC %.1f %%", lasted, soc)
            self.events.raise_event("ECLIPSE_LEFT", soc=soc, duration=min(lasted, 0xFFFFFFFF))

    # -- the PowerPolicy the job queue asks -------------------------------------------------

    def min_priority(self) -> int:
        with self._lock:
            return NO_JOB if self._broken else self.governor.min_priority()

    def refusal(self, priority: int, seconds: float) -> HoldReason | None:
        with self._lock:
            if self._broken:
                return HoldReason.NO_READING
            return self.governor.refusal(priority, seconds)

    def soc_pct(self) -> float:
        readings = self.readings
        return _nan_if_none(None if readings is None else readings.soc_pct)

    # -- what housekeeping shows ------------------------------------------------------------

    @property
    def readings(self) -> PowerReadings | None:
        return self.governor.readings

    @property
    def level(self) -> PowerLevel:
        decision = self._decision
        return decision.level if decision is not None else PowerLevel.NOMINAL

    @property
    def fault_mask(self) -> int:
        decision = self._decision
        if decision is None:
            return 0
        return sum(1 << quantity for quantity in decision.faults)

    def quantity(self, quantity: Quantity) -> float:
        """The last reading of a quantity (NaN: none); SUNLIGHT as 1 or 0."""
        r = self.readings
        if r is None:
            return math.nan
        value = {
            Quantity.SOC: r.soc_pct,
            Quantity.VOLTAGE: r.battery_v,
            Quantity.CURRENT: r.battery_a,
            Quantity.SOLAR: r.solar_w,
            Quantity.PAYLOAD: r.payload_w,
            Quantity.SUNLIGHT: None if r.sunlit is None else float(r.sunlit),
        }[quantity]
        return _nan_if_none(value)


def _policy(decision: PowerDecision) -> tuple[PowerLevel, int, bool | None]:
    return decision.level, decision.min_priority, decision.sunlit


def _nan_if_none(value: float | None) -> float:
    return math.nan if value is None else value
