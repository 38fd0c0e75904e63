"""Reading the line: bursts, and the rest of a unit already begun taken whole."""

from __future__ import annotations

import time

import serial

from spacelink.serialport import read_next


def loop_port() -> serial.SerialBase:
    return serial.serial_for_url("loop://", timeout=0.05)


def test_with_nothing_awaited_a_burst_is_gathered_after_its_first_octet() -> None:
    port = loop_port()
    port.write(b"\x01\x02\x03")
    assert read_next(port, 0.001, 0, 921600) == b"\x01\x02\x03"
    assert read_next(port, 0.001, 0, 921600) == b""  # the port's timeout, nothing come


def test_awaited_octets_are_slept_for_and_taken_whole() -> None:
    port = loop_port()
    port.write(b"x" * 100)
    started = time.monotonic()
    assert read_next(port, 0.001, 1000, 9600) == b"x" * 100
    # 1000 octets at 9600 baud are ~1 s of line: the sleep is held to the port's timeout.
    assert time.monotonic() - started < 0.5


def test_awaited_octets_that_never_come_fall_back_to_waiting_for_the_line() -> None:
    port = loop_port()
    assert read_next(port, 0.001, 10, 921600) == b""
