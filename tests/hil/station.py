"""A ground station on a bench for the HIL tests: `groundsw serve` on the emulated link, an HTTP
client on its Unix socket, groundsw run against its data directory."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from groundsw.archive import Archive
from groundsw.archive_records import PacketRecord
from groundsw.station.config import payload_data_dir
from groundsw.station.discovery import DISCOVERY_FILE
from hil.bench import Bench
from spacelink.spacepacket import PrimaryHeader
from telemetry_defs.loader import default_dictionary
from tests.harness import BIN

PAYLOAD = "fm1"
D = default_dictionary()


def groundsw(data: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "groundsw"), "--data-dir", str(data), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def start_serve(args: list[str], data: Path) -> subprocess.Popen[str]:
    """`groundsw ARGS` (a serve), once it listens: its discovery file is in `data`."""
    serve = subprocess.Popen(
        [str(BIN / "groundsw"), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 20
    while not (data / DISCOVERY_FILE).exists():
        assert serve.poll() is None, serve.communicate()
        assert time.monotonic() < deadline, "the station did not start"
        time.sleep(0.1)
    return serve


def run_station(make_bench: Any, tmp_path: Path) -> Iterator[tuple[Bench, Path, Path]]:
    """A bench, and `groundsw serve` on its link: (bench, data directory, socket); stopped with
    SIGTERM at the end, which must leave no discovery file and exit 0."""
    bench: Bench = make_bench(baud=115200)
    data, sock = tmp_path / "data", tmp_path / "station.sock"
    serve = start_serve(
        ["--port", bench.ground_port, "--data-dir", str(data),
         "serve", "--name", PAYLOAD, "--listen", f"unix:{sock}"],
        data,
    )  # fmt: skip
    try:
        yield bench, data, sock
    finally:
        serve.send_signal(signal.SIGTERM)
        _, err = serve.communicate(timeout=20)
        assert serve.returncode == 0, err
        assert "Traceback" not in err, err
        assert not (data / DISCOVERY_FILE).exists()


def http(sock: Path) -> httpx.Client:
    return httpx.Client(
        transport=httpx.HTTPTransport(uds=str(sock)), base_url="http://station", timeout=30
    )


def wait_link_up(client: httpx.Client) -> None:
    """Until the station's link is up and it knows the payload's dictionary (it asks)."""
    deadline = time.monotonic() + 20
    while True:
        summary = client.get(f"/api/v1/payloads/{PAYLOAD}").json()
        if summary["link"]["up"] and summary["dictionary_hash"] is not None:
            return
        assert time.monotonic() < deadline, f"the station's link did not come up: {summary}"
        time.sleep(0.2)


def housekeeping_every_second(client: httpx.Client) -> None:
    """Once the station's link is up, LINK_STATUS at 1 Hz: a packet a second to count."""
    wait_link_up(client)
    done = command_done(client, "HK_SET_INTERVAL", "sid=LINK_STATUS", "interval_ms=1000")
    assert done["state"] == "completed"


def archived(data: Path) -> list[PacketRecord]:
    """Every packet in the station's archive of PAYLOAD (data directory `data`)."""
    with Archive(payload_data_dir(data, PAYLOAD), D) as archive:
        return archive.packets()


def sequence_count(packet: PacketRecord) -> int:
    return PrimaryHeader.unpack(packet.raw).seq_count


def command_done(client: httpx.Client, command: str, *arguments: str) -> dict[str, Any]:
    """Send a dictionary command through the station and wait for its end: its status."""
    sent = client.post(
        f"/api/v1/payloads/{PAYLOAD}/commands",
        json={"command": command, "arguments": list(arguments)},
    ).json()
    done: dict[str, Any] = client.get(
        f"/api/v1/payloads/{PAYLOAD}/commands/{sent['request']}", params={"wait": 20}
    ).json()
    return done
