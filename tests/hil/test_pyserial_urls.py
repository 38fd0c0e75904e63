"""Both programs take a pyserial URL for PORT: here socket:// on both ends, bridged over TCP."""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
from pathlib import Path

from tests.harness import BIN, run_tool


def _listener() -> socket.socket:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    return s


def _pump(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass


def provision_key(tmp_path: Path, state: Path) -> Path:
    """A key file for the ground, and the payload's copy in its state directory (the default
    `[security] key_file`), as before flight."""
    keys = tmp_path / "keys.toml"
    made = run_tool("groundsw", "key", "generate", str(keys))
    assert made.returncode == 0, made.stderr
    state.mkdir()
    board = state / "uplink-keys.toml"
    shutil.copyfile(keys, board)
    board.chmod(0o600)
    return keys


def test_ping_with_socket_urls_on_both_ends(tmp_path: Path) -> None:
    flight_side, ground_side = _listener(), _listener()
    keys = provision_key(tmp_path, tmp_path / "state")
    flight = subprocess.Popen(
        [
            str(BIN / "payload-flight"),
            "--port",
            f"socket://127.0.0.1:{flight_side.getsockname()[1]}",
            "--state-dir",
            str(tmp_path / "state"),
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        flight_side.settimeout(15)
        flight_conn, _ = flight_side.accept()
        result: dict[str, subprocess.CompletedProcess[str]] = {}
        ground = threading.Thread(
            target=lambda: result.update(
                ping=run_tool(
                    "groundsw",
                    "--port",
                    f"socket://127.0.0.1:{ground_side.getsockname()[1]}",
                    "--keys",
                    str(keys),
                    "ping",
                    "--count",
                    "2",
                )
            )
        )
        ground.start()
        ground_side.settimeout(15)
        ground_conn, _ = ground_side.accept()
        for a, b in ((flight_conn, ground_conn), (ground_conn, flight_conn)):
            threading.Thread(target=_pump, args=(a, b), daemon=True).start()
        ground.join(60)
        ping = result["ping"]
        assert ping.returncode == 0, ping.stderr
        assert "2 pings sent, 2 answered, 0 lost (0%)" in ping.stdout
    finally:
        flight.terminate()
        _, err = flight.communicate(timeout=10)
        flight_side.close()
        ground_side.close()
    assert flight.returncode == 0, err
