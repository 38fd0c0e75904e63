"""tm live shows the latest values: a housekeeping report the payload kept and sent again on
VC 1 (retrieved after a cut) is old and must not replace what came in real time."""

from __future__ import annotations

from typing import Any

from groundsw.live import LiveMonitor
from groundsw.session import ReceivedTm
from spacelink.cdstime import CdsTime
from spacelink.spacepacket import PusTm
from telemetry_defs.loader import default_dictionary

D = default_dictionary()
STATUS = D.housekeeping["PAYLOAD_STATUS"]


def report(uptime: int, vcid: int) -> ReceivedTm:
    fields: dict[str, Any] = {p.name: 0 for p in STATUS.parameters}
    fields["UPTIME"] = uptime
    tm = PusTm(D.apid, 3, 25, D.encode_housekeeping(STATUS.sid, fields), time=CdsTime.epoch())
    return ReceivedTm(tm, tm.pack(), 0.0, 0, vcid)


def test_retrieved_reports_do_not_replace_the_latest_values() -> None:
    monitor = LiveMonitor(D, lambda text: None)
    assert monitor.feed(report(500, 0)) is not None
    assert monitor.feed(report(100, 1)) is None
    assert monitor.table.latest["UPTIME"].raw == 500
