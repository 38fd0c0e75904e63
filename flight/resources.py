"""Interim resource probe (to be replaced by the full /proc-based one)."""

from __future__ import annotations

import resource
import shutil
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ResourceSample:
    cpu_process: int
    cpu_system: int
    memory_used: int
    memory_process: int
    disk_used: int
    disk_free: int


class ResourceProbe:
    def __init__(self, disk_path: Path) -> None:
        self.disk_path = disk_path

    def sample(self) -> ResourceSample:
        du = shutil.disk_usage(self.disk_path)
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return ResourceSample(0, 0, 0, rss, du.used * 1000 // du.total, du.free // 2**20)
