"""Pass operations: a pass begins when frames come after a silence and ends when they stop;
each is logged with what it carried, gap recovery and the result fetcher are told."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

import pytest

from groundsw.station.config import PassSettings
from groundsw.station.owned_link import LinkState
from groundsw.station.pass_operations import PassOperations
from spacelink.spacepacket import PusTm
from telemetry_defs.loader import default_dictionary
from tests.fake_clock import FakeClock

D = default_dictionary()
IDLE = LinkState(
    payload="fm1", port="/dev/pts/9", up=False, last_frame_age=None, clcw=None, cop1="active",
    alert=None, frames=0, frame_errors=0, frames_lost=0, tm_coding="rs",
    rs_corrected_symbols=0, rs_uncorrectable=0, packets=0, packet_errors=0, commands=0,
    queued=0, clients=0, refusals=None,
)  # fmt: skip


class FakeGaps:
    def __init__(self) -> None:
        self.told: list[bool] = []
        self.open = 0

    def contact_changed(self, up: bool) -> None:
        self.told.append(up)

    def open_gaps(self) -> list[object]:
        return [object()] * self.open


class FakeSession:
    def __init__(self) -> None:
        self.sinks: list[Any] = []

    def add_packet_sink(self, sink: Any) -> None:
        self.sinks.append(sink)


class FakeLink:
    name = "fm1"
    dictionary = D

    def __init__(self) -> None:
        self.now = IDLE
        self.released = 0
        self.gaps = FakeGaps()
        self.session = FakeSession()

    def state(self) -> LinkState:
        return self.now

    def takes_commands(self) -> bool:
        return self.now.up


class FakeFetcher:
    def __init__(self) -> None:
        self.woken = 0

    def wake(self) -> None:
        self.woken += 1

    def close(self) -> None:
        pass


def operations(tmp_path: Path, fetch: bool = False) -> tuple[PassOperations, FakeLink, FakeClock]:
    link, wall = FakeLink(), FakeClock(1_700_000_000.0)
    ops = PassOperations(
        link,  # type: ignore[arg-type]
        tmp_path,
        921600,
        PassSettings(fetch_results=fetch),
        wall=wall,
    )
    return ops, link, wall


def test_a_pass_is_logged_from_its_first_frame_to_its_last_with_what_it_carried(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ops, link, wall = operations(tmp_path)
    caplog.set_level(logging.INFO, "groundsw.station.pass_operations")
    ops.step()
    assert ops.contact_number() is None
    link.now = dataclasses.replace(IDLE, up=True, last_frame_age=0.2, commands=5, packets=40,
                                   queued=3)  # fmt: skip
    ops.step()
    assert ops.contact_number() == 1 and link.gaps.told == [True]
    link.released = 3
    ops.pass_log.add_result(1, 168)
    wall.advance(3.0)
    link.gaps.open = 1
    link.now = dataclasses.replace(IDLE, up=False, last_frame_age=1.2, commands=17, packets=400)
    ops.step()
    assert ops.contact_number() is None and link.gaps.told == [True, False]
    (contact,) = ops.pass_log.contacts()
    assert contact.aos == pytest.approx(1_700_000_000.0 - 0.2)
    assert contact.los == pytest.approx(1_700_000_003.0 - 1.2)
    assert (contact.commands_sent, contact.packets, contact.results) == (12, 360, 1)
    assert contact.open_gaps == 1
    began, ended = (r.getMessage() for r in caplog.records)
    assert began.startswith("fm1: pass 1 began (AOS ") and "3 queued commands go out" in began
    assert "fm1: pass 1 ended" in ended and "after 2.0 s: 12 commands sent (3 of them queued)" in (
        ended
    )
    assert "360 packets received, 1 results (168 octets), 1 telemetry gaps open" in ended
    ops.close()


def test_the_fetcher_is_woken_at_aos_and_by_a_jobs_end_heard_live(tmp_path: Path) -> None:
    ops, link, _ = operations(tmp_path, fetch=True)
    assert ops.fetcher is not None and len(link.session.sinks) == 1
    fake = FakeFetcher()
    ops.fetcher = fake  # type: ignore[assignment]
    link.now = dataclasses.replace(IDLE, up=True, last_frame_age=0.0)
    ops.step()
    ops.step()  # still the same pass: not woken again
    assert fake.woken == 1
    severity, data = D.encode_event(
        "JOB_SUCCEEDED", {"job_id": 4, "runs": 1, "disagreements": 0, "duration": 12}
    )
    link.session.sinks[0](PusTm(100, 5, int(severity), data, 0, 0), b"", 0.0)
    assert fake.woken == 2
    hk = D.packets["JOB_ACCEPTED"]
    other = hk.layout.build({"job_id": 4, "queued": 1})
    link.session.sinks[0](PusTm(100, hk.service, hk.subtype, other, 0, 0), b"", 0.0)
    assert fake.woken == 2
    ops.close()


def test_a_station_stopped_during_a_pass_ends_it_in_the_log(tmp_path: Path) -> None:
    ops, link, _ = operations(tmp_path)
    link.now = dataclasses.replace(IDLE, up=True, last_frame_age=0.0)
    ops.step()
    ops.close()
    ops2, _, _ = operations(tmp_path)
    (contact,) = ops2.pass_log.contacts()
    assert contact.los is not None
    ops2.close()
