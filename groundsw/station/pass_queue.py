"""Commands held while the link is down: released in order when it comes back, each dropped
at its expiry or when its sender cancels it (pass operations)."""

from __future__ import annotations

from dataclasses import dataclass

from groundsw.session import CommandRecord
from spacelink.spacepacket import PusTc, RequestId


@dataclass(frozen=True)
class QueuedCommand:
    """A command waiting for the link: its packet, record, sender, when it was queued (UNIX
    time) and when it expires (the station's monotonic clock)."""

    tc: PusTc
    record: CommandRecord
    client: str
    queued_at: float
    expires_at: float

    @property
    def request_id(self) -> RequestId:
        return self.tc.request_id


class PassQueue:
    """The commands waiting, oldest first. Not thread-safe: the link owner holds its lock."""

    def __init__(self) -> None:
        self._items: list[QueuedCommand] = []

    def __len__(self) -> int:
        return len(self._items)

    def add(self, item: QueuedCommand) -> None:
        self._items.append(item)

    def items(self) -> list[QueuedCommand]:
        return list(self._items)

    def take_all(self) -> list[QueuedCommand]:
        """Every command waiting, in order, for release; the queue is then empty."""
        taken, self._items = self._items, []
        return taken

    def expire(self, now: float) -> list[QueuedCommand]:
        """Remove and return the commands whose expiry has come."""
        expired = [item for item in self._items if item.expires_at <= now]
        self._items = [item for item in self._items if item.expires_at > now]
        return expired

    def cancel(self, request_id: RequestId) -> QueuedCommand | None:
        """Remove the command of `request_id`; None when it is not waiting (any more)."""
        for item in self._items:
            if item.request_id == request_id:
                self._items.remove(item)
                return item
        return None
