"""Small fakes shared by the ground's unit tests."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager


class FastClock:
    """Time that moves on by a second at every look: quiet periods (and a silent payload's
    timeouts) pass at once."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


@contextmanager
def umask(mask: int) -> Iterator[None]:
    """Run with the process umask at `mask`: file modes must then come from the code."""
    previous = os.umask(mask)
    try:
        yield
    finally:
        os.umask(previous)
