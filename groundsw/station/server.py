"""`groundsw serve`: the station's links served over HTTP + WebSocket (uvicorn), and the file in
its data directory by which every `groundsw` on the machine finds it (`station.json`: process,
address, and the port of each payload)."""

from __future__ import annotations

import contextlib
import faulthandler
import json
import logging
import os
import signal
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import uvicorn

from groundsw.station.api import create_app
from groundsw.station.config import StationConfig
from groundsw.station.discovery import DISCOVERY_FILE
from groundsw.station.station import Station

log = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
# A client's link socket stays open for as long as it runs: a stop waits this long for them
# to close, then closes them.
SERVER_OPTIONS: dict[str, Any] = {
    "log_level": "warning",
    "lifespan": "off",
    "timeout_graceful_shutdown": 3,
}


def _write_discovery(config: StationConfig) -> Path:
    listen = config.address
    if isinstance(listen, Path):
        base_url, unix_socket = "http://localhost", str(listen)
    else:
        host, port = listen
        base_url, unix_socket = f"http://{host}:{port}", None
    path = config.data_dir / DISCOVERY_FILE
    config.data_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(
        json.dumps(
            {
                "pid": os.getpid(),
                "base_url": base_url,
                "unix_socket": unix_socket,
                "payloads": {p.name: p.port for p in config.payloads},
            },
            indent=1,
        )
    )
    os.replace(tmp, path)
    return path


class _Server(uvicorn.Server):
    """uvicorn, telling us once it listens, and stopping cleanly on SIGINT or SIGTERM."""

    def __init__(
        self, config: uvicorn.Config, on_ready: Callable[[], None], stopping: threading.Event
    ) -> None:
        super().__init__(config)
        self._on_ready = on_ready
        self._stopping = stopping

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self._stopping.set()
        await super().shutdown(sockets)

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # uvicorn's own raises the signal again once it has shut down, which kills the process
        # before the station closes its links and removes its discovery file: a stop is a stop.
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        original = {sig: signal.signal(sig, self.handle_exit) for sig in STOP_SIGNALS}
        try:
            yield
        finally:
            for sig, handler in original.items():
                signal.signal(sig, handler)

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            self._on_ready()


def run_station(config: StationConfig, say: Callable[[str], None]) -> int:
    """Open the links, serve until SIGINT or SIGTERM; StationError before serving when a link
    cannot be opened."""
    if threading.current_thread() is threading.main_thread():
        # A station that stops answering tells where each of its threads waits: kill -USR1.
        faulthandler.register(signal.SIGUSR1, all_threads=True)
    with Station(config) as station:
        address = config.address
        app = create_app(station)
        sockets: list[socket.socket] = []
        if isinstance(address, Path):
            sockets.append(_private_unix_socket(address))
            server_config = uvicorn.Config(app, **SERVER_OPTIONS)
        else:
            server_config = uvicorn.Config(app, host=address[0], port=address[1], **SERVER_OPTIONS)
        discovery: list[Path] = []

        def ready() -> None:
            discovery.append(_write_discovery(config))
            say(f"ground station listening on {config.listen_text}; data in {config.data_dir}")
            for payload in config.payloads:
                say(f"payload {payload.name}: {payload.port} at {payload.baud} baud")

        try:
            _Server(server_config, ready, station.stopping).run(sockets=sockets or None)
        finally:
            for path in discovery:
                with contextlib.suppress(OSError):
                    path.unlink()
            for sock in sockets:
                sock.close()
                if isinstance(address, Path):
                    with contextlib.suppress(OSError):
                        address.unlink()
    return 0


def _private_unix_socket(path: Path) -> socket.socket:
    """A listening Unix socket at `path` that only this user can connect to (uvicorn would make
    it 0666: anyone on the machine could then command the payload)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()  # left by a station that died
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    previous = os.umask(0o177)
    try:
        sock.bind(str(path))
    finally:
        os.umask(previous)
    os.chmod(path, 0o600)
    sock.listen(128)
    return sock
