"""A file of number pairs that the bench rewrites and the payload follows: the sunlight intervals
(flight/power/sunlight.py) and the baseplate profile (flight/thermal/baseplate.py).

One pair a line, `#` comments and blank lines ignored. The bench replaces the file whole (a
write to a temporary file, then a rename), so that the payload never reads half of one; the
payload reads it again when its modification time or size changes, and keeps what it last read
when a new content cannot be parsed or the file is gone.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")


class FollowedFile(Generic[T]):
    """What `parse` makes of the file at `path`, parsed again whenever the file changes:
    `initial` until it is first read; the last good content when a new one is wrong (`parse`
    raises ValueError) or the file cannot be read. `what` names the file in the log."""

    def __init__(self, path: Path, parse: Callable[[str], T], initial: T, what: str) -> None:
        self.path = path
        self._parse = parse
        self._current = initial
        self._what = what
        self._stamp: tuple[int, int] | None = None
        self._warned = False

    def current(self) -> T:
        """The content as last read, after reading the file again if it changed."""
        try:
            status = os.stat(self.path)
        except OSError as exc:
            if not self._warned:  # once: the bench may write it only later
                log.warning("%s %s: %s: the last content kept", self._what, self.path, exc)
                self._warned = True
            return self._current
        stamp = (status.st_mtime_ns, status.st_size)
        if stamp == self._stamp:
            return self._current
        self._stamp = stamp
        try:
            self._current = self._parse(self.path.read_text())
        except (OSError, ValueError) as exc:  # ValueError includes a UnicodeDecodeError
            log.error("%s %s not read (%s): its last content kept", self._what, self.path, exc)
            return self._current
        self._warned = False
        log.info("%s %s read", self._what, self.path)
        return self._current


def number_pairs(text: str) -> Iterator[tuple[int, str, float, float]]:
    """(line number, line, first, second) for each line of `text` with content; both NaN where
    the line is not two numbers, so that the caller's check of finite values refuses it naming
    the line."""
    for number, line in enumerate(text.splitlines(), 1):
        content = line.split("#", 1)[0].strip()
        if not content:
            continue
        parts = content.split()
        try:
            first, second = (float(p) for p in parts) if len(parts) == 2 else (math.nan, math.nan)
        except ValueError:
            first = second = math.nan
        yield number, line, first, second


def replace_lines(path: Path, lines: Iterable[str]) -> None:
    """Replace the file `path` whole with `lines` (for the bench): a reader sees the old content
    or the new one, never a mix."""
    partial = path.with_name(path.name + ".new")
    partial.write_text("".join(f"{line}\n" for line in lines))
    partial.replace(path)
