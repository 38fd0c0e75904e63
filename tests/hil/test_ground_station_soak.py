"""The ground station over time (issue 17's targets): housekeeping at 1 Hz archived with no
client attached, and three clients at once for 10 minutes (a live view, an event follower, a
script sending 500 commands) with every command completed, every packet archived once, and no
client given another's replies. The long variants are `slow` (make bench); a short one of the
first runs in make test."""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from groundsw.station.remote import ServiceLink
from hil.bench import Bench
from tests.harness import BIN
from tests.hil.station import (
    PAYLOAD,
    archived,
    housekeeping_every_second,
    http,
    sequence_count,
    wait_link_up,
)

pytestmark = pytest.mark.hil


def assert_no_gap(sequence: list[int]) -> None:
    expected = [(sequence[0] + n) & 0x3FFF for n in range(len(sequence))]
    assert sequence == expected, "a TM packet is missing from the archive, or twice in it"


@pytest.mark.parametrize(
    "seconds",
    [8, pytest.param(600, marks=[pytest.mark.slow, pytest.mark.timeout(900)])],
    ids=["8s", "10min"],
)
def test_housekeeping_is_archived_with_no_client_attached(
    station: tuple[Bench, Path, Path], seconds: int
) -> None:
    _, data, sock = station
    with http(sock) as api:
        housekeeping_every_second(api)
    started = time.time()
    time.sleep(seconds)  # nobody attached
    packets = archived(data)
    reports = [
        p
        for p in packets
        if p.name == "LINK_STATUS" and started <= p.received_at < started + seconds
    ]
    assert len(reports) >= seconds - 1
    assert_no_gap([sequence_count(p) for p in packets])


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_three_clients_for_ten_minutes(
    station: tuple[Bench, Path, Path], spawn: Callable[[list[str]], subprocess.Popen[str]]
) -> None:
    _, data, sock = station
    minutes, commands = 10, 500
    with http(sock) as api:
        wait_link_up(api)
        live = spawn(
            [str(BIN / "groundsw"), "--data-dir", str(data), "tm", "live", "--duration",
             str(minutes * 60)]
        )  # fmt: skip
        follower = spawn([str(BIN / "groundsw"), "--data-dir", str(data), "events", "--follow"])
        watcher = ServiceLink("http://station", PAYLOAD, "watcher", sock)
        seen = watcher.subscribe()
        states: list[str] = []

        def script() -> None:
            gap = minutes * 60 / commands
            for n in range(commands):
                at = time.monotonic()
                sent = api.post(
                    f"/api/v1/payloads/{PAYLOAD}/commands",
                    json={"command": "LINK_SEQUENCE_CHECK", "arguments": [f"number={n}", "filler="],
                          "client": "soak script"},
                ).json()  # fmt: skip
                done = api.get(
                    f"/api/v1/payloads/{PAYLOAD}/commands/{sent['request']}", params={"wait": 20}
                ).json()
                states.append(done["state"])
                time.sleep(max(0.0, gap - (time.monotonic() - at)))

        worker = threading.Thread(target=script)
        worker.start()
        worker.join(minutes * 60 + 120)
        out, err = live.communicate(timeout=minutes * 60 + 120)
        assert live.returncode == 0, err
        follower.send_signal(signal.SIGINT)
        follower.communicate(timeout=30)
        received = []
        while not seen.empty():
            received.append(seen.get_nowait().tm)
        watcher.close()
    assert states == ["completed"] * commands
    assert {tm.destination_id for tm in received} <= {0, watcher.source_id}
    assert "LINK DOWN" not in out
    assert_no_gap([sequence_count(p) for p in archived(data)])
