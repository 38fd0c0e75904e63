"""Functional faults of the payload process itself (FAULT_INJECT PAYLOAD_CRASH, PAYLOAD_HANG),
struck by the main loop so that what follows is what a real one does: a crash ends the
process by a signal with nothing recorded; a hang stops the loop that reads the link and kicks
the watchdog, until the supervisor restarts the process."""

from __future__ import annotations

import enum
import logging
import os
import signal
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)

#: Time for the injection's report to go down before the fault strikes: the ground must hear
#: that it was accepted, or a test could not tell an injected fault from a real one.
REPORT_DRAIN_S = 1.0


class PayloadFault(enum.Enum):
    """A functional fault of the payload process."""

    CRASH = "crash"  # SIGSEGV, as a native fault in a library would
    HANG = "hang"  # the main loop stops for good


class SelfFaults:
    """The armed fault of the payload process, struck at the main loop's next pass."""

    def __init__(
        self,
        drain: Callable[[float], object],
        kill: Callable[[int, int], None] = os.kill,
        block: Callable[[], object] = lambda: threading.Event().wait(),
    ) -> None:
        """`drain`: waits until the downlink has sent what is queued (or the time passed)."""
        self._drain = drain
        self._kill = kill
        self._block = block
        self._armed: PayloadFault | None = None

    def arm(self, fault: PayloadFault) -> None:
        self._armed = fault

    def strike(self) -> None:
        """The main loop's hook: does nothing unless a fault is armed."""
        fault, self._armed = self._armed, None
        if fault is None:
            return
        self._drain(REPORT_DRAIN_S)
        log.critical("injected payload fault: %s", fault.value)
        if fault is PayloadFault.CRASH:
            self._kill(os.getpid(), signal.SIGSEGV)
        self._block()
