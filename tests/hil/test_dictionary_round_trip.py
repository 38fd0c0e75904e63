"""Every definition of the dictionary, encoded by the ground, decoded and re-encoded by the
payload (TC[17,133]), and decoded again by the ground, through the emulated link."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from hil.bench import Bench
from hil.testapi import GroundTestApi
from spacelink.pus import FailureCode
from tests.dictionary_samples import every_definition, samples

pytestmark = pytest.mark.hil


@pytest.fixture
def bench(make_bench: Callable[..., Bench]) -> Bench:
    """The `ground` fixture's bench at 921600 baud: every definition's echo comes back in an
    eighth of the time it takes at 115200, and the line rate is not what is checked here."""
    return make_bench(baud=921600)


def test_every_command_packet_structure_event_and_failure_round_trips(
    ground: GroundTestApi,
) -> None:
    d = ground.dictionary
    echo = d.command("DICTIONARY_ECHO")
    reply = d.packets["DICTIONARY_ECHO_REPLY"]
    kinds = d.enums["DefinitionKind"].values
    cases = []
    ground.command_and_assert("HK_DISABLE", sids=list(h.sid for h in d.housekeeping.values()))
    since = time.monotonic()
    for kind, key, name, layout in every_definition(d):
        for values in samples(d, layout):
            data = layout.build(values)
            cases.append((kind, key, name, layout, values))
            ground.command(echo.name, kind=kinds[kind], key=key, data=data)
    deadline = time.monotonic() + 60
    while len(ground.tm_history(reply.service, reply.subtype)) < len(cases):
        assert time.monotonic() < deadline, "not every echo came back"
        time.sleep(0.1)
    answers = [ground.decode(r).values for r in ground.tm_history(reply.service, reply.subtype)]
    assert all(r.received_at >= since for r in ground.tm_history(reply.service, reply.subtype))
    assert len(answers) == len(cases)
    for (kind, key, name, layout, values), answer in zip(cases, answers, strict=True):
        assert (answer["kind"], answer["key"]) == (kinds[kind], key), name
        assert layout.parse(answer["data"]) == values, f"{kind} {name}"
    assert {c[2] for c in cases} >= set(d.commands) | set(d.packets) | set(d.events)


def test_octets_that_do_not_fit_a_definition_are_refused(ground: GroundTestApi) -> None:
    d = ground.dictionary
    kinds = d.enums["DefinitionKind"].values
    hk = d.housekeeping["PAYLOAD_STATUS"]
    report = ground.command_expect_failure(
        "DICTIONARY_ECHO",
        FailureCode.BAD_APPLICATION_DATA,
        kind=kinds["HOUSEKEEPING"],
        key=hk.sid,
        data=b"\x00\x01",
    )
    assert b"too few octets" in report.failure_data
    report = ground.command_expect_failure(
        "DICTIONARY_ECHO", FailureCode.BAD_APPLICATION_DATA, kind=kinds["EVENT"], key=999, data=b""
    )
    assert report.failure_data == b"no EVENT definition with key 999"
