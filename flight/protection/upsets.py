"""Upsets found by every protection mechanism: counted by location and outcome, and reported.

Each check (scrubber, known answer, vote, job store, protected state, result files) tells an
`UpsetLog` what it found; the log counts it and calls its listeners (the event reporter, the
protected-state store that keeps the lifetime totals). Checks never raise events themselves, so
the counters and the events cannot disagree.
"""

from __future__ import annotations

import enum
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)


class UpsetLocation(enum.IntEnum):
    """Where an upset was found (dictionary enum UpsetLocation)."""

    WEIGHTS = 0
    MODEL_FILE = 1
    KNOWN_ANSWER = 2
    OUTPUT = 3
    INPUT = 4
    STATE = 5
    JOB_STORE = 6
    RESULT_FILE = 7
    SCHEDULE = 8


class Outcome(enum.Enum):
    """What became of an upset once found."""

    CORRECTED = "corrected"
    UNCORRECTABLE = "uncorrectable"


@dataclass(frozen=True, slots=True)
class Upset:
    """One finding: `count` tensors, copies, runs or records at `location`, named by `where`."""

    location: UpsetLocation
    outcome: Outcome
    where: str
    count: int = 1


Listener = Callable[[Upset], None]


class UpsetLog:
    """Counts of upsets by location and outcome, and the listeners told of each one."""

    def __init__(self, initial: dict[str, int] | None = None) -> None:
        """`initial`: counts carried over from earlier boots, keyed as `counts()` gives them."""
        self._lock = threading.Lock()
        self._counts: dict[str, int] = dict.fromkeys(_keys(), 0)
        for key, value in (initial or {}).items():
            if key in self._counts:
                self._counts[key] = int(value)
        self._listeners: list[Listener] = []

    def carry_over(self, earlier: dict[str, int]) -> None:
        """Add counts of earlier boots (keyed as `counts()` gives them) to this boot's."""
        with self._lock:
            for key, value in earlier.items():
                if key in self._counts:
                    self._counts[key] += int(value)

    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def report(self, upset: Upset) -> None:
        """Count `upset` and tell every listener; a listener's failure is logged, not raised."""
        with self._lock:
            self._counts[_key(upset.location, upset.outcome)] += upset.count
        level = logging.WARNING if upset.outcome is Outcome.CORRECTED else logging.ERROR
        log.log(level, "upset %s at %s (%d): %s", upset.outcome.value, upset.location.name,
                upset.count, upset.where)  # fmt: skip
        for listener in self._listeners:
            try:
                listener(upset)
            except Exception:  # one listener's bug must not hide the upset from the others
                log.exception("upset listener failed")

    def corrected(self, location: UpsetLocation, where: str, count: int = 1) -> None:
        self.report(Upset(location, Outcome.CORRECTED, where, count))

    def uncorrectable(self, location: UpsetLocation, where: str, count: int = 1) -> None:
        self.report(Upset(location, Outcome.UNCORRECTABLE, where, count))

    def counts(self) -> dict[str, int]:
        """Every counter, keyed `<location>.<outcome>` (e.g. `WEIGHTS.corrected`)."""
        with self._lock:
            return dict(self._counts)

    def total(self, outcome: Outcome) -> int:
        with self._lock:
            return sum(self._counts[_key(loc, outcome)] for loc in UpsetLocation)

    def at(self, location: UpsetLocation) -> int:
        """Upsets found at `location`, corrected or not."""
        with self._lock:
            return sum(self._counts[_key(location, outcome)] for outcome in Outcome)


def _key(location: UpsetLocation, outcome: Outcome) -> str:
    return f"{location.name}.{outcome.value}"


def _keys() -> list[str]:
    return [_key(location, outcome) for location in UpsetLocation for outcome in Outcome]
