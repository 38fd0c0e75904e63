"""Service 134 through the router: arm then execute, each refusal with its own code and data,
the events, and the completion of a restart reported before the payload stops."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from flight.config import LifecycleConfig
from flight.counters import LinkCounters
from flight.lifecycle.arming import CONFIRMATION, Arming
from flight.lifecycle.manager import LifecycleManager
from flight.protection.upsets import UpsetLog
from flight.router import CommandRouter
from flight.services.events import EventReporter
from flight.services.lifecycle import LifecycleService
from flight.telemetry import TmPublisher
from spacelink.pus import Stage, VerificationReport
from spacelink.spacepacket import AckFlags, PusTc, PusTm, RequestId
from telemetry_defs.loader import default_dictionary
from tests.fake_clock import FakeClock
from tests.unit.flight.lifecycle.test_manager import FakeBoard

D = default_dictionary()
APID = 100


class Payload:
    """The lifecycle service on a router, as the payload wires it."""

    def __init__(self, state: Path, **config: Any) -> None:
        self.clock = FakeClock(10.0)
        self.sent: list[PusTm] = []
        self.tm = TmPublisher(APID, lambda vc, raw: self.sent.append(PusTm.unpack(raw)), self.clock)
        self.router = CommandRouter(APID, self.tm, LinkCounters(), self.clock)
        self.events = EventReporter(D, self.tm)
        self.stopped_after: list[int] = []  # packets sent when the stop was asked for
        self.config = LifecycleConfig(**config)
        self.manager = LifecycleManager.open(
            state,
            self.config,
            UpsetLog(),
            self.events.raise_event,
            lambda: self.stopped_after.append(len(self.sent)),
            self.clock,
            board=FakeBoard(),
            environ={},
        )
        arming = Arming(self.clock, self.config.arm_timeout_s)
        LifecycleService(D, self.manager, arming, self.events.raise_event).register(self.router)
        self.seq = 0

    def send(self, name: str, /, **values: Any) -> RequestId:
        command = D.command(name)
        self.seq += 1
        tc = PusTc(APID, command.service, command.subtype, command.encode(values),
                   seq_count=self.seq, source_id=7, ack_flags=AckFlags.ALL)  # fmt: skip
        self.router.dispatch(tc.pack())
        return tc.request_id

    def reports(self, request: RequestId) -> list[VerificationReport]:
        found = [
            VerificationReport.unpack(tm.subtype, tm.source_data)
            for tm in self.sent
            if tm.service == 1
        ]
        return [r for r in found if r.request_id == request]

    def failure(self, request: RequestId) -> tuple[Stage, str, dict[str, Any]]:
        (failed,) = [r for r in self.reports(request) if not r.success]
        assert failed.failure_code is not None
        named = D.failure(failed.failure_code)
        assert named is not None and named.layout is not None
        return failed.stage, named.name, named.layout.parse(failed.failure_data)

    def completed(self, request: RequestId) -> bool:
        return any(r.success and r.stage is Stage.COMPLETION for r in self.reports(request))

    def events_named(self, name: str) -> list[dict[str, Any]]:
        decoded = [D.decode_tm(tm.service, tm.subtype, tm.source_data) for tm in self.sent
                   if tm.service == 5]  # fmt: skip
        return [d.values for d in decoded if d.name == name]


@pytest.fixture
def p(tmp_path: Path) -> Payload:
    return Payload(tmp_path / "state")


def test_arm_then_execute_restarts_after_the_completion_report(p: Payload) -> None:
    assert p.completed(p.send("LIFECYCLE_ARM", action="PAYLOAD"))
    assert p.events_named("LIFECYCLE_ARMED") == [{"action": 2, "seconds": 30}]
    p.clock.advance(29)
    request = p.send("LIFECYCLE_EXECUTE", action="PAYLOAD", confirm=CONFIRMATION)
    assert p.completed(request)
    assert p.events_named("LIFECYCLE_EXECUTING") == [{"action": 2}]
    # The main loop is asked to stop during the command; it stops after the completion is
    # published (the loop only looks at the flag between commands).
    assert len(p.stopped_after) == 1 and p.manager.restart_requested


def test_execute_without_arm_is_refused_at_start(p: Payload) -> None:
    request = p.send("LIFECYCLE_EXECUTE", action="PAYLOAD", confirm=CONFIRMATION)
    assert p.failure(request) == (Stage.START, "LIFECYCLE_NOT_ARMED", {"action": 2})
    assert p.stopped_after == []


def test_execute_after_the_arm_expired_is_refused(p: Payload) -> None:
    p.send("LIFECYCLE_ARM", action="PAYLOAD")
    p.clock.advance(30)
    request = p.send("LIFECYCLE_EXECUTE", action="PAYLOAD", confirm=CONFIRMATION)
    assert p.failure(request) == (Stage.START, "LIFECYCLE_ARM_EXPIRED", {"action": 2})


def test_execute_of_another_action_is_refused_and_uses_the_arm(p: Payload) -> None:
    p.send("LIFECYCLE_ARM", action="PAYLOAD")
    request = p.send("LIFECYCLE_EXECUTE", action="WATCHDOG", confirm=CONFIRMATION)
    assert p.failure(request) == (
        Stage.START,
        "LIFECYCLE_ARMED_FOR_OTHER",
        {"action": 4, "armed": 2},
    )
    again = p.send("LIFECYCLE_EXECUTE", action="PAYLOAD", confirm=CONFIRMATION)
    assert p.failure(again)[1] == "LIFECYCLE_NOT_ARMED"
    assert p.stopped_after == []


def test_a_wrong_confirmation_is_refused_with_what_came(p: Payload) -> None:
    p.send("LIFECYCLE_ARM", action="PAYLOAD")
    request = p.send("LIFECYCLE_EXECUTE", action="PAYLOAD", confirm=CONFIRMATION ^ 0x100)
    assert p.failure(request) == (
        Stage.START,
        "LIFECYCLE_BAD_CONFIRMATION",
        {"received": CONFIRMATION ^ 0x100},
    )


@pytest.mark.parametrize(
    ("action", "failure"),
    [
        ("WORKER", "LIFECYCLE_NO_WORKER"),
        ("BOARD", "LIFECYCLE_REBOOT_NOT_ALLOWED"),
        ("WATCHDOG", "LIFECYCLE_NO_WATCHDOG"),
    ],
)
def test_an_action_this_payload_cannot_do_is_refused_at_arm(
    p: Payload, action: str, failure: str
) -> None:
    stage, name, data = p.failure(p.send("LIFECYCLE_ARM", action=action))
    assert (stage, name) == (Stage.START, failure)
    assert data["detail"]
    assert p.events_named("LIFECYCLE_ARMED") == []


def test_a_reboot_allowed_without_a_command_is_refused_with_its_code(tmp_path: Path) -> None:
    p = Payload(tmp_path / "state", allow_reboot=True)
    stage, name, _ = p.failure(p.send("LIFECYCLE_ARM", action="BOARD"))
    assert (stage, name) == (Stage.START, "LIFECYCLE_REBOOT_NOT_CONFIGURED")


def test_a_reboot_command_that_fails_fails_the_execute(tmp_path: Path) -> None:
    p = Payload(tmp_path / "state", allow_reboot=True, reboot_command=["reboot"])
    board = p.manager.board
    assert isinstance(board, FakeBoard)
    board.fail = "reboot exited with status 1: access denied"
    p.send("LIFECYCLE_ARM", action="BOARD")
    request = p.send("LIFECYCLE_EXECUTE", action="BOARD", confirm=CONFIRMATION)
    stage, name, data = p.failure(request)
    assert (stage, name) == (Stage.COMPLETION, "LIFECYCLE_REBOOT_FAILED")
    assert data == {"detail": "reboot exited with status 1: access denied"}


def test_the_worker_hook_is_called_and_its_failure_reported(p: Payload) -> None:
    calls: list[int] = []
    p.manager.restart_worker = lambda: calls.append(1)
    p.send("LIFECYCLE_ARM", action="WORKER")
    assert p.completed(p.send("LIFECYCLE_EXECUTE", action="WORKER", confirm=CONFIRMATION))
    assert calls == [1]

    def broken() -> None:
        raise TimeoutError("no hello from the new worker in 30 s")

    p.manager.restart_worker = broken
    p.send("LIFECYCLE_ARM", action="WORKER")
    request = p.send("LIFECYCLE_EXECUTE", action="WORKER", confirm=CONFIRMATION)
    stage, name, data = p.failure(request)
    assert (stage, name) == (Stage.COMPLETION, "LIFECYCLE_WORKER_RESTART_FAILED")
    assert "no hello from the new worker" in data["detail"]
