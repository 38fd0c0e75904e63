"""The emulated link relays both ways, paced to the baud rate, with latency, cuts and injection."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import pytest
import serial

from hil.impairments import Impairments
from hil.ptylink import PtyLink


@pytest.fixture
def ends() -> Iterator[tuple[PtyLink, serial.SerialBase, serial.SerialBase]]:
    link = PtyLink(baud=115200).start()
    flight = serial.Serial(link.flight_port, 115200, timeout=0.05)
    ground = serial.Serial(link.ground_port, 115200, timeout=0.05)
    try:
        yield link, flight, ground
    finally:
        flight.close()
        ground.close()
        link.stop()


def read_exactly(port: serial.SerialBase, n: int, timeout: float = 10.0) -> bytes:
    out = b""
    deadline = time.monotonic() + timeout
    while len(out) < n and time.monotonic() < deadline:
        out += port.read(n - len(out))
    return out


def test_relays_both_ways_at_the_line_rate(ends) -> None:  # type: ignore[no-untyped-def]
    link, flight, ground = ends
    data = os.urandom(11_520)  # one second of 115200-baud line
    started = time.monotonic()
    ground.write(data)
    flight.write(data[::-1])
    assert read_exactly(flight, len(data)) == data
    assert read_exactly(ground, len(data)) == data[::-1]
    elapsed = time.monotonic() - started
    assert 0.9 < elapsed < 3.0  # paced: not faster than the line; generous upper bound
    assert link.stats("uplink").octets_out == len(data)


def test_latency_delays_delivery(ends) -> None:  # type: ignore[no-untyped-def]
    link, flight, ground = ends
    link.set_impairments("uplink", Impairments(latency_s=0.4))
    started = time.monotonic()
    ground.write(b"x")
    assert read_exactly(flight, 1) == b"x"
    assert time.monotonic() - started >= 0.4


def test_a_cut_loses_what_is_on_the_wire_then_the_link_recovers(ends) -> None:  # type: ignore[no-untyped-def]
    link, flight, ground = ends
    link.cut(0.5)
    ground.write(b"lost in the cut")
    assert flight.read(100) == b""
    time.sleep(0.6)
    ground.write(b"after")
    assert read_exactly(flight, 5) == b"after"
    assert link.stats("uplink").octets_cut == len(b"lost in the cut")


def test_injected_octets_arrive_and_are_counted(ends) -> None:  # type: ignore[no-untyped-def]
    link, _flight, ground = ends
    link.inject("downlink", b"noise")
    assert read_exactly(ground, 5) == b"noise"
    assert link.stats("downlink").octets_injected == 5


def test_bit_errors_on_the_relay_are_counted(ends) -> None:  # type: ignore[no-untyped-def]
    link, flight, ground = ends
    link.set_impairments("downlink", Impairments(ber=0.01))
    flight.write(bytes(5000))
    got = read_exactly(ground, 5000)
    flipped = sum(bin(b).count("1") for b in got)
    assert flipped == link.stats("downlink").bits_flipped > 0


def test_an_unavailable_link_loses_both_ways_counted_apart_from_cuts(ends) -> None:  # type: ignore[no-untyped-def]
    link, flight, ground = ends
    link.set_available(False)
    assert not link.available
    ground.write(b"out of the pass")
    flight.write(b"unheard")
    assert flight.read(100) == b"" and ground.read(100) == b""
    time.sleep(0.05)
    link.set_available(True)
    ground.write(b"AOS")
    assert read_exactly(flight, 3) == b"AOS"
    up, down = link.stats("uplink"), link.stats("downlink")
    assert up.octets_unavailable == len(b"out of the pass") and up.octets_cut == 0
    assert down.octets_unavailable == len(b"unheard")
    assert "lost out of passes 15" in up.describe()
