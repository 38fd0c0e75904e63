"""CPU, memory and disk use of the board and of the payload manager, from /proc and statvfs.

An unreadable source (not Linux, a missing file) reads as 0 rather than failing: these are
telemetry, and the payload must keep running without them.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

_U16 = 0xFFFF
_U32 = 0xFFFFFFFF


@dataclass(frozen=True)
class ResourceSample:
    """Raw values in the dictionary's wire units (per mille, KiB, MiB)."""

    cpu_process: int
    cpu_system: int
    memory_used: int
    memory_process: int
    disk_used: int
    disk_free: int


class ResourceProbe:
    """Samples the board; CPU use is measured between one sample and the next."""

    def __init__(
        self,
        disk_path: Path,
        proc_root: Path = Path("/proc"),
        clock: Callable[[], float] = time.monotonic,
        process_seconds: Callable[[], float] = lambda: sum(os.times()[:2]),
    ) -> None:
        self.disk_path = disk_path
        self.proc = proc_root
        self._clock = clock
        self._process_seconds = process_seconds
        self._last = (clock(), process_seconds(), self._system_ticks())

    def _read(self, name: str) -> str:
        try:
            return (self.proc / name).read_text()
        except OSError:
            return ""

    def _system_ticks(self) -> tuple[int, int]:
        """(busy, total) jiffies of all CPUs."""
        for line in self._read("stat").splitlines():
            if line.startswith("cpu "):
                fields = [int(x) for x in line.split()[1:]]
                idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
                return sum(fields) - idle, sum(fields)
        return 0, 0

    def _memory_used(self) -> int:
        info: dict[str, int] = {}
        for line in self._read("meminfo").splitlines():
            key, _, rest = line.partition(":")
            if rest.split():
                info[key] = int(rest.split()[0])
        total, available = info.get("MemTotal", 0), info.get("MemAvailable", 0)
        return (total - available) * 1000 // total if total else 0

    def _rss_kib(self) -> int:
        fields = self._read("self/statm").split()
        return int(fields[1]) * os.sysconf("SC_PAGE_SIZE") // 1024 if len(fields) > 1 else 0

    def sample(self) -> ResourceSample:
        now, process, (busy, total) = self._clock(), self._process_seconds(), self._system_ticks()
        then, process_then, (busy_then, total_then) = self._last
        self._last = (now, process, (busy, total))
        elapsed = now - then
        cpu_process = round((process - process_then) / elapsed * 1000) if elapsed > 0 else 0
        ticks = total - total_then
        cpu_system = (busy - busy_then) * 1000 // ticks if ticks > 0 else 0
        try:
            disk = shutil.disk_usage(self.disk_path)
            disk_used, disk_free = disk.used * 1000 // disk.total, disk.free // 2**20
        except OSError:
            disk_used = disk_free = 0
        return ResourceSample(
            cpu_process=min(max(cpu_process, 0), _U16),
            cpu_system=min(max(cpu_system, 0), 1000),
            memory_used=min(self._memory_used(), 1000),
            memory_process=min(self._rss_kib(), _U32),
            disk_used=min(disk_used, 1000),
            disk_free=min(disk_free, _U32),
        )
