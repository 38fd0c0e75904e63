"""payload-flight: the payload manager's entry point and main loop.

Wiring: serial octets -> uplink receiver (CLTU, TC frame, FARM-1) -> command router -> services
-> TM publisher -> downlink transmitter (VC multiplexer, frames paced to the line).

Threads: the main thread reads the port and runs the uplink and the commands; the downlink
transmitter's thread writes frames. Every protocol object belongs to the main thread, except
the multiplexer, which the downlink transmitter guards.
"""

from __future__ import annotations

import argparse
import fcntl
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType

import serial

from flight.config import ConfigError, FlightConfig, load_config
from flight.counters import LinkCounters
from flight.downlink import DownlinkTransmitter
from flight.router import CommandRouter
from flight.services import test as test_service
from flight.telemetry import TmPublisher
from flight.uplink import UplinkReceiver
from spacelink.cop1 import Farm1
from spacelink.icd import DEFAULT_BAUD
from spacelink.serialport import PortError, open_port, read_burst

log = logging.getLogger("flight")

# After the first octet of a burst, gather the rest this long before decoding (see read_burst).
READ_GATHER_S = 0.004
# How often the main loop looks at the stop flag when the line is quiet.
READ_TIMEOUT_S = 0.2

EXIT_OK = 0
EXIT_PORT_FAILED = 1
EXIT_USAGE = 2


class StateDirError(Exception):
    """The state directory cannot be created, written or locked."""


def lock_state_dir(path: Path) -> int:
    """Create the state directory and hold an exclusive lock on it for the process's life.

    Two payload processes sharing one state directory would corrupt each other's stores.
    """
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd = os.open(path / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise StateDirError(f"cannot use state directory {path}: {exc.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise StateDirError(
            f"state directory {path} is in use by another payload-flight process"
        ) from None
    return fd


class Payload:
    """The payload manager: link, router and services wired together on one serial port."""

    def __init__(
        self,
        config: FlightConfig,
        port: serial.SerialBase,
        baud: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.port = port
        self.counters = LinkCounters()
        link = config.link
        self.farm = Farm1(link.tc_vcid, link.farm_window)
        self._clcw_word = self.farm.clcw().to_int()
        self.uplink = UplinkReceiver(link, self.farm, self.counters)
        self.downlink = DownlinkTransmitter(
            port.write, link, baud, lambda: self._clcw_word, self.counters
        )
        self.tm = TmPublisher(link.apid, self.downlink.enqueue, clock)
        self.router = CommandRouter(link.apid, self.tm, self.counters)
        test_service.register(self.router)
        self._stop = threading.Event()
        self._port_error: BaseException | None = None

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> int:
        """Serve the link until stopped; the exit status of the process."""
        self.downlink.start()
        log.info("payload up on %s: %s", self.port.name, self.farm.clcw())
        try:
            while not self._stop.is_set():
                try:
                    data = read_burst(self.port, READ_GATHER_S)
                except (serial.SerialException, OSError) as exc:
                    self._port_error = exc
                    break
                if data:
                    self._receive(data)
                if self.downlink.error is not None:
                    self._port_error = self.downlink.error
                    break
        finally:
            self._stop.set()
            self.downlink.stop()
            log.info("link counters: %s", self.counters.summary())
        if self._port_error is not None:
            log.error("serial port failed: %s", self._port_error)
            return EXIT_PORT_FAILED
        return EXIT_OK

    def _receive(self, data: bytes) -> None:
        packets = self.uplink.feed(data)
        word = self.farm.clcw().to_int()
        if word != self._clcw_word:
            self._clcw_word = word
            self.downlink.clcw_changed()
        for packet in packets:
            self.router.dispatch(packet)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="payload-flight",
        description="Payload manager: serves the CCSDS/PUS link on a serial port.",
    )
    parser.add_argument("--port", required=True, help="serial device path or pyserial URL")
    parser.add_argument("--baud", type=int, default=DEFAULT_BAUD, help="line rate (8N1)")
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=Path("payload-state"),
        help="directory for the payload's persistent state (created if missing)",
    )
    parser.add_argument("--config", type=Path, help="mission configuration file (TOML)")
    parser.add_argument(
        "--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"]
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        config = load_config(args.config)
        lock_fd = lock_state_dir(args.state_dir)
        port = open_port(args.port, args.baud, read_timeout=READ_TIMEOUT_S)
    except (ConfigError, StateDirError, PortError) as exc:
        print(f"payload-flight: {exc}", file=sys.stderr)
        return EXIT_USAGE
    payload = Payload(config, port, args.baud)

    def _on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("%s received, stopping", signal.Signals(signum).name)
        payload.stop()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    try:
        return payload.run()
    finally:
        port.close()
        os.close(lock_fd)


if __name__ == "__main__":
    sys.exit(main())
