"""What the payload tells the ground of its protection (an event for each upset and each late
scrub pass, the RADIATION_STATUS parameters) and the scrub settings the ground gives it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flight.parameters import ParameterPool
from flight.protection.scrubber import PassReport, Scrubber
from flight.protection.upsets import Outcome, Upset, UpsetLocation, UpsetLog
from flight.services.events import EventReporter


class ProtectionEvents:
    """Raises the events of the protection's findings: give `on_upset` to the upset log and
    `on_late_pass` to the scrubber."""

    def __init__(self, events: EventReporter) -> None:
        self._events = events

    def on_upset(self, upset: Upset) -> None:
        name = "UPSET_CORRECTED" if upset.outcome is Outcome.CORRECTED else "UPSET_UNCORRECTABLE"
        self._events.raise_event(
            name,
            location=int(upset.location),
            count=min(upset.count, 0xFFFF),
            where=upset.where.encode()[:255].decode(errors="ignore"),
        )

    def on_late_pass(self, report: PassReport, period_s: float) -> None:
        self._events.raise_event(
            "SCRUB_PASS_LATE",
            octets=min(report.octets, 0xFFFFFFFF),
            duration=int(report.duration_s),
            period=int(period_s),
        )


def protection_parameters(
    upsets: UpsetLog, scrubber: Scrubber, compute_counter: Callable[[str], float]
) -> dict[str, Callable[[], object]]:
    """Sources of the RADIATION_STATUS parameters that are not settings; `compute_counter` gives
    the compute's counters by name."""

    def at(location: UpsetLocation) -> Callable[[], int]:
        return lambda: upsets.at(location) & 0xFFFFFFFF

    return {
        "UPSETS_CORRECTED": lambda: upsets.total(Outcome.CORRECTED) & 0xFFFFFFFF,
        "UPSETS_UNCORRECTABLE": lambda: upsets.total(Outcome.UNCORRECTABLE) & 0xFFFFFFFF,
        **{f"UPSETS_{location.name}": at(location) for location in UpsetLocation},
        "SCRUB_PASSES": lambda: scrubber.passes & 0xFFFFFFFF,
        "LAST_SCRUB_AGE": lambda: min(int(scrubber.last_pass_age_s()), 0xFFFFFFFF),
        "WEIGHTS_PROTECTED": lambda: min(scrubber.protected_octets, 0xFFFFFFFF),
        "KNOWN_ANSWER_RUNS": lambda: int(compute_counter("answer_runs")) & 0xFFFFFFFF,
    }


def follow_scrub_settings(pool: ParameterPool, scrubber: Scrubber) -> None:
    """Give the scrubber its period, rate and known-answer interval now and whenever they are
    set."""

    def setting(attribute: str, scale: float) -> Callable[[Any], None]:
        def apply(raw: Any) -> None:
            setattr(scrubber, attribute, float(raw) * scale)
            # Else a scrubber asleep waits out the old period before it takes the new one.
            scrubber.wake()

        return apply

    pool.subscribe("SCRUB_PERIOD", setting("period_s", 1.0))
    pool.subscribe("SCRUB_RATE", setting("rate_octets_s", 1000.0))
    pool.subscribe("KNOWN_ANSWER_INTERVAL", setting("answer_interval_s", 1.0))
