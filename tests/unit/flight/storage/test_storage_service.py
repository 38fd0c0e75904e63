"""ST[15] as the payload serves it: every real-time packet published is kept as published, a
by-time-range retrieval sends the originals on VC 1 (only while VC 1's backlog is short) and
completes when the last is queued, open retrieval follows suspend/resume and its start time,
deletion, the status and summary reports, the failure codes, and a restart keeps it all."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from flight.counters import LinkCounters
from flight.router import CommandRouter
from flight.services.events import EventReporter
from flight.services.storage import BULK_BACKLOG_OCTETS, StorageService, default_stores
from flight.telemetry import TmPublisher
from spacelink.icd import TM_VCID_BULK, TM_VCID_REALTIME
from spacelink.pus import Stage, VerificationReport
from spacelink.spacepacket import AckFlags, PusTc, PusTm, RequestId
from telemetry_defs.loader import default_dictionary

D = default_dictionary()
APID = 100
T0 = 1_800_000_000.0


class Board:
    """The storage service on a router, as the payload wires it: what goes on each VC kept."""

    def __init__(self, root: Path) -> None:
        self.now = T0
        self.line: dict[int, list[bytes]] = {TM_VCID_REALTIME: [], TM_VCID_BULK: []}
        self.backlog = 0
        self.tm = TmPublisher(APID, lambda vc, raw: self.line[vc].append(raw), lambda: self.now)
        self.router = CommandRouter(APID, self.tm, LinkCounters())
        self.events = EventReporter(D, self.tm)
        self.storage = StorageService(
            D,
            root / "packet_stores",
            default_stores(1 << 20, 1 << 18),
            lambda raw: self.line[TM_VCID_BULK].append(raw),
            lambda: self.backlog,
        )
        self.tm.observe(self.storage.keep)
        self.storage.register(self.router)
        self.seq = 0

    def send(self, name: str, /, **values: Any) -> RequestId:
        command = D.command(name)
        self.seq += 1
        tc = PusTc(APID, command.service, command.subtype, command.encode(values),
                   seq_count=self.seq, source_id=7, ack_flags=AckFlags.ALL)  # fmt: skip
        self.router.dispatch(tc.pack())
        return tc.request_id

    def reports(self, request: RequestId) -> list[VerificationReport]:
        found = [PusTm.unpack(raw) for raw in self.line[TM_VCID_REALTIME]]
        return [
            r
            for r in (
                VerificationReport.unpack(t.subtype, t.source_data) for t in found if t.service == 1
            )
            if r.request_id == request
        ]

    def failure(self, request: RequestId) -> str | None:
        failed = [r for r in self.reports(request) if not r.success]
        return None if not failed else D.failure(failed[0].failure_code).name  # type: ignore[union-attr]

    def completed(self, request: RequestId) -> bool:
        return any(r.stage is Stage.COMPLETION and r.success for r in self.reports(request))

    def reply(self, name: str) -> dict[str, Any]:
        packet = D.packets[name]
        for raw in reversed(self.line[TM_VCID_REALTIME]):
            tm = PusTm.unpack(raw)
            if (tm.service, tm.subtype) == (packet.service, packet.subtype):
                return dict(D.decode_tm(tm.service, tm.subtype, tm.source_data).values)
        raise AssertionError(f"no {name}")

    def events_at(self, times: list[float]) -> list[bytes]:
        """One event per time; their octets as published."""
        raws = []
        for t in times:
            self.now = t
            self.events.raise_event("PAYLOAD_STOPPING", reason="SIGNAL")
            raws.append(self.line[TM_VCID_REALTIME][-1])
        return raws


@pytest.fixture
def board(tmp_path: Path) -> Iterator[Board]:
    b = Board(tmp_path)
    yield b
    b.storage.close()


def test_a_time_range_comes_back_as_the_original_packets_on_vc1(board: Board) -> None:
    originals = board.events_at([T0 + n for n in range(10)])
    board.now = T0 + 100
    request = board.send("STORE_RETRIEVE_RANGE", store=1, start=int(T0) + 3, end=int(T0) + 6)
    assert board.line[TM_VCID_BULK] == originals[3:7]
    assert board.completed(request)
    # The retrieval command's own reports are kept too, but never sent back on VC 1 twice.
    assert len(board.line[TM_VCID_BULK]) == 4


def test_retrieval_waits_for_room_on_vc1(board: Board) -> None:
    originals = board.events_at([T0 + n for n in range(5)])
    board.now = T0 + 100  # the command's own reports fall outside the range
    board.backlog = BULK_BACKLOG_OCTETS  # VC 1 is busy: nothing more is queued
    request = board.send("STORE_RETRIEVE_RANGE", store=1, start=int(T0), end=int(T0) + 4)
    assert board.line[TM_VCID_BULK] == [] and not board.completed(request)
    board.backlog = 0
    board.storage.tick()
    assert board.line[TM_VCID_BULK] == originals and board.completed(request)


def test_one_range_retrieval_at_a_time_and_abort(board: Board) -> None:
    board.events_at([T0 + n for n in range(3)])
    board.backlog = BULK_BACKLOG_OCTETS
    first = board.send("STORE_RETRIEVE_RANGE", store=1, start=int(T0), end=int(T0) + 2)
    second = board.send("STORE_RETRIEVE_RANGE", store=1, start=int(T0), end=int(T0) + 2)
    assert board.failure(second) == "STORE_RANGE_IN_PROGRESS"
    board.send("STORE_STATUS", stores=[1, 2])
    assert board.reply("STORE_STATUS_REPORT")["range_retrieval"] == [True, False]
    board.send("STORE_ABORT_RANGE", stores=[1])
    assert board.failure(first) == "EXECUTION_FAILED"
    bad = board.send("STORE_RETRIEVE_RANGE", store=1, start=int(T0) + 5, end=int(T0))
    assert board.failure(bad) == "STORE_BAD_TIME_RANGE"


def test_storage_can_be_disabled_and_events_have_their_own_store(board: Board) -> None:
    board.send("STORE_DISABLE", stores=[1])
    board.events_at([T0 + 1])
    board.send("STORE_SUMMARY", stores=[1, 2])
    summary = board.reply("STORE_SUMMARY_REPORT")
    assert summary["stores"] == [1, 2]
    all_packets, event_packets = summary["packets"]
    # ALL kept nothing after its disable; EVENTS kept the event and the reports.
    assert all_packets < event_packets and event_packets >= 1
    board.send("STORE_STATUS", stores=[1, 2])
    assert board.reply("STORE_STATUS_REPORT")["storage"] == [False, True]


def test_open_retrieval_resumes_from_its_start_time_and_follows_new_packets(board: Board) -> None:
    originals = board.events_at([T0 + n for n in range(6)])
    board.send("STORE_OPEN_RETRIEVAL_START", start=int(T0) + 4, stores=[2])
    board.send("STORE_RESUME", stores=[2])
    sent = list(board.line[TM_VCID_BULK])
    assert sent[:2] == originals[4:6]
    refused = board.send("STORE_OPEN_RETRIEVAL_START", start=int(T0), stores=[2])
    assert board.failure(refused) == "STORE_OPEN_RETRIEVAL_ACTIVE"
    (later,) = board.events_at([T0 + 50])
    board.storage.tick()
    assert later in board.line[TM_VCID_BULK]
    board.send("STORE_SUSPEND", stores=[2])
    board.line[TM_VCID_BULK].clear()
    board.events_at([T0 + 60])
    board.storage.tick()
    assert board.line[TM_VCID_BULK] == []


def test_delete_up_to_a_time(board: Board) -> None:
    board.events_at([T0 + n for n in range(6)])
    board.send("STORE_DELETE", until=int(T0) + 2, stores=[1, 2])
    board.send("STORE_SUMMARY", stores=[2])
    assert board.reply("STORE_SUMMARY_REPORT")["oldest"][0] > int(T0) + 2


def test_a_restart_keeps_the_packets_and_the_settings(tmp_path: Path) -> None:
    first = Board(tmp_path)
    originals = first.events_at([T0 + n for n in range(3)])
    first.now = T0 + 100
    first.send("STORE_DISABLE", stores=[2])
    first.storage.close()
    second = Board(tmp_path)
    second.now = T0 + 100
    try:
        second.send("STORE_STATUS", stores=[1, 2])
        assert second.reply("STORE_STATUS_REPORT")["storage"] == [True, False]
        second.send("STORE_RETRIEVE_RANGE", store=1, start=int(T0), end=int(T0) + 2)
        assert second.line[TM_VCID_BULK] == originals
    finally:
        second.storage.close()


def test_an_unknown_store_is_refused(board: Board) -> None:
    data = bytes([1, 9])  # one store, ID 9: not in the dictionary's enum
    command = D.command("STORE_ENABLE")
    tc = PusTc(APID, command.service, command.subtype, data, seq_count=99, source_id=7)
    board.router.dispatch(tc.pack())
    assert board.failure(tc.request_id) == "BAD_APPLICATION_DATA"


def test_the_storage_parameters(board: Board) -> None:
    board.events_at([T0 + n for n in range(3)])
    board.now = T0 + 100
    getters = board.storage.getters()
    assert getters["STORE_ALL_PACKETS"]() >= 3
    assert 0 <= getters["STORE_ALL_FILL"]() <= 100
    board.send("STORE_RETRIEVE_RANGE", store=1, start=int(T0), end=int(T0) + 2)
    assert getters["PACKETS_RETRIEVED"]() == 3
