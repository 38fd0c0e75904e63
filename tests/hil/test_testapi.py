"""The HIL test API against a live payload: its assertions pass when they should, and when they
fail they say what was expected and what arrived."""

from __future__ import annotations

import time

import pytest

from hil.testapi import GroundTestApi, TestApiError
from spacelink.pus import FailureCode, Stage
from spacelink.spacepacket import AckFlags
from telemetry_defs import link_test
from telemetry_defs.loader import default_dictionary

D = default_dictionary()
SEQUENCE_OUT_OF_ORDER = D.failure_named("SEQUENCE_OUT_OF_ORDER")
TEST_PACKET = D.packets["LINK_DOWNLINK_TEST_PACKET"]


def test_send_and_assert_passes_for_a_good_command(ground: GroundTestApi) -> None:
    record = ground.send_and_assert(17, 1)
    reply = ground.await_packet(17, 2, since=record.sent_at)
    assert reply.tm.destination_id == ground.session.source_id
    assert ground.command_history == [record]
    assert ground.tm_history(17, 2) == [reply]


def test_send_and_assert_honours_the_acknowledgement_flags(ground: GroundTestApi) -> None:
    ground.send_and_assert(17, 1, ack=AckFlags.COMPLETION)
    ground.send_and_assert(17, 1, ack=AckFlags.NONE)  # nothing to wait for


def test_a_failed_stage_names_the_expectation_and_the_failure(ground: GroundTestApi) -> None:
    with pytest.raises(TestApiError) as info:
        ground.send_and_assert(99, 1, timeout=10)
    message = str(info.value)
    assert message.startswith("expected acceptance, start, completion success for TC[99,1]")
    assert "acceptance FAILED code 4 (unknown service)" in message


def test_send_expect_failure(ground: GroundTestApi) -> None:
    report = ground.send_expect_failure(
        17, 1, b"\x00", code=FailureCode.BAD_APPLICATION_DATA, stage=Stage.ACCEPTANCE
    )
    assert report.failure_data == b"ARE_YOU_ALIVE: octets left over after the last field"
    with pytest.raises(TestApiError, match=r"expected failure code 5 .* received: .*ok"):
        ground.send_expect_failure(17, 1, code=FailureCode.UNKNOWN_SUBTYPE, timeout=10)


def test_await_tm_timeout_lists_what_arrived(ground: GroundTestApi) -> None:
    ground.command_and_assert("HK_DISABLE", sids=[1, 2, 3])  # periodic reports would be listed
    # The worker's start events (WORKER_STARTED, EXECUTION_PROVIDER_SELECTED) come before it
    # reports itself up: after that only what this test asks arrives.
    deadline = time.monotonic() + 30
    while True:
        asked = time.monotonic()
        ground.command_and_assert("HK_GENERATE", sids=[10])
        if ground.await_value("WORKER_UP", since=asked, timeout=5):
            break
        assert time.monotonic() < deadline, "the worker did not come up"
        time.sleep(0.2)
    time.sleep(0.3)
    since = time.monotonic()
    ground.send_and_assert(17, 1)
    with pytest.raises(TestApiError) as info:
        ground.await_packet(17, 99, timeout=0.5, since=since)
    assert str(info.value) == "expected TM[17,99] within 0.5 s; received: TM[17,2]"


def test_query_and_a_failed_sequence_check(ground: GroundTestApi) -> None:
    counters = D.packets["LINK_SEQUENCE_COUNTERS"]
    request = D.command("LINK_SEQUENCE_REPORT")
    reset = ground.query(17, request.subtype, b"\x01", (17, counters.subtype))
    assert len(reset.tm.source_data) == 12
    ground.command_and_assert("LINK_SEQUENCE_CHECK", number=0, filler=b"")
    failure = ground.command_expect_failure(
        "LINK_SEQUENCE_CHECK", SEQUENCE_OUT_OF_ORDER.code, number=5, filler=b""
    )
    assert failure.stage is Stage.COMPLETION
    assert SEQUENCE_OUT_OF_ORDER.layout is not None
    assert SEQUENCE_OUT_OF_ORDER.layout.parse(failure.failure_data) == {"expected": 1, "got": 5}
    report = ground.query(17, request.subtype, b"\x00", (17, counters.subtype))
    assert ground.decode(report).values == {"executed": 2, "out_of_order": 1, "next": 6}


def test_downlink_test_packets_carry_their_pattern(ground: GroundTestApi) -> None:
    since = time.monotonic()
    ground.command_and_assert("LINK_DOWNLINK_TEST", vcid=1, count=5, size=300)
    ground.await_tm(
        lambda tm: (
            tm.subtype == TEST_PACKET.subtype and tm.source_data[:4] == (4).to_bytes(4, "big")
        ),
        since=since,
    )
    packets = ground.tm_history(17, TEST_PACKET.subtype)
    expected = [link_test.test_pattern(i, 300) for i in range(5)]
    assert [p.tm.source_data for p in packets] == expected


def test_downlink_test_limits(ground: GroundTestApi) -> None:
    command = D.command("LINK_DOWNLINK_TEST")
    bad_vc = bytes([7]) + (1).to_bytes(4, "big") + (10).to_bytes(2, "big")
    report = ground.send_expect_failure(
        17, command.subtype, bad_vc, code=FailureCode.BAD_APPLICATION_DATA
    )
    assert b"vcid" in report.failure_data
    ground.send_expect_failure(
        17,
        command.subtype,
        command.encode({"vcid": 1, "count": 100_000, "size": 1000}),
        code=FailureCode.RESOURCES_EXHAUSTED,
        stage=Stage.START,
    )
