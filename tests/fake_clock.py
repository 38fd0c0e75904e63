"""A clock for tests: time stands still until the test moves it."""

from __future__ import annotations


class FakeClock:
    """A clock (wall or monotonic) the test moves by hand; a float read is thread-safe enough."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
