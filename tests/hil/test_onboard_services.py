"""Housekeeping (ST[3]), events (ST[5]) and parameters (ST[20]) through the emulated link."""

from __future__ import annotations

import itertools
import time

import pytest

from hil.testapi import GroundTestApi
from spacelink.pus import FailureCode, Stage

pytestmark = pytest.mark.hil

HK_REPORT = (3, 25)


def hk_reports(api: GroundTestApi, sid: int, since: float) -> list[float]:
    return [
        r.received_at
        for r in api.tm_history(*HK_REPORT)
        if r.received_at >= since and int.from_bytes(r.tm.source_data[:2], "big") == sid
    ]


def test_periodic_housekeeping_carries_status_link_counters_and_resources(
    ground: GroundTestApi,
) -> None:
    d = ground.dictionary
    ground.command_and_assert("HK_GENERATE", sids=[1, 2, 3])
    status = ground.decode(ground.await_packet(*HK_REPORT, since=0))
    assert status.kind.value == "housekeeping"
    values = ground.get_parameters(
        "DICTIONARY_HASH", "MEMORY_PROCESS", "DISK_FREE", "TC_PACKETS_ACCEPTED", "FARM_STATE"
    )
    assert values["DICTIONARY_HASH"] == d.hash32
    assert values["MEMORY_PROCESS"] > 1000  # KiB: a Python process is bigger than 1 MiB
    assert values["DISK_FREE"] > 0
    assert values["TC_PACKETS_ACCEPTED"] >= 2
    assert d.parameters["FARM_STATE"].to_text(values["FARM_STATE"]) == "OPEN"
    # The counters move with the traffic.
    later = ground.get_parameters("TC_PACKETS_ACCEPTED")["TC_PACKETS_ACCEPTED"]
    assert later > values["TC_PACKETS_ACCEPTED"]


def test_collection_interval_enable_and_disable(ground: GroundTestApi) -> None:
    since = time.monotonic()
    ground.command_and_assert("HK_SET_INTERVAL", sid=2, interval_ms=300)
    changed = ground.await_named_event("HK_CHANGED", lambda v: v["sid"] == 2, since=since)
    assert changed.values == {"sid": 2, "enabled": True, "interval_ms": 300}
    time.sleep(2.0)
    times = hk_reports(ground, 2, since)
    assert len(times) >= 4, times
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert 0.2 < sum(gaps) / len(gaps) < 0.45, gaps

    every = sorted(h.sid for h in ground.dictionary.housekeeping.values())
    ground.command_and_assert("HK_DISABLE", sids=every)
    time.sleep(0.5)  # a report already queued may still arrive
    quiet_since = time.monotonic()
    time.sleep(1.5)
    assert [r for r in ground.tm_history(*HK_REPORT) if r.received_at >= quiet_since] == []

    # Generating on request still works when disabled, and is addressed to the asker.
    record = ground.command_and_assert("HK_GENERATE", sids=[2])
    reply = ground.await_packet(*HK_REPORT, since=record.sent_at)
    assert reply.tm.destination_id == ground.session.source_id

    since = time.monotonic()
    # As the other tests found them: 1 and 3 off (their reports would crowd the history).
    ground.command_and_assert("HK_ENABLE", sids=[s for s in every if s not in (1, 3)])
    ground.await_value("UPLINK_OCTETS", since=since, timeout=3)


def test_housekeeping_commands_refuse_unknown_structures(ground: GroundTestApi) -> None:
    report = ground.command_expect_failure(
        "HK_GENERATE", FailureCode.BAD_APPLICATION_DATA, sids=[77]
    )
    assert report.stage is Stage.ACCEPTANCE
    assert report.failure_data == b"no housekeeping structure has ID 77"
    command = ground.dictionary.command("HK_SET_INTERVAL")
    too_short = (1).to_bytes(2, "big") + (5).to_bytes(4, "big")  # 5 ms, below the range
    report = ground.send_expect_failure(
        command.service, command.subtype, too_short, code=FailureCode.BAD_APPLICATION_DATA
    )
    assert b"interval_ms" in report.failure_data


def test_parameters_read_set_and_refused(ground: GroundTestApi) -> None:
    d = ground.dictionary
    idle = d.parameter("DOWNLINK_IDLE_INTERVAL")
    assert ground.get_parameters(idle.name)[idle.name] == idle.default
    since = time.monotonic()
    ground.command_and_assert("PARAM_SET", values=[{"id": idle.id, "value": 400}])
    event = ground.await_named_event("PARAMETER_SET", since=since)
    assert event.values == {"id": idle.id}
    assert ground.get_parameters(idle.name)[idle.name] == 400
    # With nothing else to send the payload now sends an idle frame every 0.4 s, not 1 s.
    ground.command_and_assert("HK_DISABLE", sids=[1, 2, 3])
    frames_before = ground.get_parameters("TM_FRAMES_SENT")["TM_FRAMES_SENT"]
    time.sleep(2.0)
    frames_after = ground.get_parameters("TM_FRAMES_SENT")["TM_FRAMES_SENT"]
    assert frames_after - frames_before >= 5  # 2 s / 0.4 s, plus the query's own frames

    # Not settable, out of range, unknown: code 6 at acceptance, and nothing is set.
    uptime = d.parameter("UPTIME")
    set_command = d.command("PARAM_SET")
    for values, detail in (
        ([{"id": uptime.id, "value": 5}], b"not settable"),
        ([{"id": idle.id, "value": 600}, {"id": idle.id, "value": 5000}], b"5000 is outside"),
    ):
        # The codec checks types only: the ranges and settability are the payload's to enforce.
        data = set_command.encode({"values": values})
        report = ground.send_expect_failure(
            set_command.service, set_command.subtype, data, code=FailureCode.BAD_APPLICATION_DATA
        )
        assert detail in report.failure_data, report.failure_data
    assert ground.get_parameters(idle.name)[idle.name] == 400
    report = ground.send_expect_failure(
        20, 1, b"\x01\x7f\xff", code=FailureCode.BAD_APPLICATION_DATA
    )
    assert report.failure_data == b"no parameter has ID 32767"
