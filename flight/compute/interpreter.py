"""The interpreter's thread switch interval, for every process that computes jobs.

A thread coming back from onnxruntime (or from the serial port) needs the GIL; with Python's
default of 5 ms it can wait that long behind a bookkeeping thread, which cost up to 15 % of an
8 ms job in a queue, in the payload's process and in an inference worker's alike.
"""

from __future__ import annotations

import sys

GIL_SWITCH_INTERVAL_S = 0.0005


def configure_interpreter() -> None:
    """Set the thread switch interval the job threads and the link loop need."""
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
