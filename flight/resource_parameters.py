"""The PAYLOAD_STATUS resource parameters, from one resource sample per housekeeping report."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flight.resources import ResourceProbe, ResourceSample

# A housekeeping report reads six resource parameters one after another: they come from one
# sample, and CPU use is measured between samples, so a sample is reused for this long.
SAMPLE_REUSE_S = 0.5


class ResourceMonitor:
    """Serves the resource parameters from the latest sample of the board."""

    def __init__(
        self,
        state_dir: Path,
        probe: ResourceProbe | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._probe = probe or ResourceProbe(disk_path=state_dir)
        self._clock = clock
        self._sample: ResourceSample | None = None
        self._taken_at = float("-inf")

    def latest(self) -> ResourceSample:
        now = self._clock()
        if self._sample is None or now - self._taken_at >= SAMPLE_REUSE_S:
            self._sample = self._probe.sample()
            self._taken_at = now
        return self._sample

    def getters(self) -> dict[str, Callable[[], Any]]:
        return {
            "CPU_PROCESS": lambda: self.latest().cpu_process,
            "CPU_SYSTEM": lambda: self.latest().cpu_system,
            "MEMORY_USED": lambda: self.latest().memory_used,
            "MEMORY_PROCESS": lambda: self.latest().memory_process,
            "DISK_USED": lambda: self.latest().disk_used,
            "DISK_FREE": lambda: self.latest().disk_free,
        }
