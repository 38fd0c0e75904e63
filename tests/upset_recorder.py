"""An upset log that keeps what it is told, for the tests of what reports upsets."""

from __future__ import annotations

from flight.protection.upsets import Outcome, Upset, UpsetLocation, UpsetLog


class UpsetRecorder:
    """An upset log (`log`, for the code under test) and every upset it was told of since the
    last `take`; with a `location`, each must have been found there."""

    def __init__(self, location: UpsetLocation | None = None) -> None:
        self.log = UpsetLog()
        self.location = location
        self.found: list[Upset] = []
        self.log.subscribe(self.found.append)

    def take(self) -> list[tuple[Outcome, int]]:
        """(outcome, count) of each upset told since the last take."""
        found = [(u.outcome, u.count) for u in self.found]
        assert self.location is None or all(u.location is self.location for u in self.found)
        self.found.clear()
        return found
