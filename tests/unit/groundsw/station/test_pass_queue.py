"""The pass queue: in order, each command until its expiry or its cancellation."""

from __future__ import annotations

from groundsw.session import CommandRecord
from groundsw.station.pass_queue import PassQueue, QueuedCommand
from spacelink.spacepacket import PusTc


def item(seq: int, expires_at: float) -> QueuedCommand:
    tc = PusTc(100, 17, 1, b"", seq_count=seq)
    return QueuedCommand(tc, CommandRecord(tc, 0.0), "ops", 0.0, expires_at)


def test_commands_leave_in_order_expire_and_cancel() -> None:
    q = PassQueue()
    for seq, expiry in ((1, 10.0), (2, 5.0), (3, 10.0), (4, 20.0)):
        q.add(item(seq, expiry))
    assert [i.tc.seq_count for i in q.expire(5.0)] == [2]
    cancelled = q.cancel(item(3, 0).request_id)
    assert cancelled is not None and cancelled.tc.seq_count == 3
    assert q.cancel(item(3, 0).request_id) is None
    assert [i.tc.seq_count for i in q.items()] == [1, 4]
    assert [i.tc.seq_count for i in q.take_all()] == [1, 4]
    assert len(q) == 0
