"""ST[5] event reporting: TM[5, severity] with the event's ID and data from the dictionary."""

from __future__ import annotations

import logging
from typing import Any

from flight.telemetry import TmPublisher
from spacelink.pus import EVENT_SERVICE
from telemetry_defs.model import Dictionary, Severity

log = logging.getLogger(__name__)

_LOG_LEVEL = {
    Severity.INFO: logging.INFO,
    Severity.LOW: logging.INFO,
    Severity.MEDIUM: logging.WARNING,
    Severity.HIGH: logging.ERROR,
}


class EventReporter:
    """Raises events: one TM packet each on the real-time channel, and a log line."""

    def __init__(self, dictionary: Dictionary, tm: TmPublisher) -> None:
        self._dictionary = dictionary
        self._tm = tm

    def raise_event(self, name: str, **values: Any) -> None:
        severity, data = self._dictionary.encode_event(name, values)
        self._tm.publish(EVENT_SERVICE, int(severity), data)
        log.log(_LOG_LEVEL[severity], "event %s %s", name, values)
