"""How long to wait before starting a worker again: exponential, capped, forgotten when healthy."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class BackoffPolicy:
    """The n-th loss in a row waits first_s * factor**(n-1), at most max_s; a worker that stayed
    up for reset_after_s, or answered a compute call, starts the count again."""

    first_s: float = 0.1
    factor: float = 2.0
    max_s: float = 30.0
    reset_after_s: float = 60.0


class RestartBackoff:
    """Counts losses in a row; `lost()` says how long to wait before the next start."""

    def __init__(self, policy: BackoffPolicy, clock: Callable[[], float] = time.monotonic) -> None:
        self.policy = policy
        self._clock = clock
        self._losses = 0
        self._ready_at: float | None = None

    def ready(self) -> None:
        """A worker came up (and is healthy from now on)."""
        self._ready_at = self._clock()

    def proven(self) -> None:
        """The worker did useful work (a compute call answered): a loss after this is not part
        of a start loop, and waits the first delay again. A worker that a fault takes down once
        every job must come back at once, not after max_s."""
        self._losses = 0

    def lost(self) -> float:
        """A worker was lost (or failed to start): the delay before the next start."""
        ready_at = self._ready_at
        if ready_at is not None and self._clock() - ready_at >= self.policy.reset_after_s:
            self._losses = 0
        self._ready_at = None
        self._losses += 1
        policy = self.policy
        return float(min(policy.max_s, policy.first_s * policy.factor ** (self._losses - 1)))

    @property
    def losses_in_a_row(self) -> int:
        return self._losses
