"""What the ground station adds to a command's round trip (issue 17: under 5 ms median): pings
through `groundsw serve` (link socket, another process) against pings from a link owned in this
process, in alternating rounds on the same bench, so that the line's own time cancels out."""

from __future__ import annotations

import signal
import statistics
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import serial

from groundsw.archive import Archive
from groundsw.session import InitMode, LinkSession, PayloadLink
from groundsw.station.owned_link import OwnedLink
from groundsw.station.remote import ServiceLink
from groundsw.station.server import DISCOVERY_FILE
from groundsw.uplink_security import UplinkSecurity
from hil.bench import Bench
from spacelink.pus import ARE_YOU_ALIVE, TEST_SERVICE
from telemetry_defs.loader import default_dictionary
from tests.harness import BIN

BAUD = 921600
ROUNDS = 4
PINGS = 25


def round_trips(link: PayloadLink, count: int) -> list[float]:
    times = []
    for _ in range(count):
        started = time.perf_counter()
        record = link.command(TEST_SERVICE, ARE_YOU_ALIVE)
        assert record.finished.wait(10) and record.failure is None
        times.append(time.perf_counter() - started)
    return times


def direct(bench: Bench, data: Path) -> list[float]:
    assert bench.key_file is not None
    dictionary = default_dictionary()
    with (
        serial.serial_for_url(bench.ground_port, baudrate=BAUD, timeout=0.05) as port,
        Archive(data / "direct", dictionary) as archive,
    ):
        session = LinkSession(
            port, baud=BAUD, security=UplinkSecurity.from_key_file(bench.key_file)
        )
        owned = OwnedLink("direct", session, dictionary, archive).start()
        try:
            owned.bring_up(InitMode.AUTO, 10)
            client = owned.client("bench", 1)
            round_trips(client, 3)  # warm
            return round_trips(client, PINGS)
        finally:
            owned.close()


def through_station(bench: Bench, data: Path, sock: Path) -> list[float]:
    serve = subprocess.Popen(
        [str(BIN / "groundsw"), "--port", bench.ground_port, "--baud", str(BAUD),
         "--keys", str(bench.key_file), "--data-dir", str(data), "serve", "--name", "fm1",
         "--listen", f"unix:{sock}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while not (data / DISCOVERY_FILE).exists():
            assert serve.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        link = ServiceLink("http://station", "fm1", "bench", sock)
        try:
            deadline = time.monotonic() + 20
            while not (state := link.link_state()) or state["cop1"] != "active":
                assert time.monotonic() < deadline
                time.sleep(0.1)
            round_trips(link, 3)
            return round_trips(link, PINGS)
        finally:
            link.close()
    finally:
        serve.send_signal(signal.SIGTERM)
        serve.wait(20)


@pytest.mark.hil
def test_latency_the_station_adds(
    make_bench: Callable[..., Bench], tmp_path: Path, report: Callable[[str, str], None]
) -> None:
    bench = make_bench(baud=BAUD)
    own: list[float] = []
    served: list[float] = []
    for n in range(ROUNDS):
        own += direct(bench, tmp_path / f"d{n}")
        served += through_station(bench, tmp_path / f"s{n}", tmp_path / f"s{n}.sock")
    own_median, served_median = statistics.median(own), statistics.median(served)
    added = served_median - own_median
    report(
        "Ground station (issue 17)",
        f"ping round trip at {BAUD} baud, median of {len(own)}: owned here "
        f"{own_median * 1000:.1f} ms, through groundsw serve {served_median * 1000:.1f} ms: "
        f"the station adds {added * 1000:.2f} ms (target < 5)",
    )
    assert added < 0.005
