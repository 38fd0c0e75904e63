"""One compute gate, two governors: the thermal governor and the power budget each set their own
duty and hold through a share of the gate, and the gate takes the stricter of them (the lower
duty; held when either holds), so that neither undoes what the other asked."""

from __future__ import annotations

import threading

from flight.thermal.duty import GateControl


class GateShares:
    """The shares of `gate`; every setting of a share sets the gate to the strictest of all."""

    def __init__(self, gate: GateControl) -> None:
        self.gate = gate
        self._lock = threading.Lock()
        self._wanted: dict[str, tuple[float, bool]] = {}
        self._applied: tuple[float, bool] | None = None

    def share(self, name: str) -> GateShare:
        """The share `name` (one per governor), allowing full duty until it is set."""
        with self._lock:
            self._wanted.setdefault(name, (1.0, False))
        return GateShare(self, name)

    def wanted(self, name: str) -> tuple[float, bool]:
        """What the share `name` last asked: (duty, held)."""
        with self._lock:
            return self._wanted[name]

    def set(self, name: str, duty: float, held: bool) -> None:
        # Under the lock: two governors setting at once must not leave the gate at the looser.
        with self._lock:
            self._wanted[name] = (duty, held)
            combined = (
                min(d for d, _ in self._wanted.values()),
                any(h for _, h in self._wanted.values()),
            )
            # The governors set their share at every poll; a worker's gate is a message away,
            # so only a change goes to it (a restarted worker is given the gate by its compute).
            if combined != self._applied:
                self.gate.allow(combined[0], held=combined[1])
                self._applied = combined


class GateShare:
    """A governor's `GateControl`: what it allows, combined with the others'; what it reads
    (duty, hold, busy time) is the gate's own."""

    def __init__(self, shares: GateShares, name: str) -> None:
        self._shares = shares
        self.name = name

    @property
    def duty(self) -> float:
        return self._shares.gate.duty

    @property
    def held(self) -> bool:
        return self._shares.gate.held

    def allow(self, duty: float, *, held: bool = False) -> None:
        self._shares.set(self.name, duty, held)

    def busy_seconds(self) -> float:
        return self._shares.gate.busy_seconds()
