"""The dictionary check at the start of every groundsw operation: asked again when its answer
is lost, a mismatch named, a silent payload a bounded wait."""

from __future__ import annotations

from typing import Any

import pytest

from groundsw.dictionary_check import DictionaryMismatch, check_dictionary
from groundsw.session import CommandRecord, LinkTimeout
from spacelink.icd import PAYLOAD_APID
from spacelink.spacepacket import PusTc, PusTm
from telemetry_defs.loader import default_dictionary
from tests.unit.groundsw.fakes import FakeTelemetry

D = default_dictionary()


class FakeSession(FakeTelemetry):
    """Answers TC[20,1] with TM[20,2] holding `hash32`, after losing `lost` answers."""

    def __init__(self, hash32: int, lost: int) -> None:
        super().__init__()
        self.source_id = 3
        self.hash32 = hash32
        self.lost = lost
        self.asked = 0

    def command(self, service: int, subtype: int, data: bytes = b"", ack: Any = None) -> Any:
        self.asked += 1
        record = CommandRecord(PusTc(PAYLOAD_APID, service, subtype, data, self.asked), 0.0)
        if self.lost:
            self.lost -= 1
            return record
        pid = D.parameter("DICTIONARY_HASH").id
        body = bytes([1]) + pid.to_bytes(2, "big") + self.hash32.to_bytes(4, "big")
        self.publish(PusTm(PAYLOAD_APID, 20, 2, body, 0, 0, self.source_id))
        return record


def test_a_lost_answer_is_asked_for_again() -> None:
    session = FakeSession(D.hash32, lost=2)
    check_dictionary(session, D, timeout=0.9)  # type: ignore[arg-type]
    assert session.asked == 3


def test_a_silent_payload_is_a_bounded_number_of_requests() -> None:
    session = FakeSession(D.hash32, lost=100)
    with pytest.raises(LinkTimeout, match=r"dictionary check \(TC\[20,1\]\): 3 requests in 0.6 s"):
        check_dictionary(session, D, timeout=0.6)  # type: ignore[arg-type]
    assert session.asked == 3


def test_another_dictionary_is_a_mismatch() -> None:
    with pytest.raises(DictionaryMismatch):
        check_dictionary(FakeSession(D.hash32 ^ 1, lost=0), D, timeout=0.9)  # type: ignore[arg-type]
