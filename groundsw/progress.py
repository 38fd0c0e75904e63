"""Transfer progress for the operator: a bar on a terminal, a line per tenth in logs and pipes,
and the rate and summary texts both use."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

Print = Callable[[str], None]
Clock = Callable[[], float]


def rate_text(octets: float, seconds: float) -> str:
    """Octets per second in B/s, kB/s or MB/s (decimal units)."""
    rate = octets / seconds if seconds > 0 else 0.0
    if rate >= 1e6:
        return f"{rate / 1e6:.1f} MB/s"
    if rate >= 1e3:
        return f"{rate / 1e3:.1f} kB/s"
    return f"{rate:.0f} B/s"


def progress_text(label: str, done: int, total: int, moved: int, seconds: float) -> str:
    """`upload model.onnx: 40% 419430/1048576 octets, 9.8 kB/s` (rate of `moved` this run)."""
    percent = min(round(100 * done / total), 99 if done < total else 100) if total else 100
    return f"{label}: {percent}% {done}/{total} octets, {rate_text(moved, seconds)}"


def summary_text(label: str, moved: int, seconds: float, already: int = 0) -> str:
    """The final line: octets moved over the link, time and rate."""
    resumed = f" ({already} octets were there already)" if already else ""
    return f"{label}: {moved} octets in {seconds:.1f} s, {rate_text(moved, seconds)}{resumed}"


class Progress(Protocol):
    def update(self, done: int) -> None: ...

    def close(self) -> None: ...


class PlainProgress:
    """A line each time another tenth of the transfer is done (for logs and pipes)."""

    def __init__(self, label: str, total: int, out: Print, clock: Clock, start: int = 0) -> None:
        self.label = label
        self.total = total
        self._out = out
        self._clock = clock
        self._t0 = clock()
        self._start = start
        self._tenth = self._tenths(start)

    def _tenths(self, done: int) -> int:
        return 10 * done // self.total if self.total else 10

    def update(self, done: int) -> None:
        tenth = self._tenths(done)
        if tenth > self._tenth:
            self._tenth = tenth
            moved = max(0, done - self._start)
            self._out(progress_text(self.label, done, self.total, moved, self._clock() - self._t0))

    def close(self) -> None:
        pass


class RichProgress:
    """A progress bar on the terminal."""

    def __init__(self, label: str, total: int, start: int = 0) -> None:
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )
        from rich.progress import Progress as Bar

        self._bar = Bar(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
        )
        self._task = self._bar.add_task(label, total=total, completed=start)
        self._bar.start()

    def update(self, done: int) -> None:
        self._bar.update(self._task, completed=done)

    def close(self) -> None:
        self._bar.stop()


def make_progress(
    label: str, total: int, out: Print, *, tty: bool, clock: Clock = time.monotonic, start: int = 0
) -> Progress:
    if tty:
        return RichProgress(label, total, start)
    return PlainProgress(label, total, out, clock, start)
