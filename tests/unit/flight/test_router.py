"""The command router: verification reports and failure codes of ICD section 8."""

from __future__ import annotations

import pytest

from flight.commanding import DEFERRED, CommandContext, CommandError
from flight.counters import LinkCounters
from flight.router import CommandRouter, Route
from flight.services import test as test_service
from flight.telemetry import TmPublisher
from spacelink.errors import DiscardReason
from spacelink.pus import FailureCode, Stage, VerificationReport
from spacelink.spacepacket import AckFlags, PusTc, PusTm
from telemetry_defs.loader import default_dictionary

APID = 100


class Harness:
    def __init__(self) -> None:
        self.sent: list[tuple[int, PusTm]] = []
        self.counters = LinkCounters()
        self.tm = TmPublisher(
            APID, lambda vc, raw: self.sent.append((vc, PusTm.unpack(raw))), lambda: 1_700_000_000.0
        )
        self.router = CommandRouter(APID, self.tm, self.counters)
        test_service.register(self.router, default_dictionary())

    def types(self) -> list[tuple[int, int]]:
        return [(tm.service, tm.subtype) for _, tm in self.sent]

    def reports(self) -> list[VerificationReport]:
        return [
            VerificationReport.unpack(tm.subtype, tm.source_data)
            for _, tm in self.sent
            if tm.service == 1
        ]


@pytest.fixture
def h() -> Harness:
    return Harness()


def tc(
    service: int = 17,
    subtype: int = 1,
    data: bytes = b"",
    ack: AckFlags = AckFlags.ALL,
    seq: int = 42,
    source: int = 7,
) -> PusTc:
    return PusTc(APID, service, subtype, data, seq_count=seq, source_id=source, ack_flags=ack)


def test_are_you_alive_reports_every_stage_asked_for(h: Harness) -> None:
    command = tc()
    h.router.dispatch(command.pack())
    assert h.types() == [(1, 1), (1, 3), (17, 2), (1, 7)]
    assert all(tm.destination_id == 7 for _, tm in h.sent)
    assert all(r.request_id == command.request_id and r.success for r in h.reports())
    assert h.counters.packets_accepted == 1


@pytest.mark.parametrize(
    ("ack", "expected"),
    [
        (AckFlags.NONE, [(17, 2)]),
        (AckFlags.ACCEPTANCE, [(1, 1), (17, 2)]),
        (AckFlags.COMPLETION, [(17, 2), (1, 7)]),
        (AckFlags.START | AckFlags.COMPLETION, [(1, 3), (17, 2), (1, 7)]),
    ],
)
def test_success_reports_follow_the_acknowledgement_flags(
    h: Harness, ack: AckFlags, expected: list[tuple[int, int]]
) -> None:
    h.router.dispatch(tc(ack=ack).pack())
    assert h.types() == expected


def test_message_type_counters_and_sequence_counts_increase(h: Harness) -> None:
    h.router.dispatch(tc(seq=1).pack())
    h.router.dispatch(tc(seq=2).pack())
    replies = [tm for _, tm in h.sent if tm.service == 17]
    assert [r.msg_type_counter for r in replies] == [0, 1]
    assert [tm.seq_count for _, tm in h.sent] == list(range(8))


def failure(h: Harness) -> VerificationReport:
    (report,) = h.reports()
    assert not report.success
    return report


def test_unknown_service(h: Harness) -> None:
    h.router.dispatch(tc(service=99, ack=AckFlags.NONE).pack())
    report = failure(h)
    assert (report.stage, report.failure_code, report.failure_data) == (
        Stage.ACCEPTANCE,
        FailureCode.UNKNOWN_SERVICE,
        bytes([99]),
    )


def test_unknown_subtype(h: Harness) -> None:
    h.router.dispatch(tc(subtype=9, ack=AckFlags.NONE).pack())
    assert failure(h).failure_code == FailureCode.UNKNOWN_SUBTYPE


def test_bad_application_data(h: Harness) -> None:
    h.router.dispatch(tc(data=b"\x01", ack=AckFlags.NONE).pack())
    report = failure(h)
    assert (report.stage, report.failure_code) == (
        Stage.ACCEPTANCE,
        FailureCode.BAD_APPLICATION_DATA,
    )
    assert h.types() == [(1, 2)]  # and no reply: the command did not run


def test_bad_checksum_is_reported_with_the_request_id(h: Harness) -> None:
    raw = bytearray(tc().pack())
    raw[-1] ^= 0x01
    h.router.dispatch(bytes(raw))
    report = failure(h)
    assert report.failure_code == FailureCode.BAD_PACKET_CHECKSUM
    assert report.request_id == tc().request_id
    assert h.sent[0][1].destination_id == 7
    assert h.counters.discarded[DiscardReason.PACKET_CHECKSUM] == 1


def test_bad_length_is_reported_with_declared_and_actual_length(h: Harness) -> None:
    raw = tc(data=b"abcdef").pack()
    h.router.dispatch(raw[:-3])
    report = failure(h)
    assert report.failure_code == FailureCode.BAD_PACKET_LENGTH
    assert report.failure_data == len(raw).to_bytes(2, "big") + (len(raw) - 3).to_bytes(2, "big")


def test_bad_pus_version_is_bad_application_data(h: Harness) -> None:
    from spacelink.crc import crc16_ccitt

    raw = bytearray(tc().pack())
    raw[6] = (1 << 4) | (raw[6] & 0x0F)
    raw[-2:] = crc16_ccitt(bytes(raw[:-2])).to_bytes(2, "big")
    h.router.dispatch(bytes(raw))
    assert failure(h).failure_code == FailureCode.BAD_APPLICATION_DATA


def test_other_apid_and_non_tc_packets_are_counted_not_answered(h: Harness) -> None:
    h.router.dispatch(PusTc(APID + 1, 17, 1).pack())
    h.router.dispatch(PusTm(APID, 17, 2).pack())
    assert h.sent == []
    assert h.counters.discarded[DiscardReason.PACKET_APID] == 1
    assert h.counters.discarded[DiscardReason.PACKET_TYPE] == 1


def register(h: Harness, execute: object, check_start: object = None) -> None:
    h.router.register(
        Route(
            200,
            1,
            "trial",
            lambda data: data,
            execute,  # type: ignore[arg-type]
            check_start,
        )
    )  # type: ignore[arg-type]


def test_start_refusal_is_a_start_failure(h: Harness) -> None:
    def refuse(_: bytes) -> None:
        raise CommandError(FailureCode.NOT_ALLOWED_IN_MODE, "not now")

    register(h, lambda args, ctx: None, refuse)
    h.router.dispatch(tc(200, 1).pack())
    assert h.types() == [(1, 1), (1, 4)]
    assert h.reports()[-1].failure_code == FailureCode.NOT_ALLOWED_IN_MODE


def test_execution_failure_is_a_completion_failure(h: Harness) -> None:
    def fail(args: bytes, ctx: CommandContext) -> None:
        ctx.progress(1)
        raise CommandError(300, "disk full", b"\x01")

    register(h, fail)
    h.router.dispatch(tc(200, 1).pack())
    assert h.types() == [(1, 1), (1, 3), (1, 5), (1, 8)]
    last = h.reports()[-1]
    assert (last.failure_code, last.failure_data) == (300, b"\x01")
    assert h.reports()[2].step == 1


def test_a_crashing_command_is_reported_and_the_router_survives(h: Harness) -> None:
    def crash(args: bytes, ctx: CommandContext) -> None:
        raise ZeroDivisionError("boom")

    register(h, crash)
    h.router.dispatch(tc(200, 1).pack())
    assert failure_code_of_last(h) == FailureCode.EXECUTION_FAILED
    h.router.dispatch(tc(seq=43).pack())
    assert h.types()[-1] == (1, 7)


def failure_code_of_last(h: Harness) -> int | None:
    return h.reports()[-1].failure_code


def test_deferred_commands_report_completion_themselves(h: Harness) -> None:
    register(h, lambda args, ctx: DEFERRED)
    h.router.dispatch(tc(200, 1).pack())
    assert h.types() == [(1, 1), (1, 3)]


def test_a_route_cannot_be_registered_twice(h: Harness) -> None:
    with pytest.raises(ValueError, match="already routed"):
        test_service.register(h.router, default_dictionary())
