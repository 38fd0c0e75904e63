"""The authenticated connection and its message framing, in one process."""

from __future__ import annotations

import tempfile
import threading
from collections.abc import Iterator
from multiprocessing import AuthenticationError
from pathlib import Path

import numpy as np
import pytest

from flight.worker.connection import (
    Channel,
    WorkerListener,
    connect,
    format_address,
    parse_address,
)
from flight.worker.errors import MessageEncodeError
from flight.worker.protocol import Heartbeat, Lane, Request

KEY = b"k" * 32


@pytest.fixture
def listener() -> Iterator[WorkerListener]:
    with tempfile.TemporaryDirectory(prefix="wk") as directory:
        listener = WorkerListener.in_directory(Path(directory), "board0")
        yield listener
        listener.close()


def pair(listener: WorkerListener, key: bytes = KEY) -> tuple[Channel, Channel]:
    accepted: list[Channel] = []
    thread = threading.Thread(target=lambda: accepted.append(listener.accept(KEY, 5.0)))
    thread.start()
    client = connect(listener.address, key, timeout_s=5.0)
    thread.join()
    return accepted[0], client


def test_addresses_parse_and_format_both_ways() -> None:
    assert parse_address("/run/payload/worker.sock") == "/run/payload/worker.sock"
    assert parse_address("unix:/run/w.sock") == "/run/w.sock"
    assert parse_address("10.0.0.2:7001") == ("10.0.0.2", 7001)
    assert parse_address("tcp:[fe80::1]:7001") == ("fe80::1", 7001)
    for address in ["/run/w.sock", ("10.0.0.2", 7001), ("fe80::1", 7001)]:
        assert parse_address(format_address(address)) == address
    with pytest.raises(ValueError):
        parse_address("nowhere")


def test_messages_and_out_of_band_arrays_arrive_whole(listener: WorkerListener) -> None:
    server, client = pair(listener)
    arrays = [np.arange(1000, dtype=np.float64), np.ones((3, 4), dtype=np.int8)[:, ::2]]
    client.send(Request(7, Lane.COMPUTE, {"inputs": arrays, "name": "m"}))
    client.send(Heartbeat(1, 2.5, {"runs": 3}))
    received = server.recv()
    assert (received.id, received.lane, received.body["name"]) == (7, Lane.COMPUTE, "m")
    for got, sent in zip(received.body["inputs"], arrays, strict=True):
        np.testing.assert_array_equal(got, sent)
    assert server.recv() == Heartbeat(1, 2.5, {"runs": 3})
    client.close()
    with pytest.raises(EOFError):
        server.recv()
    server.close()


def test_an_unpicklable_message_is_refused_before_anything_is_sent(
    listener: WorkerListener,
) -> None:
    server, client = pair(listener)
    with pytest.raises(MessageEncodeError):
        client.send(Request(1, Lane.COMPUTE, threading.Lock()))
    client.send("next")
    assert server.recv() == "next"
    server.close()
    client.close()


def test_a_peer_without_the_key_is_refused(listener: WorkerListener) -> None:
    refused: list[BaseException] = []

    def intruder() -> None:
        try:
            connect(listener.address, b"wrong key", timeout_s=2.0)
        except (AuthenticationError, EOFError, OSError) as e:
            refused.append(e)

    thread = threading.Thread(target=intruder)
    thread.start()
    with pytest.raises(TimeoutError):
        listener.accept(KEY, 0.5)
    thread.join()
    assert len(refused) == 1


def test_a_socket_path_too_long_is_refused_with_its_length() -> None:
    with pytest.raises(ValueError, match="at most 107 bytes"):
        WorkerListener("/tmp/" + "x" * 120)
