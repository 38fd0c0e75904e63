"""The owned link's lock order: a command being sent holds the link's lock and then waits for the
session's, while the receiving thread holds the session's lock as it hands a housekeeping packet
to the link. The soak run that found this hung the whole station after ~100 commands."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
import serial

from groundsw.session import LinkSession
from groundsw.station.owned_link import OwnedLink
from spacelink.spacepacket import PusTm
from telemetry_defs.loader import default_dictionary

D = default_dictionary()


@pytest.fixture
def link() -> Iterator[OwnedLink]:
    port = serial.serial_for_url("loop://", timeout=0.05)
    link = OwnedLink("fm1", LinkSession(port), D, None)
    yield link
    port.close()


def test_a_packet_arriving_while_a_command_is_sent_does_not_deadlock(link: OwnedLink) -> None:
    structure = D.housekeeping["PAYLOAD_STATUS"]
    values: dict[str, Any] = {p.name: 0 for p in structure.parameters}
    tm = PusTm(D.apid, 3, 25, D.encode_housekeeping(structure.sid, values))
    sender_waits = threading.Event()

    def send() -> None:  # what OwnedLink.submit does: its lock, then the session's
        with link._lock:
            sender_waits.set()
            with link.session._lock:
                pass

    with link.session._lock:  # the receiving thread, in the middle of a frame
        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        assert sender_waits.wait(5)
        receiver = threading.Thread(target=link._on_packet, args=(tm, tm.pack(), 1.0), daemon=True)
        receiver.start()
        receiver.join(5)
        assert not receiver.is_alive(), "a received packet waits for a command being sent"
    sender.join(5)
    assert link.value(structure.parameters[0].name) == (0, 1.0)
