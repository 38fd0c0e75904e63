"""The HIL test API against a live payload: its assertions pass when they should, and when they
fail they say what was expected and what arrived."""

from __future__ import annotations

import time

import pytest

from hil.testapi import GroundTestApi, TestApiError
from spacelink.pus import FailureCode, Stage
from spacelink.spacepacket import AckFlags
from telemetry_defs import link_test as lt


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
    assert report.failure_data == b""
    with pytest.raises(TestApiError, match=r"expected failure code 5 .* received: .*ok"):
        ground.send_expect_failure(17, 1, code=FailureCode.UNKNOWN_SUBTYPE, timeout=10)


def test_await_tm_timeout_lists_what_arrived(ground: GroundTestApi) -> None:
    since = time.monotonic()
    ground.send_and_assert(17, 1)
    with pytest.raises(TestApiError) as info:
        ground.await_packet(17, 99, timeout=0.5, since=since)
    assert str(info.value) == "expected TM[17,99] within 0.5 s; received: TM[17,2]"


def test_query_and_a_failed_sequence_check(ground: GroundTestApi) -> None:
    reset = ground.query(17, lt.SEQUENCE_REPORT_REQUEST, b"\x01", (17, lt.SEQUENCE_REPORT))
    assert len(reset.tm.source_data) == 12
    ground.send_and_assert(
        17, lt.SEQUENCE_CHECK, lt.sequence_check.build({"number": 0, "filler": b""})
    )
    failure = ground.send_expect_failure(
        17,
        lt.SEQUENCE_CHECK,
        lt.sequence_check.build({"number": 5, "filler": b""}),
        code=FailureCode.EXECUTION_FAILED,
        stage=Stage.COMPLETION,
    )
    assert lt.sequence_violation.parse(failure.failure_data) == {"expected": 1, "got": 5}
    report = ground.query(17, lt.SEQUENCE_REPORT_REQUEST, b"\x00", (17, lt.SEQUENCE_REPORT))
    parsed = lt.sequence_report.parse(report.tm.source_data)
    assert (parsed.executed, parsed.out_of_order, parsed.next) == (2, 1, 6)


def test_downlink_test_packets_carry_their_pattern(ground: GroundTestApi) -> None:
    since = time.monotonic()
    ground.send_and_assert(
        17, lt.DOWNLINK_TEST, lt.downlink_test.build({"vcid": 1, "count": 5, "size": 300})
    )
    ground.await_tm(
        lambda tm: (
            tm.subtype == lt.DOWNLINK_TEST_PACKET and tm.source_data[:4] == (4).to_bytes(4, "big")
        ),
        since=since,
    )
    packets = ground.tm_history(17, lt.DOWNLINK_TEST_PACKET)
    assert [p.tm.source_data for p in packets] == [lt.test_pattern(i, 300) for i in range(5)]


def test_downlink_test_limits(ground: GroundTestApi) -> None:
    ground.send_expect_failure(
        17,
        lt.DOWNLINK_TEST,
        lt.downlink_test.build({"vcid": 7, "count": 1, "size": 10}),
        code=FailureCode.BAD_APPLICATION_DATA,
    )
    ground.send_expect_failure(
        17,
        lt.DOWNLINK_TEST,
        lt.downlink_test.build({"vcid": 1, "count": 100_000, "size": 1000}),
        code=FailureCode.RESOURCES_EXHAUSTED,
        stage=Stage.START,
    )
